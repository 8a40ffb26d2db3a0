"""The training-record schema: one `tf.train.Example` per multi-frame sample (paper §3.1).

A multi-frame sample F_ℓ holds M frames of one person from one clip. Every writer
(`tools.preprocess` for videos, `tools.make_synthetic` for the ground-truth benchmark) goes through
`encode_sample`, every reader through `parse_sample` (inside tf.data) or `decode_sample` (NumPy).

Feature keys (the one place they are documented; M = frames, L = 66 landmarks):

| key                          | type           | content                                          |
|------------------------------|----------------|--------------------------------------------------|
| `schema_version`             | int64 [1]      | `SCHEMA_VERSION` of the writer                   |
| `num_frames`                 | int64 [1]      | M                                                |
| `image_size`                 | int64 [2]      | (height, width) of every frame, 240×240 in mofl  |
| `frames/jpeg`                | bytes [M]      | JPEG-encoded RGB frames                          |
| `frames/landmarks`           | float [M·L·2]  | [M, 66, 2] (u, v) in crop pixels (BUILD_NOTES)   |
| `frames/landmark_confidence` | float [M·L]    | [M, 66] in [0, 1]                                |
| `frames/pose`                | float [M·3]    | [M, 3] head pose estimate, Euler radians         |
|                              |                | (pitch, yaw, roll), R = Rz·Ry·Rx (BUILD_NOTES)   |
| `frames/index`               | int64 [M]      | frame number in the source video (−1: none)      |
| `frames/crop_box`            | float [M·3]    | [M, 3] crop (x0, y0, side) in source pixels      |
| `identity`                   | bytes [1]      | identity id, e.g. `id00012`                      |
| `clip`                       | bytes [1]      | clip id, e.g. `id00012/21Uxsk56VDQ/00001`        |
| `dense/vertices`             | int64 [K]      | optional: index of each dense 2D point in        |
|                              |                | `dense/space` (default: an asset vertex)         |
| `dense/space`                | bytes [1]      | optional: `asset_vertex` or `mediapipe468`       |
| `frames/dense_points`        | float [M·K·2]  | optional: [M, K, 2] (u, v) in crop pixels        |
| `frames/dense_confidence`    | float [M·K]    | optional: [M, K] in [0, 1] (0: not seen)         |
| `gt/names`                   | bytes [K]      | names of the optional ground-truth arrays        |
| `gt/<name>/values`           | float [n]      | one ground-truth array, flattened (row-major)    |
| `gt/<name>/shape`            | int64 [rank]   | its shape                                        |

Ground truth (synthetic data only) is generic: any float arrays by name. The synthetic benchmark
uses `gt_vertices` [V, 3] (identity + neutral expression mesh, mm, model space) and
`gt_expression_vertices` [M, V, 3] (the mesh of each frame with its expression, mm, model space).
Arrays whose leading axis is the frame axis are listed in `PER_FRAME_GROUND_TRUTH`.

Dense 2D points (optional; our deviation, docs/data.md "Dense 2D points"): K more detected points
per frame besides the 66 landmarks. Their indices live in one of two spaces (`dense/space`):
`asset_vertex` (`DENSE_SPACE_ASSET`, the default when the key is absent): each is a vertex of the
asset the records were made for (`tools.make_synthetic --dense_points=K`); `mediapipe468`
(`DENSE_SPACE_MEDIAPIPE`): each is a mediapipe FaceMesh point (`tools.preprocess`), which any asset
maps onto its own vertices through `SourceMesh.mediapipe_vertices`. A record without dense points
has K = 0.
"""
from typing import Mapping, Optional, Sequence, Union

import cv2
import numpy as np
import tensorflow as tf

from mofl import paper_constants

SCHEMA_VERSION = 1
NUM_LANDMARKS = 66
IMAGE_SIZE = paper_constants.IMAGE_SIZE

KEY_VERSION = 'schema_version'
KEY_NUM_FRAMES = 'num_frames'
KEY_IMAGE_SIZE = 'image_size'
KEY_JPEG = 'frames/jpeg'
KEY_LANDMARKS = 'frames/landmarks'
KEY_CONFIDENCE = 'frames/landmark_confidence'
KEY_POSE = 'frames/pose'
KEY_FRAME_INDEX = 'frames/index'
KEY_CROP_BOX = 'frames/crop_box'
KEY_IDENTITY = 'identity'
KEY_CLIP = 'clip'
KEY_GT_NAMES = 'gt/names'
KEY_DENSE_VERTICES = 'dense/vertices'
KEY_DENSE_POINTS = 'frames/dense_points'
KEY_DENSE_CONFIDENCE = 'frames/dense_confidence'
KEY_DENSE_SPACE = 'dense/space'
DENSE_SPACE_ASSET = 'asset_vertex'
DENSE_SPACE_MEDIAPIPE = 'mediapipe468'
DENSE_SPACES = (DENSE_SPACE_ASSET, DENSE_SPACE_MEDIAPIPE)

GT_VERTICES = 'gt_vertices'
GT_EXPRESSION_VERTICES = 'gt_expression_vertices'
GT_LANDMARKS = 'gt_landmarks'   # [M, 66, 2] true landmarks in crop pixels (synthetic videos)
# Ground-truth arrays whose leading axis is the frame axis M (readers cut them with the frames).
PER_FRAME_GROUND_TRUTH = (GT_EXPRESSION_VERTICES, GT_LANDMARKS)


class RecordError(ValueError):
    """Raised for a record that does not follow this schema (wrong version, bad shapes)."""


def gt_values_key(name):
    return f'gt/{name}/values'


def gt_shape_key(name):
    return f'gt/{name}/shape'


def version_mismatch_message(found):
    """The error text for a record written with another schema version."""
    return (f'mofl record schema version mismatch: the record has version {found}, this reader '
            f'expects version {SCHEMA_VERSION}; rewrite the records with the current '
            'tools.preprocess / tools.make_synthetic')


def encode_jpeg(image_rgb, quality=95):
    """Encodes one RGB uint8 image [H, W, 3] as JPEG bytes."""
    ok, buf = cv2.imencode('.jpg', cv2.cvtColor(np.asarray(image_rgb), cv2.COLOR_RGB2BGR),
                           [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise RecordError('JPEG encoding failed')
    return buf.tobytes()


def decode_jpeg(data):
    """Decodes JPEG bytes to an RGB uint8 image [H, W, 3]."""
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if bgr is None:
        raise RecordError('not a decodable JPEG frame')
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def encode_sample(frames: Union[np.ndarray, Sequence[bytes]],
                  landmarks: np.ndarray,
                  landmark_confidence: np.ndarray,
                  pose: np.ndarray,
                  identity: str,
                  clip: str,
                  frame_indices: Optional[Sequence[int]] = None,
                  crop_boxes: Optional[np.ndarray] = None,
                  ground_truth: Optional[Mapping[str, np.ndarray]] = None,
                  jpeg_quality: int = 95,
                  schema_version: int = SCHEMA_VERSION,
                  dense_points: Optional[np.ndarray] = None,
                  dense_confidence: Optional[np.ndarray] = None,
                  dense_vertices: Optional[Sequence[int]] = None,
                  dense_space: str = DENSE_SPACE_ASSET) -> bytes:
    """Serialises one multi-frame sample as a `tf.train.Example`.

    Args:
        frames: [M, H, W, 3] uint8 RGB frames (an array or a list of M [H, W, 3] arrays), or a
            sequence of M JPEG-encoded frames (bytes), stored as they are.
        landmarks: [M, 66, 2] (u, v) in pixels of the frame (BUILD_NOTES.md
            "Coordinates and units").
        landmark_confidence: [M, 66] in [0, 1].
        pose: [M, 3] Euler angles (pitch, yaw, roll) in radians.
        identity: identity id (str).
        clip: clip id (str).
        frame_indices: optional [M] source frame numbers (default −1).
        crop_boxes: optional [M, 3] (x0, y0, side) of each crop in source pixels (default 0).
        ground_truth: optional {name: float array of any shape}, e.g. `gt_vertices` [V, 3].
        jpeg_quality: JPEG quality for uint8 frames.
        schema_version: only tests write anything but `SCHEMA_VERSION`.
        dense_points: optional [M, K, 2] more detected points (u, v) in pixels of the frame;
            needs `dense_confidence` [M, K] and `dense_vertices` [K] (the index of each in
            `dense_space`).
        dense_space: `DENSE_SPACE_ASSET` (asset vertices) or `DENSE_SPACE_MEDIAPIPE` (FaceMesh
            points 0..467).

    Returns:
        The serialised `tf.train.Example` (bytes).

    Raises:
        RecordError: on inconsistent shapes.
    """
    if not isinstance(frames, np.ndarray) and len(frames) and isinstance(frames[0], np.ndarray):
        frames = np.stack(frames)
    if isinstance(frames, np.ndarray):
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
            raise RecordError(f'frames must be [M, H, W, 3] uint8, got {frames.shape} '
                              f'{frames.dtype}')
        jpegs = [encode_jpeg(f, jpeg_quality) for f in frames]
        height, width = frames.shape[1:3]
    else:
        jpegs = [bytes(b) for b in frames]
        if not jpegs:
            raise RecordError('a sample needs at least one frame')
        height, width = decode_jpeg(jpegs[0]).shape[:2]
    m = len(jpegs)
    landmarks = np.asarray(landmarks, np.float32)
    confidence = np.asarray(landmark_confidence, np.float32)
    pose = np.asarray(pose, np.float32)
    _check_shape(landmarks, (m, NUM_LANDMARKS, 2), 'landmarks')
    _check_shape(confidence, (m, NUM_LANDMARKS), 'landmark_confidence')
    _check_shape(pose, (m, 3), 'pose')
    if frame_indices is None:
        frame_indices = [-1] * m
    frame_indices = np.asarray(frame_indices, np.int64)
    _check_shape(frame_indices, (m,), 'frame_indices')
    crop_boxes = (np.zeros((m, 3), np.float32) if crop_boxes is None
                  else np.asarray(crop_boxes, np.float32))
    _check_shape(crop_boxes, (m, 3), 'crop_boxes')

    feature = {
        KEY_VERSION: _int64([schema_version]),
        KEY_NUM_FRAMES: _int64([m]),
        KEY_IMAGE_SIZE: _int64([height, width]),
        KEY_JPEG: _bytes(jpegs),
        KEY_LANDMARKS: _float(landmarks.reshape(-1)),
        KEY_CONFIDENCE: _float(confidence.reshape(-1)),
        KEY_POSE: _float(pose.reshape(-1)),
        KEY_FRAME_INDEX: _int64(frame_indices),
        KEY_CROP_BOX: _float(crop_boxes.reshape(-1)),
        KEY_IDENTITY: _bytes([identity.encode('utf-8')]),
        KEY_CLIP: _bytes([clip.encode('utf-8')]),
    }
    given = [x is not None for x in (dense_points, dense_confidence, dense_vertices)]
    if any(given) and not all(given):
        raise RecordError('dense_points, dense_confidence and dense_vertices go together')
    if all(given):
        dense_vertices = np.asarray(dense_vertices, np.int64)
        if dense_vertices.ndim != 1 or (dense_vertices < 0).any():
            raise RecordError(f'dense_vertices must be [K] vertex indices >= 0, got shape '
                              f'{dense_vertices.shape}')
        k = dense_vertices.shape[0]
        dense_points = np.asarray(dense_points, np.float32)
        dense_confidence = np.asarray(dense_confidence, np.float32)
        _check_shape(dense_points, (m, k, 2), 'dense_points')
        _check_shape(dense_confidence, (m, k), 'dense_confidence')
        if dense_space not in DENSE_SPACES:
            raise RecordError(f'dense_space must be one of {DENSE_SPACES}, got {dense_space!r}')
        if dense_space == DENSE_SPACE_MEDIAPIPE and k and dense_vertices.max() >= 468:
            raise RecordError('dense_vertices in mediapipe468 space must be FaceMesh points '
                              f'0..467, got {dense_vertices.max()}')
        feature[KEY_DENSE_VERTICES] = _int64(dense_vertices)
        feature[KEY_DENSE_SPACE] = _bytes([dense_space.encode('utf-8')])
        feature[KEY_DENSE_POINTS] = _float(dense_points.reshape(-1))
        feature[KEY_DENSE_CONFIDENCE] = _float(dense_confidence.reshape(-1))
    ground_truth = dict(ground_truth or {})
    feature[KEY_GT_NAMES] = _bytes([n.encode('utf-8') for n in sorted(ground_truth)])
    for name, value in ground_truth.items():
        if '/' in name:
            raise RecordError(f'ground-truth name {name!r} must not contain "/"')
        value = np.asarray(value, np.float32)
        feature[gt_values_key(name)] = _float(value.reshape(-1))
        feature[gt_shape_key(name)] = _int64(value.shape)
    example = tf.train.Example(features=tf.train.Features(feature=feature))
    return example.SerializeToString()


def _base_feature_spec():
    return {
        KEY_VERSION: tf.io.FixedLenFeature([], tf.int64, default_value=-1),
        KEY_NUM_FRAMES: tf.io.FixedLenFeature([], tf.int64, default_value=0),
        KEY_IMAGE_SIZE: tf.io.FixedLenFeature([2], tf.int64, default_value=[0, 0]),
        KEY_JPEG: tf.io.VarLenFeature(tf.string),
        KEY_LANDMARKS: tf.io.VarLenFeature(tf.float32),
        KEY_CONFIDENCE: tf.io.VarLenFeature(tf.float32),
        KEY_POSE: tf.io.VarLenFeature(tf.float32),
        KEY_FRAME_INDEX: tf.io.VarLenFeature(tf.int64),
        KEY_CROP_BOX: tf.io.VarLenFeature(tf.float32),
        KEY_IDENTITY: tf.io.FixedLenFeature([], tf.string, default_value=''),
        KEY_CLIP: tf.io.FixedLenFeature([], tf.string, default_value=''),
    }


def parse_sample(serialized, ground_truth_keys: Mapping[str, int] = None, decode_images=True,
                 num_dense_points=0):
    """Parses one serialised sample into tensors; usable inside `tf.data` (graph mode).

    The schema version is checked first; a mismatch raises `RecordError` in eager mode and fails
    a `tf.debugging` assertion with the same message (plus the version found) in graph mode.

    Args:
        serialized: scalar string tensor (or bytes), one record.
        ground_truth_keys: {name: rank} of the ground-truth arrays to return; every record must
            have them (see `inspect_sample` to read names and ranks off a record).
        decode_images: decode the JPEG frames (else `images` is omitted and `jpeg` returned).
        num_dense_points: K > 0 also returns the dense points, which every record must then
            have, K of them (see `inspect_sample`).

    Returns:
        dict with
        `images` [M, H, W, 3] float32 in [0, 1] (or `jpeg` [M] string),
        `landmarks` [M, 66, 2] float32, `landmark_confidence` [M, 66] float32,
        `pose` [M, 3] float32, `frame_index` [M] int64, `crop_box` [M, 3] float32,
        `identity` and `clip` scalar strings, `num_frames` scalar int32,
        and one float32 tensor per requested ground-truth name, reshaped to its stored shape;
        with `num_dense_points` K, also `dense_points` [M, K, 2], `dense_confidence` [M, K]
        float32 and `dense_vertices` [K] int32.
    """
    ground_truth_keys = dict(ground_truth_keys or {})
    spec = _base_feature_spec()
    if num_dense_points:
        for key, dtype in ((KEY_DENSE_VERTICES, tf.int64), (KEY_DENSE_POINTS, tf.float32),
                           (KEY_DENSE_CONFIDENCE, tf.float32)):
            spec[key] = tf.io.VarLenFeature(dtype)
    for name in ground_truth_keys:
        spec[gt_values_key(name)] = tf.io.VarLenFeature(tf.float32)
        spec[gt_shape_key(name)] = tf.io.VarLenFeature(tf.int64)
    parsed = tf.io.parse_single_example(serialized, spec)

    version = parsed[KEY_VERSION]
    if tf.executing_eagerly():
        if int(version) != SCHEMA_VERSION:
            raise RecordError(version_mismatch_message(int(version)))
        checks = []
    else:
        checks = [tf.debugging.Assert(
            tf.equal(version, SCHEMA_VERSION),
            [version_mismatch_message('shown next'), 'version found:', version])]
    with tf.control_dependencies(checks):
        m = tf.identity(tf.cast(parsed[KEY_NUM_FRAMES], tf.int32))
    dense = {k: tf.sparse.to_dense(parsed[k]) for k in
             (KEY_JPEG, KEY_LANDMARKS, KEY_CONFIDENCE, KEY_POSE, KEY_FRAME_INDEX, KEY_CROP_BOX)}
    height = tf.cast(parsed[KEY_IMAGE_SIZE][0], tf.int32)
    width = tf.cast(parsed[KEY_IMAGE_SIZE][1], tf.int32)
    out = {
        'landmarks': tf.reshape(dense[KEY_LANDMARKS], [m, NUM_LANDMARKS, 2]),
        'landmark_confidence': tf.reshape(dense[KEY_CONFIDENCE], [m, NUM_LANDMARKS]),
        'pose': tf.reshape(dense[KEY_POSE], [m, 3]),
        'frame_index': tf.reshape(dense[KEY_FRAME_INDEX], [m]),
        'crop_box': tf.reshape(dense[KEY_CROP_BOX], [m, 3]),
        'identity': parsed[KEY_IDENTITY],
        'clip': parsed[KEY_CLIP],
        'num_frames': m,
    }
    jpeg = tf.reshape(dense[KEY_JPEG], [m])
    if decode_images:
        images = tf.map_fn(lambda b: tf.io.decode_jpeg(b, channels=3), jpeg,
                           fn_output_signature=tf.TensorSpec([None, None, 3], tf.uint8))
        images = tf.reshape(images, [m, height, width, 3])
        out['images'] = tf.image.convert_image_dtype(images, tf.float32)
    else:
        out['jpeg'] = jpeg
    if num_dense_points:
        k = int(num_dense_points)
        vertices = tf.sparse.to_dense(parsed[KEY_DENSE_VERTICES])
        present = tf.debugging.assert_equal(
            tf.size(vertices), k, message=f'record lacks the {k} dense points asked for')
        with tf.control_dependencies([present]):
            out['dense_vertices'] = tf.reshape(tf.cast(vertices, tf.int32), [k])
            out['dense_points'] = tf.reshape(tf.sparse.to_dense(parsed[KEY_DENSE_POINTS]),
                                             [m, k, 2])
            out['dense_confidence'] = tf.reshape(
                tf.sparse.to_dense(parsed[KEY_DENSE_CONFIDENCE]), [m, k])
    for name, rank in ground_truth_keys.items():
        shape = tf.sparse.to_dense(parsed[gt_shape_key(name)])
        present = tf.debugging.assert_equal(
            tf.size(shape), rank,
            message=f'record lacks ground-truth array {name!r} of rank {rank}')
        with tf.control_dependencies([present]):
            values = tf.sparse.to_dense(parsed[gt_values_key(name)])
            out[name] = tf.reshape(values, tf.reshape(shape, [rank]))
            out[name].set_shape([None] * rank)
    return out


def decode_sample(serialized: bytes) -> dict:
    """Decodes one record to NumPy without TensorFlow graph machinery (tools, tests).

    Returns:
        dict with `images` [M, H, W, 3] uint8, `landmarks` [M, 66, 2], `landmark_confidence`
        [M, 66], `pose` [M, 3], `frame_index` [M], `crop_box` [M, 3], `identity`, `clip` (str),
        `schema_version` (int) and `ground_truth` {name: float32 array}; when the record has
        dense points, also `dense_points` [M, K, 2], `dense_confidence` [M, K],
        `dense_vertices` [K] int64 and `dense_space` (str).

    Raises:
        RecordError: wrong schema version or malformed record.
    """
    example = tf.train.Example.FromString(serialized)
    f = example.features.feature
    version = f[KEY_VERSION].int64_list.value[0] if KEY_VERSION in f else -1
    if version != SCHEMA_VERSION:
        raise RecordError(version_mismatch_message(version))
    m = int(f[KEY_NUM_FRAMES].int64_list.value[0])
    out = {
        'schema_version': int(version),
        'images': np.stack([decode_jpeg(b) for b in f[KEY_JPEG].bytes_list.value]),
        'landmarks': np.array(f[KEY_LANDMARKS].float_list.value, np.float32).reshape(
            m, NUM_LANDMARKS, 2),
        'landmark_confidence': np.array(f[KEY_CONFIDENCE].float_list.value,
                                        np.float32).reshape(m, NUM_LANDMARKS),
        'pose': np.array(f[KEY_POSE].float_list.value, np.float32).reshape(m, 3),
        'frame_index': np.array(f[KEY_FRAME_INDEX].int64_list.value, np.int64).reshape(m),
        'crop_box': np.array(f[KEY_CROP_BOX].float_list.value, np.float32).reshape(m, 3),
        'identity': f[KEY_IDENTITY].bytes_list.value[0].decode('utf-8'),
        'clip': f[KEY_CLIP].bytes_list.value[0].decode('utf-8'),
        'ground_truth': {},
    }
    for name in (n.decode('utf-8') for n in f[KEY_GT_NAMES].bytes_list.value):
        shape = tuple(f[gt_shape_key(name)].int64_list.value)
        out['ground_truth'][name] = np.array(f[gt_values_key(name)].float_list.value,
                                             np.float32).reshape(shape)
    if KEY_DENSE_VERTICES in f:
        vertices = np.array(f[KEY_DENSE_VERTICES].int64_list.value, np.int64)
        k = vertices.shape[0]
        out['dense_vertices'] = vertices
        out['dense_points'] = np.array(f[KEY_DENSE_POINTS].float_list.value,
                                       np.float32).reshape(m, k, 2)
        out['dense_confidence'] = np.array(f[KEY_DENSE_CONFIDENCE].float_list.value,
                                           np.float32).reshape(m, k)
        out['dense_space'] = _dense_space(f)
    return out


def inspect_sample(serialized: bytes) -> dict:
    """Reads the layout of one record without decoding its frames.

    Returns:
        dict with `schema_version`, `num_frames`, `image_size` (h, w), `ground_truth`
        {name: shape tuple}, `num_dense_points` (K, 0 for none), `dense_vertices` (their K
        indices, a tuple) and `dense_space` (the space of those indices, `DENSE_SPACES`).
    """
    f = tf.train.Example.FromString(serialized).features.feature
    names = [n.decode('utf-8') for n in f[KEY_GT_NAMES].bytes_list.value] \
        if KEY_GT_NAMES in f else []
    dense_vertices = (tuple(int(v) for v in f[KEY_DENSE_VERTICES].int64_list.value)
                      if KEY_DENSE_VERTICES in f else ())
    return {
        'schema_version': int(f[KEY_VERSION].int64_list.value[0]) if KEY_VERSION in f else -1,
        'num_frames': int(f[KEY_NUM_FRAMES].int64_list.value[0]) if KEY_NUM_FRAMES in f else 0,
        'image_size': tuple(f[KEY_IMAGE_SIZE].int64_list.value),
        'ground_truth': {n: tuple(f[gt_shape_key(n)].int64_list.value) for n in names},
        'num_dense_points': len(dense_vertices),
        'dense_vertices': dense_vertices,
        'dense_space': _dense_space(f),
    }


def _dense_space(feature):
    """The `dense/space` of a parsed record's features (`DENSE_SPACE_ASSET` when absent)."""
    if KEY_DENSE_SPACE not in feature:
        return DENSE_SPACE_ASSET
    return feature[KEY_DENSE_SPACE].bytes_list.value[0].decode('utf-8')


def _check_shape(array, shape, name):
    if tuple(array.shape) != tuple(shape):
        raise RecordError(f'{name} has shape {tuple(array.shape)}, want {tuple(shape)}')


def _int64(values):
    return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(v) for v in values]))


def _float(values):
    # A Python list of the float32 values: the same bytes, and protobuf copies a list 1.4×
    # faster than it iterates a NumPy array (ground-truth meshes are ~10⁵ floats a sample).
    values = np.asarray(values, np.float32).ravel().tolist()
    return tf.train.Feature(float_list=tf.train.FloatList(value=values))


def _bytes(values):
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=list(values)))
