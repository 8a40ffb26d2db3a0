"""Tests of bilinear image sampling F(u_i) at projected vertices."""
import numpy as np
import tensorflow as tf
from scipy import ndimage

from mofl.render import sampling


def test_samples_at_pixel_centres_return_the_pixels():
    image = np.arange(2 * 4 * 5 * 3, dtype=np.float32).reshape(2, 4, 5, 3)
    rows = np.array([[0, 3, 2, 1], [3, 0, 1, 2]])
    columns = np.array([[0, 4, 2, 3], [1, 4, 0, 2]])
    points = np.stack([columns + 0.5, rows + 0.5], axis=-1).astype(np.float32)
    values, inside = sampling.bilinear_sample(image, points)
    assert inside.numpy().all()
    for b in range(2):
        np.testing.assert_array_equal(values.numpy()[b], image[b, rows[b], columns[b]])


def test_matches_scipy_linear_interpolation():
    rng = np.random.default_rng(0)
    image = rng.uniform(0, 1, (1, 9, 11, 2))
    points = np.stack([rng.uniform(0.5, 10.5, 300), rng.uniform(0.5, 8.5, 300)], axis=-1)
    values, inside = sampling.bilinear_sample(image, points[None])
    assert inside.numpy().all()
    # scipy's map_coordinates indexes pixel centres at integers: (row, col) = (v − 0.5, u − 0.5).
    for channel in range(2):
        expected = ndimage.map_coordinates(image[0, ..., channel],
                                           [points[:, 1] - 0.5, points[:, 0] - 0.5], order=1)
        np.testing.assert_allclose(values.numpy()[0, :, channel], expected, atol=1e-12)


def test_points_outside_the_image_are_masked_with_zero_value_and_gradient():
    image = tf.constant(np.ones((1, 6, 8, 3)))
    points = tf.constant([[[0.5, 0.5], [7.5, 5.5], [0.4, 3.0], [8.0, 3.0], [3.0, 5.6],
                           [-20.0, -20.0], [np.nan, 2.0], [4.0, 3.0]]])
    with tf.GradientTape() as tape:
        tape.watch(points)
        values, inside = sampling.bilinear_sample(image, points)
        total = tf.reduce_sum(values)
    np.testing.assert_array_equal(inside.numpy()[0],
                                  [True, True, False, False, False, False, False, True])
    np.testing.assert_array_equal(values.numpy()[0, :, 0], [1, 1, 0, 0, 0, 0, 0, 1])
    gradient = tape.gradient(total, points).numpy()
    assert np.all(np.isfinite(gradient))
    np.testing.assert_array_equal(gradient[0, 2:7], 0.0)


def test_gradient_matches_numerical():
    rng = np.random.default_rng(1)
    image = tf.constant(rng.uniform(0, 1, (2, 4, 5, 2)))
    # Keep points away from pixel centres, where bilinear interpolation has kinks.
    cells = np.stack([rng.integers(0, 4, (2, 4)), rng.integers(0, 3, (2, 4))], axis=-1)
    points = tf.constant(cells + 0.5 + rng.uniform(0.15, 0.85, (2, 4, 2)))

    theoretical, numerical = tf.test.compute_gradient(
        lambda i, p: sampling.bilinear_sample(i, p)[0], [image, points])
    for t, n in zip(theoretical, numerical):
        np.testing.assert_allclose(t, n, atol=1e-7)


def test_works_in_a_graph_with_unknown_image_size():
    sample = tf.function(sampling.bilinear_sample, input_signature=[
        tf.TensorSpec([None, None, None, 3], tf.float32), tf.TensorSpec([None, None, 2],
                                                                        tf.float32)])
    image = np.random.default_rng(2).uniform(0, 1, (1, 5, 6, 3)).astype(np.float32)
    points = np.array([[[1.3, 2.7], [5.5, 4.5], [6.2, 1.0]]], np.float32)
    graph_values, graph_inside = sample(image, points)
    eager_values, eager_inside = sampling.bilinear_sample(image, points)
    np.testing.assert_array_equal(graph_inside.numpy(), eager_inside.numpy())
    np.testing.assert_allclose(graph_values.numpy(), eager_values.numpy(), atol=1e-7)
    np.testing.assert_array_equal(graph_inside.numpy()[0], [True, True, False])
