"""Mesh geometry helpers shared by the asset sources and the synthetic data: lip split, contour
candidate lines, distances to polylines, vertex normals (NumPy)."""
import numpy as np


def split_lips(vertices, triangles, landmarks68, jaw_open_offsets, centre_fraction=0.6):
    """Finds the central upper- and lower-lip vertices of a template.

    The lip region is the box spanned by the outer-lip landmarks (iBUG 48..59), limited to the
    central `centre_fraction` of the mouth's half-width. Inside it, the jaw-open blendshape tells
    the lips apart: lower-lip vertices follow the jaw, upper-lip vertices stay.

    Args:
        vertices: [V, 3] template (mm).
        triangles: [T, 3] (unused, kept for a uniform source API).
        landmarks68: [68] vertex indices, iBUG order.
        jaw_open_offsets: [V, 3] jaw-open blendshape offsets.
        centre_fraction: fraction of the mouth half-width kept around its centre.

    Returns:
        (upper [N_u] int32, lower [N_l] int32) vertex indices.
    """
    del triangles
    lips = vertices[landmarks68[48:60]]
    left, right = vertices[landmarks68[48]], vertices[landmarks68[54]]
    centre_x = 0.5 * (left[0] + right[0])
    half_width = 0.5 * abs(right[0] - left[0])
    margin = 3.0  # mm around the landmark box
    in_box = ((np.abs(vertices[:, 0] - centre_x) < centre_fraction * half_width) &
              (vertices[:, 1] > lips[:, 1].min() - margin) &
              (vertices[:, 1] < lips[:, 1].max() + margin) &
              (vertices[:, 2] > lips[:, 2].min() - 2 * margin))
    motion = np.linalg.norm(jaw_open_offsets, axis=1)
    lip_motion = motion[in_box]
    top = lip_motion.max() if lip_motion.size else 0.0
    upper = np.nonzero(in_box & (motion < 0.25 * top))[0].astype(np.int32)
    lower = np.nonzero(in_box & (motion > 0.5 * top))[0].astype(np.int32)
    return upper, lower


def contour_candidate_lines(vertices, contour_vertices, face_mask, num_candidates, band=3.0):
    """Candidate vertex lines for the sliding jaw-contour landmarks (paper §3.5, after [59]).

    Each jaw landmark gets the face-region vertices lying within `band` mm of the frontal-view
    (x, y) line through the landmark that points away from the face centre (on the mid line,
    level with the highest jaw landmark), from half-way to the centre out to the mesh border, sorted outwards and
    subsampled to `num_candidates`. As the head turns, the silhouette moves along these lines.

    Args:
        vertices: [V, 3] template (mm).
        contour_vertices: [17] vertex index of each jaw landmark.
        face_mask: [V] bool, where candidates may lie.
        num_candidates: K, the line length after subsampling.
        band: half-width of the line in mm.

    Returns:
        [17, K] int32, −1 padded; each line contains its landmark's own vertex.
    """
    xy = vertices[:, :2]
    pts = xy[contour_vertices]
    centre = np.array([0.0, pts[:, 1].max()])  # level with the top of the jaw line, on x = 0
    lines = -np.ones((len(contour_vertices), num_candidates), np.int32)
    allowed = np.nonzero(face_mask)[0]
    for j, (vid, p) in enumerate(zip(contour_vertices, pts)):
        direction = p - centre
        radius = np.linalg.norm(direction)
        direction = direction / max(radius, 1e-6)
        rel = xy[allowed] - p
        along = rel @ direction
        across = np.abs(rel @ np.array([-direction[1], direction[0]]))
        sel = allowed[(across < band) & (along > -0.5 * radius)]
        order = sel[np.argsort((xy[sel] - p) @ direction)]
        if order.size > num_candidates:
            keep = np.unique(np.round(np.linspace(0, order.size - 1, num_candidates)).astype(int))
            order = order[keep]
        if vid not in order:
            order = np.concatenate([order[:num_candidates - 1], [vid]])
            order = order[np.argsort((xy[order] - p) @ direction)]
        lines[j, :order.size] = order
    return lines


def contour_outward_directions(vertices, contour_candidates):
    """Model-space outward direction of each jaw landmark's candidate line.

    A line's direction is from its first to its last candidate in the template's frontal (x, y)
    view, with the sign that points away from the centroid of all the lines' candidates (inside
    the U of the jaw line), so lines stored in either order work (`contour_candidate_lines` sorts
    outwards, the mediapipe source inwards). The sliding-landmark rule
    (`mofl.facemodel.contour.select_contour_vertices`) rotates these with the head.

    Args:
        vertices: [V, 3] template (mm).
        contour_candidates: [17, K] int32 lines, −1 padded.

    Returns:
        [17, 3] float32 unit directions with z = 0 (all zero for a line of one candidate, which
        has nothing to choose from).
    """
    vertices = np.asarray(vertices, np.float32)
    candidates = np.asarray(contour_candidates)
    centre = vertices[candidates[candidates >= 0], :2].mean(axis=0)
    directions = np.zeros([len(candidates), 3], np.float32)
    for j, line in enumerate(candidates):
        line = line[line >= 0]
        offset = vertices[line[-1], :2] - vertices[line[0], :2]
        length = float(np.linalg.norm(offset))
        if line.size < 2 or length == 0:
            continue
        direction = offset / length
        if np.dot(vertices[line, :2].mean(axis=0) - centre, direction) < 0:
            direction = -direction
        directions[j, :2] = direction
    return directions


def distance_to_polyline(points, polyline, closed=False):
    """Distance of each point to the nearest segment of a polyline.

    Args:
        points: [N, 3] points.
        polyline: [P, 3] its vertices in order.
        closed: also the segment from the last vertex back to the first.

    Returns:
        [N] distances, in the points' units.
    """
    starts = polyline if closed else polyline[:-1]
    ends = np.roll(polyline, -1, axis=0) if closed else polyline[1:]
    best = np.full(len(points), np.inf)
    for a, b in zip(starts, ends):
        ab = b - a
        t = np.clip((points - a) @ ab / max(float(ab @ ab), 1e-12), 0.0, 1.0)
        best = np.minimum(best, np.linalg.norm(points - (a + t[:, None] * ab), axis=1))
    return best


def vertex_normals(vertices, triangles):
    """Unit area-weighted vertex normals (outward for counter-clockwise triangles), in NumPy.

    Args:
        vertices: [V, 3] positions.
        triangles: [T, 3] int vertex indices.

    Returns:
        [V, 3] float64 unit normals (zero for a vertex in no triangle).
    """
    corners = np.asarray(vertices, np.float64)[np.asarray(triangles)]
    face_normals = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
    normals = np.zeros((len(vertices), 3))
    for k in range(3):
        np.add.at(normals, np.asarray(triangles)[:, k], face_normals)
    return normals / np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-12)
