"""Loop subdivision of triangle meshes with boundaries, as a sparse linear operator.

Loop subdivision (Loop 1987) splits every triangle into four and places vertices with fixed
stencils, so one level is a sparse matrix W [V', V] with v' = W·v. Keeping W (not just v') lets a
caller subdivide any per-vertex field the same way: a template and the offsets of every blendshape
built on the coarse mesh stay consistent after subdivision, and symmetry is preserved because the
stencils depend only on the connectivity.

Index layout of the result: the V old ("even") vertices keep their indices 0..V−1 (their positions
move by the smoothing stencil); one new ("odd") vertex per unique edge follows, in the order of
`edges` returned by `unique_edges`.

Stencils: interior even vertex of valence n: (1 − nβ)·v + β·Σ neighbours with Loop's
β = (5/8 − (3/8 + cos(2π/n)/4)²)/n; boundary even vertex: 3/4·v + 1/8·(its two boundary
neighbours); interior odd vertex on edge (a, b) with opposite vertices c, d: 3/8·(a + b) +
1/8·(c + d); boundary odd vertex: (a + b)/2. Boundary curves therefore stay cubic B-splines of
their own control points, so holes (eyes, mouth) stay holes.
"""
import numpy as np
import scipy.sparse


def unique_edges(triangles):
    """Unique undirected edges and, per triangle corner, the edge opposite that corner.

    Args:
        triangles: [T, 3] int.

    Returns:
        edges: [E, 2] int64 with i < j, sorted lexicographically.
        triangle_edges: [T, 3] int64, triangle_edges[t, k] = edge index of the side
            (triangles[t, k], triangles[t, (k + 1) % 3]).
    """
    triangles = np.asarray(triangles, np.int64)
    sides = np.stack([triangles, np.roll(triangles, -1, axis=1)], axis=-1)  # [T, 3, 2]
    sides = np.sort(sides, axis=-1).reshape(-1, 2)
    edges, inverse = np.unique(sides, axis=0, return_inverse=True)
    return edges, inverse.reshape(-1, 3)


def loop_subdivision_matrix(triangles, num_vertices):
    """One level of Loop subdivision as a sparse operator.

    Args:
        triangles: [T, 3] int, consistently oriented manifold triangles (boundaries allowed).
        num_vertices: V, the number of coarse vertices.

    Returns:
        matrix: scipy.sparse.csr_matrix [V + E, V]; fine vertices = matrix @ coarse vertices.
        fine_triangles: [4T, 3] int32, orientation preserved.
        edges: [E, 2] int64, the coarse edge that each odd vertex V + e sits on.

    Raises:
        ValueError: if an edge is shared by more than two triangles.
    """
    triangles = np.asarray(triangles, np.int64)
    edges, triangle_edges = unique_edges(triangles)
    num_edges = len(edges)
    edge_face_count = np.bincount(triangle_edges.reshape(-1), minlength=num_edges)
    if edge_face_count.max() > 2:
        raise ValueError('loop_subdivision_matrix: non-manifold mesh (an edge is shared by '
                         f'{edge_face_count.max()} triangles)')
    # The vertex opposite each triangle side, gathered per edge (1 or 2 of them).
    opposite = triangles[:, [2, 0, 1]].reshape(-1)
    side_edge = triangle_edges.reshape(-1)
    boundary_edge = edge_face_count == 1

    rows, cols, vals = [], [], []

    def add(r, c, v):
        rows.append(np.asarray(r).reshape(-1))
        cols.append(np.asarray(c).reshape(-1))
        vals.append(np.broadcast_to(np.asarray(v, np.float64), np.shape(r)).reshape(-1))

    # Odd vertices.
    odd = num_vertices + np.arange(num_edges)
    end_weight = np.where(boundary_edge, 0.5, 3.0 / 8.0)
    add(odd, edges[:, 0], end_weight)
    add(odd, edges[:, 1], end_weight)
    interior_side = ~boundary_edge[side_edge]
    add(num_vertices + side_edge[interior_side], opposite[interior_side], 1.0 / 8.0)

    # Even vertices.
    neighbours = [[] for _ in range(num_vertices)]
    boundary_neighbours = [[] for _ in range(num_vertices)]
    for (a, b), on_boundary in zip(edges, boundary_edge):
        neighbours[a].append(b)
        neighbours[b].append(a)
        if on_boundary:
            boundary_neighbours[a].append(b)
            boundary_neighbours[b].append(a)
    for v in range(num_vertices):
        ring, border = neighbours[v], boundary_neighbours[v]
        if not ring:
            add([v], [v], 1.0)
        elif border:
            if len(border) == 2:
                add([v, v, v], [v] + border, [0.75, 0.125, 0.125])
            else:  # A vertex where several boundary curves meet: keep it as a corner.
                add([v], [v], 1.0)
        else:
            n = len(ring)
            beta = (5.0 / 8.0 - (3.0 / 8.0 + np.cos(2.0 * np.pi / n) / 4.0) ** 2) / n
            add([v] * (n + 1), [v] + ring, [1.0 - n * beta] + [beta] * n)

    matrix = scipy.sparse.csr_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
        shape=(num_vertices + num_edges, num_vertices))

    a, b, c = triangles.T
    ab, bc, ca = (num_vertices + triangle_edges[:, k] for k in range(3))
    fine_triangles = np.concatenate([
        np.stack([a, ab, ca], 1), np.stack([ab, b, bc], 1),
        np.stack([ca, bc, c], 1), np.stack([ab, bc, ca], 1)]).astype(np.int32)
    return matrix, fine_triangles, edges


def loop_subdivide(triangles, num_vertices, min_vertices):
    """Repeats Loop subdivision until the mesh has at least `min_vertices` vertices.

    Args:
        triangles: [T, 3] int coarse triangles.
        num_vertices: V coarse vertex count.
        min_vertices: target vertex count (0 = no subdivision).

    Returns:
        matrix: scipy.sparse.csr_matrix [V', V] mapping coarse to fine per-vertex values.
        fine_triangles: [T', 3] int32.
    """
    matrix = scipy.sparse.identity(num_vertices, format='csr')
    triangles = np.asarray(triangles, np.int32)
    while matrix.shape[0] < min_vertices:
        level, triangles, _ = loop_subdivision_matrix(triangles, matrix.shape[0])
        matrix = (level @ matrix).tocsr()
    return matrix, triangles
