"""What a training run writes about its progress: TensorBoard summaries and OUTPUT_DIR/losses.csv.

`TrainSummaries` is owned by `mofl.trainer.Trainer`. Only the chief writes: on other workers
the TensorBoard writer is a no-op one and the CSV is left alone.

- `OUTPUT_DIR/train/`: TensorBoard scalars `loss/*`, `learning_rate/<group>`, `gradient_norm`,
  `stage`; `identity/*` (and `identity_averaged/*` with a weight average) against held-out
  synthetic people (`mofl.evaluation.identity`); the image `reconstruction`.
- `OUTPUT_DIR/losses.csv`: one row per step (`step,stage,total,<LOSS_TERMS>,visible_fraction`).
  A file from before a change of the terms is kept as `losses-before-step-N.csv` and a new one
  started.
"""
import os

import numpy as np
import tensorflow as tf
from absl import logging

from mofl.train_config import LOSS_TERMS

# The columns of losses.csv after `step,stage`.
CSV_COLUMNS = ('total',) + LOSS_TERMS + ('visible_fraction',)


class TrainSummaries:
    """TensorBoard writer and loss log of one run (module docstring).

    Args:
        output_dir: the run's OUTPUT_DIR.
        is_chief: whether this worker writes (the others get a no-op writer, no CSV).
    """

    def __init__(self, output_dir, is_chief):
        self.output_dir = output_dir
        self.is_chief = is_chief
        self.writer = (tf.summary.create_file_writer(os.path.join(output_dir, 'train'))
                       if is_chief else tf.summary.create_noop_writer())
        self._csv_header_checked = False   # losses.csv of a resumed run checked once

    def log_csv(self, step, stage, terms):
        """Appends the step's loss terms to OUTPUT_DIR/losses.csv (chief only).

        Args:
            step: the number of steps done (the row's `step`).
            stage: 0, 1 or 2.
            terms: {name: float}, at least `CSV_COLUMNS`.
        """
        if not self.is_chief:
            return
        path = os.path.join(self.output_dir, 'losses.csv')
        header = 'step,stage,' + ','.join(CSV_COLUMNS) + '\n'
        new = not os.path.exists(path)
        if not new and not self._csv_header_checked:
            with open(path) as f:
                if f.readline() != header:   # a run written before a loss term was added
                    os.replace(path, path[:-len('.csv')] + f'-before-step-{step}.csv')
                    new = True
        self._csv_header_checked = True
        with open(path, 'a') as f:
            if new:
                f.write(header)
            f.write(f'{step},{stage},' + ','.join(f'{terms[c]:.6g}' for c in CSV_COLUMNS) + '\n')

    def write_scalars(self, step, stage, terms, optimizers):
        """TensorBoard scalars of one step: the loss terms, every group's learning rate, the
        gradient norm and the stage.

        Args:
            step: the number of steps done.
            stage: 0, 1 or 2.
            terms: {name: float} of `train_step` (as floats).
            optimizers: {group: optimizer} whose `learning_rate` is logged.
        """
        with self.writer.as_default(step=step):
            for k in LOSS_TERMS + ('total', 'visible_fraction'):
                tf.summary.scalar(f'loss/{k}', terms[k])
            for group, optimizer in optimizers.items():
                tf.summary.scalar(f'learning_rate/{group}', float(optimizer.learning_rate.numpy()))
            tf.summary.scalar('gradient_norm', terms['gradient_norm'])
            tf.summary.scalar('stage', stage)

    def write_identity(self, step, model, samples, face_mask, averaged=False):
        """TensorBoard scalars `identity/*` and a log line: the learned identity against the
        true one on a fixed set of held-out synthetic people (`mofl.evaluation.identity`).

        Args:
            step: the number of steps done.
            model: the FmlModel (holding the weight average when `averaged`).
            samples: held-out samples with ground truth
                (`mofl.data.pipeline.load_ground_truth_samples`).
            face_mask: [V] bool, the asset's face vertices.
            averaged: the model holds the weight average; written as `identity_averaged/*`.

        Returns:
            {name: float} of `identity.measure_identity`.
        """
        from mofl.evaluation import identity
        stats = identity.measure_identity(model, samples, face_mask)
        name = 'identity_averaged' if averaged else 'identity'
        weights = ' (averaged weights)' if averaged else ''
        with self.writer.as_default(step=step):
            for key, value in stats.items():
                tf.summary.scalar(f'{name}/{key}', value)
        logging.info('step %d held-out identity%s: cos %.3f (centred %.3f, translation-free %.3f, '
                     'similarity-free %.3f; directions learned/true %d/%d, true variance in the '
                     'learned ones %.2f), '
                     'offsets %.2f/%.2f mm, α spread %.3f, Θs %.3f mm, landmarks %.2f px; mesh '
                     '%.3f mm rigid (template %.3f: %.1f%% below), %.3f with scale (template '
                     '%.3f: %.1f%% below)', step, weights,
                     stats['cosine'], stats['cosine_centred'],
                     stats['cosine_translation_free'], stats['cosine_similarity_free'],
                     stats.get('learned_directions_90', 0), stats.get('true_directions_90', 0),
                     stats.get('true_variance_in_learned_directions', 0.0),
                     stats['learned_rms_mm'],
                     stats['true_rms_mm'], stats['alpha_spread'], stats['theta_rms_mm'],
                     stats['landmark_px'], stats['identity_mm'], stats['template_mm'],
                     100 * stats['gain_rigid'], stats['identity_mm_scale'],
                     stats['template_mm_scale'], 100 * stats['gain_scale'])
        if 'expression_cosine' in stats:
            logging.info('step %d held-out expression%s: cos %.3f (centred %.3f), offsets '
                         '%.2f mm (true %.2f), error %.2f mm', step,
                         weights, stats['expression_cosine'],
                         stats['expression_cosine_centred'], stats['expression_rms_mm'],
                         stats['expression_true_rms_mm'], stats['expression_error_rms_mm'])
        return stats

    def write_image(self, step, model, images, identity_enabled):
        """TensorBoard image `reconstruction`: per frame of one sample, input | overlay | albedo
        | shading.

        Args:
            step: the number of steps done.
            model: the FmlModel.
            images: [1, M, H, W, 3] the sample.
            identity_enabled: as in `FmlModel.call` (False in expression pre-training).
        """
        from mofl.render import overlay
        frames = images[0]
        outputs = model(images, identity_enabled=identity_enabled)
        rendered = model.render_sample(outputs, background=frames)
        rows = [overlay.render_panels(frames[f].numpy(), rendered, index=f, labels=(f == 0))
                for f in range(frames.shape[0])]
        grid = overlay.stack_rows(rows)
        with self.writer.as_default(step=step):
            tf.summary.image('reconstruction', grid[None].astype(np.float32) / 255.0)

    def flush(self):
        """Writes what the TensorBoard writer holds."""
        self.writer.flush()
