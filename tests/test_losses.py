"""Tests of mofl.losses (eq. 8–12) and mofl.facemodel.contour on tiny hand-computed cases."""
import numpy as np
import pytest
import tensorflow as tf

from jacobians import assert_jacobian_matches_numerical
from mofl import losses
from mofl.facemodel import contour


def _grad(fn, x):
    x = tf.Variable(np.asarray(x, np.float32))
    with tf.GradientTape() as tape:
        value = fn(x)
    return value, tape.gradient(value, x)


def test_photometric_loss_hand_value():
    # Sample 0: frame 0 both vertices visible, frame 1 only vertex 1.
    sampled = np.zeros([2, 2, 2, 3], np.float32)
    rendered = np.zeros([2, 2, 2, 3], np.float32)
    visibility = np.zeros([2, 2, 2], np.float32)
    rendered[0, 0, 0] = [0.5, 0.0, 0.0]   # 0.25
    sampled[0, 0, 1] = [1.0, 1.0, 1.0]    # vs rendered [1, 1, 0]: 1.0
    rendered[0, 0, 1] = [1.0, 1.0, 0.0]
    visibility[0, 0] = [1, 1]
    rendered[0, 1, 0] = [9.0, 9.0, 9.0]   # hidden: ignored
    sampled[0, 1, 1] = [0.2, 0.0, 0.1]    # 0.04 + 0.01
    visibility[0, 1] = [0, 1]
    # Sample 1: one visible vertex with error 0.3 in all channels: 0.27.
    sampled[1, 0, 0] = [0.3, 0.3, 0.3]
    visibility[1, 0, 0] = 1
    expected = ((0.25 + 1.0 + 0.05) + 0.27) / 2
    value = losses.photometric_loss(sampled, rendered, visibility.astype(bool))
    np.testing.assert_allclose(value, expected, rtol=1e-6)


def test_photometric_loss_ignores_non_finite_hidden_colours():
    sampled = np.array([[[[np.nan, 0, 0], [0.5, 0.5, 0.5]]]], np.float32)
    visibility = np.array([[[0.0, 1.0]]], np.float32)
    value, grad = _grad(lambda c: losses.photometric_loss(sampled, c, visibility),
                        np.zeros([1, 1, 2, 3]))
    np.testing.assert_allclose(value, 0.75, rtol=1e-6)
    assert np.all(np.isfinite(grad.numpy()))
    np.testing.assert_allclose(grad[0, 0, 1], [-1.0, -1.0, -1.0], rtol=1e-6)


def test_landmark_loss_hand_value():
    predicted = np.array([[[[0, 0], [3, 4]]]], np.float32)
    detected = np.array([[[[1, 1], [0, 0]]]], np.float32)
    confidence = np.array([[[0.5, 2.0]]], np.float32)
    # 0.5 · 2 + 2 · 25.
    np.testing.assert_allclose(losses.landmark_loss(predicted, detected, confidence), 51.0)
    # A dropped landmark (confidence 0) with a NaN detection changes nothing.
    detected_nan = np.concatenate([detected, [[[[np.nan, np.nan]]]]], axis=2)
    predicted_more = np.concatenate([predicted, np.zeros([1, 1, 1, 2], np.float32)], axis=2)
    confidence_more = np.concatenate([confidence, [[[0.0]]]], axis=2)
    value, grad = _grad(lambda p: losses.landmark_loss(p, detected_nan, confidence_more),
                        predicted_more)
    np.testing.assert_allclose(value, 51.0)
    assert np.all(np.isfinite(grad.numpy()))
    # d/du of c·‖s − u‖² = −2c(s − u): landmark 1: −2·2·([0, 0] − [3, 4]).
    np.testing.assert_allclose(grad[0, 0, 1], [12.0, 16.0])


def _contour_scene():
    """Seven vertices, two frames; returns vertices, rotations, lines, directions, expected picks.

    Camera space, camera at the origin looking down −z. Line A runs outwards along +x with a
    vertex further back (2) whose projection x/d is smaller than that of vertex 1; line B runs
    down (−y); line C has one candidate; line D mixes depths.
    """
    positions = np.array([
        [10, 0, -100],    # 0: x/d = 0.10
        [30, 0, -100],    # 1: x/d = 0.30 (outermost of line A)
        [40, 0, -200],    # 2: x/d = 0.20 (further out in 3D, but behind: projects inside)
        [0, -20, -100],   # 3: y/d = −0.20
        [0, -45, -150],   # 4: y/d = −0.30 (lowest of line B)
        [-25, 0, -100],   # 5: x/d = −0.25
        [-20, 0, -50],    # 6: x/d = −0.40
    ], np.float32)
    lines = [[0, 1, 2, -1], [3, 4, -1, -1], [2, -1, -1, -1], [0, 5, 6, -1]]
    directions = np.array([[1, 0, 0], [0, -1, 0], [0, 0, 0], [1, 0, 0]], np.float32)
    identity = np.eye(3, dtype=np.float32)
    # Frame 1: the head turned by 180° about y, so "outwards" along +x now points along −x.
    turned = np.diag([-1.0, 1.0, -1.0]).astype(np.float32)
    expected_frame0 = [1, 4, 2, 0]
    expected_frame1 = [0, 4, 2, 6]
    candidates = np.array([lines[k % 4] for k in range(17)], np.int32)
    outward = np.array([directions[k % 4] for k in range(17)], np.float32)
    vertices = np.stack([positions, positions])[None]          # [1, 2, 7, 3]
    rotations = np.stack([identity, turned])[None]              # [1, 2, 3, 3]
    expected = np.array([[[expected_frame0[k % 4] for k in range(17)],
                          [expected_frame1[k % 4] for k in range(17)]]], np.int32)
    return vertices, rotations, candidates, outward, expected


def test_select_contour_vertices_picks_the_outermost_projection():
    vertices, rotations, candidates, outward, expected = _contour_scene()
    chosen = contour.select_contour_vertices(vertices, rotations, candidates, outward)
    assert chosen.dtype == tf.int32
    np.testing.assert_array_equal(chosen, expected)


def test_select_contour_vertices_lands_on_the_silhouette_of_a_turned_surface():
    """A line on a cylinder (radius 60 mm, axis y, 1000 mm away) yawed by several angles: the
    chosen vertex is where the view ray grazes the surface (normal ⟂ ray, to the 0.5° spacing)."""
    angles = np.radians(np.arange(0.0, 150.0, 0.5))
    radius, distance = 60.0, 1000.0
    model = np.stack([radius * np.sin(angles), np.zeros_like(angles),
                      radius * np.cos(angles)], axis=1).astype(np.float32)   # line along +x
    line = np.full([17, len(angles)], -1, np.int32)
    line[:] = np.arange(len(angles))
    outward = np.tile(np.array([[1.0, 0.0, 0.0]], np.float32), [17, 1])
    for yaw_deg in (-40.0, 0.0, 25.0, 50.0):
        yaw = np.radians(yaw_deg)
        rotation = np.array([[np.cos(yaw), 0, np.sin(yaw)], [0, 1, 0],
                             [-np.sin(yaw), 0, np.cos(yaw)]], np.float32)
        points = model @ rotation.T + np.array([0, 0, -distance], np.float32)
        chosen = contour.select_contour_vertices(points[None, None], rotation[None, None], line,
                                                 outward).numpy()[0, 0, 0]
        normal = rotation @ np.array([np.sin(angles[chosen]), 0, np.cos(angles[chosen])])
        ray = points[chosen] / np.linalg.norm(points[chosen])
        assert abs(float(normal @ ray)) < np.sin(np.radians(0.6)), (yaw_deg, chosen)


def test_select_contour_vertices_carries_no_gradient_and_landmarks_stay_differentiable():
    vertices, rotations, candidates, outward, _ = _contour_scene()
    vertices = tf.Variable(vertices)
    landmark_indices = np.arange(66, dtype=np.int32) % 7
    with tf.GradientTape() as tape:
        chosen = contour.select_contour_vertices(vertices, rotations, candidates, outward)
        indices = contour.landmark_vertex_indices(landmark_indices, chosen)
        points = tf.gather(vertices, indices, axis=2, batch_dims=2)   # [1, 2, 66, 3]
        value = tf.reduce_sum(points[..., 0])
    np.testing.assert_array_equal(indices[..., :17], chosen)
    np.testing.assert_array_equal(indices[0, 1, 17:], landmark_indices[17:])
    grad = tape.gradient(value, vertices).numpy()
    # Each vertex's x receives one unit per landmark that uses it.
    counts = np.stack([np.bincount(indices[0, f].numpy(), minlength=7) for f in range(2)])
    np.testing.assert_allclose(grad[0, :, :, 0], counts)


def test_smoothness_loss_counts_each_edge_twice():
    displacements = np.zeros([2, 3, 3], np.float32)
    displacements[0] = [[0, 0, 0], [1, 0, 0], [1, 2, 0]]   # edge (0,1): 1, edge (1,2): 4
    edges = np.array([[0, 1], [1, 2]], np.int32)
    # Sample 0: 2 · (1 + 4) = 10; sample 1: 0; batch mean 5.
    np.testing.assert_allclose(losses.smoothness_loss(displacements, edges), 5.0)
    _, grad = _grad(lambda t: losses.smoothness_loss(t, edges), displacements)
    # d/dt_0 of 2‖t_0 − t_1‖² / B = 2 · 2 · (t_0 − t_1) / 2.
    np.testing.assert_allclose(grad[0, 0], [-2.0, 0.0, 0.0])


def test_chroma_weights_hand_value_and_no_gradient():
    colors = np.array([[[1, 0, 0], [2, 0, 0], [0, 1, 1], [0, 0, 0], [0.5, 0.5, 0.5]]],
                      np.float32)
    edges = np.array([[0, 1], [0, 2], [3, 4]], np.int32)
    colors_var = tf.Variable(colors)
    with tf.GradientTape() as tape:
        weights = losses.chroma_weights(colors_var, edges, eta=1.0)
    # Chroma (1,0,0), (1,0,0), (0,.5,.5); black counts as grey (1/3, 1/3, 1/3).
    np.testing.assert_allclose(weights, [[1.0, np.exp(-np.sqrt(1.5)), 1.0]], rtol=1e-6)
    assert tape.gradient(weights, colors_var) is None
    # Default η = 80: chroma (1, 0, 0) vs (0.9, 0.1, 0) are √(0.01 + 0.01) apart (eq. 11's
    # plain L2 norm, not its square).
    close = np.array([[[1, 0, 0], [1.8, 0.2, 0]]], np.float32)
    paper = losses.chroma_weights(close, np.array([[0, 1]], np.int32))
    np.testing.assert_allclose(paper, [[np.exp(-80 * np.sqrt(0.02))]], rtol=1e-5)


def test_appearance_sparsity_loss_hand_value_and_gradient():
    albedo = np.array([[[0, 0, 0], [3, 4, 0], [3, 4, 0]]], np.float32)
    edges = np.array([[0, 1], [1, 2]], np.int32)
    weights = np.array([[0.5, 1.0]], np.float32)
    value, grad = _grad(lambda r: losses.appearance_sparsity_loss(r, edges, weights, p=0.9),
                        albedo)
    # 2 · (0.5 · 5^0.9 + 1 · 0^0.9) = 5^0.9 ≈ 4.2567.
    np.testing.assert_allclose(value, 5.0 ** 0.9, rtol=1e-4)
    # d/dr_0 of 2 · 0.5 · ‖r_1 − r_0‖^p = −p ‖d‖^(p−2) d with d = r_1 − r_0.
    d = np.array([3.0, 4.0, 0.0])
    np.testing.assert_allclose(grad[0, 0], -0.9 * 5.0 ** (0.9 - 2) * d, rtol=1e-4)
    # Vertices 1 and 2 are identical: their edge adds nothing to the gradient.
    np.testing.assert_allclose(grad[0, 2], [0.0, 0.0, 0.0], atol=1e-7)
    np.testing.assert_allclose(grad[0, 1], -grad[0, 0], rtol=1e-6)


def test_appearance_sparsity_gradient_finite_at_identical_neighbours():
    edges = np.array([[0, 1], [1, 2], [0, 2]], np.int32)
    weights = np.ones([2, 3], np.float32)
    for albedo in (np.full([2, 3, 3], 0.6, np.float32),
                   np.array([[[0.6, 0.5, 0.4]] * 3, [[0.6, 0.5, 0.4], [0.6, 0.5, 0.4 + 1e-6],
                                                      [0.6, 0.5, 0.4 + 1e-4]]], np.float32)):
        value, grad = _grad(lambda r: losses.appearance_sparsity_loss(r, edges, weights), albedo)
        assert np.isfinite(value.numpy())
        assert np.all(np.isfinite(grad.numpy()))
        assert np.max(np.abs(grad.numpy())) < 10.0


def test_appearance_sparsity_matches_numerical_gradient():
    rng = np.random.default_rng(0)
    albedo = rng.uniform(size=[1, 4, 3])
    edges = np.array([[0, 1], [1, 2], [2, 3], [0, 3]], np.int32)
    weights = rng.uniform(size=[1, 4])
    assert_jacobian_matches_numerical(
        lambda r: losses.appearance_sparsity_loss(r, edges, weights), [albedo])


@pytest.mark.parametrize('term', ['photometric', 'landmark', 'smoothness', 'expression'])
def test_terms_match_numerical_gradients_in_float64(term):
    rng = np.random.default_rng(1)
    b, m, v = 2, 2, 5
    edges = np.array([[0, 1], [1, 2], [2, 3], [3, 4]], np.int32)
    cases = {
        'photometric': (lambda c: losses.photometric_loss(rng_sampled, c, visibility),
                        [rng.uniform(size=[b, m, v, 3])]),
        'landmark': (lambda p: losses.landmark_loss(p, detected, confidence),
                     [rng.uniform(0, 2, size=[b, m, 66, 2])]),
        'smoothness': (lambda t: losses.smoothness_loss(t, edges), [rng.normal(size=[b, v, 3])]),
        'expression': (lambda d: losses.expression_regularization(d, sigma),
                       [rng.normal(size=[b, m, 4])]),
    }
    rng_sampled = rng.uniform(size=[b, m, v, 3])
    visibility = rng.uniform(size=[b, m, v]) > 0.3
    detected = rng.uniform(0, 2, size=[b, m, 66, 2])
    confidence = rng.uniform(size=[b, m, 66])
    sigma = np.array([1.0, 0.5, 2.0, 0.1])
    fn, inputs = cases[term]
    assert_jacobian_matches_numerical(fn, inputs)


B, M, V = 2, 3, 5
_SHAPE_ERRORS = [
    ('photometric, colours broadcast', lambda: losses.photometric_loss(
        np.zeros([B, M, V, 3]), np.zeros([B, M, 1, 3]), np.ones([B, M, V])), 'rendered_colors'),
    ('photometric, 4 channels', lambda: losses.photometric_loss(
        np.zeros([B, M, V, 4]), np.zeros([B, M, V, 4]), np.ones([B, M, V])), 'sampled_colors'),
    ('photometric, visibility rank', lambda: losses.photometric_loss(
        np.zeros([B, M, V, 3]), np.zeros([B, M, V, 3]), np.ones([B, M, V, 1])), 'visibility'),
    ('landmark, 3D points', lambda: losses.landmark_loss(
        np.zeros([B, M, 66, 3]), np.zeros([B, M, 66, 3]), np.ones([B, M, 66])), 'predicted'),
    ('landmark, confidence count', lambda: losses.landmark_loss(
        np.zeros([B, M, 66, 2]), np.zeros([B, M, 66, 2]), np.ones([B, M, 68])), 'confidence'),
    ('smoothness, per-vertex rank', lambda: losses.smoothness_loss(
        np.zeros([V, 3]), [[0, 1]]), 'node_displacements'),
    ('smoothness, edge triples', lambda: losses.smoothness_loss(
        np.zeros([B, V, 3]), [[0, 1, 2]]), 'edges'),
    ('chroma, no batch', lambda: losses.chroma_weights(np.ones([V, 3]), [[0, 1]]), 'colors'),
    ('sparsity, weights per edge', lambda: losses.appearance_sparsity_loss(
        np.ones([B, V, 3]), [[0, 1], [1, 2]], np.ones([B, 3])), 'weights'),
    ('sparsity, batch', lambda: losses.appearance_sparsity_loss(
        np.ones([B, V, 3]), [[0, 1]], np.ones([B + 1, 1])), 'weights'),
    ('expression, one sigma for 53', lambda: losses.expression_regularization(
        np.zeros([B, M, 53]), [1.0]), 'sigma'),
    ('expression, no frame axis', lambda: losses.expression_regularization(
        np.zeros([B, 53]), np.ones(53)), 'expression'),
]


@pytest.mark.parametrize('call,name', [(c, n) for _, c, n in _SHAPE_ERRORS],
                         ids=[label for label, _, _ in _SHAPE_ERRORS])
def test_bad_shapes_are_refused_naming_the_tensor(call, name):
    with pytest.raises(ValueError, match=name):
        call()


def test_expression_regularization_hand_value():
    expression = np.array([[[1, 2], [0, -3]]], np.float32)
    sigma = np.array([1, 2], np.float32)
    # 1 + 1 + 0 + 2.25.
    value, grad = _grad(lambda d: losses.expression_regularization(d, sigma), expression)
    np.testing.assert_allclose(value, 4.25)
    np.testing.assert_allclose(grad[0], 2 * expression[0] / sigma ** 2)


def test_total_loss_and_paper_weights():
    terms = {'photometric': tf.constant(2.0), 'landmark': tf.constant(3.0)}
    weights = {'photometric': 0.5, 'landmark': 2.0, 'smoothness': 100.0}
    np.testing.assert_allclose(losses.total_loss(terms, weights), 7.0)
    with pytest.raises(KeyError, match='landmark'):
        losses.total_loss(terms, {'photometric': 1.0})
    paper = losses.paper_loss_weights(num_vertices=1000)
    assert paper == pytest.approx({'photometric': 1.6e-3, 'landmark': 4.7, 'smoothness': 1e-3,
                                   'sparsity': 1e-7, 'expression': 1e-8,
                                   'identity_mean': 0.0, 'dense_points': 0.0,    # ours, off
                                   'depth_spread': 0.0})


def test_all_terms_have_finite_gradients_on_random_inputs():
    rng = np.random.default_rng(3)
    b, m, v = 2, 3, 6
    edges = np.array([[0, 1], [1, 2], [2, 3], [3, 4], [4, 5], [0, 5]], np.int32)
    colors = tf.Variable(rng.uniform(size=[b, m, v, 3]).astype(np.float32))
    albedo = tf.Variable(rng.uniform(size=[b, v, 3]).astype(np.float32))
    nodes = tf.Variable(rng.normal(size=[b, v, 3]).astype(np.float32))
    expression = tf.Variable(rng.normal(size=[b, m, 4]).astype(np.float32))
    landmarks = tf.Variable(rng.uniform(0, 240, size=[b, m, 66, 2]).astype(np.float32))
    with tf.GradientTape() as tape:
        terms = {
            'photometric': losses.photometric_loss(rng.uniform(size=[b, m, v, 3]), colors,
                                                   rng.uniform(size=[b, m, v]) > 0.5),
            'landmark': losses.landmark_loss(landmarks, rng.uniform(0, 240, [b, m, 66, 2]),
                                             rng.uniform(size=[b, m, 66])),
            'smoothness': losses.smoothness_loss(nodes, edges),
            'sparsity': losses.appearance_sparsity_loss(
                albedo, edges, losses.chroma_weights(colors[:, 0], edges)),
            'expression': losses.expression_regularization(expression, [1.0, 0.5, 2.0, 0.1]),
        }
        total = losses.total_loss(terms, losses.paper_loss_weights(v))
    grads = tape.gradient(total, [colors, albedo, nodes, expression, landmarks])
    for grad in grads:
        assert grad is not None
        assert np.all(np.isfinite(grad.numpy()))


def test_identity_mean_loss_sees_only_what_people_share():
    """Ours: the batch-mean deformation. Offsets that cancel over the batch cost nothing; a shared
    offset costs its squared length per node; shapes are checked by name."""
    rng = np.random.default_rng(0)
    person = rng.normal(size=(1, 7, 3))
    opposite = np.concatenate([person, -person], 0)
    assert float(losses.identity_mean_loss(opposite)) == pytest.approx(0.0, abs=1e-12)
    shared = np.repeat(person, 4, 0)
    want = np.mean(np.sum(person[0] ** 2, -1))
    assert float(losses.identity_mean_loss(shared)) == pytest.approx(want, rel=1e-6)
    assert losses.identity_mean_loss(tf.constant(shared, tf.float64)).dtype == tf.float64
    with pytest.raises(ValueError, match='node_displacements'):
        losses.identity_mean_loss(np.zeros([2, 7, 2]))
    assert losses.paper_loss_weights(100)['identity_mean'] == 0.0


def _translations(rng, depths):
    """[B, M, 3] translations with the given [B, M] depths (−t_z) and random x, y."""
    translation = rng.normal(0.0, 20.0, depths.shape + (3,))
    translation[..., 2] = -depths
    return translation


def test_depth_spread_loss_is_the_spread_of_the_samples_mean_log_depth():
    """Ours: only how the samples' distances differ counts — not where the batch is, not x, y,
    not how a sample's own frames differ; a scaled batch costs nothing; shapes named."""
    rng = np.random.default_rng(4)
    depths = rng.uniform(800.0, 1200.0, (5, 3))
    log_mean = np.log(depths).mean(1)
    want = np.mean((log_mean - log_mean.mean()) ** 2)
    got = losses.depth_spread_loss(_translations(rng, depths))
    assert float(got) == pytest.approx(want, rel=1e-12) and got.dtype == tf.float64
    assert float(losses.depth_spread_loss(_translations(rng, 1.7 * depths))) == pytest.approx(
        want, rel=1e-9)
    # Frames of one sample differ, samples share their mean: nothing to pay.
    per_frame = np.array([[900.0, 1000.0, 1100.0]] * 4)
    assert float(losses.depth_spread_loss(_translations(rng, per_frame))) == pytest.approx(
        0.0, abs=1e-15)
    assert float(losses.depth_spread_loss(_translations(rng, depths[:1]))) == 0.0   # B = 1
    # Behind the camera: clamped at 1 mm, still finite.
    assert np.isfinite(float(losses.depth_spread_loss(_translations(rng, -depths))))
    with pytest.raises(ValueError, match='translation'):
        losses.depth_spread_loss(np.zeros([2, 3, 2]))
    assert losses.paper_loss_weights(100)['depth_spread'] == 0.0


def test_depth_spread_loss_matches_numerical_gradient():
    rng = np.random.default_rng(5)
    assert_jacobian_matches_numerical(losses.depth_spread_loss,
                                      [_translations(rng, rng.uniform(800.0, 1200.0, (4, 2)))])
