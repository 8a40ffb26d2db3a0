"""A coarser face asset: quadric decimation of a SourceMesh with everything carried over.

Used for CPU-scale training (docs/cpu_scale.md; docs/face_assets.md "Decimated assets"): the ICT
face area has 9,409 vertices; at ~2,500 the face model, the photometric term and the renderer of the
training step cost a quarter, while the deformation graph (which carries the learned identity) is
unchanged in kind, only sized to the mesh.

How: `fast_simplification` (Garland–Heckbert quadric error metrics) decides which edges collapse,
and we replay its collapse history ourselves so that every coarse vertex IS a vertex of the full
mesh (the collapse keeps one vertex of each cluster at its original position, instead of the
quadric-optimal point the library would move it to). The map from coarse to full mesh is then
exact: coarse vertex i is full vertex `full_vertex_indices[i]` (barycentric weights (1, 0, 0) on a
full triangle). That makes every transfer exact too — template, expression blendshapes, the
open-mouth template, face mask, landmarks (each kept as its cluster's representative, so they
sit exactly where they did; where two landmarks fell into one cluster, the second takes the
nearest free coarse vertex), lip vertex sets — and ground-truth meshes on the full topology
(synthetic data rendered with the full mesh) become coarse ones by indexing. Vertices of the
contour candidate lines are likewise preferred as representatives (after landmarks), and each
line keeps its vertices that survived.
The edges and graph are then built on the coarse mesh like any other asset
(`graph.build_assets`).
"""
import numpy as np

from mofl.facemodel import assets as assets_lib
from mofl.facemodel import mediapipe_correspondence


def _cluster_roots(num_vertices, collapses):
    """Union-find over the collapse history: [V] root vertex of each vertex's cluster.

    Args:
        num_vertices: V of the full mesh.
        collapses: [C, 2] (kept, removed) pairs in the order they happened.
    """
    parent = np.arange(num_vertices)

    def find(i):
        root = i
        while parent[root] != root:
            root = parent[root]
        while parent[i] != root:     # path compression
            parent[i], i = root, parent[i]
        return root

    for kept, removed in np.asarray(collapses, np.int64).reshape(-1, 2):
        a, b = find(int(kept)), find(int(removed))
        if a != b:
            parent[b] = a
    return np.array([find(i) for i in range(num_vertices)])


def _place_landmarks(mesh, full_index, coarse_of_full):
    """[66] coarse vertex of each landmark: the landmark's own vertex where its cluster kept it,
    else (two landmarks collapsed into one cluster) the nearest coarse vertex no other landmark
    uses."""
    full_landmarks = np.asarray(mesh.landmark_indices)
    coarse_vertices = np.asarray(mesh.vertices, np.float64)[full_index]
    landmarks = coarse_of_full[full_landmarks].copy()
    exact = full_index[landmarks] == full_landmarks
    taken = set(landmarks[exact].tolist())
    for i in np.where(~exact)[0]:
        distance = np.linalg.norm(coarse_vertices - mesh.vertices[full_landmarks[i]], axis=1)
        for candidate in np.argsort(distance):
            if int(candidate) not in taken:
                landmarks[i] = candidate
                taken.add(int(candidate))
                break
    return landmarks.astype(np.int32)


def decimate_mesh(mesh, target_vertices, aggressiveness=7.0):
    """Quadric decimation of a SourceMesh to about `target_vertices` vertices.

    Args:
        mesh: assets.SourceMesh (the full mesh).
        target_vertices: wanted vertex count; the result lands within a few percent of it.
        aggressiveness: fast_simplification's `agg` (lower: better quality, slower).

    Returns:
        A SourceMesh whose vertices are a subset of `mesh`'s, with `full_vertex_indices` [V']
        (each coarse vertex's index in `mesh`) and `full_num_vertices` = mesh.num_vertices set,
        and the mediapipe correspondence carried over when `mesh` has one
        (`mediapipe_correspondence.for_decimated`).

    Raises:
        ValueError: naming `target_vertices`, when it is not in [200, the mesh's vertex count).
    """
    import fast_simplification  # pylint: disable=import-outside-toplevel

    num_full = mesh.num_vertices
    target_vertices = int(target_vertices)
    if not 200 <= target_vertices < num_full:
        raise ValueError(f'target_vertices must be in [200, {num_full}) for this '
                         f'{num_full}-vertex mesh, got {target_vertices}')
    triangles = np.asarray(mesh.triangles, np.int32)
    target_triangles = int(round(len(triangles) * target_vertices / num_full))
    _, _, collapses = fast_simplification.simplify(
        np.asarray(mesh.vertices, np.float64), triangles, target_count=target_triangles,
        agg=float(aggressiveness), return_collapses=True)
    roots = _cluster_roots(num_full, collapses)

    # Each cluster is represented by one of its own vertices: a landmark vertex if it holds one
    # (so landmarks stay exactly in place), else a vertex of a contour candidate line if it holds
    # one, else the vertex the collapses kept. The jaw landmarks slide along those lines to the
    # face's outline; with the lines' own vertices kept, a vertex missing from a line moves the
    # outline point along the line (a second-order change of its projection there), whereas a
    # representative beside the line moved it across (on ICT at 2,500 by up to 10 mm: 4–10 px of
    # systematic jaw-landmark error at 128², measured with the true mesh and pose).
    representative = {int(r): int(r) for r in np.unique(roots)}
    landmark_set = {int(v) for v in np.asarray(mesh.landmark_indices)}
    for vertex in np.asarray(mesh.landmark_indices):
        root = int(roots[vertex])
        if representative[root] == root or representative[root] not in landmark_set:
            representative[root] = int(vertex)
    protected = landmark_set | {int(v) for v in np.asarray(mesh.contour_candidates).ravel()
                                if v >= 0}
    for vertex in np.asarray(mesh.contour_candidates).ravel():
        root = int(roots[vertex]) if vertex >= 0 else -1
        if root >= 0 and representative[root] not in protected:
            representative[root] = int(vertex)

    # Triangles of the collapsed mesh: the full triangles on cluster roots, minus the degenerate
    # ones and duplicates (the same connectivity fast_simplification itself returns).
    coarse_triangles = roots[triangles]
    keep = ((coarse_triangles[:, 0] != coarse_triangles[:, 1]) &
            (coarse_triangles[:, 1] != coarse_triangles[:, 2]) &
            (coarse_triangles[:, 2] != coarse_triangles[:, 0]))
    coarse_triangles = coarse_triangles[keep]
    _, first = np.unique(np.sort(coarse_triangles, axis=1), axis=0, return_index=True)
    coarse_triangles = coarse_triangles[np.sort(first)]

    used_roots = np.unique(coarse_triangles)
    full_index = np.array([representative[int(r)] for r in used_roots], np.int32)
    order = np.argsort(full_index)                      # coarse vertices in full-mesh order
    used_roots, full_index = used_roots[order], full_index[order]
    new_index_of_root = np.full(num_full, -1, np.int64)
    new_index_of_root[used_roots] = np.arange(len(used_roots))
    coarse_of_full = new_index_of_root[roots]           # [V] coarse vertex of each full vertex
    coarse_triangles = new_index_of_root[coarse_triangles].astype(np.int32)

    landmarks = _place_landmarks(mesh, full_index, coarse_of_full)
    # A contour candidate line keeps those of its vertices that survived as representatives (in
    # order); a vertex that did not is dropped rather than replaced by a vertex off the line. A
    # line left with none (not seen on ICT or mediapipe) falls back to its vertices' nearest coarse
    # vertices.
    lines = []
    for row in np.asarray(mesh.contour_candidates):
        row = [int(v) for v in row if v >= 0]
        # v survived iff it represents its own cluster
        line = [int(coarse_of_full[v]) for v in row
                if coarse_of_full[v] >= 0 and full_index[coarse_of_full[v]] == v]
        if not line:
            vertices = np.asarray(mesh.vertices, np.float64)
            distance = np.linalg.norm(vertices[row][:, None] - vertices[full_index][None], axis=-1)
            line = [int(i) for i in np.argmin(distance, axis=1)]
        lines.append(list(dict.fromkeys(line)))         # ordered, without repeats
    width = max(len(line) for line in lines)
    contour = np.full((len(lines), width), -1, np.int32)
    for i, line in enumerate(lines):
        contour[i, :len(line)] = line

    def vertex_set(full_vertices):
        mapped = coarse_of_full[np.asarray(full_vertices, np.int64)]
        return np.unique(mapped[mapped >= 0]).astype(np.int32)

    upper, lower = vertex_set(mesh.upper_lip_vertices), vertex_set(mesh.lower_lip_vertices)
    shared = np.intersect1d(upper, lower)
    if shared.size:   # a cluster spanning both lips belongs to neither lip set
        upper, lower = np.setdiff1d(upper, shared), np.setdiff1d(lower, shared)

    coarse = assets_lib.SourceMesh(
        vertices=np.asarray(mesh.vertices, np.float32)[full_index],
        triangles=coarse_triangles,
        face_mask=np.asarray(mesh.face_mask, bool)[full_index],
        landmark_indices=landmarks.astype(np.int32),
        contour_candidates=contour,
        expression_basis=np.asarray(mesh.expression_basis, np.float32)[:, full_index],
        expression_sigma=np.asarray(mesh.expression_sigma, np.float32),
        expression_names=np.asarray(mesh.expression_names),
        skin_color=np.asarray(mesh.skin_color, np.float32),
        open_mouth_vertices=np.asarray(mesh.open_mouth_vertices, np.float32)[full_index],
        upper_lip_vertices=upper.astype(np.int32),
        lower_lip_vertices=lower.astype(np.int32),
        source=mesh.source,
        license=mesh.license,
        full_vertex_indices=full_index,
        full_num_vertices=num_full)
    if mesh.mediapipe_vertices is not None:
        coarse.mediapipe_vertices, coarse.mediapipe_residual_mm = \
            mediapipe_correspondence.for_decimated(mesh, coarse)
    coarse.validate(where=f'decimated {mesh.source} mesh')
    return coarse


def to_asset_topology(full_mesh_arrays, mesh):
    """Full-mesh per-vertex arrays on the asset's (possibly decimated) topology.

    Args:
        full_mesh_arrays: [..., V_full, C] on the full mesh the asset was decimated from (on the
            asset's own mesh when it is not decimated).
        mesh: the asset's SourceMesh.

    Returns:
        The array [..., V, C] on `mesh`'s vertices (unchanged for a full asset).

    Raises:
        ValueError: when the arrays' vertex count matches neither mesh.
    """
    array = np.asarray(full_mesh_arrays)
    if mesh.full_vertex_indices is None:
        if array.shape[-2] != mesh.num_vertices:
            raise ValueError(f'per-vertex array with {array.shape[-2]} vertices for a '
                             f'{mesh.num_vertices}-vertex asset')
        return array
    if array.shape[-2] != mesh.full_num_vertices:
        raise ValueError(f'per-vertex array with {array.shape[-2]} vertices; the asset was '
                         f'decimated from a {mesh.full_num_vertices}-vertex mesh')
    return np.take(array, mesh.full_vertex_indices, axis=-2)


def full_vertex_ids(asset_vertex_ids, mesh):
    """The full-mesh vertex of each asset vertex in `asset_vertex_ids` (a vertex of the asset
    is one of the full mesh's, `to_asset_topology`'s inverse direction).

    Args:
        asset_vertex_ids: [K] int vertex indices of the asset's mesh.
        mesh: the asset's SourceMesh.

    Returns:
        [K] int32 indices into the full mesh the asset was decimated from (the same indices for
        a full asset).

    Raises:
        ValueError: for an index that is not a vertex of the asset.
    """
    ids = np.asarray(asset_vertex_ids, np.int64).reshape(-1)
    if ids.size and (ids.min() < 0 or ids.max() >= mesh.num_vertices):
        raise ValueError(f'vertex indices must lie in [0, {mesh.num_vertices}), got '
                         f'[{ids.min()}, {ids.max()}]')
    if mesh.full_vertex_indices is None:
        return ids.astype(np.int32)
    return np.asarray(mesh.full_vertex_indices, np.int32)[ids]
