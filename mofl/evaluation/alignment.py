"""Rigid / similarity alignment of a predicted mesh to a scan: Procrustes and trimmed ICP.

Convention: a transform (R, t, s) maps a source point x to s·R·x + t (R a proper rotation,
det R = +1; s = 1 for rigid alignment). The predicted mesh is the source and is moved onto the
scan, so distances stay in the scan's millimetres.
"""
from typing import NamedTuple

import numpy as np

from mofl.evaluation import distance


class SimilarityTransform(NamedTuple):
    """x ↦ scale · rotation · x + translation; unpacks as (R, t, s)."""
    rotation: np.ndarray      # [3, 3], det = +1
    translation: np.ndarray   # [3]
    scale: float


def identity_transform():
    """The identity as a `SimilarityTransform`."""
    return SimilarityTransform(np.eye(3), np.zeros(3), 1.0)


def apply_transform(points, rotation, translation, scale=1.0):
    """Applies x ↦ s·R·x + t.

    Args:
        points: [N, 3].
        rotation: [3, 3].
        translation: [3].
        scale: scalar.

    Returns:
        [N, 3] float64.
    """
    points = np.asarray(points, np.float64)
    return scale * points @ np.asarray(rotation, np.float64).T + np.asarray(translation, np.float64)


def procrustes(source, target, with_scale=False, weights=None):
    """Least-squares rigid or similarity transform from source to target (Kabsch / Umeyama).

    Minimises Σ_i w_i ‖s·R·source_i + t − target_i‖² over proper rotations R (det = +1, a
    reflection is never returned), t, and s > 0 when `with_scale` (else s = 1). Umeyama (1991),
    "Least-squares estimation of transformation parameters between two point patterns".

    Args:
        source: [N, 3] points, N ≥ 3 and not all collinear for a unique R.
        target: [N, 3] corresponding points.
        with_scale: also estimate a uniform scale.
        weights: optional [N] non-negative weights (not all zero).

    Returns:
        `SimilarityTransform` (R [3, 3], t [3], s float).
    """
    source = np.asarray(source, np.float64)
    target = np.asarray(target, np.float64)
    if source.shape != target.shape or source.ndim != 2 or source.shape[1] != 3:
        raise ValueError(f'source {source.shape} and target {target.shape} must both be [N, 3]')
    if len(source) < 3:
        raise ValueError(f'procrustes needs at least 3 correspondences, got {len(source)}')
    w = np.ones(len(source)) if weights is None else np.asarray(weights, np.float64)
    if w.shape != (len(source),) or np.any(w < 0) or w.sum() <= 0:
        raise ValueError('weights must be [N], non-negative and not all zero')
    w = w / w.sum()
    mean_s = w @ source
    mean_t = w @ target
    xs = source - mean_s
    xt = target - mean_t
    cov = (xt * w[:, None]).T @ xs                       # Σ w_i y_i x_iᵀ, [3, 3]
    u, sing, vt = np.linalg.svd(cov)
    flip = np.ones(3)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        flip[2] = -1.0                                   # nearest proper rotation
    rotation = (u * flip) @ vt
    scale = 1.0
    if with_scale:
        var_s = float(w @ np.sum(xs * xs, axis=1))
        if var_s <= 0:
            raise ValueError('source points are all identical; scale is undefined')
        scale = float(np.sum(sing * flip) / var_s)
    translation = mean_t - scale * rotation @ mean_s
    return SimilarityTransform(rotation, translation, scale)


class IcpResult(NamedTuple):
    """ICP output; unpacks as (R, t, s, history)."""
    rotation: np.ndarray
    translation: np.ndarray
    scale: float
    history: list             # one dict per iteration, see `icp`

    @property
    def transform(self):
        return SimilarityTransform(self.rotation, self.translation, self.scale)


def _rotation_from_rotvec(rotvec):
    """Rodrigues' formula: [3] axis·angle → [3, 3] rotation."""
    angle = float(np.linalg.norm(rotvec))
    if angle < 1e-15:
        return np.eye(3)
    k = rotvec / angle
    cross = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + np.sin(angle) * cross + (1 - np.cos(angle)) * cross @ cross


def point_to_plane_step(moved, closest, normals, with_scale=False, max_angle=np.deg2rad(10)):
    """One Gauss–Newton step of point-to-plane alignment (Chen & Medioni 1992).

    Linearises x ↦ c + (1 + σ)(I + [ω]×)(x − c) + τ about the centroid c of `moved` and solves
    min Σ_i (n_i · (x_i' − q_i))² for (ω, τ, σ) by least squares (minimum-norm solution, so
    directions the surface leaves unconstrained, e.g. sliding along a plane, stay put).

    Args:
        moved: [N, 3] current source positions x_i.
        closest: [N, 3] matched target points q_i.
        normals: [N, 3] unit target normals n_i at q_i (zero rows are ignored).
        with_scale: also solve for σ.
        max_angle: the rotation increment is clamped to this angle (radians); the scale
            increment σ is clamped to ±0.1.

    Returns:
        `SimilarityTransform` of the increment (applied after the current transform).
    """
    centre = moved.mean(axis=0)
    x = moved - centre
    columns = [np.cross(x, normals), normals]
    if with_scale:
        columns.append(np.sum(normals * x, axis=1, keepdims=True))
    jac = np.concatenate(columns, axis=1)                       # [N, 6 or 7]
    residual = np.sum(normals * (moved - closest), axis=1)      # [N]
    delta = np.linalg.lstsq(jac, -residual, rcond=1e-10)[0]
    omega, tau = delta[:3], delta[3:6]
    angle = np.linalg.norm(omega)
    if angle > max_angle:
        omega = omega * (max_angle / angle)
    scale = 1.0 + (float(np.clip(delta[6], -0.1, 0.1)) if with_scale else 0.0)
    rotation = _rotation_from_rotvec(omega)
    translation = centre + tau - scale * rotation @ centre
    return SimilarityTransform(rotation, translation, float(scale))


def compose(outer, inner):
    """The transform x ↦ outer(inner(x)), both (R, t, s)."""
    r_o, t_o, s_o = outer
    r_i, t_i, s_i = inner
    return SimilarityTransform(np.asarray(r_o) @ np.asarray(r_i),
                               s_o * np.asarray(r_o) @ np.asarray(t_i) + np.asarray(t_o),
                               float(s_o * s_i))


def icp(source_points, target_vertices, target_triangles, init=None, iterations=50,
        with_scale=False, method='point_to_plane', outlier_factor=3.0, trim_fraction=1.0,
        max_distance=None, reject_boundary=True, tolerance=1e-6, rmse_tolerance=1e-5,
        search=None):
    """Robust point-to-surface ICP of a point set onto a triangle mesh.

    Each iteration: (1) move the source with the current transform; (2) find each point's exact
    closest point on the target surface (point-to-triangle, `distance.py`); (3) keep the
    inliers: distance ≤ `outlier_factor` × the median distance of this iteration (when given),
    distance ≤ the `trim_fraction` quantile (when < 1), distance ≤ `max_distance` (when given),
    and (when `reject_boundary`) closest point not on the target's open boundary; (4) update:
    'point_to_plane' takes one Gauss–Newton step on Σ (n_i·(x_i − q_i))² with the closest
    triangle's normal n_i (`point_to_plane_step`) and keeps it only if the inliers' mean squared
    point-to-surface distance drops, else (and always for 'point_to_point') it re-solves
    `procrustes(original source, matched closest points)` over the inliers, which never raises
    that mean (Besl & McKay 1992). Stops after `iterations`, when no source point moves more
    than `tolerance` in an iteration, or when an iteration lowers the inliers' RMSE by less than
    `rmse_tolerance` (both in target units).

    Args:
        source_points: [N, 3] points to align (e.g. predicted face-region vertices).
        target_vertices: [V, 3] target mesh (e.g. the scan, mm); unused when `search` is given.
        target_triangles: [T, 3] target triangles; unused when `search` is given.
        init: initial (R, t, s); identity when None.
        iterations: maximum number of iterations.
        with_scale: estimate a similarity (uniform scale) instead of a rigid transform.
        method: 'point_to_plane' (fast convergence) or 'point_to_point'.
        outlier_factor: reject matches farther than this multiple of the median; None: off.
        trim_fraction: fraction in (0, 1] of the closest matches kept per iteration.
        max_distance: optional absolute rejection distance.
        reject_boundary: drop matches on the target's open boundary.
        tolerance: convergence threshold on the largest point displacement.
        rmse_tolerance: convergence threshold on the decrease of the inliers' RMSE.
        search: optional prebuilt `distance.TriangleMeshSearch` of the target.

    Returns:
        `IcpResult(R, t, s, history)`; history[k] = {'iteration', 'rmse_all', 'rmse_inliers',
        'num_inliers', 'max_step', 'step' (the update taken)}, distances measured before the
        k-th update.
    """
    if method not in ('point_to_plane', 'point_to_point'):
        raise ValueError(f'unknown ICP method {method!r}')
    if not 0 < trim_fraction <= 1:
        raise ValueError(f'trim_fraction must be in (0, 1], got {trim_fraction}')
    source = np.asarray(source_points, np.float64)
    search = search or distance.TriangleMeshSearch(target_vertices, target_triangles)
    transform = SimilarityTransform(*init) if init is not None else identity_transform()
    transform = SimilarityTransform(np.asarray(transform.rotation, np.float64),
                                    np.asarray(transform.translation, np.float64),
                                    float(transform.scale))
    history = []
    moved = apply_transform(source, *transform)
    match = search.query(moved, return_barycentrics=True)     # (closest, dist, tri_ids, bary)
    for it in range(iterations):
        closest, dist, tri_ids, bary = match
        keep = np.ones(len(dist), bool)
        if outlier_factor is not None:
            keep &= dist <= outlier_factor * np.median(dist)
        if trim_fraction < 1:
            keep &= dist <= np.quantile(dist, trim_fraction)
        if max_distance is not None:
            keep &= dist <= max_distance
        if reject_boundary:
            keep &= ~search.on_boundary(tri_ids, bary)
        entry = {'iteration': it, 'rmse_all': float(np.sqrt(np.mean(dist ** 2))),
                 'num_inliers': int(keep.sum()), 'max_step': 0.0, 'step': 'none',
                 'rmse_inliers': float(np.sqrt(np.mean(dist[keep] ** 2))) if keep.any() else np.nan}
        history.append(entry)
        if keep.sum() < 6:
            break
        accepted = None
        if method == 'point_to_plane':
            normals = search.triangle_normals[tri_ids[keep]]
            candidate = compose(point_to_plane_step(moved[keep], closest[keep], normals,
                                                    with_scale), transform)
            candidate_moved = apply_transform(source, *candidate)
            candidate_match = search.query(candidate_moved, return_barycentrics=True)
            # Gauss–Newton can overshoot when residuals are large: accept the step only when it
            # lowers the inliers' squared distances, else take the (monotone) Procrustes step.
            if np.mean(candidate_match[1][keep] ** 2) < np.mean(dist[keep] ** 2):
                accepted = candidate, candidate_moved, candidate_match
                entry['step'] = 'point_to_plane'
        if accepted is None:
            candidate = procrustes(source[keep], closest[keep], with_scale)
            candidate_moved = apply_transform(source, *candidate)
            accepted = (candidate, candidate_moved,
                        search.query(candidate_moved, return_barycentrics=True))
            entry['step'] = 'point_to_point'
        transform, new_moved, match = accepted
        entry['max_step'] = float(np.max(np.linalg.norm(new_moved - moved, axis=1)))
        gain = entry['rmse_inliers'] - float(np.sqrt(np.mean(match[1][keep] ** 2)))
        moved = new_moved
        if entry['max_step'] <= tolerance or gain < rmse_tolerance:
            break
    return IcpResult(*transform, history)
