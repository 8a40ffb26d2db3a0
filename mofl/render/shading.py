"""Spherical-harmonics illumination, paper §3.3 eq. 7: c_i = r_i · Σ_{b=1..9} γ_b · H_b(n_i).

Basis H_b: the 9 real SH of bands l = 0, 1, 2 exactly as tensorflow-graphics defines them
(`tensorflow_graphics.math.spherical_harmonics`), in its order
`generate_l_m_permutations(2)` = (l, m) = (0,0), (1,−1), (1,0), (1,1), (2,−2), (2,−1), (2,0),
(2,1), (2,2), with the polar angle measured from +z and the azimuth from +x towards +y. Its
associated Legendre functions carry the Condon–Shortley phase (−1)^m, so for a unit normal
n = (x, y, z) the basis is

    H_0 =  0.282095                   H_4 =  1.092548 · x·y
    H_1 = −0.488603 · y               H_5 = −1.092548 · y·z
    H_2 =  0.488603 · z               H_6 =  0.315392 · (3z² − 1)
    H_3 = −0.488603 · x               H_7 = −1.092548 · x·z
                                      H_8 =  0.546274 · (x² − y²)

(the graphics-literature table without the Condon–Shortley phase has + on H_1, H_3, H_5, H_7; the
learned γ absorbs the sign either way). `sh_basis` evaluates these polynomials directly, and
`sh_basis_tensorflow_graphics` goes through tensorflow-graphics with (θ, φ) = (acos z,
atan2(y, x)); tests check that the two agree. The polynomial form is the one used in training:
the (θ, φ) route has infinite/NaN gradients where n = ±z, i.e. for normals pointing straight at the
camera, which are common on a frontal face.

Normals are camera-space normals (the light is fixed relative to the camera; γ is regressed per
frame, §3.4).

Layout of γ: a [B, 27] vector viewed as [B, 9, 3], i.e. γ[b·3 + k] is the coefficient of basis
function H_b for colour channel k (R, G, B). With only γ_0 non-zero (ambient light) eq. 7 reduces
to c = r · γ_0 · H_0, so γ_0 = 1 / 0.282095 ≈ 3.5449 per channel reproduces the albedo
(`ambient_sh`).
"""
import math

import numpy as np
import tensorflow as tf
from tensorflow_graphics.math import spherical_harmonics
from tensorflow_graphics.util import shape as shape_lib

NUM_SH_BASIS = 9  # B² with B = 3 bands (eq. 7).
NUM_SH_PARAMETERS = 3 * NUM_SH_BASIS  # γ ∈ R^27.

_C0 = 0.5 * math.sqrt(1.0 / math.pi)  # 0.282095
_C1 = math.sqrt(3.0 / (4.0 * math.pi))  # 0.488603
_C2 = 0.5 * math.sqrt(15.0 / math.pi)  # 1.092548
_C20 = 0.25 * math.sqrt(5.0 / math.pi)  # 0.315392
_C22 = 0.25 * math.sqrt(15.0 / math.pi)  # 0.546274
SH_CONSTANT_TERM = _C0  # H_0

# Band of each basis function, and the clamped-cosine kernel per band (Ramamoorthi & Hanrahan
# 2001): max(0, n·l) ≈ Σ_b Â_{l(b)} H_b(l) H_b(n) with Â = (π, 2π/3, π/4).
_BAND_OF_BASIS = np.array([0, 1, 1, 1, 2, 2, 2, 2, 2])
_CLAMPED_COSINE_KERNEL = np.array([math.pi, 2.0 * math.pi / 3.0, math.pi / 4.0])


def sh_basis(normals):
    """The 9 SH basis functions H_b(n) in tensorflow-graphics' order and sign convention.

    Args:
        normals: [..., 3] unit normals (camera space).

    Returns:
        [..., 9] basis values.
    """
    normals = tf.convert_to_tensor(normals)
    shape_lib.check_static(normals, has_rank_greater_than=0, has_dim_equals=(-1, 3),
                           tensor_name='normals')
    x, y, z = tf.unstack(normals, axis=-1)
    return tf.stack([
        tf.ones_like(x) * _C0,
        -_C1 * y,
        _C1 * z,
        -_C1 * x,
        _C2 * x * y,
        -_C2 * y * z,
        _C20 * (3.0 * z * z - 1.0),
        -_C2 * x * z,
        _C22 * (x * x - y * y),
    ], axis=-1)


def sh_basis_tensorflow_graphics(normals):
    """The same basis evaluated by tensorflow-graphics from spherical angles (reference path).

    Forward values equal `sh_basis`; gradients are undefined at n = ±z (see the module doc).

    Args:
        normals: [..., 3] unit normals.

    Returns:
        [..., 9] basis values.
    """
    normals = tf.convert_to_tensor(normals)
    x, y, z = tf.unstack(normals, axis=-1)
    theta = tf.acos(tf.clip_by_value(z, -1.0, 1.0))[..., tf.newaxis]
    phi = tf.math.floormod(tf.atan2(y, x), 2.0 * math.pi)[..., tf.newaxis]
    degree_l, order_m = spherical_harmonics.generate_l_m_permutations(2)
    batch_shape = tf.shape(theta)[:-1]
    tile = lambda index: tf.broadcast_to(  # noqa: E731
        tf.cast(index, tf.int32), tf.concat([batch_shape, [NUM_SH_BASIS]], axis=0))
    values = spherical_harmonics.evaluate_spherical_harmonics(
        tile(degree_l), tile(order_m), theta, phi)
    return tf.cast(values, normals.dtype)


def sh_coefficients(sh):
    """Views γ [B, 27] as [B, 9, 3] (basis function, colour channel)."""
    sh = tf.convert_to_tensor(sh)
    shape_lib.check_static(sh, has_rank_greater_than=0, has_dim_equals=(-1, NUM_SH_PARAMETERS),
                           tensor_name='sh')
    return tf.reshape(sh, tf.concat([tf.shape(sh)[:-1], [NUM_SH_BASIS, 3]], axis=0))


def irradiance(normals, sh):
    """Σ_b γ_b H_b(n) per vertex and channel (the shading of eq. 7 before the albedo).

    Args:
        normals: [B, V, 3] unit camera-space normals.
        sh: [B, 27] illumination γ (layout in the module doc).

    Returns:
        [B, V, 3] RGB shading.
    """
    normals = tf.convert_to_tensor(normals)
    sh = tf.convert_to_tensor(sh)
    shape_lib.check_static(normals, has_rank=3, has_dim_equals=(-1, 3), tensor_name='normals')
    shape_lib.check_static(sh, has_rank=2, has_dim_equals=(-1, NUM_SH_PARAMETERS),
                           tensor_name='sh')
    shape_lib.compare_batch_dimensions([normals, sh], last_axes=0, broadcast_compatible=False,
                                       tensor_names=('normals', 'sh'))
    basis = sh_basis(normals)  # [B, V, 9]
    return tf.einsum('bvk,bkc->bvc', basis, tf.cast(sh_coefficients(sh), basis.dtype))


def shade(albedo, normals, sh):
    """Shaded per-vertex colours c_i = r_i · Σ_b γ_b H_b(n_i) (eq. 7).

    Args:
        albedo: [B, V, 3] (or [V, 3], shared by the batch) albedo r in [0, 1].
        normals: [B, V, 3] unit camera-space normals.
        sh: [B, 27] illumination γ.

    Returns:
        [B, V, 3] colours (not clipped).
    """
    shading = irradiance(normals, sh)
    albedo = tf.cast(albedo, shading.dtype)
    shape_lib.check_static(albedo, has_rank_greater_than=1, has_rank_less_than=4,
                           has_dim_equals=(-1, 3), tensor_name='albedo')
    shape_lib.compare_batch_dimensions([albedo, shading], last_axes=-2, initial_axes=-2,
                                       broadcast_compatible=False,
                                       tensor_names=('albedo (vertices)', 'normals (vertices)'))
    return albedo * shading


def ambient_sh(color):
    """γ of a constant (ambient) light: irradiance == `color` for every normal.

    Args:
        color: [B, 3] RGB irradiance.

    Returns:
        [B, 27] γ with only γ_0 = color / H_0 non-zero.
    """
    color = tf.convert_to_tensor(color, tf.float32)
    coefficients = tf.pad((color / SH_CONSTANT_TERM)[:, tf.newaxis, :],
                          [[0, 0], [0, NUM_SH_BASIS - 1], [0, 0]])
    return tf.reshape(coefficients, [-1, NUM_SH_PARAMETERS])


def directional_sh(direction, color, ambient):
    """γ approximating a distant directional light plus ambient light.

    The irradiance it encodes is ≈ ambient + color · max(0, n·l) (the clamped cosine projected
    onto bands 0–2, accurate to a few per cent of `color`). Handy for previews and synthetic data.

    Args:
        direction: [B, 3] camera-space direction towards the light (normalised here).
        color: [B, 3] RGB intensity of the directional light.
        ambient: [B, 3] RGB ambient irradiance.

    Returns:
        [B, 27] γ.
    """
    direction = tf.math.l2_normalize(tf.convert_to_tensor(direction, tf.float32), axis=-1)
    kernel = tf.constant(_CLAMPED_COSINE_KERNEL[_BAND_OF_BASIS], tf.float32)  # [9]
    weights = kernel * sh_basis(direction)  # [B, 9]
    directional = weights[:, :, tf.newaxis] * tf.cast(color, tf.float32)[:, tf.newaxis, :]
    return tf.reshape(directional, [-1, NUM_SH_PARAMETERS]) + ambient_sh(ambient)
