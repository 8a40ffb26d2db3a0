"""The tf.data input pipeline over sharded training records (schema: `mofl.data.records`).

Shards are interleaved, records parsed and JPEG-decoded in parallel, shuffled, batched and
prefetched. Each element is one batch of multi-frame samples, [B, M, 240, 240, 3].
"""
import json
import os

import numpy as np
import tensorflow as tf

from mofl.data import records


def list_record_files(file_pattern):
    """Sorted files matching `file_pattern` (a glob, a comma-separated list of globs or a list).

    Raises:
        FileNotFoundError: when nothing matches, naming the pattern.
    """
    patterns = file_pattern if isinstance(file_pattern, (list, tuple)) else \
        [p for p in str(file_pattern).split(',') if p]
    files = sorted({f for p in patterns for f in tf.io.gfile.glob(p)})
    if not files:
        raise FileNotFoundError(f'no training-record files match {file_pattern!r}')
    return files


def peek_layout(files):
    """`records.inspect_sample` of the first record found in `files` (checks its version).

    Raises:
        ValueError: when every file is empty.
        records.RecordError: when that record has another schema version.
    """
    for path in files:
        for raw in tf.data.TFRecordDataset(path).take(1):
            layout = records.inspect_sample(raw.numpy())
            if layout['schema_version'] != records.SCHEMA_VERSION:
                raise records.RecordError(
                    f'{path}: ' + records.version_mismatch_message(layout['schema_version']))
            return layout
    raise ValueError(f'all {len(files)} record files are empty (first: {files[0]})')


def make_dataset(file_pattern, batch_size, num_frames, shuffle=True, repeat=True, seed=None,
                 image_size=None, shuffle_buffer=1024, cycle_length=8,
                 drop_remainder=True):
    """Builds the training input pipeline.

    A record with more than `num_frames` frames contributes its first `num_frames` frames
    (`tools.preprocess` writes the frames of a sample in random order, so the first ones are a
    random subset); one with fewer fails with a clear message. Ground-truth arrays are returned
    when the first record has them (every record must then have them, with the same shapes);
    per-frame ones (`records.PER_FRAME_GROUND_TRUTH`) are cut to `num_frames` like the frames.

    Args:
        file_pattern: glob (or comma-separated globs, or a list) of TFRecord files.
        batch_size: B.
        num_frames: M, frames per sample.
        shuffle: shuffle the file order and the records.
        repeat: repeat forever.
        seed: seed for the shuffles (None: nondeterministic).
        image_size: expected frame side (square); None: the first record's.
        shuffle_buffer: records in the shuffle buffer.
        cycle_length: shards read at once.
        drop_remainder: drop the last incomplete batch (static batch size).

    Returns:
        A `tf.data.Dataset` of dicts:
        `images` [B, M, S, S, 3] float32 in [0, 1] (S = image_size),
        `landmarks` [B, M, 66, 2] float32 crop pixels, `landmark_confidence` [B, M, 66] float32,
        `pose` [B, M, 3] float32 Euler radians (pitch, yaw, roll),
        `identity` [B] string, `clip` [B] string,
        plus e.g. `gt_vertices` [B, V, 3], `gt_expression_vertices` [B, M', V, 3] when present,
        and `dense_points` [B, M, K, 2], `dense_confidence` [B, M, K], `dense_vertices` [B, K]
        int32 when the first record has dense points (every record must then have K).

    Raises:
        FileNotFoundError: when the pattern matches no file.
        ValueError: when the records' frames are not `image_size` square.
    """
    files = list_record_files(file_pattern)
    deterministic = seed is not None or not shuffle
    layout = peek_layout(files)
    data_size = tuple(int(s) for s in layout['image_size'])
    if image_size is None:
        image_size = data_size[0]
    if data_size != (image_size, image_size):
        raise ValueError(f'{files[0]}: frames are {data_size[0]}×{data_size[1]}, this model '
                         f'wants {image_size}×{image_size} (mofl.train --image_size)')
    if 0 < layout['num_frames'] < num_frames:
        raise ValueError(f'{files[0]}: samples have {layout["num_frames"]} frames, fewer than '
                         f'the {num_frames} asked for')
    gt_ranks = {name: len(shape) for name, shape in layout['ground_truth'].items()}
    num_dense = int(layout.get('num_dense_points', 0))

    file_ds = tf.data.Dataset.from_tensor_slices(files)
    if shuffle:
        file_ds = file_ds.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
    ds = file_ds.interleave(tf.data.TFRecordDataset, cycle_length=min(cycle_length, len(files)),
                            num_parallel_calls=tf.data.AUTOTUNE, deterministic=deterministic)
    if shuffle:
        ds = ds.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()

    def to_example(serialized):
        sample = records.parse_sample(serialized, ground_truth_keys=gt_ranks,
                                      num_dense_points=num_dense)
        enough = tf.debugging.assert_greater_equal(
            sample['num_frames'], num_frames,
            message=f'a record has fewer frames than num_frames={num_frames}')
        # Every per-frame tensor waits for the check, so a short record always fails with its
        # message rather than with whichever shape check happens to run first.
        with tf.control_dependencies([enough]):
            sample = {k: tf.identity(v) for k, v in sample.items()}
        images = sample['images'][:num_frames]
        out = {
            'images': tf.ensure_shape(images, [num_frames, image_size, image_size, 3]),
            'landmarks': tf.ensure_shape(sample['landmarks'][:num_frames],
                                         [num_frames, records.NUM_LANDMARKS, 2]),
            'landmark_confidence': tf.ensure_shape(sample['landmark_confidence'][:num_frames],
                                                   [num_frames, records.NUM_LANDMARKS]),
            'pose': tf.ensure_shape(sample['pose'][:num_frames], [num_frames, 3]),
            'identity': sample['identity'],
            'clip': sample['clip'],
        }
        if num_dense:
            out['dense_points'] = tf.ensure_shape(sample['dense_points'][:num_frames],
                                                  [num_frames, num_dense, 2])
            out['dense_confidence'] = tf.ensure_shape(sample['dense_confidence'][:num_frames],
                                                      [num_frames, num_dense])
            out['dense_vertices'] = tf.ensure_shape(sample['dense_vertices'], [num_dense])
        for name, shape in layout['ground_truth'].items():
            if name in records.PER_FRAME_GROUND_TRUTH:
                out[name] = tf.ensure_shape(sample[name][:num_frames], (num_frames,) + shape[1:])
            else:
                out[name] = tf.ensure_shape(sample[name], shape)
        return out

    ds = ds.map(to_example, num_parallel_calls=tf.data.AUTOTUNE, deterministic=deterministic)
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    return ds.prefetch(tf.data.AUTOTUNE)


def read_manifest(folder):
    """The `manifest.json` that tools.make_synthetic wrote into `folder`, or {} without one."""
    path = os.path.join(folder, 'manifest.json')
    if not os.path.exists(path):
        return {}
    with open(path) as f:
        return json.load(f)


def check_ground_truth_mesh(data, mesh):
    """Refuses ground truth made on another mesh than `mesh` (same glob as the records).

    Checks the vertex count of the first record, and, when the data's folder has the
    `manifest.json` of tools.make_synthetic with an `asset_fingerprint`, that it is this mesh's
    (`SourceMesh.fingerprint`): a decimated asset rebuilt by another version of the code can
    have the same vertex count but other vertices.

    Args:
        data: TFRecord glob(s) (comma-separated allowed).
        mesh: the asset's SourceMesh.

    Raises:
        ValueError: naming `data`, when either does not match.
        FileNotFoundError: when nothing matches `data`.
    """
    files = list_record_files(data)
    shape = peek_layout(files)['ground_truth'].get(records.GT_VERTICES)
    if shape is not None and shape[0] != mesh.num_vertices:
        raise ValueError(f'{data}: ground truth on {shape[0]} vertices, the asset has '
                         f'{mesh.num_vertices}')
    expected = mesh.fingerprint()
    for folder in sorted({os.path.dirname(f) for f in files}):
        recorded = read_manifest(folder).get('asset_fingerprint')
        if recorded is not None and recorded != expected:
            raise ValueError(f'{data}: its ground truth is on another build of the asset '
                             f'(fingerprint {recorded} in {os.path.join(folder, "manifest.json")}, '
                             f'the asset\'s is {expected}); '
                             'remake the data with tools.make_synthetic for this asset')


def load_ground_truth_samples(data, num_samples, num_frames, image_size=None):
    """The first `num_samples` samples (file order) with their synthetic ground truth, as numpy.

    Args:
        data: TFRecord glob(s) written by tools.make_synthetic.
        num_samples: how many samples (fewer if the files hold fewer).
        num_frames: M.
        image_size: the records' crop side (None: the first record's).

    Returns:
        dict of stacked arrays: images [N, M, S, S, 3], landmarks [N, M, 66, 2],
        landmark_confidence [N, M, 66], pose [N, M, 3], identity [N] (bytes),
        gt_vertices [N, V, 3], gt_expression_vertices [N, M, V, 3].

    Raises:
        ValueError: naming `data`, when it holds no samples or no ground truth.
    """
    dataset = make_dataset(data, batch_size=1, num_frames=num_frames, shuffle=False,
                           repeat=False, image_size=image_size)
    keys = ('images', 'landmarks', 'landmark_confidence', 'pose', 'identity',
            records.GT_VERTICES, records.GT_EXPRESSION_VERTICES)
    samples = {k: [] for k in keys}
    for batch in dataset.take(num_samples):
        missing = [k for k in keys if k not in batch]
        if missing:
            raise ValueError(f'{data}: the records have no {", ".join(missing)} (this needs the '
                             'synthetic ground truth of tools.make_synthetic)')
        for k in keys:
            samples[k].append(batch[k][0].numpy())
    if not samples['images']:
        raise ValueError(f'{data}: no samples')
    return {k: np.stack(v) for k, v in samples.items()}


def check_dense_points(data, mesh):
    """Checks that the records of `data` have dense 2D points this asset can use.

    Reads the layout of the first record (`peek_layout`, as `make_dataset` does).

    Args:
        data: the records' file pattern.
        mesh: the asset's SourceMesh.

    Returns:
        The records' dense-point index space (`records.DENSE_SPACES`).

    Raises:
        ValueError: naming `data`, when its first record has no dense points, when one of their
            asset vertices is not a vertex of this asset (records made for another asset), or when
            they are mediapipe points and the asset has no mediapipe correspondence.
    """
    layout = peek_layout(list_record_files(data))
    if not layout['num_dense_points']:
        raise ValueError(f'{data}: --lambda_dense_points > 0 needs records with dense 2D points '
                         '(tools.preprocess, or tools.make_synthetic --dense_points=K); these '
                         'have none')
    if layout['dense_space'] == records.DENSE_SPACE_MEDIAPIPE:
        if mesh.mediapipe_vertices is None:
            raise ValueError(f'{data}: the dense points are mediapipe FaceMesh points, but this '
                             'face asset has no mediapipe correspondence (an asset built before '
                             'it existed: rebuild it with tools.build_assets)')
        return layout['dense_space']
    largest = max(layout['dense_vertices'])
    if largest >= mesh.num_vertices:
        raise ValueError(f'{data}: a dense point lies on vertex {largest}, but the asset has '
                         f'{mesh.num_vertices} vertices (records made for another asset?)')
    return layout['dense_space']


def dense_points_on_asset(batch, mediapipe_vertices, mediapipe_offsets=None):
    """Maps a batch's mediapipe-space dense points onto asset vertices.

    Args:
        batch: dict with `dense_vertices` [B, K] int32 FaceMesh point indices and
            `dense_confidence` [B, M, K].
        mediapipe_vertices: [468] int the asset vertex of each FaceMesh point, −1 for none
            (`SourceMesh.mediapipe_vertices`).
        mediapipe_offsets: optional [468, 3] model-space offset of each point from its vertex
            (`SourceMesh.mediapipe_offsets` of a detector-calibrated asset).

    Returns:
        The batch with `dense_vertices` [B, K] asset vertices (0 where a point has none) and
        `dense_confidence` set to 0 for those points, so they add nothing to the loss; with
        `mediapipe_offsets`, also `dense_offsets` [B, K, 3] float32.
    """
    table = tf.constant(np.asarray(mediapipe_vertices, np.int32))
    ids = batch['dense_vertices']
    vertices = tf.gather(table, ids)
    has_vertex = tf.cast(vertices >= 0, batch['dense_confidence'].dtype)
    batch = dict(batch)
    batch['dense_vertices'] = tf.maximum(vertices, 0)
    batch['dense_confidence'] = batch['dense_confidence'] * has_vertex[:, tf.newaxis, :]
    if mediapipe_offsets is not None:
        batch['dense_offsets'] = tf.gather(
            tf.constant(np.asarray(mediapipe_offsets, np.float32)), ids)
    return batch
