"""Trains FML: `python -m mofl.train --flagfile=configs/paper.flags`.

Self-supervised multi-frame training (paper §3–4) on TFRecords written by `tools.preprocess`
(videos) or `tools.make_synthetic` (the synthetic ground-truth set). Re-running the same command
resumes from the last checkpoint in `--output_dir`. TensorBoard: `tensorboard --logdir OUTPUT_DIR`.
"""
import dataclasses
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

FLAGS = flags.FLAGS
# Every default comes from the config dataclasses (one source of defaults).
_MODEL_DEFAULTS = model_lib.ModelConfig()
_TRAIN_DEFAULTS = train_config_lib.TrainConfig()
# Data and output.
flags.DEFINE_string('data', None, 'TFRecord glob(s), comma separated, e.g. out/data/train-*.',
                    required=True)
flags.DEFINE_string('output_dir', None, 'Checkpoints, TensorBoard logs, run description.',
                    required=True)
flags_common.define_asset_flag('default: the default asset, ICT-FaceKit when available else '
                               'mediapipe. A resumed run reuses OUTPUT_DIR/assets.npz.')
flags.DEFINE_integer('batch_size', _TRAIN_DEFAULTS.batch_size,
                     'Multi-frame samples per step (global, all replicas).')
flags.DEFINE_integer('num_frames', _TRAIN_DEFAULTS.num_frames, 'M, frames per sample (paper: 4).')
# Model.
flags.DEFINE_integer('shape_dim', _MODEL_DEFAULTS.shape_dim,
                     'g, learned graph shape modes (paper 500).')
flags.DEFINE_integer('albedo_dim', _MODEL_DEFAULTS.albedo_dim,
                     'Learned albedo modes (paper 500).')
flags.DEFINE_integer('image_size', _MODEL_DEFAULTS.image_size[0],
                     'Side of the square frames of the data (multiple of 16, '
                     '64–240; 240 = the paper). Part of the saved model config.')
flags.DEFINE_float('focal_length', None, 'Focal length in pixels of the crop (default: '
                   '1000 · image_size / 240, the 240 crop\'s field of view at f = 1000 px).')
flags.DEFINE_float('camera_distance', None,
                   'If set, an untrained network\'s translation is (0, 0, -distance) mm; default: '
                   'the template\'s landmark centre on the optical axis where it fills the crop '
                   'as the data\'s crops are cut.')
flags.DEFINE_enum('visibility', _MODEL_DEFAULTS.visibility, ['backface', 'zbuffer'],
                  'Vertex visibility for the photometric term (paper: back-face culling).')
flags.DEFINE_enum('photometric_region', _MODEL_DEFAULTS.photometric_region, ['face', 'all'],
                  'Vertices in the photometric term: the asset\'s face mask or all.')
flags.DEFINE_float('shape_init_stddev', _MODEL_DEFAULTS.shape_init_stddev,
                   'Initial stddev of Θs (mm per unit α).')
flags.DEFINE_float('albedo_init_stddev', _MODEL_DEFAULTS.albedo_init_stddev,
                   'Initial stddev of Θa.')
flags.DEFINE_float('shape_basis_scale', _MODEL_DEFAULTS.shape_basis_scale,
                   'Units (mm) in which Θs is stored: with Adam, a '
                   'learning-rate multiplier for the learned shape basis (ours; 1 = none).')
flags.DEFINE_float('albedo_basis_scale', _MODEL_DEFAULTS.albedo_basis_scale,
                   'Units in which Θa is stored: with Adam, a '
                   'learning-rate multiplier for the learned albedo basis (ours; 1 = none).')
flags.DEFINE_integer('network_input_size', _MODEL_DEFAULTS.network_input_size,
                     'Ours: the network area-resizes frames to this '
                     'side (0: the data\'s, 240 = Tables 1–3); for CPU-scale studies.',
                     lower_bound=0)
flags.DEFINE_float('width_multiplier', _MODEL_DEFAULTS.width_multiplier,
                   'Ours: scales every hidden width of Tables 1–3 '
                   '(1.0 = the tables).')
flags.DEFINE_enum('initializer', _MODEL_DEFAULTS.initializer,
                  ['he', 'glorot'], 'Kernel init of the network\'s ReLU '
                  'rows: he (variance-preserving) or glorot (Keras\' default; the old code).')
flags.DEFINE_boolean('orthogonal_complement', _MODEL_DEFAULTS.orthogonal_complement,
                     'The OCL on the learned identity basis '
                     '(paper eq. 4–5); --noorthogonal_complement is an ablation.')
flags.DEFINE_boolean('identity_standardization', _MODEL_DEFAULTS.identity_standardization,
                     'Ours (off = the paper): α and β leave Table 2 through a batch '
                     'standardisation (mean 0, spread 1 over the batch\'s people; moving '
                     'averages at test time), so the learned bases alone set the identity\'s '
                     'size (docs/training.md "Unit-scale identity parameters").')
# Schedule and optimisation.
flags.DEFINE_integer('pretrain_steps', _TRAIN_DEFAULTS.pretrain_steps,
                     'Stage 0: expression pre-training steps.')
flags.DEFINE_integer('train_steps', _TRAIN_DEFAULTS.train_steps, 'Stage 1: end-to-end steps.')
flags.DEFINE_integer('finetune_steps', _TRAIN_DEFAULTS.finetune_steps,
                     'Stage 2: albedo fine-tuning steps.')
flags.DEFINE_float('learning_rate', _TRAIN_DEFAULTS.learning_rate, 'Adam learning rate.')
flags.DEFINE_float('albedo_learning_rate', _TRAIN_DEFAULTS.albedo_learning_rate,
                   'Learning rate of Θa and r̄ in stage 2 (the paper\'s larger rate).')
flags.DEFINE_alias('reflectance_learning_rate', 'albedo_learning_rate')   # the old name
flags.DEFINE_float('identity_path_lr_multiplier', _TRAIN_DEFAULTS.identity_path_lr_multiplier,
                   'Learning rate of Table 1 conv4/conv5 '
                   'and Table 2, relative to --learning_rate.')
flags.DEFINE_float('shape_basis_lr_multiplier', _TRAIN_DEFAULTS.shape_basis_lr_multiplier,
                   'Learning rate of Θs relative to '
                   '--learning_rate (on top of --shape_basis_scale).')
flags.DEFINE_float('albedo_lr_multiplier', _TRAIN_DEFAULTS.albedo_lr_multiplier,
                   'Learning rate of Θa and r̄ in stages 0–1 '
                   'relative to --learning_rate.')
flags.DEFINE_float('lr_decay_fraction', _TRAIN_DEFAULTS.lr_decay_fraction,
                   'Every rate decays (half cosine) over this last '
                   'fraction of each stage (0: constant).')
flags.DEFINE_float('lr_decay_floor', _TRAIN_DEFAULTS.lr_decay_floor,
                   'Factor reached at the end of each stage\'s decay.')
flags.DEFINE_float('weight_average_decay', _TRAIN_DEFAULTS.weight_average_decay,
                   'Ours (0: off, the paper): also keep an exponential moving average of the '
                   'weights (every float variable) with this decay (e.g. 0.999), saved in the '
                   'checkpoints; export, evaluation and reconstruction then use the averaged '
                   'weights.',
                   lower_bound=0.0, upper_bound=0.99999)
flags.DEFINE_float('gradient_clip_norm', _TRAIN_DEFAULTS.gradient_clip_norm,
                   'Global gradient norm clip (0: off).')
flags.DEFINE_enum('pretrain_identity_path', _TRAIN_DEFAULTS.pretrain_identity_path,
                  list(train_config_lib.PRETRAIN_IDENTITY_PATH),
                  'Stage 0 and the identity path (Table 1 conv4/conv5, Table 2): freeze its '
                  'variables; or also stop Table 3\'s gradient through α, β; or also freeze '
                  'Table 1\'s conv1–conv3, so that α, β stay exactly as initialised; or train it '
                  '(the old code). docs/training.md "Stage 0 and the identity path".')
flags.DEFINE_boolean('stop_identity_gradient', _TRAIN_DEFAULTS.stop_identity_gradient,
                     'Stages 1–2: Table 3 reads α, β '
                     'through tf.stop_gradient (identity learns only from the face model).')
flags.DEFINE_boolean('identity_output_init', _TRAIN_DEFAULTS.identity_output_init,
                     'Legacy, not recommended (docs/network.md "Initialisation"): when '
                     'end-to-end training starts, rescale Table 2\'s last FC '
                     'so that α and β have mean 0 and spread 1 over the first '
                     '--identity_init_samples training samples.')
flags.DEFINE_integer('identity_init_samples', _TRAIN_DEFAULTS.identity_init_samples,
                     'Samples for --identity_output_init (≥ 2).',
                     lower_bound=2)
# Loss weights (supplement §2) and eq. 11 constants.
flags.DEFINE_float('lambda_photometric', None, 'λpho (default 1.6/|V̄|).')
flags.DEFINE_float('lambda_landmark', _TRAIN_DEFAULTS.lambda_landmark, 'λlan.')
flags.DEFINE_float('lambda_smoothness', _TRAIN_DEFAULTS.lambda_smoothness, 'λsmo.')
flags.DEFINE_float('lambda_sparsity', _TRAIN_DEFAULTS.lambda_sparsity, 'λspa.')
flags.DEFINE_float('lambda_expression', _TRAIN_DEFAULTS.lambda_expression, 'λble.')
flags.DEFINE_float('lambda_identity_mean', _TRAIN_DEFAULTS.lambda_identity_mean,
                   'Ours (0 = the paper): weight of the batch-mean identity deformation term '
                   '(losses.identity_mean_loss on graph displacements in cm, like the smoothness '
                   'term; per replica under tf.distribute; docs/training.md '
                   '"Identity-mean prior").')
flags.DEFINE_float('lambda_dense_points', _TRAIN_DEFAULTS.lambda_dense_points,
                   'Ours (0 = the paper): weight of the dense 2D point term, the landmark term\'s '
                   'form over the records\' dense points (tools.make_synthetic --dense_points; '
                   'docs/data.md "Dense 2D points"). > 0 needs records that have them.')
flags.DEFINE_float('lambda_depth_spread', _TRAIN_DEFAULTS.lambda_depth_spread,
                   'Ours (0 = the paper): weight of the spread of the samples\' log camera '
                   'distances over the batch (losses.depth_spread_loss; per replica under '
                   'tf.distribute), so that a person\'s size goes to the identity model rather '
                   'than to the pose\'s depth (docs/training.md '
                   '"Depth-spread prior").')
flags.DEFINE_float('chroma_eta', _TRAIN_DEFAULTS.chroma_eta, 'η of the chroma weights (eq. 11).')
flags.DEFINE_float('sparsity_exponent', _TRAIN_DEFAULTS.sparsity_exponent, 'p of eq. 11.')
# Distribution, checkpoints, logging.
flags.DEFINE_enum('strategy', _TRAIN_DEFAULTS.strategy, ['default', 'mirrored', 'multi_worker'],
                  'tf.distribute strategy (multi_worker reads TF_CONFIG).')
flags.DEFINE_integer('num_cpu_devices', _TRAIN_DEFAULTS.num_cpu_devices,
                     'Split the CPU into N logical devices (testing the '
                     'mirrored path without GPUs).')
flags.DEFINE_integer('checkpoint_every', _TRAIN_DEFAULTS.checkpoint_every,
                     'Steps between checkpoints.')
flags.DEFINE_integer('keep_checkpoints', _TRAIN_DEFAULTS.keep_checkpoints, 'Checkpoints kept.')
flags.DEFINE_boolean('checkpoint_iterator', _TRAIN_DEFAULTS.checkpoint_iterator,
                     'Checkpoint the input iterator too, so a '
                     'resumed run sees exactly the data it would have seen.')
flags.DEFINE_integer('log_every', _TRAIN_DEFAULTS.log_every, 'Steps between progress lines.')
flags.DEFINE_integer('summary_every', _TRAIN_DEFAULTS.summary_every,
                     'Steps between scalar summaries.')
flags.DEFINE_integer('image_summary_every', _TRAIN_DEFAULTS.image_summary_every,
                     'Steps between image summaries (0: never).')
flags.DEFINE_integer('seed', _TRAIN_DEFAULTS.seed, 'Seed of initialisation and data order.')
flags.DEFINE_integer('shuffle_buffer', _TRAIN_DEFAULTS.shuffle_buffer,
                     'Records in the shuffle buffer.')
flags.DEFINE_string('identity_eval_data', _TRAIN_DEFAULTS.identity_eval_data,
                    'Held-out synthetic records (tools.make_synthetic '
                    'test split): every --identity_eval_every steps, TensorBoard identity/* and a '
                    'log line compare the learned identity with the true one on '
                    '--identity_eval_samples of them (mofl.evaluation.identity).')
flags.DEFINE_integer('identity_eval_every', _TRAIN_DEFAULTS.identity_eval_every,
                     'Steps between identity summaries.',
                     lower_bound=1)
flags.DEFINE_integer('identity_eval_samples', _TRAIN_DEFAULTS.identity_eval_samples,
                     'Held-out samples of the identity summaries.',
                     lower_bound=2)
flags.DEFINE_boolean('deterministic', False, 'Enable TF op determinism (bitwise-repeatable '
                     'runs, slower).')


def configs_from_flags():
    """(ModelConfig, TrainConfig) from the parsed flags."""
    focal_length = FLAGS.focal_length or camera_lib.crop_focal_length(FLAGS.image_size)
    model_config = model_lib.ModelConfig(
        shape_dim=FLAGS.shape_dim, albedo_dim=FLAGS.albedo_dim, focal_length=focal_length,
        image_size=(FLAGS.image_size, FLAGS.image_size),
        camera_distance=FLAGS.camera_distance, visibility=FLAGS.visibility,
        photometric_region=FLAGS.photometric_region, shape_init_stddev=FLAGS.shape_init_stddev,
        albedo_init_stddev=FLAGS.albedo_init_stddev, shape_basis_scale=FLAGS.shape_basis_scale,
        albedo_basis_scale=FLAGS.albedo_basis_scale,
        network_input_size=FLAGS.network_input_size, width_multiplier=FLAGS.width_multiplier,
        initializer=FLAGS.initializer, orthogonal_complement=FLAGS.orthogonal_complement,
        identity_standardization=FLAGS.identity_standardization)
    names = [f.name for f in dataclasses.fields(train_config_lib.TrainConfig)]
    train_config = train_config_lib.TrainConfig(**{n: getattr(FLAGS, n) for n in names})
    return model_config, train_config


def main(argv):
    del argv
    if FLAGS.image_size % 16 or not 64 <= FLAGS.image_size <= 240:
        logging.error('--image_size must be a multiple of 16 from 64 to 240, got %d',
                      FLAGS.image_size)
        return 2
    import tensorflow as tf  # imported after flag parsing so --help stays fast
    if FLAGS.deterministic:
        tf.config.experimental.enable_op_determinism()
    model_config, train_config = configs_from_flags()
    if train_config.total_steps <= 0:
        logging.error('Nothing to do: --pretrain_steps + --train_steps + --finetune_steps = 0')
        return 2
    run_asset = os.path.join(FLAGS.output_dir, 'assets.npz')
    try:
        if os.path.exists(run_asset):
            assets = assets_lib.FaceAssets.load(run_asset)
            logging.info('Resuming with the run\'s own asset %s (source %s)', run_asset,
                         assets.mesh.source)
        else:
            assets, name = default_assets.load_asset(FLAGS.asset)
            logging.info('Using the face asset %s', name)
        model_config = model_lib.resolve_initial_translation(assets, model_config)
        run_dir_lib.check_resumed_model_config(FLAGS.output_dir, model_config)
        trainer = trainer_lib.Trainer(assets, model_config, train_config)
    except (assets_lib.AssetError, FileNotFoundError, ValueError) as e:
        logging.error('%s', e)
        return 1
    if trainer.is_chief:
        run_dir_lib.save_run_description(FLAGS.output_dir, assets, model_config, train_config)
    start = trainer.restore()
    logging.info('Training %d→%d steps on %s with %d replica(s); %d trainable parameters',
                 start, train_config.total_steps, FLAGS.data, trainer.num_replicas,
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
    sys.exit(app.run(main))
