"""Shared test helper: analytic against numerical Jacobians in float64."""
import numpy as np
import tensorflow as tf


def assert_jacobian_matches_numerical(fn, inputs, delta=1e-6, rtol=1e-6, atol=1e-8):
    """Compares tf.GradientTape's Jacobian of `fn` with central differences, both in float64.

    Args:
        fn: callable of len(inputs) tensors, returning a tensor; it must keep its inputs' dtype.
        inputs: list of arrays (converted to float64).
        delta: finite-difference step.
        rtol, atol: tolerances of np.testing.assert_allclose.
    """
    tensors = [tf.constant(np.asarray(x, np.float64)) for x in inputs]
    value = fn(*tensors)
    assert value.dtype == tf.float64, f'{fn} computed in {value.dtype.name}, not float64'
    theoretical, numerical = tf.test.compute_gradient(fn, tensors, delta=delta)
    for k, (analytic, finite) in enumerate(zip(theoretical, numerical)):
        np.testing.assert_allclose(analytic, finite, rtol=rtol, atol=atol,
                                   err_msg=f'input {k}')
