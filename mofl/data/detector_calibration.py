"""Where on the template a face detector puts its points, learned from the training videos.

A detector's landmark convention is not the face model's. The 66 landmarks and mediapipe
FaceMesh's 468 dense points of `tools.preprocess` come with fixed vertices on the asset (its
`landmark_indices`, and `mediapipe_vertices` from registering FaceMesh's face onto the template,
`mofl.facemodel.mediapipe_correspondence`), but the detector, trained on other people and drawn
by other annotators, puts e.g. the brow points a few millimetres above or below those vertices,
the same way for every person. Fitted literally, such an offset is read as identity: every
person's brows move the same way, and a learned identity model pays for it on every face.

This module measures the offset without ground truth, from the detections of the training set
itself. Across many people the mean face is the template (the learned identity is a zero-mean
deviation from it), so the vertex whose projection follows a detector point best over thousands
of frames — people, poses and expressions — is where that detector puts that point on the mean
face. One round (`calibrate`, repeated `rounds` times):

1. every frame's head pose under the current correspondence: PnP of the template's landmark and
   dense-point vertices onto the detections, with the model's crop camera
   (`camera.crop_focal_length`);
2. for each point, among the template's face vertices within `radius_mm` of its current vertex,
   the one with the least confidence-weighted mean squared reprojection error over all frames
   (in mm on the face: pixels × depth / focal length) becomes its vertex.

Then `offset_rounds` rounds refine below the mesh's resolution (the CPU-scale asset's vertices
are ~5 mm apart): each point gets a fixed model-space offset from its vertex, solved by linear
least squares over all frames from the Jacobian of the projection (poses refitted each round),
with a weak prior towards no offset (`OFFSET_PRIOR_FRAMES`). The model adds the offsets to the
vertices before projecting (`SourceMesh.landmark_offsets`, `SourceMesh.mediapipe_offsets`).

The 17 jaw landmarks are left alone: they follow the face's outline, which slides over the
surface as the head turns (the sliding contour correspondence of §3.5 handles them), and points
that have no vertex (FaceMesh's face oval, points beyond the registration's reach) keep none.
Expressions are not modelled here: the mean expression of the data, if any, is read as part of
the convention.
"""
import dataclasses
import glob

import numpy as np

from mofl.data import head_pose
from mofl.data import records
from mofl.facemodel import assets as assets_lib
from mofl.render import camera as camera_lib

JAW_LANDMARKS = 17          # the first 17 of the 66-point layout: the outline (contour)
MIN_CONFIDENCE = 0.2        # detections below this confidence are left out of the fits
DEFAULT_RADIUS_MM = 12.0
DEFAULT_ROUNDS = 2
DEFAULT_MAX_FRAMES = 4000
DEFAULT_OFFSET_ROUNDS = 2
# Prior on the offsets, in frames' worth of evidence: it decides only the directions the data
# leave open (e.g. along the line of sight when the heads barely turn).
OFFSET_PRIOR_FRAMES = 10.0


@dataclasses.dataclass
class Detections:
    """Detections of many frames, in crop pixels.

    Attributes:
        landmarks: [F, 66, 2]; landmark_confidence: [F, 66].
        dense_points: [F, 468, 2] FaceMesh points (mediapipe index space); dense_confidence:
            [F, 468].
        image_size: side N of the square crops (pixels).
    """
    landmarks: np.ndarray
    landmark_confidence: np.ndarray
    dense_points: np.ndarray
    dense_confidence: np.ndarray
    image_size: int

    @property
    def num_frames(self):
        return int(self.landmarks.shape[0])


def read_detections(pattern, max_frames=DEFAULT_MAX_FRAMES):
    """Reads the detections of the records matching `pattern` (frames in file order).

    Args:
        pattern: TFRecord glob of `tools.preprocess` records with mediapipe dense points.
        max_frames: stop after this many frames (0: all).

    Returns:
        `Detections`.

    Raises:
        ValueError: naming `pattern` when nothing matches, a record has no mediapipe dense
            points, or the crops differ in size.
    """
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    paths = sorted(glob.glob(pattern))
    if not paths:
        raise ValueError(f'read_detections: no file matches {pattern!r}')
    parts = {k: [] for k in ('landmarks', 'landmark_confidence', 'dense_points',
                             'dense_confidence')}
    image_size, count = None, 0
    for path in paths:
        for raw in tf.data.TFRecordDataset(path).as_numpy_iterator():
            layout = records.inspect_sample(raw)
            if layout['dense_space'] != records.DENSE_SPACE_MEDIAPIPE:
                raise ValueError(f'{path}: records without mediapipe dense points '
                                 f'(dense space {layout["dense_space"]!r}); run '
                                 'tools.preprocess with --dense_points')
            size = int(layout['image_size'][0])
            if image_size not in (None, size):
                raise ValueError(f'{path}: crops of {size} px after crops of {image_size} px')
            image_size = size
            # What training reads of a record: the detections, no frames, no ground truth.
            sample = {k: v.numpy() for k, v in records.parse_sample(
                raw, decode_images=False, num_dense_points=layout['num_dense_points']).items()}
            order = np.argsort(sample['dense_vertices'])
            for key in parts:
                value = sample[key]
                parts[key].append(value[:, order] if key.startswith('dense') else value)
            count += sample['landmarks'].shape[0]
            if max_frames and count >= max_frames:
                break
        if max_frames and count >= max_frames:
            break
    stacked = {k: np.concatenate(v)[:max_frames or None].astype(np.float64)
               for k, v in parts.items()}
    if stacked['dense_points'].shape[1] != assets_lib.NUM_MEDIAPIPE_POINTS:
        raise ValueError(f'{pattern}: {stacked["dense_points"].shape[1]} dense points per '
                         f'frame, expected all {assets_lib.NUM_MEDIAPIPE_POINTS}')
    return Detections(image_size=image_size, **stacked)


def _points(detections, landmark_indices, mediapipe_vertices):
    """All points of every frame with their vertices: ([F, P, 2], [F, P] weights, [P] vertices,
    [P] bool calibrated); P = 66 + 468; weight 0 where a point has no vertex."""
    uv = np.concatenate([detections.landmarks, detections.dense_points], axis=1)
    weight = np.concatenate([detections.landmark_confidence, detections.dense_confidence], 1)
    vertices = np.concatenate([landmark_indices, mediapipe_vertices]).astype(np.int64)
    has_vertex = vertices >= 0
    weight = np.where((weight >= MIN_CONFIDENCE) & has_vertex[None], weight, 0.0)
    calibrated = has_vertex.copy()
    calibrated[:JAW_LANDMARKS] = False
    return uv, weight, vertices, calibrated


def frame_poses(uv, weight, points_3d, image_size):
    """PnP pose of each frame with the crop camera.

    Args:
        uv: [F, P, 2] detections (crop pixels); weight: [F, P] (0: unused);
        points_3d: [P, 3] their template positions (mm); image_size: crop side N.

    Returns:
        (rotations [F, 3, 3], translations [F, 3], ok [F] bool).
    """
    focal = camera_lib.crop_focal_length(image_size)
    num_frames = uv.shape[0]
    rotations = np.tile(np.eye(3), (num_frames, 1, 1))
    translations = np.zeros((num_frames, 3))
    ok = np.zeros(num_frames, bool)
    for f in range(num_frames):
        use = weight[f] > 0
        if use.sum() < 6:
            continue
        pose = head_pose.estimate_head_pose(uv[f, use], points_3d[use], (image_size, image_size),
                                            focal_length=focal)
        if pose is not None:
            rotations[f], translations[f], ok[f] = pose.rotation, pose.translation, True
    return rotations, translations, ok


def _offset_step(uv, weight, points, rotations, translations, focal, image_size, offsets,
                 calibrated):
    """One Gauss-Newton step of the offsets: [P, 3] new offsets (mm).

    Args:
        uv: [F, P, 2] detections; weight: [F, P]; points: [P, 3] vertex + current offset;
        rotations, translations: the frames' poses; focal, image_size: the crop camera;
        offsets: [P, 3] current offsets; calibrated: [P] bool, the points that get one.
    """
    predicted, mm_per_px, cam = _project(points, rotations, translations, focal, image_size)
    mm_per_px = mm_per_px[:, None, None]
    depth = -cam[..., 2]
    residual = (uv - predicted) * mm_per_px                            # [F, P, 2] mm
    zeros = np.zeros_like(depth)
    d_camera = np.stack([
        np.stack([focal / depth, zeros, focal * cam[..., 0] / depth ** 2], -1),
        np.stack([zeros, -focal / depth, -focal * cam[..., 1] / depth ** 2], -1)], axis=-2)
    jacobian = np.einsum('fpab,fbc->fpac', d_camera, rotations) * mm_per_px[..., None]
    weighted = jacobian * weight[..., None, None]
    normal = np.einsum('fpai,fpaj->pij', weighted, jacobian)          # [P, 3, 3]
    rhs = np.einsum('fpai,fpa->pi', weighted, residual)
    prior = OFFSET_PRIOR_FRAMES * np.eye(3)
    step = np.linalg.solve(normal + prior,
                           (rhs - OFFSET_PRIOR_FRAMES * offsets)[..., None])[..., 0]
    return np.where(calibrated[:, None], offsets + step, 0.0)


def _project(points, rotations, translations, focal, image_size):
    """Projects `points` [P, 3] (model space) with each frame's pose and the crop camera.

    Returns:
        (uv [F, P, 2] pixels, mm_per_px [F] the millimetres on the face per pixel of each
        frame (median depth / focal), camera-space points [F, P, 3]).
    """
    cam = np.einsum('fij,pj->fpi', rotations, points) + translations[:, None]
    depth = -cam[..., 2]
    uv = np.stack([image_size / 2.0 + focal * cam[..., 0] / depth,
                   image_size / 2.0 - focal * cam[..., 1] / depth], axis=-1)
    return uv, np.median(depth, axis=1) / focal, cam


def calibrate(detections, template, face_mask, landmark_indices, mediapipe_vertices,
              radius_mm=DEFAULT_RADIUS_MM, rounds=DEFAULT_ROUNDS,
              offset_rounds=DEFAULT_OFFSET_ROUNDS, log=None):
    """Moves each detector point to the template vertex that follows it best (module docstring).

    Args:
        detections: `Detections` of the training frames.
        template: [V, 3] template vertices (mm); face_mask: [V] bool candidate vertices.
        landmark_indices: [66] int current landmark vertices.
        mediapipe_vertices: [468] int current FaceMesh point vertices (−1: none).
        radius_mm: how far from its current vertex a point may move.
        rounds: pose-then-vertices rounds.
        offset_rounds: pose-then-offsets rounds after them (0: vertices only).
        log: optional callable(str) for progress lines.

    Returns:
        (landmark_indices [66] int32, mediapipe_vertices [468] int32, landmark_offsets [66, 3]
        float32, mediapipe_offsets [468, 3] float32 (mm, model space; zero for points left
        alone), report dict: frames used, RMS reprojection error (mm) before and after, points
        moved, their median move and the RMS offset, mm).
    """
    template = np.asarray(template, np.float64)
    candidates_all = np.flatnonzero(np.asarray(face_mask, bool))
    uv, weight, vertices, calibrated = _points(detections, np.asarray(landmark_indices),
                                              np.asarray(mediapipe_vertices))
    original = vertices.copy()
    focal = camera_lib.crop_focal_length(detections.image_size)
    report = {'frames': detections.num_frames}
    for round_index in range(rounds + 1):
        rotations, translations, ok = frame_poses(uv, weight, template[np.maximum(vertices, 0)],
                                                  detections.image_size)
        projected, mm_per_px, _ = _project(template, rotations[ok], translations[ok], focal,
                                           detections.image_size)
        w = weight[ok]
        residual = (uv[ok] - projected[:, np.maximum(vertices, 0)]) * mm_per_px[:, None, None]
        rms = float(np.sqrt((w * (residual ** 2).sum(-1)).sum() / w.sum()))
        report.setdefault('rms_before_mm', rms)
        report['rms_after_mm'] = rms
        report['frames_posed'] = int(ok.sum())
        if log:
            log(f'detector calibration: round {round_index}, {int(ok.sum())} frames posed, '
                f'RMS reprojection {rms:.2f} mm')
        if round_index == rounds:
            break
        for p in np.flatnonzero(calibrated):
            near = np.linalg.norm(template[candidates_all] - template[vertices[p]], axis=1)
            candidates = candidates_all[near <= radius_mm]
            error = ((uv[ok][:, p, None] - projected[:, candidates]) *
                     mm_per_px[:, None, None]) ** 2
            cost = (w[:, p, None] * error.sum(-1)).sum(0)
            vertices[p] = candidates[np.argmin(cost)]
    offsets = np.zeros((len(vertices), 3))
    for round_index in range(offset_rounds):
        points = template[np.maximum(vertices, 0)] + offsets
        rotations, translations, ok = frame_poses(uv, weight, points, detections.image_size)
        offsets = _offset_step(uv[ok], weight[ok], points, rotations[ok], translations[ok],
                               focal, detections.image_size, offsets, calibrated)
        points = template[np.maximum(vertices, 0)] + offsets
        projected, mm_per_px, _ = _project(points, rotations[ok], translations[ok], focal,
                                           detections.image_size)
        w = weight[ok]
        residual = (uv[ok] - projected) * mm_per_px[:, None, None]
        report['rms_after_mm'] = float(np.sqrt((w * (residual ** 2).sum(-1)).sum() / w.sum()))
        if log:
            log(f'detector calibration: offsets round {round_index}, RMS reprojection '
                f'{report["rms_after_mm"]:.2f} mm, offsets RMS '
                f'{np.sqrt((offsets[calibrated] ** 2).sum(-1).mean()):.2f} mm')
    moved = np.linalg.norm(template[vertices] - template[original], axis=1)[calibrated]
    report['points_calibrated'] = int(calibrated.sum())
    report['points_moved'] = int((moved > 0).sum())
    report['median_move_mm'] = float(np.median(moved))
    report['offset_rms_mm'] = float(np.sqrt((offsets[calibrated] ** 2).sum(-1).mean()))
    offsets = offsets.astype(np.float32)
    return (vertices[:66].astype(np.int32), vertices[66:].astype(np.int32), offsets[:66],
            offsets[66:], report)
