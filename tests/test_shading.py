"""Tests of SH shading (eq. 7), vertex normals and visibility."""
import numpy as np
import tensorflow as tf

from mofl.render import normals as normals_lib
from mofl.render import shading
from mofl.render import visibility
from tests import meshes


def _random_unit_vectors(count, seed):
    vectors = np.random.default_rng(seed).normal(size=(count, 3))
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def _numpy_sh_basis(n):
    """The 9 real SH polynomials, written out by hand, with the Condon–Shortley phase."""
    x, y, z = n[..., 0], n[..., 1], n[..., 2]
    return np.stack([
        0.282095 * np.ones_like(x),
        -0.488603 * y,
        0.488603 * z,
        -0.488603 * x,
        1.092548 * x * y,
        -1.092548 * y * z,
        0.315392 * (3 * z * z - 1),
        -1.092548 * x * z,
        0.546274 * (x * x - y * y),
    ], axis=-1)


def test_sh_basis_matches_closed_form_polynomials():
    n = _random_unit_vectors(200, 0)
    np.testing.assert_allclose(shading.sh_basis(n).numpy(), _numpy_sh_basis(n), atol=2e-6)


def test_sh_basis_matches_tensorflow_graphics_order_and_signs():
    n = _random_unit_vectors(200, 1).astype(np.float32)
    ours = shading.sh_basis(n).numpy()
    theirs = shading.sh_basis_tensorflow_graphics(n).numpy()
    np.testing.assert_allclose(ours, theirs, atol=1e-5)


def test_sh_basis_is_orthonormal_on_the_sphere():
    # Monte-Carlo ∫ H_a H_b dω = δ_ab on a Fibonacci sphere (uniform, deterministic).
    count = 20000
    index = np.arange(count) + 0.5
    z = 1 - 2 * index / count
    azimuth = np.pi * (1 + 5 ** 0.5) * index
    radial = np.sqrt(1 - z * z)
    n = np.stack([radial * np.cos(azimuth), radial * np.sin(azimuth), z], axis=1)
    basis = shading.sh_basis(n).numpy()
    gram = basis.T @ basis * (4 * np.pi / count)
    np.testing.assert_allclose(gram, np.eye(9), atol=2e-3)


def test_shading_with_ambient_only_light_is_albedo_times_gamma0_h0():
    rng = np.random.default_rng(2)
    albedo = rng.uniform(0, 1, (2, 7, 3)).astype(np.float32)
    n = _random_unit_vectors(14, 3).reshape(2, 7, 3).astype(np.float32)
    gamma0 = np.array([[0.5, 1.0, 2.0], [3.0, 1.5, 0.2]], np.float32)
    sh = np.zeros((2, 9, 3), np.float32)
    sh[:, 0, :] = gamma0
    colors = shading.shade(albedo, n, sh.reshape(2, 27)).numpy()
    np.testing.assert_allclose(colors, albedo * gamma0[:, None, :] * 0.282095, rtol=1e-5)
    ambient = shading.ambient_sh(gamma0).numpy()
    np.testing.assert_allclose(shading.shade(albedo, n, ambient).numpy(),
                               albedo * gamma0[:, None, :], rtol=1e-5)


def test_gamma_layout_is_basis_major_then_channel():
    n = _random_unit_vectors(5, 4)[None]
    sh = np.random.default_rng(5).normal(size=(1, 27))
    expected = np.einsum('vb,bc->vc', _numpy_sh_basis(n[0]), sh.reshape(9, 3))
    np.testing.assert_allclose(shading.irradiance(n, sh).numpy()[0], expected, atol=1e-5)


def test_directional_light_approximates_clamped_cosine():
    light = np.array([[0.3, 0.5, 0.8]])
    light /= np.linalg.norm(light)
    color, ambient = np.array([[1.0, 0.5, 0.25]]), np.array([[0.1, 0.2, 0.3]])
    sh = shading.directional_sh(light, color, ambient)
    n = _random_unit_vectors(500, 6)
    got = shading.irradiance(n[None].astype(np.float32), sh).numpy()[0]
    exact = ambient + color * np.maximum(0.0, n @ light[0])[:, None]
    # Band-limited to l ≤ 2: the clamped cosine's truncation error stays below 0.1·color.
    assert np.max(np.abs(got - exact) / color) < 0.1
    facing = n @ light[0] > 0.95
    np.testing.assert_allclose(got[facing], exact[facing], atol=0.08)


def test_shading_gradients_match_numerical():
    rng = np.random.default_rng(7)
    albedo = tf.constant(rng.uniform(0.2, 0.9, (2, 4, 3)))
    n = tf.constant(_random_unit_vectors(8, 8).reshape(2, 4, 3))
    sh = tf.constant(rng.normal(size=(2, 27)))
    # Include a normal pointing straight at the camera, where the angle route has NaN gradients.
    n = tf.tensor_scatter_nd_update(n, [[0, 0]], tf.constant([[0.0, 0.0, 1.0]], tf.float64))
    theoretical, numerical = tf.test.compute_gradient(shading.shade, [albedo, n, sh])
    for t, num in zip(theoretical, numerical):
        assert np.all(np.isfinite(t))
        np.testing.assert_allclose(t, num, atol=1e-6)


def test_sphere_vertex_normals_are_radial():
    vertices, triangles = meshes.icosphere(subdivisions=3, radius=80.0, center=(5, -3, -900))
    n = normals_lib.vertex_normals(vertices[None], triangles).numpy()[0]
    radial = vertices - np.array([5, -3, -900], np.float32)
    radial /= np.linalg.norm(radial, axis=1, keepdims=True)
    np.testing.assert_allclose(np.linalg.norm(n, axis=1), 1.0, atol=1e-5)
    cos_angle = np.sum(n * radial, axis=1)
    assert np.degrees(np.arccos(np.clip(cos_angle.min(), -1, 1))) < 1.0


def test_vertex_normals_are_area_weighted():
    # A hinge: vertex 0 is shared by a big triangle in the z = 0 plane (normal +z, area 8) and a
    # small one in the x = 0 plane (normal +x, area 0.5); area weighting gives (0.5, 0, 8)/|.|.
    vertices = np.array([[0, 0, 0], [4, 0, 0], [0, 4, 0], [0, 0, -1], [0, 1, 0]], np.float64)
    triangles = np.array([[0, 1, 2], [0, 3, 4]], np.int32)
    # Check the hand-derived face normals first.
    face = normals_lib.triangle_normals(vertices[None], triangles).numpy()[0]
    np.testing.assert_allclose(face, [[0, 0, 1], [1, 0, 0]], atol=1e-12)
    n = normals_lib.vertex_normals(vertices[None], triangles).numpy()[0]
    expected = np.array([0.5, 0.0, 8.0]) / np.hypot(0.5, 8.0)
    np.testing.assert_allclose(n[0], expected, atol=1e-12)
    np.testing.assert_allclose(n[1], [0, 0, 1], atol=1e-12)
    np.testing.assert_allclose(n[3], [1, 0, 0], atol=1e-12)


def test_vertex_normals_batch_and_gradient():
    vertices, triangles = meshes.icosphere(subdivisions=1, radius=50.0)
    rng = np.random.default_rng(9)
    batch = np.stack([vertices, vertices * [1.0, 0.7, 1.2]]) + rng.normal(0, 1, (2, 42, 3))
    batch = tf.constant(batch)
    separate = [normals_lib.vertex_normals(batch[i:i + 1], triangles).numpy()[0]
                for i in range(2)]
    np.testing.assert_allclose(normals_lib.vertex_normals(batch, triangles).numpy(),
                               np.stack(separate), atol=1e-12)
    small = tf.constant(batch[:1, :12].numpy())
    _, ico_triangles = meshes.icosahedron()
    theoretical, numerical = tf.test.compute_gradient(
        lambda v: normals_lib.vertex_normals(v, ico_triangles), [small])
    np.testing.assert_allclose(theoretical[0], numerical[0], atol=1e-6)


def test_corner_sums_sparse_and_segments_agree():
    # The fast (sparse product) and the deterministic (segment sums) accumulation give the same
    # sums and the same gradients; a vertex no triangle uses (index 42) gets zero.
    vertices, triangles = meshes.icosphere(subdivisions=1, radius=50.0)
    rng = np.random.default_rng(4)
    per_triangle = tf.constant(rng.normal(0, 1, (3, len(triangles), 3)))
    weights = tf.constant(rng.normal(0, 1, (3, 43, 3)))
    results = []
    for accumulate in (normals_lib._sum_at_corners_sparse, normals_lib._sum_at_corners_segments):
        with tf.GradientTape() as tape:
            tape.watch(per_triangle)
            summed = accumulate(per_triangle, tf.constant(triangles), 43)
            loss = tf.reduce_sum(summed * weights)
        results.append((summed.numpy(), tape.gradient(loss, per_triangle).numpy()))
    expected = np.zeros((3, 43, 3))
    for t, corners in enumerate(triangles):
        for v in corners:
            expected[:, v] += per_triangle.numpy()[:, t]
    for summed, grad in results:
        np.testing.assert_allclose(summed, expected, atol=1e-12)
        np.testing.assert_allclose(grad, np.stack([weights.numpy()[:, c] for c in triangles.T])
                                   .sum(0), atol=1e-12)


def test_backface_visibility_of_a_sphere_is_the_front_cap():
    center = np.array([10.0, -20.0, -600.0])
    radius = 90.0
    vertices, triangles = meshes.icosphere(subdivisions=3, radius=radius, center=center)
    vertices = vertices.astype(np.float64)
    n = normals_lib.vertex_normals(vertices[None], triangles)
    visible = visibility.backface_visibility(vertices[None], n).numpy()[0]
    # Seen from the origin, the visible cap is where the angle between the radial direction and
    # the direction to the camera has cosine > radius / distance (the terminator).
    radial = (vertices - center) / radius
    to_camera = -center / np.linalg.norm(center)
    cosine = radial @ to_camera
    terminator = radius / np.linalg.norm(center)
    far_from_terminator = np.abs(cosine - terminator) > np.sin(np.radians(2.0))
    np.testing.assert_array_equal(visible[far_from_terminator],
                                  (cosine > terminator)[far_from_terminator])
    assert far_from_terminator.mean() > 0.9
    assert 0.3 < visible.mean() < 0.5  # less than a hemisphere under perspective


def test_zbuffer_visibility_against_a_hand_made_depth_buffer():
    depth = np.full((1, 4, 5), 100.0, np.float32)
    ids = np.zeros((1, 4, 5), np.int32)
    ids[0, 3, 4] = -1  # background pixel
    screen = np.array([[[0.5, 0.5, 100.0],   # on the surface
                        [2.2, 1.7, 103.0],   # within tolerance
                        [2.2, 1.7, 120.0],   # occluded
                        [4.5, 3.5, 100.0],   # background pixel: nothing occludes it
                        [5.5, 1.0, 100.0],   # right of the image
                        [-0.1, 1.0, 100.0]]], np.float32)  # left of the image
    got = visibility.zbuffer_visibility(screen, ids, depth, tolerance=5.0).numpy()[0]
    np.testing.assert_array_equal(got, [True, True, False, True, False, False])
