r"""Reproduces our synthetic Table 1 and supplement Table 4 end to end, with one command.

    python -m tools.synthetic_benchmark --output_dir=out/cpu_table1            # CPU scale
    python -m tools.synthetic_benchmark --output_dir=out/cpu_table1 --table4   # + Table 4
    python -m tools.synthetic_benchmark --output_dir=/tmp/bench --quick        # a tiny check
    python -m tools.synthetic_benchmark --config=paper --output_dir=out/table1 # paper network
    python -m tools.synthetic_benchmark --output_dir=out/cpu_dense \
        --table1_config=cpu_dense --dense_points=200   # with our deviations for identity
    python -m tools.synthetic_benchmark --realistic --output_dir=out/video \
        --table1_config=cpu_video                      # videos through the real preprocessing

Stages (each prints a progress line; each is skipped when its output exists, and trainings
resume from their checkpoints, so an interrupted benchmark continues where it stopped):
1. asset: `tools.build_assets` — CPU scale: the default source decimated to ~2,500 vertices with
   a 260-node graph; paper: the full mesh with the paper's 521 nodes.
2. data: `tools.make_synthetic` — 2,500 identities × 2 samples × 4 frames, 10 % of the
   identities held out (4,500 training and 500 test samples), 128² (CPU) or 240² (paper).
   With `--realistic` two stages instead: `tools.make_synthetic --videos` (2 clips of
   `--frames_per_clip` frames per person, drawn by Mitsuba 3 into 320×240 frames, ICT asset
   only) and `tools.preprocess` on that tree (mediapipe landmarks and dense points, crops,
   the train/test split by identity hash; ground truth only from the sidecars), then
   `tools.calibrate_detector` on the training records (where the detector puts its landmarks
   and dense points on the template, from the detections alone; `--nocalibrate_detector` skips
   it): the trainings use that calibrated copy of the asset.
3. reference fits: `tools.direct_fit` on held-out samples with the template and with the
   ground-truth identity model (the best a learned face model could do), on the asset the
   trainings use.
4. training: `mofl.train --flagfile=configs/{cpu_,synthetic_}table1.flags --num_frames=M` for
   M = 1, 2, 4, with held-out identity summaries in TensorBoard (`--table1_config` names another
   flags file, e.g. `cpu_dense`, which needs the data's `--dense_points`).
5. evaluation: `mofl.evaluate --dataset=synthetic` (rigid and with scale) → TABLE1.md/.json and
   TABLE1_scale.md/.json; `tools.identity_report` per run (α's spread, landmark error, learned vs
   true identity) → IDENTITY_m{M}.md/.json.
6. (--table4) `mofl.train --flagfile=configs/{cpu_,synthetic_}table4.flags` for the model sizes,
   `mofl.evaluate --dataset=photometric` → TABLE4.md/.json.
Finally every table is printed and collected in BENCHMARK.md; wall times of every stage are in
timings.json.
"""
import json
import os
import subprocess
import sys
import time

from absl import app
from absl import flags

from mofl import flags_common


def define_flags(flag_values=flags.FLAGS):
    """Defines the binary's flags in `flag_values`."""
    flags_common.define_flags(
        ('output_dir', 'num_identities', 'test_fraction', 'dense_points', 'frames_per_clip',
         'spp', 'num_workers'), flag_values,
        defaults={'output_dir': 'out/cpu_table1', 'test_fraction': 0.1, 'num_workers': 2},
        notes={'output_dir': 'The asset, data, runs and tables.',
               'num_identities': 'Default 2,500; quick: 8.',
               'dense_points': 'In the synthetic data (tools.make_synthetic --dense_points).',
               'frames_per_clip': 'With --realistic.', 'spp': 'With --realistic.',
               'num_workers': 'With --realistic.'})
    flags.DEFINE_enum('config', 'cpu', ['cpu', 'paper'], 'cpu: the CPU-scale configuration '
                      '(docs/cpu_scale.md); paper: the paper\'s network at 240².',
                      flag_values=flag_values)
    flags.DEFINE_boolean('quick', False, 'A tiny version of every stage (seconds of training, a '
                         'handful of samples, the last two --train_frames, the first two '
                         '--model_sizes): checks the pipeline, not the method.',
                         flag_values=flag_values)
    flags.DEFINE_list('train_frames', ['1', '2', '4'], 'Training M of the Table 1 runs.',
                      flag_values=flag_values)
    flags.DEFINE_integer('eval_samples', 200, 'Held-out samples evaluated (0: all).',
                         flag_values=flag_values)
    flags.DEFINE_integer('fit_samples', 16, 'Held-out samples of the reference fits.',
                         flag_values=flag_values)
    flags.DEFINE_boolean('table4', False, 'Also train the model-size runs and the photometric '
                         'table.', flag_values=flag_values)
    flags.DEFINE_list('model_sizes', ['0', '10', '50', '125', '500'], 'Table 4 model sizes.',
                      flag_values=flag_values)
    flags.DEFINE_string('table1_config', None, 'configs/NAME.flags of the Table 1 runs '
                        '(default: cpu_table1 or synthetic_table1), e.g. cpu_dense (docs/data.md '
                        '"Dense 2D points").', flag_values=flag_values)
    flags.DEFINE_boolean('realistic', False, 'Data from synthetic videos drawn by Mitsuba 3 '
                         'through tools.preprocess (detector landmarks and dense points) instead '
                         'of frames drawn by mofl\'s own renderer with projected landmarks.',
                         flag_values=flag_values)
    flags.DEFINE_boolean('calibrate_detector', True, '--realistic: train on the asset calibrated '
                         'to the detector (tools.calibrate_detector).', flag_values=flag_values)


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# (flagfile prefix, image size, asset arguments) per configuration.
CONFIGS = {
    'cpu': ('cpu_', 128, ['--target_vertices=2500']),
    'paper': ('synthetic_', 240, []),
}
# What --quick changes: everything small; the flags files are still read, then overridden.
QUICK_TRAIN = ['--pretrain_steps=2', '--train_steps=3', '--finetune_steps=1', '--batch_size=2',
               '--checkpoint_every=3', '--log_every=1', '--image_summary_every=0',
               '--identity_eval_every=3', '--identity_eval_samples=2']


class StageError(RuntimeError):
    pass


def run_module(args, log):
    """Runs `python -m args` in the repository, its output to the open file `log`; returns its
    exit status. (tests/test_cpu_scale.py runs most stages in its own process through this.)"""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2', PYTHONUNBUFFERED='1')
    return subprocess.run([sys.executable, '-m'] + args, cwd=ROOT, env=env, stdout=log,
                          stderr=subprocess.STDOUT).returncode


class Benchmark:
    """Runs the stages in order, timing each and printing one progress line per stage."""

    def __init__(self, out, num_stages):
        self.out = out
        self.num_stages = num_stages
        self.stage = 0
        self.timings_path = os.path.join(out, 'timings.json')
        self.timings = {}
        if os.path.exists(self.timings_path):
            with open(self.timings_path) as f:
                self.timings = json.load(f)

    def run(self, key, description, args, done_file=None, log_name=None):
        """Runs `python -m args` (unless `done_file` exists); output goes to OUT/logs/."""
        self.stage += 1
        prefix = f'[{self.stage}/{self.num_stages}] {description}'
        if done_file and os.path.exists(done_file):
            print(f'{prefix}: already done ({os.path.relpath(done_file, self.out)})', flush=True)
            return
        print(f'{prefix} ...', flush=True)
        logs = os.path.join(self.out, 'logs')
        os.makedirs(logs, exist_ok=True)
        log_path = os.path.join(logs, f'{log_name or key}.log')
        start = time.time()
        with open(log_path, 'a') as log:
            returncode = run_module(args, log)
        seconds = time.time() - start
        self.timings[key] = round(self.timings.get(key, 0.0) + seconds, 1)
        self.save_timings()
        if returncode != 0:
            raise StageError(f'{description} failed (python -m {" ".join(args)} exited with '
                             f'{returncode}); see {log_path}')
        print(f'{prefix}: done in {seconds / 60:.1f} min', flush=True)

    def save_timings(self):
        with open(self.timings_path, 'w') as f:
            json.dump(self.timings, f, indent=1)


def _read(path):
    with open(path) as f:
        return f.read().strip()


def main(argv, flag_values=flags.FLAGS):
    FLAGS = flag_values  # pylint: disable=invalid-name
    del argv
    out = os.path.abspath(FLAGS.output_dir)
    os.makedirs(out, exist_ok=True)
    prefix, image_size, asset_args = CONFIGS[FLAGS.config]
    table1_config = FLAGS.table1_config or f'{prefix}table1'
    if not os.path.exists(os.path.join(ROOT, 'configs', f'{table1_config}.flags')):
        raise app.UsageError(f'--table1_config={table1_config}: no configs/{table1_config}.flags')
    quick = FLAGS.quick
    if quick:
        image_size = 64
    num_identities = FLAGS.num_identities or (8 if quick else 2500)
    train_frames = FLAGS.train_frames if not quick else FLAGS.train_frames[-2:]
    sizes = FLAGS.model_sizes if not quick else FLAGS.model_sizes[:2]
    eval_samples = 4 if quick else FLAGS.eval_samples
    fit_samples = 2 if quick else FLAGS.fit_samples
    num_stages = (3 + 2 * len(train_frames) + 2 + (len(sizes) + 1 if FLAGS.table4 else 0) +
                  (1 + FLAGS.calibrate_detector if FLAGS.realistic else 0))
    bench = Benchmark(out, num_stages)
    asset = os.path.join(out, 'asset.npz')
    data = os.path.join(out, 'data')
    train_glob, test_glob = f'{data}/train-*', f'{data}/test-*'
    quick_train = QUICK_TRAIN if quick else []
    train_asset = asset   # what the trainings use (the detector-calibrated copy, --realistic)
    start = time.time()
    try:
        bench.run('asset', 'face asset', ['tools.build_assets', f'--output={asset}',
                                          f'--preview={os.path.join(out, "asset.png")}'] +
                  asset_args, done_file=asset)
        if FLAGS.realistic:
            videos = os.path.join(out, 'videos')
            bench.run('make_videos', f'synthetic videos ({num_identities} identities, Mitsuba 3)', [
                'tools.make_synthetic', '--videos', f'--output_dir={videos}', f'--asset={asset}',
                '--samples_per_identity=2', f'--num_identities={num_identities}', '--seed=1',
                f'--frames_per_clip={FLAGS.frames_per_clip}',
                f'--spp={min(8, FLAGS.spp) if quick else FLAGS.spp}'],
                done_file=os.path.join(videos, 'videos.json'))
            bench.run('preprocess', 'preprocessing the videos (tools.preprocess)', [
                'tools.preprocess', f'--input_dir={videos}', f'--output_dir={data}',
                f'--image_size={image_size}', '--min_crop_size=64', '--num_frames=4',
                '--samples_per_clip=2', '--min_pose_spread_deg=5',
                f'--test_fraction={FLAGS.test_fraction}', f'--num_workers={FLAGS.num_workers}',
                '--min_face_confidence=0.5', '--noprogress',
                f'--contact_sheet={os.path.join(out, "contact_sheet.png")}'],
                done_file=os.path.join(data, 'summary-s00000-of-00001.json'))
            if FLAGS.calibrate_detector:
                calibrated = os.path.join(out, 'asset_calibrated.npz')
                bench.run('calibrate', 'detector calibration (tools.calibrate_detector)', [
                    'tools.calibrate_detector', f'--asset={asset}', f'--data={train_glob}',
                    f'--output={calibrated}'], done_file=calibrated)
                train_asset = calibrated
        else:
            bench.run('make_synthetic', f'synthetic data ({num_identities} identities)', [
                'tools.make_synthetic', f'--output_dir={data}', f'--asset={asset}',
                f'--image_size={image_size}', '--samples_per_identity=2',
                f'--num_identities={num_identities}', '--num_shards=4',
                f'--test_fraction={FLAGS.test_fraction}', '--seed=1',
                f'--dense_points={FLAGS.dense_points}',
                f'--contact_sheet={os.path.join(out, "contact_sheet.png")}'],
                done_file=os.path.join(data, 'manifest.json'))
        fit_steps = ['--pose_steps=2', '--identity_steps=2'] if quick else []
        bench.run('direct_fit', f'reference fits ({fit_samples} held-out samples)', [
            'tools.direct_fit', f'--data={test_glob}', f'--asset={train_asset}',
            f'--num_samples={fit_samples}', '--identity=template,ground_truth',
            f'--output={os.path.join(out, "DIRECT_FIT")}'] + fit_steps,
            done_file=os.path.join(out, 'DIRECT_FIT.md'))
        runs = []
        for m in train_frames:
            run_dir = os.path.join(out, f'train_m{m}')
            bench.run(f'train_m{m}', f'training, M = {m}', [
                'mofl.train', f'--flagfile=configs/{table1_config}.flags', f'--num_frames={m}',
                f'--data={train_glob}', f'--output_dir={run_dir}', f'--asset={train_asset}',
                f'--identity_eval_data={test_glob}', f'--image_size={image_size}'] + quick_train)
            runs.append(f'{m}:{run_dir}')
        for scale, suffix in ((False, ''), (True, '_scale')):
            bench.run(f'evaluate_table1{suffix}', 'Table 1, ' + ('with scale' if scale
                                                                  else 'rigid'), [
                'mofl.evaluate', '--dataset=synthetic', f'--data={test_glob}',
                f'--runs={",".join(runs)}', f'--max_samples={eval_samples}',
                f'--with_scale={scale}', f'--output={os.path.join(out, "TABLE1" + suffix)}'])
        for m in train_frames:
            bench.run(f'identity_m{m}', f'identity report, M = {m}', [
                'tools.identity_report', os.path.join(out, f'train_m{m}'),
                f'--data={test_glob}', f'--train_data={train_glob}',
                f'--num_samples={max(eval_samples // 2, 2)}',
                f'--output={os.path.join(out, f"IDENTITY_m{m}.json")}'],
                log_name=f'identity_m{m}')
        if FLAGS.table4:
            runs = []
            for size in sizes:
                run_dir = os.path.join(out, f'size{size}')
                bench.run(f'train_size{size}', f'training, model size {size}', [
                    'mofl.train', f'--flagfile=configs/{prefix}table4.flags',
                    f'--shape_dim={size}', f'--albedo_dim={size}', f'--data={train_glob}',
                    f'--output_dir={run_dir}', f'--asset={asset}',
                    f'--image_size={image_size}'] + quick_train)
                runs.append(f'{size}:{run_dir}')
            bench.run('evaluate_table4', 'Table 4 (photometric error)', [
                'mofl.evaluate', '--dataset=photometric', f'--data={test_glob}',
                f'--runs={",".join(runs)}', f'--max_samples={eval_samples}',
                f'--output={os.path.join(out, "TABLE4")}'])
    except StageError as e:
        print(f'ERROR: {e}', file=sys.stderr)
        return 1
    parts = [f'# Synthetic benchmark ({FLAGS.config} configuration{", quick" if quick else ""})',
             f'Data: {num_identities} identities, test fraction {FLAGS.test_fraction}, '
             f'{image_size}² frames, ' + ('synthetic videos drawn by Mitsuba 3 through '
                                          'tools.preprocess' if FLAGS.realistic else
                                          f'{FLAGS.dense_points} dense points per frame') +
             '; Table 1 runs: '
             f'configs/{table1_config}.flags. Wall times (s): '
             + ', '.join(f'{k} {v}' for k, v in bench.timings.items()) + '.']
    for name, title in (('DIRECT_FIT', 'Reference fits (held-out samples)'),
                        ('TABLE1', 'Table 1, rigid'), ('TABLE1_scale', 'Table 1, with scale'),
                        ('TABLE4', 'Table 4')):
        path = os.path.join(out, name + '.md')
        if os.path.exists(path):
            parts.append(f'## {title}\n\n{_read(path)}')
    for m in train_frames:
        path = os.path.join(out, f'IDENTITY_m{m}.md')
        if os.path.exists(path):
            parts.append(f'## Identity, train M = {m}\n\n{_read(path)}')
    summary = '\n\n'.join(parts) + '\n'
    with open(os.path.join(out, 'BENCHMARK.md'), 'w') as f:
        f.write(summary)
    print(summary)
    print(f'benchmark done in {(time.time() - start) / 60:.1f} min; tables in {out}/BENCHMARK.md')
    return 0


if __name__ == '__main__':
    define_flags()
    sys.exit(app.run(main))
