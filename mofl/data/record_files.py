"""Record files of the Beam preprocessing (`mofl.data.preprocessing_beam`): their names, and
writes that a killed, retried or duplicated worker can never leave partial or doubled.

Every file is written under a hidden temporary name (`temporary_name`: a leading dot, so that no
reader's glob such as `train-*` sees it, and unique per attempt), then renamed (`commit`). A
record file `{split}-sSSSSS-of-NNNNN-fFFFFF-of-GGGGG.tfrecord` is first written as one or more
hidden parts named by a digest of their records' keys (`part_name`), then made from them
(`assemble_files`). Paths may be local or any URL that tf.io.gfile writes (gs://...).
"""
import hashlib
import json
import math
import os
import uuid

from absl import logging
import tensorflow as tf

from mofl.data.preprocessing import unit_hash


def shard_tag(shard, num_shards):
    """'sSSSSS-of-NNNNN' of shard `shard` of `num_shards`."""
    return f's{shard:05d}-of-{num_shards:05d}'


def record_file_name(split, shard, num_shards, index, num_files):
    """The final name of file `index` of `num_files` of a split of a shard."""
    return f'{split}-{shard_tag(shard, num_shards)}-f{index:05d}-of-{num_files:05d}.tfrecord'


def temporary_name(name):
    """The name a file is written under before it is renamed to `name`: hidden (a leading dot),
    so that no reader's glob (`train-*`) sees it, and unique per attempt."""
    return f'.{name}.tmp-{uuid.uuid4().hex}'


def file_of_record(key, num_files):
    """The file (0-based, of `num_files`) of the record with `key` ('clip#sample'): a stable
    hash, so that the same record lands in the same file on every run and worker."""
    return int(unit_hash('file:' + key) * num_files)


def files_for(num_records, records_per_file):
    """How many files hold `num_records` records of one split of one shard (≥ 1)."""
    return max(1, math.ceil(num_records / records_per_file))


def part_name(name, keys):
    """The hidden name of the part of file `name` that holds the records with `keys`: named by
    their digest, so that the same records give the same part on every attempt."""
    digest = hashlib.sha256('\n'.join(sorted(keys)).encode()).hexdigest()[:16]
    return f'.{name}.part-{digest}'


def assemble_files(output_dir, parts):
    """Makes each record file from its parts: [(name, part name, records)] -> {name: records}.

    One part is renamed to the file's name; several are joined (in part-name order) into it and
    deleted. A part listed twice (a retried bundle) counts once. Safe to repeat: a file whose
    parts are already gone was made by an earlier attempt.
    """
    by_name = {}
    for name, part, count in sorted(set(parts)):
        by_name.setdefault(name, {})[part] = count
    for name, counts in by_name.items():
        path = join(output_dir, name)
        paths = [join(output_dir, part) for part in sorted(counts)]
        present = [p for p in paths if tf.io.gfile.exists(p)]
        if len(present) < len(paths) and tf.io.gfile.exists(path):
            for leftover in present:   # an earlier attempt made the file, then stopped
                tf.io.gfile.remove(leftover)
        elif len(paths) == 1:
            commit(paths[0], path)
        else:
            logging.warning('%s: joining %d parts (the runner split its group)', name,
                            len(paths))
            temporary = join(output_dir, temporary_name(name))
            write_tfrecord(temporary, (r.numpy() for r in tf.data.TFRecordDataset(paths)))
            commit(temporary, path)
            for part in paths:
                tf.io.gfile.remove(part)
    return {name: sum(counts.values()) for name, counts in by_name.items()}


def write_tfrecord(path, serialized):
    """Writes `serialized` (an iterable of bytes) as a TFRecord file; returns how many."""
    count = 0
    with tf.io.TFRecordWriter(path) as writer:
        for record in serialized:
            writer.write(record)
            count += 1
    return count


def commit(temporary, path):
    """Renames a finished temporary file to its final name, replacing one already there."""
    tf.io.gfile.rename(temporary, path, overwrite=True)


def join(folder, name):
    """`folder`/`name`, for a local folder or a URL (gs://...)."""
    return folder.rstrip('/') + '/' + name if '://' in folder else os.path.join(folder, name)


def write_json(path, value):
    """Writes `value` as JSON to `path` atomically (`temporary_name`, then rename)."""
    folder, name = path.rsplit('/', 1) if '://' in path else os.path.split(path)
    temporary = join(folder, temporary_name(name))
    with tf.io.gfile.GFile(temporary, 'w') as f:
        json.dump(value, f, indent=1, sort_keys=True)
    tf.io.gfile.rename(temporary, path, overwrite=True)


def read_json(path):
    """The JSON value in `path` (local or URL)."""
    with tf.io.gfile.GFile(path) as f:
        return json.load(f)
