r"""Probe of identity learning: trains variants of FML on the same data and measures, layer by
layer, whether the identity path lives and what it learns (docs/training.md "Probing the identity
path").

    python -m tools.probe_identity --data='out/probe/data/train-*' \
        --test_data='out/probe/data/test-*' --output_dir=out/probe/runs \
        --old_checkout=/path/to/an/older/mofl/checkout --variants=old,freeze,stop_gradient

Every variant runs `python -m mofl.train` with the same data, batch, frames, schedule, seed and
loss settings (`COMMON_FLAGS` plus the flags given here); only the variant's own flags differ:

    old             the checkout given by --old_checkout, run with the settings its own
                    synthetic configuration used (--identity_output_init)
    freeze          this code: stage 0 freezes the identity path
    stop_gradient   this code: stage 0 also stops Table 3's gradient through α, β
    freeze_trunk    this code: stage 0 trains Table 3 only, α, β stay as initialised (the
                    default)
    glorot          this code with Keras' default initialisation (ablation)

A finished run is not retrained (mofl.train resumes and finds nothing to do). Each run is then
measured with this code on --num_test_samples held-out samples (people never trained on), at the
end of stage 0 (= the start of stage 1) and at its last checkpoint:

- α's spread across the held-out people (per-component SD, median over components) and |α| RMS;
- per identity-path row (Table 1 conv4, conv5; Table 2 conv1, conv2, fc1, fc2): the fraction of
  activations > 0 ("active") and of units that fire on at least one image ("alive");
- the held-out landmark error (px, RMS over the 66 points and M frames, mean over samples);
- the neutral identity mesh error (per-vertex RMSE after Procrustes over the face region, rigid
  and with scale, mm) against the same error of the plain template v̄.

Writes OUTPUT_DIR/probe.md (Markdown tables) and probe.json, and prints the tables.
"""
import json
import os
import subprocess
import sys
import time

from absl import app
from absl import flags
from absl import logging
import numpy as np

from mofl import flags_common


def define_flags(flag_values=flags.FLAGS):
    """Defines the binary's flags in `flag_values`."""
    flags_common.define_flags(
        ('data', 'output_dir'), flag_values, required=('data', 'output_dir'),
        notes={'data': 'Training records (tools.make_synthetic).',
               'output_dir': 'One run folder per variant, and the report.'})
    flags.DEFINE_string('test_data', None, 'Held-out TFRecord glob with ground truth.',
                        required=True, flag_values=flag_values)
    flags.DEFINE_list('variants', ['freeze'], 'Variants to train and measure (old, freeze, '
                      'stop_gradient, freeze_trunk, glorot).', flag_values=flag_values)
    flags.DEFINE_list('pretrain_only', [], 'Variants trained through stage 0 only (measured at '
                      'its end).', flag_values=flag_values)
    flags.DEFINE_string('old_checkout', None, 'A checkout of older mofl code for the "old" '
                        'variant.', flag_values=flag_values)
    flags_common.define_asset_flag('default: the default asset.', flag_values=flag_values)
    flags_common.define_flags(
        ('batch_size', 'num_frames', 'pretrain_steps', 'train_steps'), flag_values,
        defaults={'batch_size': 4, 'pretrain_steps': 200, 'train_steps': 1000},
        notes={'batch_size': 'Of every variant\'s training.'})
    flags.DEFINE_integer('num_test_samples', 64, 'Held-out samples measured.',
                         flag_values=flag_values)
    flags.DEFINE_list('train_flags', [], 'More mofl.train flags for every variant, e.g. '
                      '--learning_rate=2e-4 (without the leading dashes: learning_rate=2e-4).',
                      flag_values=flag_values)
    flags.DEFINE_list('new_flags', [], 'More mofl.train flags for this code\'s variants only.',
                      flag_values=flag_values)
    flags.DEFINE_boolean('train', True, 'Train (or resume) the runs before measuring.',
                         flag_values=flag_values)

# The settings of the synthetic Table 1 (short schedule), shared by every variant.
COMMON_FLAGS = ('--shape_dim=500', '--albedo_dim=500', '--lambda_expression=1e-3',
                '--shape_basis_scale=4', '--learning_rate=2e-4', '--finetune_steps=0',
                '--image_summary_every=0', '--summary_every=50', '--log_every=50',
                '--keep_checkpoints=20', '--seed=0')
VARIANT_FLAGS = {
    'old': ('--identity_output_init',),
    'freeze': ('--pretrain_identity_path=freeze',),
    'stop_gradient': ('--pretrain_identity_path=stop_gradient',),
    'freeze_trunk': ('--pretrain_identity_path=freeze_trunk',),
    'glorot': ('--initializer=glorot',),
}
IDENTITY_PATH_ROWS = ('table1/conv4', 'table1/medium_features', 'table2/conv1', 'table2/conv2',
                      'table2/fc1', 'table2/fc2')
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def train_command(variant, run_dir, flag_values):
    """(argv, cwd) of the mofl.train call of `variant`."""
    if variant not in VARIANT_FLAGS:
        raise ValueError(f'unknown variant {variant!r} (one of {", ".join(VARIANT_FLAGS)})')
    if variant == 'old':
        if not flag_values.old_checkout:
            raise ValueError('the "old" variant needs --old_checkout')
        cwd = os.path.abspath(flag_values.old_checkout)
    else:
        cwd = ROOT
    train_steps = 0 if variant in flag_values.pretrain_only else flag_values.train_steps
    argv = [sys.executable, '-m', 'mofl.train', f'--data={_absolute_globs(flag_values.data)}',
            f'--output_dir={os.path.abspath(run_dir)}', f'--batch_size={flag_values.batch_size}',
            f'--num_frames={flag_values.num_frames}',
            f'--pretrain_steps={flag_values.pretrain_steps}',
            f'--train_steps={train_steps}', f'--checkpoint_every={flag_values.pretrain_steps}',
            *COMMON_FLAGS, *VARIANT_FLAGS[variant]]
    argv += [f'--{f}' for f in flag_values.train_flags]
    if variant != 'old':
        argv += [f'--{f}' for f in flag_values.new_flags]
    argv.append(f'--asset={os.path.abspath(asset_path(flag_values))}')
    return argv, cwd


def _absolute_globs(globs):
    """Comma-separated globs made absolute (the old variant runs in another folder)."""
    return ','.join(os.path.abspath(g) for g in globs.split(','))


def asset_path(flag_values):
    """--asset when it names an .npz, else the asset it names (unset: the default asset) written
    once to OUTPUT_DIR/asset.npz, or asset-default-N.npz for --asset=default:N (every variant
    trains on the same asset)."""
    spec = flag_values.asset
    if spec and not (spec == 'default' or spec.startswith('default:')):
        return spec
    name = f"asset-{flag_values.asset.replace(':', '-')}.npz" if flag_values.asset else 'asset.npz'
    path = os.path.join(flag_values.output_dir, name)
    if not os.path.exists(path):
        from mofl.facemodel import default_assets
        default_assets.load_asset(flag_values.asset)[0].save(path)
    return path


def run_command(argv, cwd, env, log):
    """Runs `argv` in `cwd` with `env`, its output to the open file `log`; returns the exit
    status. (tests/test_probe_identity.py runs one variant's training in its own process.)"""
    return subprocess.run(argv, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT).returncode


def run_training(variant, run_dir, flag_values):
    """Runs (or resumes) one variant's training; returns its wall time in seconds."""
    argv, cwd = train_command(variant, run_dir, flag_values)
    os.makedirs(run_dir, exist_ok=True)
    env = dict(os.environ, PYTHONPATH=cwd, TF_CPP_MIN_LOG_LEVEL='2', PYTHONUNBUFFERED='1')
    logging.info('Training %s: %s (in %s)', variant, ' '.join(argv[1:]), cwd)
    start = time.time()
    with open(os.path.join(run_dir, 'train.log'), 'a') as log:
        returncode = run_command(argv, cwd, env, log)
    if returncode:
        raise RuntimeError(f'{variant}: mofl.train exited with {returncode}; see '
                           f'{run_dir}/train.log')
    return time.time() - start


def measure(run_dir, checkpoint, samples, face_mask):
    """Measurements of one checkpoint on the held-out samples (see the module docstring)."""
    import tensorflow as tf
    from mofl import run_dir as run_dir_lib
    from mofl.evaluation import identity as identity_lib
    _, model, step = run_dir_lib.load_run(run_dir, checkpoint)
    alphas, activations, landmark_rmse, identity = [], {r: [] for r in IDENTITY_PATH_ROWS}, [], []
    for start in range(0, len(samples['images']), 8):
        images = tf.constant(samples['images'][start:start + 8])
        params = model.network(images, return_activations=True)
        acts = params.pop('activations')
        for row in IDENTITY_PATH_ROWS:
            value = acts[row].numpy()      # Table 1 rows: frames folded into the batch
            activations[row].append(value.reshape(len(images), -1, value.shape[-1]))
        outputs = model.form_image(params)
        alphas.append(params['shape_params'].numpy())
        landmark_rmse += identity_lib.landmark_rmse_px(
            outputs['landmarks'].numpy(), samples['landmarks'][start:start + 8]).tolist()
        identity.append(model.face_model.identity_vertices(params['shape_params']).numpy())
    stats = identity_lib.identity_statistics(
        np.concatenate(identity), samples['gt_vertices'], model.face_model.template.numpy(),
        face_mask, alpha=np.concatenate(alphas))
    result = {
        'step': step,
        'alpha_spread': stats['alpha_spread'],
        'alpha_rms': stats['alpha_rms'],
        'landmark_px': float(np.mean(landmark_rmse)),
        'identity_mm': stats['identity_mm'],
        'identity_mm_scale': stats['identity_mm_scale'],
        'template_identity_mm': stats['template_mm'],
        'template_identity_mm_scale': stats['template_mm_scale'],
        'active': {}, 'alive': {},
    }
    for row, chunks in activations.items():
        value = np.concatenate(chunks)              # [N, positions (or frames·positions), C]
        firing = value > 0
        result['active'][row] = float(firing.mean())
        result['alive'][row] = float(firing.any(axis=0).mean())
    return result


def stage_checkpoints(run_dir):
    """(end-of-stage-0 checkpoint or None, last checkpoint) prefixes of a run."""
    import tensorflow as tf
    with open(os.path.join(run_dir, 'train_config.json')) as f:
        pretrain = json.load(f)['pretrain_steps']
    directory = os.path.join(run_dir, 'checkpoints')
    last = tf.train.latest_checkpoint(directory)
    start = os.path.join(directory, f'ckpt-{pretrain}')
    has_start = tf.io.gfile.exists(start + '.index')
    return (start if has_start and start != last else None), last


def markdown(results):
    """Two tables: the figures per variant and checkpoint, then the active-unit fractions."""
    lines = ['| Variant | Step | α spread (median SD) | α RMS | Landmarks (px) | '
             'Identity rigid (mm) | Template rigid (mm) | Identity scale (mm) | '
             'Template scale (mm) | Train wall (min) |', '|' + ' --- |' * 10]
    for variant, r in results.items():
        for m in r['measurements']:
            lines.append(
                f'| {variant} | {m["step"]} | {m["alpha_spread"]:.4g} | {m["alpha_rms"]:.4g} | '
                f'{m["landmark_px"]:.2f} | {m["identity_mm"]:.3f} | '
                f'{m["template_identity_mm"]:.3f} | {m["identity_mm_scale"]:.3f} | '
                f'{m["template_identity_mm_scale"]:.3f} | {r["train_minutes"]:.1f} |')
    lines += ['', '| Variant | Step | ' + ' | '.join(IDENTITY_PATH_ROWS) + ' |',
              '|' + ' --- |' * (2 + len(IDENTITY_PATH_ROWS))]
    for variant, r in results.items():
        for m in r['measurements']:
            cells = [f'{100 * m["active"][row]:.0f} % ({100 * m["alive"][row]:.0f} %)'
                     for row in IDENTITY_PATH_ROWS]
            lines.append(f'| {variant} | {m["step"]} | ' + ' | '.join(cells) + ' |')
    lines += ['', 'Active: fraction of activations > 0; in brackets, of units firing on at least '
              'one held-out image.']
    return '\n'.join(lines) + '\n'


def main(argv, flag_values=flags.FLAGS):
    """Trains and measures as the flags in `flag_values` say; returns the exit status."""
    from mofl import startup
    startup.quiet_tensorflow()
    del argv
    from mofl.data import pipeline
    from mofl.facemodel import assets as assets_lib
    os.makedirs(flag_values.output_dir, exist_ok=True)
    try:
        for variant in flag_values.variants:   # refuse unknown variants before any long work
            train_command(variant, os.path.join(flag_values.output_dir, variant), flag_values)
        results = {}
        for variant in flag_values.variants:
            run_dir = os.path.join(flag_values.output_dir, variant)
            minutes = run_training(variant, run_dir, flag_values) / 60 if flag_values.train else 0.0
            results[variant] = {'run_dir': run_dir, 'train_minutes': minutes}
    except (ValueError, RuntimeError) as e:
        logging.error('%s', e)
        return 1
    assets = assets_lib.FaceAssets.load(asset_path(flag_values))
    samples = pipeline.load_ground_truth_samples(flag_values.test_data,
                                                 flag_values.num_test_samples,
                                                 flag_values.num_frames)
    people = len(set(samples['identity'].tolist()))
    logging.info('Measuring on %d held-out samples of %d people', len(samples['images']), people)
    for variant, r in results.items():
        r['measurements'] = []
        for checkpoint in stage_checkpoints(r['run_dir']):
            if checkpoint is not None:
                r['measurements'].append(measure(r['run_dir'], checkpoint, samples,
                                                 assets.mesh.face_mask))
                logging.info('%s %s: %s', variant, checkpoint, r['measurements'][-1])
    table = markdown(results) + (f'\n{len(samples["images"])} held-out samples of {people} '
                                 f'people, M = {flag_values.num_frames} frames each.\n')
    with open(os.path.join(flag_values.output_dir, 'probe.md'), 'w') as f:
        f.write(table)
    with open(os.path.join(flag_values.output_dir, 'probe.json'), 'w') as f:
        json.dump(results, f, indent=2)
    print(table)
    return 0


if __name__ == '__main__':
    define_flags()
    sys.exit(app.run(main))
