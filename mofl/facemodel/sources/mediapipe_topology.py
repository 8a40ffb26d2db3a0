"""Connectivity of mediapipe's 468-point FaceMesh: triangles, holes, named rings, mirror pairs.

mediapipe ships the FaceMesh tessellation only as an edge list
(`face_mesh_connections.FACEMESH_TESSELATION`, 1322 undirected edges). The triangles are its
3-cliques, less two "separating" cliques beside the nostrils (49–64–129 and 279–294–358) whose
three edges each border two real triangles already. The result is 852 triangles: a disc with
three holes (mouth, two eyes), Euler characteristic V − E + F = 468 − 1322 + 852 = −2 = 2 − 4
boundary loops. (mediapipe's canonical OBJ has 898 triangles because it also fills the two
16-gon eyes (2 × 14 triangles) and the 20-gon mouth (18); we keep those open.)

Side names follow the subject: "right" = subject's right = image left = −x in model space.
"""
import collections

import numpy as np

NUM_POINTS = 468

# Eye lid margins, outer corner → inner corner, without the corners (7 points each, so that the
# upper and lower lids correspond point by point; eyeBlink moves one onto the other).
RIGHT_EYE_CORNERS = (33, 133)  # (outer, inner)
RIGHT_EYE_UPPER = (246, 161, 160, 159, 158, 157, 173)
RIGHT_EYE_LOWER = (7, 163, 144, 145, 153, 154, 155)
LEFT_EYE_CORNERS = (263, 362)
LEFT_EYE_UPPER = (466, 388, 387, 386, 385, 384, 398)
LEFT_EYE_LOWER = (249, 390, 373, 374, 380, 381, 382)

# Lip rings, subject's right corner → left corner, without the corners (9 points each).
MOUTH_OUTER_CORNERS = (61, 291)
MOUTH_INNER_CORNERS = (78, 308)
UPPER_LIP_OUTER = (185, 40, 39, 37, 0, 267, 269, 270, 409)
LOWER_LIP_OUTER = (146, 91, 181, 84, 17, 314, 405, 321, 375)
UPPER_LIP_INNER = (191, 80, 81, 82, 13, 312, 311, 310, 415)
LOWER_LIP_INNER = (95, 88, 178, 87, 14, 317, 402, 318, 324)


def tessellation_edges():
    """[1322, 2] int64 unique undirected FaceMesh edges (i < j)."""
    from mediapipe.python.solutions import face_mesh_connections  # Slow import; only here.
    edges = np.array(sorted(face_mesh_connections.FACEMESH_TESSELATION), np.int64)
    return np.unique(np.sort(edges, axis=1), axis=0)


def triangles_from_edges(edges, num_vertices=NUM_POINTS):
    """Recovers the faces of a triangulated surface given only its edges.

    Every 3-clique of the edge graph is a candidate; cliques whose three edges all lie in three
    candidates are separating triangles (not faces) and are dropped.

    Args:
        edges: [E, 2] int undirected edges.
        num_vertices: V.

    Returns:
        [T, 3] int32 triangles (unoriented; sorted vertex order).

    Raises:
        ValueError: if some edge still borders more than two triangles.
    """
    neighbours = [set() for _ in range(num_vertices)]
    for a, b in edges:
        neighbours[a].add(int(b))
        neighbours[b].add(int(a))
    cliques = set()
    for a, b in edges:
        for c in neighbours[a] & neighbours[b]:
            cliques.add(tuple(sorted((int(a), int(b), c))))
    cliques = sorted(cliques)
    count = collections.Counter()
    for t in cliques:
        count.update([(t[0], t[1]), (t[1], t[2]), (t[0], t[2])])
    faces = [t for t in cliques
             if not all(count[e] >= 3 for e in ((t[0], t[1]), (t[1], t[2]), (t[0], t[2])))]
    count = collections.Counter()
    for t in faces:
        count.update([(t[0], t[1]), (t[1], t[2]), (t[0], t[2])])
    if max(count.values()) > 2:
        raise ValueError('triangles_from_edges: edge graph is not a manifold triangulation')
    return np.array(faces, np.int32)


def orient_triangles(triangles, vertices):
    """Orients a connected manifold triangle list consistently, normals towards +z on average.

    Args:
        triangles: [T, 3] int.
        vertices: [V, 3] float model-space positions (z towards the viewer).

    Returns:
        [T, 3] int32 counter-clockwise seen from +z (outside).
    """
    tris = np.array(triangles, np.int32)
    by_edge = collections.defaultdict(list)
    for t, tri in enumerate(tris):
        for k in range(3):
            by_edge[frozenset((tri[k], tri[(k + 1) % 3]))].append(t)
    done = np.zeros(len(tris), bool)
    for seed in range(len(tris)):
        if done[seed]:
            continue
        done[seed] = True
        queue = collections.deque([seed])
        while queue:
            t = queue.popleft()
            for k in range(3):
                u, v = tris[t, k], tris[t, (k + 1) % 3]
                for other in by_edge[frozenset((u, v))]:
                    if other == t or done[other]:
                        continue
                    o = list(tris[other])
                    # Consistent neighbours traverse the shared edge in opposite directions.
                    if any(o[j] == u and o[(j + 1) % 3] == v for j in range(3)):
                        tris[other] = tris[other, ::-1]
                    done[other] = True
                    queue.append(other)
    if triangle_normals(vertices, tris)[:, 2].sum() < 0:
        tris = tris[:, ::-1]
    return np.ascontiguousarray(tris)


def triangle_normals(vertices, triangles):
    """[T, 3] unnormalised normals (cross products) of [T, 3] triangles over [V, 3] vertices."""
    p = np.asarray(vertices, np.float64)[triangles]
    return np.cross(p[:, 1] - p[:, 0], p[:, 2] - p[:, 0])


def boundary_loops(triangles):
    """Boundary loops of an oriented manifold mesh.

    Args:
        triangles: [T, 3] int, consistently oriented.

    Returns:
        list of int arrays, each the vertices of one closed boundary loop in order.
    """
    directed = set()
    for tri in triangles:
        for k in range(3):
            directed.add((int(tri[k]), int(tri[(k + 1) % 3])))
    nxt = {a: b for a, b in directed if (b, a) not in directed}
    loops, seen = [], set()
    for start in sorted(nxt):
        if start in seen:
            continue
        loop, v = [], start
        while v not in seen:
            seen.add(v)
            loop.append(v)
            v = nxt[v]
        loops.append(np.array(loop))
    return loops


def mirror_permutation(vertices, max_distance):
    """Left/right partner of every vertex of an (almost) x-symmetric point set.

    Reflects x → −x and pairs the reflected points with the original ones by a minimum-total-
    distance matching (Hungarian method), so that the result is a permutation even where points
    crowd (e.g. the mouth corners of an open smile, where plain nearest neighbours mix up 78/62
    and 308/292). A pair is "clean" when it is also a mutual nearest-neighbour pair within
    `max_distance`.

    Args:
        vertices: [V, 3] float, symmetry plane x = 0.
        max_distance: largest reflected-neighbour distance accepted as a clean match.

    Returns:
        permutation: [V] int32 (p[i] = partner of i).
        num_clean: number of points whose pair is clean.
    """
    import scipy.optimize
    import scipy.spatial

    v = np.asarray(vertices, np.float64)
    reflected = v * np.array([-1.0, 1.0, 1.0])
    cost = np.linalg.norm(reflected[:, None] - v[None], axis=-1)
    rows, cols = scipy.optimize.linear_sum_assignment(cost)
    permutation = np.empty(len(v), np.int64)
    permutation[rows] = cols
    distance, nearest = scipy.spatial.cKDTree(v).query(reflected)
    clean = ((nearest == permutation) & (nearest[nearest] == np.arange(len(v))) &
             (distance <= max_distance))
    return permutation.astype(np.int32), int(clean.sum())


def symmetric_triangles(triangles, vertices, mirror):
    """Makes a triangulation exactly mirror-symmetric.

    FaceMesh's tessellation is symmetric except for a few flipped quad diagonals. Keeps the
    triangles on the subject's right (centroid x < 0) and the ones on the symmetry plane, and
    replaces the left half by the mirror images of the right half.

    Args:
        triangles: [T, 3] int oriented triangles.
        vertices: [V, 3] float, exactly symmetric under `mirror`.
        mirror: [V] int mirror permutation.

    Returns:
        [T', 3] int32 triangles, mapped onto themselves by `mirror` (orientation kept).
    """
    triangles = np.asarray(triangles)
    centroid_x = np.asarray(vertices)[triangles].mean(axis=1)[:, 0]
    scale = np.abs(np.asarray(vertices)[:, 0]).max()
    right = triangles[centroid_x < -1e-9 * scale]
    middle = triangles[np.abs(centroid_x) <= 1e-9 * scale]
    # A reflection reverses orientation, so reverse the corner order of mirrored triangles.
    mirrored = np.asarray(mirror)[right][:, ::-1]
    return np.concatenate([right, middle, mirrored]).astype(np.int32)
