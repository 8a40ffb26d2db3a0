"""mofl.optim: FusedAdam against Keras' Adam, and the per-stage learning-rate decay."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from mofl import optim


def _apply_function(optimizer, variables):
    @tf.function
    def apply(grads):
        optimizer.apply_gradients(zip(grads, variables))
    return apply


def test_fused_adam_matches_keras_adam_step_by_step():
    rng = np.random.default_rng(0)
    shapes = [(7, 5), (3,), (2, 3, 4)]
    start = [rng.normal(size=s).astype(np.float32) for s in shapes]
    grads = [[rng.normal(size=s).astype(np.float32) * 10.0 ** -k for s in shapes]
             for k in range(6)]   # gradients of decreasing size, as Adam's normalisation sees
    results = []
    for optimizer in (keras.optimizers.Adam(learning_rate=0.01),
                      optim.FusedAdam(learning_rate=0.01)):
        variables = [keras.Variable(v) for v in start]
        optimizer.build(variables)
        step = _apply_function(optimizer, variables)
        trajectory = []
        for g in grads:
            step([tf.constant(x) for x in g])
            trajectory.append([v.numpy().copy() for v in variables])
        results.append((trajectory, [s.numpy() for s in optimizer.variables]))
    (keras_path, keras_slots), (fused_path, fused_slots) = results
    for keras_step, fused_step in zip(keras_path, fused_path):
        for a, b in zip(keras_step, fused_step):
            np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-7)
    assert not np.allclose(keras_path[-1][0], start[0])
    # Iterations, lr, m and v of each variable. The fused kernel forms 1 − β₂ in float32
    # (0.00099998713 for 0.999), so v differs from Keras' by 1.3e-5 relative.
    for a, b in zip(keras_slots, fused_slots):
        np.testing.assert_allclose(b, a, rtol=5e-5, atol=1e-9)


def test_fused_adam_refuses_amsgrad():
    with pytest.raises(ValueError, match='amsgrad'):
        optim.FusedAdam(amsgrad=True)


def test_stage_decay_factor():
    factor = lambda step, fraction=0.2, floor=0.1: optim.stage_decay_factor(
        step, 100, 200, fraction, floor)
    assert factor(100) == 1.0 and factor(179) == 1.0          # constant before the last 20 %
    assert 1.0 > factor(180) > factor(190) > factor(199)        # then decreasing
    assert factor(199) == pytest.approx(0.1)                    # the floor at the last step
    assert factor(189) == pytest.approx(0.1 + 0.9 * 0.5, abs=1e-9)   # half-way: the mean
    assert factor(150, fraction=0.0) == 1.0
    with pytest.raises(ValueError, match='decay_fraction'):
        factor(150, fraction=1.5)
    with pytest.raises(ValueError, match='decay_floor'):
        factor(150, floor=-1.0)
