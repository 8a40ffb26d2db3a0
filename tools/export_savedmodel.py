"""Exports a trained FML model as a SavedModel for serving (see mofl/export.py for the outputs).

    python -m tools.export_savedmodel --checkpoint_dir=RUN_DIR --output_dir=EXPORT_DIR
    python -m tools.export_savedmodel --checkpoint=RUN_DIR/checkpoints/ckpt-400 --output_dir=...

RUN_DIR is a `mofl.train` output directory (model_config.json, assets.npz, checkpoints/) or its
`checkpoints/` folder; the latest checkpoint is exported unless `--checkpoint` names one. The
signature `serving_default` takes images [N, 240, 240, 3] of one person; `metadata` returns the
template, triangles, landmark indices, expression names and camera. `signature.json` beside the
SavedModel lists every output with its unit. Load it with `mofl.export.load_exported(EXPORT_DIR)`.
"""
import sys

from absl import app
from absl import flags
from absl import logging

from mofl import flags_common


def define_flags(flag_values=flags.FLAGS):
    """Defines the binary's flags in `flag_values`."""
    flags.DEFINE_string('checkpoint_dir', None, 'mofl.train output directory or its checkpoints/ '
                        'folder (the latest checkpoint is exported).', flag_values=flag_values)
    flags_common.define_flags(
        ('checkpoint', 'output_dir'), flag_values, required=('output_dir',),
        notes={'checkpoint': 'The one to export (default: the latest in --checkpoint_dir).',
               'output_dir': 'Where to write the SavedModel.'})


def main(argv, flag_values=flags.FLAGS):
    """Runs as the flags in `flag_values` say; returns the exit status."""
    from mofl import startup
    startup.quiet_tensorflow()
    del argv
    if not flag_values.checkpoint_dir and not flag_values.checkpoint:
        logging.error('Give --checkpoint_dir (a mofl.train output directory) or --checkpoint.')
        return 1
    from mofl import export as export_lib   # TensorFlow loads after flag parsing: fast --help
    from mofl.facemodel import assets as assets_lib
    try:
        assets, model, step = export_lib.restore_run(flag_values.checkpoint_dir,
                                                     flag_values.checkpoint)
    except (FileNotFoundError, assets_lib.AssetError, ValueError) as e:
        logging.error('Nothing exported: %s', e)
        return 1
    description = export_lib.export(model, assets, flag_values.output_dir, step=step)
    sizes = description['sizes']
    print(f'Exported step {step} ({description["asset_source"]} asset: V={sizes["V"]}, '
          f'T={sizes["T"]}, b={sizes["b"]}, g={sizes["g"]}, a={sizes["a"]}) to '
          f'{flag_values.output_dir}')
    serving = description['signatures']['serving_default']
    print('  serving_default(images {shape} {dtype})'.format(**serving['inputs']['images']))
    for name, spec in serving['outputs'].items():
        print(f'    {name:<19s} {spec["shape"]:<11s} {spec["dtype"]:<8s} {spec["description"]}')
    print('  metadata() -> ' + ', '.join(description['signatures']['metadata']['outputs']))
    return 0


if __name__ == '__main__':
    define_flags()
    sys.exit(app.run(main))
