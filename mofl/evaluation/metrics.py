"""Per-mesh geometric error of a reconstruction against a ground-truth scan (Tables 1–2, §4.2).

`mesh_rmse` is the full protocol (written out step by step in docs/evaluation.md "Geometric
evaluation protocol"): landmark Procrustes (or centroid) initialisation, point-to-surface ICP
(outliers beyond 3 × the median rejected) of the predicted face region onto the scan, exact
point-to-triangle distances of the predicted face-region vertices to the scan surface, RMSE in mm. `vertex_rmse` is the variant for
ground truth in the predicted mesh's own topology (the synthetic benchmark, docs/evaluation.md),
where the correspondence is known (the paper's "pre-computed dense correspondence map").
"""
import numpy as np

from mofl.evaluation import alignment
from mofl.evaluation import distance

# Protocol constants (docs/evaluation.md "Geometric evaluation protocol").
ICP_ITERATIONS = 50            # upper bound; point-to-plane usually converges in < 15
ICP_METHOD = 'point_to_plane'
ICP_OUTLIER_FACTOR = 3.0       # reject matches farther than 3 × the median distance
ICP_TRIM_FRACTION = 1.0        # no quantile trimming by default (it biases uniform offsets)
ICP_TOLERANCE_MM = 1e-6        # stop when no vertex moves more than this in one iteration
ICP_RMSE_TOLERANCE_MM = 1e-5   # ... or when an iteration lowers the inlier RMSE by less
ICP_MAX_POINTS = 5000          # ICP uses an evenly strided subset of the face vertices


def _face_indices(face_mask, num_vertices):
    face_mask = np.asarray(face_mask)
    if face_mask.dtype == bool:
        if face_mask.shape != (num_vertices,):
            raise ValueError(f'face mask shape {face_mask.shape}, want ({num_vertices},)')
        ids = np.nonzero(face_mask)[0]
    else:
        ids = face_mask.astype(np.int64).ravel()
    if len(ids) < 3:
        raise ValueError(f'the face region has {len(ids)} vertices; need at least 3')
    return ids


def initial_alignment(source_points, target_vertices, source_landmarks=None,
                      target_landmarks=None, with_scale=False):
    """Initial transform for ICP.

    With landmarks: Procrustes (rigid, or similarity when `with_scale`) of the predicted onto the
    scan landmarks. Without: identity rotation and scale, translation moving the source centroid
    onto the target's vertex centroid (assumes both are roughly in the same orientation and the
    scan is cropped to about the face).

    Args:
        source_points: [N, 3] predicted face-region vertices.
        target_vertices: [V, 3] scan vertices.
        source_landmarks, target_landmarks: optional [L, 3] corresponding landmarks, L ≥ 3.
        with_scale: similarity instead of rigid.

    Returns:
        `alignment.SimilarityTransform`.
    """
    if (source_landmarks is None) != (target_landmarks is None):
        raise ValueError('give both predicted and scan landmarks, or neither')
    if source_landmarks is not None:
        return alignment.procrustes(source_landmarks, target_landmarks, with_scale)
    translation = np.mean(target_vertices, axis=0) - np.mean(source_points, axis=0)
    return alignment.SimilarityTransform(np.eye(3), translation, 1.0)


def mesh_rmse(pred_vertices, pred_face_mask, scan_vertices, scan_triangles, pred_landmarks=None,
              scan_landmarks=None, with_scale=False, icp_iterations=ICP_ITERATIONS,
              icp_method=ICP_METHOD, outlier_factor=ICP_OUTLIER_FACTOR,
              trim_fraction=ICP_TRIM_FRACTION, max_distance=None, reject_boundary=True,
              icp_max_points=ICP_MAX_POINTS, scan_search=None):
    """Geometric error of one predicted mesh against its ground-truth scan (Tables 1–2).

    Args:
        pred_vertices: [V, 3] predicted mesh, mm.
        pred_face_mask: [V] bool face region (or int vertex indices); the evaluated vertices.
        scan_vertices: [S, 3] scan, mm.
        scan_triangles: [T, 3] scan triangles.
        pred_landmarks: optional [L, 3] predicted landmark positions (e.g. the model's landmark
            vertices), matched row by row with `scan_landmarks` [L, 3].
        scan_landmarks: optional [L, 3].
        with_scale: similarity alignment (uniform scale) instead of rigid.
        icp_iterations: ICP iterations (0: landmark/centroid alignment only).
        icp_method: 'point_to_plane' or 'point_to_point' (see `alignment.icp`).
        outlier_factor: ICP rejects matches farther than this multiple of the median distance.
        trim_fraction: ICP keeps this fraction of closest matches per iteration.
        max_distance: optional ICP rejection distance in mm.
        reject_boundary: ICP ignores matches on the scan's open boundary.
        icp_max_points: ICP runs on every k-th face vertex, k = ceil(F / icp_max_points), to
            bound its cost; the final distances use all F face vertices. None: all.
        scan_search: optional prebuilt `distance.TriangleMeshSearch` of the scan.

    Returns:
        dict with
          'rmse_mm': float, sqrt(mean d_i²) over all face-region vertices i;
          'per_vertex_mm': [F] distances d_i after alignment;
          'vertex_ids': [F] the face-region vertex indices;
          'transform': `SimilarityTransform` mapping the prediction onto the scan;
          'aligned_vertices': [V, 3] the whole prediction after alignment;
          'closest_points': [F, 3] on the scan;
          'boundary_fraction': share of face vertices whose closest point is on the scan's
              boundary (a coverage warning: those distances overestimate the error);
          'icp_history': list of per-iteration dicts (see `alignment.icp`).
    """
    pred_vertices = np.asarray(pred_vertices, np.float64)
    ids = _face_indices(pred_face_mask, len(pred_vertices))
    face_points = pred_vertices[ids]
    search = scan_search or distance.TriangleMeshSearch(scan_vertices, scan_triangles)
    init = initial_alignment(face_points, search.vertices, pred_landmarks, scan_landmarks,
                             with_scale)
    history = []
    transform = init
    if icp_iterations > 0:
        stride = 1 if icp_max_points is None else max(1, -(-len(ids) // icp_max_points))
        result = alignment.icp(face_points[::stride], None, None, init=init,
                               iterations=icp_iterations,
                               with_scale=with_scale, method=icp_method,
                               outlier_factor=outlier_factor, trim_fraction=trim_fraction,
                               max_distance=max_distance, reject_boundary=reject_boundary,
                               tolerance=ICP_TOLERANCE_MM,
                               rmse_tolerance=ICP_RMSE_TOLERANCE_MM, search=search)
        transform, history = result.transform, result.history
    aligned = alignment.apply_transform(pred_vertices, *transform)
    closest, dist, tri_ids, bary = search.query(aligned[ids], return_barycentrics=True)
    return {
        'rmse_mm': float(np.sqrt(np.mean(dist ** 2))),
        'per_vertex_mm': dist,
        'vertex_ids': ids,
        'transform': transform,
        'aligned_vertices': aligned,
        'closest_points': closest,
        'boundary_fraction': float(np.mean(search.on_boundary(tri_ids, bary))),
        'icp_history': history,
    }


def vertex_rmse(pred_vertices, gt_vertices, face_mask, with_scale=False):
    """Per-vertex RMSE with known correspondence (same topology), after Procrustes.

    Aligns the predicted face region onto the ground truth's (rigid, or similarity when
    `with_scale`) by `alignment.procrustes` over the face-region vertex pairs, then
    RMSE = sqrt(mean_i ‖s·R·p_i + t − g_i‖²).

    Args:
        pred_vertices: [V, 3] mm.
        gt_vertices: [V, 3] mm, same topology.
        face_mask: [V] bool (or int indices).
        with_scale: similarity alignment.

    Returns:
        dict with 'rmse_mm', 'per_vertex_mm' [F], 'vertex_ids' [F], 'transform'.
    """
    pred_vertices = np.asarray(pred_vertices, np.float64)
    gt_vertices = np.asarray(gt_vertices, np.float64)
    if pred_vertices.shape != gt_vertices.shape:
        raise ValueError(f'prediction {pred_vertices.shape} and ground truth '
                         f'{gt_vertices.shape} differ in shape')
    ids = _face_indices(face_mask, len(pred_vertices))
    transform = alignment.procrustes(pred_vertices[ids], gt_vertices[ids], with_scale)
    err = np.linalg.norm(alignment.apply_transform(pred_vertices[ids], *transform)
                         - gt_vertices[ids], axis=1)
    return {'rmse_mm': float(np.sqrt(np.mean(err ** 2))), 'per_vertex_mm': err,
            'vertex_ids': ids, 'transform': transform}
