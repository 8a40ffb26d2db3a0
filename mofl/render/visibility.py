"""Per-vertex visibility for the photometric term (paper §3.5, docs/renderer.md "Image formation").

Two tests, combined by `vertex_visibility`:
- back-face culling (the paper's choice): vertex i is visible when n_i · (−p_i) > 0, with p_i its
  camera-space position and n_i its camera-space normal (the camera sits at the origin);
- z-buffer occlusion (our option): the vertex's depth is within a tolerance of the rasterizer's
  depth buffer at the pixel containing its projection. This removes, e.g., the cheek behind the
  nose at large yaw, which back-face culling keeps. A vertex whose pixel is background (a
  silhouette vertex just outside the rasterized outline, whose pixel centre no triangle covers)
  is not occluded by anything and counts as visible.
Visibility is a discrete mask; it carries no gradient.
"""
import tensorflow as tf

VISIBILITY_MODES = ('backface', 'zbuffer')
DEFAULT_DEPTH_TOLERANCE_MM = 5.0


def backface_visibility(points_camera, normals_camera):
    """Back-face culling per vertex: n · (−p) > 0.

    Args:
        points_camera: [B, V, 3] camera-space positions.
        normals_camera: [B, V, 3] camera-space normals (need not be unit length).

    Returns:
        [B, V] bool, True where the vertex faces the camera.
    """
    facing = -tf.reduce_sum(points_camera * normals_camera, axis=-1)
    return facing > 0.0


def pixel_of_points(screen_points, image_size):
    """The pixel that contains each screen point, and whether it is inside the image.

    Args:
        screen_points: [B, V, >=2] pixel coordinates (u, v) in the first two channels.
        image_size: (H, W), Python ints or scalar tensors.

    Returns:
        (rows [B, V] int32 clamped to [0, H−1], columns [B, V] int32 clamped to [0, W−1],
         inside [B, V] bool).
    """
    dtype = screen_points.dtype
    last_row, last_column = (tf.cast(size, dtype) - 1.0 for size in image_size)
    column = tf.floor(screen_points[..., 0])
    row = tf.floor(screen_points[..., 1])
    inside = (column >= 0) & (column <= last_column) & (row >= 0) & (row <= last_row)
    column = tf.cast(tf.clip_by_value(column, 0.0, last_column), tf.int32)
    row = tf.cast(tf.clip_by_value(row, 0.0, last_row), tf.int32)
    return row, column, inside


def zbuffer_visibility(screen_vertices, triangle_ids, depth_buffer,
                       tolerance=DEFAULT_DEPTH_TOLERANCE_MM):
    """Occlusion test of projected vertices against a rasterized depth buffer.

    Args:
        screen_vertices: [B, V, 3] (u, v, d) as produced by `camera.to_screen_space`.
        triangle_ids: [B, H, W] int32 rasterized triangle ids (−1 = background).
        depth_buffer: [B, H, W] nearest depth per pixel (mm).
        tolerance: a vertex counts as visible when d ≤ depth_buffer + tolerance (mm).

    Returns:
        [B, V] bool: inside the image and not behind the nearest surface at its pixel (a
        background pixel occludes nothing).
    """
    depth_buffer = tf.convert_to_tensor(depth_buffer)
    image_size = tf.shape(depth_buffer)[1], tf.shape(depth_buffer)[2]
    row, column, inside = pixel_of_points(tf.convert_to_tensor(screen_vertices), image_size)
    indices = tf.stack([row, column], axis=-1)
    buffer_depth = tf.gather_nd(depth_buffer, indices, batch_dims=1)
    covered = tf.gather_nd(triangle_ids, indices, batch_dims=1) >= 0
    depth = tf.cast(screen_vertices[..., 2], buffer_depth.dtype)
    return inside & (~covered | (depth <= buffer_depth + tolerance))


def vertex_visibility(points_camera, normals_camera, screen_vertices=None, triangles=None,
                      image_size=None, mode='backface',
                      depth_tolerance=DEFAULT_DEPTH_TOLERANCE_MM, rasterizer=None):
    """Per-vertex visibility mask used by the photometric loss.

    Args:
        points_camera: [B, V, 3] camera-space positions.
        normals_camera: [B, V, 3] camera-space normals.
        screen_vertices: [B, V, 3] (u, v, d); needed for mode 'zbuffer'.
        triangles: [T, 3] int32; needed for mode 'zbuffer'.
        image_size: (H, W); needed for mode 'zbuffer'.
        mode: 'backface' (the paper) or 'zbuffer' (back-face culling AND not occluded).
        depth_tolerance: z-buffer tolerance in mm.
        rasterizer: a `rasterize_triangles`-compatible callable; defaults to the op in
            `mofl.render.rasterize`.

    Returns:
        [B, V] bool.
    """
    if mode not in VISIBILITY_MODES:
        raise ValueError(f'visibility mode {mode!r}, want one of {VISIBILITY_MODES}')
    visible = backface_visibility(points_camera, normals_camera)
    if mode == 'zbuffer':
        if screen_vertices is None or triangles is None or image_size is None:
            raise ValueError("mode 'zbuffer' needs screen_vertices, triangles and image_size")
        if rasterizer is None:
            from mofl.render import rasterize  # pylint: disable=import-outside-toplevel
            rasterizer = rasterize.rasterize_triangles
        triangle_ids, depth_buffer, _ = rasterizer(
            tf.stop_gradient(screen_vertices), triangles, image_size)
        visible &= zbuffer_visibility(screen_vertices, triangle_ids, depth_buffer,
                                      depth_tolerance)
    return visible
