"""Landmark layouts: mediapipe FaceMesh (468) → iBUG/Multi-PIE 68 → the paper's 66 points.

The paper (§3.5, "sparse landmarks") uses 66 points; we use the 68-point iBUG/Multi-PIE layout
without the two inner-mouth corners (0-based 60 and 64), see BUILD_NOTES.md "Face assets and
landmarks". Order of the 68: 0–16 jaw (0 = subject's right ear side, i.e. image left), 17–21 right
brow (outer → inner), 22–26 left brow (inner → outer), 27–30 nose bridge (nasion → tip), 31–35 nose
base (right → left), 36–41 right eye (outer corner, two upper-lid points, inner corner, two
lower-lid points), 42–47 left eye (inner corner, upper lid, outer corner, lower lid), 48–59 outer
lip (48 right corner, clockwise in the image over the upper lip to 54 and back along the lower lip),
60–67 inner lip (60 right corner, 61–63 upper, 64 left corner, 65–67 lower).

How `MEDIAPIPE_TO_IBUG68` was chosen (by looking at all 468 FaceMesh indices drawn on the
astronaut crop of scikit-image, and then at the 68 chosen points drawn with their numbers):
- Jaw 0–16: the points lie on FaceMesh's face-oval ring from 127 (temple, at the height of the
  outer eye corner) down over the chin 152 to 356. The oval has 23 vertices between 127 and 356;
  the 17 were picked at equal arc length along it (measured on the astronaut) and the right-side
  choice mirrored to the left, so that 8 is the chin (152) and i ↔ 16−i are FaceMesh mirror pairs.
- Brows 17–26: FaceMesh's upper brow contour (70, 63, 105, 66, 107 and mirrors) — the iBUG brow
  points sit on the upper brow edge, the lower FaceMesh contour (46, 53, ...) lies on the lid fold.
- Nose bridge 27–30: the midline 168 (nasion, between the eyes), 197, 195, and 4 (pronasale,
  the most forward FaceMesh point; 1 lies lower on the columella). 197/195 are the midline points
  closest to equal spacing between 168 and 4.
- Nose base 31–35: 98 and 327 (bottom of the alar wings), 97 and 326 (nostril, beside the
  columella), 2 (subnasale).
- Eyes 36–47: FaceMesh's eye rings: corners 33/133 and 362/263, upper lid 160/158 and 385/387,
  lower lid 153/144 and 380/373 (each at about a third of the lid between the corners).
- Outer lip 48–59: corners 61/291, upper lip 40, 37 (cupid's-bow peak), 0 (philtrum), 267, 270;
  lower lip 321, 314, 17 (bottom centre), 84, 91. FaceMesh has five segments per half lip where
  iBUG has three (upper) or 2.5 (lower), so every other ring vertex was taken at equal steps.
- Inner lip 60–67: corners 78/308, upper 81, 13, 311, lower 402, 14, 178.
Every left/right pair of the 68 maps to a FaceMesh mirror pair (checked in tests/test_landmarks.py
by reflecting the measured template).
"""
import numpy as np

# The crop convention of all of mofl: a square crop's side relative to the longer side of the
# face's 2D landmark box (tools.preprocess --crop_scale, reconstruction, evaluation, synthetic
# data).
CROP_SCALE = 1.6

NUM_IBUG68 = 68
INNER_MOUTH_CORNERS_68 = (60, 64)  # dropped from the paper's 66-point layout.

MEDIAPIPE_TO_IBUG68 = np.array([
    # Jaw 0..16.
    127, 234, 132, 58, 172, 136, 149, 148, 152, 377, 378, 365, 397, 288, 361, 454, 356,
    # Right brow 17..21, left brow 22..26.
    70, 63, 105, 66, 107, 336, 296, 334, 293, 300,
    # Nose bridge 27..30, nose base 31..35.
    168, 197, 195, 4, 98, 97, 2, 326, 327,
    # Right eye 36..41, left eye 42..47.
    33, 160, 158, 133, 153, 144, 362, 385, 387, 263, 373, 380,
    # Outer lip 48..59.
    61, 40, 37, 0, 267, 270, 291, 321, 314, 17, 84, 91,
    # Inner lip 60..67.
    78, 81, 13, 311, 308, 402, 14, 178,
], dtype=np.int32)

IBUG68_NAMES = (
    [f'jaw_{i}' for i in range(17)] +
    [f'right_brow_{i}' for i in range(5)] + [f'left_brow_{i}' for i in range(5)] +
    ['nose_bridge_0', 'nose_bridge_1', 'nose_bridge_2', 'nose_tip'] +
    ['nose_base_right', 'nostril_right', 'subnasale', 'nostril_left', 'nose_base_left'] +
    ['right_eye_outer', 'right_eye_upper_outer', 'right_eye_upper_inner', 'right_eye_inner',
     'right_eye_lower_inner', 'right_eye_lower_outer'] +
    ['left_eye_inner', 'left_eye_upper_inner', 'left_eye_upper_outer', 'left_eye_outer',
     'left_eye_lower_outer', 'left_eye_lower_inner'] +
    ['mouth_right', 'upper_lip_right_1', 'upper_lip_right_0', 'upper_lip_center',
     'upper_lip_left_0', 'upper_lip_left_1', 'mouth_left', 'lower_lip_left_1',
     'lower_lip_left_0', 'lower_lip_center', 'lower_lip_right_0', 'lower_lip_right_1'] +
    ['inner_mouth_right', 'inner_upper_lip_right', 'inner_upper_lip_center',
     'inner_upper_lip_left', 'inner_mouth_left', 'inner_lower_lip_left',
     'inner_lower_lip_center', 'inner_lower_lip_right'])

# Index into the 68 of each of the paper's 66 landmarks.
IBUG68_TO_66 = np.array([i for i in range(NUM_IBUG68) if i not in INNER_MOUTH_CORNERS_68],
                        dtype=np.int32)

# Left/right partner of each of the 68 (i ↔ IBUG68_MIRROR[i] under x → −x).
IBUG68_MIRROR = np.array(
    list(range(16, -1, -1)) +               # jaw
    list(range(26, 16, -1)) +               # brows
    [27, 28, 29, 30] + [35, 34, 33, 32, 31] +  # nose
    [45, 44, 43, 42, 47, 46, 39, 38, 37, 36, 41, 40] +  # eyes
    [54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55] +  # outer lip
    [64, 63, 62, 61, 60, 67, 66, 65],       # inner lip
    dtype=np.int32)

MEDIAPIPE_TO_66 = MEDIAPIPE_TO_IBUG68[IBUG68_TO_66]

# Regions of the 66-point layout (indices into the 66, see the order above).
JAW_66 = slice(0, 17)
RIGHT_BROW_66, LEFT_BROW_66 = list(range(17, 22)), list(range(22, 27))
RIGHT_EYE_66, LEFT_EYE_66 = list(range(36, 42)), list(range(42, 48))
OUTER_LIPS_66 = list(range(48, 60))
INNER_MOUTH_66 = [48, 60, 61, 62, 54, 63, 64, 65]  # outer corners + the 6 inner-lip points


def drop_inner_mouth_corners(landmarks68, axis=-2):
    """Turns 68-point iBUG landmarks into the paper's 66 by dropping 0-based points 60 and 64.

    Args:
        landmarks68: array with 68 entries along `axis`, e.g. [..., 68, 2] (default axis −2) or
            [..., 68] confidences (pass axis=-1).
        axis: the landmark axis.

    Returns:
        The same array with 66 entries along `axis`.

    Raises:
        ValueError: if `axis` does not have 68 entries.
    """
    landmarks68 = np.asarray(landmarks68)
    if landmarks68.shape[axis] != NUM_IBUG68:
        raise ValueError(f'drop_inner_mouth_corners: axis {axis} has {landmarks68.shape[axis]} '
                         f'entries, want {NUM_IBUG68} (shape {landmarks68.shape})')
    return np.take(landmarks68, IBUG68_TO_66, axis=axis)


def mediapipe_to_ibug68(landmarks468, axis=-2):
    """Picks the 68 iBUG landmarks out of mediapipe FaceMesh's 468 (or 478 refined) points.

    Args:
        landmarks468: array with ≥ 468 entries along `axis`, e.g. [..., 468, 3].
        axis: the landmark axis.

    Returns:
        The array with 68 entries along `axis`.
    """
    landmarks468 = np.asarray(landmarks468)
    if landmarks468.shape[axis] < 468:
        raise ValueError(f'mediapipe_to_ibug68: axis {axis} has {landmarks468.shape[axis]} '
                         f'entries, want 468 (shape {landmarks468.shape})')
    return np.take(landmarks468, MEDIAPIPE_TO_IBUG68, axis=axis)


def mediapipe_to_66(landmarks468, axis=-2):
    """mediapipe FaceMesh's 468 points → the paper's 66 landmarks (along `axis`)."""
    return drop_inner_mouth_corners(mediapipe_to_ibug68(landmarks468, axis), axis)


def dense_point_vertices(vertices, face_mask, count):
    """The asset vertices of `count` dense 2D points (our deviation, docs/data.md "Dense 2D
    points").

    Farthest-point sampling over the face region of the template: the first point is the face
    vertex nearest the region's centroid, each next one the face vertex farthest (in 3D) from
    those chosen, so the points cover the face evenly at a spacing of about √(area / count).
    Deterministic: the same asset always gives the same vertices.

    Args:
        vertices: [V, 3] template vertices.
        face_mask: [V] bool, the face region (`SourceMesh.face_mask`).
        count: K ≥ 1 points, at most the number of face vertices.

    Returns:
        [K] int32 vertex indices, in the order chosen.

    Raises:
        ValueError: naming the argument that is out of range.
    """
    vertices = np.asarray(vertices, np.float64)
    face_mask = np.asarray(face_mask, bool)
    if vertices.ndim != 2 or vertices.shape[1] != 3 or face_mask.shape != vertices.shape[:1]:
        raise ValueError(f'dense_point_vertices: vertices must be [V, 3] and face_mask [V], got '
                         f'{vertices.shape} and {face_mask.shape}')
    candidates = np.nonzero(face_mask)[0]
    if not 1 <= int(count) <= candidates.size:
        raise ValueError(f'dense_point_vertices: count must be in [1, {candidates.size}] (the face '
                         f'vertices), got {count}')
    points = vertices[candidates]
    chosen = [int(np.argmin(np.linalg.norm(points - points.mean(axis=0), axis=1)))]
    distance = np.linalg.norm(points - points[chosen[0]], axis=1)
    for _ in range(int(count) - 1):
        chosen.append(int(np.argmax(distance)))
        distance = np.minimum(distance, np.linalg.norm(points - points[chosen[-1]], axis=1))
    return candidates[chosen].astype(np.int32)
