"""`make demo`: the main job of mofl on its embedded default, end to end, on this CPU.

The CPU-scale configuration (docs/cpu_scale.md: 128² frames, Tables 1–3 at half
width, the default mesh decimated to ~2,500 vertices, g = a = 125):
1. Face asset: the default one (ICT-FaceKit when available, else mediapipe), decimated, with a
   preview.
2. Data: the synthetic ground-truth set (`tools.make_synthetic`, 128²), with a contact sheet.
3. Training: `python -m mofl.train --flagfile=configs/demo.flags` (about three minutes; the loss
   curve is plotted and its first/last values printed).
4. Export: a SavedModel (`tools.export_savedmodel`).
5. Reconstruction: the held-out landmark error (pixels of the 128² frames) and the learned
   identity against the true one (`mofl.evaluation.identity`), overlays of held-out synthetic
   samples, and `mofl.reconstruct` of a real photo (scikit-image's astronaut) from the
   SavedModel: OBJ/PLY/JSON/overlay.

The synthetic data are reused when present and training resumes from its checkpoint, so
re-running `make demo` continues where it stopped (asset, export and reconstructions are redone;
they take seconds). Data made with another build of the face asset (a demo of an earlier
version) is moved aside with its run (`data.staleN`, `run.staleN`) and made again.
"""
import csv
import os
import subprocess
import sys
import time

import numpy as np
from absl import app
from absl import flags
from absl import logging

from mofl import flags_common


def define_flags(flag_values=flags.FLAGS):
    """Defines the binary's flags in `flag_values`."""
    flags_common.define_flags(
        ('output_dir', 'num_identities', 'image_size', 'train_steps'), flag_values,
        defaults={'output_dir': 'out/demo', 'num_identities': 200, 'image_size': 128,
                  'train_steps': None},
        notes={'output_dir': 'Everything the demo makes.',
               'num_identities': '2 samples each, a quarter held out.',
               'image_size': 'Of the synthetic frames (configs/demo.flags trains on 128).',
               'train_steps': 'Default: the flag file\'s.'})
    flags.DEFINE_string('flagfile_train', 'configs/demo.flags', 'Training flag file.',
                        flag_values=flag_values)
    flags.DEFINE_integer('asset_vertices', 2500, 'The default asset is decimated to about this '
                         'many vertices (0: the full mesh).', flag_values=flag_values)
    flags.DEFINE_boolean('skip_training', False, 'Stop after the data (for quick looks).',
                         flag_values=flag_values)


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _banner(text):
    print(f'\n=== {text} ===', flush=True)


def _run(args, what):
    """Runs a mofl binary in a subprocess, streaming its output; raises on failure."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL=os.environ.get('TF_CPP_MIN_LOG_LEVEL', '2'),
               PYTHONUNBUFFERED='1')
    start = time.time()
    result = subprocess.run([sys.executable, '-m'] + args, cwd=ROOT, env=env)
    if result.returncode != 0:
        raise RuntimeError(f'{what} failed (exit code {result.returncode}): '
                           f'python -m {" ".join(args)}')
    print(f'[{what}: {time.time() - start:.0f} s]', flush=True)


def build_asset(out, flag_values):
    from mofl.facemodel import default_assets, preview
    _banner('1/5 face asset')
    source, ict_dir = default_assets.default_source()
    print(f'default asset source: {source}' + (f' ({ict_dir})' if ict_dir else
                                                ' (no ICT-FaceKit data found)'))
    assets = default_assets.load_default_assets(target_vertices=flag_values.asset_vertices)
    png = os.path.join(out, 'asset_preview.png')
    preview.write_preview(assets, png)
    print(f'{assets.mesh.num_vertices} vertices, {len(assets.mesh.triangles)} triangles, '
          f'{assets.graph.num_nodes} graph nodes, {assets.mesh.num_expressions} expressions '
          f'-> {png}')
    path = os.path.join(out, 'asset.npz')
    assets.save(path)
    return path


def _made_for(data, asset):
    """Whether the data's manifest names this asset's mesh (older manifests name none)."""
    from mofl.data import pipeline
    from mofl.facemodel import assets as assets_lib
    return (pipeline.read_manifest(data).get('asset_fingerprint')
            == assets_lib.FaceAssets.load(asset).mesh.fingerprint())


def make_data(out, asset, flag_values):
    _banner('2/5 synthetic ground-truth data')
    data = os.path.join(out, 'data')
    manifest = os.path.join(data, 'manifest.json')
    if os.path.exists(manifest) and not _made_for(data, asset):
        # A demo of an earlier version: its ground truth (and the run trained on it) belong to
        # another build of the face asset, so both start again.
        stale = [p for p in (data, os.path.join(out, 'run')) if os.path.exists(p)]
        print(f'{data} was made with another build of the face asset; moving '
              f'{", ".join(stale)} aside (*.stale) and starting again')
        for path in stale:
            os.replace(path, path + f'.stale{int(time.time())}')
    if os.path.exists(manifest):
        print(f'{data} exists; reusing it')
    else:
        _run(['tools.make_synthetic', f'--output_dir={data}', f'--asset={asset}',
              f'--num_identities={flag_values.num_identities}',
              f'--image_size={flag_values.image_size}',
              f'--contact_sheet={os.path.join(out, "synthetic_contact_sheet.png")}'],
             'make_synthetic')
    return data


def train(out, asset, data, flag_values):
    _banner('3/5 training (configs/demo.flags)')
    run_dir = os.path.join(out, 'run')
    args = ['mofl.train', f'--flagfile={flag_values.flagfile_train}',
            f'--data={os.path.join(data, "train-*")}', f'--output_dir={run_dir}',
            f'--asset={asset}']
    if flag_values.train_steps is not None:
        args.append(f'--train_steps={flag_values.train_steps}')
    _run(args, 'training')
    plot_losses(run_dir, os.path.join(out, 'loss_curve.png'))
    return run_dir


def plot_losses(run_dir, png):
    """Plots losses.csv and prints the first and last total loss of each stage."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    with open(os.path.join(run_dir, 'losses.csv')) as f:
        rows = list(csv.DictReader(f))
    steps = [int(r['step']) for r in rows]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    window = 20
    for ax, key in zip(axes, ('total', 'photometric', 'landmark')):
        values = [float(r[key]) for r in rows]
        ax.plot(steps, values, color='tab:blue', alpha=0.35, label='per step')
        if len(values) >= window:
            smooth = np.convolve(values, np.ones(window) / window, mode='valid')
            ax.plot(steps[window - 1:], smooth, color='tab:blue', label=f'mean of {window}')
        ax.legend()
        ax.set_title(key)
        ax.set_xlabel('step')
        ax.set_yscale('log')
    fig.tight_layout()
    fig.savefig(png, dpi=80)
    plt.close(fig)
    for stage in sorted({r['stage'] for r in rows}):
        sub = [r for r in rows if r['stage'] == stage]
        head, tail = sub[:10], sub[-10:]
        mean = lambda rs, k: sum(float(r[k]) for r in rs) / len(rs)
        print(f'stage {stage}: steps {sub[0]["step"]}..{sub[-1]["step"]}: total loss '
              f'{mean(head, "total"):.4g} (mean of first 10) -> {mean(tail, "total"):.4g} '
              f'(mean of last 10); landmark {mean(head, "landmark"):.4g} -> '
              f'{mean(tail, "landmark"):.4g}; photometric {mean(head, "photometric"):.4g} -> '
              f'{mean(tail, "photometric"):.4g}')
    print(f'loss curve -> {png}')


def export(out, run_dir):
    _banner('4/5 SavedModel export')
    saved = os.path.join(out, 'savedmodel')
    _run(['tools.export_savedmodel', f'--checkpoint_dir={run_dir}', f'--output_dir={saved}'],
         'export')
    return saved


def reconstruct(out, run_dir, data):
    _banner('5/5 reconstruction of held-out synthetic samples')
    from mofl import run_dir as run_dir_lib
    from mofl.data import pipeline
    from mofl.evaluation import identity
    from mofl.render import overlay
    assets, model, step = run_dir_lib.load_run(run_dir)
    held_out = pipeline.load_ground_truth_samples(os.path.join(data, 'test-*'), 64, 4)
    stats = identity.measure_identity(model, held_out, assets.mesh.face_mask)
    size = model.config.image_size[0]
    print(f'held-out landmark error: {stats["landmark_px"]:.2f} px on {size}² frames '
          f'({stats["landmark_px"] * 240 / size:.1f} px at 240²), {stats["num_samples"]} '
          'samples × 4 frames')
    print(f'held-out learned identity: {stats["identity_mm"]:.2f} mm rigid / '
          f'{stats["identity_mm_scale"]:.2f} mm with scale against the true neutral mesh '
          f'(the template: {stats["template_mm"]:.2f} / {stats["template_mm_scale"]:.2f} mm); '
          f'cosine to the true offsets {stats["cosine"]:.2f}')
    dataset = pipeline.make_dataset(os.path.join(data, 'test-*'), batch_size=1, num_frames=4,
                                    shuffle=False, repeat=False)
    rows = []
    for batch in dataset.take(3):
        frames = batch['images'][0]
        outputs = model(batch['images'])
        rendered = model.render_sample(outputs, background=frames)
        for f in range(frames.shape[0]):
            frame = overlay.draw_landmarks(frames[f].numpy(), outputs['landmarks'][0, f].numpy())
            rows.append(overlay.render_panels(frame, rendered, index=f, labels=not rows))
    png = os.path.join(out, 'reconstructions.png')
    overlay.save_png(png, overlay.stack_rows(rows))
    print(f'trained model (step {step}) on 3 held-out samples × 4 frames -> {png}')


def reconstruct_photo(out, saved):
    from mofl import sample_data
    photo_dir = os.path.join(out, 'astronaut')
    _run(['mofl.reconstruct', f'--model={saved}', f'--input={sample_data.astronaut_path()}',
          f'--output_dir={photo_dir}'], 'reconstruct (astronaut photo)')


def main(argv, flag_values=flags.FLAGS):
    """Runs the demo as the flags in `flag_values` say; returns the exit status."""
    from mofl import startup
    startup.quiet_tensorflow()
    del argv
    out = os.path.abspath(flag_values.output_dir)
    os.makedirs(out, exist_ok=True)
    start = time.time()
    try:
        asset = build_asset(out, flag_values)
        data = make_data(out, asset, flag_values)
        if not flag_values.skip_training:
            run_dir = train(out, asset, data, flag_values)
            saved = export(out, run_dir)
            reconstruct(out, run_dir, data)
            reconstruct_photo(out, saved)
    except RuntimeError as e:
        logging.error('%s', e)
        return 1
    print(f'\ndemo finished in {time.time() - start:.0f} s; results in {out}')
    return 0


if __name__ == '__main__':
    define_flags()
    sys.exit(app.run(main))
