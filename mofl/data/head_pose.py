"""Head pose from 2D landmarks: PnP against 3D template landmarks, Euler angles (paper §3.1).

The pose is only used to pick pose-diverse frames (§3.1) and is stored in the records as a
per-frame estimate. Conventions follow BUILD_NOTES.md: model space x right (image right), y up,
z towards the viewer, in mm; camera at the origin looking down −z with y up; Euler angles
(pitch about x, yaw about y, roll about z) with R = Rz(roll)·Ry(yaw)·Rx(pitch).

OpenCV's camera looks down +z with y down; the two camera frames differ by C = diag(1, −1, −1),
so a PnP solution (R_cv, t_cv) becomes R = C·R_cv, t = C·t_cv.
"""
import dataclasses
import os
from typing import Optional

import cv2
import numpy as np

_CV_TO_GL = np.diag([1.0, -1.0, -1.0])


@dataclasses.dataclass
class HeadPose:
    """A rigid head pose in the BUILD_NOTES camera convention.

    Attributes:
        rotation: [3, 3] R (model → camera).
        translation: [3] t in mm (z < 0 in front of the camera).
        euler: [3] (pitch, yaw, roll) in radians.
        reprojection_error: mean landmark reprojection error in pixels.
    """
    rotation: np.ndarray
    translation: np.ndarray
    euler: np.ndarray
    reprojection_error: float


def euler_to_rotation(euler):
    """R = Rz(roll)·Ry(yaw)·Rx(pitch).

    Args:
        euler: [..., 3] (pitch, yaw, roll) radians.

    Returns:
        [..., 3, 3] rotation matrices.
    """
    euler = np.asarray(euler, np.float64)
    cx, cy, cz = np.cos(euler[..., 0]), np.cos(euler[..., 1]), np.cos(euler[..., 2])
    sx, sy, sz = np.sin(euler[..., 0]), np.sin(euler[..., 1]), np.sin(euler[..., 2])
    rows = [
        [cz * cy, cz * sy * sx - sz * cx, cz * sy * cx + sz * sx],
        [sz * cy, sz * sy * sx + cz * cx, sz * sy * cx - cz * sx],
        [-sy, cy * sx, cy * cx],
    ]
    return np.stack([np.stack(r, axis=-1) for r in rows], axis=-2)


def rotation_to_euler(rotation):
    """Inverse of `euler_to_rotation` (yaw in [−π/2, π/2]).

    Args:
        rotation: [..., 3, 3].

    Returns:
        [..., 3] (pitch, yaw, roll) radians.
    """
    r = np.asarray(rotation, np.float64)
    # R[2, 0] = −sin(yaw); R[2, 1:] = cos(yaw)·(sin(pitch), cos(pitch));
    # R[:2, 0] = cos(yaw)·(cos(roll), sin(roll)).
    yaw = np.arctan2(-r[..., 2, 0], np.hypot(r[..., 2, 1], r[..., 2, 2]))
    pitch = np.arctan2(r[..., 2, 1], r[..., 2, 2])
    roll = np.arctan2(r[..., 1, 0], r[..., 0, 0])
    return np.stack([pitch, yaw, roll], axis=-1)


def default_focal_length(image_height, image_width):
    """Focal length in pixels when the camera is unknown: the larger image side (≈ 53° FOV)."""
    return float(max(image_height, image_width))


def estimate_head_pose(landmarks_2d, landmarks_3d, image_size, focal_length=None,
                       weights=None) -> Optional[HeadPose]:
    """Solves PnP for the head pose.

    Args:
        landmarks_2d: [L, 2] (u, v) in pixels (origin top-left, v down).
        landmarks_3d: [L, 3] template positions in mm, model space.
        image_size: (height, width) of the image the landmarks are in; the principal point is
            its centre.
        focal_length: pixels; default `default_focal_length`.
        weights: optional [L] confidences; points below 0.2 are left out of the fit.

    Returns:
        A `HeadPose`, or None when PnP fails or puts the head behind the camera.
    """
    pts2 = np.asarray(landmarks_2d, np.float64)
    pts3 = np.asarray(landmarks_3d, np.float64)
    if weights is not None:
        keep = np.asarray(weights) >= 0.2
        if keep.sum() >= 6:
            pts2, pts3 = pts2[keep], pts3[keep]
    height, width = image_size
    f = focal_length or default_focal_length(height, width)
    camera = np.array([[f, 0, width / 2.0], [0, f, height / 2.0], [0, 0, 1]])
    # The same intrinsics in our pixel convention (BUILD_NOTES) and OpenCV's y-down camera; only
    # the camera frame differs (C above), so pixel coordinates are passed unchanged.
    pts2_cv = pts2
    ok, rvec, tvec = cv2.solvePnP(pts3, pts2_cv, camera, None, flags=cv2.SOLVEPNP_EPNP)
    if not ok:
        return None
    ok, rvec, tvec = cv2.solvePnP(pts3, pts2_cv, camera, None, rvec, tvec,
                                  useExtrinsicGuess=True, flags=cv2.SOLVEPNP_ITERATIVE)
    if not ok or tvec[2, 0] <= 0:
        return None
    projected, _ = cv2.projectPoints(pts3, rvec, tvec, camera, None)
    error = float(np.mean(np.linalg.norm(projected[:, 0] - pts2_cv, axis=-1)))
    rotation = _CV_TO_GL @ cv2.Rodrigues(rvec)[0]
    translation = _CV_TO_GL @ tvec[:, 0]
    return HeadPose(rotation=rotation, translation=translation,
                    euler=rotation_to_euler(rotation), reprojection_error=error)


def project(points, rotation, translation, focal_length, image_size):
    """Perspective projection Π of BUILD_NOTES.md: u = cx + f·x/d, v = cy − f·y/d, d = −z.

    Args:
        points: [L, 3] model-space points (mm).
        rotation: [3, 3]; translation: [3].
        focal_length: pixels; image_size: (height, width), principal point at the centre.

    Returns:
        [L, 2] (u, v) pixels.
    """
    cam = np.asarray(points) @ np.asarray(rotation).T + np.asarray(translation)
    depth = -cam[:, 2]
    height, width = image_size
    return np.stack([width / 2.0 + focal_length * cam[:, 0] / depth,
                     height / 2.0 - focal_length * cam[:, 1] / depth], axis=-1)


def load_template_landmarks(path=None):
    """The 66 template landmark positions [66, 3] (mm, model space) used for PnP.

    Args:
        path: a face-asset `.npz` (`mofl.facemodel.assets.FaceAssets`: the template vertices at
            its landmark indices) or an `.npz` with an array `landmarks_3d` [66, 3] in mm.
            None: the default asset of `mofl.facemodel.default_assets`.

    Raises:
        FileNotFoundError / ValueError naming the file and the reason.
    """
    if path is None:
        from mofl.facemodel.default_assets import load_default_assets  # pylint: disable=g-import-not-at-top
        mesh = load_default_assets().mesh
        return np.asarray(mesh.vertices[mesh.landmark_indices], np.float64)
    if not os.path.exists(path):
        raise FileNotFoundError(f'{path}: no such 3D-landmark file')
    with np.load(path, allow_pickle=False) as data:
        keys = set(data.files)
        if 'landmarks_3d' in keys:
            landmarks = np.asarray(data['landmarks_3d'], np.float64)
            if landmarks.shape != (66, 3):
                raise ValueError(f'{path}: landmarks_3d has shape {landmarks.shape}, want (66, 3)')
            return landmarks
    from mofl.facemodel.assets import FaceAssets  # pylint: disable=g-import-not-at-top
    mesh = FaceAssets.load(path).mesh
    return np.asarray(mesh.vertices[mesh.landmark_indices], np.float64)
