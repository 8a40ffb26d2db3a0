"""Training loop of FML: stages, tf.distribute, checkpoints, NaN guard, TensorBoard (paper §4).

The schedule, the parameter groups and every training default live in `mofl.train_config`
(`TrainConfig`); this module runs them: one Adam per parameter group, whose state starts when
the group first trains (so its bias correction starts at step 1, not at the global step).
Every rate decays over the last `lr_decay_fraction` of each stage (`optim.stage_decay_factor`).
The step counter, every optimizer's state and (optionally) the input iterator are checkpointed,
so a killed run resumes exactly where its last checkpoint left it (`mofl.train_checkpoint`).
TensorBoard summaries and OUTPUT_DIR/losses.csv are written by `mofl.train_summaries`.
"""
import math
import os
import time

import numpy as np
import tensorflow as tf
import keras
from absl import logging

from mofl import losses
from mofl import model as model_lib
from mofl import optim
from mofl import run_dir
from mofl import train_checkpoint
from mofl import train_summaries
from mofl.train_config import LOSS_TERMS, PARAMETER_GROUPS, PRETRAIN_IDENTITY_PATH, STAGE_NAMES


class NonFiniteLossError(RuntimeError):
    """A loss or gradient became NaN/Inf; training stopped without saving that step."""


# Batch keys of the dense 2D points (`--lambda_dense_points`, docs/data.md "Dense 2D points").
DENSE_KEYS = ('dense_points', 'dense_confidence', 'dense_vertices')
# Added by the mapping of mediapipe-space points on a detector-calibrated asset.
DENSE_OFFSETS_KEY = 'dense_offsets'


def parameter_groups(model):
    """{group name: variables} of an FmlModel (`train_config.PARAMETER_GROUPS`)."""
    return {
        'trunk': model.network.trunk_variables(),
        'frame_head': model.network.frame_head_variables(),
        'identity_path': model.network.identity_path_variables(),
        'shape_basis': [model.face_model.theta_shape],
        'albedo': model.albedo_variables(),
    }


def make_optimizers(group_variables, learning_rate):
    """One built FusedAdam per parameter group (create under the strategy's scope)."""
    optimizers = {}
    for group in PARAMETER_GROUPS:
        optimizers[group] = optim.FusedAdam(learning_rate=learning_rate, name=f'adam_{group}')
        optimizers[group].build(group_variables[group])
    return optimizers


def train_step(model, batch, stage, config, group_variables, optimizers, loss_weights,
               num_replicas=1):
    """One optimisation step of `stage` on one replica's batch (call inside tf.function).

    Args:
        model: FmlModel.
        batch: dict with images [B, M, H, W, 3], landmarks [B, M, 66, 2],
            landmark_confidence [B, M, 66]; optionally dense_points [B, M, K, 2],
            dense_confidence [B, M, K] and dense_vertices [B, K] (`DENSE_KEYS`).
        stage: 0, 1 or 2 (a Python int: each stage is its own graph).
        config: TrainConfig.
        group_variables, optimizers: from `parameter_groups` and `make_optimizers`.
        loss_weights: dict term -> λ.
        num_replicas: the loss is divided by it (gradients are summed across replicas).

    Returns:
        dict of scalars: the loss terms, total, visible_fraction, gradient_norm and finite
        (1.0, or 0.0 when the loss or a gradient was NaN/Inf). With several replicas,
        gradient_norm is the norm of this replica's share of the gradient, or of the global
        batch's gradient when `config.gradient_clip_norm` > 0.
    """
    groups = config.trained_groups(stage)
    variables = [v for g in groups for v in group_variables[g]]
    # Only the trained groups are watched, so no gradient is computed for frozen ones.
    watched = [v.value if isinstance(v, keras.Variable) else v for v in variables]
    with tf.GradientTape(watch_accessed_variables=False) as tape:
        tape.watch(watched)
        outputs = model(batch['images'], training=True, identity_enabled=stage > 0,
                        stop_identity_gradient=config.stops_identity_gradient(stage))
        terms = model.loss_terms(outputs, batch['images'], batch['landmarks'],
                                 batch['landmark_confidence'], eta=config.chroma_eta,
                                 sparsity_exponent=config.sparsity_exponent,
                                 **{k: batch[k] for k in DENSE_KEYS + (DENSE_OFFSETS_KEY,)
                                    if k in batch})
        loss_terms = {k: terms[k] for k in LOSS_TERMS}
        total = losses.total_loss(loss_terms, loss_weights)
        scaled = total / num_replicas
    grads = tape.gradient(scaled, watched)
    grads = [tf.zeros_like(v) if g is None else tf.convert_to_tensor(g)
             for g, v in zip(grads, variables)]
    # Clipping acts on the global batch's gradient, as with one replica: clipping each
    # replica's share of it would let the sum grow to num_replicas × the clip norm. So the
    # replicas' gradients are summed first (one more all-reduce, only when clipping), and each
    # replica hands the optimizer 1/num_replicas of the clipped sum, which its own sum restores.
    replica_context = tf.distribute.get_replica_context()
    clip_global_sum = (config.gradient_clip_norm > 0 and num_replicas > 1
                       and replica_context is not None)
    if clip_global_sum:
        grads = replica_context.all_reduce(tf.distribute.ReduceOp.SUM, grads)
    # One finiteness check for everything: the global norm is finite iff every gradient
    # entry is. A non-finite step is still applied in memory (NaNs may enter the weights),
    # but the host loop raises before anything is saved, so the last good checkpoint stays
    # the latest and nothing on disk is lost.
    grad_norm = tf.linalg.global_norm(grads)
    finite = tf.math.is_finite(total) & tf.math.is_finite(grad_norm)
    if config.gradient_clip_norm > 0:
        grads, _ = tf.clip_by_global_norm(grads, config.gradient_clip_norm, use_norm=grad_norm)
    if clip_global_sum:
        grads = [g / num_replicas for g in grads]
    start = 0
    for group in groups:
        count = len(group_variables[group])
        optimizers[group].apply_gradients(
            zip(grads[start:start + count], group_variables[group]))
        start += count
    terms['total'] = total
    terms['gradient_norm'] = grad_norm
    terms['finite'] = tf.cast(finite, tf.float32)
    return terms


def make_strategy(name, num_cpu_devices=0):
    """The tf.distribute strategy for `name` (default | mirrored | multi_worker).

    `num_cpu_devices` > 1 splits the CPU into that many logical devices first, so the mirrored
    path can be exercised (and tested) on a machine without GPUs.
    """
    if num_cpu_devices > 1:
        cpus = tf.config.list_physical_devices('CPU')
        tf.config.set_logical_device_configuration(
            cpus[0], [tf.config.LogicalDeviceConfiguration() for _ in range(num_cpu_devices)])
    if name == 'default':
        return tf.distribute.get_strategy()
    if name == 'mirrored':
        gpus = tf.config.list_logical_devices('GPU')
        devices = ([d.name for d in gpus] if gpus else
                   [d.name for d in tf.config.list_logical_devices('CPU')])
        return tf.distribute.MirroredStrategy(devices=devices)
    if name == 'multi_worker':
        # Cluster layout comes from TF_CONFIG, as for any MultiWorkerMirroredStrategy job.
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise ValueError(f'unknown --strategy={name!r} (default, mirrored or multi_worker)')


class Trainer:
    """Owns the strategy, model, optimizers, data, checkpoints and summaries of one run."""

    def __init__(self, assets, model_config, train_config):
        if train_config.pretrain_identity_path not in PRETRAIN_IDENTITY_PATH:
            raise ValueError(f'pretrain_identity_path must be one of {PRETRAIN_IDENTITY_PATH}, '
                             f'got {train_config.pretrain_identity_path!r}')
        self.config = train_config
        self.model_config = model_config
        self.face_mask = np.asarray(assets.mesh.face_mask, bool)
        self.strategy = make_strategy(train_config.strategy, train_config.num_cpu_devices)
        self.num_replicas = self.strategy.num_replicas_in_sync
        if model_config.identity_standardization and train_config.batch_size < 2:
            raise ValueError('--identity_standardization standardises α, β over the batch: it '
                             f'needs --batch_size >= 2, got {train_config.batch_size}')
        if train_config.batch_size % self.num_replicas:
            raise ValueError(f'--batch_size={train_config.batch_size} is not divisible by the '
                             f'{self.num_replicas} replicas')
        weights = losses.paper_loss_weights(assets.mesh.num_vertices)
        if train_config.lambda_photometric is not None:
            weights['photometric'] = train_config.lambda_photometric
        weights.update(landmark=train_config.lambda_landmark,
                       smoothness=train_config.lambda_smoothness,
                       sparsity=train_config.lambda_sparsity,
                       expression=train_config.lambda_expression,
                       identity_mean=train_config.lambda_identity_mean,
                       dense_points=train_config.lambda_dense_points,
                       depth_spread=train_config.lambda_depth_spread)
        self.loss_weights = weights
        self.is_chief = _is_chief(self.strategy)

        with self.strategy.scope():
            keras.utils.set_random_seed(train_config.seed)
            self.model = model_lib.FmlModel(assets, model_config)
            run_dir.build_model(self.model, model_config)
            self.group_variables = parameter_groups(self.model)
            self.optimizers = make_optimizers(self.group_variables, train_config.learning_rate)
            self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name='global_step')
            self.weight_average = (
                optim.WeightAverage(self.model.variables, train_config.weight_average_decay)
                if train_config.weight_average_decay > 0 else None)

        from mofl.data import pipeline   # data files only matter to the trainer, not the model
        dataset = pipeline.make_dataset(train_config.data, train_config.batch_size,
                                        train_config.num_frames, shuffle=True, repeat=True,
                                        seed=train_config.seed,
                                        image_size=model_config.image_size[0],
                                        shuffle_buffer=train_config.shuffle_buffer)
        batch_keys = ('images', 'landmarks', 'landmark_confidence')
        dense_space = None
        if train_config.lambda_dense_points > 0:
            dense_space = pipeline.check_dense_points(train_config.data, assets.mesh)
            batch_keys += DENSE_KEYS
        self.dataset = dataset.map(lambda b: {k: b[k] for k in batch_keys})
        if dense_space == pipeline.records.DENSE_SPACE_MEDIAPIPE:
            self.dataset = self.dataset.map(
                lambda b: pipeline.dense_points_on_asset(b, assets.mesh.mediapipe_vertices,
                                                         assets.mesh.mediapipe_offsets))
        checkpoint_dir = os.path.join(train_config.output_dir, 'checkpoints')
        if not self.is_chief:   # other workers write to a scratch dir (tf.distribute convention)
            checkpoint_dir = os.path.join(train_config.output_dir, 'workers',
                                          f'{_task_id(self.strategy)}')
        tracked = train_checkpoint.tracked_objects(self.model, self.step, self.optimizers,
                                                   self.weight_average, checkpoint_dir)
        # A plain tf.data iterator is checkpointable (shuffle buffer included), so a resumed run
        # sees exactly the batches it would have seen. Distributed iterators are not: those runs
        # re-create the input and skip the batches already consumed (same seed, same order).
        self.iterator = None
        if train_config.checkpoint_iterator and self.num_replicas == 1 and \
                train_config.strategy == 'default':
            self.iterator = iter(dataset_for(self.strategy, self.dataset))
            tracked['data'] = self.iterator
        self._tracked = tracked
        self.checkpoint = tf.train.Checkpoint(**tracked)
        self.manager = tf.train.CheckpointManager(self.checkpoint, checkpoint_dir,
                                                  max_to_keep=train_config.keep_checkpoints)
        self.summaries = train_summaries.TrainSummaries(train_config.output_dir, self.is_chief)
        self.writer = self.summaries.writer
        self._step_fns = {}
        self._summary_images = None
        self._identity_samples = None
        if train_config.identity_eval_data and self.is_chief:   # fail now, not at step 250
            pipeline.check_ground_truth_mesh(train_config.identity_eval_data, assets.mesh)
            self._identity_samples = pipeline.load_ground_truth_samples(
                train_config.identity_eval_data, train_config.identity_eval_samples,
                train_config.num_frames, image_size=model_config.image_size[0])

    def restore(self):
        """Restores the latest checkpoint if there is one; returns the step resumed from.

        Must be called once before `train` (it also creates the input iterator when that is not
        part of the checkpoint).
        """
        train_checkpoint.restore_latest(self.manager, self.checkpoint, self._tracked,
                                        self.weight_average)
        step = int(self.step.numpy())
        if self.iterator is None:
            self.iterator = iter(dataset_for(self.strategy, self.dataset.skip(step)))
        return step

    def _replica_step(self, batch, stage):
        return train_step(self.model, batch, stage, self.config, self.group_variables,
                          self.optimizers, self.loss_weights, self.num_replicas)

    def _step_fn(self, stage):
        if stage not in self._step_fns:
            @tf.function(autograph=False)
            def step_fn(iterator):
                batch = next(iterator)
                per_replica = self.strategy.run(self._replica_step, args=(batch, stage))
                reduced = {k: self.strategy.reduce(tf.distribute.ReduceOp.MEAN, v, axis=None)
                           for k, v in per_replica.items()}
                if self.weight_average is not None:
                    self.weight_average.update()
                self.step.assign_add(1)
                return reduced
            self._step_fns[stage] = step_fn
        return self._step_fns[stage]

    def _set_learning_rates(self, step):
        for group, optimizer in self.optimizers.items():
            optimizer.learning_rate.assign(self.config.group_learning_rate(group, step))

    def train(self, max_steps=None, on_step=None):
        """Runs until the schedule's last step (or `max_steps` more steps).

        Args:
            max_steps: optional cap on the number of steps run by this call.
            on_step: optional callback(step, terms as floats) after every step.

        Returns:
            list of dicts (float loss terms) per step run, for inspection.

        Raises:
            NonFiniteLossError: a loss/gradient became NaN or Inf (nothing was saved for it).
        """
        cfg = self.config
        if self.iterator is None:
            raise RuntimeError('Trainer.restore() must run before train()')
        start_step = int(self.step.numpy())
        end_step = cfg.total_steps if max_steps is None else min(cfg.total_steps,
                                                                  start_step + max_steps)
        history = []
        t0 = time.time()
        stage = None
        for step in range(start_step, end_step):
            self._set_learning_rates(step)
            if cfg.stage_of(step) != stage:
                stage = cfg.stage_of(step)
                logging.info('Stage %d (%s) from step %d', stage, STAGE_NAMES[stage], step)
                if stage == 1 and step == cfg.pretrain_steps and cfg.identity_output_init:
                    self.standardize_identity_outputs()
            terms = {k: float(v) for k, v in self._step_fn(stage)(self.iterator).items()}
            if terms['finite'] < 1.0:
                bad = [k for k in LOSS_TERMS + ('total',) if not math.isfinite(terms[k])]
                raise NonFiniteLossError(
                    f'step {step}: non-finite loss ({", ".join(bad) or "gradients"}); the step '
                    f'was not applied and nothing was saved; the last good checkpoint is '
                    f'{self.manager.latest_checkpoint}')
            history.append(terms)
            done = step + 1
            self.summaries.log_csv(done, stage, terms)
            if done % cfg.summary_every == 0 or done == end_step:
                self.summaries.write_scalars(done, stage, terms, self.optimizers)
            if cfg.image_summary_every and (done % cfg.image_summary_every == 0
                                            or done == end_step):
                self.write_image_summary(done)
            if done % cfg.log_every == 0 or done == end_step:
                rate = (done - start_step) / max(time.time() - t0, 1e-9)
                eta = (cfg.total_steps - done) / max(rate, 1e-9)
                logging.info('step %d/%d [%s] loss %.4g (pho %.4g lan %.4g smo %.4g spa %.4g '
                             'ble %.4g idm %.3g den %.4g dep %.3g) %.2f steps/s ETA %s', done,
                             cfg.total_steps, STAGE_NAMES[stage], terms['total'],
                             terms['photometric'], terms['landmark'], terms['smoothness'],
                             terms['sparsity'], terms['expression'], terms['identity_mean'],
                             terms['dense_points'], terms['depth_spread'], rate,
                             _format_seconds(eta))
            if cfg.identity_eval_data and cfg.identity_eval_every and (
                    done % cfg.identity_eval_every == 0 or done == end_step):
                self.write_identity_summary(done)
                if self.weight_average is not None:
                    with self.weight_average.applied():
                        self.write_identity_summary(done, averaged=True)
            if done % cfg.checkpoint_every == 0 or done == end_step:
                self.manager.save(checkpoint_number=done)
            if on_step is not None:
                on_step(done, terms)
        self.summaries.flush()
        return history

    def standardize_identity_outputs(self):
        """Data-dependent initialisation of the identity head at the start of end-to-end
        training (`--identity_output_init`): α and β get mean 0 and spread 1 over the first
        `identity_init_samples` training samples (in file order, so a resumed run that starts
        this stage again computes the same weights)."""
        from mofl.data import pipeline
        cfg = self.config
        batch = next(iter(pipeline.make_dataset(
            cfg.data, cfg.identity_init_samples, cfg.num_frames, shuffle=False, repeat=False,
            image_size=self.model_config.image_size[0], drop_remainder=False)))
        if batch['images'].shape[0] < 2:
            raise ValueError(f'{cfg.data}: --identity_output_init needs at least 2 training '
                             f'samples, found {batch["images"].shape[0]}')
        with self.strategy.scope():
            spread = self.model.network.standardize_identity_outputs(batch['images']).std
        if spread.size:
            logging.info('Identity head standardised on %d samples: spread of α, β before '
                         '%.3g (median), %.3g (max)', int(batch['images'].shape[0]),
                         float(np.median(spread)), float(spread.max()))

    def write_identity_summary(self, step, averaged=False):
        """TensorBoard scalars `identity/*` and a log line: the learned identity against the
        true one on a fixed set of held-out synthetic people (`mofl.evaluation.identity`).
        `averaged`: the model holds the weight average; written as `identity_averaged/*`.

        Returns:
            the measured {name: float}, or None on a worker that does not measure (not the
            chief, or no `identity_eval_data`).
        """
        if self._identity_samples is None:   # not the chief, or no --identity_eval_data
            return None
        return self.summaries.write_identity(step, self.model, self._identity_samples,
                                             self.face_mask, averaged=averaged)

    def write_image_summary(self, step):
        """TensorBoard image: per frame of the first sample, input | overlay | albedo | shading."""
        if self._summary_images is None:   # always the same sample, to watch it improve
            self._summary_images = next(iter(self.dataset.take(1)))['images'][:1]
        self.summaries.write_image(step, self.model, self._summary_images,
                                   identity_enabled=self.config.stage_of(step - 1) > 0)


def dataset_for(strategy, dataset):
    """The dataset as the strategy wants it (per-replica batches for multi-replica ones).

    `dataset` yields global batches. Across workers it is sharded by data, not by file (the
    AUTO policy's choice for TFRecords): every worker runs the same seeded pipeline and keeps
    its own slice of each global batch, so a step trains on the batch a single worker would
    have drawn, whatever the number of workers, and `dataset.skip(step)` on resume skips
    exactly what the workers consumed. (By file, each worker would batch its own files'
    records and take 1/W of a local batch per step, so the skip would jump W times too far.)
    The cost: each worker reads and decodes every record, of which it trains on 1/W.
    """
    if strategy.num_replicas_in_sync == 1 and isinstance(strategy,
                                                         type(tf.distribute.get_strategy())):
        return dataset
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return strategy.experimental_distribute_dataset(dataset.with_options(options))


def _is_chief(strategy):
    resolver = getattr(strategy, 'cluster_resolver', None)
    if resolver is None or not resolver.task_type:
        return True
    return resolver.task_type == 'chief' or (resolver.task_type == 'worker' and
                                             resolver.task_id == 0)


def _task_id(strategy):
    resolver = getattr(strategy, 'cluster_resolver', None)
    return 0 if resolver is None else resolver.task_id


def _format_seconds(seconds):
    seconds = int(seconds)
    return f'{seconds // 3600:d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}'
