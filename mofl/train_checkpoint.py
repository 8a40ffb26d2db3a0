"""A training run's checkpoint: what it holds under which keys, and resuming a run from it.

A checkpoint of `mofl.trainer.Trainer` tracks `model`, `step` (the global step), one
`optimizer_<key>` per parameter group (`optimizer_checkpoint_keys`), the weight average's state
(`optim.WeightAverage.CHECKPOINT_KEY`) when the run keeps one, and `data`, the input iterator,
when it is checkpointable (one replica, default strategy). `restore_latest` loads the latest
checkpoint of a run directory, including one written before the run had a weight average.
"""
import tensorflow as tf
from absl import logging

from mofl import optim
from mofl import run_dir

# The albedo group's optimizer keeps the checkpoint key it had when the group was called
# 'reflectance', so that runs written before the rename resume with its state.
CHECKPOINT_GROUP_KEYS = {'albedo': 'reflectance'}


def optimizer_checkpoint_keys(groups, checkpoint_dir):
    """{group: key of its optimizer in the checkpoint}: `optimizer_` + the group's
    `CHECKPOINT_GROUP_KEYS` name, unless the run in `checkpoint_dir` saved it under the group's
    own name (the seventh session's code wrote `optimizer_albedo`), which it then keeps."""
    latest = tf.train.latest_checkpoint(checkpoint_dir)
    saved = ({name.split('/', 1)[0] for name, _ in tf.train.list_variables(latest)}
             if latest else set())
    keys = {}
    for group in groups:
        key = f'optimizer_{CHECKPOINT_GROUP_KEYS.get(group, group)}'
        keys[group] = key if key in saved or f'optimizer_{group}' not in saved else \
            f'optimizer_{group}'
    return keys


def tracked_objects(model, step, optimizers, weight_average, checkpoint_dir):
    """{checkpoint key: object} of a run (module docstring), without the input iterator.

    Args:
        model: the FmlModel.
        step: the global step variable.
        optimizers: {group: optimizer}.
        weight_average: `optim.WeightAverage` or None.
        checkpoint_dir: the run's checkpoint folder (its latest checkpoint decides the
            optimizers' keys, `optimizer_checkpoint_keys`).
    """
    keys = optimizer_checkpoint_keys(optimizers, checkpoint_dir)
    tracked = dict(model=model, step=step, **{keys[g]: o for g, o in optimizers.items()})
    if weight_average is not None:
        tracked[optim.WeightAverage.CHECKPOINT_KEY] = weight_average.state
    return tracked


def restore_latest(manager, checkpoint, tracked, weight_average):
    """Restores the latest checkpoint of `manager` into `checkpoint`, if there is one.

    A run resumed with a weight average for the first time (its checkpoint has none) gets
    everything else restored (and checked), and its average starts from the restored weights.

    Args:
        manager: the run's tf.train.CheckpointManager.
        checkpoint: the tf.train.Checkpoint of `tracked`.
        tracked: {key: object} of the checkpoint (`tracked_objects`, plus `data`); its `step` is
            logged.
        weight_average: `optim.WeightAverage` or None.

    Raises:
        AssertionError: an object of the run is not in the checkpoint (another model).
    """
    latest = manager.latest_checkpoint
    if latest and weight_average is not None and not run_dir.has_weight_average(latest):
        without = {k: v for k, v in tracked.items() if k != optim.WeightAverage.CHECKPOINT_KEY}
        tf.train.Checkpoint(**without).restore(latest).assert_existing_objects_matched()
        weight_average.restart()
        logging.info('Resumed from %s at step %d; it has no weight average, so the average '
                     'starts from its weights', latest, int(tracked['step'].numpy()))
    elif latest:
        checkpoint.restore(latest).assert_existing_objects_matched()
        logging.info('Resumed from %s at step %d', latest, int(tracked['step'].numpy()))
