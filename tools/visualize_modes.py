r"""Model analysis (supplement §1.1): PCA over reconstructions, top modes rendered at ±2σ.

    python -m tools.visualize_modes --model=EXPORT_OR_RUN_DIR --data='data/vox/train-*.tfrecord' \
        --max_samples=500 --output=out/modes.png
    python -m tools.visualize_modes --model=... --images='photos/*.jpg' --output=out/modes.png

Every sample (a multi-frame training record, or one image run through the reconstruction's face
crop) is reconstructed with `mofl.inference.load_model`'s model. Of each reconstruction two
things are kept: the neutral identity geometry v̄ + S·OCL(Θs)·α (eq. 2 with OCL, no expression;
Θs itself in a `--noorthogonal_complement` run) and the albedo r(β) (eq. 6). A PCA of each set
(over the flattened [V·3] vectors) gives the mean and the principal modes; the PNG shows, one
row per mode, the mean −2σ, mean and +2σ of the shape mode (frontal and side view, uniform grey
albedo under a fixed light) and of the albedo mode (frontal, on the mean geometry, unlit), with
each mode's share of the variance. The arrays go to the `.npz` beside the PNG (see `save_pca`).
"""
import sys

from absl import app
from absl import flags

from mofl import flags_common
from mofl.evaluation import modes

_DEFAULT = modes.ModesConfig   # every flag's default is its config field's


def define_flags(flag_values=flags.FLAGS):
    """Defines the binary's flags (ModesConfig's fields) in `flag_values`; called only when run as
    a program, so importing the module does not claim flag names."""
    flags_common.define_flags(
        ('model', 'data', 'max_samples', 'num_frames', 'output'), flag_values, config=_DEFAULT,
        required=('model', 'output'), notes={
            'max_samples': 'Samples reconstructed.',
            'num_frames': '--data: frames per sample given to the model (0: the records\' own '
                          'frame count).',
            'output': 'Output PNG (the .npz is written beside it).'})
    flags.DEFINE_string('images', _DEFAULT.images, 'Instead of --data: image files '
                        '(comma-separated / globs), each one sample.', flag_values=flag_values)
    flags.DEFINE_integer('num_modes', _DEFAULT.num_modes, 'Modes shown (rows of the PNG).',
                         flag_values=flag_values)
    flags.DEFINE_integer('num_saved_modes', _DEFAULT.num_saved_modes, 'Modes kept in the .npz.',
                         flag_values=flag_values)
    flags.DEFINE_float('sigma', _DEFAULT.sigma,
                       'Shown deviation from the mean, in standard deviations.',
                       flag_values=flag_values)
    flags.DEFINE_float('side_yaw_deg', _DEFAULT.side_yaw_deg, 'Yaw of the side view, degrees.',
                       flag_values=flag_values)
    flags.DEFINE_string('npz', _DEFAULT.npz, 'Output .npz (default: --output with .npz).',
                        flag_values=flag_values)


def main(argv, flag_values=flags.FLAGS):
    """Builds the `ModesConfig` from the flags and runs it; returns the exit status."""
    from mofl import startup
    startup.quiet_tensorflow()
    if len(argv) > 1:
        print(f'ERROR unexpected arguments: {argv[1:]}', file=sys.stderr)
        return 2
    return modes.run(flags_common.config_from_flags(_DEFAULT, flag_values))


if __name__ == '__main__':
    define_flags()
    sys.exit(app.run(main))
