"""Tests of the preprocessing as a Beam pipeline (`mofl.data.preprocessing_beam`): the same
records as `--runner=InProcess` with 1 and 2 DirectRunner workers, the per-video failure report
(counters and summary), re-runs that skip what is done, and no duplicate or partial file after a
job that died half-way. Videos: the trees of test_preprocess (the carphone clip, a truncated copy,
a face-less noise clip) plus a second identity's copy of the carphone."""
import dataclasses
import glob
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
os.environ.setdefault('GLOG_minloglevel', '2')

import pytest
import tensorflow as tf

beam = pytest.importorskip('apache_beam')

import test_preprocess
from mofl import sample_data
from mofl.data import preprocessing
from mofl.data import preprocessing_beam
from mofl.data import record_files

IDENTITIES = ('id00001', 'id00004')   # the two identities with a face


def _test_fraction_splitting(a, b):
    """A test fraction that sends exactly one of identities `a`, `b` to 'test'."""
    ha, hb = (preprocessing.unit_hash('split:' + i) for i in (a, b))
    return (ha + hb) / 2.0


@pytest.fixture(scope='module')
def beam_workspace(tmp_path_factory):
    """The video tree, a config, and the reference records of `--runner=InProcess`."""
    root = tmp_path_factory.mktemp('preprocess_beam')
    videos = root / 'videos'
    test_preprocess._make_tree(str(videos))
    os.makedirs(videos / 'id00004' / 'vidD')
    shutil.copy(sample_data.carphone_path(), videos / 'id00004' / 'vidD' / '00001.mp4')
    test_preprocess._stand_in_landmarks_3d(str(root / 'landmarks_3d.npz'))
    config = preprocessing.PreprocessConfig(
        input_dir=str(videos), output_dir=str(root / 'in_process'), min_crop_size=60,
        max_frames_per_video=40, frame_stride=2, samples_per_clip=3, min_pose_spread_deg=2.0,
        test_fraction=_test_fraction_splitting(*IDENTITIES),
        landmarks_3d=str(root / 'landmarks_3d.npz'), records_per_file=2, num_shards=2,
        progress=False, runner='DirectRunner')
    reference = preprocessing.run(dataclasses.replace(config, runner=preprocessing.IN_PROCESS,
                                                      num_shards=1))
    return {'root': root, 'config': config, 'reference': reference,
            'records': _records(config.output_dir)}


def _records(output_dir, pattern='*.tfrecord'):
    """{split: sorted list of serialized records} of the record files of a folder."""
    out = {}
    for split in ('train', 'test'):
        files = sorted(glob.glob(os.path.join(output_dir, f'{split}-{pattern}')))
        out[split] = sorted(r.numpy() for r in tf.data.TFRecordDataset(files)) if files else []
    return out


def _files(output_dir):
    """{name: (size, mtime_ns)} of every file of a folder, hidden ones too."""
    return {n: (os.path.getsize(os.path.join(output_dir, n)),
                os.stat(os.path.join(output_dir, n)).st_mtime_ns)
            for n in os.listdir(output_dir)}


def _temporary(output_dir):
    """The hidden temporary files and parts of a folder (`record_files.temporary_name`,
    `record_files.part_name`)."""
    return [n for n in os.listdir(output_dir)
            if n.startswith('.') and ('.tmp-' in n or '.part-' in n)]


def _run_beam(config, output_dir, **changes):
    return preprocessing_beam.run(dataclasses.replace(config, output_dir=str(output_dir),
                                                      **changes))


def test_reference_has_both_splits(beam_workspace):
    records = beam_workspace['records']
    assert len(records['train']) == 3 and len(records['test']) == 3
    assert beam_workspace['reference']['samples_written'] == {'train': 3, 'test': 3}


@pytest.mark.parametrize('num_workers', [1, 2])
def test_direct_runner_writes_the_in_process_records(beam_workspace, tmp_path, num_workers):
    config, reference = beam_workspace['config'], beam_workspace['reference']
    out = tmp_path / 'beam'
    summary = _run_beam(config, out, num_workers=num_workers)
    # Record for record the same serialized samples, in the same splits.
    assert _records(str(out)) == beam_workspace['records']
    for key in ('videos_found', 'videos_in_shard', 'videos_processed', 'videos_ok',
                'videos_failed', 'failed_videos', 'frames_decoded', 'frames_kept',
                'frames_dropped', 'samples_written'):
        assert summary[key] == reference[key], key
    assert summary['usable_records'] == summary['usable_records_all_shards'] == 6
    # The failure report as Beam counters too.
    counters = summary['beam_counters']
    assert counters['videos_processed'] == 4 and counters['videos_ok'] == 2
    assert counters['videos_failed_unreadable'] == 1 and counters['videos_failed_no_face'] == 1
    assert counters['frames_decoded'] == summary['frames_decoded'] == 2 * 20 + 4
    assert counters['samples_train'] == counters['samples_test'] == 3
    # Deterministic names: 3 records per split at 2 per file is 2 files of each split's shard.
    manifests = preprocessing_beam.read_manifests(str(out))
    names = sorted(n for m in manifests.values() for n in m['files'])
    assert names == sorted(os.path.basename(p) for p in glob.glob(str(out / '*.tfrecord')))
    assert all(n.endswith(('-f00000-of-00002.tfrecord', '-f00001-of-00002.tfrecord'))
               for n in names)
    assert not _temporary(out)
    workers = {r['worker'] for m in manifests.values() for r in m['report'].values()}
    if num_workers == 1:
        assert workers == {f'{socket.gethostname()}:{os.getpid()}'}   # in this process
    else:   # two worker processes (multi_processing mode), neither of them this one
        assert len(workers) == 2
        assert os.getpid() not in {int(w.split(':')[1]) for w in workers}
    text = preprocessing_beam.preprocessing_report.format_summary(summary)
    assert 'unreadable 1' in text and 'no_face 1' in text


def test_rerun_skips_finished_shards(beam_workspace, tmp_path):
    out = tmp_path / 'beam'
    _run_beam(beam_workspace['config'], out)
    before = _files(str(out))
    summary = _run_beam(beam_workspace['config'], out)
    assert summary['videos_skipped_done'] == 4 and summary['videos_processed'] == 0
    assert summary['beam_counters'] == {} and summary['usable_records'] == 6
    after = _files(str(out))
    assert {k: v for k, v in after.items() if not k.startswith('summary')} == {
        k: v for k, v in before.items() if not k.startswith('summary')}
    # A video added to the tree: its shard is redone from scratch, the other one is skipped.
    videos = tmp_path / 'videos'
    shutil.copytree(beam_workspace['config'].input_dir, videos)
    os.makedirs(videos / 'id00005' / 'vidE')
    shutil.copy(videos / 'id00003' / 'vidC' / '00001.mp4', videos / 'id00005' / 'vidE')
    shard = preprocessing.shard_of_video('id00005/vidE/00001.mp4', 2)
    summary = _run_beam(beam_workspace['config'], out, input_dir=str(videos))
    in_shard = [v for v in preprocessing.discover_videos(str(videos))
                if preprocessing.shard_of_video(v, 2) == shard]
    assert summary['shards_run'] == [shard] and summary['videos_processed'] == len(in_shard)
    assert summary['videos_failed']['no_face'] == 2 and summary['usable_records'] == 6
    assert _records(str(out)) == beam_workspace['records']


def test_job_killed_half_way_leaves_no_duplicate_or_partial_record(beam_workspace, tmp_path,
                                                                    monkeypatch):
    """Two deaths of the job: while the first record files were still temporary, then after
    every record file was in place but before any manifest; the re-run writes exactly the
    records of a clean run."""
    config, out = beam_workspace['config'], tmp_path / 'beam'

    def dies(*unused_args, **unused_kwargs):
        raise RuntimeError('simulated worker death')

    with monkeypatch.context() as patch:
        patch.setattr(record_files, 'commit', dies)
        with pytest.raises(Exception, match='simulated worker death'):
            _run_beam(config, out)
    assert _temporary(out)     # partial files, under hidden temporary names
    assert not glob.glob(str(out / '*.tfrecord')) and not glob.glob(str(out / 'manifest-*'))

    with monkeypatch.context() as patch:
        patch.setattr(preprocessing_beam, '_publish_manifest', dies)
        with pytest.raises(Exception, match='simulated worker death'):
            _run_beam(config, out)
    assert glob.glob(str(out / '*.tfrecord')) and not glob.glob(str(out / 'manifest-*'))

    summary = _run_beam(config, out)
    assert summary['videos_processed'] == 4 and summary['videos_skipped_done'] == 0
    assert _records(str(out)) == beam_workspace['records']
    assert not _temporary(out)
    clean = tmp_path / 'clean'
    _run_beam(config, clean)
    assert sorted(k for k in _files(str(out)) if k.endswith('.tfrecord')) == sorted(
        k for k in _files(str(clean)) if k.endswith('.tfrecord'))


def _flags_of(config):
    """The command line of `tools.preprocess` for `config`."""
    args = []
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        if field.name == 'dense_points':   # a count on the command line: 468 or 0
            args.append(f'--dense_points={468 if value else 0}')
        elif isinstance(value, bool):
            args.append(f'--{"" if value else "no"}{field.name}')
        elif value is not None:
            args.append(f'--{field.name}={value!r}' if isinstance(value, float)
                        else f'--{field.name}={value}')
    return args


def test_sigkill_while_writing_then_rerun(beam_workspace, tmp_path):
    """The binary in a process group of its own, SIGKILLed the moment its first record file
    (temporary or final) appears; the re-run writes exactly the reference records."""
    config, out = beam_workspace['config'], tmp_path / 'beam'
    env = dict(os.environ, PYTHONPATH=test_preprocess.ROOT)
    process = subprocess.Popen(
        [sys.executable, '-m', 'tools.preprocess'] + _flags_of(
            dataclasses.replace(config, output_dir=str(out), progress=False)),
        cwd=test_preprocess.ROOT, env=env, start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    seen = []
    try:
        deadline = time.time() + 300
        while process.poll() is None and time.time() < deadline and not seen:
            if out.exists():
                seen = [n for n in os.listdir(out) if '.tfrecord' in n]
            time.sleep(0.002)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    if not seen:
        assert process.returncode == 0, f'the job failed (status {process.returncode})'
        pytest.skip('the job ended before a file was seen')
    assert process.returncode == -signal.SIGKILL
    summary = _run_beam(config, out)
    assert summary['videos_processed'] + summary['videos_skipped_done'] == 4
    assert _records(str(out)) == beam_workspace['records']
    assert not _temporary(out)
    listed = {n for m in preprocessing_beam.read_manifests(str(out)).values() for n in m['files']}
    assert listed == {n for n in os.listdir(out) if n.endswith('.tfrecord')}


def test_unexpected_error_leaves_the_shard_unfinished(beam_workspace, tmp_path, monkeypatch):
    config, out = beam_workspace['config'], tmp_path / 'beam'
    broken_video = 'id00003/vidC/00001.mp4'
    real = preprocessing._process_video

    def flaky(video, result, worker):
        if video == broken_video:
            raise RuntimeError(f'simulated failure on {video}')
        real(video, result, worker)
    with monkeypatch.context() as patch:
        patch.setattr(preprocessing, '_process_video', flaky)
        summary = _run_beam(config, out)
    assert summary['videos_failed']['error'] == 1
    assert 'simulated failure' in summary['failed_videos'][broken_video]
    shard = preprocessing.shard_of_video(broken_video, config.num_shards)
    with open(out / preprocessing_beam.manifest_name(shard, config.num_shards)) as f:
        manifest = json.load(f)
    assert not manifest['complete'] and broken_video not in manifest['videos']
    summary = _run_beam(config, out)     # that shard is redone, the other one skipped
    assert summary['shards_run'] == [shard]
    assert summary['videos_failed']['no_face'] == 1 and summary['videos_failed']['error'] == 0
    assert _records(str(out)) == beam_workspace['records']


def _tfrecords(path):
    return [r.numpy() for r in tf.data.TFRecordDataset(str(path))]


def test_write_part_retried_replaces_never_adds(tmp_path):
    keyed = [('c#0', b'third'), ('a#0', b'first'), ('b#1', b'second')]
    fn = preprocessing_beam.WriteRecordPartFn(str(tmp_path), 4)
    element = ((3, 'train', 1, 2), keyed)
    outputs = [list(fn.process(element)) for _ in range(2)]   # a bundle and its retry
    name = 'train-s00003-of-00004-f00001-of-00002.tfrecord'
    part = record_files.part_name(name, ['a#0', 'b#1', 'c#0'])
    assert outputs[0] == outputs[1] == [(3, (name, part, 3))]
    assert os.listdir(tmp_path) == [part]   # no temporary file left, one part
    assert _tfrecords(tmp_path / part) == [b'first', b'second', b'third']   # in key order
    parts = [output[0][1] for output in outputs]
    assert record_files.assemble_files(str(tmp_path), parts) == {name: 3}
    assert os.listdir(tmp_path) == [name]
    assert _tfrecords(tmp_path / name) == [b'first', b'second', b'third']


def test_a_group_handed_over_in_pieces_loses_nothing(tmp_path):
    """A runner that hands one file's group to WritePart in two pieces (the suspected cause of
    `docs/beam.md` "Known problem"): each piece is a part of its own, and the file is made from
    both; assembling again (a retried WriteManifest) changes nothing."""
    fn = preprocessing_beam.WriteRecordPartFn(str(tmp_path), 1)
    pieces = [[(f'k#{i}', b'record %d' % i) for i in range(0, 5)],
              [(f'k#{i}', b'record %d' % i) for i in range(5, 8)]]
    parts = [out[1] for piece in pieces for out in fn.process(((0, 'test', 0, 1), piece))]
    assert len(parts) == 2 and len(set(p[1] for p in parts)) == 2
    name = parts[0][0]
    assert record_files.assemble_files(str(tmp_path), parts + parts[:1]) == {name: 8}
    assert os.listdir(tmp_path) == [name]
    assert sorted(_tfrecords(tmp_path / name)) == sorted(b'record %d' % i for i in range(8))
    before = _files(str(tmp_path))
    assert record_files.assemble_files(str(tmp_path), parts) == {name: 8}
    assert _files(str(tmp_path)) == before


def test_file_of_record_is_stable_and_spread():
    keys = [f'id{k:05d}/v/00001#{s}' for k in range(300) for s in range(2)]
    files = [record_files.file_of_record(key, 4) for key in keys]
    assert files == [record_files.file_of_record(key, 4) for key in keys]
    assert {files.count(f) for f in range(4)} <= set(range(100, 200))
    assert record_files.files_for(0, 2000) == 1
    assert record_files.files_for(4001, 2000) == 3


def test_pipeline_options_pass_through():
    config = preprocessing.PreprocessConfig(input_dir='.', output_dir='out', num_workers=3,
                                            runner='DirectRunner')
    options = preprocessing_beam.pipeline_options(config, ['--job_name=vox'])
    all_options = options.get_all_options()
    assert all_options['runner'] == 'DirectRunner' and all_options['job_name'] == 'vox'
    assert all_options['direct_num_workers'] == 3
    assert all_options['direct_running_mode'] == 'multi_processing'
    given = preprocessing_beam.pipeline_options(config, ['--direct_running_mode=multi_threading'])
    assert given.get_all_options()['direct_running_mode'] == 'multi_threading'
    dataflow = preprocessing_beam.pipeline_options(
        dataclasses.replace(config, runner='DataflowRunner'), ['--project=p', '--region=r'])
    all_options = dataflow.get_all_options()
    assert all_options['runner'] == 'DataflowRunner' and all_options['num_workers'] == 3
    assert all_options['project'] == 'p' and all_options['region'] == 'r'


def test_a_shard_short_of_its_samples_fails_and_is_redone(tmp_path):
    """A shard whose files hold fewer records than its videos reported is marked incomplete
    (so that a re-run redoes it) and the run fails, naming both counts."""
    manifest = {'complete': True, 'files': {'train-a.tfrecord': 3},
                'report': {'a.mp4': {'samples': 2, 'status': 'ok'},
                           'b.mp4': {'samples': 2, 'status': 'ok'},
                           'c.mp4': {'samples': 0, 'status': 'failed'}}}
    with pytest.raises(RuntimeError, match='holds 3 records but its videos produced 4'):
        preprocessing_beam.check_manifest_records(str(tmp_path), 0, 1, manifest)
    written = json.loads((tmp_path / preprocessing_beam.manifest_name(0, 1)).read_text())
    assert written['complete'] is False
    manifest['files']['train-a.tfrecord'] = 4
    preprocessing_beam.check_manifest_records(str(tmp_path), 0, 1, manifest,
                                              ['a.mp4', 'c.mp4'])   # no error
    with pytest.raises(RuntimeError, match='1 of its videos have no report'):
        preprocessing_beam.check_manifest_records(str(tmp_path), 0, 1, manifest,
                                                  ['a.mp4', 'd.mp4'])
