"""The Orthogonal Complement Layer (paper §3.2, eq. 4–5).

The fixed expression basis B (on the mesh) is first expressed on the deformation graph by solving
B = S·B_G in the least-squares sense, and B_G's columns are orthonormalised (QR). The layer then
projects the learnable graph basis Θs onto the orthogonal complement of B_G:

    OCL(Θs) = Θs − B_G (B_Gᵀ B_G)⁻¹ B_Gᵀ Θs = Θs − Q Qᵀ Θs        (eq. 5, Q orthonormal)

so B_Gᵀ·OCL(Θs) = 0 for every Θs, and identity deformations can never mimic expressions.
Graph vectors are node-major: entry 3·i + c is coordinate c of node i.
"""
import keras
import numpy as np
import tensorflow as tf


def graph_expression_basis(skinning_matrix, expression_basis):
    """Solves B = S·B_G for B_G (least squares, per coordinate).

    Args:
        skinning_matrix: [V, G] dense S.
        expression_basis: [b, V, 3] blendshape offsets.

    Returns:
        [3G, b] float64 B_G, node-major rows.
    """
    b, v, _ = expression_basis.shape
    g = skinning_matrix.shape[1]
    rhs = np.transpose(expression_basis, (1, 2, 0)).reshape(v, 3 * b).astype(np.float64)
    sol, *_ = np.linalg.lstsq(skinning_matrix.astype(np.float64), rhs, rcond=None)  # [G, 3b]
    return sol.reshape(g, 3, b).reshape(3 * g, b)


def orthonormal_basis(matrix, rank_tol=1e-8):
    """Orthonormal columns spanning `matrix`'s column space (QR, dropping dependent columns).

    Args:
        matrix: [N, b].

    Returns:
        [N, r] float64 with r = numerical rank.
    """
    q, r = np.linalg.qr(matrix)
    keep = np.abs(np.diag(r)) > rank_tol * max(np.abs(np.diag(r)).max(), 1e-30)
    return q[:, keep]


class OrthogonalComplementLayer(keras.layers.Layer):
    """OCL(Θs) = Θs − Q Qᵀ Θs for a fixed orthonormal Q [3G, r] (eq. 4–5)."""

    def __init__(self, orthonormal_graph_basis, **kwargs):
        super().__init__(**kwargs)
        self._q = tf.constant(np.asarray(orthonormal_graph_basis, np.float32))

    @property
    def basis(self):
        """[3G, r] the orthonormalised graph-domain expression basis B_G."""
        return self._q

    def call(self, theta):
        """Projects onto the orthogonal complement of B_G.

        Args:
            theta: [3G, g] learnable graph basis Θs.

        Returns:
            [3G, g] OCL(Θs).
        """
        return theta - tf.matmul(self._q, tf.matmul(self._q, theta, transpose_a=True))
