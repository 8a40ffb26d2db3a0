"""The decimated face asset: quadric decimation with everything carried over exactly."""
import numpy as np
import pytest

from mofl.facemodel import assets as assets_lib
from mofl.facemodel import decimation
from mofl.facemodel import graph as graph_lib
from training_data import tiny_assets


def _vertex_normals(vertices, triangles):
    v = np.asarray(vertices, np.float64)
    face_normals = np.cross(v[triangles[:, 1]] - v[triangles[:, 0]],
                            v[triangles[:, 2]] - v[triangles[:, 0]])
    normals = np.zeros_like(v)
    for corner in range(3):
        np.add.at(normals, triangles[:, corner], face_normals)
    return normals / np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-12)


@pytest.fixture(scope='module')
def full_and_coarse():
    full = tiny_assets(n=31, num_nodes=40).mesh            # 961 vertices
    return full, decimation.decimate_mesh(full, 400)


def test_coarse_mesh_is_a_subset_with_everything_transferred(full_and_coarse):
    full, coarse = full_and_coarse
    index = coarse.full_vertex_indices
    assert coarse.full_num_vertices == full.num_vertices
    assert 0.85 * 400 <= coarse.num_vertices <= 1.15 * 400
    assert len(np.unique(index)) == coarse.num_vertices
    np.testing.assert_array_equal(coarse.vertices, full.vertices[index])
    np.testing.assert_array_equal(coarse.expression_basis, full.expression_basis[:, index])
    np.testing.assert_array_equal(coarse.open_mouth_vertices, full.open_mouth_vertices[index])
    np.testing.assert_array_equal(coarse.face_mask, full.face_mask[index])
    # Every vertex is used by a triangle; orientation agrees with the full mesh's.
    assert set(np.unique(coarse.triangles)) == set(range(coarse.num_vertices))
    agree = np.sum(_vertex_normals(coarse.vertices, coarse.triangles) *
                   _vertex_normals(full.vertices, full.triangles)[index], axis=1) > 0.5
    assert agree.mean() > 0.95


def test_landmarks_contours_and_lips_survive(full_and_coarse):
    full, coarse = full_and_coarse
    index = coarse.full_vertex_indices
    assert len(np.unique(coarse.landmark_indices)) == assets_lib.NUM_LANDMARKS
    exact = index[coarse.landmark_indices] == full.landmark_indices
    assert exact.sum() >= 0.75 * assets_lib.NUM_LANDMARKS   # dense on this tiny face
    moved = np.linalg.norm(coarse.vertices[coarse.landmark_indices] -
                           full.vertices[full.landmark_indices], axis=1)
    edges = assets_lib.mesh_edges_from_triangles(coarse.triangles)
    longest = np.linalg.norm(coarse.vertices[edges[:, 0]] - coarse.vertices[edges[:, 1]],
                             axis=1).max()
    assert moved.max() <= longest       # a non-exact landmark sits on a neighbouring vertex
    assert np.all(coarse.contour_candidates.max(axis=1) >= 0)
    kept = 0
    for row_full, row_coarse in zip(full.contour_candidates, coarse.contour_candidates):
        mapped = index[row_coarse[row_coarse >= 0]].tolist()
        line = row_full[row_full >= 0].tolist()
        # the coarse line is the full line's own surviving vertices, in order: none beside it
        assert mapped == [v for v in line if v in set(mapped)]
        assert set(mapped) <= set(line)
        kept += len(mapped) / len(line)
    # Line vertices are preferred as their clusters' representatives, so most survive even
    # where the mesh keeps only 40 % of its vertices.
    assert kept / len(full.contour_candidates) > 0.6
    assert not set(coarse.upper_lip_vertices) & set(coarse.lower_lip_vertices)
    assert len(coarse.upper_lip_vertices) and len(coarse.lower_lip_vertices)
    coarse_assets = graph_lib.build_assets(coarse, num_nodes=20, k=3)
    upper, lower = graph_lib.lip_node_sets(coarse_assets.graph, coarse.upper_lip_vertices,
                                           coarse.lower_lip_vertices)
    assert not upper & lower


def test_saved_asset_keeps_the_map_and_topology_transfer(full_and_coarse, tmp_path):
    full, coarse = full_and_coarse
    path = str(tmp_path / 'coarse.npz')
    graph_lib.build_assets(coarse, num_nodes=20, k=3).save(path)
    loaded = assets_lib.FaceAssets.load(path).mesh
    np.testing.assert_array_equal(loaded.full_vertex_indices, coarse.full_vertex_indices)
    assert loaded.full_num_vertices == full.num_vertices
    # A full asset saves and loads without the map.
    full_path = str(tmp_path / 'full.npz')
    graph_lib.build_assets(full, num_nodes=20, k=3).save(full_path)
    assert assets_lib.FaceAssets.load(full_path).mesh.full_vertex_indices is None

    per_frame = np.random.default_rng(0).normal(size=(2, full.num_vertices, 3))
    np.testing.assert_array_equal(decimation.to_asset_topology(per_frame, loaded),
                                  per_frame[:, coarse.full_vertex_indices])
    with pytest.raises(ValueError, match='decimated from a 961-vertex mesh'):
        decimation.to_asset_topology(per_frame[:, :100], loaded)
    with pytest.raises(ValueError, match='for a 961-vertex asset'):
        decimation.to_asset_topology(per_frame[:, :100], full)
    assert decimation.to_asset_topology(per_frame, full) is not None


def test_full_vertex_ids_are_the_same_points_on_the_full_mesh(full_and_coarse):
    full, coarse = full_and_coarse
    ids = np.array([0, 17, coarse.num_vertices - 1, 5])
    np.testing.assert_array_equal(full.vertices[decimation.full_vertex_ids(ids, coarse)],
                                  coarse.vertices[ids])
    np.testing.assert_array_equal(decimation.full_vertex_ids(ids, full), ids)
    with pytest.raises(ValueError, match=rf'in \[0, {coarse.num_vertices}\)'):
        decimation.full_vertex_ids([coarse.num_vertices], coarse)


def test_bad_targets_and_a_broken_map_are_refused(full_and_coarse):
    full, coarse = full_and_coarse
    with pytest.raises(ValueError, match='target_vertices'):
        decimation.decimate_mesh(full, full.num_vertices)
    with pytest.raises(ValueError, match='target_vertices'):
        decimation.decimate_mesh(full, 50)
    broken = assets_lib.SourceMesh(**{**coarse.__dict__, 'full_num_vertices': 10})
    with pytest.raises(assets_lib.AssetError, match='full_vertex_indices out of range'):
        broken.validate()


def test_asset_spec_errors_name_the_spec(tmp_path):
    from mofl.facemodel import default_assets
    with pytest.raises(assets_lib.AssetError, match='want default:VERTICES'):
        default_assets.load_asset('default:many')
    with pytest.raises(assets_lib.AssetError, match='no such face-asset file'):
        default_assets.load_asset(str(tmp_path / 'missing.npz'))
