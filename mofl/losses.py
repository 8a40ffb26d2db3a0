"""The training loss terms of FML (paper §3.5, eq. 8–12) as pure TensorFlow functions.

L = λpho·Lpho + λlan·Llan + λsmo·Lsmo + λspa·Lspa + λble·Lble   (eq. 8–9)

Normalisation, shared by every term: each term is the paper's plain double sum for one sample
(over frames and visible vertices, landmarks, graph nodes and their neighbours, mesh vertices and
their neighbours, or frames and blendshapes), and the batch reduces by the mean over samples. No
term divides by a vertex or landmark count; the weights do that where the paper does
(λpho = 1.6/|V̄|, supplement §2, divides the photometric sum by the vertex count).

Neighbour sums: eq. 10 and 11 sum over every node/vertex i and every neighbour j ∈ N_i, so each
unordered edge {i, j} appears twice. The functions take unique edges [E, 2] (as the face assets
store them) and count each one twice, so they return exactly the double sum.

The terms know nothing of data files: callers gather the colours, landmarks and graph offsets.
"""
import numpy as np
import tensorflow as tf
from tensorflow_graphics.util import shape as shape_lib

# Supplement §2 weights; λpho additionally divides by the vertex count (`paper_loss_weights`).
PAPER_PHOTOMETRIC_WEIGHT_TIMES_VERTICES = 1.6
PAPER_LANDMARK_WEIGHT = 4.7
PAPER_SMOOTHNESS_WEIGHT = 1e-3
PAPER_SPARSITY_WEIGHT = 1e-7
PAPER_EXPRESSION_WEIGHT = 1e-8
PAPER_CHROMA_ETA = 80.0
PAPER_SPARSITY_EXPONENT = 0.9

# Keeps ‖d‖^p differentiable at d = 0 (see `appearance_sparsity_loss`).
_SPARSITY_EPSILON = 1e-8


def paper_loss_weights(num_vertices):
    """Returns the supplement §2 weights keyed like the terms `total_loss` combines.

    Args:
        num_vertices: |V̄|, the number of mesh vertices (λpho = 1.6 / |V̄|).
    """
    return {
        'photometric': PAPER_PHOTOMETRIC_WEIGHT_TIMES_VERTICES / float(num_vertices),
        'landmark': PAPER_LANDMARK_WEIGHT,
        'smoothness': PAPER_SMOOTHNESS_WEIGHT,
        'sparsity': PAPER_SPARSITY_WEIGHT,
        'expression': PAPER_EXPRESSION_WEIGHT,
        'identity_mean': 0.0,    # ours, not in the paper (`identity_mean_loss`)
        'dense_points': 0.0,     # ours, not in the paper (docs/data.md "Dense 2D points")
        'depth_spread': 0.0,     # ours, not in the paper (`depth_spread_loss`)
    }


def total_loss(terms, weights):
    """Weighted sum of loss terms (eq. 8–9).

    Args:
        terms: dict name -> scalar tensor.
        weights: dict name -> float; must have a weight for every term (extra weights are
            ignored, so one weight dict serves training stages that use fewer terms).

    Returns:
        Scalar float32 tensor Σ_name weights[name] · terms[name].

    Raises:
        KeyError: a term has no weight.
    """
    missing = sorted(set(terms) - set(weights))
    if missing:
        raise KeyError(f'no loss weight for term(s) {missing}; weights given: {sorted(weights)}')
    total = tf.constant(0.0, tf.float32)
    for name in sorted(terms):
        total += tf.cast(weights[name], tf.float32) * tf.cast(terms[name], tf.float32)
    return total


def photometric_loss(sampled_colors, rendered_colors, visibility):
    """Multi-frame photometric consistency (§3.5, the Lpho equation after eq. 9).

    Lpho = Σ_f Σ_{i ∈ V̂} ‖F[f](u_i) − c_i‖², summed over frames and visible vertices (a plain sum,
    not a mean: λpho = 1.6/|V̄| normalises it), then averaged over the batch.

    Args:
        sampled_colors: [B, M, V, 3] image colours F(u_i) at the projected vertices.
        rendered_colors: [B, M, V, 3] shaded model colours c_i (eq. 7), same colour range.
        visibility: [B, M, V] 1 for visible vertices (V̂), 0 otherwise (bool or float; a
            fractional value weights the vertex).

    Returns:
        Scalar of the inputs' float dtype (non-float inputs: float32).
    """
    with tf.name_scope('photometric_loss'):
        sampled_colors, rendered_colors, visibility = _check_per_point_pair(
            sampled_colors, rendered_colors, visibility, channels=3,
            names=('sampled_colors', 'rendered_colors', 'visibility'))
        return _weighted_squared_distance(sampled_colors, rendered_colors, visibility)


def landmark_loss(predicted, detected, confidence):
    """Multi-frame landmark consistency (§3.5, Llan).

    Llan = Σ_f Σ_i c_i ‖s_i − u_{s_i}‖², summed over frames and the 66 landmarks, averaged over
    the batch.

    Args:
        predicted: [B, M, L, 2] projected mesh landmarks u_s (pixels).
        detected: [B, M, L, 2] detected landmarks s (pixels).
        confidence: [B, M, L] detector confidences c (0 drops a landmark).

    Returns:
        Scalar of the inputs' float dtype (non-float inputs: float32).
    """
    with tf.name_scope('landmark_loss'):
        predicted, detected, confidence = _check_per_point_pair(
            predicted, detected, confidence, channels=2,
            names=('predicted', 'detected', 'confidence'))
        return _weighted_squared_distance(detected, predicted, confidence)


def _check_per_point_pair(a, b, weights, channels, names):
    """Checks a, b [B, M, N, channels] and weights [B, M, N] (same B, M, N) and converts all
    three to one float dtype (`_float_dtype`: b's if it is a float tensor, as the model's output).

    Raises:
        ValueError: naming the tensor whose rank, last dimension or batch shape is wrong.
    """
    dtype = _float_dtype(b, a)
    a, b = _as_float(a, dtype), _as_float(b, dtype)
    weights = tf.convert_to_tensor(weights)
    for tensor, name in ((a, names[0]), (b, names[1])):
        shape_lib.check_static(tensor, has_rank=4, has_dim_equals=(-1, channels),
                               tensor_name=name)
    shape_lib.check_static(weights, has_rank=3, tensor_name=names[2])
    shape_lib.compare_batch_dimensions([a, b, weights], last_axes=2, broadcast_compatible=False,
                                       tensor_names=names)
    return a, b, tf.cast(weights, a.dtype)


def _weighted_squared_distance(a, b, weights):
    """Σ_f Σ_i w_i ‖a_i − b_i‖² per sample, averaged over the batch.

    Entries with weight 0 are selected out before squaring: they may hold any value (a hidden
    vertex sampled outside the image, an undetected landmark, even NaN) without reaching the
    value or the gradients.

    Args:
        a, b: [B, M, N, C].
        weights: [B, M, N] (bool or float).

    Returns:
        Scalar of a's dtype.
    """
    diff = tf.where(weights[..., tf.newaxis] > 0, a - b, tf.zeros_like(a))
    squared = weights * tf.reduce_sum(tf.square(diff), axis=-1)
    return tf.reduce_mean(tf.reduce_sum(squared, axis=[1, 2]))


def _float_dtype(*values):
    """The dtype the loss computes in: that of the first TensorFlow tensor or variable among
    `values` with a float dtype (the model side), else of the first float array, else float32."""
    for value in values:
        if tf.is_tensor(value) or isinstance(value, tf.Variable):
            if value.dtype.is_floating:
                return value.dtype
    for value in values:
        if tf.is_tensor(value) or isinstance(value, tf.Variable):
            continue                                  # symbolic inside tf.function: no numpy
        dtype = np.asarray(value).dtype
        if np.issubdtype(dtype, np.floating):
            return tf.as_dtype(dtype)
    return tf.float32


def _as_float(value, dtype):
    """`value` as a `dtype` tensor (cast when it is a tensor of another dtype)."""
    value = tf.convert_to_tensor(value)
    return value if value.dtype == dtype else tf.cast(value, dtype)


def _float_tensor(value):
    """`value` as a tensor, keeping a float dtype (others become float32)."""
    return _as_float(value, _float_dtype(value))


def _edge_tensor(edges, name):
    """[E, 2] int32 index pairs, checked."""
    edges = tf.convert_to_tensor(edges, tf.int32)
    shape_lib.check_static(edges, has_rank=2, has_dim_equals=(-1, 2), tensor_name=name)
    return edges


def smoothness_loss(node_displacements, edges):
    """Graph-level geometric smoothness, the linearised membrane energy (eq. 10).

    Lsmo = Σ_i Σ_{j ∈ N_i} ‖t_i − t_j‖², each unordered edge counted in both directions (twice
    the sum over unique edges), averaged over the batch.

    Args:
        node_displacements: [B, G, 3] t_i = g_i − ḡ_i (mm).
        edges: [E, 2] int32 unique node pairs (i, j) with j ∈ N_i.

    Returns:
        Scalar of the inputs' float dtype (non-float inputs: float32).
    """
    with tf.name_scope('smoothness_loss'):
        displacements = _float_tensor(node_displacements)
        edges = _edge_tensor(edges, 'edges')
        shape_lib.check_static(displacements, has_rank=3, has_dim_equals=(-1, 3),
                               tensor_name='node_displacements')
        diff = (tf.gather(displacements, edges[:, 0], axis=1)
                - tf.gather(displacements, edges[:, 1], axis=1))
        return 2.0 * tf.reduce_mean(tf.reduce_sum(tf.square(diff), axis=[1, 2]))


def identity_mean_loss(node_displacements):
    """Ours, not in the paper: the batch's mean identity deformation, pulled towards zero.

    L = (1/G) Σ_i ‖(1/B) Σ_b t_{b,i}‖², i.e. a prior that the template is the population's mean
    face, so that the learned basis spends its modes on how people differ, not on one shared
    offset (which the losses also allow: a uniform shift is absorbed by the pose's translation,
    and systematic differences between the data and the model find their way into it). Off
    (weight 0) in the paper's configuration; `mofl.train --lambda_identity_mean`.

    Args:
        node_displacements: [B, G, 3] t = OCL(Θs)·α per sample.

    Returns:
        Scalar of the inputs' float dtype (non-float inputs: float32).
    """
    with tf.name_scope('identity_mean_loss'):
        displacements = _float_tensor(node_displacements)
        shape_lib.check_static(displacements, has_rank=3, has_dim_equals=(-1, 3),
                               tensor_name='node_displacements')
        mean = tf.reduce_mean(displacements, axis=0)                           # [G, 3]
        return tf.reduce_mean(tf.reduce_sum(tf.square(mean), axis=-1))


def depth_spread_loss(translation):
    """Ours, not in the paper: the spread of the samples' camera distances over the batch.

    L = (1/B) Σ_b (z_b − z̄)², z_b = (1/M) Σ_f log d_{b,f}, d = −t_z the depth of the pose's
    translation (mm; the camera looks down −z), z̄ the batch mean of z_b. A bigger head farther
    away and a smaller one nearer give the same picture, so the other terms cannot tell a
    person's size from the distance: left alone, the pose's depth absorbs how people differ in
    size, which then never reaches the identity model (docs/experiments.md "Size and
    distance (fourteenth session)"). This prior says that people are filmed at similar distances
    (per sample: the M frames' own depths still follow the images). Off (weight 0) in the paper's
    configuration; `mofl.train --lambda_depth_spread`.

    Args:
        translation: [B, M, 3] the pose's translation per frame (mm).

    Returns:
        Scalar of the input's float dtype (non-float inputs: float32); 0 for B = 1.
    """
    with tf.name_scope('depth_spread_loss'):
        translation = _float_tensor(translation)
        shape_lib.check_static(translation, has_rank=3, has_dim_equals=(-1, 3),
                               tensor_name='translation')
        # Depths below 1 mm (a face at the camera) are clamped: the log stays finite.
        depth = tf.maximum(-translation[..., 2], tf.cast(1.0, translation.dtype))
        log_depth = tf.reduce_mean(tf.math.log(depth), axis=1)                  # [B]
        return tf.reduce_mean(tf.square(log_depth - tf.reduce_mean(log_depth)))


def chroma_weights(colors, edges, eta=PAPER_CHROMA_ETA):
    """Per-edge chroma similarity weights w_ij of eq. 11.

    w_ij = exp(−η ‖h_i − h_j‖₂) with chroma h = (r, g, b) / (r + g + b) of the colours from the
    previous forward pass (p̂_old): the weights are constants of the loss, so no gradient flows
    through them (stop_gradient is applied here as well as by the caller).

    Args:
        colors: [B, V, 3] per-vertex colours c_i (any non-negative range).
        edges: [E, 2] int32 unique vertex pairs.
        eta: η (paper: 80).

    Returns:
        [B, E] weights in (0, 1], of the colours' float dtype.
    """
    with tf.name_scope('chroma_weights'):
        colors = tf.stop_gradient(_float_tensor(colors))
        edges = _edge_tensor(edges, 'edges')
        shape_lib.check_static(colors, has_rank=3, has_dim_equals=(-1, 3), tensor_name='colors')
        colors = tf.maximum(colors, 0.0)
        total = tf.reduce_sum(colors, axis=-1, keepdims=True)
        # Black has no chroma; call it grey so black neighbours of grey ones are "similar".
        chroma = tf.where(total > 1e-6, colors / tf.maximum(total, 1e-6),
                          tf.fill(tf.shape(colors), tf.constant(1.0 / 3.0, colors.dtype)))
        diff = tf.gather(chroma, edges[:, 0], axis=1) - tf.gather(chroma, edges[:, 1], axis=1)
        return tf.exp(-eta * tf.norm(diff, axis=-1))


def appearance_sparsity_loss(albedo, edges, weights, p=PAPER_SPARSITY_EXPONENT):
    """Per-vertex albedo sparsity (eq. 11).

    Lspa = Σ_i Σ_{j ∈ N_i} w_ij ‖r_i − r_j‖₂^p, each unordered edge counted in both directions,
    averaged over the batch. ‖d‖^p with p < 1 has an infinite slope at d = 0, so we use
    (‖d‖² + ε)^{p/2} − ε^{p/2} with ε = 1e−8: zero at d = 0, gradient zero there and bounded
    everywhere (its norm peaks at ‖d‖² = ε/(1 − p); ≈ 1.9 for p = 0.9), and below ‖d‖^p by at
    most ε^{p/2} ≈ 2.5e−4 (and never by more than ‖d‖^p itself).

    Args:
        albedo: [B, V, 3] per-vertex albedo r_i.
        edges: [E, 2] int32 unique vertex pairs (i, j) with j ∈ N_i.
        weights: [B, E] w_ij from `chroma_weights` (treated as constants).
        p: the exponent (paper: 0.9).

    Returns:
        Scalar of the inputs' float dtype (non-float inputs: float32).
    """
    with tf.name_scope('appearance_sparsity_loss'):
        dtype = _float_dtype(albedo, weights)
        albedo = _as_float(albedo, dtype)
        edges = _edge_tensor(edges, 'edges')
        weights = tf.stop_gradient(_as_float(weights, dtype))
        shape_lib.check_static(albedo, has_rank=3, has_dim_equals=(-1, 3), tensor_name='albedo')
        shape_lib.check_static(weights, has_rank=2, tensor_name='weights')
        shape_lib.compare_batch_dimensions([albedo, weights], last_axes=0,
                                           broadcast_compatible=False,
                                           tensor_names=('albedo', 'weights'))
        shape_lib.compare_dimensions([weights, edges], axes=[1, 0],
                                     tensor_names=('weights', 'edges'))
        diff = tf.gather(albedo, edges[:, 0], axis=1) - tf.gather(albedo, edges[:, 1], axis=1)
        squared = tf.reduce_sum(tf.square(diff), axis=-1)
        half_p = 0.5 * p
        norm_p = tf.pow(squared + _SPARSITY_EPSILON, half_p) - _SPARSITY_EPSILON ** half_p
        return 2.0 * tf.reduce_mean(tf.reduce_sum(weights * norm_p, axis=-1))


def expression_regularization(expression, sigma):
    """Expression regularisation (eq. 12): Σ_f Σ_u (δ_u / σδ_u)², averaged over the batch.

    Args:
        expression: [B, M, b] blendshape coefficients δ.
        sigma: [b] standard deviations σδ (> 0).

    Returns:
        Scalar of the inputs' float dtype (non-float inputs: float32).
    """
    with tf.name_scope('expression_regularization'):
        expression = _float_tensor(expression)
        sigma = _as_float(sigma, expression.dtype)
        shape_lib.check_static(expression, has_rank=3, tensor_name='expression')
        shape_lib.check_static(sigma, has_rank=1, tensor_name='sigma')
        shape_lib.compare_dimensions([expression, sigma], axes=[-1, -1],
                                     tensor_names=('expression', 'sigma'))
        return tf.reduce_mean(tf.reduce_sum(tf.square(expression / sigma), axis=[1, 2]))
