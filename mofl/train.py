"""Trains FML: `python -m mofl.train --flagfile=configs/paper.flags`.

Self-supervised multi-frame training (paper §3–4) on TFRecords written by `tools.preprocess`
(videos) or `tools.make_synthetic` (the synthetic ground-truth set). Re-running the same command
resumes from the last checkpoint in `--output_dir`. TensorBoard: `tensorboard --logdir OUTPUT_DIR`.
"""
import os
import sys

from absl import app
from absl import flags
from absl import logging

from mofl import flags_common
from mofl import startup
startup.quiet_tensorflow()   # before anything imports TensorFlow

from mofl import model as model_lib
from mofl import run_dir as run_dir_lib
from mofl import trainer as trainer_lib
from mofl import train_config as train_config_lib
from mofl.facemodel import assets as assets_lib
from mofl.facemodel import default_assets
from mofl.render import camera as camera_lib


def define_flags(flag_values=flags.FLAGS):
    """Defines the binary's flags in `flag_values` (defaults: ModelConfig's and TrainConfig's).

    Args:
        flag_values: the FlagValues to define them in.
    """
    flags_common.define_flags(('data', 'output_dir'), flag_values, required=('data', 'output_dir'),
                              notes={'output_dir': 'Checkpoints, TensorBoard logs, run '
                                                   'description.'})
    flags_common.define_asset_flag('default: the default asset, ICT-FaceKit when available else '
                                   'mediapipe. A resumed run reuses OUTPUT_DIR/assets.npz.',
                                   flag_values=flag_values)
    flags_common.define_flags(('batch_size', 'num_frames', 'seed'), flag_values,
                              config=train_config_lib.TrainConfig)
    flags_common.define_flags(
        flags_common.MODEL_FLAGS, flag_values, config=model_lib.ModelConfig,
        defaults={'focal_length': None},
        notes={'image_size': 'Part of the saved model config.',
               'focal_length': 'Default: 1000 · image_size / 240, the 240 crop\'s field of '
                               'view at f = 1000 px.'})
    flags_common.define_flags(flags_common.TRAINING_FLAGS, flag_values,
                              config=train_config_lib.TrainConfig)


def configs_from_flags(flag_values=flags.FLAGS):
    """(ModelConfig, TrainConfig) from the parsed flags."""
    image_size = flag_values.image_size
    focal_length = flag_values.focal_length or camera_lib.crop_focal_length(image_size)
    model_config = flags_common.config_from_flags(
        model_lib.ModelConfig, flag_values, image_size=(image_size, image_size),
        focal_length=focal_length)
    train_config = flags_common.config_from_flags(train_config_lib.TrainConfig, flag_values)
    return model_config, train_config


def main(argv, flag_values=flags.FLAGS):
    """Trains as the flags in `flag_values` say; returns the exit status."""
    del argv
    if flag_values.image_size % 16 or not 64 <= flag_values.image_size <= 240:
        logging.error('--image_size must be a multiple of 16 from 64 to 240, got %d',
                      flag_values.image_size)
        return 2
    import tensorflow as tf  # imported after flag parsing so --help stays fast
    if flag_values.deterministic:
        tf.config.experimental.enable_op_determinism()
    model_config, train_config = configs_from_flags(flag_values)
    if train_config.total_steps <= 0:
        logging.error('Nothing to do: --pretrain_steps + --train_steps + --finetune_steps = 0')
        return 2
    run_asset = os.path.join(flag_values.output_dir, 'assets.npz')
    try:
        if os.path.exists(run_asset):
            assets = assets_lib.FaceAssets.load(run_asset)
            logging.info('Resuming with the run\'s own asset %s (source %s)', run_asset,
                         assets.mesh.source)
        else:
            assets, name = default_assets.load_asset(flag_values.asset)
            logging.info('Using the face asset %s', name)
        model_config = model_lib.resolve_initial_translation(assets, model_config)
        run_dir_lib.check_resumed_model_config(flag_values.output_dir, model_config)
        trainer = trainer_lib.Trainer(assets, model_config, train_config)
    except (assets_lib.AssetError, FileNotFoundError, ValueError) as e:
        logging.error('%s', e)
        return 1
    if trainer.is_chief:
        run_dir_lib.save_run_description(flag_values.output_dir, assets, model_config, train_config)
    start = trainer.restore()
    logging.info('Training %d→%d steps on %s with %d replica(s); %d trainable parameters',
                 start, train_config.total_steps, flag_values.data, trainer.num_replicas,
                 sum(int(tf.size(v)) for v in trainer.model.trainable_variables))
    try:
        trainer.train()
    except trainer_lib.NonFiniteLossError as e:
        logging.error('%s', e)
        return 3
    logging.info('Done at step %d; checkpoints in %s', int(trainer.step.numpy()),
                 trainer.manager.directory)
    return 0


if __name__ == '__main__':
    define_flags()
    sys.exit(app.run(main))
