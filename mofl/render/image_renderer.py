"""Image-space renderer: rasterize the posed mesh, interpolate shaded vertex colours, composite.

Used for overlays, TensorBoard and the synthetic-data generator (training itself samples the image
at the vertices, `sampling.bilinear_sample`). Pixel colours are the perspective-correct barycentric
interpolation of the per-vertex colours of eq. 7, with barycentrics from the rasterizer's
`differentiable_barycentrics`, so the image is differentiable w.r.t. vertices, albedo and γ inside
the silhouette (the silhouette itself, i.e. which triangle covers a pixel, is not).
"""
import dataclasses
import tensorflow as tf

from mofl.render import camera as camera_lib
from mofl.render import normals as normals_lib
from mofl.render import shading


@dataclasses.dataclass
class RenderedImage:
    """Outputs of `render_image`; images are [B, H, W, 3] float32, masks [B, H, W] float32.

    Attributes:
        image: the shaded render composited over the background.
        mask: 1 where a triangle covers the pixel (the foreground), else 0.
        albedo: interpolated albedo r (0 on background).
        shading: interpolated irradiance Σ γ_b H_b(n) (0 on background).
        normals: interpolated unit camera-space normals mapped to colours (n + 1) / 2
            (0 on background) — the "geometry" view.
        triangle_ids: [B, H, W] int32 rasterizer output (−1 = background).
        depth: [B, H, W] depth buffer in mm (0 on background).
        screen_vertices: [B, V, 3] projected vertices (u, v, d).
        vertex_colors: [B, V, 3] shaded per-vertex colours c_i.
    """
    image: tf.Tensor
    mask: tf.Tensor
    albedo: tf.Tensor
    shading: tf.Tensor
    normals: tf.Tensor
    triangle_ids: tf.Tensor
    depth: tf.Tensor
    screen_vertices: tf.Tensor
    vertex_colors: tf.Tensor


def default_rasterizer():
    """The rasterizer op `mofl.render.rasterize.rasterize_triangles` (imported on first use)."""
    from mofl.render import rasterize  # pylint: disable=import-outside-toplevel
    return rasterize.rasterize_triangles


def default_barycentrics():
    """`mofl.render.rasterize.differentiable_barycentrics` (imported on first use)."""
    from mofl.render import rasterize  # pylint: disable=import-outside-toplevel
    return rasterize.differentiable_barycentrics


def interpolate_attributes(attributes, triangles, triangle_ids, barycentrics):
    """Barycentric interpolation of per-vertex attributes at every pixel.

    Args:
        attributes: [B, V, C] per-vertex values.
        triangles: [T, 3] int32.
        triangle_ids: [B, H, W] int32 (−1 = background).
        barycentrics: [B, H, W, 3] weights of the covering triangle's corners.

    Returns:
        [B, H, W, C] interpolated values, 0 on background.
    """
    attributes = tf.convert_to_tensor(attributes)
    covered = triangle_ids >= 0
    safe_ids = tf.where(covered, triangle_ids, tf.zeros_like(triangle_ids))
    corner_vertices = tf.gather(tf.convert_to_tensor(triangles, tf.int32), safe_ids)  # [B,H,W,3]
    corner_values = tf.gather(attributes, corner_vertices, batch_dims=1)  # [B, H, W, 3, C]
    weights = tf.cast(barycentrics, attributes.dtype)[..., tf.newaxis]
    values = tf.reduce_sum(weights * corner_values, axis=-2)
    return tf.where(covered[..., tf.newaxis], values, tf.zeros_like(values))


def composite(foreground, mask, background):
    """mask · foreground + (1 − mask) · background.

    Args:
        foreground: [B, H, W, 3].
        mask: [B, H, W] in [0, 1].
        background: [B, H, W, 3] image, [B, 3] or [3] colour, or None (black).

    Returns:
        [B, H, W, 3].
    """
    mask = tf.cast(mask, foreground.dtype)[..., tf.newaxis]
    if background is None:
        return foreground * mask
    background = tf.cast(background, foreground.dtype)
    if background.shape.rank == 1:
        background = background[tf.newaxis, tf.newaxis, tf.newaxis, :]
    elif background.shape.rank == 2:
        background = background[:, tf.newaxis, tf.newaxis, :]
    return foreground * mask + background * (1.0 - mask)


def render_image(vertices_model, triangles, albedo, sh, rotation_euler, translation,
                 camera=camera_lib.Camera(), background=None, rasterizer=None,
                 barycentrics_fn=None, cull_backfaces=False) -> RenderedImage:
    """Renders the posed, lit mesh (§3.3) into [B, H, W, 3] images.

    Args:
        vertices_model: [B, V, 3] model-space vertices in mm.
        triangles: [T, 3] int32, counter-clockwise seen from outside.
        albedo: [B, V, 3] or [V, 3] per-vertex albedo in [0, 1].
        sh: [B, 27] illumination γ (layout in `shading`).
        rotation_euler: [B, 3] [pitch, yaw, roll] radians.
        translation: [B, 3] mm.
        camera: intrinsics and image size (H, W).
        background: what the render is composited over: a [B, H, W, 3] image (e.g. the input
            frame), a [B, 3] / [3] colour, or None for black.
        rasterizer: a `rasterize_triangles`-compatible callable (e.g. the pure-TF reference);
            defaults to the op.
        barycentrics_fn: a `differentiable_barycentrics`-compatible callable; defaults to the one
            in `mofl.render.rasterize`.
        cull_backfaces: passed to the rasterizer.

    Returns:
        A `RenderedImage`. `image` is not clipped to [0, 1].
    """
    rasterizer = rasterizer or default_rasterizer()
    barycentrics_fn = barycentrics_fn or default_barycentrics()
    vertices_model = tf.convert_to_tensor(vertices_model, tf.float32)
    triangles = tf.convert_to_tensor(triangles, tf.int32)
    albedo = tf.convert_to_tensor(albedo, tf.float32)
    if albedo.shape.rank == 2:
        albedo = tf.broadcast_to(albedo[tf.newaxis], tf.shape(vertices_model))

    screen, points_camera, _ = camera_lib.model_to_screen(
        vertices_model, rotation_euler, translation, camera)
    normals_camera = normals_lib.vertex_normals(points_camera, triangles)
    vertex_shading = shading.irradiance(normals_camera, sh)
    vertex_colors = albedo * vertex_shading

    triangle_ids, depth, _ = rasterizer(screen, triangles, camera.image_size,
                                        cull_backfaces=cull_backfaces)
    barycentrics = barycentrics_fn(screen, triangles, triangle_ids)
    mask = tf.cast(triangle_ids >= 0, tf.float32)

    per_vertex = tf.concat([vertex_colors, albedo, vertex_shading, normals_camera], axis=-1)
    interpolated = interpolate_attributes(per_vertex, triangles, triangle_ids, barycentrics)
    color, albedo_image, shading_image, normal_image = tf.split(interpolated, 4, axis=-1)
    normal_image = (normals_lib.safe_normalize(normal_image) + 1.0) * 0.5 * mask[..., tf.newaxis]
    return RenderedImage(
        image=composite(color, mask, background),
        mask=mask,
        albedo=albedo_image,
        shading=shading_image,
        normals=normal_image,
        triangle_ids=triangle_ids,
        depth=depth,
        screen_vertices=screen,
        vertex_colors=vertex_colors)
