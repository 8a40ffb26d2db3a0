"""Writing one shard of training records so that an interrupted run resumes without duplicating
or losing records (used by `tools.preprocess`).

Files of shard S of N in the output folder:
- `{split}-sSSSSS-of-NNNNN-cCCCCC.tfrecord`: the records of chunk C of a split (schema:
  `mofl.data.records`).
- `manifest-sSSSSS-of-NNNNN.json`: the finished videos and the committed files of the shard
  (schema_version, files: name -> record count, videos: video -> status, reason, samples, split).

Records go to `.tmp` files; after `records_per_file` records of a split (and at the end) every
open file is closed and renamed, then the manifest naming them and their videos is rewritten
atomically (temp file + rename). On opening, every video in any manifest of the folder counts as
done, and the shard's `.tmp` files and record files its manifest does not name are deleted.
"""
import collections
import glob
import json
import os

from absl import logging

from mofl.data import records


class ShardOutput:
    """Record files, manifest and resumption of one shard (module docstring).

    Args:
        output_dir: the folder of every shard's files (created if missing).
        shard_index: S, 0-based.
        num_shards: N.
        records_per_file: commit once a split has this many pending records.
    """

    def __init__(self, output_dir, shard_index, num_shards, records_per_file):
        self._dir = output_dir
        self._records_per_file = records_per_file
        os.makedirs(self._dir, exist_ok=True)
        self._tag = f's{shard_index:05d}-of-{num_shards:05d}'
        self.manifest_path = os.path.join(self._dir, f'manifest-{self._tag}.json')
        self.manifest = self._read_json(self.manifest_path) or {
            'schema_version': records.SCHEMA_VERSION, 'files': {}, 'videos': {}}
        self.done = set()
        for path in glob.glob(os.path.join(self._dir, 'manifest-*.json')):
            other = self.manifest if path == self.manifest_path else self._read_json(path)
            self.done.update((other or {}).get('videos', {}))
        self._remove_uncommitted()
        self._chunk = 1 + max([int(name.rsplit('-c', 1)[1].split('.')[0])
                               for name in self.manifest['files']], default=-1)
        self._writers = {}
        self._pending_videos = {}
        self._pending_records = collections.Counter()

    @staticmethod
    def _read_json(path):
        if not os.path.exists(path):
            return None
        with open(path) as f:
            return json.load(f)

    def _remove_uncommitted(self):
        """Deletes this shard's temp files and record files its manifest does not list (left by
        a run that stopped between renaming a file and rewriting the manifest)."""
        for path in glob.glob(os.path.join(self._dir, f'*-{self._tag}-c*.tfrecord*')):
            name = os.path.basename(path)
            if name.endswith('.tmp') or name not in self.manifest['files']:
                logging.warning('removing uncommitted %s', path)
                os.remove(path)

    def _file_name(self, split):
        return f'{split}-{self._tag}-c{self._chunk:05d}.tfrecord'

    def add(self, video, split, encoded_samples, status, reason, finished=True):
        """Writes a video's records (committed later) and queues the video for the manifest.

        Args:
            video: the video's name (the manifest key).
            split: 'train' or 'test'.
            encoded_samples: serialized records (`records.encode_sample`).
            status, reason: stored in the manifest.
            finished: False leaves the video out of the manifest (its records are still
                written), so the next run retries it.
        """
        if encoded_samples and split not in self._writers:
            import tensorflow as tf  # pylint: disable=g-import-not-at-top
            path = os.path.join(self._dir, self._file_name(split) + '.tmp')
            self._writers[split] = tf.io.TFRecordWriter(path)
        for serialized in encoded_samples:
            self._writers[split].write(serialized)
        self._pending_records[split] += len(encoded_samples)
        if not finished:
            return
        self._pending_videos[video] = {
            'status': status, 'reason': reason, 'samples': len(encoded_samples), 'split': split}
        if max(self._pending_records.values(), default=0) >= self._records_per_file:
            self.commit()

    def commit(self):
        """Closes and renames the chunk's files, then rewrites the manifest atomically."""
        if not self._pending_videos:
            return
        for split, writer in self._writers.items():
            writer.close()
            name = self._file_name(split)
            os.replace(os.path.join(self._dir, name + '.tmp'), os.path.join(self._dir, name))
            self.manifest['files'][name] = self._pending_records[split]
        self.manifest['videos'].update(self._pending_videos)
        tmp = self.manifest_path + '.tmp'
        with open(tmp, 'w') as f:
            json.dump(self.manifest, f, indent=1, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.manifest_path)
        self.done.update(self._pending_videos)
        if self._writers:
            self._chunk += 1
        self._writers, self._pending_videos = {}, {}
        self._pending_records = collections.Counter()

    def usable_records(self, all_shards=False):
        """Records committed by this shard (or by every shard) in the output folder."""
        if not all_shards:
            return sum(self.manifest['files'].values())
        total = 0
        for path in glob.glob(os.path.join(self._dir, 'manifest-*.json')):
            total += sum((self._read_json(path) or {}).get('files', {}).values())
        return total
