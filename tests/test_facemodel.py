"""Face model: assets, deformation graph, skinning, OCL and decoding (paper §3.2, eq. 1–6)."""
import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

import synthetic_face
from mofl.facemodel import assets as assets_lib
from mofl.facemodel import face_model
from mofl.facemodel import geometry
from mofl.facemodel import graph as graph_lib
from mofl.facemodel import ocl


def _edges_between_lips(assets):
    """Graph edges joining a node of an upper-lip vertex to a node of a lower-lip vertex."""
    upper, lower = graph_lib.lip_node_sets(assets.graph, assets.mesh.upper_lip_vertices,
                                           assets.mesh.lower_lip_vertices)
    edges = {tuple(e) for e in assets.graph.edges.tolist()}
    shared = upper & lower
    joined = [(a, b) for a in upper for b in lower if (min(a, b), max(a, b)) in edges]
    return shared, joined


def test_ict_asset_counts_and_landmarks(ict_assets, ict_dir):
    mesh = ict_assets.mesh
    assert mesh.num_vertices == 9409
    assert mesh.landmark_indices.shape == (66,)
    with open(os.path.join(ict_dir, 'vertex_indices.json')) as f:
        ict68 = json.load(f)['idx_to_landmark_verts']
    # The 66 are the 68 without the inner-mouth corners 60 and 64.
    assert mesh.landmark_indices.tolist() == [v for i, v in enumerate(ict68) if i not in (60, 64)]
    nose = mesh.vertices[mesh.landmark_indices[30]]
    face = mesh.vertices[mesh.face_mask]
    assert abs(nose[0]) < 1.0                       # on the symmetry plane
    assert nose[2] > face[:, 2].max() - 2.0         # the most forward point of the face (mm)
    # Eye corners are mirror images; the chin (8) is the lowest jaw landmark.
    left, right = mesh.vertices[mesh.landmark_indices[[36, 45]]]
    np.testing.assert_allclose(left * [-1, 1, 1], right, atol=0.5)
    jaw = mesh.vertices[mesh.landmark_indices[:17]]
    assert np.argmin(jaw[:, 1]) == 8
    # Millimetres: the outer eye corners of an adult lie 80–110 mm apart.
    assert 80.0 < np.linalg.norm(left - right) < 110.0


def _reverse_lines(candidates):
    """Reverses each −1-padded line (padding stays at the end)."""
    out = np.full_like(candidates, -1)
    for j, line in enumerate(candidates):
        line = line[line >= 0]
        out[j, :line.size] = line[::-1]
    return out


def test_contour_outward_directions_point_away_from_the_face(ict_assets):
    mesh = ict_assets.mesh
    directions = geometry.contour_outward_directions(mesh.vertices, mesh.contour_candidates)
    assert directions.shape == (17, 3)
    np.testing.assert_allclose(np.linalg.norm(directions, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(directions[:, 2], 0.0)
    assert directions[8, 1] < -0.95                       # the chin's line runs down
    assert directions[0, 0] * directions[16, 0] < 0       # the two ends of the jaw: opposite sides
    # Each direction points from the face's centre towards its own landmark.
    jaw = mesh.vertices[mesh.landmark_indices[:17], :2]
    centre = mesh.vertices[mesh.landmark_indices[17:], :2].mean(axis=0)
    assert np.all(np.sum((jaw - centre) * directions[:, :2], axis=1) > 0)
    # The order of a line's candidates does not matter.
    np.testing.assert_array_equal(
        geometry.contour_outward_directions(mesh.vertices, _reverse_lines(mesh.contour_candidates)),
        directions)
    single = np.full([17, 4], -1, np.int32)
    single[:, 0] = mesh.landmark_indices[:17]
    np.testing.assert_array_equal(
        geometry.contour_outward_directions(mesh.vertices, single), 0.0)


def test_ict_graph_has_paper_size_and_valid_skinning(ict_assets):
    graph = ict_assets.graph
    assert graph.num_nodes == 521
    assert len(np.unique(graph.node_vertex)) == 521
    np.testing.assert_allclose(graph.skin_weights.sum(axis=1), 1.0, atol=1e-6)
    assert np.all(graph.skin_weights >= 0)
    assert np.all(graph.edges[:, 0] < graph.edges[:, 1])


def test_skinning_reproduces_rigid_translation_exactly(ict_assets):
    model = face_model.FaceModel(ict_assets, shape_dim=4, albedo_dim=4)
    shift = tf.constant([[3.0, -7.5, 12.25]])
    nodes = tf.tile(shift[:, None], [1, ict_assets.graph.num_nodes, 1])
    moved = model.skin(nodes).numpy()
    np.testing.assert_allclose(moved, np.broadcast_to(shift.numpy()[:, None], moved.shape),
                               atol=1e-5)


def test_no_graph_edge_ties_upper_and_lower_lip(ict_assets):
    assert len(ict_assets.mesh.upper_lip_vertices) > 50
    assert len(ict_assets.mesh.lower_lip_vertices) > 50
    shared, joined = _edges_between_lips(ict_assets)
    assert not shared, f'nodes bound to both lips: {sorted(shared)}'
    assert not joined, f'graph edges joining the lips: {joined[:10]}'


def test_lip_cut_is_what_separates_the_lips(ict_assets):
    # Without the cut beyond the mouth corners the coarse graph does tie the lips: the test
    # above would fail, so it checks something real.
    unprotected = graph_lib.build_assets(ict_assets.mesh, lip_cut_extension=0.0)
    assert _edges_between_lips(unprotected)[1]


def test_ocl_output_is_orthogonal_to_graph_expression_basis(ict_assets):
    mesh, graph = ict_assets.mesh, ict_assets.graph
    b_graph = ocl.graph_expression_basis(graph.skinning_matrix(mesh.num_vertices),
                                         mesh.expression_basis)
    layer = ocl.OrthogonalComplementLayer(ocl.orthonormal_basis(b_graph))
    theta = tf.random.stateless_normal([3 * graph.num_nodes, 500], seed=[1, 2])
    projected = layer(theta).numpy().astype(np.float64)
    residual = np.linalg.norm(b_graph.T @ projected) / (
        np.linalg.norm(b_graph) * np.linalg.norm(theta.numpy()))
    assert residual < 1e-5
    # The unprojected Θs is far from orthogonal, and OCL is a projection (idempotent).
    raw = np.linalg.norm(b_graph.T @ theta.numpy()) / (
        np.linalg.norm(b_graph) * np.linalg.norm(theta.numpy()))
    assert raw > 100 * residual
    np.testing.assert_allclose(layer(layer(theta)).numpy(), projected, atol=1e-4)


def test_graph_expression_basis_is_least_squares_solution():
    rng = np.random.default_rng(0)
    s = rng.random((40, 8)).astype(np.float32)
    s /= s.sum(axis=1, keepdims=True)
    b_graph_true = rng.normal(size=(8, 3, 3))                    # [G, 3, b]
    mesh_basis = np.einsum('vg,gcb->bvc', s, b_graph_true)       # exactly representable
    solved = ocl.graph_expression_basis(s, mesh_basis)
    np.testing.assert_allclose(solved, b_graph_true.reshape(24, 3), atol=1e-5)


def test_decoding_zero_parameters_returns_template_and_skin(ict_assets):
    model = face_model.FaceModel(ict_assets, shape_dim=10, albedo_dim=6)
    out = model(tf.zeros([2, 10]), tf.zeros([2, 6]), tf.zeros([2, 3, 53]))
    assert out['vertices'].shape == (2, 3, 9409, 3)
    np.testing.assert_array_equal(out['vertices'].numpy(),
                                  np.broadcast_to(ict_assets.mesh.vertices, (2, 3, 9409, 3)))
    np.testing.assert_allclose(out['albedo'].numpy(),
                               np.broadcast_to(ict_assets.mesh.skin_color, (2, 9409, 3)))
    assert np.all(ict_assets.mesh.expression_sigma > 0)


def test_decoding_matches_dense_equation_3():
    face = synthetic_face.grid_face(n=15)
    assets = graph_lib.build_assets(_synthetic_source(face), num_nodes=20, k=3)
    model = face_model.FaceModel(assets, shape_dim=5, albedo_dim=4, shape_init_stddev=1.0)
    alpha = tf.random.stateless_normal([2, 5], seed=[3, 4])
    delta = tf.random.stateless_normal([2, 3, 2], seed=[5, 6])
    got = model.vertices(alpha, delta).numpy()
    s = np.kron(assets.graph.skinning_matrix(len(face['vertices'])), np.eye(3))   # [3V, 3G]
    basis = model.shape_basis().numpy()                                           # [3G, g]
    b = face['expression_basis'].reshape(2, -1).T                                 # [3V, b]
    want = (face['vertices'].reshape(-1)[None, None] + (s @ basis @ alpha.numpy().T).T[:, None]
            + np.einsum('vb,kmb->kmv', b, delta.numpy()))
    np.testing.assert_allclose(got.reshape(2, 3, -1), want, atol=1e-3)


def test_basis_scale_keeps_the_model_and_multiplies_the_adam_step():
    """Θs, Θa stored in units s: same decoding and initial spread; one Adam step moves the
    effective bases s times further than with s = 1 (module docstring, "Basis units")."""
    face = synthetic_face.grid_face(n=15)
    assets = graph_lib.build_assets(_synthetic_source(face), num_nodes=20, k=3)
    alpha = tf.random.stateless_normal([2, 5], seed=[3, 4])
    beta = tf.random.stateless_normal([2, 4], seed=[7, 8])
    delta = tf.zeros([2, 1, 2])
    plain = face_model.FaceModel(assets, shape_dim=5, albedo_dim=4, shape_init_stddev=1.0,
                                 albedo_init_stddev=0.1)
    scaled = face_model.FaceModel(assets, shape_dim=5, albedo_dim=4, shape_init_stddev=1.0,
                                  albedo_init_stddev=0.1, shape_basis_scale=20.0,
                                  albedo_basis_scale=5.0)
    # Same seed: the stored weights are the plain ones divided by the scales.
    np.testing.assert_allclose(scaled.theta_shape.numpy() * 20.0, plain.theta_shape.numpy(),
                               rtol=1e-5)
    np.testing.assert_allclose(scaled.vertices(alpha, delta), plain.vertices(alpha, delta),
                               atol=1e-3)
    np.testing.assert_allclose(scaled.albedo(beta), plain.albedo(beta), atol=1e-5)
    steps = []
    for model in (plain, scaled):
        before_shape = model.shape_basis().numpy()
        before_albedo = model.albedo_basis().numpy()
        optimizer = keras.optimizers.Adam(learning_rate=1e-3)
        with tf.GradientTape() as tape:
            loss = (tf.reduce_sum(model.vertices(alpha, delta) ** 2)
                    + tf.reduce_sum(model.albedo(beta) ** 2))
        variables = [model.theta_shape, model.theta_albedo]
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        steps.append((np.abs(model.shape_basis().numpy() - before_shape).max(),
                      np.abs(model.albedo_basis().numpy() - before_albedo).max()))
    np.testing.assert_allclose(steps[1][0] / steps[0][0], 20.0, rtol=0.05)
    np.testing.assert_allclose(steps[1][1] / steps[0][1], 5.0, rtol=0.05)
    with pytest.raises(ValueError, match='scales must be > 0'):
        face_model.FaceModel(assets, shape_dim=5, albedo_dim=4, shape_basis_scale=0.0)


def test_asset_round_trip_and_errors(tmp_path):
    face = synthetic_face.grid_face(n=15)
    assets = graph_lib.build_assets(_synthetic_source(face), num_nodes=20, k=3)
    path = str(tmp_path / 'a.npz')
    assets.save(path)
    loaded = assets_lib.FaceAssets.load(path)
    np.testing.assert_array_equal(loaded.mesh.vertices, assets.mesh.vertices)
    np.testing.assert_array_equal(loaded.graph.skin_indices, assets.graph.skin_indices)
    assert loaded.mesh.source == 'synthetic'
    assert list(loaded.mesh.expression_names) == ['jawOpen', 'mouthSmile_L']

    corrupt = tmp_path / 'corrupt.npz'
    corrupt.write_bytes(open(path, 'rb').read()[:1000])
    with pytest.raises(assets_lib.AssetError, match='corrupt.npz'):
        assets_lib.FaceAssets.load(str(corrupt))
    with pytest.raises(assets_lib.AssetError, match='no such face-asset'):
        assets_lib.FaceAssets.load(str(tmp_path / 'missing.npz'))
    data = dict(np.load(path))
    data['format_version'] = np.int32(99)
    np.savez(str(tmp_path / 'future.npz'), **data)
    with pytest.raises(assets_lib.AssetError, match='version 99'):
        assets_lib.FaceAssets.load(str(tmp_path / 'future.npz'))


def test_graph_on_synthetic_face_separates_lips():
    face = synthetic_face.grid_face()
    assets = graph_lib.build_assets(_synthetic_source(face), num_nodes=150, k=4)
    assert len(assets.mesh.upper_lip_vertices) and len(assets.mesh.lower_lip_vertices)
    shared, joined = _edges_between_lips(assets)
    assert not shared and not joined


def _synthetic_source(face):
    from mofl.facemodel import geometry
    v, tri, lm68 = face['vertices'], face['triangles'], face['landmarks68']
    lm66 = np.delete(lm68, [60, 64]).astype(np.int32)
    upper, lower = geometry.split_lips(v, tri, lm68, face['expression_basis'][0])
    mask = np.ones(len(v), bool)
    return assets_lib.SourceMesh(
        vertices=v, triangles=tri, face_mask=mask, landmark_indices=lm66,
        contour_candidates=geometry.contour_candidate_lines(v, lm66[:17], mask, 6),
        expression_basis=face['expression_basis'],
        expression_sigma=np.full(2, assets_lib.BLENDSHAPE_SIGMA, np.float32),
        expression_names=np.asarray(face['names']), skin_color=np.array([0.7, 0.5, 0.4], np.float32),
        open_mouth_vertices=v + 0.5 * face['expression_basis'][0],
        upper_lip_vertices=upper, lower_lip_vertices=lower, source='synthetic')


def test_without_the_ocl_the_identity_basis_is_theta_itself():
    """--noorthogonal_complement (an ablation): Θs is used as it is, so it may overlap the
    expressions; with the OCL (the paper) the same Θs is projected off them."""
    face = synthetic_face.grid_face(n=15)
    assets = graph_lib.build_assets(_synthetic_source(face), num_nodes=20, k=3)
    paper = face_model.FaceModel(assets, shape_dim=5, albedo_dim=4, shape_init_stddev=1.0)
    ablation = face_model.FaceModel(assets, shape_dim=5, albedo_dim=4, shape_init_stddev=1.0,
                                    orthogonal_complement=False)
    np.testing.assert_array_equal(ablation.theta_shape.numpy(), paper.theta_shape.numpy())
    np.testing.assert_array_equal(ablation.shape_basis().numpy(), ablation.theta_shape.numpy())
    q = paper.ocl.basis.numpy()                                         # [3G, r]
    assert np.abs(q.T @ paper.shape_basis().numpy()).max() < 1e-4
    assert np.abs(q.T @ ablation.shape_basis().numpy()).max() > 0.1
    np.testing.assert_allclose(paper.ocl(ablation.shape_basis()).numpy(),
                               paper.shape_basis().numpy(), atol=1e-5)
