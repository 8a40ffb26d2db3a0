"""Bilinear image sampling F(u_i) at projected vertices (the image side of L_pho, paper §3.5).

Pixel convention (BUILD_NOTES.md "Coordinates and units"): pixel (row r, column c) holds the colour
at (u, v) = (c + 0.5, r + 0.5). A point is sampled from its four surrounding pixel centres, so it is
`inside` when all four exist: 0.5 ≤ u ≤ W − 0.5 and 0.5 ≤ v ≤ H − 0.5. Points outside (including
the half-pixel border and NaN coordinates) get value 0, a False mask and zero gradient. The
result is differentiable w.r.t. the points (piecewise-linear, kinks at pixel centres) and w.r.t.
the image.
"""
import tensorflow as tf


def bilinear_sample(images, points):
    """Samples images bilinearly at continuous pixel coordinates.

    Args:
        images: [B, H, W, C] images.
        points: [B, N, 2] pixel coordinates (u, v).

    Returns:
        (values [B, N, C] (0 where not inside), inside [B, N] bool).
    """
    images = tf.convert_to_tensor(images)
    points = tf.cast(points, images.dtype)
    height, width = tf.shape(images)[1], tf.shape(images)[2]
    last_x = tf.cast(width - 1, images.dtype)
    last_y = tf.cast(height - 1, images.dtype)
    # Continuous index of the pixel grid: pixel centres sit at integer (x, y).
    x = points[..., 0] - 0.5
    y = points[..., 1] - 0.5
    inside = (x >= 0) & (x <= last_x) & (y >= 0) & (y <= last_y)
    # Park masked points on pixel (0, 0) so every gather is in range and gradients stay finite.
    x = tf.where(inside, x, tf.zeros_like(x))
    y = tf.where(inside, y, tf.zeros_like(y))
    # Clamping the lower tap to W − 2 lets x == W − 1 use weight 1 on the last column.
    x0 = tf.clip_by_value(tf.floor(x), 0.0, tf.maximum(last_x - 1.0, 0.0))
    y0 = tf.clip_by_value(tf.floor(y), 0.0, tf.maximum(last_y - 1.0, 0.0))
    wx = (x - x0)[..., tf.newaxis]
    wy = (y - y0)[..., tf.newaxis]
    x0 = tf.cast(x0, tf.int32)
    y0 = tf.cast(y0, tf.int32)
    x1 = tf.minimum(x0 + 1, width - 1)
    y1 = tf.minimum(y0 + 1, height - 1)

    def tap(row, column):
        return tf.gather_nd(images, tf.stack([row, column], axis=-1), batch_dims=1)

    top = tap(y0, x0) * (1.0 - wx) + tap(y0, x1) * wx
    bottom = tap(y1, x0) * (1.0 - wx) + tap(y1, x1) * wx
    values = top * (1.0 - wy) + bottom * wy
    values = tf.where(inside[..., tf.newaxis], values, tf.zeros_like(values))
    return values, inside
