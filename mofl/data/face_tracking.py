"""Per-frame face landmarks for preprocessing: landmark confidences and square crops (paper
§3.1) around the 66 landmarks of `mofl.facemesh.FaceTracker`, and the same detect-and-crop step
for reconstruction (`crop_face`).

Confidence rule. Legacy FaceMesh reports no per-point score, so each landmark's confidence is

    c_i = s · clip(0.5 + n_i^cam_z, 0, 1),

where s is the face-detection score of the frame (the frame-level "landmark detection
confidence" of §3.1; frames with s below `--min_face_confidence` are dropped), and n_i^cam = R·n_i
is the template normal of landmark i rotated by the frame's head-pose estimate R (PnP, see
`head_pose`). n_i^cam_z is its component towards the camera, so a point whose surface faces the
camera (z ≥ 0.5) keeps c_i = s, a point seen edge-on gets s/2, and points on the far side of a
turned head (the hidden half of the jaw line) fall to 0. The template normals are approximated
by the direction from a head centre to each landmark (`landmark_normals`), so no mesh is needed.

Dense points (FaceMesh's 468, stored by `tools.preprocess` beside the 66): each has a fixed
surface point, so it must be seen to be of any use, and FaceMesh places points it cannot see on a
learned average face. Their confidence is

    c_j = s · clip((n_j^cam_z − 0.1) / 0.3, 0, 1)     (`DENSE_FACING_RANGE` = (0.1, 0.4)),

with n_j the vertex normal of FaceMesh's face (`mediapipe_normals`): full weight where the surface
faces the camera within ~66°, none beyond ~84° (grazing or turned away).
"""
import dataclasses
from typing import Optional, Tuple

import cv2
import numpy as np

from mofl import landmarks as landmark_layout

# Crop side relative to the landmarks' bounding box (`mofl.landmarks.CROP_SCALE`).
DEFAULT_CROP_SCALE = landmark_layout.CROP_SCALE
# (n_z at which a dense point's confidence starts to rise, n_z at which it is full).
DENSE_FACING_RANGE = (0.1, 0.4)


def landmark_normals(landmarks_3d):
    """Approximate outward template normals of the 66 landmarks.

    The head is treated as a rounded surface around a centre that lies behind the landmark
    centroid by the jaw width (landmarks 0 to 16), so a normal is the unit vector from that
    centre to the landmark. With the ICT template this keeps every landmark at full confidence
    for a frontal face and gives the far end of the jaw line 0.59 at 45° yaw, 0.35 at 60° and
    0.11 at 75° (the contour landmarks slide along the silhouette, §3.5, so they are down-weighted
    gently).

    Args:
        landmarks_3d: [66, 3] template landmarks, mm, model space (z towards the viewer).

    Returns:
        [66, 3] unit vectors.
    """
    pts = np.asarray(landmarks_3d, np.float64)
    jaw_width = np.linalg.norm(pts[16] - pts[0])
    centre = pts.mean(axis=0) - np.array([0.0, 0.0, jaw_width])
    d = pts - centre
    return d / np.linalg.norm(d, axis=-1, keepdims=True)


def landmark_confidence(score, rotation, normals):
    """Per-landmark confidence c_i = s · clip(0.5 + (R·n_i)_z, 0, 1) (module docstring).

    Args:
        score: frame detection score s.
        rotation: [3, 3] head rotation (model → camera), or None (then c_i = s).
        normals: [66, 3] template normals.

    Returns:
        [66] float32 in [0, 1].
    """
    if rotation is None:
        return np.full(len(normals), score, np.float32)
    facing = (np.asarray(normals) @ np.asarray(rotation).T)[:, 2]
    return (score * np.clip(0.5 + facing, 0.0, 1.0)).astype(np.float32)


def mediapipe_normals():
    """Outward unit vertex normals [468, 3] of FaceMesh's face (model axes, z towards the viewer):
    area-weighted triangle normals of `mediapipe_correspondence.face_mesh_template`."""
    from mofl.facemodel import geometry  # pylint: disable=import-outside-toplevel
    from mofl.facemodel import mediapipe_correspondence  # pylint: disable=import-outside-toplevel
    return geometry.vertex_normals(*mediapipe_correspondence.face_mesh_template())


def dense_point_confidence(score, rotation, normals, facing_range=DENSE_FACING_RANGE):
    """Per-point confidence of FaceMesh's dense points (module docstring).

    Args:
        score: frame detection score s.
        rotation: [3, 3] head rotation (model → camera).
        normals: [468, 3] `mediapipe_normals()`.
        facing_range: (n_z where the confidence leaves 0, n_z where it reaches s).

    Returns:
        [468] float32 in [0, 1].
    """
    facing = (np.asarray(normals) @ np.asarray(rotation).T)[:, 2]
    low, high = facing_range
    return (score * np.clip((facing - low) / (high - low), 0.0, 1.0)).astype(np.float32)


def square_crop_box(landmarks, scale=DEFAULT_CROP_SCALE):
    """A square around the landmarks: centred on their bounding box, side = scale × its longer
    side.

    Args:
        landmarks: [L, 2] pixels.
        scale: side relative to the landmark bounding box.

    Returns:
        [3] float (x0, y0, side) in pixels: the square [x0, x0+side] × [y0, y0+side].
    """
    lo, hi = landmarks.min(axis=0), landmarks.max(axis=0)
    side = float(scale * np.max(hi - lo))
    centre = (lo + hi) / 2.0
    return np.array([centre[0] - side / 2.0, centre[1] - side / 2.0, side], np.float64)


def crop_and_resize(image, box, size):
    """Cuts the square `box` out of `image` and resizes it to size×size (zero padding outside).

    Args:
        image: [H, W, C] uint8.
        box: (x0, y0, side) in pixels.
        size: output side in pixels.

    Returns:
        [size, size, C] uint8.
    """
    x0, y0, side = box
    s = size / side
    # Continuous coordinates map as u' = (u − x0)·s; OpenCV warps pixel indices, whose centres
    # sit at u − 0.5, hence the half-pixel terms.
    matrix = np.array([[s, 0.0, (0.5 - x0) * s - 0.5],
                       [0.0, s, (0.5 - y0) * s - 0.5]])
    sigma = (1.0 / s - 1.0) / 2.0
    if sigma > 0.3:
        # warpAffine has no area filter; blur first to limit aliasing when shrinking.
        image = cv2.GaussianBlur(image, (0, 0), sigmaX=sigma, sigmaY=sigma)
    return cv2.warpAffine(image, matrix, (size, size), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def to_crop_coordinates(points, box, size):
    """Maps [L, 2] image pixels into the size×size crop of `box`."""
    x0, y0, side = box
    return ((np.asarray(points, np.float64) - np.array([x0, y0])) * (size / side)).astype(
        np.float32)


def crop_to_image_coordinates(points, box, size):
    """Inverse of `to_crop_coordinates`: [L, 2] pixels of the size×size crop of `box` -> image
    pixels (float64)."""
    x0, y0, side = box
    return np.asarray(points, np.float64) * (side / size) + np.array([x0, y0])


@dataclasses.dataclass
class CroppedFace:
    """One input frame with a detected face, cropped as in preprocessing.

    Attributes:
        name: output file stem.
        source: the input file.
        frame_index: frame number in a video (None for an image).
        crop: [S, S, 3] uint8 RGB model input.
        box: [3] (x0, y0, side) of the crop in input pixels.
        landmarks_image: [66, 2] detected landmarks, input pixels.
        landmarks_crop: [66, 2] the same in crop pixels.
        score: face-detection score.
        input_size: (H, W) of the input frame.
    """
    name: str
    source: str
    frame_index: Optional[int]
    crop: np.ndarray
    box: np.ndarray
    landmarks_image: np.ndarray
    landmarks_crop: np.ndarray
    score: float
    input_size: Tuple[int, int]


def crop_face(tracker, image_rgb, crop_scale, crop_size, name, source, frame_index=None):
    """Detects the face of one frame and crops it exactly as `mofl.data.preprocessing` does.

    Args:
        tracker: a `mofl.facemesh.FaceTracker`.
        image_rgb: [H, W, 3] uint8 RGB frame.
        crop_scale: crop side relative to the landmarks' bounding box (`square_crop_box`).
        crop_size: S, the crop's side in pixels.
        name, source, frame_index: stored in the CroppedFace.

    Returns:
        CroppedFace, or None when no face is found.
    """
    face = tracker.detect(image_rgb)
    if face is None:
        return None
    box = square_crop_box(face.landmarks, crop_scale)
    return CroppedFace(
        name=name, source=source, frame_index=frame_index,
        crop=crop_and_resize(image_rgb, box, crop_size), box=box,
        landmarks_image=np.asarray(face.landmarks, np.float32),
        landmarks_crop=to_crop_coordinates(face.landmarks, box, crop_size),
        score=float(face.score), input_size=tuple(int(s) for s in image_rgb.shape[:2]))
