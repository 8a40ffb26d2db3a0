"""Reproduces our synthetic Table 1 (and the Table-4-style photometric table) end to end.

    python -m tools.synthetic_benchmark --output_dir=out/table1            # Table 1
    python -m tools.synthetic_benchmark --output_dir=out/table1 --table4   # + Table 4

Steps (each skipped when its output exists; trainings resume from their checkpoints):
1. `tools.make_synthetic`: 1,000 identities × 2 samples × 4 frames, 10 % of identities held out
   (1,800 training and 200 test samples, 4 shards).
2. `mofl.train --flagfile=configs/synthetic_table1.flags --num_frames=M` for M = 1, 2, 4.
3. `mofl.evaluate --dataset=synthetic`: Train M × Test M table with baselines → TABLE1.md/.json.
4. (--table4) `mofl.train --flagfile=configs/synthetic_table4.flags` for model sizes
   0, 10, 50, 125, 500 and `mofl.evaluate --dataset=photometric` → TABLE4.md/.json.
Wall times of every step go to timings.json, to be quoted next to the numbers.
"""
import json
import os
import subprocess
import sys
import time

from absl import app
from absl import flags

FLAGS = flags.FLAGS
flags.DEFINE_string('output_dir', 'out/table1', 'Where data, runs and tables go.')
flags.DEFINE_string('asset', None, 'Face asset (default: the default asset).')
flags.DEFINE_integer('num_identities', 1000, 'Synthetic identities.')
flags.DEFINE_float('test_fraction', 0.1, 'Fraction of identities held out for testing.')
flags.DEFINE_list('train_frames', ['1', '2', '4'], 'Training M of the Table 1 runs.')
flags.DEFINE_boolean('table4', False, 'Also train the model-size runs and the photometric table.')
flags.DEFINE_list('model_sizes', ['0', '10', '50', '125', '500'], 'Table 4 model sizes.')

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(args, timings, key):
    start = time.time()
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2', PYTHONUNBUFFERED='1')
    result = subprocess.run([sys.executable, '-m'] + args, cwd=ROOT, env=env)
    timings[key] = round(time.time() - start, 1)
    if result.returncode != 0:
        raise RuntimeError(f'python -m {" ".join(args)} failed ({result.returncode})')


def main(argv):
    del argv
    out = os.path.abspath(FLAGS.output_dir)
    os.makedirs(out, exist_ok=True)
    timings_path = os.path.join(out, 'timings.json')
    timings = {}
    if os.path.exists(timings_path):
        with open(timings_path) as f:
            timings = json.load(f)
    asset = [f'--asset={FLAGS.asset}'] if FLAGS.asset else []
    data = os.path.join(out, 'data')
    try:
        if not os.path.exists(os.path.join(data, 'manifest.json')):
            _run(['tools.make_synthetic', f'--output_dir={data}', '--samples_per_identity=2',
                  f'--num_identities={FLAGS.num_identities}', '--num_shards=4',
                  f'--test_fraction={FLAGS.test_fraction}', '--seed=1',
                  f'--contact_sheet={os.path.join(out, "contact_sheet.png")}'] + asset,
                 timings, 'make_synthetic')
        runs = []
        for m in FLAGS.train_frames:
            run_dir = os.path.join(out, f'train_m{m}')
            _run(['mofl.train', '--flagfile=configs/synthetic_table1.flags', f'--num_frames={m}',
                  f'--data={data}/train-*', f'--output_dir={run_dir}'] + asset,
                 timings, f'train_m{m}')
            runs.append(f'{m}:{run_dir}')
        _run(['mofl.evaluate', '--dataset=synthetic', f'--data={data}/test-*',
              f'--runs={",".join(runs)}', f'--output={os.path.join(out, "TABLE1")}'],
             timings, 'evaluate_table1')
        if FLAGS.table4:
            runs = []
            for size in FLAGS.model_sizes:
                run_dir = os.path.join(out, f'size{size}')
                _run(['mofl.train', '--flagfile=configs/synthetic_table4.flags',
                      f'--shape_dim={size}', f'--albedo_dim={size}', f'--data={data}/train-*',
                      f'--output_dir={run_dir}'] + asset, timings, f'train_size{size}')
                runs.append(f'{size}:{run_dir}')
            _run(['mofl.evaluate', '--dataset=photometric', f'--data={data}/test-*',
                  f'--runs={",".join(runs)}', f'--output={os.path.join(out, "TABLE4")}'],
                 timings, 'evaluate_table4')
    except RuntimeError as e:
        print(f'ERROR: {e}', file=sys.stderr)
        return 1
    finally:
        with open(timings_path, 'w') as f:
            json.dump(timings, f, indent=1)
    print(f'tables and timings in {out}')
    return 0


if __name__ == '__main__':
    sys.exit(app.run(main))
