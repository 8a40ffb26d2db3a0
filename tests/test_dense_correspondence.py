"""The mediapipe correspondence of face assets and the mediapipe-space dense points of records:
registration, its residual on ICT-FaceKit, decimation, the record field and the batch mapping."""
import os
import types

import numpy as np
import pytest
import tensorflow as tf

from mofl import landmarks as landmark_layout
from mofl.data import pipeline
from mofl.data import records
from mofl.facemodel import assets as assets_lib
from mofl.facemodel import decimation
from mofl.facemodel import mediapipe_correspondence as correspondence


@pytest.fixture(scope='module')
def face_mesh():
    """FaceMesh's 468-point face (mm) and triangles, measured once per module."""
    return correspondence.face_mesh_template()


def test_face_oval_is_the_outer_ring(face_mesh):
    _, triangles = face_mesh
    oval = correspondence.face_oval(triangles)
    assert oval.shape == (36,)
    # The jaw landmarks of the 66 lie on the oval, the inner ones do not.
    assert set(landmark_layout.MEDIAPIPE_TO_66[:17]) <= set(oval.tolist())
    assert not set(landmark_layout.MEDIAPIPE_TO_66[17:]) & set(oval.tolist())


def test_registration_recovers_a_transformed_copy_of_itself(face_mesh):
    """Registering FaceMesh onto a rotated, scaled, shifted copy of itself (plus a smooth bend)
    finds every point's own vertex with ~zero residual."""
    points, triangles = face_mesh
    angle = np.deg2rad(20.0)
    rotation = np.array([[np.cos(angle), 0.0, np.sin(angle)], [0.0, 1.0, 0.0],
                         [-np.sin(angle), 0.0, np.cos(angle)]])
    template = 1.3 * points @ rotation.T + np.array([5.0, -40.0, 300.0])
    template[:, 2] += 0.002 * template[:, 0] ** 2      # a smooth, non-rigid change
    landmarks = landmark_layout.MEDIAPIPE_TO_66
    vertices, residual, warped = correspondence.register(template, landmarks, points, triangles)
    oval = correspondence.face_oval(triangles)
    inner = np.setdiff1d(np.arange(468), oval)
    assert np.all(vertices[oval] == -1)
    assert np.mean(vertices[inner] == inner) > 0.95
    assert np.median(residual[inner]) < 0.5
    np.testing.assert_allclose(warped[landmarks], template[landmarks], atol=1e-6)


def test_registration_checks_its_inputs(face_mesh):
    points, triangles = face_mesh
    with pytest.raises(ValueError, match='face_mesh_points'):
        correspondence.register(points, landmark_layout.MEDIAPIPE_TO_66, points[:400], triangles)
    with pytest.raises(ValueError, match='template_vertices'):
        correspondence.register(points[:, :2], landmark_layout.MEDIAPIPE_TO_66, points, triangles)


def test_mediapipe_asset_maps_onto_its_own_points(face_mesh):
    vertices, residual = correspondence.for_source(types.SimpleNamespace(source='mediapipe'))
    oval = correspondence.face_oval(face_mesh[1])
    inner = np.setdiff1d(np.arange(468), oval)
    np.testing.assert_array_equal(vertices[inner], inner)
    assert np.all(vertices[oval] == -1) and np.all(residual == 0)


def test_ict_correspondence_within_the_stated_residual(ict_assets):
    """On ICT-FaceKit: every non-oval FaceMesh point finds a vertex within MAX_RESIDUAL_MM, most
    of them within 1.5 mm; decimating carries it over within the same bound."""
    mesh = ict_assets.mesh
    vertices, residual = correspondence.for_source(mesh)
    mapped = vertices >= 0
    assert mapped.sum() >= 420            # all 432 non-oval points on the full ICT face area
    assert residual[mapped].max() <= correspondence.MAX_RESIDUAL_MM
    assert np.median(residual[mapped]) < 1.5
    # Left/right mirror partners of the 66 map onto the template's mirror landmark pairs' sides.
    nose = mesh.vertices[mesh.landmark_indices[30]]
    right_eye = vertices[landmark_layout.MEDIAPIPE_TO_66[36]]
    assert mesh.vertices[right_eye][0] < nose[0]           # the subject's right is −x
    np.testing.assert_array_equal(vertices[landmark_layout.MEDIAPIPE_TO_66[17:]] >= 0, True)

    mesh.mediapipe_vertices, mesh.mediapipe_residual_mm = vertices, residual
    try:
        coarse = decimation.decimate_mesh(mesh, 2500)
    finally:
        mesh.mediapipe_vertices = mesh.mediapipe_residual_mm = None
    coarse_mapped = coarse.mediapipe_vertices >= 0
    assert coarse_mapped.sum() >= 400                       # 407 at 2,500 vertices
    assert coarse.mediapipe_residual_mm[coarse_mapped].max() <= correspondence.MAX_RESIDUAL_MM
    both = coarse_mapped & mapped
    full_position = mesh.vertices[vertices[both]]
    coarse_position = coarse.vertices[coarse.mediapipe_vertices[both]]
    assert np.median(np.linalg.norm(full_position - coarse_position, axis=1)) < 3.0


def test_asset_file_round_trips_the_correspondence(ict_assets, tmp_path):
    mesh = ict_assets.mesh
    mesh.mediapipe_vertices = np.full(468, -1, np.int32)
    mesh.mediapipe_vertices[:10] = np.arange(10)
    mesh.mediapipe_residual_mm = np.ones(468, np.float32)
    try:
        ict_assets.save(str(tmp_path / 'a.npz'))
        loaded = assets_lib.FaceAssets.load(str(tmp_path / 'a.npz'))
        np.testing.assert_array_equal(loaded.mesh.mediapipe_vertices, mesh.mediapipe_vertices)
        mesh.mediapipe_vertices = np.full(468, mesh.num_vertices, np.int32)
        with pytest.raises(assets_lib.AssetError, match='mediapipe_vertices'):
            mesh.validate()
    finally:
        mesh.mediapipe_vertices = mesh.mediapipe_residual_mm = None


def _record(space, k=468, m=2):
    rng = np.random.default_rng(0)
    return records.encode_sample(
        rng.integers(0, 255, (m, 32, 32, 3), dtype=np.uint8),
        rng.uniform(0, 32, (m, 66, 2)), np.ones((m, 66)), np.zeros((m, 3)), 'id0', 'id0/c',
        dense_points=rng.uniform(0, 32, (m, k, 2)), dense_confidence=np.ones((m, k)),
        dense_vertices=np.arange(k), dense_space=space)


def test_record_dense_space_round_trip_and_errors():
    raw = _record(records.DENSE_SPACE_MEDIAPIPE)
    assert records.decode_sample(raw)['dense_space'] == records.DENSE_SPACE_MEDIAPIPE
    assert records.inspect_sample(raw)['dense_space'] == records.DENSE_SPACE_MEDIAPIPE
    assert records.inspect_sample(_record(records.DENSE_SPACE_ASSET, k=5))['dense_space'] == \
        records.DENSE_SPACE_ASSET
    with pytest.raises(records.RecordError, match='dense_space'):
        _record('faces')
    with pytest.raises(records.RecordError, match='0..467'):
        _record(records.DENSE_SPACE_MEDIAPIPE, k=470)


def test_dense_points_map_onto_asset_vertices_and_unmapped_ones_drop_out():
    table = np.full(468, -1, np.int32)
    table[[3, 7]] = [100, 200]
    batch = {'dense_vertices': tf.constant([[3, 7, 9]], tf.int32),
             'dense_confidence': tf.ones([1, 2, 3]), 'images': tf.zeros([1])}
    out = pipeline.dense_points_on_asset(batch, table)
    np.testing.assert_array_equal(out['dense_vertices'].numpy(), [[100, 200, 0]])
    np.testing.assert_array_equal(out['dense_confidence'].numpy(), [[[1, 1, 0], [1, 1, 0]]])
    assert 'images' in out


def test_training_check_of_mediapipe_dense_points(tmp_path):
    path = str(tmp_path / 'train-00000-of-00001.tfrecord')
    with tf.io.TFRecordWriter(path) as writer:
        writer.write(_record(records.DENSE_SPACE_MEDIAPIPE))
    with_map = types.SimpleNamespace(mediapipe_vertices=np.zeros(468, np.int32), num_vertices=9)
    assert pipeline.check_dense_points(path, with_map) == records.DENSE_SPACE_MEDIAPIPE
    without = types.SimpleNamespace(mediapipe_vertices=None, num_vertices=9)
    with pytest.raises(ValueError, match='no mediapipe correspondence'):
        pipeline.check_dense_points(path, without)
    assert os.path.exists(path)
