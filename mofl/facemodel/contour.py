"""Sliding jaw-line correspondence (paper §3.5): which vertex each of the 17 contour landmarks
marks in a given frame.

The 17 jaw landmarks of a detector trace the face's outline in the image, not fixed points on
the surface. Each asset stores, per jaw landmark, a line of candidate vertices
(`FaceAssets.contour_candidates`, built by `geometry.contour_candidate_lines`) and its outward
direction (`geometry.contour_outward_directions`); `select_contour_vertices` picks the candidate
on the silhouette of the posed mesh, and `landmark_vertex_indices` merges the choice with the
asset's 49 fixed landmark vertices. The model's landmark loss and the synthetic data's
ground-truth landmarks use the same rule.
"""
import tensorflow as tf

from mofl.facemodel import assets


def select_contour_vertices(camera_vertices, rotation, contour_candidates, outward_directions):
    """Picks each frame's sliding correspondence for the 17 jaw landmarks (§3.5).

    Rule: a jaw landmark of a detector marks the outline of the face in the image. Along each
    landmark's candidate line we take the vertex that projects furthest outwards, i.e. the one
    whose perspective projection (x/d, y/d), d = −z, has the largest component along the line's
    outward direction rotated with the head (R·o, its x and y). The outermost projection of a
    surface along a direction lies on its silhouette, so the choice slides smoothly along the line
    as the head turns and never jumps into a concave fold (under the lower lip, say) whose normals
    also happen to be perpendicular to the view. The choice is a discrete index and carries no
    gradient; the landmark position gathered with it stays differentiable in the vertices.

    Args:
        camera_vertices: [B, M, V, 3] camera-space vertex positions (camera at the origin, looking
            down −z).
        rotation: [B, M, 3, 3] the head rotation R of each frame (model → camera).
        contour_candidates: [17, K] int32 candidate vertex lines, padded with −1; every line has
            at least one candidate.
        outward_directions: [17, 3] model-space outward direction o of each line
            (`geometry.contour_outward_directions`).

    Returns:
        [B, M, 17] int32 vertex index chosen for each jaw landmark in each frame.
    """
    with tf.name_scope('select_contour_vertices'):
        vertices = tf.stop_gradient(tf.convert_to_tensor(camera_vertices, tf.float32))
        rotation = tf.stop_gradient(tf.convert_to_tensor(rotation, tf.float32))
        candidates = tf.convert_to_tensor(contour_candidates, tf.int32)
        directions = tf.convert_to_tensor(outward_directions, tf.float32)
        valid = candidates >= 0  # [17, K]
        cand_vertices = tf.gather(vertices, tf.maximum(candidates, 0), axis=2)  # [B, M, 17, K, 3]
        depth = tf.maximum(-cand_vertices[..., 2:], 1e-6)
        projected = cand_vertices[..., :2] / depth                              # [B, M, 17, K, 2]
        outward = tf.einsum('bmij,lj->bmli', rotation, directions)[..., :2]     # [B, M, 17, 2]
        key = tf.reduce_sum(projected * outward[..., tf.newaxis, :], axis=-1)   # [B, M, 17, K]
        key = tf.where(valid, key, tf.fill(tf.shape(key), float('-inf')))
        best = tf.argmax(key, axis=-1, output_type=tf.int32)                    # [B, M, 17]
        return _gather_candidate(candidates, best)


def _gather_candidate(candidates, best):
    """candidates [17, K], best [B, M, 17] column per landmark -> [B, M, 17] vertex index."""
    num_candidates = tf.shape(candidates)[1]
    flat = tf.reshape(candidates, [-1])
    rows = tf.range(tf.shape(candidates)[0], dtype=tf.int32)
    return tf.gather(flat, rows * num_candidates + best)


def landmark_vertex_indices(landmark_indices, contour_vertices):
    """Replaces the 17 jaw landmarks' fixed vertices by each frame's sliding choice.

    Args:
        landmark_indices: [66] int32 fixed landmark vertices of the asset.
        contour_vertices: [B, M, 17] int32 from `select_contour_vertices`.

    Returns:
        [B, M, 66] int32 vertex index of every landmark in every frame.
    """
    landmark_indices = tf.convert_to_tensor(landmark_indices, tf.int32)
    contour_vertices = tf.convert_to_tensor(contour_vertices, tf.int32)
    fixed = landmark_indices[assets.NUM_CONTOUR_LANDMARKS:]
    fixed = tf.broadcast_to(
        fixed, tf.concat([tf.shape(contour_vertices)[:2], tf.shape(fixed)], 0))
    return tf.concat([contour_vertices, fixed], axis=-1)
