"""Tests of mofl.evaluation: exact closest points, Procrustes, ICP, the RMSE protocol, scan
loaders and the paper-style tables."""

import numpy as np
import pytest
from scipy import spatial
from scipy.spatial.transform import Rotation

from mofl.evaluation import alignment
from mofl.evaluation import datasets
from mofl.evaluation import distance
from mofl.evaluation import metrics
from mofl.evaluation import tables


# ---------------------------------------------------------------------------------------------
# Reference geometry (independent of distance.py's Voronoi-region code)

def reference_point_triangle_distance(p, a, b, c):
    """Distance by projection onto the plane when inside, else the nearest of the 3 segments."""
    normal = np.cross(b - a, c - a)
    area2 = np.linalg.norm(normal)
    if area2 > 1e-12:
        normal = normal / area2
        q = p - np.dot(p - a, normal) * normal
        # Inside test by signed areas of the sub-triangles.
        signs = [np.dot(np.cross(y - x, q - x), normal) for x, y in ((a, b), (b, c), (c, a))]
        if min(signs) >= 0:
            return np.linalg.norm(p - q)
    best = np.inf
    for x, y in ((a, b), (b, c), (c, a)):
        seg = y - x
        t = 0.0 if seg @ seg == 0 else np.clip(np.dot(p - x, seg) / (seg @ seg), 0.0, 1.0)
        best = min(best, np.linalg.norm(x + t * seg - p))
    return best


def brute_force_distances(points, vertices, triangles):
    """[N] distance to the nearest triangle: the reference rule, vectorised over all triangles."""
    a, b, c = (vertices[triangles[:, k]] for k in range(3))
    normal = np.cross(b - a, c - a)
    area2 = np.linalg.norm(normal, axis=1)
    unit = normal / np.maximum(area2, 1e-300)[:, None]
    out = []
    for p in points:
        height = np.sum((p - a) * unit, axis=1)
        q = p - height[:, None] * unit
        inside = area2 > 1e-12
        for x, y in ((a, b), (b, c), (c, a)):
            inside &= np.sum(np.cross(y - x, q - x) * unit, axis=1) >= 0
        best = np.where(inside, np.abs(height), np.inf)
        for x, y in ((a, b), (b, c), (c, a)):
            seg = y - x
            length2 = np.sum(seg * seg, axis=1)
            t = np.clip(np.sum((p - x) * seg, axis=1) / np.maximum(length2, 1e-300), 0, 1)
            best = np.minimum(best, np.linalg.norm(x + t[:, None] * seg - p, axis=1))
        out.append(best.min())
    return np.array(out)


def height_field_mesh(n=20, size=100.0, seed=0):
    """A bumpy, asymmetric open surface z = f(x, y) on an n×n grid (a face-like patch), mm."""
    rng = np.random.default_rng(seed)
    xs = np.linspace(-size / 2, size / 2, n)
    x, y = np.meshgrid(xs, xs)
    x = x + rng.uniform(-0.2, 0.2, x.shape) * size / n
    y = y + rng.uniform(-0.2, 0.2, y.shape) * size / n
    z = 30 * np.exp(-(x ** 2 + (y - 10) ** 2) / 900) + 0.004 * x * y + 0.1 * x
    vertices = np.stack([x.ravel(), y.ravel(), z.ravel()], 1)
    idx = np.arange(n * n).reshape(n, n)
    quads = np.stack([idx[:-1, :-1], idx[:-1, 1:], idx[1:, 1:], idx[1:, :-1]], -1).reshape(-1, 4)
    triangles = np.concatenate([quads[:, [0, 1, 2]], quads[:, [0, 2, 3]]])
    return vertices, triangles.astype(np.int32)


def sphere_mesh(radius, num_points=3000, seed=1):
    rng = np.random.default_rng(seed)
    pts = rng.normal(size=(num_points, 3))
    pts = radius * pts / np.linalg.norm(pts, axis=1, keepdims=True)
    return pts, spatial.ConvexHull(pts).simplices.astype(np.int32)


def fibonacci_sphere(radius, n):
    """n nearly uniform points on a sphere (mean direction ≈ 0)."""
    k = np.arange(n) + 0.5
    z = 1 - 2 * k / n
    phi = np.pi * (1 + 5 ** 0.5) * k
    r = np.sqrt(1 - z ** 2)
    return radius * np.stack([r * np.cos(phi), r * np.sin(phi), z], 1)


def random_transform(rng, max_angle_deg, max_shift, scale=1.0):
    axis = rng.normal(size=3)
    angle = np.deg2rad(rng.uniform(0.5, 1.0) * max_angle_deg)
    rotation = Rotation.from_rotvec(axis / np.linalg.norm(axis) * angle).as_matrix()
    return alignment.SimilarityTransform(rotation, rng.uniform(-max_shift, max_shift, 3), scale)


# ---------------------------------------------------------------------------------------------
# Exact closest points

def test_point_triangle_matches_reference_including_degenerate_triangles():
    rng = np.random.default_rng(0)
    n = 3000
    points = rng.normal(size=(n, 3)) * 2
    a, b, c = (rng.normal(size=(n, 3)) for _ in range(3))
    c[:100] = a[:100] + 0.5 * (b[:100] - a[:100])      # collinear triangles
    b[100:150] = a[100:150]                             # two equal corners
    b[150:200] = c[150:200] = a[150:200]                # a point
    closest, bary = distance.closest_points_on_triangles(points, a, b, c)
    got = np.linalg.norm(closest - points, axis=1)
    want = np.array([reference_point_triangle_distance(*x) for x in zip(points, a, b, c)])
    np.testing.assert_allclose(got, want, atol=1e-10)
    assert np.all(bary >= -1e-12)
    np.testing.assert_allclose(bary.sum(1), 1.0, atol=1e-12)
    np.testing.assert_allclose(bary[:, :1] * a + bary[:, 1:2] * b + bary[:, 2:] * c, closest,
                               atol=1e-10)


@pytest.mark.parametrize('offset', [0.3, 5.0, 40.0])
def test_closest_points_on_mesh_match_brute_force(offset):
    rng = np.random.default_rng(1)
    vertices, triangles = height_field_mesh(n=12)
    # A few long sliver triangles (as at scan borders) exercise the radius classes.
    far = vertices[[0, 11, 143, 132]] + [0.0, 0.0, 5.0]
    vertices = np.concatenate([vertices, far])
    triangles = np.concatenate([triangles, [[144, 145, 146], [144, 146, 147]]]).astype(np.int32)
    queries = vertices[rng.integers(0, 144, 150)] + rng.normal(size=(150, 3)) * offset
    closest, dist, tri_ids = distance.closest_points_on_mesh(queries, vertices, triangles)
    want = brute_force_distances(queries, vertices, triangles)
    np.testing.assert_allclose(dist, want, atol=1e-9)
    np.testing.assert_allclose(np.linalg.norm(closest - queries, axis=1), dist, atol=1e-9)
    for q, t, d in zip(queries, tri_ids, dist):   # the reported triangle attains the distance
        assert reference_point_triangle_distance(q, *vertices[triangles[t]]) == pytest.approx(d)


@pytest.mark.parametrize('k', [2, 32])
def test_neighbour_search_returns_every_pair_within_the_radius(k):
    rng = np.random.default_rng(13)
    items = rng.uniform(-10, 10, size=(300, 3))
    points = rng.uniform(-12, 12, size=(100, 3))
    radius = rng.uniform(0.0, 6.0, size=100)
    p_ids, i_ids = distance._neighbours_within(spatial.cKDTree(items), points, radius, k=k)
    got = set(zip(p_ids.tolist(), i_ids.tolist()))
    dist = np.linalg.norm(points[:, None] - items[None], axis=2)
    want = set(zip(*[x.tolist() for x in np.nonzero(dist <= radius[:, None])]))
    assert got == want and len(p_ids) == len(got)


def test_closest_points_on_random_triangle_soup():
    rng = np.random.default_rng(2)
    vertices = rng.uniform(-10, 10, size=(90, 3))
    triangles = rng.permutation(90).reshape(30, 3)
    queries = rng.uniform(-15, 15, size=(200, 3))
    _, dist, _ = distance.closest_points_on_mesh(queries, vertices, triangles)
    np.testing.assert_allclose(dist, brute_force_distances(queries, vertices, triangles),
                               atol=1e-9)


def test_boundary_detection_on_an_open_patch():
    vertices = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0]], float)
    triangles = np.array([[0, 1, 2], [0, 2, 3]])
    search = distance.TriangleMeshSearch(vertices, triangles)
    queries = np.array([[0.3, 0.6, 1.0],     # above the interior
                        [0.5, 0.5, 1.0],     # above the shared (interior) diagonal
                        [1.5, 0.5, 0.0],     # beyond the edge x = 1
                        [2.0, 2.0, 0.0]])    # beyond the corner (1, 1)
    _, _, tri_ids, bary = search.query(queries, return_barycentrics=True)
    np.testing.assert_array_equal(search.on_boundary(tri_ids, bary), [False, False, True, True])


# ---------------------------------------------------------------------------------------------
# Procrustes and ICP

@pytest.mark.parametrize('with_scale', [False, True])
def test_procrustes_recovers_transform(with_scale):
    rng = np.random.default_rng(3)
    source = rng.normal(size=(40, 3)) * 30
    true = random_transform(rng, 170, 100, scale=1.37 if with_scale else 1.0)
    target = alignment.apply_transform(source, *true)
    rotation, translation, scale = alignment.procrustes(source, target, with_scale)
    np.testing.assert_allclose(rotation, true.rotation, atol=1e-10)
    np.testing.assert_allclose(translation, true.translation, atol=1e-8)
    assert scale == pytest.approx(true.scale, abs=1e-12)


def test_procrustes_never_returns_a_reflection_and_honours_weights():
    rng = np.random.default_rng(4)
    source = rng.normal(size=(30, 3))
    mirrored = source * [1, 1, -1]
    rotation, _, _ = alignment.procrustes(source, mirrored)
    assert np.linalg.det(rotation) == pytest.approx(1.0)
    # Zero weight on corrupted pairs: the clean pairs' transform is recovered exactly.
    true = random_transform(rng, 60, 10)
    target = alignment.apply_transform(source, *true)
    target[:5] += 50.0
    weights = np.r_[np.zeros(5), np.ones(25)]
    rotation, translation, _ = alignment.procrustes(source, target, weights=weights)
    np.testing.assert_allclose(rotation, true.rotation, atol=1e-10)
    np.testing.assert_allclose(translation, true.translation, atol=1e-10)


def test_icp_recovers_small_perturbation_of_a_mesh_against_itself():
    rng = np.random.default_rng(5)
    vertices, triangles = height_field_mesh(n=25)
    true = random_transform(rng, 4, 3)
    moved = alignment.apply_transform(vertices, *true)
    inverse = alignment.procrustes(moved, vertices)
    assert np.sqrt(np.mean(np.sum((moved - vertices) ** 2, 1))) > 1.0   # identity init is off
    # Default stopping rule (RMSE gain < 1e-5 mm): already within 1e-4 mm.
    assert alignment.icp(moved, vertices, triangles).history[-1]['rmse_all'] < 1e-4
    result = alignment.icp(moved, vertices, triangles, iterations=30, rmse_tolerance=0.0)
    aligned = alignment.apply_transform(moved, *result.transform)
    np.testing.assert_allclose(aligned, vertices, atol=1e-6)
    np.testing.assert_allclose(result.rotation, inverse.rotation, atol=1e-8)
    assert result.history[0]['rmse_all'] > 0.5
    assert result.history[-1]['rmse_all'] < 1e-6
    assert len(result.history) < 30


def test_point_to_point_icp_decreases_the_error_monotonically():
    rng = np.random.default_rng(6)
    vertices, triangles = height_field_mesh(n=25)
    moved = alignment.apply_transform(vertices, *random_transform(rng, 4, 3))
    result = alignment.icp(moved, vertices, triangles, iterations=40, method='point_to_point',
                           outlier_factor=None, reject_boundary=False)
    rmse = np.array([h['rmse_all'] for h in result.history])
    assert np.all(np.diff(rmse) <= 1e-12)
    assert rmse[-1] < 0.1 * rmse[0]


def test_icp_reports_known_offset_between_spheres():
    # Points on a sphere of radius 100 against a triangulated sphere of radius 102: the facets lie
    # inside their sphere by at most the sag of the largest facet's circumcircle, so every
    # distance is in [2 − sag, 2].
    pred = fibonacci_sphere(100.0, 800)
    scan_v = fibonacci_sphere(102.0, 6000)
    scan_t = spatial.ConvexHull(scan_v).simplices
    corners = scan_v[scan_t]
    centres = corners.mean(1)
    circum = np.linalg.norm(corners - centres[:, None], axis=2).max()
    sag = 102.0 - np.sqrt(102.0 ** 2 - circum ** 2)
    shift = np.array([1.0, -0.5, 0.7])
    out = metrics.mesh_rmse(pred + shift, np.ones(len(pred), bool), scan_v, scan_t,
                            icp_iterations=50)
    assert sag < 0.1
    assert np.all(out['per_vertex_mm'] >= 2.0 - sag - 1e-3)
    assert np.all(out['per_vertex_mm'] <= 2.0 + 1e-3)
    np.testing.assert_allclose(out['transform'].translation, -shift, atol=0.05)
    scaled = metrics.mesh_rmse(pred + shift, np.ones(len(pred), bool), scan_v, scan_t,
                               with_scale=True)
    assert scaled['rmse_mm'] < sag
    assert scaled['transform'].scale == pytest.approx(1.02, abs=1e-3)


def test_mesh_rmse_with_landmarks_handles_large_pose_and_measures_face_region_only():
    rng = np.random.default_rng(9)
    scan_v, scan_t = height_field_mesh(n=30)
    true = random_transform(rng, 120, 200)
    pred = alignment.apply_transform(scan_v, *true)
    face = np.zeros(len(pred), bool)
    face[np.linalg.norm(scan_v[:, :2], axis=1) < 35] = True
    # Lift the non-face part of the prediction: it must not change the face-region error.
    pred[~face] += 20.0 * np.asarray(true.rotation)[:, 2]
    lmk = rng.choice(np.nonzero(face)[0], 8, replace=False)
    out = metrics.mesh_rmse(pred, face, scan_v, scan_t, pred[lmk], scan_v[lmk])
    assert out['rmse_mm'] < 1e-4
    assert out['per_vertex_mm'].shape == (face.sum(),)
    assert out['boundary_fraction'] == 0.0
    # Without landmarks and ICP, the centroid initialisation alone removes a pure shift.
    flat_v = np.concatenate([scan_v[:, :2], np.zeros((len(scan_v), 1))], 1)
    flat_pred = flat_v + [0.0, 0.0, 1.5]
    flat = metrics.mesh_rmse(flat_pred, face, flat_v, scan_t, icp_iterations=0)
    assert flat['rmse_mm'] == pytest.approx(0.0, abs=1e-9)


def test_mesh_rmse_known_offset_without_icp_translation_freedom():
    # A plane 1.5 mm above a larger plane, landmark init pinned exactly: no ICP iterations.
    scan_v, scan_t = height_field_mesh(n=15)
    scan_v[:, 2] = 0.0
    pred = scan_v * [0.5, 0.5, 0.0] + [0.0, 0.0, 1.5]
    face = np.ones(len(pred), bool)
    lmk_pred = pred[[0, 14, 210]] - [0.0, 0.0, 1.5]
    out = metrics.mesh_rmse(pred, face, scan_v, scan_t, lmk_pred, lmk_pred, icp_iterations=0)
    assert out['rmse_mm'] == pytest.approx(1.5, abs=1e-9)


def test_vertex_rmse_known_values():
    rng = np.random.default_rng(10)
    gt = rng.normal(size=(200, 3)) * 20
    mask = np.ones(200, bool)
    posed = alignment.apply_transform(gt, *random_transform(rng, 90, 50))
    assert metrics.vertex_rmse(posed, gt, mask)['rmse_mm'] < 1e-9
    centred = gt - gt.mean(0)
    scaled = centred * 1.1
    want = 0.1 * np.sqrt(np.mean(np.sum(centred ** 2, 1)))
    assert metrics.vertex_rmse(scaled, centred, mask)['rmse_mm'] == pytest.approx(want, rel=1e-9)
    assert metrics.vertex_rmse(scaled, centred, mask, with_scale=True)['rmse_mm'] < 1e-9


# ---------------------------------------------------------------------------------------------
# Loaders

WRL_TEXT = """#VRML V2.0 utf8
# BU-3DFE style scan, written by the test
Transform {
  children [
    Shape {
      appearance Appearance { texture ImageTexture { url "F0001_AN01WH_F2D.bmp" } }
      geometry DEF FaceSet IndexedFaceSet {
        creaseAngle 0.9 ccw TRUE solid FALSE
        coord DEF Coord Coordinate {
          point [
            0 0 0, 10.5 0 0,   # a comment inside the list
            10.5 10 0
            0 10 0,
            5 5 -3.25e0
          ]
        }
        texCoord TextureCoordinate { point [ 0 0, 1 0, 1 1, 0 1, 0.5 0.5 ] }
        coordIndex [ 0, 1, 4, -1, 1 2 4 -1,
                     0, 4, 2, 3, -1 ]
        texCoordIndex [ 0, 1, 4, -1, 1, 2, 4, -1, 0, 4, 2, 3, -1 ]
      }
    }
  ]
}
"""


def write(path, text):
    with open(path, 'w') as f:
        f.write(text)
    return str(path)


def test_read_wrl_parses_comments_commas_and_quads(tmp_path):
    vertices, triangles = datasets.read_wrl(write(tmp_path / 'scan.wrl', WRL_TEXT))
    np.testing.assert_allclose(vertices, [[0, 0, 0], [10.5, 0, 0], [10.5, 10, 0], [0, 10, 0],
                                          [5, 5, -3.25]])
    # The quad (0, 4, 2, 3) is fan-triangulated keeping its winding.
    np.testing.assert_array_equal(triangles, [[0, 1, 4], [1, 2, 4], [0, 4, 2], [0, 2, 3]])
    assert triangles.dtype == np.int32


def test_read_wrl_two_face_sets_and_ccw_false(tmp_path):
    text = ('#VRML V2.0 utf8\nShape { geometry IndexedFaceSet { coord Coordinate { point '
            '[0 0 0 1 0 0 0 1 0] } coordIndex [0 1 2] } }\n'
            'Shape { geometry IndexedFaceSet { ccw FALSE coord Coordinate { point '
            '[0 0 1, 1 0 1, 0 1 1] } coordIndex [0 1 2 -1] } }\n')
    vertices, triangles = datasets.read_wrl(write(tmp_path / 'two.wrl', text))
    assert vertices.shape == (6, 3)
    np.testing.assert_array_equal(triangles, [[0, 1, 2], [5, 4, 3]])


@pytest.mark.parametrize('text, reason', [
    ('solid stl\n', 'not a VRML'),
    ('#VRML V2.0 utf8\nShape { geometry Box { size 1 1 1 } }\n', 'no IndexedFaceSet'),
    ('#VRML V2.0 utf8\nIndexedFaceSet { coord Coordinate { point [0 0 0 1 0 0 0 1 0] } '
     'coordIndex [0 1 7 -1] }\n', 'out of range'),
    ('#VRML V2.0 utf8\nIndexedFaceSet { coord Coordinate { point [0 0 0 1 0 0 0 1] } '
     'coordIndex [0 1 2 -1] }\n', 'multiple of 3'),
    ('#VRML V2.0 utf8\nIndexedFaceSet { coord Coordinate { point [0 0 0 1 0 0 0 1 0 ',
     'unbalanced'),
])
def test_read_wrl_errors_name_the_file(tmp_path, text, reason):
    path = write(tmp_path / 'bad.wrl', text)
    with pytest.raises(datasets.ScanFormatError, match=reason) as info:
        datasets.read_wrl(path)
    assert path in str(info.value)


def bnd_text(points, with_index=True):
    lines = ['# 83 feature points']
    for i, (x, y, z) in enumerate(points):
        lines.append(f'{i * 7}\t\t{x:.4f}\t{y:.4f}\t{z:.4f}' if with_index
                     else f'{x:.4f} {y:.4f} {z:.4f}')
    return '\n'.join(lines) + '\n\n'


def test_bnd_and_pse_landmarks(tmp_path):
    rng = np.random.default_rng(11)
    pts = np.round(rng.normal(size=(83, 3)) * 40, 4)
    points, indices = datasets.read_bnd(write(tmp_path / 'F0001_NE00WH_F3D.bnd', bnd_text(pts)))
    np.testing.assert_allclose(points, pts)
    np.testing.assert_array_equal(indices, np.arange(83) * 7)
    pse, pse_idx = datasets.read_pse(write(tmp_path / 'a.pse', bnd_text(pts[:5], False)))
    np.testing.assert_allclose(pse, pts[:5])
    assert pse_idx is None
    with pytest.raises(datasets.ScanFormatError, match='82 landmarks'):
        datasets.read_bnd(write(tmp_path / 'short.bnd', bnd_text(pts[:82])))
    with pytest.raises(datasets.ScanFormatError, match='bad.bnd:2'):
        datasets.read_bnd(write(tmp_path / 'bad.bnd', '0 1 2 3\n1 x 2 3\n'))


def test_load_bu3dfe_scan_finds_the_bnd(tmp_path):
    wrl = write(tmp_path / 'F0001_NE00WH_F3D.wrl', WRL_TEXT)
    pts = np.zeros((83, 3))
    pts[:, 0] = np.arange(83)
    write(tmp_path / 'F0001_NE00WH_F3D.bnd', bnd_text(pts, with_index=False))
    scan = datasets.load_scan(wrl)
    assert scan.name == 'F0001_NE00WH_F3D'
    assert scan.vertices.shape == (5, 3) and scan.triangles.shape == (4, 3)
    np.testing.assert_allclose(scan.landmarks[:, 0], np.arange(83))
    assert datasets.load_bu3dfe_scan(wrl, landmark_path=None).landmarks is None


def test_facewarehouse_obj_with_landmark_file(tmp_path):
    n = datasets.FACEWAREHOUSE_NUM_VERTICES
    rows, cols = 10, n // 10
    x, y = np.meshgrid(np.arange(cols, dtype=float), np.arange(rows, dtype=float))
    vertices = np.stack([x.ravel(), y.ravel(), np.sin(x.ravel())], 1)
    idx = np.arange(n).reshape(rows, cols)
    quads = np.stack([idx[:-1, :-1], idx[:-1, 1:], idx[1:, 1:], idx[1:, :-1]], -1).reshape(-1, 4)
    lines = ['# FaceWarehouse-style mesh'] + [f'v {a} {b} {c}' for a, b, c in vertices]
    lines += ['f ' + ' '.join(f'{i + 1}/{i + 1}' for i in q) for q in quads]
    obj = write(tmp_path / 'pose_0.obj', '\n'.join(lines) + '\n')
    lmk_file = write(tmp_path / 'landmarks.txt', '# 1-based\n1, 12\n11510\n')
    scan = datasets.load_facewarehouse_scan(obj, lmk_file, one_based=True, unit_to_mm=10.0)
    np.testing.assert_allclose(scan.vertices, vertices * 10.0)
    assert scan.triangles.shape == (2 * len(quads), 3)
    np.testing.assert_array_equal(scan.triangles[:2], [quads[0][[0, 1, 2]], quads[0][[0, 2, 3]]])
    np.testing.assert_allclose(scan.landmarks, vertices[[0, 11, n - 1]] * 10.0)
    small = write(tmp_path / 'small.obj', 'v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n')
    with pytest.raises(datasets.ScanFormatError, match='small.obj: 3 vertices'):
        datasets.load_facewarehouse_scan(small)
    assert datasets.load_facewarehouse_scan(small, check_topology=False).triangles.shape == (1, 3)


def test_npz_scan_roundtrip_and_errors(tmp_path):
    vertices, triangles = height_field_mesh(n=5)
    scan = datasets.Scan(vertices, triangles, vertices[:3], 'synthetic_0001')
    path = str(tmp_path / 'gt.npz')
    datasets.save_npz_scan(path, scan)
    back = datasets.load_scan(path)
    np.testing.assert_array_equal(back.vertices, vertices)
    np.testing.assert_array_equal(back.triangles, triangles)
    np.testing.assert_array_equal(back.landmarks, vertices[:3])
    assert back.name == 'synthetic_0001'
    bad = str(tmp_path / 'bad.npz')
    np.savez(bad, vertices=vertices, triangles=triangles + 1000)
    with pytest.raises(datasets.ScanFormatError, match='bad.npz: triangle index out of range'):
        datasets.load_npz_scan(bad)


# ---------------------------------------------------------------------------------------------
# Tables

def parse_markdown(text):
    return [[c.strip() for c in line.strip().strip('|').split('|')]
            for line in text.strip().splitlines()]


def test_table1_layout_and_numbers():
    rng = np.random.default_rng(12)
    results = {(4, 2): rng.uniform(1, 3, 7), (1, 1): rng.uniform(1, 3, 5),
               (2, 1): rng.uniform(1, 3, 6), (2, 2): rng.uniform(1, 3, 4),
               (4, 1): rng.uniform(1, 3, 3)}
    baseline = rng.uniform(2, 4, 9)
    rows = parse_markdown(tables.table1_markdown(results, {'[60]': baseline}, show_count=True))
    assert rows[0] == ['', 'Ours', 'Ours', 'Ours', 'Ours', 'Ours', '[60]']
    order = [(1, 1), (2, 1), (4, 1), (2, 2), (4, 2)]
    assert rows[2] == ['Train'] + [f'M = {tr}' for tr, _ in order] + ['']
    assert rows[3] == ['Test'] + [f'M = {te}' for _, te in order] + ['']
    columns = [results[k] for k in order] + [baseline]
    assert rows[4] == ['Mean'] + [f'{np.mean(v):.2f} mm' for v in columns]
    assert rows[5] == ['SD'] + [f'{np.std(v):.2f} mm' for v in columns]
    assert rows[6] == ['Meshes'] + [str(len(v)) for v in columns]


def test_table2_and_table4_numbers():
    ours = [1.5, 2.5, 2.0]
    rows = parse_markdown(tables.table2_markdown(ours, {'[24]': [1.0, 2.0]}))
    assert rows[0] == ['', 'Ours', '[24]']
    assert rows[2] == ['Mean', '2.00 mm', '1.50 mm']
    assert rows[3] == ['SD', f'{np.std(ours):.2f} mm', '0.50 mm']
    rows = parse_markdown(tables.table4_markdown({500: (20.654, 6.04), 0: (32.536, 8.881)},
                                                  {'[3] M = 80': (21.95, 5.6)}))
    assert rows[0] == ['Size', 'M = 0', 'M = 500', '[3] M = 80']
    assert rows[2] == ['Mean', '32.54', '20.65', '21.95']
    assert rows[3] == ['SD', '8.88', '6.04', '5.60']


def test_summarize():
    values = [1.0, 2.0, 4.0]
    assert tables.summarize(values) == pytest.approx((7 / 3, np.sqrt(np.mean(
        (np.array(values) - 7 / 3) ** 2))))
    assert tables.summarize(values, ddof=1)[1] == pytest.approx(np.std(values, ddof=1))
    with pytest.raises(ValueError):
        tables.summarize([])
