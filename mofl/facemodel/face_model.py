"""The learnable face model: graph identity basis, fixed expressions, per-vertex albedo (§3.2).

    g(α)      = ḡ + OCL(Θs)·α                               (eq. 1 with eq. 4)
    v(α, δ)   = v̄ + S·OCL(Θs)·α + B·δ                       (eq. 3)
    r(β)      = r̄ + Θa·β                                     (eq. 6)

Θs ∈ R^{3|G|×g}, Θa ∈ R^{3|V|×a} and r̄ ∈ R^{3|V|} are trained; v̄, S, B and ḡ come from the face
asset and stay fixed. Nothing is initialised from a ground-truth identity or albedo model: Θs and
Θa start as small random matrices and r̄ as the asset's constant skin colour (§3.2, §4).

Basis units (ours): Θs and Θa are stored divided by fixed scales (`shape_basis_scale`,
`albedo_basis_scale`) and multiplied back when used. The model is unchanged, but Adam moves each
stored entry by about one learning rate per step whatever its units, so a scale s lets that basis
learn s times faster in its own units (mm for Θs) than the network's weights: the "equalised
learning rate" idea. With the network's learning rate of 1e−4..2e−4 and scale 1, Θs grows by at
most 0.2 µm per step, far too slowly to reach identity offsets of several mm in a CPU-sized run.
"""
import keras
import numpy as np
import tensorflow as tf
from tensorflow_graphics.util import shape as shape_lib

from mofl import paper_constants
from mofl.facemodel import ocl as ocl_lib


class FaceModel(keras.layers.Layer):
    """Decodes identity (α, β) and expression (δ) parameters into geometry and albedo.

    Args:
        assets: mofl.facemodel.assets.FaceAssets.
        shape_dim: g, number of learned graph deformation modes (paper: 500).
        albedo_dim: number of learned albedo modes (paper: 500).
        shape_init_stddev: stddev (mm per unit α) of Θs's random initialisation.
        albedo_init_stddev: stddev (albedo per unit β) of Θa's random initialisation.
        seed: initialiser seed.
        shape_basis_scale, albedo_basis_scale: units in which Θs and Θa are stored (see the
            module docstring); 1 stores them as they are.
        orthogonal_complement: True (the paper) projects Θs with the OCL; False uses Θs as it
            is (an ablation: identity and expression bases may then overlap).
    """

    def __init__(self, assets, shape_dim=paper_constants.MODEL_SIZE,
                 albedo_dim=paper_constants.MODEL_SIZE, shape_init_stddev=0.01,
                 albedo_init_stddev=1e-4, seed=0, shape_basis_scale=1.0, albedo_basis_scale=1.0,
                 orthogonal_complement=True, **kwargs):
        super().__init__(**kwargs)
        if shape_basis_scale <= 0 or albedo_basis_scale <= 0:
            raise ValueError(f'basis scales must be > 0, got {shape_basis_scale}, '
                             f'{albedo_basis_scale}')
        self.shape_basis_scale = float(shape_basis_scale)
        self.albedo_basis_scale = float(albedo_basis_scale)
        mesh, graph = assets.mesh, assets.graph
        self.num_vertices = mesh.num_vertices
        self.num_nodes = graph.num_nodes
        self.num_expressions = mesh.num_expressions
        self.shape_dim = int(shape_dim)
        self.albedo_dim = int(albedo_dim)

        self.template = tf.constant(mesh.vertices, tf.float32)                       # [V, 3]
        self.skin_indices = tf.constant(graph.skin_indices, tf.int32)                # [V, k]
        self.skin_weights = tf.constant(graph.skin_weights, tf.float32)              # [V, k]
        self.expression_basis = tf.constant(mesh.expression_basis, tf.float32)       # [b, V, 3]
        self.expression_sigma = tf.constant(mesh.expression_sigma, tf.float32)       # [b]
        graph_basis = ocl_lib.graph_expression_basis(
            graph.skinning_matrix(mesh.num_vertices), mesh.expression_basis)
        self.ocl = ocl_lib.OrthogonalComplementLayer(ocl_lib.orthonormal_basis(graph_basis))
        self.orthogonal_complement = bool(orthogonal_complement)

        self.theta_shape = self.add_weight(
            name='theta_shape', shape=(3 * self.num_nodes, self.shape_dim),
            initializer=keras.initializers.RandomNormal(
                stddev=shape_init_stddev / self.shape_basis_scale, seed=seed))
        self.theta_albedo = self.add_weight(
            name='theta_albedo', shape=(3 * self.num_vertices, self.albedo_dim),
            initializer=keras.initializers.RandomNormal(
                stddev=albedo_init_stddev / self.albedo_basis_scale, seed=seed + 1))
        skin = np.tile(np.asarray(mesh.skin_color, np.float32)[None], (self.num_vertices, 1))
        self.mean_albedo = self.add_weight(
            name='mean_albedo', shape=(self.num_vertices, 3),
            initializer=keras.initializers.Constant(skin))

    def build(self, *args, **kwargs):
        """Every weight is created in __init__ (its shapes come from the asset, not the input)."""
        del args, kwargs
        self.built = True

    def shape_basis(self):
        """[3G, g] OCL(Θs): the learned identity basis, orthogonal to the expressions (Θs itself
        when built with orthogonal_complement=False)."""
        theta = self.shape_basis_scale * self.theta_shape
        return self.ocl(theta) if self.orthogonal_complement else theta

    def albedo_basis(self):
        """[3V, a] Θa, the learned albedo basis (in albedo units)."""
        return self.albedo_basis_scale * self.theta_albedo

    def node_displacements(self, shape_params):
        """Graph node displacements t = OCL(Θs)·α (eq. 1, 10).

        Args:
            shape_params: [B, g] α.

        Returns:
            [B, G, 3] in mm.
        """
        shape_params = self._check_params(shape_params, 'shape_params', self.shape_dim)
        if self.shape_dim == 0:   # no learned modes (supp. Table 4, size 0)
            return tf.zeros([tf.shape(shape_params)[0], self.num_nodes, 3], tf.float32)
        flat = tf.matmul(shape_params, self.shape_basis(), transpose_b=True)  # [B, 3G]
        return tf.reshape(flat, [-1, self.num_nodes, 3])

    def skin(self, node_values):
        """Applies the skinning matrix S to per-node vectors.

        Args:
            node_values: [B, G, 3].

        Returns:
            [B, V, 3] = S·node_values.
        """
        node_values = tf.convert_to_tensor(node_values, tf.float32)
        shape_lib.check_static(node_values, has_rank=3,
                               has_dim_equals=((1, self.num_nodes), (2, 3)),
                               tensor_name='node_values')
        gathered = tf.gather(node_values, self.skin_indices, axis=1)          # [B, V, k, 3]
        return tf.einsum('bvkc,vk->bvc', gathered, self.skin_weights)

    def identity_vertices(self, shape_params):
        """Neutral identity geometry v̄ + S·OCL(Θs)·α (eq. 2 with OCL).

        Args:
            shape_params: [B, g].

        Returns:
            [B, V, 3] in mm.
        """
        return self.template[None] + self.skin(self.node_displacements(shape_params))

    def expression_offsets(self, expression):
        """B·δ.

        Args:
            expression: [..., b].

        Returns:
            [..., V, 3].
        """
        expression = tf.convert_to_tensor(expression, tf.float32)
        shape_lib.check_static(expression, has_rank_greater_than=0,
                               has_dim_equals=(-1, self.num_expressions),
                               tensor_name='expression')
        return tf.tensordot(expression, self.expression_basis, axes=[[-1], [0]])

    def vertices(self, shape_params, expression):
        """Per-frame geometry v(α, δ) (eq. 3).

        Args:
            shape_params: [B, g] shared identity α.
            expression: [B, M, b] per-frame δ.

        Returns:
            [B, M, V, 3] in mm (model space).
        """
        expression = tf.convert_to_tensor(expression, tf.float32)
        shape_lib.check_static(expression, has_rank=3, tensor_name='expression')
        identity = self.identity_vertices(shape_params)                        # [B, V, 3]
        shape_lib.compare_batch_dimensions([identity, expression], last_axes=0,
                                           broadcast_compatible=False,
                                           tensor_names=('shape_params', 'expression'))
        return identity[:, None] + self.expression_offsets(expression)

    def albedo(self, albedo_params):
        """Per-vertex albedo r(β) = r̄ + Θa·β (eq. 6).

        Args:
            albedo_params: [B, a] β.

        Returns:
            [B, V, 3] RGB albedo as the images store it (sRGB-encoded values in [0, 1]).
        """
        albedo_params = self._check_params(albedo_params, 'albedo_params', self.albedo_dim)
        if self.albedo_dim == 0:
            return tf.tile(self.mean_albedo[None], [tf.shape(albedo_params)[0], 1, 1])
        flat = tf.matmul(albedo_params, self.albedo_basis(), transpose_b=True)  # [B, 3V]
        return self.mean_albedo[None] + tf.reshape(flat, [-1, self.num_vertices, 3])

    @staticmethod
    def _check_params(params, name, size):
        """`params` as a float32 [B, size] tensor (error naming it otherwise)."""
        params = tf.convert_to_tensor(params, tf.float32)
        shape_lib.check_static(params, has_rank=2, has_dim_equals=(-1, size), tensor_name=name)
        return params

    def call(self, shape_params, albedo_params, expression):
        """Decodes everything.

        Args:
            shape_params: [B, g].
            albedo_params: [B, a].
            expression: [B, M, b].

        Returns:
            dict: `vertices` [B, M, V, 3], `albedo` [B, V, 3], `node_displacements` [B, G, 3].
        """
        return {
            'vertices': self.vertices(shape_params, expression),
            'albedo': self.albedo(albedo_params),
            'node_displacements': self.node_displacements(shape_params),
        }
