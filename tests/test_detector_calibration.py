"""Detector calibration (mofl.data.detector_calibration): recovering where a detector puts its
points on the mean face, from detections alone."""
import numpy as np
import pytest

from mofl.data import detector_calibration as calibration
from mofl.data import head_pose
from mofl.render import camera as camera_lib

IMAGE_SIZE = 128


def _face_cap(step_mm=5.0, half=12):
    """A face-sized ellipsoidal cap facing +z: [(2·half+1)², 3] vertices on a 5 mm grid."""
    xs = np.arange(-half, half + 1) * step_mm
    x, y = np.meshgrid(xs, xs * 1.2)
    z = 60.0 * np.sqrt(np.clip(1.0 - (x / 90.0) ** 2 - (y / 110.0) ** 2, 0.05, None))
    return np.stack([x.ravel(), y.ravel(), z.ravel()], axis=1)


def _detections(template, true_vertices, rng, num_frames=240, noise_px=0.4):
    """Detections of `true_vertices` [534] on people around `template`, seen in random poses."""
    focal = camera_lib.crop_focal_length(IMAGE_SIZE)
    uv = np.zeros((num_frames, len(true_vertices), 2))
    for f in range(num_frames):
        person = template + rng.normal(0.0, 1.5, 3) * template / 60.0   # zero-mean identity
        euler = np.radians([rng.uniform(-15, 15), rng.uniform(-40, 40), rng.uniform(-10, 10)])
        rotation = head_pose.euler_to_rotation(euler[None])[0]
        translation = np.array([rng.uniform(-10, 10), rng.uniform(-10, 10), -520.0])
        uv[f] = head_pose.project(person[true_vertices], rotation, translation, focal,
                                  (IMAGE_SIZE, IMAGE_SIZE))
    uv += rng.normal(0.0, noise_px, uv.shape)
    confidence = np.ones(uv.shape[:2])
    return calibration.Detections(landmarks=uv[:, :66], landmark_confidence=confidence[:, :66],
                                  dense_points=uv[:, 66:], dense_confidence=confidence[:, 66:],
                                  image_size=IMAGE_SIZE)


def test_calibration_finds_the_detectors_vertices():
    """The detector's points sit one grid step (5–6 mm, each its own way) from the asset's vertices; the
    calibration moves (nearly) every inner point back onto the detector's vertex, leaves the jaw
    landmarks and the points without a vertex alone, and lowers the reprojection error."""
    rng = np.random.default_rng(3)
    template = _face_cap()
    num_vertices = template.shape[0]
    inside = (np.abs(template[:, 0]) < 40) & (np.abs(template[:, 1]) < 50)
    true_vertices = rng.choice(np.flatnonzero(inside), 534, replace=True)
    width = 25   # one step in x: ±1, in y: ±width; each point in its own direction
    shifted = true_vertices + rng.choice([1, -1, width, -width], 534)
    landmarks, mediapipe = shifted[:66].copy(), shifted[66:].copy()
    mediapipe[:10] = -1
    detections = _detections(template, true_vertices, rng)
    new_landmarks, new_mediapipe, report = calibration.calibrate(
        detections, template, np.ones(num_vertices, bool), landmarks, mediapipe, rounds=2)
    np.testing.assert_array_equal(new_landmarks[:17], landmarks[:17])
    np.testing.assert_array_equal(new_mediapipe[:10], -1)
    inner = np.concatenate([new_landmarks[17:], new_mediapipe[10:]])
    truth = np.concatenate([true_vertices[17:66], true_vertices[66 + 10:]])
    assert np.mean(inner == truth) > 0.9
    assert report['rms_after_mm'] < 0.5 * report['rms_before_mm']
    assert report['points_calibrated'] == 49 + 458
    assert report['frames_posed'] == detections.num_frames


def test_read_detections_names_the_pattern(tmp_path):
    with pytest.raises(ValueError, match='no file matches'):
        calibration.read_detections(str(tmp_path / 'train-*'))
