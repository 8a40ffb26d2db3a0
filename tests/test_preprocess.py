"""Tests of the preprocessing (`mofl.data.preprocessing`, the binary `tools.preprocess`) and its
modules: head pose, frame sampling, face tracking / cropping, on the real carphone video."""
import dataclasses
import glob
import json
import os
import shutil

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
os.environ.setdefault('GLOG_minloglevel', '2')

import cv2
import numpy as np
import pytest
import tensorflow as tf

import in_process
from mofl import facemesh
from mofl import landmarks as landmark_layout
from mofl import sample_data
from mofl.data import face_tracking
from mofl.data import frame_sampling
from mofl.data import head_pose
from mofl.data import preprocessing
from mofl.data import preprocessing_report
from mofl.data import records

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOSE_TIP = 30  # index 30 of the 66 (and of the 68): the pronasale.


def _stand_in_landmarks_3d(path):
    """A [66, 3] mm template measured with FaceMesh on the frontal astronaut image, made
    left/right symmetric (test fixture only; the library uses the face asset)."""
    image = cv2.cvtColor(cv2.imread(sample_data.astronaut_path()), cv2.COLOR_BGR2RGB)
    with facemesh.FaceTracker() as tracker:
        face = tracker.detect(image)
    pts = landmark_layout.mediapipe_to_66(face.mesh_landmarks).astype(np.float64)
    pts = np.stack([pts[:, 0], -pts[:, 1], -pts[:, 2]], -1)  # image → model axes
    pts[:, 0] -= pts[:, 0].mean()
    mirror = np.searchsorted(landmark_layout.IBUG68_TO_66,
                             landmark_layout.IBUG68_MIRROR[landmark_layout.IBUG68_TO_66])
    pts = (pts + pts[mirror] * np.array([-1.0, 1.0, 1.0])) / 2.0
    pts -= pts.mean(axis=0)
    pts *= 90.0 / np.linalg.norm(pts[36] - pts[45])  # outer eye corners ≈ 90 mm apart
    np.savez(path, landmarks_3d=pts)
    return pts


def _noise_video(path, frames=8):
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*'mp4v'), 25, (176, 144))
    rng = np.random.default_rng(0)
    ramp = np.tile(np.linspace(0, 127, 176)[None, :, None], (144, 1, 3))
    for _ in range(frames):
        writer.write((ramp + rng.integers(0, 128, ramp.shape)).astype(np.uint8))
    writer.release()


def _make_tree(root, good=True):
    """VoxCeleb2 layout: the carphone clip, a truncated copy, a face-less clip."""
    carphone = sample_data.carphone_path()
    for folder in ('id00001/vidA', 'id00002/vidB', 'id00003/vidC'):
        os.makedirs(os.path.join(root, folder), exist_ok=True)
    if good:
        shutil.copy(carphone, os.path.join(root, 'id00001/vidA/00001.mp4'))
    with open(carphone, 'rb') as f:
        data = f.read()
    with open(os.path.join(root, 'id00002/vidB/00001.mp4'), 'wb') as f:
        f.write(data[:int(0.3 * len(data))])
    _noise_video(os.path.join(root, 'id00003/vidC/00001.mp4'))


@pytest.fixture(scope='module')
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp('preprocess')
    _make_tree(str(root / 'videos'))
    template = _stand_in_landmarks_3d(str(root / 'landmarks_3d.npz'))
    config = preprocessing.PreprocessConfig(
        input_dir=str(root / 'videos'), output_dir=str(root / 'records'), min_crop_size=60,
        max_frames_per_video=40, frame_stride=2, samples_per_clip=3, min_pose_spread_deg=2.0,
        test_fraction=0.0, landmarks_3d=str(root / 'landmarks_3d.npz'),
        contact_sheet=str(root / 'sheet.png'), progress=False)
    summary = preprocessing.run(config)
    return {'root': root, 'config': config, 'summary': summary, 'template': template}


def _read_records(output_dir):
    files = sorted(glob.glob(os.path.join(output_dir, '*.tfrecord')))
    return files, [records.decode_sample(r.numpy()) for r in tf.data.TFRecordDataset(files)]


# ----------------------------------------------------------------------------- head pose

def test_euler_round_trip_and_composition_order():
    rng = np.random.default_rng(0)
    euler = rng.uniform(-1.2, 1.2, (20, 3))
    np.testing.assert_allclose(head_pose.rotation_to_euler(head_pose.euler_to_rotation(euler)),
                               euler, atol=1e-9)
    pitch, yaw, roll = 0.3, -0.5, 0.2
    rx = np.array([[1, 0, 0], [0, np.cos(pitch), -np.sin(pitch)], [0, np.sin(pitch), np.cos(pitch)]])
    ry = np.array([[np.cos(yaw), 0, np.sin(yaw)], [0, 1, 0], [-np.sin(yaw), 0, np.cos(yaw)]])
    rz = np.array([[np.cos(roll), -np.sin(roll), 0], [np.sin(roll), np.cos(roll), 0], [0, 0, 1]])
    np.testing.assert_allclose(head_pose.euler_to_rotation([pitch, yaw, roll]), rz @ ry @ rx,
                               atol=1e-12)


def test_pnp_recovers_pose_in_build_notes_convention(workspace):
    template = workspace['template']
    size, focal = (480, 640), 700.0
    for euler in ([0.0, 0.0, 0.0], [0.1, 0.6, -0.2], [-0.3, -0.4, 0.1]):
        rotation = head_pose.euler_to_rotation(euler)
        translation = np.array([15.0, -10.0, -600.0])  # in front of the camera: z < 0
        uv = head_pose.project(template, rotation, translation, focal, size)
        pose = head_pose.estimate_head_pose(uv, template, size, focal_length=focal)
        np.testing.assert_allclose(pose.euler, euler, atol=1e-4)
        np.testing.assert_allclose(pose.translation, translation, atol=1e-2)
        assert pose.reprojection_error < 1e-3
    # Positive yaw turns the nose (model +z) towards image right (+u).
    turned = head_pose.project(template, head_pose.euler_to_rotation([0, 0.5, 0]),
                               [0, 0, -600.0], focal, size)
    frontal = head_pose.project(template, np.eye(3), [0, 0, -600.0], focal, size)
    assert turned[NOSE_TIP, 0] > frontal[NOSE_TIP, 0] + 10


# ----------------------------------------------------------------------------- sampling

def test_pose_diverse_sampling():
    rng = np.random.default_rng(1)
    poses = np.zeros((30, 3))
    poses[:, 1] = np.deg2rad(np.linspace(-20, 20, 30))
    min_spread = np.deg2rad(25)
    samples = frame_sampling.sample_pose_diverse(poses, 4, 6, min_spread, rng)
    assert len(samples) == 6
    assert len({frozenset(s.tolist()) for s in samples}) == 6
    for s in samples:
        assert len(set(s.tolist())) == 4
        assert frame_sampling.pose_spread(poses[s]) >= min_spread
    assert frame_sampling.sample_pose_diverse(poses, 4, 3, np.deg2rad(41), rng) == []
    assert frame_sampling.sample_pose_diverse(poses[:3], 4, 3, 0.0, rng) == []
    # Only C(5, 4) = 5 distinct sets exist in 5 frames.
    assert len(frame_sampling.sample_pose_diverse(poses[:5], 4, 9, 0.0, rng)) == 5
    a = frame_sampling.sample_pose_diverse(poses, 4, 3, 0.1, frame_sampling.clip_rng(3, 'c'))
    b = frame_sampling.sample_pose_diverse(poses, 4, 3, 0.1, frame_sampling.clip_rng(3, 'c'))
    assert [x.tolist() for x in a] == [x.tolist() for x in b]


# ----------------------------------------------------------------------------- cropping

def test_crop_and_coordinates_agree():
    image = np.zeros((100, 120, 3), np.uint8)
    image[40, 70] = 255  # pixel centre (70.5, 40.5)
    box = np.array([50.0, 20.0, 60.0])
    crop = face_tracking.crop_and_resize(image, box, 240)
    mapped = face_tracking.to_crop_coordinates(np.array([[70.5, 40.5]]), box, 240)[0]
    row, col = np.unravel_index(np.argmax(crop[..., 0]), crop.shape[:2])
    assert abs(col + 0.5 - mapped[0]) <= 1.0 and abs(row + 0.5 - mapped[1]) <= 1.0
    np.testing.assert_allclose(mapped, [(70.5 - 50) * 4, (40.5 - 20) * 4])
    # Outside the image is zero padding.
    assert face_tracking.crop_and_resize(image, np.array([-200.0, -200.0, 50.0]), 32).max() == 0


def test_landmark_confidence_rule(workspace):
    normals = face_tracking.landmark_normals(workspace['template'])
    frontal = face_tracking.landmark_confidence(0.9, np.eye(3), normals)
    assert frontal[NOSE_TIP] == pytest.approx(0.9)
    # Turning the head by yaw +70° hides the jaw side that moves away (the subject's left, +x).
    turned = face_tracking.landmark_confidence(0.9, head_pose.euler_to_rotation([0, 1.2, 0]),
                                               normals)
    assert turned[16] < 0.5 * turned[0]
    expected = 0.9 * np.clip(0.5 + (normals @ head_pose.euler_to_rotation([0, 1.2, 0]).T)[:, 2],
                             0, 1)
    np.testing.assert_allclose(turned, expected, rtol=1e-6)


def test_split_by_identity_is_deterministic():
    ids = [f'id{k:05d}' for k in range(2000)]
    splits = [preprocessing.split_of_identity(i, 0.05) for i in ids]
    assert splits == [preprocessing.split_of_identity(i, 0.05) for i in ids]
    assert 0.03 < splits.count('test') / len(ids) < 0.07
    shards = [sum(preprocessing.video_in_shard(i, s, 3) for s in range(3)) for i in ids]
    assert shards == [1] * len(ids)


# ----------------------------------------------------------------------------- the binary

def test_records_written_with_landmarks_on_the_face(workspace):
    summary, config = workspace['summary'], workspace['config']
    assert summary['videos_found'] == 3 and summary['videos_ok'] == 1
    assert summary['frames_decoded'] == 20 + 4  # 40 carphone and 8 noise frames at stride 2
    assert summary['samples_written'] == {'train': 3, 'test': 0}
    files, samples = _read_records(config.output_dir)
    assert len(samples) == 3 == summary['usable_records']
    assert all(os.path.basename(f).startswith('train-s00000-of-00001-c') for f in files)
    cascade = cv2.CascadeClassifier(
        os.path.join(cv2.data.haarcascades, 'haarcascade_frontalface_default.xml'))
    haar_checked = 0
    for sample in samples:
        assert sample['identity'] == 'id00001' and sample['clip'] == 'id00001/vidA/00001'
        assert sample['images'].shape == (4, 240, 240, 3)
        assert set(sample['frame_index'].tolist()) <= set(range(0, 40, 2))
        assert frame_sampling.pose_spread(sample['pose']) >= np.deg2rad(2.0) - 1e-6
        assert np.all((sample['landmarks'] > 0) & (sample['landmarks'] < 240))
        assert np.all((sample['landmark_confidence'] > 0) & (sample['landmark_confidence'] <= 1))
        assert np.all(np.abs(sample['landmarks'][:, NOSE_TIP] - 120) < 40)
        for image, landmarks in zip(sample['images'], sample['landmarks']):
            faces = cascade.detectMultiScale(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY), 1.1, 5,
                                             minSize=(100, 100))
            if len(faces):
                x, y, w, h = max(faces, key=lambda f: f[2] * f[3])
                u, v = landmarks[NOSE_TIP]
                assert x < u < x + w and y < v < y + h
                haar_checked += 1
    assert haar_checked >= 6  # an independent detector agrees on most crops
    assert os.path.getsize(config.contact_sheet) > 0


def test_records_carry_facemesh_dense_points(workspace):
    """Every carphone frame stores FaceMesh's 468 points in crop pixels (mediapipe space), the 66
    landmarks among them, seen points confident and turned-away ones not."""
    _, samples = _read_records(workspace['config'].output_dir)
    for sample in samples:
        assert sample['dense_space'] == records.DENSE_SPACE_MEDIAPIPE
        np.testing.assert_array_equal(sample['dense_vertices'], np.arange(468))
        assert sample['dense_points'].shape == (4, 468, 2)
        np.testing.assert_allclose(sample['dense_points'][:, landmark_layout.MEDIAPIPE_TO_66],
                                   sample['landmarks'], atol=1e-3)
        confidence = sample['dense_confidence']
        assert np.all((confidence >= 0) & (confidence <= 1))
        # A near-frontal face: the central face (nose tip 4, between the brows 168) is seen
        # fully; FaceMesh's side points (ear-side oval 234/454) are at most grazing.
        assert np.all(confidence[:, [4, 168]] > 0.7)
        assert np.all(confidence[:, [234, 454]] < 0.5 * confidence[:, [4]])
        assert np.mean(confidence > 0) > 0.8


def test_dense_point_confidence_rule():
    normals = face_tracking.mediapipe_normals()
    assert normals.shape == (468, 3)
    np.testing.assert_allclose(np.linalg.norm(normals, axis=1), 1.0, atol=1e-6)
    assert normals[4, 2] > 0.9                       # the nose tip faces the viewer
    frontal = face_tracking.dense_point_confidence(0.9, np.eye(3), normals)
    assert frontal[4] == pytest.approx(0.9)
    turned = head_pose.euler_to_rotation(np.array([0.0, np.deg2rad(70.0), 0.0]))
    side = face_tracking.dense_point_confidence(0.9, turned, normals)
    # At 70° yaw one cheek still faces the camera and the other is hidden.
    right, left = 234, 454
    assert sorted([side[right], side[left]])[0] == 0.0
    assert sorted([side[right], side[left]])[1] > 0.3


def test_bad_videos_reported(workspace):
    summary = workspace['summary']
    assert summary['videos_failed']['unreadable'] == 1
    assert summary['videos_failed']['no_face'] == 1
    assert summary['failed_videos'] == {'id00002/vidB/00001.mp4': 'unreadable',
                                        'id00003/vidC/00001.mp4': 'no_face'}
    assert summary['frames_dropped']['no_face'] == 4
    text = preprocessing_report.format_summary(summary)
    assert 'unreadable 1' in text and 'no_face 1' in text


def test_rerun_is_idempotent_and_cleans_interrupted_output(workspace):
    config = workspace['config']
    files_before = {f: os.path.getsize(f) for f in glob.glob(
        os.path.join(config.output_dir, '*.tfrecord'))}
    # Leftovers of an interrupted run: a temp file and a renamed file the manifest never named.
    tag = 's00000-of-00001'
    for leftover in (f'train-{tag}-c00099.tfrecord.tmp', f'train-{tag}-c00098.tfrecord'):
        with open(os.path.join(config.output_dir, leftover), 'wb') as f:
            f.write(b'partial')
    summary = preprocessing.run(config)
    assert summary['videos_skipped_done'] == 3 and summary['videos_processed'] == 0
    assert summary['samples_written'] == {'train': 0, 'test': 0}
    files_after = {f: os.path.getsize(f) for f in glob.glob(
        os.path.join(config.output_dir, '*.tfrecord*'))}
    assert files_after == files_before
    assert len(_read_records(config.output_dir)[1]) == 3 == summary['usable_records']
    with open(os.path.join(config.output_dir, f'manifest-{tag}.json')) as f:
        assert len(json.load(f)['videos']) == 3


def test_crash_between_rename_and_manifest_neither_duplicates_nor_loses(workspace, tmp_path):
    config = workspace['config']
    output_dir = str(tmp_path / 'records')
    shutil.copytree(config.output_dir, output_dir)
    _, before = _read_records(output_dir)
    manifest_path = os.path.join(output_dir, 'manifest-s00000-of-00001.json')
    with open(manifest_path) as f:
        manifest = json.load(f)
    # The carphone's chunk file was renamed but the manifest naming it was never written.
    manifest['files'] = {}
    del manifest['videos']['id00001/vidA/00001.mp4']
    with open(manifest_path, 'w') as f:
        json.dump(manifest, f)
    summary = preprocessing.run(dataclasses.replace(config, output_dir=output_dir,
                                                 contact_sheet=None))
    assert summary['videos_processed'] == 1 and summary['videos_skipped_done'] == 2
    _, after = _read_records(output_dir)
    assert len(after) == 3 == summary['usable_records']
    # Sampling depends only on (seed, clip): the redone records equal the lost ones.
    for a, b in zip(sorted(before, key=lambda r: r['frame_index'].tolist()),
                    sorted(after, key=lambda r: r['frame_index'].tolist())):
        np.testing.assert_array_equal(a['frame_index'], b['frame_index'])
        np.testing.assert_allclose(a['landmarks'], b['landmarks'], atol=1e-4)


def test_unexpected_error_is_counted_and_retried(tmp_path, monkeypatch):
    videos = tmp_path / 'videos'
    _make_tree(str(videos), good=False)
    shutil.rmtree(videos / 'id00002')
    config = preprocessing.PreprocessConfig(
        input_dir=str(videos), output_dir=str(tmp_path / 'out'),
        landmarks_3d=_save_random_landmarks(tmp_path), progress=False)

    def broken(video, result, worker):
        raise RuntimeError(f'simulated failure on {video}')
    with monkeypatch.context() as patch:
        patch.setattr(preprocessing, '_process_video', broken)
        summary = preprocessing.run(config)
    assert summary['videos_failed']['error'] == 1
    assert 'simulated failure' in summary['failed_videos']['id00003/vidC/00001.mp4']
    summary = preprocessing.run(config)  # retried, now fails for its real reason
    assert summary['videos_processed'] == 1 and summary['videos_failed']['no_face'] == 1
    assert preprocessing.run(config)['videos_skipped_done'] == 1


def _save_random_landmarks(folder):
    path = os.path.join(str(folder), 'lm.npz')
    np.savez(path, landmarks_3d=np.random.default_rng(0).normal(size=(66, 3)))
    return path


def test_pipeline_reads_preprocessed_records(workspace):
    from mofl.data import pipeline  # pylint: disable=g-import-not-at-top
    ds = pipeline.make_dataset(os.path.join(workspace['config'].output_dir, 'train-*.tfrecord'),
                               batch_size=3, num_frames=4, shuffle=False, repeat=False)
    batch = next(iter(ds))
    assert batch['images'].shape == (3, 4, 240, 240, 3)
    assert batch['landmarks'].shape == (3, 4, 66, 2)
    assert batch['pose'].shape == (3, 4, 3)


def test_binary_exits_nonzero_when_nothing_usable(tmp_path):
    # main() with parsed flags, in process (a `python -m` subprocess costs ~10 s of imports).
    _make_tree(str(tmp_path / 'videos'), good=False)
    result = in_process.run_main('tools.preprocess', [
        f'--input_dir={tmp_path / "videos"}', f'--output_dir={tmp_path / "out"}',
        f'--landmarks_3d={_save_random_landmarks(tmp_path)}', '--noprogress'])
    assert result.returncode == 1
    assert 'unreadable 1' in result.stdout and 'no_face 1' in result.stdout


def test_default_template_landmarks_if_available():
    pytest.importorskip('mofl.facemodel.default_assets')
    landmarks = head_pose.load_template_landmarks(None)
    assert landmarks.shape == (66, 3) and np.all(np.isfinite(landmarks))
    # Nose tip in front of the outer eye corners (model z towards the viewer).
    assert landmarks[NOSE_TIP, 2] > landmarks[[36, 45], 2].max()


def test_exit_status_rule():
    base = {'videos_found': 5, 'videos_in_shard': 2, 'usable_records': 0}
    assert preprocessing_report.exit_status(base) == 1
    assert preprocessing_report.exit_status(dict(base, usable_records=4)) == 0
    assert preprocessing_report.exit_status(dict(base, videos_in_shard=0)) == 0  # dealt nothing
    assert preprocessing_report.exit_status(dict(base, videos_found=0, videos_in_shard=0)) == 1
