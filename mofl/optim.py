"""Optimisation pieces of the training loop: a fused Adam and the learning-rate schedule (ours).

The paper gives the schedule only in words ("We pre-train the expression model and then train
the full network end-to-end. After convergence, the network is fine-tuned using a larger learning
rate for reflectance", §4); optimiser and rates are our choice, measured in BUILD_NOTES.md
"Training".

FusedAdam is Keras' Adam (same update, same slots, same checkpoint layout) with each variable's
update done by TensorFlow's single fused kernel `ResourceApplyAdam` instead of seven elementwise
passes; with ~50 M variables (Θa alone is 3|V| × 500) that is most of the optimizer's time.

The schedule is piecewise: each stage runs at its base rate and, over the last
`decay_fraction` of its steps, decays along half a cosine to `decay_floor` × that rate.
"""
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
