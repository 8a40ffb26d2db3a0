"""Preprocessing of a VoxCeleb2-style video tree into sharded multi-frame training records
(paper §3.1); the library behind `tools.preprocess`, whose docstring describes the command line,
the output files and the resumption.

Per video `ID/VIDEO/CLIP.mp4` (`process_video`, in a worker process): decode with OpenCV, mediapipe
FaceMesh landmarks (`mofl.facemesh`), drop frames without a usable face (`DROP_REASONS`), head pose
by PnP (`mofl.data.head_pose`), square crop resized to `image_size`, then pose-diverse samples of M
frames (`mofl.data.frame_sampling`), with FaceMesh's 468 dense points and, for synthetic clips with
a ground-truth sidecar, the true meshes and landmarks (`preprocessing_ground_truth.sample_ground_truth`).

Two paths run that same per-video work (`process_video`, with the worker state of `make_worker`):
- a Beam pipeline on any runner, `mofl.data.preprocessing_beam` (the default; its
  `run_and_report` is what the binary does);
- `run`, `--runner=InProcess`: the videos of one shard (a stable hash of the path,
  `shard_of_video`) in this process or a pool of `num_workers` processes, records written and
  committed by `mofl.data.shards.ShardOutput`, a summary written as JSON.
Both split identities into train / test by another hash (`split_of_identity`) and count videos
alike (`video_report`, `count_video`, the summary of `preprocessing_report.format_summary`).
"""
import dataclasses
import glob
import hashlib
import json
import multiprocessing
import os
import sys
import time
from typing import Optional

from absl import logging
import cv2
import numpy as np

from mofl import facemesh
from mofl.data import face_tracking
from mofl.data import frame_sampling
from mofl.data import head_pose
from mofl.data import preprocessing_ground_truth as ground_truth_lib
from mofl.data import preprocessing_report
from mofl.data import records
from mofl.data import shards
from mofl.data import synthetic_video
from mofl.data import video as video_lib

# `--runner` value of the pre-Beam path (`run`): this process, or a pool of `num_workers`
# processes, and the hand-rolled `shard_index` of `num_shards`. Every other value is a Beam runner
# (`mofl.data.preprocessing_beam`).
IN_PROCESS = 'InProcess'

DROP_REASONS = ('no_face', 'low_confidence', 'crop_too_small', 'pose_failed')
FAIL_REASONS = ('unreadable', 'no_face', 'too_few_frames', 'low_pose_diversity', 'error')
_CONTACT_SHEET_FRAMES = 32


@dataclasses.dataclass
class PreprocessConfig:
    """Everything a run needs: the flags of `tools.preprocess` (each field is the flag of the
    same name, its default the flag's), as a picklable object for the workers."""
    input_dir: str
    output_dir: str
    min_crop_size: int = 200
    crop_scale: float = face_tracking.DEFAULT_CROP_SCALE
    image_size: int = records.IMAGE_SIZE
    min_detection_confidence: float = 0.5
    min_face_confidence: float = 0.7
    num_frames: int = 4
    samples_per_clip: int = 2
    min_pose_spread_deg: float = 10.0
    frame_stride: int = 1
    max_frames_per_video: int = 0
    test_fraction: float = 0.05
    seed: int = 0
    num_workers: int = 1
    shard_index: int = -1
    num_shards: int = 1
    records_per_file: int = 2000
    jpeg_quality: int = 95
    landmarks_3d: Optional[str] = None
    dense_points: bool = True
    ground_truth_sidecars: bool = True
    contact_sheet: Optional[str] = None
    progress: bool = True
    runner: str = IN_PROCESS

    def validate(self):
        """Raises ValueError, naming the flag, when a value cannot work."""
        if not os.path.isdir(self.input_dir):
            raise ValueError(f'--input_dir {self.input_dir}: not a folder')
        if self.num_shards < 1:
            raise ValueError(f'--num_shards {self.num_shards} must be ≥ 1')
        if not -1 <= self.shard_index < self.num_shards:
            raise ValueError(f'--shard_index {self.shard_index} not in [-1, {self.num_shards})')
        if (self.runner == IN_PROCESS and self.shard_index == -1 and self.num_shards > 1):
            raise ValueError(f'--runner={IN_PROCESS} runs one shard of {self.num_shards}: give '
                             '--shard_index')
        if self.records_per_file < 1:
            raise ValueError(f'--records_per_file {self.records_per_file} must be ≥ 1')
        if not 0 <= self.test_fraction <= 1:
            raise ValueError(f'--test_fraction {self.test_fraction} not in [0, 1]')
        if self.num_frames < 1 or self.frame_stride < 1 or self.num_workers < 1:
            raise ValueError('--num_frames, --frame_stride and --num_workers must be ≥ 1')


# ----------------------------------------------------------------------------- video discovery

def discover_videos(input_dir):
    """Relative paths `ID/VIDEO/CLIP.mp4` of every clip under `input_dir`, sorted."""
    paths = glob.glob(os.path.join(input_dir, '*', '*', '*.mp4'))
    return sorted(os.path.relpath(p, input_dir).replace(os.sep, '/') for p in paths)


def _unit_hash(text):
    """A stable hash of `text` in [0, 1) (independent of PYTHONHASHSEED and the machine)."""
    digest = hashlib.sha256(text.encode('utf-8')).digest()
    return int.from_bytes(digest[:8], 'little') / 2.0 ** 64


def shard_of_video(video, num_shards):
    """The shard (0-based, of `num_shards`) that `video` belongs to, by a stable hash."""
    return int(_unit_hash('shard:' + video) * num_shards)


def video_in_shard(video, shard_index, num_shards):
    """Whether `video` belongs to shard `shard_index` of `num_shards` (by a stable hash)."""
    return shard_of_video(video, num_shards) == shard_index


def unit_hash(text):
    """A stable hash of `text` in [0, 1): the same on every machine, run and Python process."""
    return _unit_hash(text)


def split_of_identity(identity, test_fraction):
    """'test' for a fixed `test_fraction` of identities (by hash), else 'train'."""
    return 'test' if _unit_hash('split:' + identity) < test_fraction else 'train'


def clip_ids(video):
    """('id00012', 'id00012/VIDEO/00001') for 'id00012/VIDEO/00001.mp4'."""
    return video.split('/')[0], os.path.splitext(video)[0]


# ----------------------------------------------------------------------------- worker side

_WORKER = {}   # the state of a pool worker process (`_init_worker`)


def make_worker(config: PreprocessConfig) -> dict:
    """The state the per-video work needs, built once per worker: one FaceMesh and the PnP
    template. Every worker (pool process, Beam DoFn instance) owns one: FaceMesh is not shared.

    Returns:
        {`config`, `tracker` (`facemesh.FaceTracker`; `close()` it when done), `template`
        [66, 3], `normals` [66, 3], `dense_normals` [468, 3] or None}.
    """
    cv2.setNumThreads(1)
    template = head_pose.load_template_landmarks(config.landmarks_3d)
    return dict(config=config, tracker=facemesh.FaceTracker(config.min_detection_confidence),
                template=template, normals=face_tracking.landmark_normals(template),
                dense_normals=face_tracking.mediapipe_normals() if config.dense_points else None)


def _init_worker(config: PreprocessConfig):
    """Pool initializer: this process's worker state (`make_worker`)."""
    _WORKER.update(make_worker(config))


def process_video(video, worker=None):
    """Tracks, filters, crops and samples one clip: THE per-video work of every path (the
    in-process loop, the pool, the Beam DoFn of `mofl.data.preprocessing_beam`).

    Args:
        video: path relative to the config's input_dir.
        worker: the state from `make_worker`; None: this pool process's (`_init_worker`).

    Returns:
        dict: `video`, `status` ('ok' | 'failed'), `reason` (FAIL_REASONS or None),
        `frames_decoded`, `frames_kept`, `dropped` {reason: count}, `seconds`, and `samples`: a
        list of dicts with `jpeg` [M] bytes, `landmarks` [M, 66, 2], `landmark_confidence`
        [M, 66], `pose` [M, 3], `frame_index` [M], `crop_box` [M, 3], with dense points
        `dense_points` [M, 468, 2] and `dense_confidence` [M, 468], and with a ground-truth
        sidecar `ground_truth` {name: array} (`preprocessing_ground_truth.sample_ground_truth`).
    """
    start = time.time()
    result = {'video': video, 'status': 'ok', 'reason': None, 'frames_decoded': 0,
              'frames_kept': 0, 'dropped': dict.fromkeys(DROP_REASONS, 0), 'samples': []}
    try:
        _process_video(video, result, _WORKER if worker is None else worker)
    except Exception as e:  # pylint: disable=broad-except
        # One broken video must not stop the whole job: it is reported and skipped.
        result.update(status='failed', reason='error', error=f'{type(e).__name__}: {e}',
                      samples=[])
    result['seconds'] = time.time() - start
    return result


def _process_video(video, result, worker):
    config, tracker = worker['config'], worker['tracker']
    size = config.image_size
    kept = []  # (frame number, crop, landmarks, confidence, euler, box, dense points, dense conf.)
    for index, frame in video_lib.iter_frames(os.path.join(config.input_dir, video),
                                              config.frame_stride,
                                              max_decoded=config.max_frames_per_video):
        result['frames_decoded'] += 1
        face = tracker.detect(frame)
        if face is None:
            result['dropped']['no_face'] += 1
            continue
        if face.score < config.min_face_confidence:
            result['dropped']['low_confidence'] += 1
            continue
        box = face_tracking.square_crop_box(face.landmarks, config.crop_scale)
        if box[2] < config.min_crop_size:
            result['dropped']['crop_too_small'] += 1
            continue
        pose = head_pose.estimate_head_pose(face.landmarks, worker['template'], frame.shape[:2])
        if pose is None:
            result['dropped']['pose_failed'] += 1
            continue
        confidence = face_tracking.landmark_confidence(face.score, pose.rotation,
                                                       worker['normals'])
        dense = dense_confidence = None
        if config.dense_points:
            dense = face_tracking.to_crop_coordinates(face.mesh_landmarks[:, :2], box, size)
            dense_confidence = face_tracking.dense_point_confidence(
                face.score, pose.rotation, worker['dense_normals'])
        kept.append((index, face_tracking.crop_and_resize(frame, box, size),
                     face_tracking.to_crop_coordinates(face.landmarks, box, size), confidence,
                     pose.euler.astype(np.float32), box.astype(np.float32), dense,
                     dense_confidence))
    result['frames_kept'] = len(kept)
    if result['frames_decoded'] == 0:
        result.update(status='failed', reason='unreadable')
        return
    if not kept:
        no_face = result['dropped']['no_face'] == result['frames_decoded']
        result.update(status='failed', reason='no_face' if no_face else 'too_few_frames')
        return
    if len(kept) < config.num_frames:
        result.update(status='failed', reason='too_few_frames')
        return
    _, clip = clip_ids(video)
    chosen = frame_sampling.sample_pose_diverse(
        np.stack([k[4] for k in kept]), config.num_frames, config.samples_per_clip,
        np.deg2rad(config.min_pose_spread_deg), frame_sampling.clip_rng(config.seed, clip))
    if not chosen:
        result.update(status='failed', reason='low_pose_diversity')
        return
    sidecar = None
    if config.ground_truth_sidecars:
        sidecar = synthetic_video.read_sidecar(os.path.join(config.input_dir, video))
    jpeg_cache = {}
    for indices in chosen:
        for i in indices:
            if i not in jpeg_cache:
                jpeg_cache[i] = records.encode_jpeg(kept[i][1], config.jpeg_quality)
        sample = {
            'jpeg': [jpeg_cache[i] for i in indices],
            'frame_index': np.array([kept[i][0] for i in indices], np.int64),
            'landmarks': np.stack([kept[i][2] for i in indices]),
            'landmark_confidence': np.stack([kept[i][3] for i in indices]),
            'pose': np.stack([kept[i][4] for i in indices]),
            'crop_box': np.stack([kept[i][5] for i in indices]),
        }
        if config.dense_points:
            sample['dense_points'] = np.stack([kept[i][6] for i in indices])
            sample['dense_confidence'] = np.stack([kept[i][7] for i in indices])
        if sidecar is not None:
            sample['ground_truth'] = ground_truth_lib.sample_ground_truth(sidecar, sample['frame_index'],
                                                         sample['crop_box'], size, video)
        result['samples'].append(sample)


# ----------------------------------------------------------------------------- output side

class ProgressBar:
    """One self-overwriting line on stderr: videos done/total and frames/s."""

    def __init__(self, total, enabled=True):
        self._total, self._enabled, self._start = total, enabled and total > 0, time.time()

    def update(self, done, frames):
        if not self._enabled:
            return
        width = 30
        filled = int(width * done / self._total)
        rate = frames / max(time.time() - self._start, 1e-6)
        sys.stderr.write(f'\r[{"#" * filled}{"." * (width - filled)}] {done}/{self._total} '
                         f'videos, {frames} frames, {rate:.1f} frames/s')
        if done == self._total:
            sys.stderr.write('\n')
        sys.stderr.flush()


def _results(config, videos):
    """Yields `process_video` results, in process (1 worker) or from a spawn pool."""
    if config.num_workers == 1:
        worker = make_worker(config)
        try:
            for video in videos:
                yield process_video(video, worker)
        finally:
            worker['tracker'].close()
        return
    # spawn, not fork: mediapipe's graph threads and TensorFlow do not survive a fork.
    context = multiprocessing.get_context('spawn')
    with context.Pool(config.num_workers, initializer=_init_worker, initargs=(config,)) as pool:
        yield from pool.imap_unordered(process_video, videos)


def new_summary(videos_found, videos_in_shard, videos_skipped_done) -> dict:
    """The counts of a run before its first video (`count_video` adds each video)."""
    return {
        'videos_found': videos_found, 'videos_in_shard': videos_in_shard,
        'videos_skipped_done': videos_skipped_done, 'videos_processed': 0, 'videos_ok': 0,
        'videos_failed': dict.fromkeys(FAIL_REASONS, 0), 'failed_videos': {},
        'frames_decoded': 0, 'frames_kept': 0, 'frames_dropped': dict.fromkeys(DROP_REASONS, 0),
        'samples_written': {'train': 0, 'test': 0}, 'worker_seconds': 0.0,
    }


def video_report(result, split):
    """What the summary keeps of one `process_video` result (no samples): `video`, `status`,
    `reason`, `error` (only for 'error'), `frames_decoded`, `frames_kept`, `dropped`,
    `seconds`, `split` and `samples` (their number)."""
    report = {key: result[key] for key in ('video', 'status', 'reason', 'frames_decoded',
                                           'frames_kept', 'dropped', 'seconds')}
    if 'error' in result:
        report['error'] = result['error']
    report.update(split=split, samples=len(result['samples']))
    return report


def count_video(summary, result):
    """Adds one video's `video_report` to `summary`; logs the video when it failed."""
    summary['videos_processed'] += 1
    summary['frames_decoded'] += result['frames_decoded']
    summary['frames_kept'] += result['frames_kept']
    summary['worker_seconds'] += result['seconds']
    for reason, count in result['dropped'].items():
        summary['frames_dropped'][reason] += count
    if result['status'] == 'ok':
        summary['videos_ok'] += 1
    else:
        summary['videos_failed'][result['reason']] += 1
        summary['failed_videos'][result['video']] = result.get('error', result['reason'])
        logging.warning('skipping %s: %s', result['video'], result.get('error', result['reason']))
    if result['samples']:
        summary['samples_written'][result['split']] += result['samples']


def finish_summary(summary, start):
    """Adds the run's wall time (since `start`, time.time()) and speeds to `summary`."""
    summary['wall_seconds'] = time.time() - start
    summary['frames_per_second'] = summary['frames_decoded'] / max(summary['wall_seconds'], 1e-6)
    summary['frames_per_worker_second'] = (summary['frames_decoded'] /
                                           max(summary['worker_seconds'], 1e-6))


def run(config: PreprocessConfig) -> dict:
    """Runs the preprocessing of one shard in this process (or a pool of `num_workers`), the
    `--runner=InProcess` path, and returns the summary (also written as JSON).

    A `shard_index` of -1 means shard 0 (allowed only with one shard)."""
    config.validate()
    if config.shard_index == -1:
        config = dataclasses.replace(config, shard_index=0)
    start = time.time()
    all_videos = discover_videos(config.input_dir)
    mine = [v for v in all_videos if video_in_shard(v, config.shard_index, config.num_shards)]
    output = shards.ShardOutput(config.output_dir, config.shard_index, config.num_shards,
                                config.records_per_file)
    todo = [v for v in mine if v not in output.done]
    summary = new_summary(len(all_videos), len(mine), len(mine) - len(todo))
    logging.info('%d videos found, %d in shard %d/%d, %d already done', len(all_videos),
                 len(mine), config.shard_index, config.num_shards, len(mine) - len(todo))
    sheet = []
    progress = ProgressBar(len(todo), config.progress)
    for result in _results(config, todo):
        identity, clip = clip_ids(result['video'])
        split = split_of_identity(identity, config.test_fraction)
        count_video(summary, video_report(result, split))
        encoded = [encode(s, identity, clip) for s in result['samples']]
        # A video that raised an unexpected exception may be transient: not finished, retried.
        output.add(result['video'], split, encoded, result['status'], result['reason'],
                   finished=result['reason'] != 'error')
        if config.contact_sheet and len(sheet) < _CONTACT_SHEET_FRAMES:
            sheet.extend((s, j) for s in result['samples'] for j in range(len(s['jpeg'])))
        progress.update(summary['videos_processed'], summary['frames_decoded'])
    output.commit()
    if config.ground_truth_sidecars:
        ground_truth_lib.write_ground_truth_manifest(config.input_dir, config.output_dir)

    finish_summary(summary, start)
    summary['usable_records'] = output.usable_records()
    summary['usable_records_all_shards'] = output.usable_records(all_shards=True)
    tag = f's{config.shard_index:05d}-of-{config.num_shards:05d}'
    with open(os.path.join(config.output_dir, f'summary-{tag}.json'), 'w') as f:
        json.dump(summary, f, indent=1, sort_keys=True)
    if config.contact_sheet:
        preprocessing_report.write_contact_sheet(config.contact_sheet,
                                                 sheet[:_CONTACT_SHEET_FRAMES])
    return summary


def encode(sample, identity, clip):
    """One `process_video` sample as a serialised record (`records.encode_sample`)."""
    dense = {}
    if 'dense_points' in sample:
        dense = dict(dense_points=sample['dense_points'],
                     dense_confidence=sample['dense_confidence'],
                     dense_vertices=np.arange(sample['dense_points'].shape[1]),
                     dense_space=records.DENSE_SPACE_MEDIAPIPE)
    return records.encode_sample(
        sample['jpeg'], sample['landmarks'], sample['landmark_confidence'], sample['pose'],
        identity, clip, frame_indices=sample['frame_index'], crop_boxes=sample['crop_box'],
        ground_truth=sample.get('ground_truth'), **dense)
