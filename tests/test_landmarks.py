"""Tests for mofl.landmarks: the 468 → 68 → 66 landmark layouts."""
import numpy as np
import pytest

from mofl import landmarks


def test_mapping_shape_and_range():
    m = landmarks.MEDIAPIPE_TO_IBUG68
    assert m.shape == (68,)
    assert len(np.unique(m)) == 68
    assert m.min() >= 0 and m.max() < 468
    assert len(landmarks.IBUG68_NAMES) == 68
    assert landmarks.MEDIAPIPE_TO_66.shape == (66,)


def test_mirror_table_is_an_involution():
    mirror = landmarks.IBUG68_MIRROR
    np.testing.assert_array_equal(mirror[mirror], np.arange(68))
    # Midline points are their own partners: nose bridge, subnasale, lip centres, chin.
    for i in (8, 27, 28, 29, 30, 33, 51, 57, 62, 66):
        assert mirror[i] == i


def test_drop_inner_mouth_corners_default_axis():
    points = np.stack([np.arange(68), -np.arange(68)], axis=-1)[None].repeat(3, 0)  # [3, 68, 2]
    out = landmarks.drop_inner_mouth_corners(points)
    assert out.shape == (3, 66, 2)
    kept = out[0, :, 0]
    assert 60 not in kept and 64 not in kept
    np.testing.assert_array_equal(kept, [i for i in range(68) if i not in (60, 64)])
    np.testing.assert_array_equal(out[..., 1], -out[..., 0])


def test_drop_inner_mouth_corners_other_axis_and_errors():
    confidences = np.tile(np.arange(68.0), (2, 1))  # [2, 68]
    out = landmarks.drop_inner_mouth_corners(confidences, axis=-1)
    assert out.shape == (2, 66)
    assert out[0, 59] == 59 and out[0, 60] == 61 and out[0, 63] == 65
    with pytest.raises(ValueError):
        landmarks.drop_inner_mouth_corners(np.zeros((66, 2)))


def test_mediapipe_to_66_picks_the_mapped_points():
    points = np.arange(468 * 2).reshape(468, 2)
    out = landmarks.mediapipe_to_66(points)
    assert out.shape == (66, 2)
    np.testing.assert_array_equal(out[:, 0] // 2, landmarks.MEDIAPIPE_TO_66)
    with pytest.raises(ValueError):
        landmarks.mediapipe_to_ibug68(np.zeros((100, 2)))


@pytest.fixture(scope='module')
def coarse():
    from mofl.facemodel.sources import mediapipe_source
    return mediapipe_source.build_coarse_template()


def test_left_right_pairs_map_to_facemesh_mirror_pairs(coarse):
    m = landmarks.MEDIAPIPE_TO_IBUG68
    np.testing.assert_array_equal(coarse.mirror[m], m[landmarks.IBUG68_MIRROR])


def test_layout_geometry_on_the_astronaut(coarse):
    p = landmarks.mediapipe_to_ibug68(coarse.vertices)  # [68, 3] mm, x left→right, y up
    x, y, z = p.T
    assert np.all(np.diff(x[0:17]) > 0), 'jaw must run from the subject\'s right to left'
    assert np.argmin(y[0:17]) == 8, 'landmark 8 must be the chin'
    assert np.all(np.diff(x[17:27]) > 0)
    assert y[17:27].min() > y[36:48].max(), 'brows above the eyes'
    assert np.argmax(z) == 30, 'landmark 30 (nose tip) must be the most forward'
    assert np.all(np.diff(y[27:31]) < 0), 'nose bridge runs downwards'
    assert np.all(np.diff(x[31:36]) > 0) and y[33] < y[30]
    assert x[36] < x[39] < x[42] < x[45]
    assert min(y[37], y[38]) > max(y[40], y[41]) and min(y[43], y[44]) > max(y[46], y[47])
    assert np.all(np.diff(x[48:55]) > 0) and np.all(np.diff(x[54:60]) < 0)
    assert y[51] > y[62] > y[66] > y[57], 'upper lip above lower lip, inner inside outer'
    assert y[33] > y[51]


def test_dense_point_vertices_cover_the_face_evenly():
    rng = np.random.default_rng(0)
    # A 40 × 40 grid of 1 mm cells; the face region is its left 30 columns.
    xx, yy = np.meshgrid(np.arange(40.0), np.arange(40.0))
    vertices = np.stack([xx.ravel(), yy.ravel(), rng.normal(0, 0.01, 1600)], axis=1)
    face = vertices[:, 0] < 30
    chosen = landmarks.dense_point_vertices(vertices, face, 30)
    assert chosen.dtype == np.int32 and len(set(chosen.tolist())) == 30
    assert face[chosen].all()
    np.testing.assert_array_equal(chosen, landmarks.dense_point_vertices(vertices, face, 30))
    # Even cover: 30 points on a 30 × 40 mm area are about √40 ≈ 6 mm apart; farthest-point
    # sampling keeps every face vertex within that of a point and no two points much closer.
    points = vertices[chosen]
    gaps = np.linalg.norm(points[:, None] - points[None], axis=-1) + np.eye(30) * 1e9
    cover = np.linalg.norm(vertices[face][:, None] - points[None], axis=-1).min(axis=1)
    assert gaps.min() > 3.5 and cover.max() < 7.5, (gaps.min(), cover.max())
    # The first point is the face vertex nearest the face's centroid (14.5, 19.5).
    assert abs(points[0, 0] - 14.5) <= 0.5 and abs(points[0, 1] - 19.5) <= 0.5


def test_dense_point_vertices_rejects_bad_arguments():
    vertices = np.zeros((10, 3))
    with pytest.raises(ValueError, match=r'count must be in \[1, 4\]'):
        landmarks.dense_point_vertices(vertices, np.arange(10) < 4, 5)
    with pytest.raises(ValueError, match='face_mask'):
        landmarks.dense_point_vertices(vertices, np.ones(9, bool), 2)
