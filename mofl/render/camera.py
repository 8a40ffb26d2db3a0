"""Rigid head pose Φ and full-perspective camera Π (paper §3.3): u = Π(Φ(v)).

Conventions (BUILD_NOTES.md "Coordinates and units"): camera space = world space, camera at the
origin looking down −z, y up; depth d = −z > 0 in front of the camera; pixel coordinates (u, v) with
the origin at the top-left image corner, u right, v down, pixel (row r, column c) centred at (c +
0.5, r + 0.5):

    u = c_x + f_x · x / d,    v = c_y − f_y · y / d.

Default intrinsics, for the 240×240 training crop: f_x = f_y = 1000 px and the principal point at
the crop centre (120, 120). That is a 13.7° field of view (the crop of a face filmed with an
ordinary lens: a ≥ 200 px face crop taken from HD video and resized to 240 px). With it a face of
about 200 mm (chin to hairline) spans about 200 px at a depth of 1000 mm, so
`DEFAULT_DEPTH_MM` = 1000 is the depth at which the face fills the crop; at 600 mm it would
overflow it. Every function takes the intrinsics as arguments (a `Camera`), so other crops and
lenses only need another `Camera`.
"""
import dataclasses
from typing import Tuple, Union

import numpy as np
import tensorflow as tf
from tensorflow_graphics.geometry.transformation import rotation_matrix_3d
from tensorflow_graphics.util import shape as shape_lib

from mofl import landmarks as landmark_layout
from mofl import paper_constants

DEFAULT_IMAGE_SIZE = (paper_constants.IMAGE_SIZE, paper_constants.IMAGE_SIZE)
DEFAULT_FOCAL_LENGTH_PX = 1000.0
DEFAULT_DEPTH_MM = 1000.0
# The training crop's side relative to the longer side of the face's 2D landmark box.
LANDMARK_CROP_SCALE = landmark_layout.CROP_SCALE
# Depth below which projection clamps d, so points at or behind the camera plane give large but
# finite pixel coordinates instead of inf/NaN (they are masked as out-of-image downstream).
MIN_DEPTH_MM = 1.0


def crop_focal_length(crop_size):
    """Focal length (pixels) of a square crop of side `crop_size` with the field of view of the
    240-pixel training crop at f = 1000 px: smaller crops are the same picture at a lower
    resolution, so every angle, depth and placement stays the same."""
    return DEFAULT_FOCAL_LENGTH_PX * float(crop_size) / float(DEFAULT_IMAGE_SIZE[1])


Scalar = Union[float, tf.Tensor]


def depth_filling_crop(landmark_extent_mm, focal_length=DEFAULT_FOCAL_LENGTH_PX,
                       crop_size=DEFAULT_IMAGE_SIZE[1], crop_scale=LANDMARK_CROP_SCALE):
    """Depth (mm) at which a face fills the training crop the way the data's crops are cut.

    A frontal face whose 2D landmark box has longer side `landmark_extent_mm` spans
    crop_size / crop_scale pixels at depth f · crop_scale · extent / crop_size.

    Args:
        landmark_extent_mm: longer side of the landmarks' x-y bounding box, mm (> 0).
        focal_length: pixels.
        crop_size: crop side, pixels.
        crop_scale: crop side / landmark box side.

    Returns:
        float, mm.
    """
    if not landmark_extent_mm > 0:
        raise ValueError(f'landmark_extent_mm must be > 0, got {landmark_extent_mm}')
    return float(focal_length) * float(crop_scale) * float(landmark_extent_mm) / float(crop_size)


def frontal_face_placement(landmark_points, focal_length=DEFAULT_FOCAL_LENGTH_PX,
                           crop_size=DEFAULT_IMAGE_SIZE[1], crop_scale=LANDMARK_CROP_SCALE):
    """Where a frontal face sits in the data's crops: its landmark-box centre and the depth.

    The synthetic data puts each face's landmark-box centre at that depth on the optical axis
    (plus jitter); the untrained network starts there (`model.initial_translation_for`).

    Args:
        landmark_points: [L, 3] the face's landmark positions in model space, mm.
        focal_length, crop_size, crop_scale: as in `depth_filling_crop`.

    Returns:
        (centre [3] mm in the points' dtype, depth float mm).
    """
    points = np.asarray(landmark_points)
    centre = 0.5 * (points.min(0) + points.max(0))
    extent = float((points.max(0)[:2] - points.min(0)[:2]).max())
    return centre, depth_filling_crop(extent, focal_length, crop_size, crop_scale)


@dataclasses.dataclass(frozen=True)
class Camera:
    """Pinhole intrinsics in pixels, plus the image size they refer to.

    Each intrinsic is a Python float (shared by the batch) or a tensor of shape [B] (one camera
    per batch element).

    Attributes:
        focal_x, focal_y: focal lengths f_x, f_y in pixels.
        principal_x, principal_y: principal point c_x, c_y in pixels (image centre = W/2, H/2).
        image_size: (H, W) in pixels.
    """
    focal_x: Scalar = DEFAULT_FOCAL_LENGTH_PX
    focal_y: Scalar = DEFAULT_FOCAL_LENGTH_PX
    principal_x: Scalar = DEFAULT_IMAGE_SIZE[1] / 2.0
    principal_y: Scalar = DEFAULT_IMAGE_SIZE[0] / 2.0
    image_size: Tuple[int, int] = DEFAULT_IMAGE_SIZE

    @classmethod
    def crop(cls, crop_size=DEFAULT_IMAGE_SIZE[1]):
        """The square training crop of side `crop_size` (`crop_focal_length`)."""
        return cls.centered((int(crop_size), int(crop_size)), crop_focal_length(crop_size))

    @classmethod
    def centered(cls, image_size=DEFAULT_IMAGE_SIZE, focal_length=DEFAULT_FOCAL_LENGTH_PX):
        """A camera with square pixels and the principal point at the image centre."""
        height, width = image_size
        return cls(focal_x=focal_length, focal_y=focal_length, principal_x=width / 2.0,
                   principal_y=height / 2.0, image_size=(int(height), int(width)))


def _column(value, dtype):
    """A scalar or [B] intrinsic as a [B or 1, 1] tensor that broadcasts against [B, V]."""
    return tf.reshape(tf.cast(value, dtype), [-1, 1])


def rotation_from_euler(euler_angles):
    """Rotation matrices R = Rz(roll)·Ry(yaw)·Rx(pitch) (tensorflow-graphics `from_euler`).

    Args:
        euler_angles: [B, 3] radians, [pitch (about x), yaw (about y), roll (about z)].

    Returns:
        [B, 3, 3] rotation matrices.
    """
    euler_angles = tf.convert_to_tensor(euler_angles)
    shape_lib.check_static(euler_angles, has_rank=2, has_dim_equals=(-1, 3),
                           tensor_name='euler_angles')
    return rotation_matrix_3d.from_euler(euler_angles)


def _check_points(points, name, channels=3):
    """Checks a [B, N, channels] tensor (error naming it)."""
    shape_lib.check_static(points, has_rank=3, has_dim_equals=(-1, channels), tensor_name=name)


def _check_pose(points, rotation, translation, points_name):
    """Checks rotation [B, 3, 3] and translation [B, 3] (or None) against points [B, V, 3]."""
    _check_points(points, points_name)
    shape_lib.check_static(rotation, has_rank=3, has_dim_equals=((-1, 3), (-2, 3)),
                           tensor_name='rotation')
    tensors, names = [points, rotation], [points_name, 'rotation']
    if translation is not None:
        shape_lib.check_static(translation, has_rank=2, has_dim_equals=(-1, 3),
                               tensor_name='translation')
        tensors.append(translation)
        names.append('translation')
    shape_lib.compare_batch_dimensions(tensors, last_axes=0, broadcast_compatible=False,
                                       tensor_names=names)


def rigid_transform(points, rotation, translation):
    """Applies the rigid head pose Φ(v) = R·v + t (§3.3).

    Args:
        points: [B, V, 3] model-space points in mm.
        rotation: [B, 3, 3] rotation matrices.
        translation: [B, 3] translations in mm.

    Returns:
        [B, V, 3] camera-space points in mm.
    """
    points = tf.convert_to_tensor(points)
    rotation = tf.cast(rotation, points.dtype)
    translation = tf.cast(translation, points.dtype)
    _check_pose(points, rotation, translation, 'points')
    rotated = tf.linalg.matmul(points, rotation, transpose_b=True)
    return rotated + translation[:, tf.newaxis, :]


def rotate_directions(directions, rotation):
    """Applies only R to direction vectors (normals), [B, V, 3] → [B, V, 3]."""
    directions = tf.convert_to_tensor(directions)
    rotation = tf.cast(rotation, directions.dtype)
    _check_pose(directions, rotation, None, 'directions')
    return tf.linalg.matmul(directions, rotation, transpose_b=True)


def project(points_camera, camera=Camera(), min_depth=MIN_DEPTH_MM):
    """Full-perspective projection Π of camera-space points to pixel coordinates (§3.3).

    Args:
        points_camera: [B, V, 3] camera-space points in mm (in front of the camera: z < 0).
        camera: the intrinsics; each may be a float or a [B] tensor.
        min_depth: depths d = −z are clamped to at least this (mm).

    Returns:
        [B, V, 2] pixel coordinates (u, v).
    """
    return to_screen_space(points_camera, camera, min_depth)[..., :2]


def to_screen_space(points_camera, camera=Camera(), min_depth=MIN_DEPTH_MM):
    """Pixel coordinates plus positive depth, the vertex format of the rasterizer.

    Args:
        points_camera: [B, V, 3] camera-space points in mm.
        camera: the intrinsics.
        min_depth: depths d = −z are clamped to at least this (mm) before dividing.

    Returns:
        [B, V, 3] (u, v, d): pixel coordinates and the unclamped depth d = −z in mm.
    """
    points_camera = tf.convert_to_tensor(points_camera)
    _check_points(points_camera, 'points_camera')
    dtype = points_camera.dtype
    x, y, z = tf.unstack(points_camera, axis=-1)
    depth = -z
    safe_depth = tf.maximum(depth, tf.cast(min_depth, dtype))
    u = _column(camera.principal_x, dtype) + _column(camera.focal_x, dtype) * x / safe_depth
    v = _column(camera.principal_y, dtype) - _column(camera.focal_y, dtype) * y / safe_depth
    return tf.stack([u, v, depth], axis=-1)


def unproject(pixels, depth, camera=Camera()):
    """Inverse of `project`: the camera-space point at pixel (u, v) and depth d.

    Args:
        pixels: [B, N, 2] pixel coordinates (u, v).
        depth: [B, N] positive depths d in mm.
        camera: the intrinsics.

    Returns:
        [B, N, 3] camera-space points (x, y, −d).
    """
    pixels = tf.convert_to_tensor(pixels)
    dtype = pixels.dtype
    depth = tf.cast(depth, dtype)
    _check_points(pixels, 'pixels', channels=2)
    shape_lib.check_static(depth, has_rank=2, tensor_name='depth')
    shape_lib.compare_batch_dimensions([pixels, depth], last_axes=1, broadcast_compatible=False,
                                       tensor_names=('pixels', 'depth'))
    u, v = tf.unstack(pixels, axis=-1)
    x = (u - _column(camera.principal_x, dtype)) * depth / _column(camera.focal_x, dtype)
    y = -(v - _column(camera.principal_y, dtype)) * depth / _column(camera.focal_y, dtype)
    return tf.stack([x, y, -depth], axis=-1)


def model_to_screen(vertices_model, rotation_euler, translation, camera=Camera()):
    """Φ then Π: model-space vertices to screen space (u, v, d) and camera-space points.

    Args:
        vertices_model: [B, V, 3] model-space vertices in mm.
        rotation_euler: [B, 3] Euler angles (see `rotation_from_euler`).
        translation: [B, 3] translation in mm.
        camera: the intrinsics.

    Returns:
        (screen [B, V, 3] (u, v, d), points_camera [B, V, 3], rotation [B, 3, 3]).
    """
    vertices_model = tf.convert_to_tensor(vertices_model)
    _check_points(vertices_model, 'vertices_model')
    rotation = rotation_from_euler(tf.cast(rotation_euler, vertices_model.dtype))
    points_camera = rigid_transform(vertices_model, rotation, translation)
    return to_screen_space(points_camera, camera), points_camera, rotation
