"""Tests of the image-space renderer, z-buffer visibility and the overlay helpers."""
import numpy as np
import pytest
import tensorflow as tf

from mofl.render import camera as camera_lib
from mofl.render import image_renderer
from mofl.render import overlay
from mofl.render import rasterize
from mofl.render import reference_rasterizer
from mofl.render import visibility
from mofl.render import normals as normals_lib
from tests import meshes


def _op_available():
    try:
        rasterize.load_op_library()
        return True
    except rasterize.RasterizerNotBuiltError:
        return False


needs_op = pytest.mark.skipif(not _op_available(), reason='rasterizer op library not built')
REFERENCE = reference_rasterizer.reference_rasterize_triangles


def _numpy_rotation(pitch, yaw, roll):
    cx, sx, cy, sy, cz, sz = (np.cos(pitch), np.sin(pitch), np.cos(yaw), np.sin(yaw),
                              np.cos(roll), np.sin(roll))
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rz @ ry @ rx


def _numpy_sh_basis(n):
    x, y, z = n
    return np.array([0.282095, -0.488603 * y, 0.488603 * z, -0.488603 * x, 1.092548 * x * y,
                     -1.092548 * y * z, 0.315392 * (3 * z * z - 1), -1.092548 * x * z,
                     0.546274 * (x * x - y * y)])


def test_golden_rendering_of_a_tilted_quad():
    """Every pixel against a NumPy ray cast: colour = albedo(hit point) · SH shading(normal)."""
    height, width, focal = 40, 56, 300.0
    camera = camera_lib.Camera(focal_x=focal, focal_y=focal, principal_x=29.0, principal_y=19.0,
                               image_size=(height, width))
    half_w, half_h = 60.0, 45.0
    vertices, triangles = meshes.quad(2 * half_w, 2 * half_h)
    euler = np.array([0.25, -0.5, 0.15])
    translation = np.array([12.0, -8.0, -1000.0])
    # Albedo linear in model position, so perspective-correct interpolation reproduces it exactly.
    albedo_offset = np.array([0.5, 0.4, 0.3])
    albedo_slope = np.array([[0.002, 0.001, 0.0], [0.0, -0.002, 0.0], [0.0, 0.0, 0.0]])

    def albedo_at(points):
        return albedo_offset + points @ albedo_slope.T

    rng = np.random.default_rng(0)
    sh = rng.normal(0.0, 0.3, (9, 3))
    sh[0] = [3.0, 3.2, 3.4]
    background = np.array([0.1, 0.2, 0.3])

    rendered = image_renderer.render_image(
        vertices[None], triangles, albedo_at(vertices)[None], sh.reshape(1, 27), euler[None],
        translation[None], camera, background=background, rasterizer=REFERENCE)

    rotation = _numpy_rotation(*euler)
    normal = rotation @ [0.0, 0.0, 1.0]
    shade = _numpy_sh_basis(normal) @ sh  # [3]
    columns, rows = np.meshgrid(np.arange(width) + 0.5, np.arange(height) + 0.5)
    rays = np.stack([(columns - 29.0) / focal, -(rows - 19.0) / focal, -np.ones_like(rows)], -1)
    distance = (normal @ translation) / (rays @ normal)
    hits_model = (rays * distance[..., None] - translation) @ rotation  # Rᵀ(p − t)
    margin = np.minimum(half_w - np.abs(hits_model[..., 0]), half_h - np.abs(hits_model[..., 1]))
    inside, outside = margin > 2.0, margin < -2.0  # ~0.6 px away from the outline
    expected = albedo_at(hits_model) * shade

    image = rendered.image.numpy()[0]
    mask = rendered.mask.numpy()[0]
    assert inside.sum() > 300 and outside.sum() > 800
    np.testing.assert_allclose(image[inside], expected[inside], atol=2e-5)
    np.testing.assert_allclose(image[outside], np.broadcast_to(background, image[outside].shape),
                               atol=1e-7)
    np.testing.assert_array_equal(mask[inside], 1.0)
    np.testing.assert_array_equal(mask[outside], 0.0)
    np.testing.assert_allclose(rendered.albedo.numpy()[0][inside], albedo_at(hits_model)[inside],
                               atol=2e-6)
    np.testing.assert_allclose(rendered.shading.numpy()[0][inside],
                               np.broadcast_to(shade, (inside.sum(), 3)), atol=2e-5)
    np.testing.assert_allclose(rendered.normals.numpy()[0][inside],
                               np.broadcast_to((normal + 1) / 2, (inside.sum(), 3)), atol=1e-6)
    expected_depth = -(rays * distance[..., None])[..., 2]
    np.testing.assert_allclose(rendered.depth.numpy()[0][inside], expected_depth[inside],
                               rtol=1e-5)


def _sphere_scene(image_size=(32, 32)):
    vertices, triangles = meshes.icosphere(subdivisions=2, radius=70.0)
    rng = np.random.default_rng(3)
    batch = np.stack([vertices, vertices * [1.1, 0.9, 1.0]]).astype(np.float32)
    albedo = rng.uniform(0.2, 0.9, batch.shape).astype(np.float32)
    sh = rng.normal(0.0, 0.3, (2, 27)).astype(np.float32)
    sh[:, :3] = 3.0
    euler = np.array([[0.1, 0.4, 0.0], [-0.2, -0.6, 0.3]], np.float32)
    translation = np.array([[5.0, 0.0, -900.0], [-10.0, 6.0, -1100.0]], np.float32)
    camera = camera_lib.Camera.centered(image_size, focal_length=200.0)
    background = rng.uniform(0, 1, (2,) + image_size + (3,)).astype(np.float32)
    return batch, triangles, albedo, sh, euler, translation, camera, background


@needs_op
def test_renderer_on_reference_rasterizer_equals_renderer_on_op():
    batch, triangles, albedo, sh, euler, translation, camera, background = _sphere_scene()
    args = (batch, triangles, albedo, sh, euler, translation, camera, background)
    with_op = image_renderer.render_image(*args)
    with_reference = image_renderer.render_image(*args, rasterizer=REFERENCE)
    np.testing.assert_array_equal(with_op.triangle_ids.numpy(),
                                  with_reference.triangle_ids.numpy())
    np.testing.assert_array_equal(with_op.mask.numpy(), with_reference.mask.numpy())
    np.testing.assert_allclose(with_op.image.numpy(), with_reference.image.numpy(), atol=1e-6)
    assert 0.1 < with_op.mask.numpy().mean() < 0.9
    # The background image shows through exactly where nothing is drawn.
    background_pixels = with_op.mask.numpy() == 0
    np.testing.assert_array_equal(with_op.image.numpy()[background_pixels],
                                  background[background_pixels])


def test_render_gradients_wrt_albedo_and_light_match_numerical():
    # Directional derivatives (random directions, central differences): the image is linear in
    # albedo and γ for a fixed pose, so they must agree to float32 rounding.
    batch, triangles, albedo, sh, euler, translation, _, _ = _sphere_scene()
    camera = camera_lib.Camera.centered((16, 16), focal_length=100.0)
    rng = np.random.default_rng(4)
    weights = tf.constant(rng.normal(size=(1, 16, 16, 3)), tf.float32)

    def loss(albedo_in, sh_in):
        image = image_renderer.render_image(batch[:1], triangles, albedo_in, sh_in, euler[:1],
                                            translation[:1], camera, rasterizer=REFERENCE).image
        return tf.reduce_sum(image * weights)

    albedo_0, sh_0 = tf.constant(albedo[:1]), tf.constant(sh[:1])
    with tf.GradientTape() as tape:
        tape.watch([albedo_0, sh_0])
        value = loss(albedo_0, sh_0)
    gradients = tape.gradient(value, [albedo_0, sh_0])
    for _ in range(2):
        directions = [tf.constant(rng.normal(size=x.shape), tf.float32) for x in (albedo_0, sh_0)]
        analytic = sum(float(tf.reduce_sum(g * d)) for g, d in zip(gradients, directions))
        step = 1e-2
        numeric = (loss(albedo_0 + step * directions[0], sh_0 + step * directions[1]) -
                   loss(albedo_0 - step * directions[0], sh_0 - step * directions[1])) / (2 * step)
        np.testing.assert_allclose(analytic, float(numeric), rtol=1e-3)
    assert all(np.abs(g.numpy()).max() > 0 for g in gradients)


def test_render_gradient_wrt_vertices_inside_the_silhouette():
    # Moving the quad towards the camera changes interior colours smoothly (albedo varies across
    # it); compare the analytic gradient of interior pixels with a central difference.
    vertices, triangles = meshes.quad(120.0, 90.0)
    camera = camera_lib.Camera.centered((24, 24), focal_length=150.0)
    albedo = (0.5 + vertices @ np.array([[0.003, 0, 0], [0, 0.002, 0], [0, 0, 0]]).T)[None]
    sh = np.zeros((1, 27), np.float32)
    sh[0, :3] = 3.5
    euler = np.array([[0.0, 0.3, 0.0]], np.float32)

    def interior_sum(translation):
        rendered = image_renderer.render_image(vertices[None], triangles, albedo, sh, euler,
                                               translation, camera, rasterizer=REFERENCE)
        return tf.reduce_sum(rendered.image * interior[..., None])

    base = tf.constant([[3.0, 2.0, -1000.0]])
    first = image_renderer.render_image(vertices[None], triangles, albedo, sh, euler, base,
                                        camera, rasterizer=REFERENCE)
    mask = first.mask.numpy()
    # Pixels whose 4-neighbourhood is covered stay covered under a small move.
    interior = tf.constant(mask * np.roll(mask, 1, 1) * np.roll(mask, -1, 1) *
                           np.roll(mask, 1, 2) * np.roll(mask, -1, 2))
    with tf.GradientTape() as tape:
        tape.watch(base)
        value = interior_sum(base)
    analytic = tape.gradient(value, base).numpy()[0]
    step = 0.05
    for axis in range(3):
        offset = np.zeros((1, 3), np.float32)
        offset[0, axis] = step
        numeric = (interior_sum(base + offset) - interior_sum(base - offset)).numpy() / (2 * step)
        np.testing.assert_allclose(analytic[axis], numeric, rtol=2e-2, atol=1e-3)
    assert np.abs(analytic).max() > 1e-3


def test_zbuffer_visibility_hides_a_sphere_behind_another():
    front, front_triangles = meshes.icosphere(2, radius=40.0, center=(0, 0, -500))
    back, back_triangles = meshes.icosphere(2, radius=150.0, center=(0, 0, -900))
    vertices = np.concatenate([front, back])[None].astype(np.float32)
    triangles = np.concatenate([front_triangles, back_triangles + len(front)])
    camera = camera_lib.Camera.centered((64, 64), focal_length=150.0)
    screen = camera_lib.to_screen_space(vertices, camera)
    normals = normals_lib.vertex_normals(vertices, triangles)
    backface = visibility.vertex_visibility(vertices, normals).numpy()[0]
    zbuffer = visibility.vertex_visibility(
        vertices, normals, screen, triangles, camera.image_size, mode='zbuffer',
        depth_tolerance=10.0, rasterizer=REFERENCE).numpy()[0]

    back_ids = np.arange(len(front), vertices.shape[1])
    direction = back / np.linalg.norm(back, axis=1, keepdims=True)
    off_axis = np.degrees(np.arccos(-direction[:, 2]))  # angle from the optical axis
    front_radius = np.degrees(np.arcsin(40.0 / 500.0))
    near_half = back[:, 2] > -900.0  # the half of the back sphere facing the camera
    hidden = (off_axis < front_radius - 1.0) & near_half
    clear = off_axis > front_radius + 1.0
    # Back-face culling keeps the back sphere's front cap, the z-buffer removes its occluded part.
    assert backface[back_ids][hidden].all() and hidden.sum() > 5
    assert not zbuffer[back_ids][hidden].any()
    clear_and_facing = clear & backface[back_ids]
    np.testing.assert_array_equal(zbuffer[back_ids][clear_and_facing], True)
    # The front sphere is unoccluded: every front-facing vertex stays visible.
    front_ids = np.arange(len(front))
    np.testing.assert_array_equal(zbuffer[front_ids], backface[front_ids])
    assert not (zbuffer & ~backface).any()


def test_overlay_panels_and_landmarks():
    rng = np.random.default_rng(5)
    image = rng.uniform(0, 1, (10, 12, 3)).astype(np.float32)
    render = np.zeros_like(image)
    mask = np.zeros((10, 12), np.float32)
    mask[2:5, 3:9] = 1.0
    strip = overlay.side_by_side([image, render, (image * 255).astype(np.uint8)], gap=2)
    assert strip.dtype == np.uint8 and strip.shape == (10, 3 * 12 + 2 * 2, 3)
    np.testing.assert_array_equal(strip[:, :12], overlay.to_uint8(image))
    np.testing.assert_array_equal(strip[:, 14:26], 0)
    blended = overlay.alpha_blend(image, np.ones_like(image), mask, alpha=0.25)
    np.testing.assert_array_equal(blended[0, 0], overlay.to_uint8(image)[0, 0])
    np.testing.assert_array_equal(blended[3, 4], overlay.to_uint8(0.75 * image[3, 4] + 0.25))
    canvas = overlay.draw_landmarks(np.zeros((20, 20, 3), np.uint8), [[10.5, 5.5]],
                                    color=(255, 0, 0), radius=1)
    assert tuple(canvas[5, 10]) == (255, 0, 0)
    assert canvas[15, 15].sum() == 0 and canvas[:, :, 1:].sum() == 0
