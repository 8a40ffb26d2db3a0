r"""How well a trained model's learned identity explains people: learned vs true neutral offsets.

    python -m tools.identity_report out/cpu_table1/train_m4 \
        --data='out/cpu_table1/data/test-*' --train_data='out/cpu_table1/data/train-*'

For `--num_samples` samples of each set (held-out people from --data; optionally people the run
trained on from --train_data), with the first `--num_frames` frames of each: α from the network,
the learned neutral identity v̄ + S·OCL(Θs)·α, and against the ground truth on the same vertices
the offsets' RMS, their cosine (plain and centred), α's spread, the identity mesh error after
rigid / similarity alignment next to the template's (`mofl.evaluation.identity`), plus the size
of the learned basis Θs. Prints a Markdown table; `--output=REPORT.json` also writes the numbers
there and the table to REPORT.md.
"""
import json
import os
import sys

from absl import app
from absl import flags

from mofl import flags_common


def define_flags(flag_values=flags.FLAGS):
    """Defines the binary's flags in `flag_values`."""
    flags_common.define_flags(
        ('data', 'num_samples', 'num_frames', 'checkpoint', 'output'), flag_values,
        required=('data',), defaults={'num_samples': 64},
        lower_bounds={'num_samples': 2, 'num_frames': 1},
        notes={'data': 'Held-out, with ground truth (tools.make_synthetic).',
               'num_samples': 'Samples measured per set.',
               'num_frames': 'Fed to the network (test M).',
               'output': 'Also write the numbers here (.json) and the table beside it (.md).'})
    flags.DEFINE_string('train_data', None, 'Optional training TFRecord glob: the same numbers '
                        'on people the run trained on (memorising vs generalising).',
                        flag_values=flag_values)
    flags.DEFINE_boolean('weight_average', True, 'Measure the weight average when the run kept '
                         'one (mofl.train --weight_average_decay); --noweight_average: the last '
                         'step\'s own weights.', flag_values=flag_values)


ROWS = (('cosine', 'cos(learned, true offsets)', '{:.3f}'),
        ('cosine_centred', 'same, centred over people', '{:.3f}'),
        ('cosine_translation_free', 'same, each without its mean shift', '{:.3f}'),
        ('cosine_translation_free_centred', 'without the shift, centred over people', '{:.3f}'),
        ('cosine_similarity_free', 'same, each without its similarity (shift, rotation, size)',
         '{:.3f}'),
        ('learned_directions_90', 'directions holding 90 % of the learned variance', '{:d}'),
        ('true_directions_90', 'directions holding 90 % of the true variance', '{:d}'),
        ('true_variance_in_learned_directions', 'true variance in the learned leading directions',
         '{:.2f}'),
        ('learned_rms_mm', 'learned offsets RMS (mm)', '{:.2f}'),
        ('true_rms_mm', 'true offsets RMS (mm)', '{:.2f}'),
        ('alpha_spread', 'α spread (median SD)', '{:.3f}'),
        ('landmark_px', 'landmark error (px)', '{:.2f}'),
        ('identity_mm', 'identity mesh, rigid (mm)', '{:.3f}'),
        ('template_mm', 'template, rigid (mm)', '{:.3f}'),
        ('gain_rigid', 'below template, rigid', '{:+.1%}'),
        ('identity_mm_scale', 'identity mesh, with scale (mm)', '{:.3f}'),
        ('template_mm_scale', 'template, with scale (mm)', '{:.3f}'),
        ('gain_scale', 'below template, with scale', '{:+.1%}'),
        ('expression_true_rms_mm', 'true expression offsets RMS (mm)', '{:.2f}'),
        ('expression_rms_mm', 'predicted expression offsets RMS (mm)', '{:.2f}'),
        ('expression_cosine', 'cos(predicted, true expression offsets)', '{:.3f}'),
        ('expression_cosine_centred', 'same, centred over frames', '{:.3f}'),
        ('expression_error_rms_mm', 'expression error RMS (mm)', '{:.2f}'))


def markdown(results, step, theta_rms):
    """The report as a Markdown table, one column per set."""
    sets = list(results)
    lines = [f'Step {step}; Θs RMS {theta_rms:.3f} mm per unit α.', '',
             '| | ' + ' | '.join(f'{s} ({results[s]["num_samples"]} samples)' for s in sets)
             + ' |', '|---|' + '---|' * len(sets)]
    for key, label, fmt in ROWS:
        if any(key not in results[s] for s in sets):   # e.g. data without expression truth
            continue
        lines.append(f'| {label} | ' + ' | '.join(fmt.format(results[s][key]) for s in sets)
                     + ' |')
    return '\n'.join(lines)


def main(argv, flag_values=flags.FLAGS):
    """Runs as the flags in `flag_values` say; returns the exit status."""
    from mofl import startup
    startup.quiet_tensorflow()
    if len(argv) != 2:
        raise app.UsageError('usage: python -m tools.identity_report RUN_DIR --data=GLOB')
    from mofl import run_dir as run_dir_lib
    from mofl.data import pipeline
    from mofl.evaluation import identity
    try:
        assets, model, step = run_dir_lib.load_run(argv[1], flag_values.checkpoint,
                                                     averaged=flag_values.weight_average)
    except FileNotFoundError as e:
        print(f'ERROR: {e}', file=sys.stderr)
        return 1
    sets = {'held-out': flag_values.data}
    if flag_values.train_data:
        sets['training'] = flag_values.train_data
    results = {}
    for name, data in sets.items():
        try:
            pipeline.check_ground_truth_mesh(data, assets.mesh)
            samples = pipeline.load_ground_truth_samples(data, flag_values.num_samples,
                                                         flag_values.num_frames)
        except (ValueError, FileNotFoundError) as e:
            print(f'ERROR: {name} set: {e}', file=sys.stderr)
            return 1
        results[name] = identity.measure_identity(model, samples, assets.mesh.face_mask)
    theta_rms = results['held-out']['theta_rms_mm']
    table = markdown(results, step, theta_rms)
    print(table)
    if flag_values.output:
        os.makedirs(os.path.dirname(os.path.abspath(flag_values.output)), exist_ok=True)
        with open(flag_values.output, 'w') as f:
            json.dump({'run': argv[1], 'step': step, 'theta_rms_mm': theta_rms,
                       'sets': results}, f, indent=1)
        with open(os.path.splitext(flag_values.output)[0] + '.md', 'w') as f:
            f.write(table + '\n')
    return 0


if __name__ == '__main__':
    define_flags()
    sys.exit(app.run(main))
