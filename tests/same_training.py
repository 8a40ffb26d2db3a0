"""Checks that a distributed training run (mirrored replicas, or several workers) trained what one
device trains with the same global batch: the same losses at every step and the same
checkpoints (weights, Adam's slots and counters, the step), up to float rounding.

Tolerances, measured on the tiny test runs (tests/test_multi_worker.py: two workers, 3 steps;
tests/test_train.py: two mirrored CPU devices, 4 steps; both with a gradient clip at every step):
the distributed and the one-device run differ by the order of float sums only, at most 2.3e-7
in a weight, 5.5e-6 of a slot's largest value and 1.3e-6 relative in a logged loss (mostly the
6 digits of losses.csv). The bugs these comparisons are for differ by far more: training on
other batches (the data sharded by file, TensorFlow's default for several workers) moved losses
by up to 44 %, weights by up to 9e-4 and slots by ~100 % of their scale; clipping each
replica's share of the gradient instead of the global gradient moved losses by 2 % (two workers)
and 10 % (two mirrored devices). Adam moves a weight by about the learning rate (1e-4) per
step: WEIGHT_ATOL is 5 % of one step's travel and 20× the measured difference;
SLOT_ATOL_OF_SCALE and LOSS_RTOL are ~90× and ~80× the measured differences.
"""
import csv
import os

import numpy as np
import tensorflow as tf

LOSS_RTOL = 1e-4
WEIGHT_ATOL = 5e-6
SLOT_ATOL_OF_SCALE = 5e-4
# Terms that are statistics of a batch rather than means over its samples: under tf.distribute
# each replica computes them over its own samples (documented for --lambda_identity_mean and
# --lambda_depth_spread), so they are not compared; with their weights at 0 (the defaults) they
# do not enter the total, which is.
BATCH_STATISTICS = ('identity_mean', 'depth_spread')


def losses(output_dir):
    """The rows of OUTPUT_DIR/losses.csv (dicts of strings)."""
    with open(os.path.join(output_dir, 'losses.csv')) as f:
        return list(csv.DictReader(f))


def checkpoint_numbers(directory):
    """The step numbers of the checkpoints in `directory` (ckpt-N), sorted."""
    return sorted(int(n[len('ckpt-'):-len('.index')]) for n in os.listdir(directory)
                  if n.startswith('ckpt-') and n.endswith('.index'))


def checkpoint_variables(prefix):
    """{name: array} of a checkpoint, without the input iterator's state (a one-device run
    checkpoints it, distributed runs cannot) and the save counter (how often it saved)."""
    reader = tf.train.load_checkpoint(prefix)
    dtypes = reader.get_variable_to_dtype_map()
    return {n: reader.get_tensor(n) for n, dtype in dtypes.items()
            if dtype != tf.variant and n != '_CHECKPOINTABLE_OBJECT_GRAPH'
            and not n.startswith(('save_counter', 'data/'))}


def is_slot(name):
    """One of Adam's slots m, v (the optimizers also save the weights they train, under
    `_trainable_variables`, and their step count and learning rate)."""
    return name.startswith('optimizer_') and '/_variables/' in name


def assert_same_training(got_dir, want_dir, steps):
    """The run in `got_dir` trained what the run in `want_dir` trained: every row of
    losses.csv, and the checkpoints of `steps` in OUTPUT_DIR/checkpoints, within the
    tolerances above (integers exactly)."""
    rows, want_rows = losses(got_dir), losses(want_dir)
    assert [r['step'] for r in rows] == [r['step'] for r in want_rows]
    assert [r['stage'] for r in rows] == [r['stage'] for r in want_rows]
    columns = [c for c in want_rows[0] if c not in ('step', 'stage') + BATCH_STATISTICS]
    assert 'total' in columns and 'photometric' in columns
    got = np.array([[float(r[c]) for c in columns] for r in rows])
    want = np.array([[float(r[c]) for c in columns] for r in want_rows])
    np.testing.assert_allclose(got, want, rtol=LOSS_RTOL, atol=0, err_msg=str(columns))

    for step in steps:
        got = checkpoint_variables(os.path.join(got_dir, 'checkpoints', f'ckpt-{step}'))
        want = checkpoint_variables(os.path.join(want_dir, 'checkpoints', f'ckpt-{step}'))
        assert set(got) == set(want)
        assert sum(is_slot(n) for n in got) > 20
        assert sum(not is_slot(n) and v.dtype.kind == 'f' for n, v in got.items()) > 20
        assert int(got['step/.ATTRIBUTES/VARIABLE_VALUE']) == step
        for name, value in want.items():
            message = f'ckpt-{step}: {name}'
            if value.dtype.kind != 'f':            # the step, each Adam's iteration count
                np.testing.assert_array_equal(got[name], value, err_msg=message)
            elif is_slot(name):
                scale = float(np.abs(value).max())
                np.testing.assert_allclose(got[name], value, rtol=0,
                                           atol=SLOT_ATOL_OF_SCALE * scale, err_msg=message)
            else:                                  # weights and learning rates
                np.testing.assert_allclose(got[name], value, rtol=0, atol=WEIGHT_ATOL,
                                           err_msg=message)
