"""A slow, simple pure-TF z-buffer rasterizer: the test oracle of the `MoflRasterizeTriangles` op.

It tests every pixel centre against every triangle (in chunks of triangles to bound memory) and
evaluates the same float32 expressions in the same order as the op's kernels
(mofl/render/ops/rasterize_triangles_math.h), so triangle ids and depths must agree bit for bit.
Semantics and conventions: `mofl.render.rasterize.rasterize_triangles` and BUILD_NOTES.md.
Cost is O(B · T · H · W); use it for tests and the benchmark baseline only.
"""
import numpy as np
import tensorflow as tf

_MAX_FINITE = float(np.finfo(np.float32).max)


def _is_positive_finite(x):
    return (x > 0.0) & (x <= _MAX_FINITE)


def _screen_area(u0, u1, u2, v0, v1, v2):
    """Twice the signed screen area; negative for camera-facing triangles (v points down)."""
    return (u1 - u0) * (v2 - v0) - (v1 - v0) * (u2 - u0)


def _edges(u0, u1, u2, v0, v1, v2, px, py):
    """Edge functions at pixel centres; edge k is opposite vertex k."""
    edge0 = (u2 - u1) * (py - v1) - (v2 - v1) * (px - u1)
    edge1 = (u0 - u2) * (py - v2) - (v0 - v2) * (px - u2)
    edge2 = (u1 - u0) * (py - v0) - (v1 - v0) * (px - u0)
    return edge0, edge1, edge2


def _interpolate(edges, area, depths):
    """Perspective-correct (depth, [barycentrics]) from edges, area and vertex depths."""
    inverse_area = 1.0 / area
    s = [(e * inverse_area) * (1.0 / d) for e, d in zip(edges, depths)]
    depth = 1.0 / ((s[0] + s[1]) + s[2])
    return depth, [sk * depth for sk in s]


def reference_rasterize_triangles(vertices, triangles, image_size, cull_backfaces=False,
                                  max_chunk_elements=1 << 22):
    """Rasterizes like `rasterize_triangles`, by brute force in TF (eager).

    Args:
        vertices: [B, V, 3] screen-space (u, v, d).
        triangles: [T, 3] int32.
        image_size: (H, W).
        cull_backfaces: drop triangles that are counter-clockwise on screen.
        max_chunk_elements: bound on B · (triangles per chunk) · H · W per step.

    Returns:
        triangle_ids [B, H, W] int32 (−1 background), depth [B, H, W] float32 (0 background),
        barycentrics [B, H, W, 3] float32 (0 background).
    """
    height, width = (int(s) for s in image_size)
    vertices = tf.convert_to_tensor(vertices, tf.float32)
    triangles = tf.convert_to_tensor(triangles, tf.int32)
    batch = int(vertices.shape[0])
    num_triangles = int(triangles.shape[0])
    num_pixels = height * width

    corners = tf.gather(vertices, triangles, axis=1)  # [B, T, 3 corners, 3]
    u = tf.unstack(corners[..., 0], axis=-1)  # 3 × [B, T]
    v = tf.unstack(corners[..., 1], axis=-1)
    d = tf.unstack(corners[..., 2], axis=-1)
    area = _screen_area(*u, *v)
    inverse_area = 1.0 / area
    valid = (_is_positive_finite(d[0]) & _is_positive_finite(d[1]) & _is_positive_finite(d[2]) &
             (_is_positive_finite(area) | _is_positive_finite(-area)) &
             (_is_positive_finite(inverse_area) | _is_positive_finite(-inverse_area)))
    if cull_backfaces:
        valid &= area < 0.0

    rows, cols = np.meshgrid(np.arange(height), np.arange(width), indexing='ij')
    px = tf.constant(cols.reshape(1, 1, -1).astype(np.float32) + np.float32(0.5))
    py = tf.constant(rows.reshape(1, 1, -1).astype(np.float32) + np.float32(0.5))

    best_depth = tf.fill([batch, num_pixels], np.float32(np.inf))
    best_id = tf.fill([batch, num_pixels], -1)
    chunk = max(1, max_chunk_elements // max(1, batch * num_pixels))
    for start in range(0, num_triangles, chunk):
        stop = min(start + chunk, num_triangles)

        def part(x, start=start, stop=stop):
            return x[:, start:stop, tf.newaxis]  # [B, C, 1]

        cu, cv, cd = [part(x) for x in u], [part(x) for x in v], [part(x) for x in d]
        carea = part(area)
        edges = _edges(*cu, *cv, px, py)  # 3 × [B, C, P]
        inside_positive = (edges[0] >= 0.0) & (edges[1] >= 0.0) & (edges[2] >= 0.0)
        inside_negative = (edges[0] <= 0.0) & (edges[1] <= 0.0) & (edges[2] <= 0.0)
        inside = tf.where(carea > 0.0, inside_positive, inside_negative) & part(valid)
        depth, _ = _interpolate(edges, carea, cd)
        covered = inside & _is_positive_finite(depth)
        depth = tf.where(covered, depth, np.float32(np.inf))
        chunk_depth = tf.reduce_min(depth, axis=1)  # [B, P]
        ids = tf.range(start, stop)[tf.newaxis, :, tf.newaxis]
        is_nearest = covered & (depth == chunk_depth[:, tf.newaxis])
        chunk_id = tf.reduce_min(tf.where(is_nearest, ids, num_triangles), axis=1)
        # Chunks come in increasing id order, so an equal depth keeps the earlier (lower) id.
        closer = chunk_depth < best_depth
        best_depth = tf.where(closer, chunk_depth, best_depth)
        best_id = tf.where(closer, chunk_id, best_id)

    # Barycentrics of the winners, by the same formula at their pixels.
    covered = best_id >= 0
    winner = tf.gather(corners, tf.maximum(best_id, 0), batch_dims=1)  # [B, P, 3, 3]
    wu = tf.unstack(winner[..., 0], axis=-1)
    wv = tf.unstack(winner[..., 1], axis=-1)
    wd = tf.unstack(winner[..., 2], axis=-1)
    edges = _edges(*wu, *wv, px[0], py[0])
    _, barycentrics = _interpolate(edges, _screen_area(*wu, *wv), wd)
    barycentrics = tf.where(covered[..., tf.newaxis], tf.stack(barycentrics, axis=-1), 0.0)
    depth = tf.where(covered, best_depth, 0.0)
    return (tf.reshape(best_id, [batch, height, width]),
            tf.reshape(depth, [batch, height, width]),
            tf.reshape(barycentrics, [batch, height, width, 3]))
