"""Optimisation pieces of the training loop: a fused Adam and the learning-rate schedule (ours).

The paper gives the schedule only in words ("We pre-train the expression model and then train
the full network end-to-end. After convergence, the network is fine-tuned using a larger learning
rate for reflectance", §4); optimiser and rates are our choice, described in docs/training.md
"Parameter groups".

FusedAdam is Keras' Adam (same update, same slots, same checkpoint layout) with each variable's
update done by TensorFlow's single fused kernel `ResourceApplyAdam` instead of seven elementwise
passes; with ~50 M variables (Θa alone is 3|V| × 500) that is most of the optimizer's time.

The schedule is piecewise: each stage runs at its base rate and, over the last
`decay_fraction` of its steps, decays along half a cosine to `decay_floor` × that rate.

WeightAverage keeps an exponential moving average of the weights (Polyak averaging, with
TensorFlow's ExponentialMovingAverage warm-up; ours, off in the paper's configuration). Adam's
steps at a constant rate leave the CPU-scale identity wandering by ±10 % around its trend; the
average over the last ~1/(1 − decay) steps does not (docs/experiments.md "Weight
averaging (thirteenth session)").
"""
import contextlib
import math

import keras
import tensorflow as tf


class FusedAdam(keras.optimizers.Adam):
    """keras.optimizers.Adam whose per-variable update is one `ResourceApplyAdam` kernel.

    Same arguments as keras.optimizers.Adam except `amsgrad` (not supported).
    """

    def __init__(self, *args, **kwargs):
        if kwargs.get('amsgrad'):
            raise ValueError('FusedAdam does not implement amsgrad')
        super().__init__(*args, **kwargs)

    def update_step(self, gradient, variable, learning_rate):
        """Adam step of one variable (the formula of keras.optimizers.Adam.update_step)."""
        dtype = variable.dtype
        local_step = tf.cast(self.iterations + 1, dtype)
        beta_1 = tf.cast(self.beta_1, dtype)
        beta_2 = tf.cast(self.beta_2, dtype)
        index = self._get_variable_index(variable)
        tf.raw_ops.ResourceApplyAdam(
            var=_handle(variable), m=_handle(self._momentums[index]),
            v=_handle(self._velocities[index]),
            beta1_power=tf.pow(beta_1, local_step), beta2_power=tf.pow(beta_2, local_step),
            lr=tf.cast(learning_rate, dtype), beta1=beta_1, beta2=beta_2,
            epsilon=tf.cast(self.epsilon, dtype), grad=tf.cast(gradient, dtype),
            use_locking=False)


class WeightAverage:
    """Exponential moving average of a model's floating-point variables.

    After the n-th `update`, average ← d·average + (1 − d)·weight with d = min(decay,
    (1 + n) / (10 + n)), so the first updates follow the weights closely. Batch-norm moving
    statistics are averaged alongside the weights they belong to. `state` is the trackable to
    checkpoint (key `WeightAverage.CHECKPOINT_KEY`); `run_dir.load_run` puts the averages into
    the model it rebuilds.
    """

    CHECKPOINT_KEY = 'weight_average'

    def __init__(self, variables, decay):
        """Args: variables: the model's variables (non-float ones are skipped); decay in [0, 1)."""
        if not 0.0 <= decay < 1.0:
            raise ValueError(f'weight average decay must be in [0, 1), got {decay}')
        self.decay = float(decay)
        self.sources = averaged_variables(variables)
        self.state = tf.Module(name='weight_average')
        self.state.updates = tf.Variable(0, dtype=tf.int64, trainable=False, name='updates')
        self.state.averages = [
            tf.Variable(tf.convert_to_tensor(v), trainable=False, name='average')
            for v in self.sources]

    def restart(self):
        """The average := the variables' current values, as if no update had been made."""
        self.state.updates.assign(0)
        for average, source in zip(self.state.averages, self.sources):
            average.assign(tf.convert_to_tensor(source))

    def update(self):
        """One averaging step (inside tf.function; in a tf.distribute cross-replica context)."""
        count = tf.cast(self.state.updates.assign_add(1), tf.float32)
        decay = tf.minimum(self.decay, (1.0 + count) / (10.0 + count))
        for average, source in zip(self.state.averages, self.sources):
            average.assign_sub((1.0 - tf.cast(decay, average.dtype)) *
                               (average - tf.convert_to_tensor(source)))

    def copy_to_sources(self):
        """The averaged variables := their averages (what `load_run` and `applied` use)."""
        for source, average in zip(self.sources, self.state.averages):
            source.assign(average)

    @contextlib.contextmanager
    def applied(self):
        """The model holds the averaged weights inside the block, its own ones again after."""
        own = [tf.identity(tf.convert_to_tensor(v)) for v in self.sources]
        self.copy_to_sources()
        try:
            yield
        finally:
            for source, value in zip(self.sources, own):
                source.assign(value)


def averaged_variables(variables):
    """The variables `WeightAverage` averages: the floating-point ones, in order."""
    return [v for v in variables if tf.as_dtype(v.dtype).is_floating]


def _handle(variable):
    """The resource handle of a keras or tf variable (the local copy under tf.distribute)."""
    if isinstance(variable, keras.Variable):
        variable = variable.value
    return variable.handle


def stage_decay_factor(step, stage_start, stage_end, decay_fraction, decay_floor):
    """Learning-rate factor at `step` of a stage [stage_start, stage_end).

    1 until the last ceil(decay_fraction · length) steps of the stage, then half a cosine from 1
    down to `decay_floor` (reached at the stage's last step).

    Args:
        step: global step (int).
        stage_start, stage_end: the stage's steps.
        decay_fraction: in [0, 1]; 0 = constant rate.
        decay_floor: factor at the end of the decay, in [0, 1].

    Returns:
        float factor.
    """
    if not 0.0 <= decay_fraction <= 1.0:
        raise ValueError(f'decay_fraction must be in [0, 1], got {decay_fraction}')
    if not 0.0 <= decay_floor <= 1.0:
        raise ValueError(f'decay_floor must be in [0, 1], got {decay_floor}')
    length = stage_end - stage_start
    decay_steps = int(math.ceil(decay_fraction * length))
    if decay_steps <= 0:
        return 1.0
    into = step - (stage_end - decay_steps)
    if into < 0:
        return 1.0
    progress = min(1.0, (into + 1) / decay_steps)
    return decay_floor + (1.0 - decay_floor) * 0.5 * (1.0 + math.cos(math.pi * progress))
