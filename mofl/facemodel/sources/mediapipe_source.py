"""`--source=mediapipe`: a face asset built only from pip packages (paper §3.2; docs/face_assets.md
"Sources").

Steps (each a function below):
1. Run mediapipe 0.10.21's FaceMesh (static image, 468 points, no iris refinement) on a frontal
   face, by default scikit-image's astronaut.png. FaceMesh gives x, y normalised to the image and
   a relative depth z in about the x scale; we use (x·W, −y·H, −z·W): pixels, y up, z to viewer.
2. Remove the head rotation: the symmetry plane is found by reflecting the points and matching
   mirror partners (iterated a few times), the face's depth axis is its thinnest direction
   orthogonal to that plane, y completes a right-handed frame.
3. Pair every point with its mirror partner (Hungarian matching of the reflected points), average
   each point with its reflected partner (exact left/right symmetry), and make the triangulation
   symmetric (`mediapipe_topology`). On the astronaut: 28 midline points, 462 of 468 points are
   clean mutual nearest neighbours after reflection (the other 6 crowd at the mouth corners of
   the open smile), median left/right mismatch 0.3 mm, largest 1.2 mm; 12 tessellation triangles
   (6 flipped quad diagonals) are replaced by mirrors of their partners.
4. Scale to mm: the outer eye corners (FaceMesh 33/263, iBUG 36/45) are `EYE_CORNER_DISTANCE_MM`
   apart on the final subdivided template (adult exocanthion width is ≈ 88–96 mm).
5. Close the mouth (the astronaut smiles with parted lips): rotate the mandible region about the
   jaw hinge until the inner lips nearly touch (`LIP_GAP_MM`), then seal the rest of the lip
   line (`close_mouth`). The smile itself stays in the template.
   Origin: x = 0 on the symmetry plane; y and z at the mean of the outer border ring (the face
   oval): on the astronaut the nose tip lands at (0, 0.4, 67) mm.
6. Build the fixed expression basis on the 468-point mesh (`mediapipe_expressions`), then Loop-
   subdivide template and basis with the same sparse operator until ≥ `min_vertices` vertices.

Landmarks: FaceMesh vertices keep their indices through the subdivision, so the asset's 66
landmark vertices are `mofl.landmarks.MEDIAPIPE_TO_66` (see that module for the 468 → 68 map).
"""
import dataclasses

import numpy as np

from mofl import landmarks as landmark_layout
from mofl import sample_data
from mofl.facemodel import assets
from mofl.facemodel import subdivision
from mofl.facemodel.sources import mediapipe_expressions as expressions
from mofl.facemodel.sources import mediapipe_topology as topo

EYE_CORNER_DISTANCE_MM = 92.0
LIP_GAP_MM = 0.3             # Inner-lip gap left by the mouth closing of step 5.
OPEN_MOUTH_GAP_MM = 4.0      # Lip gap of `open_mouth_vertices` (graph placement, §3.2).
CONTOUR_CANDIDATES = 15      # K, candidate vertices per jaw landmark.
CONTOUR_LENGTH_MM = 40.0     # How far a candidate line reaches towards the face centre.
SKIN_SAMPLE_POINTS = (50, 280, 101, 330, 36, 266)  # Cheek vertices sampled for the skin colour.
LICENSE = ('Template measured with Google mediapipe FaceMesh (Apache-2.0) on scikit-image\'s '
           'astronaut.png (public domain, NASA) unless another image was given; FaceMesh '
           'tessellation (Apache-2.0); procedural expression basis (mofl).')


class NoFaceError(ValueError):
    """Raised when FaceMesh finds no face in the template image."""


@dataclasses.dataclass
class CoarseTemplate:
    """The measured, symmetric 468-point template before subdivision (for tests and previews).

    Attributes:
        vertices: [468, 3] float64 mm, closed mouth, exactly symmetric under `mirror`.
        triangles: [T, 3] int32 symmetric, counter-clockwise seen from +z.
        mirror: [468] int32 mirror permutation.
        num_clean_pairs: points whose mirror partner matched cleanly (mutual nearest neighbours).
        measured_px: [468, 3] FaceMesh output in pixels (x right, y down, z away from viewer).
        image: [H, W, 3] uint8 the RGB image.
    """
    vertices: np.ndarray
    triangles: np.ndarray
    mirror: np.ndarray
    num_clean_pairs: int
    measured_px: np.ndarray
    image: np.ndarray


def load_image(image_path):
    """[H, W, 3] uint8 RGB image; raises FileNotFoundError naming the path."""
    import cv2
    image = cv2.imread(image_path, cv2.IMREAD_COLOR)
    if image is None:
        raise FileNotFoundError(f'{image_path}: cannot read the template image')
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def detect_landmarks(image, where='image'):
    """FaceMesh's 468 points of the largest face.

    Args:
        image: [H, W, 3] uint8 RGB.
        where: name for error messages.

    Returns:
        [468, 3] float64: x, y in pixels (y down), z = FaceMesh depth × W (larger = farther).

    Raises:
        NoFaceError: if no face is found.
    """
    from mofl import facemesh   # mediapipe is heavy: import only when building
    with facemesh.FaceTracker() as tracker:
        face = tracker.detect(image)
    if face is None:
        raise NoFaceError(f'{where}: mediapipe FaceMesh found no face; the mediapipe face '
                          'source needs a clear frontal face photo')
    return face.mesh_landmarks[:468].astype(np.float64)


def _frame(points, x_direction):
    """Rotation [3, 3] (rows = model axes) with x along `x_direction`, z the face's thinnest
    direction orthogonal to x (towards the nose tip), y = z × x.

    Of the two principal axes orthogonal to x, the thinnest one is taken to be the one closer to
    the camera's viewing axis (the points come from a roughly frontal photo), which does not
    depend on whether the face is deeper than it is tall.
    """
    x = x_direction / np.linalg.norm(x_direction)
    centred = points - points.mean(0)
    in_plane = centred - np.outer(centred @ x, x)
    _, axes = np.linalg.eigh(in_plane.T @ in_plane)
    # axes[:, 0] is x itself (zero variance after the projection).
    z = axes[:, 1] if abs(axes[2, 1]) >= abs(axes[2, 2]) else axes[:, 2]
    z = z - (z @ x) * x
    z /= np.linalg.norm(z)
    if centred[4] @ z < 0:  # FaceMesh 4 is the nose tip.
        z = -z
    return np.stack([x, np.cross(z, x), z])


def remove_head_rotation(points_px, iterations=4):
    """Rotates FaceMesh points into the model frame with the symmetry plane at x = 0.

    Args:
        points_px: [468, 3] output of `detect_landmarks`.

    Returns:
        [468, 3] float64 points (pixel units) in model axes, centroid at the origin, x = 0 the
        estimated symmetry plane.
    """
    import scipy.spatial
    p = np.asarray(points_px, np.float64) * np.array([1.0, -1.0, -1.0])
    x_direction = (p[263] - p[33]) + (p[362] - p[133]) + (p[291] - p[61])
    for _ in range(iterations):
        rotation = _frame(p, x_direction)
        q = (p - p.mean(0)) @ rotation.T
        _, partner = scipy.spatial.cKDTree(q).query(q * np.array([-1.0, 1.0, 1.0]))
        # Mirror pairs differ only along the plane normal: its principal direction.
        diff = q - q[partner]
        _, axes = np.linalg.eigh(diff.T @ diff)
        normal = axes[:, -1] * np.sign(axes[0, -1])
        x_direction = rotation.T @ normal
    rotation = _frame(p, x_direction)
    q = (p - p.mean(0)) @ rotation.T
    _, partner = scipy.spatial.cKDTree(q).query(q * np.array([-1.0, 1.0, 1.0]))
    q[:, 0] -= np.mean(0.5 * (q[:, 0] + q[partner, 0]))
    return q


def _lip_gap(vertices):
    """Smallest vertical gap (mm) between corresponding upper and lower inner-lip points."""
    return np.min(vertices[list(topo.UPPER_LIP_INNER), 1] -
                  vertices[list(topo.LOWER_LIP_INNER), 1])


def close_mouth(vertices, triangles, mirror, gap_mm=LIP_GAP_MM, seal_radius_mm=15.0):
    """Closes parted lips of the measured template. Returns [V, 3] vertices.

    First rotates the mandible region (jaw hinge, harmonic jaw weights) until the inner lips are
    `gap_mm` apart where they are closest; then "seals" the rest of the lip line: each inner-lip
    point pair moves half of its remaining vertical gap towards the other, and these offsets are
    extended harmonically over the mesh, fading to zero `seal_radius_mm` from the inner lip ring.
    """
    fields = expressions.MeshFields(vertices, triangles, mirror)
    upper, lower, _ = expressions.lip_regions(fields)
    weights = expressions.jaw_weights(fields, upper, lower)
    lo, hi = -0.5, 0.5  # Bisection on the hinge angle; the gap grows with the angle.
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        if _lip_gap(vertices + expressions.jaw_rotation(vertices, weights, mid)) > gap_mm:
            hi = mid
        else:
            lo = mid
    closed = vertices + expressions.jaw_rotation(vertices, weights, hi)

    upper_ring, lower_ring = list(topo.UPPER_LIP_INNER), list(topo.LOWER_LIP_INNER)
    residual = closed[upper_ring, 1] - closed[lower_ring, 1] - gap_mm       # [9]
    half_gap = np.stack([np.zeros(9), 0.5 * residual, np.zeros(9)], axis=1)
    ring = upper_ring + lower_ring + list(topo.MOUTH_INNER_CORNERS)
    far = np.setdiff1d(np.flatnonzero(fields.geodesic(ring) > seal_radius_mm), ring)
    seal = fields.interpolate(np.r_[ring, far],
                              np.concatenate([-half_gap, half_gap, np.zeros((2 + len(far), 3))]))
    closed = closed + seal
    return fields.symmetrize(closed - vertices) + vertices


def build_coarse_template(image_path=None):
    """Steps 1–5 of the module docstring on the 468-point mesh.

    Args:
        image_path: RGB face photo; default scikit-image's astronaut.png.

    Returns:
        CoarseTemplate.
    """
    image_path = image_path or sample_data.astronaut_path()
    image = load_image(image_path)
    measured = detect_landmarks(image, where=image_path)
    points = remove_head_rotation(measured)
    pixel_size = np.median(np.linalg.norm(np.diff(points[list(topo.UPPER_LIP_OUTER)], axis=0),
                                          axis=1))
    mirror, num_clean = topo.mirror_permutation(points, max_distance=0.5 * pixel_size)
    points = 0.5 * (points + points[mirror] * np.array([-1.0, 1.0, 1.0]))
    triangles = topo.orient_triangles(topo.triangles_from_edges(topo.tessellation_edges()),
                                      points)
    triangles = topo.symmetric_triangles(triangles, points, mirror)

    # Scale so that the eye corners of the *subdivided* mesh are EYE_CORNER_DISTANCE_MM apart
    # (Loop smoothing pulls the boundary corners slightly into the eye).
    matrix, _ = subdivision.loop_subdivide(triangles, len(points), min_vertices=3000)
    fine = matrix @ points
    points *= EYE_CORNER_DISTANCE_MM / np.linalg.norm(fine[33] - fine[263])

    points = close_mouth(points, triangles, mirror)
    border = max(topo.boundary_loops(triangles), key=len)
    points[:, 1:] -= points[border, 1:].mean(0)
    return CoarseTemplate(vertices=points, triangles=triangles, mirror=mirror,
                          num_clean_pairs=num_clean, measured_px=measured, image=image)


def skin_color(image, measured_px, indices=SKIN_SAMPLE_POINTS, half_size=3):
    """[3] float32 median RGB in [0, 1] of small patches around FaceMesh cheek points."""
    patches = []
    h, w = image.shape[:2]
    for i in indices:
        x, y = np.round(measured_px[i, :2]).astype(int)
        patch = image[max(y - half_size, 0):min(y + half_size + 1, h),
                      max(x - half_size, 0):min(x + half_size + 1, w)]
        patches.append(patch.reshape(-1, 3))
    return (np.median(np.concatenate(patches), axis=0) / 255.0).astype(np.float32)


def _fine_region(matrix, coarse_region, coarse_other):
    """Fine vertices that take ≥ half their subdivision weight from `coarse_region` and none
    from `coarse_other`."""
    inside = np.zeros(matrix.shape[1])
    inside[coarse_region] = 1.0
    other = np.zeros(matrix.shape[1])
    other[coarse_other] = 1.0
    return np.flatnonzero((matrix @ inside >= 0.5) & (matrix @ other <= 0.0)).astype(np.int32)


def contour_candidates(vertices, jaw_vertices, centre_y, count=CONTOUR_CANDIDATES,
                       length=CONTOUR_LENGTH_MM):
    """Candidate vertex lines for the sliding jaw landmarks (paper §3.5).

    Each line starts at the jaw landmark and runs in the frontal (x, y) view towards the face
    centre (0, `centre_y`) for `length` mm (at most 30 % of the way), taking the vertex nearest to
    `count` equally spaced points; repeated vertices are dropped.

    Args:
        vertices: [V, 3] template.
        jaw_vertices: [17] int vertex index of each jaw landmark.
        centre_y: y of the face centre (mm).

    Returns:
        [17, count] int32, padded with −1.
    """
    import scipy.spatial
    tree = scipy.spatial.cKDTree(vertices[:, :2])
    out = np.full((len(jaw_vertices), count), -1, np.int32)
    for row, start in enumerate(jaw_vertices):
        origin = vertices[start, :2]
        to_centre = np.array([0.0, centre_y]) - origin
        reach = min(length, 0.3 * np.linalg.norm(to_centre))
        steps = np.linspace(0.0, reach, count)[:, None] * to_centre / np.linalg.norm(to_centre)
        _, nearest = tree.query(origin + steps)
        line = [start] + [int(n) for n in nearest if n != start]
        line = list(dict.fromkeys(line))[:count]
        out[row, :len(line)] = line
    return out


def build_source(image_path=None, min_vertices=3000):
    """Builds the mediapipe face-asset source.

    Args:
        image_path: RGB photo of a frontal face; default scikit-image's astronaut.png.
        min_vertices: subdivide until the template has at least this many vertices.

    Returns:
        assets.SourceMesh with source='mediapipe'.

    Raises:
        NoFaceError: no face in the image. FileNotFoundError: unreadable image.
    """
    coarse = build_coarse_template(image_path)
    v0, tris0 = coarse.vertices, coarse.triangles
    names, offsets0 = expressions.build_expression_basis(v0, tris0, coarse.mirror)
    matrix, triangles = subdivision.loop_subdivide(tris0, len(v0), min_vertices)
    vertices = matrix @ v0
    basis = np.stack([matrix @ o for o in offsets0])

    fields = expressions.MeshFields(v0, tris0, coarse.mirror)
    upper0, lower0, _ = expressions.lip_regions(fields)
    upper_lip = _fine_region(matrix, upper0, lower0)
    lower_lip = _fine_region(matrix, lower0, upper0)

    jaw_open = basis[names.index('jawOpen')]
    gap_at_one = (vertices[13, 1] + jaw_open[13, 1]) - (vertices[14, 1] + jaw_open[14, 1])
    gap_at_zero = vertices[13, 1] - vertices[14, 1]
    open_weight = (OPEN_MOUTH_GAP_MM - gap_at_zero) / (gap_at_one - gap_at_zero)
    open_mouth = vertices + open_weight * jaw_open

    landmark_indices = landmark_layout.MEDIAPIPE_TO_66.astype(np.int32)
    contour = contour_candidates(vertices, landmark_indices[:assets.NUM_CONTOUR_LANDMARKS],
                                 centre_y=vertices[4, 1])
    face_mask = np.ones(len(vertices), bool)
    face_mask[max(topo.boundary_loops(triangles), key=len)] = False

    mesh = assets.SourceMesh(
        vertices=vertices.astype(np.float32),
        triangles=triangles.astype(np.int32),
        face_mask=face_mask,
        landmark_indices=landmark_indices,
        contour_candidates=contour,
        expression_basis=basis.astype(np.float32),
        expression_sigma=np.full(len(names), assets.BLENDSHAPE_SIGMA, np.float32),
        expression_names=np.array(names),
        skin_color=skin_color(coarse.image, coarse.measured_px),
        open_mouth_vertices=open_mouth.astype(np.float32),
        upper_lip_vertices=upper_lip,
        lower_lip_vertices=lower_lip,
        source='mediapipe',
        license=LICENSE)
    mesh.validate(where=f'mediapipe source ({image_path or "astronaut.png"})')
    return mesh
