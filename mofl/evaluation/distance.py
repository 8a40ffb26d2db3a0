"""Exact closest points on a triangle mesh for many query points (used by ICP and the RMSE).

The point–triangle closest point follows the Voronoi-region classification of Ericson,
"Real-Time Collision Detection" (2005), §5.1.5, vectorised over (point, triangle) pairs.

Acceleration: triangles are grouped by their bounding radius r_t (largest distance from the
centroid c_t to a corner), one `scipy.spatial.cKDTree` over the centroids per group. For a query
p, an upper bound U(p) on its distance to the mesh comes from the exact distance to the triangles
with the `num_seed` nearest centroids. Every triangle t satisfies dist(p, t) ≥ |p − c_t| − r_t, so
only triangles with |p − c_t| ≤ U(p) + r_max(group) can be closer; those are gathered per group
(a k-nearest query, falling back to a ball query for points with many candidates), pruned with
the per-triangle bound |p − c_t| − r_t ≤ U(p), and tested exactly. The result is exact (not an
approximation); grouping keeps a few long sliver triangles at scan borders from inflating the
search radius of every query.
"""
import itertools

import numpy as np
from scipy import spatial

# Pairs evaluated per vectorised block: bounds the temporary memory to ~ a few hundred MB.
_PAIRS_PER_BLOCK = 1 << 20


def _dot(a, b):
    return np.einsum('ij,ij->i', a, b)


def closest_points_on_triangles(points, a, b, c):
    """Closest point on each triangle (a, b, c) to the matching point (Ericson §5.1.5).

    Args:
        points: [P, 3] float64 query points.
        a, b, c: [P, 3] float64 triangle corners (one triangle per query).

    Returns:
        (closest [P, 3], barycentrics [P, 3]) with closest = u·a + v·b + w·c, (u, v, w) ≥ 0.
    """
    points, a, b, c = (np.asarray(x, np.float64) for x in (points, a, b, c))
    n = len(points)
    bary = np.full((n, 3), np.nan)
    todo = np.ones(n, bool)

    def assign(mask, u, v, w):
        nonlocal todo
        sel = todo & mask
        bary[sel, 0], bary[sel, 1], bary[sel, 2] = u[sel], v[sel], w[sel]
        todo = todo & ~mask

    ones, zeros = np.ones(n), np.zeros(n)
    ab, ac = b - a, c - a
    ap, bp, cp = points - a, points - b, points - c
    d1, d2 = _dot(ab, ap), _dot(ac, ap)
    d3, d4 = _dot(ab, bp), _dot(ac, bp)
    d5, d6 = _dot(ab, cp), _dot(ac, cp)
    vc = d1 * d4 - d3 * d2
    vb = d5 * d2 - d1 * d6
    va = d3 * d6 - d5 * d4
    # Degenerate (zero-area, relative to the edge lengths) triangles are handled as their
    # three edges below; Ericson's region tests are ambiguous for them.
    cross = np.cross(ab, ac)
    degenerate = _dot(cross, cross) <= 1e-20 * _dot(ab, ab) * _dot(ac, ac)
    todo &= ~degenerate
    with np.errstate(divide='ignore', invalid='ignore'):
        # Vertex regions and edge regions in Ericson's order; the first matching test wins.
        assign((d1 <= 0) & (d2 <= 0), ones, zeros, zeros)                     # corner a
        assign((d3 >= 0) & (d4 <= d3), zeros, ones, zeros)                    # corner b
        t_ab = d1 / (d1 - d3)
        assign((vc <= 0) & (d1 >= 0) & (d3 <= 0), 1 - t_ab, t_ab, zeros)      # edge ab
        assign((d6 >= 0) & (d5 <= d6), zeros, zeros, ones)                    # corner c
        t_ac = d2 / (d2 - d6)
        assign((vb <= 0) & (d2 >= 0) & (d6 <= 0), 1 - t_ac, zeros, t_ac)      # edge ac
        t_bc = (d4 - d3) / ((d4 - d3) + (d5 - d6))
        assign((va <= 0) & (d4 - d3 >= 0) & (d5 - d6 >= 0), zeros, 1 - t_bc, t_bc)  # edge bc
        denom = va + vb + vc
        assign(np.ones(n, bool), va / denom, vb / denom, vc / denom)          # interior
    bad = degenerate | ~np.all(np.isfinite(bary), axis=1)
    if np.any(bad):
        bary[bad] = _closest_on_edges(points[bad], a[bad], b[bad], c[bad])
    closest = bary[:, :1] * a + bary[:, 1:2] * b + bary[:, 2:] * c
    return closest, bary


def _closest_on_edges(points, a, b, c):
    """Barycentrics [P, 3] of the closest point on the boundary segments of (a, b, c)."""
    best_d = np.full(len(points), np.inf)
    best = np.zeros((len(points), 3))
    for i, j in ((0, 1), (0, 2), (1, 2)):
        p0, p1 = (a, b, c)[i], (a, b, c)[j]
        seg = p1 - p0
        length2 = _dot(seg, seg)
        with np.errstate(divide='ignore', invalid='ignore'):
            t = np.where(length2 > 0, _dot(points - p0, seg) / length2, 0.0)
        t = np.clip(np.nan_to_num(t), 0.0, 1.0)
        d = np.linalg.norm(p0 + t[:, None] * seg - points, axis=1)
        better = d < best_d
        best_d[better] = d[better]
        weights = np.zeros((len(points), 3))
        weights[:, i], weights[:, j] = 1 - t, t
        best[better] = weights[better]
    return best


def _check_mesh(vertices, triangles):
    vertices = np.asarray(vertices, np.float64)
    triangles = np.asarray(triangles, np.int64)
    if vertices.ndim != 2 or vertices.shape[1] != 3:
        raise ValueError(f'vertices must be [V, 3], got {vertices.shape}')
    if triangles.ndim != 2 or triangles.shape[1] != 3 or len(triangles) == 0:
        raise ValueError(f'triangles must be a non-empty [T, 3], got {triangles.shape}')
    if triangles.min() < 0 or triangles.max() >= len(vertices):
        raise ValueError('triangle index out of range')
    return vertices, triangles


def _neighbours_within(tree, points, radius, k=32):
    """All (point, tree item) pairs with |point − item| ≤ radius[point].

    A fixed-size k-nearest query (no Python lists) serves the points with fewer than k items
    in their ball; the rest (e.g. points far from the surface) take a ball query.

    Returns:
        (point_ids [P] int64, item_ids [P] int64).
    """
    k = min(k, tree.n)
    dist, idx = tree.query(points, k=k, distance_upper_bound=float(radius.max()))
    dist, idx = dist.reshape(len(points), -1), idx.reshape(len(points), -1)
    inside = dist <= radius[:, None]
    complete = ~inside[:, -1] | (k >= tree.n)
    rows, cols = np.nonzero(inside & complete[:, None])
    point_ids, item_ids = [rows], [idx[rows, cols]]
    rest = np.nonzero(~complete)[0]
    if len(rest):
        lists = tree.query_ball_point(points[rest], radius[rest], return_sorted=False)
        counts = np.fromiter(map(len, lists), np.int64, count=len(rest))
        point_ids.append(np.repeat(rest, counts))
        item_ids.append(np.fromiter(itertools.chain.from_iterable(lists), np.int64,
                                    count=int(counts.sum())))
    return np.concatenate(point_ids).astype(np.int64), np.concatenate(item_ids).astype(np.int64)


class TriangleMeshSearch:
    """Reusable exact closest-point search structure over one triangle mesh (e.g. a scan).

    Build once per scan, then call `query` for every ICP iteration.

    Args:
        vertices: [V, 3] mesh vertices.
        triangles: [T, 3] int vertex indices.
        num_seed: triangles (nearest centroids) whose exact distance seeds the bound U(p).
    """

    def __init__(self, vertices, triangles, num_seed=4):
        self.vertices, self.triangles = _check_mesh(vertices, triangles)
        self.num_seed = int(max(1, min(num_seed, len(self.triangles))))
        corners = self.vertices[self.triangles]                       # [T, 3, 3]
        self.centroids = corners.mean(axis=1)
        radii = np.linalg.norm(corners - self.centroids[:, None], axis=2).max(axis=1)
        self.radii = radii
        normals = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
        length = np.linalg.norm(normals, axis=1, keepdims=True)
        # [T, 3] unit normals (right-hand rule); zero for degenerate triangles.
        self.triangle_normals = np.divide(normals, length, out=np.zeros_like(normals),
                                          where=length > 0)
        self.centroid_tree = spatial.cKDTree(self.centroids)
        # Radius classes: (0, 2·median], then doublings; each class has its own tree.
        base = max(2.0 * float(np.median(radii)), 1e-12)
        level = np.maximum(0, np.ceil(np.log2(np.maximum(radii, 1e-300) / base))).astype(int)
        self.groups = []
        for lv in np.unique(level):
            ids = np.nonzero(level == lv)[0]
            self.groups.append((ids, float(radii[ids].max()), spatial.cKDTree(self.centroids[ids])))

    def _boundary(self):
        """(sorted boundary edge keys, [V] bool boundary vertices), computed once."""
        if not hasattr(self, '_boundary_cache'):
            nv = len(self.vertices)
            t = self.triangles
            edges = np.concatenate([t[:, [0, 1]], t[:, [1, 2]], t[:, [2, 0]]])
            keys, counts = np.unique(np.sort(edges, axis=1) @ np.array([nv, 1]),
                                     return_counts=True)
            boundary_keys = keys[counts == 1]       # an edge used by one triangle only
            boundary_vertices = np.zeros(nv, bool)
            boundary_vertices[boundary_keys // nv] = True
            boundary_vertices[boundary_keys % nv] = True
            self._boundary_cache = (boundary_keys, boundary_vertices)
        return self._boundary_cache

    def on_boundary(self, triangle_ids, barycentrics, tolerance=1e-9):
        """Whether each closest point lies on the mesh's open boundary.

        True when the point sits on a boundary edge (an edge of one triangle only) or at a
        boundary vertex: for a scan, the query lies beyond the scanned surface.

        Args:
            triangle_ids: [N] triangle of each closest point (from `query`).
            barycentrics: [N, 3] its barycentrics (from `query(..., return_barycentrics=True)`).
            tolerance: a barycentric coordinate ≤ tolerance counts as zero.

        Returns:
            [N] bool.
        """
        boundary_keys, boundary_vertices = self._boundary()
        nv = len(self.vertices)
        corners = self.triangles[np.asarray(triangle_ids)]         # [N, 3]
        zero = np.asarray(barycentrics) <= tolerance
        on = np.zeros(len(corners), bool)
        for k, (i, j) in enumerate(((1, 2), (0, 2), (0, 1))):
            # Zero weight on corner k: the point lies on the opposite edge (i, j).
            keys = np.sort(corners[:, [i, j]], axis=1) @ np.array([nv, 1])
            on |= zero[:, k] & np.isin(keys, boundary_keys, assume_unique=False)
        # Two zero weights: the point is the remaining corner.
        corner = corners[np.arange(len(corners)), np.argmax(~zero, axis=1)]
        on |= (zero.sum(axis=1) >= 2) & boundary_vertices[corner]
        return on

    def _exact(self, point_ids, tri_ids, points):
        """Exact distances for (point, triangle) pairs, blockwise; returns (dist, closest, bary)."""
        dist = np.empty(len(point_ids))
        closest = np.empty((len(point_ids), 3))
        bary = np.empty((len(point_ids), 3))
        for s in range(0, len(point_ids), _PAIRS_PER_BLOCK):
            sl = slice(s, s + _PAIRS_PER_BLOCK)
            corners = self.vertices[self.triangles[tri_ids[sl]]]
            q = points[point_ids[sl]]
            cp, bc = closest_points_on_triangles(q, corners[:, 0], corners[:, 1], corners[:, 2])
            closest[sl], bary[sl] = cp, bc
            dist[sl] = np.linalg.norm(cp - q, axis=1)
        return dist, closest, bary

    def query(self, points, return_barycentrics=False):
        """Exact closest points on the mesh.

        Args:
            points: [N, 3] query points.
            return_barycentrics: also return the closest point's barycentrics in its triangle.

        Returns:
            closest [N, 3] float64, distance [N] float64, triangle_id [N] int32
            (and barycentrics [N, 3] when asked). Ties go to the lowest triangle id.
        """
        points = np.asarray(points, np.float64)
        if points.ndim != 2 or points.shape[1] != 3:
            raise ValueError(f'points must be [N, 3], got {points.shape}')
        n = len(points)
        if n == 0:
            out = (np.zeros((0, 3)), np.zeros(0), np.zeros(0, np.int32))
            return out + (np.zeros((0, 3)),) if return_barycentrics else out
        # Seed: exact distance to the triangles with the nearest centroids gives U(p).
        _, seed = self.centroid_tree.query(points, k=self.num_seed)
        seed = seed.reshape(n, -1)
        pid = np.repeat(np.arange(n), seed.shape[1])
        upper = np.full(n, np.inf)
        d, _, _ = self._exact(pid, seed.ravel(), points)
        np.minimum.at(upper, pid, d)
        # Candidates: every triangle that could beat U(p), per radius class.
        cand_p, cand_t = [pid], [seed.ravel()]
        for ids, r_max, tree in self.groups:
            radius = upper + r_max * (1 + 1e-9) + 1e-12
            p_ids, t_ids = _neighbours_within(tree, points, radius)
            cand_p.append(p_ids)
            cand_t.append(ids[t_ids])
        cand_p = np.concatenate(cand_p)
        cand_t = np.concatenate(cand_t)
        # Cheap per-triangle bound before the exact test: keep |p − c_t| − r_t ≤ U(p).
        gap = np.linalg.norm(points[cand_p] - self.centroids[cand_t], axis=1) - self.radii[cand_t]
        keep = gap <= upper[cand_p] * (1 + 1e-9) + 1e-12
        cand_p, cand_t = cand_p[keep], cand_t[keep]
        dist, closest, bary = self._exact(cand_p, cand_t, points)
        # Per point: smallest distance, ties broken by the lowest triangle id.
        order = np.lexsort((cand_t, dist, cand_p))
        first = order[np.r_[True, cand_p[order][1:] != cand_p[order][:-1]]]
        out = (closest[first], dist[first], cand_t[first].astype(np.int32))
        if return_barycentrics:
            out = out + (bary[first],)
        return out


def closest_points_on_mesh(points, vertices, triangles, return_barycentrics=False):
    """Exact closest point on a triangle mesh's surface for every query point.

    Args:
        points: [N, 3] query points.
        vertices: [V, 3] mesh vertices.
        triangles: [T, 3] int vertex indices.
        return_barycentrics: also return [N, 3] barycentrics of the closest point.

    Returns:
        closest [N, 3] float64, distance [N] float64, triangle_id [N] int32 (and barycentrics).
    """
    return TriangleMeshSearch(vertices, triangles).query(points, return_barycentrics)
