"""The preprocessing (`mofl.data.preprocessing`) as an Apache Beam pipeline: the same per-video
work (`preprocessing.process_video`), on any Beam runner (`tools.preprocess --runner=...`).

Videos are the unit of work. The launcher (`run`, on the machine that starts the job) lists the
videos, leaves out those already done, and runs:

    videos ─ ProcessVideo ─┬─ records ((shard, split), (key, bytes)) ─ AssignFile ─ GroupByFile
                           │                                    (side input: records per    │
                           │                                     shard and split)       WritePart
                           └─ reports (shard, video report) ─────────┬── CountRecords       │
                                                                     └─ BySet ◄── parts ────┘
                                                                         │
                                                         WriteManifest (parts -> files, manifest)

Shards. Every video belongs to one of `num_shards` shards (`preprocessing.shard_of_video`, a
stable hash of its path; the same shards as `--runner=InProcess`); `shard_index` -1 runs them all
in one job, k only shard k. A shard is the unit of resumption.

Output files of shard S of N (in `output_dir`, a local path or any URL tf.io.gfile writes:
gs://...):
- `{split}-sSSSSS-of-NNNNN-fFFFFF-of-GGGGG.tfrecord`: file F of the G files of a split. G is
  ceil(records of the split in the shard / `records_per_file`), and a record's file is a stable
  hash of its key (`clip#sample`): the names and which records each file holds depend only on
  the videos and the config, never on the workers, bundles or retries.
- `manifest-beam-sSSSSS-of-NNNNN.json`: written (temp file + rename) only after every file of
  the shard is in place: `files` {name: records}, `videos` {video: status, reason, samples,
  split} (the videos that are finished), `report` {video: `preprocessing.video_report`} (all of
  them, with the worker that did each) and `complete` (False when a video raised an unexpected
  exception: the next run redoes the shard). Its `files` and `videos` have the schema of the
  `--runner=InProcess` manifests (`mofl.data.shards`), so either path skips what the other did.
- `summary-beam.json` (every shard) or `summary-beam-sSSSSS-of-NNNNN.json` (`--shard_index`):
  the summary of `preprocessing.run`, plus `runner` and `beam_counters`.

Why no record is ever duplicated, partial or lost:
- WritePart writes the records a GroupByFile group hands it, in key order, under a hidden
  temporary name (`.NAME.tmp-UUID`), then renames that to a hidden part name named by a digest
  of the part's keys (`.NAME.part-DIGEST`): a retried or duplicated bundle rewrites the same
  part, never adds one. WriteManifest, once per shard after every part, makes each file NAME
  from its parts: one part (the normal case) is renamed, several (a runner that hands one group
  over in pieces) are joined, so no piece replaces another (`mofl.data.record_files`). Records
  reach WritePart through a GroupByKey, which only passes on the output of committed bundles, so
  a retried ProcessVideo bundle is not seen twice either. After the job the launcher checks that
  every shard's files hold every sample its videos reported (`check_manifest_records`).
- A shard counts as done only when its manifest exists and is complete, and every video of the
  shard is listed in a manifest (a video added to the tree since makes its shard run again).
  On start, every shard to run loses its manifest, then its record files, parts and temporary
  files (left by a killed job); so a re-run redoes an unfinished shard from scratch and skips
  every finished one (and every video that any manifest of the folder lists).
Do not run two jobs on one output folder at the same time (the second would delete the first's
unfinished files).

Failures per video (unreadable, no_face, too_few_frames, low_pose_diversity, error) are Beam
counters (namespace `mofl.preprocess`: `videos_failed_<reason>`, `frames_dropped_<reason>`,
`videos_ok`, `frames_decoded`, `samples_train`, ...) and, with the failed videos named, in the
manifests and the summary (`preprocessing_report.format_summary`).
"""
import os
import socket
import time
from typing import Dict, Sequence

from absl import logging
import apache_beam as beam
from apache_beam.metrics.metric import Metrics
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options import pipeline_options as beam_options
import tensorflow as tf

from mofl.data import preprocessing
from mofl.data import preprocessing_ground_truth
from mofl.data import preprocessing_report
from mofl.data import record_files
from mofl.data import records

COUNTER_NAMESPACE = 'mofl.preprocess'
MANIFEST_PREFIX = 'manifest-beam-'
_REPORTS = 'reports'
_DIRECT_RUNNERS = ('directrunner', 'direct', 'switchingdirectrunner', 'bundlebasedirectrunner')


# ----------------------------------------------------------------------------- names

def manifest_name(shard, num_shards):
    """The name of a shard's completion manifest."""
    return f'{MANIFEST_PREFIX}{record_files.shard_tag(shard, num_shards)}.json'


# ----------------------------------------------------------------------------- the pipeline

class ProcessVideoFn(beam.DoFn):
    """`preprocessing.process_video` as a DoFn; each instance owns its FaceMesh (`setup`).

    Input: a video path (relative to `config.input_dir`). Main output, one per sample:
    ((shard, split), (key 'clip#sample', serialized record)); output `reports`: one
    (shard, `preprocessing.video_report` + `worker`) per video.
    """

    def __init__(self, config: preprocessing.PreprocessConfig):
        super().__init__()
        self._config = config
        self._worker = None

    def setup(self):
        self._worker = preprocessing.make_worker(self._config)

    def process(self, video):
        config = self._config
        result = preprocessing.process_video(video, self._worker)
        identity, clip = preprocessing.clip_ids(video)
        split = preprocessing.split_of_identity(identity, config.test_fraction)
        shard = preprocessing.shard_of_video(video, config.num_shards)
        report = preprocessing.video_report(result, split)
        report['worker'] = f'{socket.gethostname()}:{os.getpid()}'
        count_video(report)
        for i, sample in enumerate(result['samples']):
            yield (shard, split), (f'{clip}#{i}', preprocessing.encode(sample, identity, clip))
        yield beam.pvalue.TaggedOutput(_REPORTS, (shard, report))

    def teardown(self):
        if self._worker is not None:
            self._worker['tracker'].close()
            self._worker = None


def count_video(report):
    """Adds one video (`preprocessing.video_report`) to the Beam counters."""
    def inc(name, value=1):
        if value:
            Metrics.counter(COUNTER_NAMESPACE, name).inc(value)
    inc('videos_processed')
    inc('videos_ok' if report['status'] == 'ok' else f'videos_failed_{report["reason"]}')
    inc('frames_decoded', report['frames_decoded'])
    inc('frames_kept', report['frames_kept'])
    for reason, count in report['dropped'].items():
        inc(f'frames_dropped_{reason}', count)
    inc(f'samples_{report["split"]}', report['samples'])


def _assign_file(element, counts, records_per_file):
    """((shard, split), (key, record)) -> ((shard, split, file, num_files), record)."""
    (shard, split), (key, record) = element
    num_files = record_files.files_for(counts[(shard, split)], records_per_file)
    return (shard, split, record_files.file_of_record(key, num_files), num_files), (key, record)


class WriteRecordPartFn(beam.DoFn):
    """Writes a part of one record file: ((shard, split, index, num_files), [(key, record)])
    -> (shard, (name, part name, number of records)), in key order, under a temporary name
    first, then renamed to the part's name (module docstring)."""

    def __init__(self, output_dir, num_shards):
        super().__init__()
        self._output_dir = output_dir
        self._num_shards = num_shards

    def process(self, element):
        (shard, split, index, num_files), keyed = element
        keyed = sorted(keyed, key=lambda kv: kv[0])
        name = record_files.record_file_name(split, shard, self._num_shards, index, num_files)
        part = record_files.part_name(name, [key for key, _ in keyed])
        temporary = record_files.join(self._output_dir, record_files.temporary_name(name))
        count = record_files.write_tfrecord(temporary, (record for _, record in keyed))
        record_files.commit(temporary, record_files.join(self._output_dir, part))
        Metrics.counter(COUNTER_NAMESPACE, 'record_parts_written').inc()
        yield shard, (name, part, count)


def _write_manifest(element, output_dir, num_shards):
    """(shard, {'parts': [(name, part, count)], 'reports': [report]}) -> the shard, once its
    files are made from their parts (`assemble_files`) and its manifest (module docstring) is
    written (`_publish_manifest`)."""
    shard, grouped = element
    files = record_files.assemble_files(output_dir, grouped['parts'])
    reports = sorted(grouped['reports'], key=lambda r: r['video'])
    manifest = {
        'schema_version': records.SCHEMA_VERSION,
        'complete': all(r['reason'] != 'error' for r in reports),
        'files': dict(sorted(files.items())),
        'videos': {r['video']: {'status': r['status'], 'reason': r['reason'],
                                'samples': r['samples'], 'split': r['split']}
                   for r in reports if r['reason'] != 'error'},
        'report': {r['video']: r for r in reports},
    }
    Metrics.counter(COUNTER_NAMESPACE, 'record_files_written').inc(len(files))
    _publish_manifest(output_dir, shard, num_shards, manifest)
    return shard


def _publish_manifest(output_dir, shard, num_shards, manifest):
    """Writes a shard's manifest (temp file + rename): the shard is done once it is there."""
    path = record_files.join(output_dir, manifest_name(shard, num_shards))
    record_files.write_json(path, manifest)


def build_pipeline(pipeline, config: preprocessing.PreprocessConfig, videos: Sequence[str]):
    """Adds the preprocessing of `videos` (relative paths) to `pipeline`.

    Returns:
        the PCollection of the shards whose manifests were written.
    """
    outputs = (pipeline
               | 'Videos' >> beam.Create(list(videos))
               | 'ProcessVideo' >> beam.ParDo(ProcessVideoFn(config)).with_outputs(
                   _REPORTS, main='records'))
    reports = outputs[_REPORTS]
    counts = (reports
              | 'RecordsPerSplit' >> beam.Map(lambda kv: ((kv[0], kv[1]['split']),
                                                          kv[1]['samples']))
              | 'CountRecords' >> beam.CombinePerKey(sum))
    files = (outputs.records
             | 'AssignFile' >> beam.Map(_assign_file, counts=beam.pvalue.AsDict(counts),
                                        records_per_file=config.records_per_file)
             | 'GroupByFile' >> beam.GroupByKey()
             | 'WritePart' >> beam.ParDo(WriteRecordPartFn(config.output_dir,
                                                           config.num_shards)))
    return ({'parts': files, 'reports': reports}
            | 'BySet' >> beam.CoGroupByKey()
            | 'WriteManifest' >> beam.Map(_write_manifest, output_dir=config.output_dir,
                                          num_shards=config.num_shards))


def pipeline_options(config: preprocessing.PreprocessConfig,
                     pipeline_args: Sequence[str] = ()) -> beam_options.PipelineOptions:
    """Beam's options: `pipeline_args` (the command line's unknown flags: `--project`,
    `--region`, `--temp_location`, ...) with `--runner` from the config; for the DirectRunner,
    `num_workers` worker processes (multi_processing mode; one: in_memory, this process) unless
    the arguments set `--direct_num_workers` / `--direct_running_mode`; for another runner
    `num_workers` > 1 becomes its `--num_workers` unless given."""
    args = list(pipeline_args)
    given = {a.split('=')[0].lstrip('-') for a in args if a.startswith('--')}
    options = beam_options.PipelineOptions(args)
    options.view_as(beam_options.StandardOptions).runner = config.runner
    if is_direct_runner(config.runner):
        direct = options.view_as(beam_options.DirectOptions)
        if 'direct_num_workers' not in given:
            direct.direct_num_workers = config.num_workers
        if 'direct_running_mode' not in given:
            direct.direct_running_mode = ('multi_processing' if config.num_workers > 1
                                          else 'in_memory')
    elif config.num_workers > 1 and 'num_workers' not in given:
        options.view_as(beam_options.WorkerOptions).num_workers = config.num_workers
    return options


def is_direct_runner(runner):
    """Whether `runner` (a --runner value) names Beam's local DirectRunner."""
    return runner.lower() in _DIRECT_RUNNERS


# ----------------------------------------------------------------------------- the launcher

def read_manifests(output_dir) -> Dict[str, dict]:
    """Every manifest of the folder (this path's and `--runner=InProcess`'s): {name: content}."""
    return {os.path.basename(p): record_files.read_json(p)
            for p in sorted(tf.io.gfile.glob(record_files.join(output_dir, 'manifest-*.json')))}


def remove_shard_output(output_dir, shard, num_shards):
    """Deletes a shard's manifest, then its record files, parts and temporary files (what a
    killed or unfinished run left), so that the shard is redone from scratch."""
    manifest = record_files.join(output_dir, manifest_name(shard, num_shards))
    if tf.io.gfile.exists(manifest):
        tf.io.gfile.remove(manifest)
    tag = record_files.shard_tag(shard, num_shards)
    patterns = [f'*-{tag}-f*.tfrecord', f'.*-{tag}-f*.tfrecord.tmp-*',
                f'.*-{tag}-f*.tfrecord.part-*', f'.{manifest_name(shard, num_shards)}.tmp-*']
    for path in sorted(p for pattern in patterns
                       for p in tf.io.gfile.glob(record_files.join(output_dir, pattern))):
        logging.warning('removing unfinished %s', path)
        tf.io.gfile.remove(path)


def counters(result) -> Dict[str, int]:
    """The `mofl.preprocess` counters of a finished Beam job: {name: committed value} (the
    attempted value where the runner commits none)."""
    query = result.metrics().query(MetricsFilter().with_namespace(COUNTER_NAMESPACE))
    values = {}
    for counter in query['counters']:
        value = counter.committed if counter.committed is not None else counter.attempted
        values[counter.key.metric.name] = values.get(counter.key.metric.name, 0) + int(value)
    return dict(sorted(values.items()))


def run(config: preprocessing.PreprocessConfig, pipeline_args: Sequence[str] = ()) -> dict:
    """Runs the preprocessing as a Beam job (module docstring) and returns the summary of
    `preprocessing.run`, plus `runner`, `beam_counters` and `shards_run` (also written as
    JSON).

    Args:
        config: the run (its `runner` is the Beam runner).
        pipeline_args: further Beam pipeline options (`pipeline_options`).
    """
    config.validate()
    start = time.time()
    num_shards = config.num_shards
    tf.io.gfile.makedirs(config.output_dir)
    all_videos = preprocessing.discover_videos(config.input_dir)
    selected = (list(range(num_shards)) if config.shard_index == -1 else [config.shard_index])
    by_shard = {s: [] for s in selected}
    for video in all_videos:
        shard = preprocessing.shard_of_video(video, num_shards)
        if shard in by_shard:
            by_shard[shard].append(video)
    mine = [v for s in selected for v in by_shard[s]]

    manifests = read_manifests(config.output_dir)
    listed = {v for manifest in manifests.values() for v in manifest.get('videos', {})}
    # Done: a complete manifest, and no video of the shard that no manifest lists (a new one).
    finished = {s for s in selected
                if manifests.get(manifest_name(s, num_shards), {}).get('complete') and
                all(v in listed for v in by_shard[s])}
    redo = [s for s in selected if s not in finished]
    redone_manifests = {manifest_name(s, num_shards) for s in redo}
    done = {v for name, manifest in manifests.items() if name not in redone_manifests
            for v in manifest.get('videos', {})}
    todo_by_shard = {s: [v for v in by_shard[s] if v not in done] for s in redo}
    todo = sorted(v for videos in todo_by_shard.values() for v in videos)
    shards_run = sorted(s for s, videos in todo_by_shard.items() if videos)
    summary = preprocessing.new_summary(len(all_videos), len(mine), len(mine) - len(todo))
    logging.info('%d videos found, %d in %d of %d shards, %d already done; runner %s',
                 len(all_videos), len(mine), len(selected), num_shards,
                 len(mine) - len(todo), config.runner)

    for shard in redo:
        remove_shard_output(config.output_dir, shard, num_shards)
    beam_counters = {}
    if todo:
        pipeline = beam.Pipeline(options=pipeline_options(config, pipeline_args))
        build_pipeline(pipeline, config, todo)
        result = pipeline.run()
        result.wait_until_finish()
        beam_counters = counters(result)

    manifests = read_manifests(config.output_dir)
    for shard in shards_run:
        manifest = manifests.get(manifest_name(shard, num_shards))
        if manifest is None:
            raise RuntimeError(f'{config.output_dir}: the Beam job ended without the manifest of '
                               f'shard {record_files.shard_tag(shard, num_shards)}')
        for report in manifest['report'].values():
            preprocessing.count_video(summary, report)
        check_manifest_records(config.output_dir, shard, num_shards, manifest,
                               todo_by_shard[shard])
    preprocessing.finish_summary(summary, start)
    mine_files = {name: count for s in selected
                  for name, count in manifests.get(manifest_name(s, num_shards), {}).get(
                      'files', {}).items()}
    summary['usable_records'] = sum(mine_files.values())
    summary['usable_records_all_shards'] = sum(sum(m.get('files', {}).values())
                                               for m in manifests.values())
    summary.update(runner=config.runner, beam_counters=beam_counters, shards_run=shards_run)
    tag = ('' if config.shard_index == -1 else
           '-' + record_files.shard_tag(config.shard_index, num_shards))
    record_files.write_json(record_files.join(config.output_dir, f'summary-beam{tag}.json'),
                            summary)

    if config.ground_truth_sidecars:
        preprocessing_ground_truth.write_ground_truth_manifest(config.input_dir, config.output_dir)
    if config.contact_sheet:
        preprocessing_report.write_contact_sheet(
            config.contact_sheet, preprocessing_report.contact_sheet_frames(
                [record_files.join(config.output_dir, name) for name in sorted(mine_files)]))
    return summary


def check_manifest_records(output_dir, shard, num_shards, manifest, videos=()):
    """Checks that a shard's manifest reports every video of `videos` (those the job ran) and
    that its record files hold every sample its videos reported.

    `WriteManifest` joins the parts of a file that a runner handed over in pieces; this check
    is the last line against any other loss (a DirectRunner job with 2 worker processes once
    wrote 1,392 of 1,987 samples, before parts existed; `docs/beam.md` "Known problem"). On a
    mismatch the manifest is marked incomplete, so that a re-run redoes the shard, and the run
    fails.

    Raises:
        RuntimeError: naming the shard and what is missing.
    """
    reported = sum(r.get('samples', 0) for r in manifest['report'].values())
    written = sum(manifest.get('files', {}).values())
    unreported = sorted(set(videos) - set(manifest['report']))
    if written != reported or unreported:
        manifest['complete'] = False
        _publish_manifest(output_dir, shard, num_shards, manifest)
        tag = record_files.shard_tag(shard, num_shards)
        missing = (f'; {len(unreported)} of its videos have no report ({unreported[0]} ...)'
                   if unreported else '')
        raise RuntimeError(f'{output_dir}: shard {tag} holds {written} records but its videos '
                           f'produced {reported} samples{missing}; the shard is marked '
                           'incomplete, a re-run redoes it')


def run_and_report(config: preprocessing.PreprocessConfig,
                   pipeline_args: Sequence[str] = ()) -> int:
    """What `tools.preprocess` does once its flags are parsed: `preprocessing.run` for
    `--runner=InProcess`, else `run` on the Beam runner; prints the summary.

    Returns:
        the exit status (`preprocessing_report.exit_status`).
    """
    if config.runner == preprocessing.IN_PROCESS:
        if pipeline_args:
            raise ValueError(f'--runner={preprocessing.IN_PROCESS} takes no Beam pipeline '
                             f'options: {list(pipeline_args)}')
        summary = preprocessing.run(config)
    else:
        summary = run(config, pipeline_args)
    print(preprocessing_report.format_summary(summary))
    return preprocessing_report.exit_status(summary)
