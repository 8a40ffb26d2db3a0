"""Tests of the record schema (mofl.data.records) and the tf.data pipeline (mofl.data.pipeline)."""
import os

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

import numpy as np
import pytest
import tensorflow as tf

from mofl.data import pipeline
from mofl.data import records

M = 4
SIZE = records.IMAGE_SIZE


def _sample(rng, num_frames=M, ground_truth=None, identity='id00007', clip='id00007/v/00001',
            schema_version=records.SCHEMA_VERSION):
    # Smooth images survive JPEG nearly unchanged, so decoded pixels can be compared.
    yy, xx = np.mgrid[0:SIZE, 0:SIZE] / SIZE
    frames = np.stack([np.stack([xx, yy, np.full_like(xx, (k + 1) / (num_frames + 1))], -1)
                       for k in range(num_frames)])
    frames = (frames * 255).round().astype(np.uint8)
    arrays = dict(
        frames=frames,
        landmarks=rng.uniform(0, SIZE, (num_frames, 66, 2)).astype(np.float32),
        landmark_confidence=rng.uniform(0, 1, (num_frames, 66)).astype(np.float32),
        pose=rng.uniform(-1, 1, (num_frames, 3)).astype(np.float32),
        frame_indices=np.arange(num_frames) * 3,
        crop_boxes=rng.uniform(0, 100, (num_frames, 3)).astype(np.float32))
    serialized = records.encode_sample(identity=identity, clip=clip, ground_truth=ground_truth,
                                       schema_version=schema_version, **arrays)
    return serialized, arrays


def _write(path, serialized_list):
    with tf.io.TFRecordWriter(str(path)) as writer:
        for s in serialized_list:
            writer.write(s)


def test_numpy_round_trip():
    rng = np.random.default_rng(0)
    gt = {'gt_vertices': rng.normal(size=(7, 3)), 'gt_expression_vertices':
          rng.normal(size=(M, 7, 3))}
    serialized, arrays = _sample(rng, ground_truth=gt)
    out = records.decode_sample(serialized)
    np.testing.assert_array_equal(out['landmarks'], arrays['landmarks'])
    np.testing.assert_array_equal(out['landmark_confidence'], arrays['landmark_confidence'])
    np.testing.assert_array_equal(out['pose'], arrays['pose'])
    np.testing.assert_array_equal(out['frame_index'], arrays['frame_indices'])
    np.testing.assert_array_equal(out['crop_box'], arrays['crop_boxes'])
    assert out['images'].shape == (M, SIZE, SIZE, 3)
    assert np.abs(out['images'].astype(int) - arrays['frames']).max() <= 4
    assert (out['identity'], out['clip']) == ('id00007', 'id00007/v/00001')
    for name, value in gt.items():
        np.testing.assert_allclose(out['ground_truth'][name], value.astype(np.float32))
    assert records.inspect_sample(serialized)['ground_truth'] == {
        'gt_vertices': (7, 3), 'gt_expression_vertices': (M, 7, 3)}


def test_jpeg_bytes_input_is_stored_unchanged():
    rng = np.random.default_rng(1)
    _, arrays = _sample(rng)
    jpegs = [records.encode_jpeg(f) for f in arrays['frames']]
    serialized = records.encode_sample(jpegs, arrays['landmarks'], arrays['landmark_confidence'],
                                       arrays['pose'], 'a', 'a/b/c')
    example = tf.train.Example.FromString(serialized)
    assert list(example.features.feature[records.KEY_JPEG].bytes_list.value) == jpegs


def test_encode_rejects_inconsistent_shapes():
    rng = np.random.default_rng(2)
    _, arrays = _sample(rng)
    arrays['landmarks'] = arrays['landmarks'][:, :65]
    with pytest.raises(records.RecordError, match='landmarks has shape'):
        records.encode_sample(identity='a', clip='b', **arrays)


def test_parse_sample_eager_matches_numpy_decoder():
    rng = np.random.default_rng(3)
    serialized, arrays = _sample(rng, ground_truth={'gt_vertices': np.ones((5, 3))})
    parsed = records.parse_sample(tf.constant(serialized), ground_truth_keys={'gt_vertices': 2})
    reference = records.decode_sample(serialized)
    # TF's and OpenCV's JPEG decoders round differently by a few levels.
    np.testing.assert_allclose(parsed['images'].numpy(), reference['images'] / 255.0,
                               atol=4 / 255.0)
    np.testing.assert_array_equal(parsed['landmarks'].numpy(), arrays['landmarks'])
    np.testing.assert_array_equal(parsed['gt_vertices'].numpy(), np.ones((5, 3)))
    assert parsed['identity'].numpy() == b'id00007'


def test_wrong_version_fails_clearly_in_numpy_eager_and_graph(tmp_path):
    rng = np.random.default_rng(4)
    serialized, _ = _sample(rng, schema_version=records.SCHEMA_VERSION + 6)
    found, expected = records.SCHEMA_VERSION + 6, records.SCHEMA_VERSION
    with pytest.raises(records.RecordError,
                       match=f'has version {found}, this reader expects version {expected}'):
        records.decode_sample(serialized)
    with pytest.raises(records.RecordError, match=f'has version {found}'):
        records.parse_sample(tf.constant(serialized))
    # Graph mode (inside tf.data): the assertion names the mismatch and the version found.
    ds = tf.data.Dataset.from_tensors(tf.constant(serialized)).map(records.parse_sample)
    with pytest.raises(tf.errors.InvalidArgumentError) as error:
        next(iter(ds))
    assert 'schema version mismatch' in str(error.value)
    assert f'version found:] [{found}]' in str(error.value).replace('"', '').replace("'", '')
    # The pipeline checks the first record up front.
    _write(tmp_path / 'old.tfrecord', [serialized])
    with pytest.raises(records.RecordError, match=f'has version {found}'):
        pipeline.make_dataset(str(tmp_path / '*.tfrecord'), batch_size=1, num_frames=M)


def test_pipeline_shapes_values_and_frame_cut(tmp_path):
    rng = np.random.default_rng(5)
    samples = []
    for shard in range(3):
        batch = [_sample(rng, num_frames=M + 2, identity=f'id{shard}', clip=f'id{shard}/v/{k}',
                         ground_truth={'gt_vertices': np.full((9, 3), shard),
                                       'gt_expression_vertices': np.zeros((M + 2, 9, 3))})
                 for k in range(3)]
        _write(tmp_path / f'train-{shard:05d}-of-00003.tfrecord', [s for s, _ in batch])
        samples += batch
    ds = pipeline.make_dataset(str(tmp_path / 'train-*.tfrecord'), batch_size=2, num_frames=M,
                               shuffle=False, repeat=False)
    batches = list(ds)
    assert len(batches) == 4  # 9 records, drop_remainder
    b = batches[0]
    assert b['images'].shape == (2, M, SIZE, SIZE, 3) and b['images'].dtype == tf.float32
    assert b['landmarks'].shape == (2, M, 66, 2)
    assert b['landmark_confidence'].shape == (2, M, 66)
    assert b['pose'].shape == (2, M, 3)
    assert b['identity'].shape == (2,) and b['clip'].shape == (2,)
    assert b['gt_vertices'].shape == (2, 9, 3)
    assert b['gt_expression_vertices'].shape == (2, M, 9, 3)
    images = b['images'].numpy()
    assert 0.0 <= images.min() and images.max() <= 1.0
    # Every record comes back once, with its first M frames' landmarks.
    by_clip = {records.decode_sample(s)['clip']: a for s, a in samples}
    seen = []
    for batch in batches:
        for clip, landmarks in zip(batch['clip'].numpy(), batch['landmarks'].numpy()):
            seen.append(clip.decode())
            np.testing.assert_array_equal(landmarks, by_clip[clip.decode()]['landmarks'][:M])
    assert len(set(seen)) == 8


def test_pipeline_shuffled_repeated_seeded(tmp_path):
    rng = np.random.default_rng(6)
    _write(tmp_path / 'a.tfrecord', [_sample(rng, clip=f'c{k}')[0] for k in range(5)])
    ds = pipeline.make_dataset(str(tmp_path / 'a.tfrecord'), batch_size=3, num_frames=2,
                               seed=7, shuffle_buffer=8)
    first = [b['clip'].numpy().tolist() for b in ds.take(4)]
    again = [b['clip'].numpy().tolist() for b in
             pipeline.make_dataset(str(tmp_path / 'a.tfrecord'), batch_size=3, num_frames=2,
                                   seed=7, shuffle_buffer=8).take(4)]
    assert first == again  # repeat=True gives more batches than records; the seed fixes order
    assert next(iter(ds))['images'].shape == (3, 2, SIZE, SIZE, 3)


def test_pipeline_too_few_frames_fails_clearly(tmp_path):
    rng = np.random.default_rng(8)
    _write(tmp_path / 'a.tfrecord', [_sample(rng, num_frames=2)[0]])
    with pytest.raises(ValueError, match='samples have 2 frames, fewer than the 4'):
        pipeline.make_dataset(str(tmp_path / 'a.tfrecord'), batch_size=1, num_frames=M)
    # A short record after a long first one fails when it is read.
    _write(tmp_path / 'b.tfrecord', [_sample(rng, num_frames=M)[0], _sample(rng, num_frames=2)[0]])
    ds = pipeline.make_dataset(str(tmp_path / 'b.tfrecord'), batch_size=1, num_frames=M,
                               shuffle=False, repeat=False)
    with pytest.raises(tf.errors.InvalidArgumentError, match='fewer frames than num_frames=4'):
        list(ds)


def test_pipeline_no_files(tmp_path):
    with pytest.raises(FileNotFoundError, match='no training-record files match'):
        pipeline.make_dataset(str(tmp_path / 'nothing-*.tfrecord'), batch_size=1, num_frames=M)


def test_dense_points_round_trip_through_numpy_eager_and_the_pipeline(tmp_path):
    rng = np.random.default_rng(9)
    k = 5
    dense = dict(dense_points=rng.uniform(0, SIZE, (M + 1, k, 2)).astype(np.float32),
                 dense_confidence=rng.uniform(0, 1, (M + 1, k)).astype(np.float32),
                 dense_vertices=[4, 0, 17, 3, 9])
    serialized, _ = _sample(rng, num_frames=M + 1)
    example = records.decode_sample(serialized)
    assert 'dense_points' not in example and records.inspect_sample(serialized)[
        'num_dense_points'] == 0
    with_dense = records.encode_sample(
        [records.encode_jpeg(f) for f in example['images']], example['landmarks'],
        example['landmark_confidence'], example['pose'], 'id1', 'id1/v/0', **dense)
    assert records.inspect_sample(with_dense)['num_dense_points'] == k
    assert records.inspect_sample(with_dense)['dense_vertices'] == tuple(dense['dense_vertices'])
    out = records.decode_sample(with_dense)
    np.testing.assert_array_equal(out['dense_points'], dense['dense_points'])
    np.testing.assert_array_equal(out['dense_confidence'], dense['dense_confidence'])
    np.testing.assert_array_equal(out['dense_vertices'], dense['dense_vertices'])
    parsed = records.parse_sample(with_dense, num_dense_points=k)
    np.testing.assert_array_equal(parsed['dense_points'], dense['dense_points'])
    assert parsed['dense_vertices'].dtype == tf.int32
    _write(tmp_path / 'train-00000-of-00001.tfrecord', [with_dense] * 2)
    batch = next(iter(pipeline.make_dataset(str(tmp_path / 'train-*'), batch_size=2,
                                            num_frames=M, shuffle=False, repeat=False)))
    assert batch['dense_points'].shape == (2, M, k, 2)      # cut to the first M frames
    np.testing.assert_array_equal(batch['dense_points'][1], dense['dense_points'][:M])
    np.testing.assert_array_equal(batch['dense_confidence'][0], dense['dense_confidence'][:M])
    np.testing.assert_array_equal(batch['dense_vertices'][0], dense['dense_vertices'])
    # A record without them, asked for them, fails with its message.
    with pytest.raises(tf.errors.InvalidArgumentError, match='lacks the 5 dense points'):
        records.parse_sample(serialized, num_dense_points=k)


def test_encode_rejects_incomplete_or_misshapen_dense_points():
    rng = np.random.default_rng(2)
    _, arrays = _sample(rng)
    points = np.zeros((M, 3, 2), np.float32)
    confidence = np.ones((M, 3), np.float32)
    with pytest.raises(records.RecordError, match='go together'):
        records.encode_sample(identity='a', clip='a/b', dense_points=points, **arrays)
    with pytest.raises(records.RecordError, match='dense_confidence has shape'):
        records.encode_sample(identity='a', clip='a/b', dense_points=points,
                              dense_confidence=confidence[:, :2], dense_vertices=[0, 1, 2],
                              **arrays)
    with pytest.raises(records.RecordError, match='dense_vertices must be'):
        records.encode_sample(identity='a', clip='a/b', dense_points=points,
                              dense_confidence=confidence, dense_vertices=[0, -1, 2], **arrays)
