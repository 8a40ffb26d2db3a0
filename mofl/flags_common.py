"""The one flag layer: every flag that more than one binary takes, and every flag filled into a
config dataclass, is specified here once — one name, one type, one help text, one default.

A binary (`mofl.train`, `mofl.evaluate`, `mofl.reconstruct`, `tools/*`) defines its flags in a
function `define_flags(flag_values=flags.FLAGS)`, called only when it runs as a program (so that
importing it claims no flag name, and a test can define it into a fresh `flags.FlagValues`),
and reads them in `main(argv, flag_values=flags.FLAGS)`. It takes a shared flag with
`define_flags(names, flag_values, ...)` (groups of names below: `DATA_FLAGS`, `MODEL_FLAGS`,
`TRAINING_FLAGS`, ...), and defines locally, with `flags.DEFINE_*`, only the flags no other
binary has. tests/test_flags.py fails when one name is defined in two places.

A config dataclass is built from the parsed flags with `config_from_flags`: each field takes the
flag of its name (`ModelConfig`, `TrainConfig`, `PreprocessConfig`, `ReconstructConfig`,
`ModesConfig`).

Conventions:
- Defaults: a flag's default is its config field's when the binary passes its config (class or
  instance) as `config=` (so `TrainConfig` and `ModelConfig` hold the training defaults once),
  else the one given here. A binary may give a flag another default (`defaults=`) where its job
  differs — never another name, type or meaning: `--batch_size` (mofl.train 2, bench_render and
  make_synthetic 8 renderer images per call, bench_train 1, probe_identity 4),
  `--train_steps`/`--pretrain_steps` (bench_train, demo, probe_identity), `--image_size`
  (demo 128), `--num_identities` (demo 200, make_synthetic 24, synthetic_benchmark 2,500 or
  8 with --quick), `--test_fraction` (preprocess 0.05, make_synthetic 0.25,
  synthetic_benchmark 0.1), `--dense_points` (preprocess 468, else 0), `--num_workers`
  (synthetic_benchmark 2), `--max_samples`, `--max_frames`, `--num_samples`, `--focal_length`
  (render_preview 1000 px), `--learning_rate` and `--lambda_expression` (direct_fit's own
  optimisation), `--output_dir` (demo and synthetic_benchmark write under out/ by default).
  What the flag means for that binary is appended to the shared help (`notes=`).
- Outputs: `--output_dir` is a folder the binary fills (runs, records, meshes, a SavedModel,
  a benchmark); `--output` is one file path, or a path prefix of files written beside each
  other (OUTPUT.md and OUTPUT.json). No binary takes both.
- `--dense_points` is a count everywhere: dense 2D points stored per frame besides the 66
  landmarks (0: none, the paper's records). tools.preprocess stores all of FaceMesh's 468
  points or none (`--dense_points=468`, its default, or 0); it was a boolean before.
- `--asset` (face asset, resolved by `mofl.facemodel.default_assets.load_asset`) means the same
  everywhere: `--asset=PATH.npz`, `--asset=default` and `--asset=default:N`; binaries add what
  they do without it (`define_asset_flag`).

This module is in the base layer: it imports absl and the paper's sizes only, never a config
class (a binary passes its config in).
"""
import dataclasses
import sys
from typing import Any, Optional, Tuple

from absl import flags

from mofl import paper_constants

ASSET_HELP = ('Face asset: an asset .npz (tools.build_assets), default, or default:N (the '
              'default asset decimated to about N vertices)')

# The number of FaceMesh points tools.preprocess stores per frame with --dense_points (mediapipe
# index space; `mofl.facemodel.assets.NUM_MEDIAPIPE_POINTS`).
FACEMESH_POINTS = 468


@dataclasses.dataclass(frozen=True)
class Flag:
    """One flag's specification.

    Attributes:
        name: the flag's name.
        kind: 'string', 'integer', 'float', 'boolean', 'enum' or 'list'.
        help: the help text every binary shows (a binary may append a note).
        default: the default when the binary's config has no field of this name and the binary
            gives none.
        enum_values: the values of an 'enum' flag.
        lower_bound: smallest accepted value of a number flag (None: no bound).
        upper_bound: largest accepted value of a number flag (None: no bound).
        aliases: other names of the flag (old names kept working).
    """
    name: str
    kind: str
    help: str
    default: Any = None
    enum_values: Tuple[str, ...] = ()
    lower_bound: Optional[float] = None
    upper_bound: Optional[float] = None
    aliases: Tuple[str, ...] = ()


_SPECS = (
    # Face asset.
    Flag('asset', 'string', ASSET_HELP + '.'),
    Flag('ict_dir', 'string', 'ICT-FaceKit FaceXModel folder (.obj or .obj.gz files, '
         'identity000..099 for the ICT identity model); default: $MOFL_ICT_DIR or '
         '../shared/ict-facekit.'),
    # Data: records read.
    Flag('data', 'string', 'TFRecord glob(s) of multi-frame samples, comma separated '
         '(tools.preprocess or tools.make_synthetic output), e.g. out/data/train-*.'),
    Flag('num_frames', 'integer', 'M, frames per multi-frame sample (paper: 4).', default=4),
    Flag('image_size', 'integer', 'Side of the square frames in pixels (240 = the paper; '
         'training takes a multiple of 16 from 64 to 240).', default=paper_constants.IMAGE_SIZE),
    Flag('batch_size', 'integer', 'Samples or images processed together: multi-frame samples '
         'per training step (global, all replicas), or images per renderer call.'),
    Flag('seed', 'integer', 'Seed of the random draws.', default=0),
    Flag('max_samples', 'integer', 'At most this many samples (0: all).', default=0),
    Flag('num_samples', 'integer', 'Samples used (the first ones in file order).'),
    # Data: records and videos written.
    Flag('num_identities', 'integer', 'Synthetic identities.'),
    Flag('test_fraction', 'float', 'Fraction of identities in the test split.'),
    Flag('num_shards', 'integer', 'Shards of the output (the NNNNN of *-of-NNNNN files).',
         default=1),
    Flag('jpeg_quality', 'integer', 'JPEG quality of the stored frames.', default=95),
    Flag('dense_points', 'integer', 'Dense 2D points stored per frame besides the 66 landmarks '
         '(0: none, as in the paper).', default=0),
    Flag('contact_sheet', 'string', 'Write a PNG grid of frames with landmarks here.'),
    Flag('frames_per_clip', 'integer', 'Frames per synthetic video clip (Mitsuba 3).',
         default=8),
    Flag('spp', 'integer', 'Mitsuba samples per pixel of the synthetic videos.', default=16),
    Flag('num_workers', 'integer', 'tools.preprocess worker processes (each runs its own '
         'FaceMesh).', default=1),
    # Videos and faces in them.
    Flag('frame_stride', 'integer', 'Video: use every n-th decoded frame.', default=1),
    Flag('max_frames', 'integer', 'At most this many frames (0: all).', default=0),
    Flag('crop_scale', 'float', 'Crop side relative to the landmarks\' bounding box.'),
    Flag('min_detection_confidence', 'float', 'mediapipe face-detector threshold.',
         default=0.5),
    # Outputs.
    Flag('output_dir', 'string', 'Folder the results are written to.'),
    Flag('output', 'string', 'Output file path.'),
    # Trained models.
    Flag('model', 'string', 'SavedModel folder (saved_model.pb) or mofl.train output directory '
         '(model_config.json, checkpoints/).'),
    Flag('checkpoint', 'string', 'A checkpoint prefix, e.g. RUN_DIR/checkpoints/ckpt-400 '
         '(default: the run\'s latest).'),
    # ModelConfig.
    Flag('shape_dim', 'integer', 'g, learned graph shape modes (paper 500).',
         default=paper_constants.MODEL_SIZE),
    Flag('albedo_dim', 'integer', 'Learned albedo modes (paper 500).',
         default=paper_constants.MODEL_SIZE),
    Flag('focal_length', 'float', 'Focal length in pixels.'),
    Flag('camera_distance', 'float', 'If set, an untrained network\'s translation is '
         '(0, 0, -distance) mm; default: the template\'s landmark centre on the optical axis '
         'where it fills the crop as the data\'s crops are cut.'),
    Flag('visibility', 'enum', 'Vertex visibility for the photometric term (paper: back-face '
         'culling).', enum_values=('backface', 'zbuffer')),
    Flag('photometric_region', 'enum', 'Vertices in the photometric term: the asset\'s face '
         'mask or all.', enum_values=('face', 'all')),
    Flag('shape_init_stddev', 'float', 'Initial stddev of Θs (mm per unit α).'),
    Flag('albedo_init_stddev', 'float', 'Initial stddev of Θa.'),
    Flag('shape_basis_scale', 'float', 'Units (mm) in which Θs is stored: with Adam, a '
         'learning-rate multiplier for the learned shape basis (ours; 1 = none).'),
    Flag('albedo_basis_scale', 'float', 'Units in which Θa is stored: with Adam, a '
         'learning-rate multiplier for the learned albedo basis (ours; 1 = none).'),
    Flag('network_input_size', 'integer', 'Ours: the network area-resizes frames to this side '
         '(0: the data\'s, 240 = Tables 1–3); for CPU-scale studies.', lower_bound=0),
    Flag('width_multiplier', 'float', 'Ours: scales every hidden width of Tables 1–3 '
         '(1.0 = the tables).'),
    Flag('initializer', 'enum', 'Kernel init of the network\'s ReLU rows: he '
         '(variance-preserving) or glorot (Keras\' default; the old code).',
         enum_values=('he', 'glorot')),
    Flag('orthogonal_complement', 'boolean', 'The OCL on the learned identity basis (paper eq. '
         '4–5); --noorthogonal_complement is an ablation.'),
    Flag('identity_standardization', 'boolean', 'Ours (off = the paper): α and β leave Table 2 '
         'through a batch standardisation (mean 0, spread 1 over the batch\'s people; moving '
         'averages at test time), so the learned bases alone set the identity\'s size '
         '(docs/training.md "Unit-scale identity parameters").'),
    # TrainConfig: schedule and optimisation.
    Flag('pretrain_steps', 'integer', 'Stage 0: expression pre-training steps.'),
    Flag('train_steps', 'integer', 'Stage 1: end-to-end training steps.'),
    Flag('finetune_steps', 'integer', 'Stage 2: albedo fine-tuning steps.'),
    Flag('learning_rate', 'float', 'Adam learning rate.'),
    Flag('albedo_learning_rate', 'float', 'Learning rate of Θa and r̄ in stage 2 (the paper\'s '
         'larger rate).', aliases=('reflectance_learning_rate',)),
    Flag('identity_path_lr_multiplier', 'float', 'Learning rate of Table 1 conv4/conv5 and '
         'Table 2, relative to --learning_rate.'),
    Flag('shape_basis_lr_multiplier', 'float', 'Learning rate of Θs relative to '
         '--learning_rate (on top of --shape_basis_scale).'),
    Flag('albedo_lr_multiplier', 'float', 'Learning rate of Θa and r̄ in stages 0–1 relative '
         'to --learning_rate.'),
    Flag('lr_decay_fraction', 'float', 'Every rate decays (half cosine) over this last '
         'fraction of each stage (0: constant).'),
    Flag('lr_decay_floor', 'float', 'Factor reached at the end of each stage\'s decay.'),
    Flag('weight_average_decay', 'float', 'Ours (0: off, the paper): also keep an exponential '
         'moving average of the weights (every float variable) with this decay (e.g. 0.999), '
         'saved in the checkpoints; export, evaluation and reconstruction then use the '
         'averaged weights.', lower_bound=0.0, upper_bound=0.99999),
    Flag('gradient_clip_norm', 'float', 'Global gradient norm clip (0: off).'),
    Flag('pretrain_identity_path', 'enum', 'Stage 0 and the identity path (Table 1 '
         'conv4/conv5, Table 2): freeze its variables; or also stop Table 3\'s gradient '
         'through α, β; or also freeze Table 1\'s conv1–conv3, so that α, β stay exactly as '
         'initialised; or train it (the old code). docs/training.md "Stage 0 and the identity '
         'path".',
         enum_values=('freeze', 'stop_gradient', 'freeze_trunk', 'train')),
    Flag('stop_identity_gradient', 'boolean', 'Stages 1–2: Table 3 reads α, β through '
         'tf.stop_gradient (identity learns only from the face model).'),
    Flag('identity_output_init', 'boolean', 'Legacy, not recommended (docs/network.md '
         '"Initialisation"): when end-to-end training starts, rescale Table 2\'s last FC so that α '
         'and β have mean 0 and spread 1 over the first --identity_init_samples training '
         'samples.'),
    Flag('identity_init_samples', 'integer', 'Samples for --identity_output_init (≥ 2).',
         lower_bound=2),
    # TrainConfig: loss weights (supplement §2) and eq. 11 constants.
    Flag('lambda_photometric', 'float', 'λpho (default 1.6/|V̄|).'),
    Flag('lambda_landmark', 'float', 'λlan.'),
    Flag('lambda_smoothness', 'float', 'λsmo.'),
    Flag('lambda_sparsity', 'float', 'λspa.'),
    Flag('lambda_expression', 'float', 'λble.'),
    Flag('lambda_identity_mean', 'float', 'Ours (0 = the paper): weight of the batch-mean '
         'identity deformation term (losses.identity_mean_loss on graph displacements in cm, '
         'like the smoothness term; per replica under tf.distribute; docs/training.md '
         '"Identity-mean prior").'),
    Flag('lambda_dense_points', 'float', 'Ours (0 = the paper): weight of the dense 2D point '
         'term, the landmark term\'s form over the records\' dense points (tools.make_synthetic '
         '--dense_points; docs/data.md "Dense 2D points"). > 0 needs records that have '
         'them.'),
    Flag('lambda_depth_spread', 'float', 'Ours (0 = the paper): weight of the spread of the '
         'samples\' log camera distances over the batch (losses.depth_spread_loss; per replica '
         'under tf.distribute), so that a person\'s size goes to the identity model rather '
         'than to the pose\'s depth (docs/training.md "Depth-spread prior").'),
    Flag('chroma_eta', 'float', 'η of the chroma weights (eq. 11).'),
    Flag('sparsity_exponent', 'float', 'p of eq. 11.'),
    # TrainConfig: distribution, checkpoints, logging.
    Flag('strategy', 'enum', 'tf.distribute strategy (multi_worker reads TF_CONFIG).',
         enum_values=('default', 'mirrored', 'multi_worker')),
    Flag('num_cpu_devices', 'integer', 'Split the CPU into N logical devices (testing the '
         'mirrored path without GPUs).'),
    Flag('checkpoint_every', 'integer', 'Steps between checkpoints.'),
    Flag('keep_checkpoints', 'integer', 'Checkpoints kept.'),
    Flag('checkpoint_iterator', 'boolean', 'Checkpoint the input iterator too, so a resumed run '
         'sees exactly the data it would have seen.'),
    Flag('log_every', 'integer', 'Steps between progress lines.'),
    Flag('summary_every', 'integer', 'Steps between scalar summaries.'),
    Flag('image_summary_every', 'integer', 'Steps between image summaries (0: never).'),
    Flag('shuffle_buffer', 'integer', 'Records in the shuffle buffer.'),
    Flag('identity_eval_data', 'string', 'Held-out synthetic records (tools.make_synthetic test '
         'split): every --identity_eval_every steps, TensorBoard identity/* and a log line '
         'compare the learned identity with the true one on --identity_eval_samples of them '
         '(mofl.evaluation.identity).'),
    Flag('identity_eval_every', 'integer', 'Steps between identity summaries.', lower_bound=1),
    Flag('identity_eval_samples', 'integer', 'Held-out samples of the identity summaries.',
         lower_bound=2),
    Flag('deterministic', 'boolean', 'Enable TF op determinism (bitwise-repeatable runs, '
         'slower).', default=False),
)

SPECS = {spec.name: spec for spec in _SPECS}

# Groups of names (a binary may take part of a group).
ASSET_FLAGS = ('asset', 'ict_dir')
DATA_FLAGS = ('data', 'num_frames', 'image_size', 'batch_size', 'seed', 'max_samples',
              'num_samples')
DATA_WRITING_FLAGS = ('num_identities', 'test_fraction', 'num_shards', 'jpeg_quality',
                      'dense_points', 'contact_sheet', 'frames_per_clip', 'spp', 'num_workers')
VIDEO_FLAGS = ('frame_stride', 'max_frames', 'crop_scale', 'min_detection_confidence')
OUTPUT_FLAGS = ('output_dir', 'output')
EVALUATION_FLAGS = ('model', 'checkpoint')
# ModelConfig's fields (image_size: the side of its square (H, W)) that mofl.train takes.
MODEL_FLAGS = ('shape_dim', 'albedo_dim', 'image_size', 'focal_length', 'camera_distance',
               'visibility', 'photometric_region', 'shape_init_stddev', 'albedo_init_stddev',
               'shape_basis_scale', 'albedo_basis_scale', 'network_input_size',
               'width_multiplier', 'initializer', 'orthogonal_complement',
               'identity_standardization')
# TrainConfig's fields (every one is a flag of mofl.train), less those of DATA_FLAGS and
# OUTPUT_FLAGS.
TRAINING_FLAGS = (
    'pretrain_steps', 'train_steps', 'finetune_steps', 'learning_rate', 'albedo_learning_rate',
    'identity_path_lr_multiplier', 'shape_basis_lr_multiplier', 'albedo_lr_multiplier',
    'lr_decay_fraction', 'lr_decay_floor', 'weight_average_decay', 'gradient_clip_norm',
    'pretrain_identity_path', 'stop_identity_gradient', 'identity_output_init',
    'identity_init_samples', 'lambda_photometric', 'lambda_landmark', 'lambda_smoothness',
    'lambda_sparsity', 'lambda_expression', 'lambda_identity_mean', 'lambda_dense_points',
    'lambda_depth_spread', 'chroma_eta', 'sparsity_exponent', 'strategy', 'num_cpu_devices',
    'checkpoint_every', 'keep_checkpoints', 'checkpoint_iterator', 'log_every',
    'summary_every', 'image_summary_every', 'shuffle_buffer', 'identity_eval_data',
    'identity_eval_every', 'identity_eval_samples', 'deterministic')

_MISSING = object()


def _calling_module():
    """The name under which a flag is filed: the first caller outside this module, or, for a
    module run as `python -m` (`__main__`), sys.argv[0] as absl names the main module."""
    frame = sys._getframe(1)  # pylint: disable=protected-access
    while frame is not None and frame.f_globals.get('__name__') == __name__:
        frame = frame.f_back
    caller = frame.f_globals.get('__name__', '') if frame is not None else ''
    return sys.argv[0] if caller == '__main__' else caller


def _config_default(config, name):
    """The default of field `name` of a dataclass (class or instance); _MISSING if none."""
    if config is None:
        return _MISSING
    if not isinstance(config, type):
        return getattr(config, name, _MISSING)
    for field in dataclasses.fields(config):
        if field.name == name:
            if field.default is not dataclasses.MISSING:
                return field.default
            if field.default_factory is not dataclasses.MISSING:
                return field.default_factory()
    return _MISSING


def define_flags(names, flag_values=flags.FLAGS, *, config=None, defaults=None, notes=None,
                 required=(), lower_bounds=None):
    """Defines the shared flags `names` in `flag_values`, filed under the calling module.

    Args:
        names: flag names of `SPECS` (e.g. a group such as `TRAINING_FLAGS`).
        flag_values: the FlagValues to define them in.
        config: a dataclass (class or instance) whose fields give the defaults of the flags of
            the same names (`image_size`: the first of a tuple), or None.
        defaults: {name: default} where the binary's default differs from the shared one.
        notes: {name: text} appended to the shared help (what the flag means for the binary).
        required: names that must be given.
        lower_bounds: {name: bound} where the binary accepts a smaller range than the shared
            flag.

    Returns:
        {name: flag holder}.
    """
    defaults, notes, lower_bounds = defaults or {}, notes or {}, lower_bounds or {}
    unknown = (set(defaults) | set(notes) | set(required) | set(lower_bounds)) - set(names)
    if unknown:
        raise ValueError(f'not among the flags defined here: {sorted(unknown)}')
    module_name = _calling_module()
    holders = {}
    for name in names:
        spec = SPECS[name]
        default = defaults.get(name, _MISSING)
        if default is _MISSING:
            default = _config_default(config, name)
            if isinstance(default, tuple):    # ModelConfig.image_size: (H, W) of square frames
                default = default[0]
        if default is _MISSING:
            default = spec.default
        note = notes.get(name)
        help_text = f'{spec.help} {note[0].upper()}{note[1:]}' if note else spec.help
        kwargs = dict(flag_values=flag_values, module_name=module_name,
                      required=name in required)
        if spec.kind == 'enum':
            holder = flags.DEFINE_enum(name, default, list(spec.enum_values), help_text,
                                       **kwargs)
        elif spec.kind in ('integer', 'float'):
            define = flags.DEFINE_integer if spec.kind == 'integer' else flags.DEFINE_float
            holder = define(name, default, help_text,
                            lower_bound=lower_bounds.get(name, spec.lower_bound),
                            upper_bound=spec.upper_bound, **kwargs)
        else:
            define = {'string': flags.DEFINE_string, 'boolean': flags.DEFINE_boolean,
                      'list': flags.DEFINE_list}[spec.kind]
            holder = define(name, default, help_text, **kwargs)
        for alias in spec.aliases:
            flags.DEFINE_alias(alias, name, flag_values=flag_values, module_name=module_name)
        holders[name] = holder
    return holders


def define_asset_flag(when_unset='', required=False, flag_values=flags.FLAGS):
    """Defines the string flag `--asset` (default None) with the shared help text.

    Args:
        when_unset: what the binary does without `--asset` (appended to the help text);
            '' for a required flag.
        required: whether the flag must be given.
        flag_values: the FlagValues to define it in.

    Returns:
        The flag holder.
    """
    notes = {'asset': when_unset} if when_unset else None
    return define_flags(['asset'], flag_values, notes=notes,
                        required=['asset'] if required else ())['asset']


def config_from_flags(config_class, flag_values=flags.FLAGS, **explicit):
    """An instance of dataclass `config_class` from the parsed flags.

    Each field takes the value of the flag of its name when `flag_values` has one (else its
    default); `explicit` fields are given as they are (values that are not a flag's own, e.g.
    ModelConfig's (H, W) image size).

    Args:
        config_class: the dataclass.
        flag_values: the parsed FlagValues.
        **explicit: field values set directly.

    Returns:
        The config.
    """
    values = {}
    for field in dataclasses.fields(config_class):
        if field.name not in explicit and field.name in flag_values:
            values[field.name] = flag_values[field.name].value
    return config_class(**values, **explicit)
