"""Calibrates a face asset's landmark and dense-point vertices to the detector, from training data.

    python -m tools.calibrate_detector --asset=out/video/asset.npz \
        --data='out/video/data/train-*' --output=out/video/asset_calibrated.npz

Reads the detections of `tools.preprocess` records (the 66 landmarks and FaceMesh's 468 dense
points; no ground truth) and writes a copy of the asset whose inner 49 landmarks and dense-point
correspondence sit where the detector puts them on the mean face
(`mofl.data.detector_calibration`: the nearest vertex plus a model-space offset). Train with `--asset=` the written file. The template, its
triangles and everything else are unchanged, so data and evaluation made for the input asset
stay valid (same `fingerprint`).
"""
import dataclasses
import json
import time

from absl import app
from absl import flags

from mofl import flags_common
from mofl import startup
startup.quiet_tensorflow()   # before anything imports TensorFlow


from mofl.data import detector_calibration  # pylint: disable=g-import-not-at-top
from mofl.facemodel import default_assets  # pylint: disable=g-import-not-at-top


def define_flags(flag_values=flags.FLAGS):
    """Defines the binary's flags in `flag_values`."""
    flags_common.define_flags(
        ('data', 'output', 'max_frames'), flag_values, required=('data', 'output'),
        defaults={'max_frames': detector_calibration.DEFAULT_MAX_FRAMES},
        lower_bounds={'max_frames': 0},
        notes={'data': 'Training records with mediapipe dense points (tools.preprocess).',
               'output': 'Calibrated asset .npz; a JSON report is written beside it.',
               'max_frames': 'Read from the records.'})
    flags_common.define_asset_flag(required=True, flag_values=flag_values)
    flags.DEFINE_float('radius_mm', detector_calibration.DEFAULT_RADIUS_MM,
                       'How far a point may move from its current vertex.', lower_bound=0.0,
                       flag_values=flag_values)
    flags.DEFINE_integer('rounds', detector_calibration.DEFAULT_ROUNDS,
                         'Pose-then-vertices rounds.', lower_bound=1, flag_values=flag_values)
    flags.DEFINE_integer('offset_rounds', detector_calibration.DEFAULT_OFFSET_ROUNDS,
                         'Pose-then-offsets rounds after them (0: vertices only, no offsets).',
                         lower_bound=0, flag_values=flag_values)


def main(argv, flag_values=flags.FLAGS):
    del argv
    start = time.time()
    assets, _ = default_assets.load_asset(flag_values.asset)
    mesh = assets.mesh
    if mesh.mediapipe_vertices is None:
        raise app.UsageError(f'--asset={flag_values.asset}: the asset has no FaceMesh '
                             'correspondence (built before it existed); rebuild it with '
                             'tools.build_assets')
    detections = detector_calibration.read_detections(flag_values.data, flag_values.max_frames)
    print(f'{detections.num_frames} frames of {flag_values.data} ({time.time() - start:.0f} s)',
          flush=True)
    (landmark_indices, mediapipe_vertices, landmark_offsets, mediapipe_offsets,
     report) = detector_calibration.calibrate(
         detections, mesh.vertices, mesh.face_mask, mesh.landmark_indices,
         mesh.mediapipe_vertices, radius_mm=flag_values.radius_mm, rounds=flag_values.rounds,
         offset_rounds=flag_values.offset_rounds, log=lambda line: print(line, flush=True))
    calibrated = dataclasses.replace(
        assets, mesh=dataclasses.replace(
            mesh, landmark_indices=landmark_indices, mediapipe_vertices=mediapipe_vertices,
            landmark_offsets=landmark_offsets if flag_values.offset_rounds else None,
            mediapipe_offsets=mediapipe_offsets if flag_values.offset_rounds else None))
    calibrated.mesh.validate(where=flag_values.output)
    calibrated.save(flag_values.output)
    report.update(asset=flag_values.asset, data=flag_values.data,
                  seconds=round(time.time() - start, 1))
    report_path = flag_values.output[:-4] + '.json' if flag_values.output.endswith('.npz') else (
        flag_values.output + '.json')
    with open(report_path, 'w', encoding='utf-8') as f:
        json.dump(report, f, indent=2)
    print(f'{report["points_moved"]} of {report["points_calibrated"]} points moved (median '
          f'{report["median_move_mm"]:.1f} mm), offsets {report["offset_rms_mm"]:.1f} mm RMS; '
          f'RMS reprojection {report["rms_before_mm"]:.2f} -> '
          f'{report["rms_after_mm"]:.2f} mm -> {flag_values.output} ({report["seconds"]:.0f} s)')
    return 0


if __name__ == '__main__':
    define_flags()
    app.run(main)
