"""Triangle and area-weighted vertex normals of batched meshes.

Triangles are counter-clockwise seen from outside (BUILD_NOTES.md), so the right-hand-rule cross
product (v1 − v0) × (v2 − v0) points outwards. Its length is twice the triangle's area, which is
what makes the plain sum over a vertex's triangles area-weighted.
"""
import tensorflow as tf

_EPSILON = 1e-12


def safe_normalize(vectors, axis=-1):
    """Unit vectors along `axis`; zero vectors stay (near) zero instead of giving NaN."""
    vectors = tf.convert_to_tensor(vectors)
    squared = tf.reduce_sum(tf.square(vectors), axis=axis, keepdims=True)
    return vectors * tf.math.rsqrt(tf.maximum(squared, tf.cast(_EPSILON, vectors.dtype)))


def triangle_cross_products(vertices, triangles):
    """Unnormalised triangle normals (v1 − v0) × (v2 − v0), of length 2·area.

    Args:
        vertices: [B, V, 3] positions.
        triangles: [T, 3] int32 vertex indices, counter-clockwise seen from outside.

    Returns:
        [B, T, 3] outward cross products.
    """
    corners = tf.gather(vertices, triangles, axis=1)  # [B, T, 3, 3]
    edge_1 = corners[:, :, 1] - corners[:, :, 0]
    edge_2 = corners[:, :, 2] - corners[:, :, 0]
    return tf.linalg.cross(edge_1, edge_2)


def triangle_normals(vertices, triangles):
    """Unit outward triangle normals, [B, V, 3] × [T, 3] → [B, T, 3]."""
    return safe_normalize(triangle_cross_products(vertices, triangles))


def vertex_normals(vertices, triangles):
    """Area-weighted unit vertex normals: n_i ∝ Σ_{t ∋ i} area_t · n_t.

    Args:
        vertices: [B, V, 3] positions (any space; a rigid map commutes with this function).
        triangles: [T, 3] int32 vertex indices, counter-clockwise seen from outside.

    Returns:
        [B, V, 3] unit normals (zero for vertices that no triangle uses).
    """
    vertices = tf.convert_to_tensor(vertices)
    triangles = tf.convert_to_tensor(triangles, tf.int32)
    num_vertices = tf.shape(vertices)[1]
    cross = triangle_cross_products(vertices, triangles)  # [B, T, 3]
    # Each triangle adds its cross product to its three corners: segment-sum over the corners.
    per_corner = tf.repeat(tf.transpose(cross, [1, 0, 2]), 3, axis=0)  # [3T, B, 3]
    corner_vertex = tf.reshape(triangles, [-1])  # [3T], same order as the repeat
    summed = tf.math.unsorted_segment_sum(per_corner, corner_vertex, num_vertices)  # [V, B, 3]
    return safe_normalize(tf.transpose(summed, [1, 0, 2]))
