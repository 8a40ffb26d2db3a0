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


def _detections(true_points, rng, num_frames=240, noise_px=0.4):
    """Detections of `true_points` [534, 3] on people around them, seen in random poses."""
    focal = camera_lib.crop_focal_length(IMAGE_SIZE)
    uv = np.zeros((num_frames, len(true_points), 2))
    for f in range(num_frames):
        person = true_points * (1.0 + rng.normal(0.0, 0.025, 3))   # zero-mean identity
        euler = np.radians([rng.uniform(-15, 15), rng.uniform(-40, 40), rng.uniform(-10, 10)])
        rotation = head_pose.euler_to_rotation(euler[None])[0]
        translation = np.array([rng.uniform(-10, 10), rng.uniform(-10, 10), -520.0])
        uv[f] = head_pose.project(person, rotation, translation, focal,
                                  (IMAGE_SIZE, IMAGE_SIZE))
    uv += rng.normal(0.0, noise_px, uv.shape)
    confidence = np.ones(uv.shape[:2])
    return calibration.Detections(landmarks=uv[:, :66], landmark_confidence=confidence[:, :66],
                                  dense_points=uv[:, 66:], dense_confidence=confidence[:, 66:],
                                  image_size=IMAGE_SIZE)


def test_calibration_finds_the_detectors_points():
    """The detector's points sit ~1 mm off vertices one grid step (5–6 mm, each its own way)
    from the asset's vertices; the calibration moves (nearly) every inner point back onto the
    detector's vertex, its offsets take the rest, the jaw landmarks and the points without a
    vertex are left alone, and the reprojection error falls to near the detections' noise."""
    rng = np.random.default_rng(3)
    template = _face_cap()
    num_vertices = template.shape[0]
    inside = (np.abs(template[:, 0]) < 40) & (np.abs(template[:, 1]) < 50)
    true_vertices = rng.choice(np.flatnonzero(inside), 534, replace=True)
    width = 25   # one step in x: ±1, in y: ±width; each point in its own direction
    shifted = true_vertices + rng.choice([1, -1, width, -width], 534)
    landmarks, mediapipe = shifted[:66].copy(), shifted[66:].copy()
    mediapipe[:10] = -1
    true_offsets = np.clip(rng.normal(0.0, 0.8, (534, 3)), -1.5, 1.5)
    detections = _detections(template[true_vertices] + true_offsets, rng)
    mask = np.ones(num_vertices, bool)
    vertices_only = calibration.calibrate(detections, template, mask, landmarks, mediapipe,
                                          rounds=2, offset_rounds=0)[-1]
    (new_landmarks, new_mediapipe, landmark_offsets, mediapipe_offsets,
     report) = calibration.calibrate(detections, template, mask, landmarks, mediapipe,
                                     rounds=2, offset_rounds=2)
    np.testing.assert_array_equal(new_landmarks[:17], landmarks[:17])
    np.testing.assert_array_equal(new_mediapipe[:10], -1)
    np.testing.assert_array_equal(landmark_offsets[:17], 0.0)
    np.testing.assert_array_equal(mediapipe_offsets[:10], 0.0)
    assert landmark_offsets.shape == (66, 3) and mediapipe_offsets.shape == (468, 3)
    inner = np.concatenate([new_landmarks[17:], new_mediapipe[10:]])
    truth = np.concatenate([true_vertices[17:66], true_vertices[66 + 10:]])
    assert np.mean(inner == truth) > 0.85
    assert vertices_only['rms_after_mm'] < 0.6 * vertices_only['rms_before_mm']
    # The offsets lower the error further and recover the true offsets where the vertex was
    # found (what is left is the people's own shape, ±2.5 % per axis, and the 0.4 px noise).
    assert report['rms_after_mm'] < 0.8 * vertices_only['rms_after_mm']
    found = np.flatnonzero(inner == truth)
    offsets = np.concatenate([landmark_offsets[17:], mediapipe_offsets[10:]])[found]
    wanted = np.concatenate([true_offsets[17:66], true_offsets[66 + 10:]])[found]
    assert np.sqrt(((offsets - wanted) ** 2).sum(-1).mean()) < 0.5 * np.sqrt(
        (wanted ** 2).sum(-1).mean())
    assert report['points_calibrated'] == 49 + 458
    assert report['frames_posed'] == detections.num_frames


def test_read_detections_names_the_pattern(tmp_path):
    with pytest.raises(ValueError, match='no file matches'):
        calibration.read_detections(str(tmp_path / 'train-*'))


def test_model_projects_landmarks_and_dense_points_with_their_offsets():
    """A calibrated asset's offsets move exactly the points they belong to: zero offsets give
    the uncalibrated model's landmarks and dense term, a 3 mm offset moves one landmark by its
    projection, and the jaw (contour) landmarks never move."""
    import dataclasses
    import tensorflow as tf
    from mofl import model as model_lib
    import training_data   # tests/ is on the path (conftest)

    assets = training_data.tiny_assets()
    config = model_lib.ModelConfig(shape_dim=4, albedo_dim=3,
                                   width_multiplier=training_data.TEST_WIDTH_MULTIPLIER)
    offsets = np.zeros((66, 3), np.float32)
    zero = dataclasses.replace(assets, mesh=dataclasses.replace(
        assets.mesh, landmark_offsets=offsets))
    offsets = offsets.copy()
    offsets[30] = [3.0, 0.0, 0.0]                       # a nose landmark, 3 mm to the side
    moved = dataclasses.replace(assets, mesh=dataclasses.replace(
        assets.mesh, landmark_offsets=offsets))
    rng = np.random.default_rng(0)
    params = {
        'shape_params': tf.zeros([1, 4]), 'albedo_params': tf.zeros([1, 3]),
        'euler_angles': tf.constant(rng.uniform(-0.3, 0.3, (1, 2, 3)), tf.float32),
        'translation': tf.constant([[[0.0, 0.0, -1000.0]] * 2]),
        'expression': tf.zeros([1, 2, assets.mesh.num_expressions]),
        'sh': tf.zeros([1, 2, 27])}
    plain_model = model_lib.FmlModel(assets, config)
    plain = plain_model.form_image(params)
    with_zero = model_lib.FmlModel(zero, config).form_image(params)
    with_moved = model_lib.FmlModel(moved, config).form_image(params)
    np.testing.assert_allclose(with_zero['landmarks'], plain['landmarks'], atol=1e-3)
    shift = (with_moved['landmarks'] - plain['landmarks']).numpy()
    np.testing.assert_allclose(np.delete(shift, 30, axis=2), 0.0, atol=1e-3)
    expected = plain_model.project_points(
        tf.gather(plain['vertices'], [int(assets.mesh.landmark_indices[30])], axis=2) +
        offsets[30], params)[:, :, 0]
    np.testing.assert_allclose(with_moved['landmarks'][:, :, 30], expected, atol=1e-3)
    assert np.all(np.linalg.norm(shift[:, :, 30], axis=-1) > 0.5)

    # The dense term: zero offsets change nothing; offsets that match the detections' shift
    # take the term to ~zero where plain vertices leave it large.
    images = tf.zeros([1, 2, 240, 240, 3])
    vertices = tf.constant([[int(i) for i in assets.mesh.landmark_indices[17:27]]])
    dense_offsets = np.tile(np.float32([[2.0, -1.0, 0.5]]), (1, 10, 1))
    points = plain_model.project_points(
        tf.gather(plain['vertices'], vertices, axis=2, batch_dims=1) + dense_offsets[:, None],
        params)
    common = dict(dense_points=points, dense_confidence=tf.ones([1, 2, 10]),
                  dense_vertices=vertices)
    terms = lambda **kw: plain_model.loss_terms(plain, images, plain['landmarks'],
                                                tf.ones([1, 2, 66]), **common, **kw)
    assert float(terms()['dense_points']) > 1e-4
    assert float(terms(dense_offsets=dense_offsets)['dense_points']) < 1e-8
    np.testing.assert_allclose(float(terms(dense_offsets=np.zeros_like(dense_offsets))[
        'dense_points']), float(terms()['dense_points']), rtol=1e-5)
