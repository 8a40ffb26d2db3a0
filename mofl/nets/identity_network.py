"""Shared (multi-frame) identity estimation network (supplement Table 2, paper §3.4).

Table 2 names its input `lowFeatures0...M` but gives it the shape (M, 4, 4, 256), which is that of
the mediumFeatures of Table 1; the text (§3.4) also says the medium-level features are pooled. We
pool mediumFeatures (docs/network.md "Networks"). The pooling is a mean over the frame
axis, so any number of frames M ≥ 1 gives the same-shaped result (monocular or multi-frame
reconstruction).
"""
import collections

import keras
import numpy as np
import tensorflow as tf

from mofl import paper_constants
from mofl.nets.feature_extractor import relu_initializer
from mofl.nets.feature_extractor import scaled_width

# Per-output affine map applied by `SharedIdentityNetwork.standardize_outputs`:
# new = (old − mean) · scale, with `std` the spread measured before it.
Standardization = collections.namedtuple('Standardization', ['mean', 'std', 'scale'])


class SharedIdentityNetwork(keras.Model):
    """Table 2: M mediumFeatures -> shape parameters α [g] and albedo parameters β [a].

    Args:
        num_shape_params: g, size of the learned shape subspace (paper: 500; Table 4 of the
            supplement also uses 0, 10, 50, 125).
        num_albedo_params: a, size of the learned albedo subspace (paper: 500).
        width_multiplier: scales the hidden rows' widths (1.0 = Table 2; α, β keep g and a).
        initializer: 'he' or 'glorot' kernels for the ReLU rows (see `feature_extractor`).
        standardize: ours (not in Table 2; docs/training.md "Unit-scale identity parameters"): α and
            β leave through a batch standardisation without learned scale or offset (Keras
            BatchNormalization(center=False, scale=False): batch statistics in training, their
            moving averages otherwise), so over the people of a batch (the global batch under
            tf.distribute) every α_k and β_k has mean 0 and spread 1 and the learned bases
            alone set the size of the identity. Training needs batches of ≥ 2 samples.
    """

    def __init__(self, num_shape_params=paper_constants.MODEL_SIZE,
                 num_albedo_params=paper_constants.MODEL_SIZE, width_multiplier=1.0,
                 initializer='he', standardize=False, name='identity_network', **kwargs):
        super().__init__(name=name, **kwargs)
        if num_shape_params < 0 or num_albedo_params < 0:
            raise ValueError(f'identity sizes must be >= 0, got g={num_shape_params}, '
                             f'a={num_albedo_params}')
        self.num_shape_params = int(num_shape_params)
        self.num_albedo_params = int(num_albedo_params)
        width = lambda c: scaled_width(c, width_multiplier)
        kernel = lambda: relu_initializer(initializer)
        self.conv1 = keras.layers.Conv2D(width(384), 3, padding='same', activation='relu',
                                         kernel_initializer=kernel(), name='conv1')
        self.conv2 = keras.layers.Conv2D(width(256), 3, padding='same', activation='relu',
                                         kernel_initializer=kernel(), name='conv2')
        self.flatten = keras.layers.Flatten(name='flatten')
        self.fc1 = keras.layers.Dense(width(1000), activation='relu', kernel_initializer=kernel(),
                                      name='fc1')
        self.fc2 = keras.layers.Dense(width(1000), activation='relu', kernel_initializer=kernel(),
                                      name='fc2')
        num_outputs = self.num_shape_params + self.num_albedo_params
        # A model without learned identity (g = a = 0, supplement Table 4 "size 0") has no output
        # layer at all: Dense needs at least one unit.
        self.fc_out = (keras.layers.Dense(num_outputs, name='fc_identity')
                       if num_outputs else None)
        self.standardization = (
            # ε far below the spread of untrained outputs (variance ~1e−8, see
            # `standardize_outputs`), so that they too leave with spread 1; the moving variance
            # starts at 0, not 1, or its start would outweigh such a variance for ~2,000 steps.
            # synchronized: under tf.distribute the statistics are over the global batch.
            keras.layers.BatchNormalization(center=False, scale=False, momentum=0.99,
                                            epsilon=1e-12, moving_variance_initializer='zeros',
                                            synchronized=True, name='identity_standardization')
            if standardize and num_outputs else None)

    def standardize_outputs(self, medium_features, epsilon=1e-12):
        """Data-dependent initialisation of the last FC (ours; Salimans & Kingma 2016).

        Legacy (`--identity_output_init`, off by default): with He initialisation and a frozen
        identity path in pre-training it is not needed, and it is harmful (docs/network.md
        "Initialisation"): it multiplies the last kernel by the inverse of a tiny spread, so every
        later Adam step upstream moves α far, and alike for every input. Kept for ablations.

        Rescales the kernel and bias of `fc_identity` so that, over the given samples, every
        output (each α_k and β_k) has mean 0 and standard deviation 1; the layer is unchanged
        (one affine map per output, folded into its weights). Why: the expression pre-training
        never trains the mediumFeatures convolutions, so at its end the pooled features are
        small and nearly alike across people, and the default head gives everyone almost the
        same α (measured in the synthetic Table-1 runs: spread 3e−5–1e−4 per output, median,
        against |α| ≈ 0.01–0.09), which the learned bases cannot turn into identity.

        Args:
            medium_features: [N, M, 4, 4, 256] mediumFeatures of N ≥ 2 samples.
            epsilon: outputs whose spread is below this are only centred.

        Returns:
            Standardization of [g + a] float32 numpy arrays (empty when g = a = 0): each
            output's mean and standard deviation before the rescaling, and the factor applied,
            so that new output = (old output − mean) · scale.
        """
        if self.fc_out is None:
            empty = np.zeros([0], np.float32)
            return Standardization(mean=empty, std=empty, scale=empty)
        _, _, acts = self(medium_features, return_activations=True)
        mean, variance = tf.nn.moments(acts['fc_identity'], axes=[0])
        std = tf.sqrt(variance)
        scale = tf.where(std > epsilon, 1.0 / tf.maximum(std, epsilon), tf.ones_like(std))
        self.fc_out.kernel.assign(self.fc_out.kernel * scale[tf.newaxis])
        self.fc_out.bias.assign((self.fc_out.bias - mean) * scale)
        return Standardization(mean=mean.numpy(), std=std.numpy(), scale=scale.numpy())

    def call(self, medium_features, return_activations=False, training=None):
        """Pools the frames' features and regresses the identity parameters.

        Args:
            medium_features: [B, M, 4, 4, 256] mediumFeatures of the M frames of each sample.
            return_activations: also return every row's activation (for shape tests).
            training: with `standardize`, batch statistics (True) or their moving averages.

        Returns:
            shape_params: [B, g] α.
            albedo_params: [B, a] β.
            activations (only with return_activations): dict row name -> tensor.
        """
        acts = {}
        x = acts['mean_pool'] = tf.reduce_mean(medium_features, axis=1)
        x = acts['conv1'] = self.conv1(x)
        x = acts['conv2'] = self.conv2(x)
        x = acts['fc1'] = self.fc1(self.flatten(x))
        x = acts['fc2'] = self.fc2(x)
        if self.fc_out is not None:
            x = acts['fc_identity'] = self.fc_out(x)
            if self.standardization is not None:
                x = acts['identity_standardization'] = self.standardization(x, training=training)
        else:
            x = acts['fc_identity'] = tf.zeros([tf.shape(x)[0], 0], x.dtype)
        shape_params = x[:, :self.num_shape_params]
        albedo_params = x[:, self.num_shape_params:]
        if return_activations:
            return shape_params, albedo_params, acts
        return shape_params, albedo_params
