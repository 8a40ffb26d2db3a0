"""Evaluates trained models like the paper's Tables 1–2 and supplement Table 4.

Synthetic ground truth (docs/data.md "Synthetic ground truth"), Table 1 layout:

    python -m mofl.evaluate --dataset=synthetic --data='out/table1/data/test-*' \
        --runs=1:out/table1/train_m1,2:out/table1/train_m2,4:out/table1/train_m4

Real scans the user holds (BU-3DFE `.wrl`, FaceWarehouse `.obj`, or `.npz` scans), one CSV row per
scan: `scan_path,image_path[;image_path...]` (images of that person; several = multi-frame test):

    python -m mofl.evaluate --dataset=scans --pairs=bu3dfe_pairs.csv --runs=4:runs/paper

FaceWarehouse meshes (`.obj`, 11,510 vertices), the same protocol in Table 2's layout (one column
per run, rows Mean / SD):

    python -m mofl.evaluate --dataset=facewarehouse --pairs=fw_pairs.csv --runs=4:runs/paper

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

from mofl import flags_common


def define_flags(flag_values=flags.FLAGS):
    """Defines the binary's flags in `flag_values`."""
    flags.DEFINE_enum('dataset', 'synthetic', ['synthetic', 'scans', 'facewarehouse',
                                               'photometric'],
                      'What to evaluate on: synthetic records (Table 1 layout), real scans '
                      '(Table 1 layout), FaceWarehouse .obj meshes (Table 2 layout), or the '
                      'photometric error (supplement Table 4).', flag_values=flag_values)
    flags.DEFINE_string('runs', None, 'Comma-separated KEY:RUN_DIR pairs; KEY is the training M '
                        '(synthetic, scans, facewarehouse) or the model size (photometric).',
                        required=True,
                        flag_values=flag_values)
    flags_common.define_flags(('data', 'max_samples', 'output'), flag_values, notes={
        'data': 'Synthetic test records (synthetic, photometric).',
        'max_samples': 'Test samples evaluated.',
        'output': 'Write the tables (Markdown) and raw numbers (JSON) here (OUTPUT.md, '
                  'OUTPUT.json).'})
    flags.DEFINE_string('pairs', None, 'scans, facewarehouse: CSV of '
                        'scan_path,image_path[;image_path...].',
                        flag_values=flag_values)
    flags.DEFINE_list('test_frames', ['1', '2'], 'Test M values (synthetic).',
                      flag_values=flag_values)
    flags.DEFINE_boolean('with_scale', False, 'Similarity alignment (with scale) instead of '
                         'rigid.', flag_values=flag_values)
    flags.DEFINE_enum('metric', 'vertex', ['vertex', 'surface', 'both'],
                      'synthetic: vertex-to-vertex RMSE (known correspondence), surface distance '
                      '(the real-scan protocol: landmark Procrustes + ICP, several seconds per '
                      'mesh on a CPU), or both tables.', flag_values=flag_values)


def main(argv, flag_values=flags.FLAGS):
    """Evaluates as the flags in `flag_values` say; returns the exit status."""
    from mofl import startup
    startup.quiet_tensorflow()
    del argv
    from mofl.evaluation import protocols, tables
    try:
        runs = protocols.parse_runs(flag_values.runs)
        if flag_values.dataset in ('synthetic', 'photometric') and not flag_values.data:
            raise ValueError(f'--dataset={flag_values.dataset} needs --data')
        if flag_values.dataset in ('scans', 'facewarehouse') and not flag_values.pairs:
            raise ValueError(f'--dataset={flag_values.dataset} needs --pairs')
        if flag_values.dataset == 'photometric':
            table = protocols.photometric(runs, flag_values.data, flag_values.max_samples)
            markdown = ('Photometric error (RGB 0..255, face region, test M = 1)\n\n' +
                        tables.table4_markdown({k: v[:2] for k, v in table.items()}))
            raw = {str(k): v for k, v in table.items()}
        else:
            if flag_values.dataset == 'synthetic':
                evaluated = protocols.synthetic_geometry(runs, flag_values.data,
                                                         [int(m) for m in flag_values.test_frames],
                                                         flag_values.max_samples,
                                                         flag_values.with_scale,
                                                         flag_values.metric)
            else:
                evaluated = protocols.real_scans(
                    runs, flag_values.pairs, flag_values.with_scale,
                    facewarehouse=flag_values.dataset == 'facewarehouse')
            parts, raw = [], {}
            names = {'vertex': 'per-vertex RMSE with known correspondence',
                     'surface': 'vertex-to-scan-surface RMSE after landmark Procrustes + ICP'}
            for metric, tabs in evaluated.items():
                alignment = 'similarity' if flag_values.with_scale else 'rigid'
                if flag_values.dataset == 'facewarehouse':   # Table 2: a column per run
                    table = tables.table2_markdown(
                        {f'Ours, train M = {k[0]}, test M = {k[1]}': v
                         for k, v in sorted(tabs['results'].items())}, show_count=True)
                else:
                    table = tables.table1_markdown(tabs['results'], tabs['baselines'],
                                                   show_count=True)
                parts.append(f'Geometric error ({names[metric]}, {alignment} alignment, face '
                             f'region, mm)\n\n' + table)
                raw[metric] = {f'train{k[0]}_test{k[1]}': v for k, v in tabs['results'].items()}
                raw[metric].update(tabs['baselines'])
            markdown = '\n\n'.join(parts)
    except (OSError, ValueError) as e:
        logging.error('%s', e)
        return 1
    print(markdown)
    if flag_values.output:
        os.makedirs(os.path.dirname(os.path.abspath(flag_values.output)), exist_ok=True)
        with open(flag_values.output + '.md', 'w') as f:
            f.write(markdown + '\n')
        with open(flag_values.output + '.json', 'w') as f:
            json.dump(raw, f, indent=1)
    return 0


if __name__ == '__main__':
    define_flags()
    sys.exit(app.run(main))
