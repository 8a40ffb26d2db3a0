"""The coarse deformation graph G and its skinning matrix S (paper §3.2, eq. 1–2).

Nodes are chosen by farthest-point sampling of the template with *geodesic* distances (shortest
paths along mesh edges) measured on the slightly open-mouth template. Vertices are bound to their
k geodesically nearest nodes with the embedded-deformation weights of Sumner et al. [56],
w_j ∝ (1 − d_j / d_{k+1})². Geodesic distances follow the surface, so the upper and lower lip,
which touch in space but not on the surface, are far apart: the distance between them runs around
the mouth corner. Near the corners that detour is shorter than the node spacing (≈ 16 mm with 521
nodes on the ICT face area), so the geodesics additionally may not cross the line between the lips
for `lip_cut_extension` mm beyond each corner. That is our reading of the paper's "slightly open
mouth" (§3.2): the graph must not tie the lips, or the smoothness prior (eq. 10) glues them.
"""
import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import dijkstra

from mofl.facemodel import assets as assets_lib


def _edge_graph(vertices, edges):
    """Symmetric sparse matrix of edge lengths."""
    lengths = np.linalg.norm(vertices[edges[:, 0]] - vertices[edges[:, 1]], axis=1)
    lengths = np.maximum(lengths, 1e-6)  # csgraph treats explicit zeros as missing edges
    n = len(vertices)
    rows = np.concatenate([edges[:, 0], edges[:, 1]])
    cols = np.concatenate([edges[:, 1], edges[:, 0]])
    return coo_matrix((np.concatenate([lengths, lengths]), (rows, cols)), shape=(n, n)).tocsr()


def lip_cut_edges(vertices, edges, landmarks66, extension):
    """Mesh edges that cross the line between the lips near the mouth.

    The separating line runs in the frontal (x, y) view through the mouth corners (landmarks 48
    and 54) and the midpoints of the inner-lip landmark pairs (66-layout 60/65, 61/64, 62/63),
    extended horizontally by `extension` mm beyond each corner.

    Args:
        vertices: [V, 3].
        edges: [E, 2].
        landmarks66: [66] landmark vertex indices.
        extension: mm beyond each mouth corner.

    Returns:
        [E] bool, True for edges to drop from the geodesic graph.
    """
    lm = vertices[landmarks66]
    inner = 0.5 * (lm[[60, 61, 62]] + lm[[65, 64, 63]])
    line = np.concatenate([lm[[48]], inner, lm[[54]]])[:, :2]
    line = line[np.argsort(line[:, 0])]
    x0, x1 = line[0, 0] - extension, line[-1, 0] + extension
    mouth_height = np.ptp(lm[48:60, 1])
    xy = vertices[:, :2]
    side = xy[:, 1] - np.interp(xy[:, 0], line[:, 0], line[:, 1])
    near = (xy[:, 0] > x0) & (xy[:, 0] < x1) & (np.abs(side) < 2.0 * mouth_height)
    a, b = edges[:, 0], edges[:, 1]
    return near[a] & near[b] & (np.sign(side[a]) != np.sign(side[b]))


def farthest_point_sampling(vertices, edges, num_nodes, start_vertex):
    """Geodesic farthest-point sampling.

    Args:
        vertices: [V, 3] positions giving the edge lengths.
        edges: [E, 2] mesh edges.
        num_nodes: G, how many vertices to pick (≤ V).
        start_vertex: the first pick.

    Returns:
        (node_vertex [G] int32, distances [G, V] float64 geodesic distance of every vertex to
        every node; inf where not connected).
    """
    if num_nodes > len(vertices):
        raise ValueError(f'cannot place {num_nodes} graph nodes on {len(vertices)} vertices')
    graph = _edge_graph(vertices, edges)
    picks = [int(start_vertex)]
    distances = [dijkstra(graph, indices=picks[0])]
    nearest = distances[0].copy()
    for _ in range(num_nodes - 1):
        # Unreachable vertices (other connected components) have inf distance and are taken first.
        nxt = int(np.argmax(nearest))
        picks.append(nxt)
        d = dijkstra(graph, indices=nxt)
        distances.append(d)
        np.minimum(nearest, d, out=nearest)
    return np.asarray(picks, np.int32), np.stack(distances)


def skinning_weights(node_distances, k):
    """Binds each vertex to its k nearest nodes (Sumner et al.'s weights).

    Args:
        node_distances: [G, V] geodesic distances.
        k: nodes per vertex.

    Returns:
        (indices [V, k] int32, weights [V, k] float32 with rows summing to 1).
    """
    d = node_distances.T  # [V, G]
    order = np.argsort(d, axis=1)[:, :k + 1]
    dk = np.take_along_axis(d, order, axis=1)
    # Normalise by the (k+1)-th distance; where it is unreachable use the farthest reachable one.
    finite = np.where(np.isfinite(dk), dk, -np.inf)
    dmax = np.where(np.isfinite(dk[:, k]), dk[:, k], finite.max(axis=1) * 1.5 + 1e-6)
    w = np.clip(1.0 - dk[:, :k] / np.maximum(dmax[:, None], 1e-9), 0.0, None) ** 2
    w = np.where(np.isfinite(dk[:, :k]), w, 0.0)
    zero = w.sum(axis=1) <= 0
    w[zero, 0] = 1.0  # a vertex sitting at the only reachable node
    w /= w.sum(axis=1, keepdims=True)
    return order[:, :k].astype(np.int32), w.astype(np.float32)


def node_neighbours(skin_indices, skin_weights):
    """Node pairs that share a skinned vertex (N_i of eq. 10).

    Returns:
        [E, 2] int32 edges with i < j, unique and sorted.
    """
    pairs = []
    k = skin_indices.shape[1]
    bound = skin_weights > 0
    for a in range(k):
        for b in range(a + 1, k):
            ok = bound[:, a] & bound[:, b]
            pairs.append(np.stack([skin_indices[ok, a], skin_indices[ok, b]], axis=1))
    pairs = np.sort(np.concatenate(pairs), axis=1)
    pairs = pairs[pairs[:, 0] != pairs[:, 1]]
    return np.unique(pairs, axis=0).astype(np.int32)


def build_graph(mesh, num_nodes=521, k=4, mesh_edges=None, lip_cut_extension=15.0):
    """Builds the deformation graph of a SourceMesh.

    Args:
        mesh: assets.SourceMesh; nodes are sampled on `mesh.open_mouth_vertices` (§3.2).
        num_nodes: |G| (paper: 521).
        k: nodes per vertex in the skinning.
        mesh_edges: optional precomputed [E, 2] mesh edges.
        lip_cut_extension: mm the lip separation reaches beyond the mouth corners.

    Returns:
        assets.DeformationGraph with node positions ḡ on the (closed-mouth) template v̄.
    """
    if mesh_edges is None:
        mesh_edges = assets_lib.mesh_edges_from_triangles(mesh.triangles)
    open_mouth = mesh.open_mouth_vertices.astype(np.float64)
    # Start at the vertex nearest the face centroid so sampling is deterministic.
    centroid = open_mouth[mesh.face_mask].mean(axis=0)
    start = int(np.argmin(np.linalg.norm(open_mouth - centroid, axis=1)))
    cut = lip_cut_edges(open_mouth, mesh_edges, mesh.landmark_indices, lip_cut_extension)
    node_vertex, distances = farthest_point_sampling(open_mouth, mesh_edges[~cut], num_nodes,
                                                     start)
    skin_indices, skin_weights = skinning_weights(distances, k)
    return assets_lib.DeformationGraph(
        nodes=mesh.vertices[node_vertex].astype(np.float32),
        node_vertex=node_vertex,
        skin_indices=skin_indices,
        skin_weights=skin_weights,
        edges=node_neighbours(skin_indices, skin_weights))


def build_assets(mesh, num_nodes=521, k=4, lip_cut_extension=15.0):
    """SourceMesh → FaceAssets (graph + mesh edges)."""
    mesh.validate(where=f'{mesh.source} source')
    edges = assets_lib.mesh_edges_from_triangles(mesh.triangles)
    graph = build_graph(mesh, num_nodes=num_nodes, k=k, mesh_edges=edges,
                        lip_cut_extension=lip_cut_extension)
    return assets_lib.FaceAssets(mesh=mesh, graph=graph, mesh_edges=edges)


def lip_node_sets(graph, upper_lip, lower_lip):
    """The nodes that the upper / lower lip vertices are bound to (weight > 0)."""
    def nodes_of(vids):
        idx = graph.skin_indices[vids]
        return set(idx[graph.skin_weights[vids] > 0].tolist())
    return nodes_of(upper_lip), nodes_of(lower_lip)
