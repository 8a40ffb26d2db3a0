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
import dataclasses
import sys

from absl import app
from absl import flags

from mofl.evaluation import modes

FLAGS = flags.FLAGS
_DEFAULT = modes.ModesConfig   # every flag's default is its config field's


def _define_flags():
    """The binary's flags (defined only when run as a program, so importing the module does not
    claim flag names)."""
    flags.DEFINE_string('model', None, 'SavedModel folder or mofl.train output directory.')
    flags.DEFINE_string('data', _DEFAULT.data,
                        'TFRecord glob (comma-separated globs allowed) of samples.')
    flags.DEFINE_string('images', _DEFAULT.images, 'Instead of --data: image files '
                        '(comma-separated / globs), each one sample.')
    flags.DEFINE_integer('max_samples', _DEFAULT.max_samples,
                         'Reconstruct at most this many samples.')
    flags.DEFINE_integer('num_frames', _DEFAULT.num_frames, '--data: frames per sample given to '
                         'the model (0: the records\' own frame count).')
    flags.DEFINE_integer('num_modes', _DEFAULT.num_modes, 'Modes shown (rows of the PNG).')
    flags.DEFINE_integer('num_saved_modes', _DEFAULT.num_saved_modes, 'Modes kept in the .npz.')
    flags.DEFINE_float('sigma', _DEFAULT.sigma,
                       'Shown deviation from the mean, in standard deviations.')
    flags.DEFINE_float('side_yaw_deg', _DEFAULT.side_yaw_deg, 'Yaw of the side view, degrees.')
    flags.DEFINE_string('output', None, 'Output PNG (the .npz is written beside it).')
    flags.DEFINE_string('npz', _DEFAULT.npz, 'Output .npz (default: --output with .npz).')


def main(argv):
    """Builds the `ModesConfig` from the flags and runs it; returns the exit status."""
    from mofl import startup
    startup.quiet_tensorflow()
    if len(argv) > 1:
        print(f'ERROR unexpected arguments: {argv[1:]}', file=sys.stderr)
        return 2
    return modes.run(_DEFAULT(
        **{field.name: getattr(FLAGS, field.name) for field in dataclasses.fields(_DEFAULT)}))


if __name__ == '__main__':
    _define_flags()
    flags.mark_flags_as_required(['model', 'output'])
    sys.exit(app.run(main))
