"""Evaluates trained models like the paper's Tables 1–2 and supplement Table 4.

Synthetic ground truth (docs/data.md "Synthetic ground truth"), Table 1 layout:

    python -m mofl.evaluate --dataset=synthetic --data='out/table1/data/test-*' \
        --runs=1:out/table1/train_m1,2:out/table1/train_m2,4:out/table1/train_m4

Real scans the user holds (BU-3DFE `.wrl`, FaceWarehouse `.obj`, or `.npz` scans), one CSV row per
scan: `scan_path,image_path[;image_path...]` (images of that person; several = multi-frame test):

    python -m mofl.evaluate --dataset=scans --pairs=bu3dfe_pairs.csv --runs=4:runs/paper

Photometric error (supplement Table 4) of runs with different model sizes:

    python -m mofl.evaluate --dataset=photometric --data='out/table1/data/test-*' \
        --runs=0:out/t4/size0,10:out/t4/size10,...

The protocol, step by step with its constants, is in docs/evaluation.md "Geometric evaluation
protocol".
"""
import json
import os
import sys

from absl import app
from absl import flags
from absl import logging

FLAGS = flags.FLAGS
flags.DEFINE_enum('dataset', 'synthetic', ['synthetic', 'scans', 'photometric'],
                  'What to evaluate on.')
flags.DEFINE_string('runs', None, 'Comma-separated KEY:RUN_DIR pairs; KEY is the training M '
                    '(synthetic, scans) or the model size (photometric).', required=True)
flags.DEFINE_string('data', None, 'Synthetic test records (glob).')
flags.DEFINE_string('pairs', None, 'scans: CSV of scan_path,image_path[;image_path...].')
flags.DEFINE_list('test_frames', ['1', '2'], 'Test M values (synthetic).')
flags.DEFINE_integer('max_samples', 0, 'Evaluate at most this many test samples (0: all).')
flags.DEFINE_boolean('with_scale', False, 'Similarity alignment (with scale) instead of rigid.')
flags.DEFINE_enum('metric', 'vertex', ['vertex', 'surface', 'both'],
                  'synthetic: vertex-to-vertex RMSE (known correspondence), surface distance '
                  '(the real-scan protocol: landmark Procrustes + ICP, several seconds per mesh '
                  'on a CPU), or both tables.')
flags.DEFINE_string('output', None, 'Write the tables (Markdown) and raw numbers (JSON) here '
                    '(OUTPUT.md, OUTPUT.json).')


def main(argv):
    from mofl import startup
    startup.quiet_tensorflow()
    del argv
    from mofl.evaluation import protocols, tables
    try:
        runs = protocols.parse_runs(FLAGS.runs)
        if FLAGS.dataset in ('synthetic', 'photometric') and not FLAGS.data:
            raise ValueError(f'--dataset={FLAGS.dataset} needs --data')
        if FLAGS.dataset == 'scans' and not FLAGS.pairs:
            raise ValueError('--dataset=scans needs --pairs')
        if FLAGS.dataset == 'photometric':
            table = protocols.photometric(runs, FLAGS.data, FLAGS.max_samples)
            markdown = ('Photometric error (RGB 0..255, face region, test M = 1)\n\n' +
                        tables.table4_markdown({k: v[:2] for k, v in table.items()}))
            raw = {str(k): v for k, v in table.items()}
        else:
            if FLAGS.dataset == 'synthetic':
                evaluated = protocols.synthetic_geometry(runs, FLAGS.data,
                                                         [int(m) for m in FLAGS.test_frames],
                                                         FLAGS.max_samples, FLAGS.with_scale,
                                                         FLAGS.metric)
            else:
                evaluated = protocols.real_scans(runs, FLAGS.pairs, FLAGS.with_scale)
            parts, raw = [], {}
            names = {'vertex': 'per-vertex RMSE with known correspondence',
                     'surface': 'vertex-to-scan-surface RMSE after landmark Procrustes + ICP'}
            for metric, tabs in evaluated.items():
                alignment = 'similarity' if FLAGS.with_scale else 'rigid'
                parts.append(f'Geometric error ({names[metric]}, {alignment} alignment, face '
                             f'region, mm)\n\n' +
                             tables.table1_markdown(tabs['results'], tabs['baselines'],
                                                    show_count=True))
                raw[metric] = {f'train{k[0]}_test{k[1]}': v for k, v in tabs['results'].items()}
                raw[metric].update(tabs['baselines'])
            markdown = '\n\n'.join(parts)
    except (OSError, ValueError) as e:
        logging.error('%s', e)
        return 1
    print(markdown)
    if FLAGS.output:
        os.makedirs(os.path.dirname(os.path.abspath(FLAGS.output)), exist_ok=True)
        with open(FLAGS.output + '.md', 'w') as f:
            f.write(markdown + '\n')
        with open(FLAGS.output + '.json', 'w') as f:
            json.dump(raw, f, indent=1)
    return 0


if __name__ == '__main__':
    sys.exit(app.run(main))
