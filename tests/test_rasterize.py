"""Tests of the rasterizer op (mofl/render/ops) against the pure-TF reference and hand geometry."""
import os
import shutil
import subprocess

import numpy as np
import pytest
import tensorflow as tf

from mofl.render import rasterize
from mofl.render.procedural_meshes import ellipsoid_mesh
from mofl.render.ops import build_ops
from mofl.render.reference_rasterizer import reference_rasterize_triangles

HEIGHT, WIDTH = 24, 32


def _random_screen_mesh(seed, batch=2, num_vertices=40, num_triangles=30, snap=False):
    """Random overlapping triangles, some partly off-screen, some with d <= 0, some duplicated."""
    rng = np.random.default_rng(seed)
    uv = rng.uniform([-6.0, -6.0], [WIDTH + 6.0, HEIGHT + 6.0], size=(batch, num_vertices, 2))
    if snap:  # vertices on pixel centres and corners: many pixel centres lie exactly on edges
        uv = np.round(uv * 2.0) / 2.0
    depth = rng.uniform(1.0, 5.0, size=(batch, num_vertices, 1))
    depth[:, :2] = -1.0  # vertices 0 and 1 are behind the camera
    vertices = np.concatenate([uv, depth], axis=-1).astype(np.float32)
    triangles = rng.integers(0, num_vertices, size=(num_triangles, 3)).astype(np.int32)
    triangles[-3:] = triangles[:3]  # exact duplicates: equal depths, the lower id must win
    return vertices, triangles


def _project(points, focal=40.0, centre=(16.0, 12.0)):
    """Camera space [..., 3] (looking down −z, y up) to screen (u, v, d).

    As in BUILD_NOTES.md "Coordinates and units".
    """
    d = -points[..., 2]
    u = centre[0] + focal * points[..., 0] / d
    v = centre[1] - focal * points[..., 1] / d
    return np.stack([u, v, d], axis=-1)


def _sphere(rows=6, cols=8, radius=1.0, centre=(0.0, 0.0, -4.0)):
    """Closed latitude-longitude sphere (the bench's mesh) with outward counter-clockwise
    triangles, in float64."""
    vertices, triangles = ellipsoid_mesh(rows, cols, radii=(radius, radius, radius))
    return vertices.astype(np.float64) + np.asarray(centre), triangles


@pytest.mark.parametrize('seed', [0, 1, 2])
@pytest.mark.parametrize('snap', [False, True])
@pytest.mark.parametrize('cull_backfaces', [False, True])
def test_op_matches_reference_rasterizer(seed, snap, cull_backfaces):
    vertices, triangles = _random_screen_mesh(seed, snap=snap)
    ids, depth, bary = rasterize.rasterize_triangles(vertices, triangles, (HEIGHT, WIDTH),
                                                     cull_backfaces=cull_backfaces)
    ref_ids, ref_depth, ref_bary = reference_rasterize_triangles(
        vertices, triangles, (HEIGHT, WIDTH), cull_backfaces=cull_backfaces)
    assert 0.2 < np.mean(ids.numpy() >= 0) < 1.0  # the test covers both cases
    np.testing.assert_array_equal(ids.numpy(), ref_ids.numpy())
    np.testing.assert_array_equal(depth.numpy(), ref_depth.numpy())
    np.testing.assert_allclose(bary.numpy(), ref_bary.numpy(), atol=1e-5, rtol=0)


def test_reference_rasterizer_is_independent_of_chunk_size():
    vertices, triangles = _random_screen_mesh(3, snap=True)
    whole = reference_rasterize_triangles(vertices, triangles, (HEIGHT, WIDTH))
    chunked = reference_rasterize_triangles(vertices, triangles, (HEIGHT, WIDTH),
                                            max_chunk_elements=2 * 7 * HEIGHT * WIDTH)
    for a, b in zip(whole, chunked):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_depth_and_barycentrics_match_ray_casting():
    """Perspective-correct depth/barycentrics equal the ray–triangle intersection (float64)."""
    camera = np.array([[[-1.0, -0.8, -3.0], [1.2, -0.5, -5.0], [0.1, 1.0, -4.0]]])
    screen = _project(camera).astype(np.float32)
    ids, depth, bary = rasterize.rasterize_triangles(screen, [[0, 1, 2]], (HEIGHT, WIDTH))
    ids, depth, bary = ids.numpy()[0], depth.numpy()[0], bary.numpy()[0]
    rows, cols = np.meshgrid(np.arange(HEIGHT), np.arange(WIDTH), indexing='ij')
    # Ray through the pixel centre: points s·(x/d, y/d, −1); solve s·r = Σ b_k p_k, Σ b_k = 1.
    ray = np.stack([(cols + 0.5 - 16.0) / 40.0, (12.0 - (rows + 0.5)) / 40.0,
                    -np.ones_like(rows, dtype=np.float64)], axis=-1)
    p0, p1, p2 = camera[0]
    system = np.zeros(ray.shape[:2] + (3, 3))
    system[..., 0] = -ray
    system[..., 1] = p1 - p0
    system[..., 2] = p2 - p0
    solution = np.linalg.solve(system, np.broadcast_to(-p0, ray.shape))
    ray_depth = solution[..., 0]
    ray_bary = np.stack([1.0 - solution[..., 1] - solution[..., 2], solution[..., 1],
                         solution[..., 2]], axis=-1)
    margin = ray_bary.min(axis=-1)
    assert np.all(ids[margin > 1e-4] == 0) and np.all(ids[margin < -1e-4] == -1)
    assert np.sum(ids == 0) > 50
    inside = ids == 0
    np.testing.assert_allclose(depth[inside], ray_depth[inside], rtol=1e-5)
    np.testing.assert_allclose(bary[inside], ray_bary[inside], atol=2e-5)
    assert np.all(depth[~inside] == 0) and np.all(bary[~inside] == 0)


def test_nearest_depth_wins_and_equal_depth_goes_to_lower_id():
    # Triangle 0 (d = 2) and 2 (d = 2, same corners) cover the left half; 1 (d = 1) overlaps
    # part of it, in front.
    vertices = np.array([[[0, 0, 2], [16, 0, 2], [0, 24, 2],
                          [4, 0, 1], [32, 0, 1], [4, 24, 1]]], np.float32)
    triangles = np.array([[0, 1, 2], [3, 4, 5], [0, 1, 2]], np.int32)
    ids, depth, _ = rasterize.rasterize_triangles(vertices, triangles, (HEIGHT, WIDTH))
    ids, depth = ids.numpy()[0], depth.numpy()[0]
    u = np.arange(WIDTH) + 0.5
    v = np.arange(HEIGHT)[:, None] + 0.5
    in_first = u / 16.0 + v / 24.0 <= 1.0
    in_second = (u - 4.0) / 28.0 + v / 24.0 <= 1.0
    in_second &= u >= 4.0
    expected = np.where(in_second, 1, np.where(in_first, 0, -1))
    np.testing.assert_array_equal(ids, expected)
    np.testing.assert_allclose(depth, np.select([in_second, in_first], [1.0, 2.0], 0.0),
                               rtol=1e-6, atol=0)


def test_cull_backfaces_keeps_triangles_facing_the_camera():
    """Culling agrees with n · (−p) > 0 for camera-space triangles of both orientations."""
    rng = np.random.default_rng(7)
    triangles, camera_vertices = [], []
    for k in range(12):  # one small triangle per cell of a 4 × 3 grid, random orientation
        centre = np.array([-1.2 + 0.8 * (k % 4), -0.8 + 0.8 * (k // 4), -4.0])
        corners = centre + np.array([[-0.3, -0.25, 0.0], [0.3, -0.25, 0.0], [0.0, 0.3, 0.0]])
        corners += rng.uniform(-0.05, 0.05, size=(3, 3))
        corners[:, 2] += rng.uniform(-0.5, 0.5, size=3)  # random tilt
        if rng.uniform() < 0.5:
            corners = corners[::-1]
        camera_vertices.append(corners)
        triangles.append([3 * k, 3 * k + 1, 3 * k + 2])
    camera_vertices = np.concatenate(camera_vertices)
    normals = np.array([np.cross(camera_vertices[b] - camera_vertices[a],
                                 camera_vertices[c] - camera_vertices[a])
                        for a, b, c in triangles])
    facing = np.einsum('tk,tk->t', normals, -camera_vertices[np.array(triangles)[:, 0]]) > 0
    assert 0 < facing.sum() < len(triangles)
    screen = _project(camera_vertices)[np.newaxis].astype(np.float32)
    all_ids = rasterize.rasterize_triangles(screen, triangles, (HEIGHT, WIDTH))[0].numpy()
    culled_ids = rasterize.rasterize_triangles(screen, triangles, (HEIGHT, WIDTH),
                                               cull_backfaces=True)[0].numpy()
    drawn = set(np.unique(all_ids[all_ids >= 0]))
    assert len(drawn) == len(triangles)
    assert set(np.unique(culled_ids[culled_ids >= 0])) == {t for t in drawn if facing[t]}


def test_culling_a_closed_mesh_changes_nothing_visible():
    camera_vertices, triangles = _sphere()
    screen = _project(camera_vertices)[np.newaxis].astype(np.float32)
    plain = rasterize.rasterize_triangles(screen, triangles, (HEIGHT, WIDTH))
    culled = rasterize.rasterize_triangles(screen, triangles, (HEIGHT, WIDTH),
                                           cull_backfaces=True)
    assert np.mean(plain[0].numpy() >= 0) > 0.3
    for a, b in zip(plain, culled):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_works_in_tf_function_with_dynamic_batch():
    vertices, triangles = _random_screen_mesh(4, batch=3)

    @tf.function(input_signature=[tf.TensorSpec([None, None, 3], tf.float32),
                                  tf.TensorSpec([None, 3], tf.int32)])
    def render(v, t):
        ids, depth, bary = rasterize.rasterize_triangles(v, t, (HEIGHT, WIDTH))
        assert ids.shape.as_list() == [None, HEIGHT, WIDTH]
        assert bary.shape.as_list() == [None, HEIGHT, WIDTH, 3]
        return ids, depth, bary

    for batch in (1, 3):
        graph_out = render(vertices[:batch], triangles)
        eager_out = rasterize.rasterize_triangles(vertices[:batch], triangles, (HEIGHT, WIDTH))
        for a, b in zip(graph_out, eager_out):
            np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_differentiable_barycentrics_match_op():
    vertices, triangles = _random_screen_mesh(5)
    ids, _, bary = rasterize.rasterize_triangles(vertices, triangles, (HEIGHT, WIDTH))
    recomputed = rasterize.differentiable_barycentrics(vertices, triangles, ids)
    np.testing.assert_allclose(recomputed.numpy(), bary.numpy(), atol=1e-5, rtol=0)


def test_differentiable_barycentrics_gradient_matches_numerical():
    camera_vertices, triangles = _sphere(rows=4, cols=5)
    screen = _project(camera_vertices, focal=20.0, centre=(6.0, 5.0))[np.newaxis]
    ids = rasterize.rasterize_triangles(screen.astype(np.float32), triangles, (10, 12))[0]
    assert np.mean(ids.numpy() >= 0) > 0.3

    @tf.function(input_signature=[tf.TensorSpec(screen.shape, tf.float64)])
    def weighted_barycentrics(v):
        bary = rasterize.differentiable_barycentrics(v, triangles, ids)
        return bary * tf.constant([1.0, 2.0, 3.0], tf.float64)

    theoretical, numerical = tf.test.compute_gradient(
        weighted_barycentrics, [tf.constant(screen, tf.float64)], delta=1e-4)
    assert np.abs(theoretical[0]).max() > 1e-2
    np.testing.assert_allclose(theoretical[0], numerical[0], atol=1e-6, rtol=1e-4)


def test_op_outputs_have_no_gradient_but_recomputed_depth_does():
    camera_vertices, triangles = _sphere()
    screen = tf.constant(_project(camera_vertices)[np.newaxis], tf.float32)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(screen)
        ids, depth, _ = rasterize.rasterize_triangles(screen, triangles, (HEIGHT, WIDTH))
        bary = rasterize.differentiable_barycentrics(screen, triangles, ids)
        vertex_depth = tf.gather(screen[..., 2], tf.gather(triangles, tf.maximum(ids, 0)),
                                 batch_dims=1)
        interpolated_depth = tf.reduce_sum(bary * vertex_depth, axis=-1)
        op_loss = tf.reduce_sum(depth)
        recomputed_loss = tf.reduce_sum(interpolated_depth)
    assert tape.gradient(op_loss, screen) is None
    gradient = tape.gradient(recomputed_loss, screen).numpy()
    assert np.all(np.isfinite(gradient)) and np.abs(gradient).max() > 0
    np.testing.assert_allclose(interpolated_depth.numpy(), depth.numpy(), rtol=1e-5)


def test_invalid_inputs_raise():
    vertices, triangles = _random_screen_mesh(0)
    with pytest.raises(ValueError):
        rasterize.rasterize_triangles(vertices[..., :2], triangles, (HEIGHT, WIDTH))
    with pytest.raises(ValueError):
        rasterize.rasterize_triangles(vertices, triangles[:, :2], (HEIGHT, WIDTH))
    with pytest.raises(ValueError):
        rasterize.rasterize_triangles(vertices, triangles, (0, WIDTH))
    with pytest.raises(tf.errors.InvalidArgumentError, match='outside'):
        rasterize.rasterize_triangles(vertices, triangles + 100, (HEIGHT, WIDTH))


def test_missing_library_error_says_how_to_build(tmp_path):
    with pytest.raises(rasterize.RasterizerNotBuiltError, match='build_ops'):
        rasterize.load_op_library(os.path.join(tmp_path, 'missing.so'))


@pytest.mark.skipif(shutil.which('nvcc') is None, reason='nvcc is not on PATH')
def test_cuda_kernel_compiles_with_nvcc(tmp_path):
    output = os.path.join(tmp_path, 'rasterize_triangles_gpu.cu.o')
    command = build_ops.nvcc_command(output, archs=('80',))
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    assert os.path.getsize(output) > 0


@pytest.mark.skipif(shutil.which('nvcc') is None, reason='nvcc is not on PATH')
def test_standalone_cuda_check_builds_and_its_host_reference_holds(tmp_path):
    """tools/check_cuda_rasterizer.sh (the GPU check without TensorFlow, BUILD_NOTES.md "Building
    the rasterizer op") builds with the op's nvcc flags, and its host replay of the CPU kernel
    agrees with a brute-force rasterizer on every case (`--host-only`: no GPU needed)."""
    script = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'tools',
                          'check_cuda_rasterizer.sh')
    result = subprocess.run(['bash', script, '--host-only', '--quick', str(tmp_path)],
                            capture_output=True, text=True, check=False,
                            env=dict(os.environ, MOFL_CUDA_ARCHS='80'))
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    assert 'ALL PASSED: 0 failure(s) in 38 cases' in result.stdout


@pytest.mark.skipif(not tf.config.list_physical_devices('GPU'), reason='no GPU visible')
@pytest.mark.parametrize('cull_backfaces', [False, True])
def test_gpu_kernel_matches_cpu_kernel(cull_backfaces):
    vertices, triangles = _random_screen_mesh(6, snap=True)
    with tf.device('/CPU:0'):
        cpu = rasterize.rasterize_triangles(vertices, triangles, (HEIGHT, WIDTH),
                                            cull_backfaces=cull_backfaces)
    with tf.device('/GPU:0'):
        gpu = rasterize.rasterize_triangles(vertices, triangles, (HEIGHT, WIDTH),
                                            cull_backfaces=cull_backfaces)
    assert 'GPU' in gpu[0].device
    np.testing.assert_array_equal(gpu[0].numpy(), cpu[0].numpy())
    np.testing.assert_array_equal(gpu[1].numpy(), cpu[1].numpy())
    np.testing.assert_allclose(gpu[2].numpy(), cpu[2].numpy(), atol=1e-6, rtol=0)


def test_failed_cuda_build_falls_back_to_cpu_library(monkeypatch, capsys):
    def failing_cuda_build(**unused_kwargs):
        raise RuntimeError('nvcc exploded')

    monkeypatch.setattr(build_ops, 'cuda_build_wanted', lambda: True)
    monkeypatch.setattr(build_ops, 'build_cuda_library', failing_cuda_build)
    monkeypatch.setattr(build_ops, 'build_cpu_library', lambda **unused_kwargs: 'cpu.so')
    assert build_ops.build_all() == ['cpu.so']
    warning = capsys.readouterr().err
    assert 'WARNING' in warning and 'CPU-only' in warning and 'nvcc exploded' in warning


def test_clip_space_input_matches_screen_space():
    rng = np.random.default_rng(7)
    height, width = 24, 32
    screen = np.concatenate([rng.uniform(0, [width, height], size=(2, 30, 2)),
                             rng.uniform(2.0, 9.0, size=(2, 30, 1))], -1).astype(np.float32)
    triangles = rng.integers(0, 30, size=(40, 3)).astype(np.int32)
    # Clip space of the same points: x/w, y/w are NDC, w the depth.
    w = screen[..., 2:]
    ndc_x = screen[..., :1] / (0.5 * width) - 1.0
    ndc_y = 1.0 - screen[..., 1:2] / (0.5 * height)
    clip = np.concatenate([ndc_x * w, ndc_y * w, 0.5 * w, w], -1).astype(np.float32)
    from_screen = rasterize.rasterize_triangles(screen, triangles, (height, width))
    from_clip = rasterize.rasterize_triangles(clip, triangles, (height, width))
    np.testing.assert_array_equal(from_clip[0].numpy(), from_screen[0].numpy())
    np.testing.assert_allclose(from_clip[1].numpy(), from_screen[1].numpy(), rtol=1e-5)
    np.testing.assert_allclose(from_clip[2].numpy(), from_screen[2].numpy(), atol=1e-4)
    bary = rasterize.differentiable_barycentrics(clip, triangles, from_clip[0])
    np.testing.assert_allclose(bary.numpy(), from_screen[2].numpy(), atol=1e-4)
