"""Which vertex of a face asset each of mediapipe FaceMesh's 468 points lies on.

`tools.preprocess` stores FaceMesh's 468 points of every frame as the records' dense 2D points
(in mediapipe's index space, `records.DENSE_SPACE_MEDIAPIPE`); the dense-point loss
(`mofl.train --lambda_dense_points`) reads them through this fixed correspondence, which every
asset carries as `SourceMesh.mediapipe_vertices` [468] (−1: no vertex) with
`SourceMesh.mediapipe_residual_mm` [468].

How it is made (`for_source`):
- mediapipe asset (full mesh): its vertices 0..467 are the FaceMesh points themselves (the Loop
  subdivision keeps their indices), residual 0.
- any other asset (ICT-FaceKit, BFM): FaceMesh's 468-point face, as measured for the mediapipe
  asset (`mediapipe_source.build_coarse_template`: FaceMesh on scikit-image's astronaut, made
  symmetric, mm), is registered onto the asset's template: a similarity transform on the 49 inner
  landmarks of the 66-point layout (both meshes carry them), then a thin-plate-spline warp that
  takes all 66 landmarks exactly onto the template's, then each warped point goes to its nearest
  template vertex. The residual is the distance of the warped point to that
  vertex (mm). mediapipe's own FaceMesh package ships no canonical face model file in the pip
  wheel, hence the measured face.
- a decimated asset (`decimation.decimate_mesh`): registered afresh onto its coarse template,
  except the mediapipe asset's, whose points go to the nearest coarse vertex (`for_decimated`).

Points without a vertex (−1): FaceMesh's face-oval ring (its outer boundary, 36 points), which
traces the face's outline and slides over the surface as the head turns (the 17 jaw landmarks
handle the outline with sliding correspondences, §3.5), and any point whose residual exceeds
`MAX_RESIDUAL_MM` (outside the asset's face area).
"""
import functools

import numpy as np

from mofl import landmarks as landmark_layout
from mofl.facemodel import assets as assets_lib

NUM_POINTS = assets_lib.NUM_MEDIAPIPE_POINTS
# A registered FaceMesh point farther than this from every template vertex gets no vertex.
MAX_RESIDUAL_MM = 5.0
INNER_LANDMARKS = slice(17, 66)   # brows, nose, eyes, mouth of the 66-point layout


def face_oval(triangles):
    """FaceMesh's face-oval ring: the longest boundary loop of its tessellation ([36] indices)."""
    from mofl.facemodel.sources import mediapipe_topology as topo  # pylint: disable=import-outside-toplevel
    return np.sort(max(topo.boundary_loops(triangles), key=len)).astype(np.int32)


@functools.lru_cache(maxsize=1)
def face_mesh_template():
    """FaceMesh's 468 points as a 3D face in mm ([468, 3] float64) and its [T, 3] triangles,
    both read-only. Measured once per process (one FaceMesh run on astronaut.png): building an
    asset asks for it again when it decimates, and the mediapipe source measured it already."""
    from mofl.facemodel.sources import mediapipe_source  # pylint: disable=import-outside-toplevel
    coarse = mediapipe_source.build_coarse_template()
    points = np.array(coarse.vertices, np.float64)
    triangles = np.array(coarse.triangles, np.int32)
    points.flags.writeable = triangles.flags.writeable = False
    return points, triangles


def similarity_transform(source, target):
    """Least-squares s, R, t with target ≈ s·R·source + t (Umeyama; no reflection).

    Args:
        source, target: [N, 3] corresponding points, N ≥ 3.

    Returns:
        (scale float, rotation [3, 3], translation [3]).
    """
    source, target = np.asarray(source, np.float64), np.asarray(target, np.float64)
    if source.shape != target.shape or source.ndim != 2 or source.shape[1] != 3:
        raise ValueError(f'similarity_transform: source and target must both be [N, 3], got '
                         f'{source.shape} and {target.shape}')
    mu_s, mu_t = source.mean(0), target.mean(0)
    a, b = source - mu_s, target - mu_t
    u, sigma, vt = np.linalg.svd(b.T @ a / len(a))
    d = np.diag([1.0, 1.0, np.sign(np.linalg.det(u @ vt))])
    rotation = u @ d @ vt
    scale = float(np.trace(np.diag(sigma) @ d) / (a ** 2).sum(1).mean())
    return scale, rotation, mu_t - scale * rotation @ mu_s


def register(template_vertices, template_landmarks, face_mesh_points, face_mesh_triangles):
    """Registers FaceMesh's 468 points onto a template (module docstring).

    Args:
        template_vertices: [V, 3] the asset's template, mm.
        template_landmarks: [66] int its landmark vertices (66-point layout).
        face_mesh_points: [468, 3] FaceMesh's face in mm (any pose and scale).
        face_mesh_triangles: [T, 3] its tessellation (for the face oval).

    Returns:
        (vertices [468] int32, −1 where none; residual_mm [468] float32, the distance of each
        registered point to its vertex, also where it was rejected; warped [468, 3] float64 the
        registered points).
    """
    from scipy import interpolate  # pylint: disable=import-outside-toplevel
    from scipy import spatial  # pylint: disable=import-outside-toplevel
    template_vertices = np.asarray(template_vertices, np.float64)
    face_mesh_points = np.asarray(face_mesh_points, np.float64)
    if face_mesh_points.shape != (NUM_POINTS, 3):
        raise ValueError(f'face_mesh_points must be [{NUM_POINTS}, 3], got '
                         f'{face_mesh_points.shape}')
    if template_vertices.ndim != 2 or template_vertices.shape[1] != 3:
        raise ValueError(f'template_vertices must be [V, 3], got {template_vertices.shape}')
    target = template_vertices[np.asarray(template_landmarks)]
    source = face_mesh_points[landmark_layout.MEDIAPIPE_TO_66]
    scale, rotation, translation = similarity_transform(source[INNER_LANDMARKS],
                                                        target[INNER_LANDMARKS])
    aligned = scale * face_mesh_points @ rotation.T + translation
    aligned_landmarks = aligned[landmark_layout.MEDIAPIPE_TO_66]
    warp = interpolate.RBFInterpolator(aligned_landmarks, target - aligned_landmarks,
                                       kernel='thin_plate_spline')
    warped = aligned + warp(aligned)
    distance, nearest = spatial.cKDTree(template_vertices).query(warped)
    vertices = nearest.astype(np.int32)
    vertices[distance > MAX_RESIDUAL_MM] = -1
    vertices[face_oval(face_mesh_triangles)] = -1
    return vertices, distance.astype(np.float32), warped


def for_source(mesh):
    """The correspondence of a full (not decimated) SourceMesh (module docstring).

    Args:
        mesh: assets.SourceMesh.

    Returns:
        (vertices [468] int32 with −1 for none, residual_mm [468] float32).
    """
    points, triangles = face_mesh_template()
    if mesh.source == 'mediapipe':
        vertices = np.arange(NUM_POINTS, dtype=np.int32)
        vertices[face_oval(triangles)] = -1
        return vertices, np.zeros(NUM_POINTS, np.float32)
    vertices, residual, _ = register(mesh.vertices, mesh.landmark_indices, points, triangles)
    return vertices, residual


def for_decimated(full_mesh, coarse_mesh):
    """The correspondence of a decimated mesh (`decimation.decimate_mesh`).

    The mediapipe asset's FaceMesh points are vertices of its full mesh: each goes to the coarse
    vertex nearest that vertex (residual: their distance). Any other asset is registered afresh
    onto the coarse template (its landmarks are those of the full mesh, so the warp is the same)
    and each point takes its nearest coarse vertex.

    Args:
        full_mesh: the full SourceMesh, with `mediapipe_vertices`.
        coarse_mesh: the decimated SourceMesh.

    Returns:
        (vertices [468] int32 of the coarse mesh, −1 for none; residual_mm [468] float32).
    """
    if full_mesh.source != 'mediapipe':
        return for_source(coarse_mesh)
    from scipy import spatial  # pylint: disable=import-outside-toplevel
    full_map = np.asarray(full_mesh.mediapipe_vertices)
    positions = np.asarray(full_mesh.vertices, np.float64)[np.maximum(full_map, 0)]
    distance, nearest = spatial.cKDTree(
        np.asarray(coarse_mesh.vertices, np.float64)).query(positions)
    vertices = np.where((full_map >= 0) & (distance <= MAX_RESIDUAL_MM), nearest, -1)
    return vertices.astype(np.int32), distance.astype(np.float32)
