"""Tests for the `mediapipe` face-asset source and Loop subdivision.

The source is built from pip packages only (mediapipe + scikit-image's astronaut.png); nothing
here reads ../shared.
"""
import numpy as np
import pytest
import scipy.spatial

from mofl import landmarks
from mofl.facemodel import assets
from mofl.facemodel import geometry
from mofl.facemodel import subdivision
from mofl.facemodel.sources import mediapipe_source
from mofl.facemodel.sources import mediapipe_topology as topo

REFLECT = np.array([-1.0, 1.0, 1.0])


@pytest.fixture(scope='module')
def mesh():
    return mediapipe_source.build_source()


@pytest.fixture(scope='module')
def mirror(mesh):
    """Mirror partner of every fine vertex (the template must be exactly symmetric)."""
    v = mesh.vertices.astype(np.float64)
    distance, permutation = scipy.spatial.cKDTree(v).query(v * REFLECT)
    assert distance.max() < 1e-3
    np.testing.assert_array_equal(permutation[permutation], np.arange(len(v)))
    return permutation


def _mirror_field(field, permutation):
    return field[permutation] * REFLECT


# --- Loop subdivision -------------------------------------------------------------------------

def _grid(n=4):
    """A flat n×n vertex grid in the z = 0 plane, two triangles per cell."""
    ij = np.stack(np.meshgrid(np.arange(n), np.arange(n), indexing='ij'), -1).reshape(-1, 2)
    vertices = np.c_[ij.astype(float), np.zeros(len(ij))]
    tris = []
    for i in range(n - 1):
        for j in range(n - 1):
            a, b, c, d = i * n + j, (i + 1) * n + j, (i + 1) * n + j + 1, i * n + j + 1
            tris += [(a, b, c), (a, c, d)]
    return vertices, np.array(tris)


def test_loop_stencils_match_hand_values():
    vertices, tris = _grid(4)
    matrix, fine_tris, edges = subdivision.loop_subdivision_matrix(tris, len(vertices))
    assert matrix.shape == (16 + len(edges), 16) and fine_tris.shape == (4 * len(tris), 3)
    np.testing.assert_allclose(np.asarray(matrix.sum(1)).ravel(), 1.0)  # Affine invariance.
    # Interior vertex 5 of the 4×4 grid has valence 6: Loop's β = (5/8 − (3/8 + 1/8)²)/6 = 1/16.
    row = matrix.getrow(5).toarray().ravel()
    assert row[5] == pytest.approx(1 - 6 / 16) and np.sum(row > 0) == 7
    assert np.allclose(row[(row > 0) & (np.arange(16) != 5)], 1 / 16)
    # Boundary corner 0 (valence 3, two boundary neighbours): 3/4 itself, 1/8 each neighbour.
    row0 = matrix.getrow(0).toarray().ravel()
    assert row0[0] == pytest.approx(0.75) and sorted(row0[row0 > 0])[:2] == [0.125, 0.125]
    # Odd vertex on the interior diagonal (0, 5): 3/8 ends, 1/8 opposite vertices (1 and 4).
    e = np.flatnonzero((edges[:, 0] == 0) & (edges[:, 1] == 5))[0]
    odd = matrix.getrow(16 + e).toarray().ravel()
    np.testing.assert_allclose(odd[[0, 5, 1, 4]], [3 / 8, 3 / 8, 1 / 8, 1 / 8])
    # Odd vertex on the boundary edge (0, 1): the midpoint.
    e = np.flatnonzero((edges[:, 0] == 0) & (edges[:, 1] == 1))[0]
    np.testing.assert_allclose(matrix.getrow(16 + e).toarray().ravel()[[0, 1]], [0.5, 0.5])


def test_loop_keeps_planes_and_orientation():
    vertices, tris = _grid(5)
    rng = np.random.default_rng(0)
    vertices[:, :2] += rng.uniform(-0.2, 0.2, (len(vertices), 2))
    matrix, fine_tris = subdivision.loop_subdivide(tris, len(vertices), min_vertices=200)
    fine = matrix @ vertices
    assert len(fine) >= 200
    np.testing.assert_allclose(fine[:, 2], 0.0, atol=1e-12)
    assert np.all(topo.triangle_normals(fine, fine_tris)[:, 2] > 0)
    e = assets.mesh_edges_from_triangles(fine_tris)
    assert len(fine) - len(e) + len(fine_tris) == 1  # Still a disc.


# --- FaceMesh connectivity ---------------------------------------------------------------------

def test_tessellation_is_a_disc_with_three_holes():
    edges = topo.tessellation_edges()
    tris = topo.triangles_from_edges(edges)
    assert len(tris) == 852
    assert 468 - len(edges) + len(tris) == -2
    rng = np.random.default_rng(1)
    loops = topo.boundary_loops(topo.orient_triangles(tris, rng.normal(size=(468, 3))))
    rings = sorted(set(loop.tolist()) for loop in loops)
    expected = [set(topo.UPPER_LIP_INNER + topo.LOWER_LIP_INNER + topo.MOUTH_INNER_CORNERS),
                set(topo.RIGHT_EYE_UPPER + topo.RIGHT_EYE_LOWER + topo.RIGHT_EYE_CORNERS),
                set(topo.LEFT_EYE_UPPER + topo.LEFT_EYE_LOWER + topo.LEFT_EYE_CORNERS)]
    assert len(loops) == 4
    for ring in expected:
        assert ring in rings
    assert max(len(loop) for loop in loops) == 36  # The face oval.


# --- The source ---------------------------------------------------------------------------------

def test_source_is_valid(mesh):
    mesh.validate()
    assert mesh.source == 'mediapipe'
    assert mesh.num_vertices >= 3000
    assert mesh.landmark_indices.shape == (66,)
    np.testing.assert_array_equal(mesh.landmark_indices, landmarks.MEDIAPIPE_TO_66)
    assert mesh.num_expressions >= 20
    np.testing.assert_allclose(mesh.expression_sigma, 1 / np.sqrt(12), rtol=1e-6)
    assert np.all((mesh.skin_color > 0.3) & (mesh.skin_color < 1.0))
    assert mesh.skin_color[0] > mesh.skin_color[1] > mesh.skin_color[2]  # Skin is reddish.


def test_metric_scale_and_nose_tip(mesh):
    v = mesh.vertices
    eye = np.linalg.norm(v[33] - v[263])
    assert eye == pytest.approx(mediapipe_source.EYE_CORNER_DISTANCE_MM, abs=1e-3)
    lm = v[mesh.landmark_indices]
    assert np.argmax(lm[:, 2]) == 30, 'iBUG 30 (nose tip) must be the most forward landmark'
    assert lm[30, 2] > np.delete(lm[:, 2], 30).max() + 5.0
    height = v[:, 1].max() - v[:, 1].min()
    assert 120 < height < 190 and 110 < v[:, 0].max() - v[:, 0].min() < 170


def test_topology_and_orientation(mesh):
    t = mesh.triangles
    edges = assets.mesh_edges_from_triangles(t)
    assert mesh.num_vertices - len(edges) + len(t) == -2  # Disc with mouth and eye holes.
    assert len(topo.boundary_loops(t)) == 4
    directed = np.concatenate([t[:, [0, 1]], t[:, [1, 2]], t[:, [2, 0]]])
    assert len(np.unique(directed, axis=0)) == len(directed), 'inconsistent orientation'
    normals = topo.triangle_normals(mesh.vertices, t)
    assert np.mean(normals[:, 2] > 0) > 0.9


def test_template_and_triangles_are_symmetric(mesh, mirror):
    v = mesh.vertices.astype(np.float64)
    np.testing.assert_allclose(_mirror_field(v, mirror), v, atol=1e-4)
    tris = set(map(tuple, np.sort(mesh.triangles, axis=1)))
    mapped = set(map(tuple, np.sort(mirror[mesh.triangles], axis=1)))
    assert tris == mapped
    np.testing.assert_array_equal(mirror[mesh.landmark_indices],
                                  mesh.landmark_indices[_mirror_66()])


def _mirror_66():
    """Mirror partner of each of the 66 landmarks, as an index into the 66."""
    m68 = landmarks.IBUG68_MIRROR[landmarks.IBUG68_TO_66]
    return np.searchsorted(landmarks.IBUG68_TO_66, m68)


def _pair_name(name):
    for a, b in (('_L', '_R'), ('Left', 'Right')):
        if name.endswith(a):
            return name[:-len(a)] + b
    return None


def test_expression_symmetry(mesh, mirror):
    names = list(mesh.expression_names)
    basis = mesh.expression_basis.astype(np.float64)
    pairs = symmetric = 0
    for u, name in enumerate(names):
        partner = _pair_name(name)
        if partner is not None:
            np.testing.assert_allclose(_mirror_field(basis[u], mirror),
                                       basis[names.index(partner)], atol=1e-4, err_msg=name)
            pairs += 1
        elif not (name.endswith('_R') or name.endswith('Right')):
            np.testing.assert_allclose(_mirror_field(basis[u], mirror), basis[u], atol=1e-4,
                                       err_msg=name)
            symmetric += 1
    assert pairs >= 8 and symmetric >= 8
    # And an asymmetric shape really is asymmetric (the test can fail).
    smile = basis[names.index('mouthSmile_L')]
    assert np.abs(_mirror_field(smile, mirror) - smile).max() > 1.0
    assert np.linalg.norm(smile[291]) > 3 * np.linalg.norm(smile[61])  # Acts on +x (left).


def test_expression_magnitudes_and_smoothness(mesh):
    v = mesh.vertices.astype(np.float64)
    edges = assets.mesh_edges_from_triangles(mesh.triangles)
    length = np.linalg.norm(v[edges[:, 0]] - v[edges[:, 1]], axis=1)
    corners = v[[61, 291, 78, 308]]
    away = scipy.spatial.cKDTree(corners).query(v[edges].mean(1))[0] > 6.0
    border = max(topo.boundary_loops(mesh.triangles), key=len)
    for name, offsets in zip(mesh.expression_names, mesh.expression_basis.astype(np.float64)):
        size = np.linalg.norm(offsets, axis=1).max()
        assert 1.5 < size < 16.0, (name, size)
        stretch = np.linalg.norm(offsets[edges[:, 0]] - offsets[edges[:, 1]], axis=1) / length
        assert stretch[away].max() < 1.5, (name, stretch[away].max())
        # Local shapes fade out before the sides of the face (temples, ears).
        if not name.startswith('jaw'):
            side = np.linalg.norm(offsets[border[np.abs(v[border, 0]) > 45.0]], axis=1).max()
            assert side < 0.2 * size, (name, side, size)


def test_jaw_open_separates_the_lips(mesh):
    names = list(mesh.expression_names)
    jaw = mesh.expression_basis[names.index('jawOpen')].astype(np.float64)
    v = mesh.vertices.astype(np.float64)
    upper, lower = mesh.upper_lip_vertices, mesh.lower_lip_vertices
    assert len(upper) > 50 and len(lower) > 50 and not set(upper) & set(lower)
    assert v[upper, 1].mean() > v[lower, 1].mean()

    def gap(x):
        return scipy.spatial.cKDTree(x[upper]).query(x[lower])[0].min()

    closed, half, full = gap(v), gap(v + 0.5 * jaw), gap(v + jaw)
    assert closed < 1.0 and half > closed + 1.5 and full > half + 1.5
    assert 10.0 < np.linalg.norm(jaw[152]) < 16.0  # Chin travel at weight 1.
    assert jaw[152, 1] < -8.0
    upper_motion = np.linalg.norm(jaw[upper], axis=1)
    lower_motion = np.linalg.norm(jaw[lower], axis=1)
    assert np.median(upper_motion) < 0.1 and np.median(lower_motion) > 6.0
    opened = mesh.open_mouth_vertices.astype(np.float64)
    assert 3.0 < np.linalg.norm(opened[13] - opened[14]) < 5.5
    assert gap(opened) > closed


def test_blink_closes_the_eye(mesh):
    names = list(mesh.expression_names)
    v = mesh.vertices.astype(np.float64)
    for side, upper, lower in (('L', topo.LEFT_EYE_UPPER, topo.LEFT_EYE_LOWER),
                               ('R', topo.RIGHT_EYE_UPPER, topo.RIGHT_EYE_LOWER)):
        closed = v + mesh.expression_basis[names.index('eyeBlink_' + side)]
        assert np.linalg.norm(v[list(upper)] - v[list(lower)], axis=1).max() > 5.0
        np.testing.assert_allclose(closed[list(upper)], closed[list(lower)], atol=0.05)


def test_contour_candidates(mesh):
    cand = mesh.contour_candidates
    v = mesh.vertices
    jaw = mesh.landmark_indices[:17]
    np.testing.assert_array_equal(cand[:, 0], jaw)
    assert cand.shape[1] <= 20 and np.all((cand >= 0).sum(1) >= 5)
    for row, start in zip(cand, jaw):
        line = row[row >= 0]
        assert len(set(line)) == len(line)
        centre = np.array([0.0, v[4, 1]])
        dist = np.linalg.norm(v[line, :2] - centre, axis=1)
        assert dist[-1] < dist[0] - 5.0, 'candidate lines run towards the face centre'
    # The sliding rule's outward directions point from the face's centre to the jaw.
    directions = geometry.contour_outward_directions(v, cand)
    inner = v[mesh.landmark_indices[17:], :2].mean(axis=0)
    assert np.all(np.sum((v[jaw, :2] - inner) * directions[:, :2], axis=1) > 0)
    # Side landmarks slide roughly horizontally.
    side = cand[2][cand[2] >= 0]
    assert np.abs(v[side, 1] - v[side[0], 1]).max() < 0.5 * np.abs(v[side, 0] - v[side[0], 0]).max()


def test_face_mask_drops_only_the_border(mesh):
    border = max(topo.boundary_loops(mesh.triangles), key=len)
    assert not mesh.face_mask[border].any()
    assert mesh.face_mask.sum() == mesh.num_vertices - len(border)


def test_blendshape_sigma_constant():
    assert assets.BLENDSHAPE_SIGMA == pytest.approx(0.2886751346)


def test_no_face_raises(tmp_path):
    import cv2
    path = str(tmp_path / 'blank.png')
    cv2.imwrite(path, np.full((128, 128, 3), 127, np.uint8))
    with pytest.raises(mediapipe_source.NoFaceError, match='no face'):
        mediapipe_source.build_source(path)
    with pytest.raises(FileNotFoundError):
        mediapipe_source.build_source(str(tmp_path / 'missing.png'))
