"""Tests of mofl.render.camera: pose convention, projection by hand, inverse, gradients."""
import numpy as np
import pytest
import tensorflow as tf

from mofl.render import camera as camera_lib


def _max_gradient_error(function, inputs):
    theoretical, numerical = tf.test.compute_gradient(function, inputs)
    return max(np.max(np.abs(t - n)) for t, n in zip(theoretical, numerical))


def _numpy_rotation(pitch, yaw, roll):
    cx, sx, cy, sy, cz, sz = (np.cos(pitch), np.sin(pitch), np.cos(yaw), np.sin(yaw),
                              np.cos(roll), np.sin(roll))
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rz @ ry @ rx


def test_rotation_is_rz_ry_rx():
    angles = np.array([[0.3, -0.7, 0.2], [-1.1, 0.4, 2.0]])
    rotation = camera_lib.rotation_from_euler(angles).numpy()
    for angle, matrix in zip(angles, rotation):
        np.testing.assert_allclose(matrix, _numpy_rotation(*angle), atol=1e-12)


def test_yaw_turns_the_face_towards_image_right():
    # Yaw +90° maps the template's viewing direction +z to +x (image right).
    rotation = camera_lib.rotation_from_euler([[0.0, np.pi / 2, 0.0]])
    nose_direction = camera_lib.rotate_directions([[[0.0, 0.0, 1.0]]], rotation).numpy()
    np.testing.assert_allclose(nose_direction[0, 0], [1.0, 0.0, 0.0], atol=1e-6)


def test_projection_of_a_known_point_by_hand():
    camera = camera_lib.Camera(focal_x=1000.0, focal_y=900.0, principal_x=120.0,
                               principal_y=110.0, image_size=(220, 240))
    points = np.array([[[10.0, 20.0, -1000.0], [-30.0, -45.0, -500.0]]])
    screen = camera_lib.to_screen_space(points, camera).numpy()
    # u = c_x + f_x·x/d, v = c_y − f_y·y/d, d = −z.
    expected = [[120.0 + 1000.0 * 10 / 1000, 110.0 - 900.0 * 20 / 1000, 1000.0],
                [120.0 + 1000.0 * -30 / 500, 110.0 - 900.0 * -45 / 500, 500.0]]
    np.testing.assert_allclose(screen[0], expected, rtol=1e-12)
    np.testing.assert_allclose(camera_lib.project(points, camera).numpy()[0],
                               np.array(expected)[:, :2], rtol=1e-12)


def test_point_on_the_optical_axis_lands_on_the_principal_point():
    camera = camera_lib.Camera.centered((240, 240), 1100.0)
    uv = camera_lib.project(tf.constant([[[0.0, 0.0, -700.0]]]), camera).numpy()
    np.testing.assert_allclose(uv[0, 0], [120.0, 120.0])


def test_per_batch_intrinsics():
    camera = camera_lib.Camera(focal_x=tf.constant([1000.0, 500.0]),
                               focal_y=tf.constant([1000.0, 500.0]),
                               principal_x=tf.constant([120.0, 60.0]), principal_y=120.0)
    points = tf.constant([[[10.0, 0.0, -1000.0]], [[10.0, 0.0, -1000.0]]])
    uv = camera_lib.project(points, camera).numpy()
    np.testing.assert_allclose(uv[:, 0, 0], [130.0, 65.0])


def test_unproject_inverts_projection():
    rng = np.random.default_rng(0)
    points = np.concatenate([rng.uniform(-100, 100, (2, 50, 2)),
                             -rng.uniform(400, 1500, (2, 50, 1))], axis=-1)
    camera = camera_lib.Camera()
    screen = camera_lib.to_screen_space(points, camera)
    back = camera_lib.unproject(screen[..., :2], screen[..., 2], camera).numpy()
    np.testing.assert_allclose(back, points, rtol=1e-10)


def test_points_behind_the_camera_stay_finite():
    uv = camera_lib.project(tf.constant([[[5.0, 5.0, 0.0], [5.0, 5.0, 10.0]]])).numpy()
    assert np.all(np.isfinite(uv))


def test_projection_gradient_matches_numerical():
    rng = np.random.default_rng(1)
    points = np.concatenate([rng.uniform(-80, 80, (2, 5, 2)),
                             -rng.uniform(600, 1200, (2, 5, 1))], axis=-1)
    camera = camera_lib.Camera()
    error = _max_gradient_error(lambda p: camera_lib.to_screen_space(p, camera),
                                [tf.constant(points)])
    assert error < 1e-6


def test_intrinsics_gradient_matches_numerical():
    points = tf.constant([[[12.0, -30.0, -900.0], [40.0, 25.0, -1100.0]]], tf.float64)

    def project_with(focal, principal):
        camera = camera_lib.Camera(focal_x=focal[0], focal_y=focal[1], principal_x=principal[0],
                                   principal_y=principal[1])
        return camera_lib.project(points, camera)

    error = _max_gradient_error(project_with, [tf.constant([1000.0, 1050.0], tf.float64),
                                               tf.constant([120.0, 118.0], tf.float64)])
    assert error < 1e-6


def test_pose_gradient_matches_numerical():
    vertices = tf.constant(np.random.default_rng(2).uniform(-90, 90, (2, 6, 3)))

    def screen_of(euler, translation):
        return camera_lib.model_to_screen(vertices, euler, translation)[0]

    euler = tf.constant([[0.1, -0.4, 0.05], [-0.2, 0.6, -0.1]], tf.float64)
    translation = tf.constant([[5.0, -10.0, -1000.0], [0.0, 3.0, -800.0]], tf.float64)
    theoretical, numerical = tf.test.compute_gradient(screen_of, [euler, translation])
    for t, n in zip(theoretical, numerical):
        np.testing.assert_allclose(t, n, rtol=1e-5, atol=1e-5)


def test_depth_filling_crop_and_the_models_default_distance():
    from mofl import model as model_lib
    import training_data
    # A 150 mm landmark box in a 1.6× crop of 240 px at f = 1000 px: 240 px = 1.6 · 150 mm · f / d.
    assert camera_lib.depth_filling_crop(150.0, 1000.0, 240, 1.6) == pytest.approx(1000.0)
    with pytest.raises(ValueError, match='landmark_extent_mm'):
        camera_lib.depth_filling_crop(0.0)
    assets = training_data.tiny_assets()
    points = assets.mesh.vertices[assets.mesh.landmark_indices]
    centre = 0.5 * (points.min(0) + points.max(0))
    extent = (points.max(0)[:2] - points.min(0)[:2]).max()
    config = model_lib.ModelConfig(shape_dim=2, albedo_dim=2)
    depth = 1000.0 * 1.6 * extent / 240
    want = np.array([0.0, 0.0, -depth]) - centre
    np.testing.assert_allclose(model_lib.initial_translation_for(assets, config), want,
                               rtol=1e-6)
    model = model_lib.FmlModel(assets, config)
    np.testing.assert_allclose(model.network.translation_init.numpy(), want, rtol=1e-6)
    # An explicit distance keeps the old meaning (runs before issue 11 store 1000 mm); an
    # explicit translation wins; mofl.train stores the resolved default in the run.
    fixed = model_lib.ModelConfig(shape_dim=2, albedo_dim=2, camera_distance=900.0)
    np.testing.assert_allclose(model_lib.initial_translation_for(assets, fixed), [0, 0, -900.0])
    assert model_lib.resolve_initial_translation(assets, fixed) == fixed
    resolved = model_lib.resolve_initial_translation(assets, config)
    np.testing.assert_allclose(resolved.initial_translation, want, rtol=1e-6)
    np.testing.assert_allclose(model_lib.initial_translation_for(assets, resolved), want,
                               rtol=1e-6)
