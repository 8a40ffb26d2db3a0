"""A fixed, procedural expression blendshape basis on the 468-point FaceMesh template.

Each shape is a displacement field [468, 3] in mm for blendshape weight 1 (matrix B of eq. 3),
built from smooth weight fields on the coarse mesh: geodesic fall-offs (Dijkstra along mesh edges,
so they never jump across the open mouth or eyes) and harmonic interpolation (graph Laplacian with
fixed values on named regions). The caller Loop-subdivides the fields together with the template,
which smooths them further.

Asymmetric shapes are built for the subject's left side (+x, suffix `_L`) and mirrored exactly
with the mirror permutation for `_R`; left/right-neutral shapes are symmetrised exactly.

Model space: mm, x to the subject's left, y up, z towards the viewer. The 32 shapes (peak
displacement at weight 1 on the astronaut template):
- jaw: jawOpen (mandible rotation about a hinge between the jaw joints, chin travel 14 mm, lips
  part ≈ 10 mm), jawForward (4 mm), jawLeft/jawRight (5 mm);
- mouth corners (_L/_R): mouthSmile (up/out/back 7 mm, with a cheek raise), mouthFrown (4.5 mm),
  mouthStretch (5.5 mm), mouthDimple (2.8 mm);
- lips: mouthLeft/mouthRight (5 mm), mouthPucker (lips forward 5 mm, corners in), mouthFunnel
  (forward, lips part), lipsUpperUp, lowerLipDown (3 mm);
- cheeks: cheekPuff (along the normal, 4 mm), cheekSquint_L/R (2 mm);
- brows: browInnerUp (6 mm), browOuterUp_L/R (5 mm), browDown_L/R (4 mm, towards the nose);
- eyes: eyeBlink_L/R (upper lid margin onto the lower one, ≈ 9.5 mm), eyeWide_L/R (2.5 mm);
- nose: noseSneer_L/R (alar region up 3 mm).
"""
import numpy as np
import scipy.sparse
import scipy.sparse.csgraph
import scipy.sparse.linalg

from mofl.facemodel import geometry
from mofl.facemodel.sources import mediapipe_topology as topo

# Chin (landmark 152) travel for jawOpen at weight 1, in mm.
JAW_OPEN_CHIN_TRAVEL_MM = 14.0


class MeshFields:
    """Geodesic distances, harmonic fields and mirroring on one coarse mesh.

    Args:
        vertices: [V, 3] float template (mm), exactly symmetric under `mirror`.
        triangles: [T, 3] int.
        mirror: [V] int mirror permutation (x → −x partner of each vertex).
    """

    def __init__(self, vertices, triangles, mirror):
        self.vertices = np.asarray(vertices, np.float64)
        self.mirror_index = np.asarray(mirror)
        edges = np.concatenate([triangles[:, [0, 1]], triangles[:, [1, 2]], triangles[:, [2, 0]]])
        edges = np.unique(np.sort(edges, axis=1), axis=0)
        length = np.linalg.norm(self.vertices[edges[:, 0]] - self.vertices[edges[:, 1]], axis=1)
        v = len(self.vertices)
        self.graph = scipy.sparse.coo_matrix(
            (np.r_[length, length], (np.r_[edges[:, 0], edges[:, 1]],
                                     np.r_[edges[:, 1], edges[:, 0]])), shape=(v, v)).tocsr()
        adjacency = (self.graph > 0).astype(np.float64)
        self.laplacian = (scipy.sparse.diags(np.asarray(adjacency.sum(1)).ravel()) -
                          adjacency).tocsr()

    def geodesic(self, sources):
        """[V] shortest edge-path distance (mm) to the nearest of `sources` (vertex indices)."""
        return scipy.sparse.csgraph.dijkstra(self.graph, indices=np.atleast_1d(sources),
                                             min_only=True)

    def falloff(self, sources, radius):
        """[V] smooth weight: 1 on `sources`, (1 − (d/r)²)² for geodesic d < r, 0 beyond."""
        t = np.clip(self.geodesic(sources) / radius, 0.0, 1.0)
        return (1.0 - t ** 2) ** 2

    def harmonic(self, ones, zeros):
        """[V] solution of the graph Laplace equation with w = 1 on `ones`, 0 on `zeros`."""
        fixed = np.r_[np.asarray(ones, int), np.asarray(zeros, int)]
        values = np.r_[np.ones(len(ones)), np.zeros(len(zeros))]
        return self.interpolate(fixed, values[:, None])[:, 0]

    def interpolate(self, fixed, values):
        """[V, C] harmonic interpolation of per-vertex `values` [F, C] given on `fixed` [F]."""
        fixed = np.asarray(fixed, int)
        out = np.zeros((len(self.vertices), values.shape[1]))
        out[fixed] = values
        free = np.setdiff1d(np.arange(len(self.vertices)), fixed)
        lap_ff = self.laplacian[free][:, free].tocsc()
        rhs = -self.laplacian[free][:, fixed] @ values
        out[free] = scipy.sparse.linalg.spsolve(lap_ff, rhs).reshape(len(free), -1)
        return out

    def mirror(self, offsets):
        """[V, 3] field reflected to the other side: out[i] = reflect(offsets[mirror[i]])."""
        return offsets[self.mirror_index] * np.array([-1.0, 1.0, 1.0])

    def symmetrize(self, offsets):
        """[V, 3] exactly mirror-symmetric part of a field."""
        return 0.5 * (offsets + self.mirror(offsets))

    def nearest(self, point):
        """Index of the vertex nearest to a [3] point."""
        return int(np.argmin(np.linalg.norm(self.vertices - point, axis=1)))


def lip_regions(fields):
    """Coarse vertex sets of the upper lip, the lower lip and the mouth corners.

    The lip band is every vertex reachable from the inner lip ring without passing the outer lip
    ring (the outer ring included). Each band vertex goes to the lip whose rings are geodesically
    nearer; the four ring corners and band vertices about equally near both lips are corners.

    Returns:
        upper: sorted int array; lower: sorted int array; corners: sorted int array.
    """
    outer = set(topo.UPPER_LIP_OUTER + topo.LOWER_LIP_OUTER + topo.MOUTH_OUTER_CORNERS)
    band = set(topo.UPPER_LIP_INNER + topo.LOWER_LIP_INNER + topo.MOUTH_INNER_CORNERS)
    frontier = list(band)
    neighbours = fields.graph.tolil().rows
    while frontier:
        v = frontier.pop()
        if v in outer:
            continue
        for n in neighbours[v]:
            if n not in band:
                band.add(n)
                frontier.append(n)
    band = np.array(sorted(band))
    d_upper = fields.geodesic(list(topo.UPPER_LIP_INNER + topo.UPPER_LIP_OUTER))[band]
    d_lower = fields.geodesic(list(topo.LOWER_LIP_INNER + topo.LOWER_LIP_OUTER))[band]
    corner = np.isin(band, topo.MOUTH_OUTER_CORNERS + topo.MOUTH_INNER_CORNERS)
    corner |= np.abs(d_upper - d_lower) < 1.0
    upper = band[(d_upper < d_lower) & ~corner]
    lower = band[(d_lower < d_upper) & ~corner]
    return upper, lower, band[corner]


def jaw_pivot(vertices):
    """[3] jaw hinge point: midline, 20 mm below the outer eye corners, 10 mm behind the
    FaceMesh's temple points (127/356), i.e. roughly between the two temporomandibular joints."""
    eye_y = 0.5 * (vertices[33, 1] + vertices[263, 1])
    temple_z = 0.5 * (vertices[127, 2] + vertices[356, 2])
    return np.array([0.0, eye_y - 20.0, temple_z - 10.0])


def jaw_weights(fields, upper_lip, lower_lip):
    """[V] how rigidly each vertex follows the mandible (1 = fully), harmonic in between.

    Fixed at 1: the lower lip and everything below the lower-lip bottom (landmark 17).
    Fixed at 0: the upper lip and everything above the mouth corners' height + 8 mm (nose,
    cheeks, eyes, forehead).
    """
    v = fields.vertices
    corner_y = 0.5 * (v[61, 1] + v[291, 1])
    ones = set(lower_lip) | set(np.flatnonzero(v[:, 1] < v[17, 1] - 2.0))
    zeros = set(upper_lip) | set(np.flatnonzero(v[:, 1] > corner_y + 8.0))
    return fields.harmonic(sorted(ones), sorted(zeros - ones))


def jaw_rotation(vertices, weights, angle):
    """[V, 3] offsets of rotating each vertex about the jaw hinge's x axis, scaled by `weights`.

    Positive `angle` (radians) opens the mouth: the chin moves down and back.
    """
    pivot = jaw_pivot(vertices)
    rel = vertices - pivot
    c, s = np.cos(angle), np.sin(angle)
    rotated = np.stack([rel[:, 0], c * rel[:, 1] - s * rel[:, 2],
                        s * rel[:, 1] + c * rel[:, 2]], axis=1)
    return weights[:, None] * (rotated - rel)


def jaw_open_angle(vertices, chin_travel_mm=JAW_OPEN_CHIN_TRAVEL_MM):
    """Hinge angle (radians) that moves the chin (152) by `chin_travel_mm`."""
    radius = np.linalg.norm((vertices[152] - jaw_pivot(vertices))[1:])
    return 2.0 * np.arcsin(chin_travel_mm / (2.0 * radius))


def _upper_lid_blink(fields, upper, lower, corners, radius=14.0):
    """Offsets moving the upper lid margin exactly onto the lower lid margin (weight 1)."""
    v = fields.vertices
    margin_offsets = v[list(lower)] - v[list(upper)]                  # [7, 3]
    far = np.flatnonzero(fields.geodesic(list(upper)) > radius)
    h = fields.harmonic(list(upper), sorted(set(far) | set(lower) | set(corners)))
    # Inverse-distance interpolation of the margin offsets (exact on the margin itself).
    dist = np.linalg.norm(v[:, None] - v[list(upper)][None], axis=-1)  # [V, 7]
    idw = 1.0 / np.maximum(dist, 1e-6) ** 2
    idw /= idw.sum(1, keepdims=True)
    return h[:, None] * (idw @ margin_offsets)


def _lid_lift(fields, margin, other_margin, corners, lift, radius=10.0):
    """Offsets lifting one lid margin by up to the vector `lift` (most in the middle of the lid,
    tapering to 0 at the eye corners like a sine arch), fading out harmonically."""
    arch = np.sin(np.pi * np.arange(1, len(margin) + 1) / (len(margin) + 1))
    far = np.flatnonzero(fields.geodesic(list(margin)) > radius)
    fixed = np.r_[list(margin), sorted(set(far) | set(other_margin) | set(corners))]
    values = np.zeros((len(fixed), 3))
    values[:len(margin)] = arch[:, None] * np.asarray(lift, np.float64)
    return fields.interpolate(fixed, values)


def build_expression_basis(vertices, triangles, mirror):
    """The fixed expression basis on the (closed-mouth, symmetric) coarse template.

    Args:
        vertices: [V, 3] float template in mm, exactly symmetric under `mirror`.
        triangles: [T, 3] int.
        mirror: [V] int mirror permutation.

    Returns:
        names: list of b str (ARKit-like names; `_L` = subject's left = +x).
        offsets: [b, V, 3] float64 displacement in mm per unit weight.
    """
    f = MeshFields(vertices, triangles, mirror)
    v = f.vertices
    upper_lip, lower_lip, _ = lip_regions(f)
    lips = np.r_[upper_lip, lower_lip, topo.MOUTH_OUTER_CORNERS, topo.MOUTH_INNER_CORNERS]
    jaw = jaw_weights(f, upper_lip, lower_lip)
    corner_l = [291, 308]
    left_brow = [300, 293, 334, 296, 336, 276, 283, 282, 295, 285]
    shapes = {}

    def left_right(name, offsets):
        shapes[name + '_L'] = offsets
        shapes[name + '_R'] = f.mirror(offsets)

    def both(indices):
        return sorted(set(indices) | set(f.mirror_index[list(indices)]))

    def at(sources, radius, vector):
        return f.falloff(sources, radius)[:, None] * np.asarray(vector, np.float64)

    # Jaw (rigid-ish mandible motion).
    shapes['jawOpen'] = jaw_rotation(v, jaw, jaw_open_angle(v))
    shapes['jawForward'] = jaw[:, None] * np.array([0.0, 0.0, 4.0])
    shapes['jawLeft'] = jaw[:, None] * np.array([5.0, 0.0, 0.0])
    shapes['jawRight'] = f.mirror(shapes['jawLeft'])
    # Mouth corners.
    cheek_l = f.nearest(v[291] + np.array([12.0, 14.0, 0.0]))
    left_right('mouthSmile', at(corner_l, 28.0, [3.5, 5.5, -2.5]) +
               at([cheek_l], 22.0, [0.5, 2.5, 1.5]))
    left_right('mouthFrown', at(corner_l, 25.0, [1.0, -4.5, -0.5]))
    left_right('mouthStretch', at(corner_l, 28.0, [5.0, -1.5, -2.0]))
    left_right('mouthDimple', at(corner_l, 18.0, [1.5, 0.0, -2.5]))
    # Whole lips.
    lip_weight = f.falloff(lips, 15.0)
    shapes['mouthLeft'] = lip_weight[:, None] * np.array([5.0, 0.0, 0.0])
    shapes['mouthRight'] = f.mirror(shapes['mouthLeft'])
    zeros, ones = np.zeros(len(v)), np.ones(len(v))
    shapes['mouthPucker'] = f.symmetrize(
        lip_weight[:, None] * np.stack([-0.22 * v[:, 0], zeros, 5.0 * ones], 1))
    opening = 1.0 - 2.0 * jaw  # +1 on the upper lip, −1 on the lower lip.
    shapes['mouthFunnel'] = f.symmetrize(lip_weight[:, None] * np.stack(
        [-0.15 * v[:, 0], 2.5 * opening, 4.0 * ones], 1))
    shapes['lipsUpperUp'] = f.symmetrize(
        (f.falloff(upper_lip, 12.0) * (1.0 - jaw))[:, None] * np.array([0.0, 3.0, 0.5]))
    shapes['lowerLipDown'] = f.symmetrize(
        (f.falloff(lower_lip, 10.0) * jaw)[:, None] * np.array([0.0, -3.0, 0.8]))
    # Cheeks.
    puff_l = f.nearest(v[291] + np.array([14.0, 8.0, 0.0]))
    normals = geometry.vertex_normals(v, triangles)
    shapes['cheekPuff'] = f.symmetrize(5.0 * f.falloff(both([puff_l]), 30.0)[:, None] * normals)
    eye_l = v[list(topo.LEFT_EYE_LOWER)].mean(0)
    squint_l = f.nearest(eye_l + np.array([0.0, -12.0, 0.0]))
    left_right('cheekSquint', at([squint_l], 18.0, [0.0, 2.5, 0.8]))
    # Brows.
    shapes['browInnerUp'] = f.symmetrize(at(both([336, 296, 285, 295]), 25.0, [0.0, 6.0, 0.5]))
    left_right('browOuterUp', at([300, 293, 276, 283], 25.0, [0.0, 5.0, 0.0]))
    left_right('browDown', at(left_brow, 22.0, [-1.5, -4.0, -0.5]))
    # Eyes.
    eye_corners = topo.LEFT_EYE_CORNERS
    left_right('eyeBlink', _upper_lid_blink(f, topo.LEFT_EYE_UPPER, topo.LEFT_EYE_LOWER,
                                             eye_corners))
    left_right('eyeWide', _lid_lift(f, topo.LEFT_EYE_UPPER, topo.LEFT_EYE_LOWER, eye_corners,
                                    [0.0, 2.5, 0.3]) +
               _lid_lift(f, topo.LEFT_EYE_LOWER, topo.LEFT_EYE_UPPER, eye_corners,
                         [0.0, -1.0, 0.0], radius=8.0))
    # Nose.
    left_right('noseSneer', at([327, 294, 358, 279], 14.0, [0.8, 3.0, 0.5]))
    names = list(shapes)
    return names, np.stack([shapes[n] for n in names])
