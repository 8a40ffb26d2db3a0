r"""Turns a VoxCeleb2-style video tree into sharded multi-frame training records (paper §3.1).

    python -m tools.preprocess --input_dir=vox/dev/mp4 --output_dir=data/vox --num_workers=8

runs an Apache Beam pipeline (`mofl.data.preprocessing_beam`) on Beam's DirectRunner with
`--num_workers` worker processes. Any other Beam runner runs the same pipeline; the flags this
binary does not know are passed to Beam as pipeline options, e.g.

    python -m tools.preprocess --input_dir=/mnt/vox/dev/mp4 --output_dir=gs://BUCKET/vox \
        --runner=DataflowRunner --project=P --region=R --temp_location=gs://BUCKET/tmp \
        --setup_file=./setup.py --num_shards=64

(the workers must see `--input_dir` as a local path, e.g. a mounted file share; docs/beam.md).
`--runner=InProcess` is the path without Beam: this process, or a pool of `--num_workers`, for
one `--shard_index` of `--num_shards` (the output layout below differs, the records do not).

Pipeline per video `ID/VIDEO/CLIP.mp4`: decode with OpenCV (every `--frame_stride`-th frame, at
most `--max_frames_per_video`), mediapipe FaceMesh landmarks (`mofl.facemesh`), drop
frames without a face, with a detection score below `--min_face_confidence`, or whose square crop
is smaller than `--min_crop_size` pixels (paper: 200), head pose by PnP (`mofl.data.head_pose`),
crop resized to 240×240, then `--samples_per_clip` samples of M = `--num_frames` frames whose
yaw/pitch spread is at least `--min_pose_spread_deg` (`mofl.data.frame_sampling`).
With `--dense_points=468` (the default; 0: none) every frame also stores FaceMesh's 468 points in
crop pixels as the records' dense 2D points, in mediapipe's index space
(`records.DENSE_SPACE_MEDIAPIPE`), with confidences from their facing
(`face_tracking.dense_point_confidence`); each face asset maps them onto its vertices
(`mofl.facemodel.mediapipe_correspondence`) for `mofl.train --lambda_dense_points`.

Ground truth (synthetic videos only, `tools.make_synthetic --videos`): with
`--ground_truth_sidecars` (default on), a clip with a sidecar `CLIP.gt.npz` beside it has its true
meshes copied into the records for evaluation (`gt_vertices`, `gt_identity_weights`, and per chosen
frame `gt_expression_vertices` and `gt_landmarks`, the true 66 landmarks in crop pixels). The
sidecar is the only way ground truth reaches the records; training never reads it.

Output (in `--output_dir`), Beam runners (`mofl.data.preprocessing_beam` has the details):
- `{train,test}-sSSSSS-of-NNNNN-fFFFFF-of-GGGGG.tfrecord`: the records of shard S of N (a
  stable hash of the video path), file F of G (a stable hash of the record: the same files on
  every run, whatever the workers). The split is by identity: a hash of the identity id sends it
  to `test` with probability `--test_fraction`, the same on every machine and run.
- `manifest-beam-sSSSSS-of-NNNNN.json`: written only once every file of the shard is in place:
  its files, videos and per-video report.
- `summary-beam.json` (`summary-beam-sSSSSS-of-NNNNN.json` with `--shard_index`): the counts
  printed at the end, with Beam's counters.
Resuming (Beam): files are written under temporary names and renamed when complete, so a retried
bundle replaces a file and never adds a second copy; a re-run skips every shard with a complete
manifest and deletes the files of every other shard before redoing it.

Output, `--runner=InProcess` (`mofl.data.shards`):
- `{train,test}-sSSSSS-of-NNNNN-cCCCCC.tfrecord`: records of shard S of N, chunk C.
- `manifest-sSSSSS-of-NNNNN.json`: the finished videos and committed files of this shard.
- `summary-sSSSSS-of-NNNNN.json`: the counts printed at the end.
Resuming (InProcess): records go to `.tmp` files; after `--records_per_file` records (and at the
end) both split files are closed and renamed, then the manifest naming them and their videos is
rewritten atomically (temp file + rename). A re-run skips every video in any manifest of the
output folder and deletes this shard's `.tmp` files and any record file its manifest does not
name.

Either way, unreadable, face-less or too-short videos are logged, counted, recorded in the
manifest (they are finished too) and skipped; a video whose processing raised an unexpected
exception is logged and counted but not finished, so the next run retries it (Beam: its shard).

Exit status (`exit_status`): 1 when nothing usable remains (no video found, or every video of
this shard failed and it holds no committed record), else 0.
"""
import logging
import sys
from typing import List

from absl import app
from absl import flags

from mofl import flags_common
from mofl import startup
startup.quiet_tensorflow()   # before anything imports TensorFlow

from mofl.data import preprocessing
from mofl.data import preprocessing_beam

_DEFAULT = preprocessing.PreprocessConfig   # every flag's default is its config field's


def define_flags(flag_values=flags.FLAGS):
    """Defines the binary's flags (PreprocessConfig's fields) in `flag_values`."""
    flags.DEFINE_string('input_dir', None, 'Root of the video tree: ID/VIDEO/CLIP.mp4 '
                        '(VoxCeleb2).', required=True, flag_values=flag_values)
    flags_common.define_flags(
        ('output_dir', 'image_size', 'num_frames', 'seed', 'test_fraction', 'num_shards',
         'jpeg_quality', 'dense_points', 'contact_sheet', 'num_workers', 'frame_stride',
         'crop_scale', 'min_detection_confidence'), flag_values, config=_DEFAULT,
        required=('output_dir',),
        defaults={'dense_points': flags_common.FACEMESH_POINTS},
        notes={'output_dir': 'Record shards, manifests, summaries.',
               'image_size': 'The crops are resized to it.',
               'seed': 'Frame sampling.',
               'test_fraction': 'The paper: 21k of 404k samples.',
               'num_shards': 'Jobs the videos are split over (see --shard_index).',
               'dense_points': f'{flags_common.FACEMESH_POINTS}: FaceMesh\'s points of every '
                               'frame (mediapipe index space); 0: none.',
               'contact_sheet': 'Of crops.'})
    flags.DEFINE_integer('min_crop_size', _DEFAULT.min_crop_size,
                         'Drop frames whose square crop is smaller (pixels).',
                         flag_values=flag_values)
    flags.DEFINE_float('min_face_confidence', _DEFAULT.min_face_confidence,
                       'Drop frames whose face-detection score (the frame confidence) is lower.',
                       flag_values=flag_values)
    flags.DEFINE_integer('samples_per_clip', _DEFAULT.samples_per_clip,
                         'Multi-frame samples drawn per clip (at most).', flag_values=flag_values)
    flags.DEFINE_float('min_pose_spread_deg', _DEFAULT.min_pose_spread_deg,
                       'Minimal max(yaw range, pitch range) of the frames of one sample, degrees.',
                       flag_values=flag_values)
    flags.DEFINE_integer('max_frames_per_video', _DEFAULT.max_frames_per_video,
                         'Stop decoding a video after this many frames (counted before the '
                         'stride); 0: no limit.', flag_values=flag_values)
    flags.DEFINE_integer('shard_index', _DEFAULT.shard_index,
                         'Only this shard of the videos (0-based); -1: every shard (Beam).',
                         flag_values=flag_values)
    flags.DEFINE_string('runner', _DEFAULT.runner,
                        'Beam runner (DirectRunner, DataflowRunner, FlinkRunner, ...; unknown flags '
                        f'are its pipeline options), or {preprocessing.IN_PROCESS}: no Beam.',
                        flag_values=flag_values)
    flags.DEFINE_integer('records_per_file', _DEFAULT.records_per_file,
                         'Records per committed chunk file and split.', flag_values=flag_values)
    flags.DEFINE_string('landmarks_3d', _DEFAULT.landmarks_3d,
                        'Face-asset .npz (or .npz with `landmarks_3d` [66, 3] mm) for the PnP '
                        'head pose; default: mofl\'s default asset.', flag_values=flag_values)
    flags.DEFINE_bool('ground_truth_sidecars', _DEFAULT.ground_truth_sidecars,
                      'Copy the ground truth of a clip\'s CLIP.gt.npz sidecar (synthetic videos) '
                      'into its records, for evaluation.', flag_values=flag_values)
    flags.DEFINE_bool('progress', _DEFAULT.progress, 'Show a progress bar on stderr.',
                      flag_values=flag_values)


def main(argv: List[str], flag_values=flags.FLAGS):
    """Builds the run's `PreprocessConfig` from the flags and runs it; exits with its status.

    Args:
        argv: the program name, then the arguments absl did not parse: Beam pipeline options
            (`--project=...`) for a Beam runner.
        flag_values: the parsed flags.
    """
    pipeline_args = argv[1:]
    stray = [a for a in pipeline_args if not a.startswith('--')]
    if stray:
        raise app.UsageError(f'unexpected arguments: {stray}')
    if flag_values.dense_points not in (0, flags_common.FACEMESH_POINTS):
        raise app.UsageError(f'--dense_points must be {flags_common.FACEMESH_POINTS} (FaceMesh\'s '
                             f'points) or 0, got {flag_values.dense_points}')
    config = flags_common.config_from_flags(preprocessing.PreprocessConfig, flag_values,
                                            dense_points=bool(flag_values.dense_points))
    try:
        config.validate()
        if config.runner == preprocessing.IN_PROCESS and pipeline_args:
            raise ValueError(f'unknown flags {pipeline_args} (Beam pipeline options do not go '
                             f'with --runner={preprocessing.IN_PROCESS})')
    except ValueError as e:
        raise app.UsageError(str(e))
    if not startup.tensorflow_logs_wanted():
        # The DirectRunner relays every worker's INFO lines; warnings and errors still show.
        logging.getLogger('apache_beam').setLevel(logging.WARNING)
    sys.exit(preprocessing_beam.run_and_report(config, pipeline_args))


def _parse_flags(argv):
    """absl's parsing, except that unknown flags are kept for Beam (main's argv)."""
    try:
        return flags.FLAGS(argv, known_only=True)
    except flags.Error as e:
        sys.stderr.write(f'FATAL Flags parsing error: {e}\n')
        sys.exit(1)


if __name__ == '__main__':
    define_flags()
    app.run(main, flags_parser=_parse_flags)
