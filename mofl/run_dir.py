"""A training run's directory: what `mofl.train` writes beside its checkpoints and how export,
evaluation, reconstruction and the tools rebuild the model from it.

    OUTPUT_DIR/assets.npz          the face asset (`FaceAssets`) the model was built on
    OUTPUT_DIR/model_config.json   `model.ModelConfig`
    OUTPUT_DIR/train_config.json   the trainer's `TrainConfig` (for the record)
    OUTPUT_DIR/checkpoints/        tf.train checkpoints written by `trainer.Trainer`

`load_run` needs only the first two and a checkpoint; it restores the model weights alone (the
weight average in their place when the run kept one, `mofl.train --weight_average_decay`).
"""
import dataclasses
import json
import os

import tensorflow as tf
from absl import logging

from mofl import model as model_lib
from mofl import optim
from mofl.facemodel import assets as assets_lib


def check_resumed_model_config(output_dir, model_config):
    """Raises ValueError when OUTPUT_DIR already holds a run whose model differs from
    `model_config` (resuming it would not restore, and would overwrite its description)."""
    path = os.path.join(output_dir, 'model_config.json')
    if not os.path.exists(path):
        return
    with open(path) as f:
        saved = json.load(f)
    # Settings added after the run was written take their defaults (what the run used).
    saved = {**json.loads(json.dumps(dataclasses.asdict(model_lib.ModelConfig()))), **saved}
    wanted = json.loads(json.dumps(dataclasses.asdict(model_config)))
    changed = sorted(k for k in set(saved) | set(wanted) if saved.get(k) != wanted.get(k))
    if changed:
        details = ', '.join(f'{k}: run {saved.get(k)!r} vs flags {wanted.get(k)!r}'
                            for k in changed)
        raise ValueError(f'{output_dir} holds a run with another model ({details}); resume it '
                         'with its own settings or choose a new --output_dir')


def save_run_description(output_dir, assets, model_config, train_config):
    """Writes the asset and both configs beside the checkpoints, so export, evaluation and a
    resumed run rebuild exactly this model."""
    os.makedirs(output_dir, exist_ok=True)
    asset_path = os.path.join(output_dir, 'assets.npz')
    if not os.path.exists(asset_path):
        assets.save(asset_path)
    with open(os.path.join(output_dir, 'model_config.json'), 'w') as f:
        json.dump(dataclasses.asdict(model_config), f, indent=2)
    with open(os.path.join(output_dir, 'train_config.json'), 'w') as f:
        json.dump(dataclasses.asdict(train_config), f, indent=2)


def load_run(output_dir, checkpoint=None, averaged=True):
    """Rebuilds (assets, FmlModel) of a training run directory and restores a checkpoint
    (model weights only).

    Args:
        output_dir: a mofl.train output directory.
        checkpoint: optional checkpoint prefix (e.g. RUN/checkpoints/ckpt-400); default the
            run's latest checkpoint.
        averaged: when the run kept a weight average (`mofl.train --weight_average_decay`),
            the model gets the averaged weights (False: the last step's own weights).

    Returns:
        (assets, model, step) — step is the restored global step.

    Raises:
        FileNotFoundError: naming the folder or prefix, when there is nothing to restore (checked
            before the model is built).
    """
    config_path = os.path.join(output_dir, 'model_config.json')
    if not os.path.exists(config_path):
        raise FileNotFoundError(f'{output_dir}: no model_config.json; is this a mofl.train '
                                'output directory?')
    if checkpoint is None:
        checkpoint = tf.train.latest_checkpoint(os.path.join(output_dir, 'checkpoints'))
        if checkpoint is None:
            raise FileNotFoundError(f'{output_dir}/checkpoints: no checkpoint to load (has the '
                                    'run saved one yet? see --checkpoint_every of mofl.train)')
    elif not tf.io.gfile.exists(checkpoint + '.index'):
        raise FileNotFoundError(f'{checkpoint}: no such checkpoint (no {checkpoint}.index)')
    with open(config_path) as f:
        values = json.load(f)
    values['image_size'] = tuple(values['image_size'])
    if values.get('initial_translation') is not None:
        values['initial_translation'] = tuple(values['initial_translation'])
    model_config = model_lib.ModelConfig(**values)
    assets = assets_lib.FaceAssets.load(os.path.join(output_dir, 'assets.npz'))
    model = model_lib.FmlModel(assets, model_config)
    build_model(model, model_config)
    step = tf.Variable(0, dtype=tf.int64)
    status = tf.train.Checkpoint(model=model, step=step).restore(checkpoint)
    status.expect_partial().assert_existing_objects_matched()
    if averaged and has_weight_average(checkpoint):
        average = optim.WeightAverage(model.variables, decay=0.0)
        tf.train.Checkpoint(**{optim.WeightAverage.CHECKPOINT_KEY: average.state}).restore(
            checkpoint).expect_partial().assert_existing_objects_matched()
        average.copy_to_sources()
        logging.info('%s: the weight average of %d steps (mofl.train --weight_average_decay)',
                     checkpoint, int(average.state.updates.numpy()))
    return assets, model, int(step.numpy())


def has_weight_average(checkpoint):
    """Whether a checkpoint prefix holds a `mofl.train --weight_average_decay` average."""
    prefix = optim.WeightAverage.CHECKPOINT_KEY + '/'
    return any(name.startswith(prefix) for name in
               tf.train.load_checkpoint(checkpoint).get_variable_to_shape_map())


def build_model(model, model_config):
    """Creates every variable by one forward pass on a dummy batch (needed before restoring)."""
    height, width = model_config.image_size
    model(tf.zeros([1, 1, height, width, 3]))
