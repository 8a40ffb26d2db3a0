"""Per-frame parameter estimation network (supplement Table 3, paper §3.4).

Table 3 has two parts. The first two rows (FC + ReLU + reshape to (14, 14, 1), then a 3×3
convolution to 384 channels) read the shared identity parameters and are not Siamese: they run
once per sample. Their (14, 14, 384) map is concatenated with each frame's lowFeatures to
(14, 14, 768), and the remaining rows run per frame with weights shared across frames.

The 3×3 max pool takes 14×14 to 6×6 with 'valid' padding (floor((14 − 3) / 2) + 1 = 6), as listed.

The last FC has 6 + b + 27 outputs: rigid pose (3 Euler angles, 3 translation components),
b expression coefficients and 27 SH illumination coefficients. Table 3 lists b = 64 while the text
(§3.2) says b = 80; we use the asset's blendshape count (docs/network.md "Networks").
"""
import keras
import tensorflow as tf

from mofl.nets.feature_extractor import LOW_FEATURES_SHAPE
from mofl.nets.feature_extractor import relu_initializer
from mofl.nets.feature_extractor import scaled_width

NUM_RIGID_PARAMS = 6
NUM_SH_PARAMS = 27


class ParameterEstimationNetwork(keras.Model):
    """Table 3: identity parameters + a frame's lowFeatures -> that frame's raw parameter vector.

    Args:
        num_expressions: b, the number of blendshapes of the face asset.
        head_kernel_initializer: initializer of the last FC's kernel (see `FmlNetwork`).
        low_grid: side of the lowFeatures grid (14 in Table 3; the identity FC + reshape make a
            map of that size).
        width_multiplier: scales every hidden row's width (1.0 = Table 3).
        initializer: 'he' or 'glorot' kernels for the ReLU rows (see `feature_extractor`).
    """

    def __init__(self, num_expressions, head_kernel_initializer='glorot_uniform',
                 low_grid=LOW_FEATURES_SHAPE[0], width_multiplier=1.0, initializer='he',
                 name='parameter_network', **kwargs):
        super().__init__(name=name, **kwargs)
        if num_expressions < 0:
            raise ValueError(f'num_expressions must be >= 0, got {num_expressions}')
        self.num_expressions = int(num_expressions)
        self.num_outputs = NUM_RIGID_PARAMS + self.num_expressions + NUM_SH_PARAMS
        grid = int(low_grid)
        width = lambda c: scaled_width(c, width_multiplier)
        kernel = lambda: relu_initializer(initializer)
        conv = lambda c, row: keras.layers.Conv2D(width(c), 3, padding='same', activation='relu',
                                                  kernel_initializer=kernel(), name=row)
        self.fc_identity = keras.layers.Dense(grid * grid, activation='relu',
                                              kernel_initializer=kernel(), name='fc_identity')
        self.reshape_identity = keras.layers.Reshape((grid, grid, 1), name='reshape_identity')
        self.conv_identity = conv(384, 'conv_identity')
        self.conv1 = conv(384, 'conv1')
        self.conv2 = conv(384, 'conv2')
        self.conv3 = conv(256, 'conv3')
        self.pool = keras.layers.MaxPooling2D(3, strides=2, padding='valid', name='pool_3x3_s2')
        self.flatten = keras.layers.Flatten(name='flatten')
        self.fc1 = keras.layers.Dense(width(2048), activation='relu', kernel_initializer=kernel(),
                                      name='fc1')
        self.fc_out = keras.layers.Dense(self.num_outputs, name='fc_frame_params',
                                         kernel_initializer=head_kernel_initializer)

    def absorb_identity_affine_map(self, mean, scale):
        """Keeps this network's function when its identity inputs are remapped.

        When the identity head's outputs change to new = (old − mean) · scale (per input), the
        first FC's kernel rows are divided by `scale` and its bias gets kernel·mean, so it
        computes exactly what it did from the old inputs.

        Args:
            mean: [g + a] per-input offset.
            scale: [g + a] per-input factor (non-zero).
        """
        if not self.fc_identity.built or not len(mean):
            return
        kernel = self.fc_identity.kernel                                   # [g + a, 196]
        mean = tf.constant(mean, kernel.dtype)
        scale = tf.constant(scale, kernel.dtype)
        self.fc_identity.bias.assign(self.fc_identity.bias + tf.linalg.matvec(kernel, mean,
                                                                            transpose_a=True))
        kernel.assign(kernel / scale[:, tf.newaxis])

    def call(self, inputs, return_activations=False):
        """Regresses the raw per-frame parameter vector of every frame.

        The three inputs come as one tuple (Keras' convention for multi-input models; it also lets
        `tf.saved_model.save` build this sub-model's default signature).

        Args:
            inputs: tuple (shape_params, albedo_params, low_features):
                shape_params: [B, g] α.
                albedo_params: [B, a] β.
                low_features: [B, M, 14, 14, 384] lowFeatures of each frame.
            return_activations: also return every row's activation (for shape tests).

        Returns:
            frame_params: [B, M, 6 + b + 27] raw outputs of the last FC, in the order
                (rotation 3, translation 3, expression b, SH 27).
            activations (only with return_activations): dict row name -> tensor; the per-frame
                rows have the frames folded into the batch ([B·M, ...]).
        """
        shape_params, albedo_params, low_features = inputs
        acts = {}
        identity = tf.concat([shape_params, albedo_params], axis=-1)
        if identity.shape[-1] == 0:
            # A model without learned modes (supp. Table 4, size 0): the FC of a 0-wide input is
            # activation(bias). Computed directly, since oneDNN's fused kernels cannot run the
            # zero-size matmul.
            if not self.fc_identity.built:
                self.fc_identity.build(identity.shape)
            bias = tf.broadcast_to(self.fc_identity.bias,
                                   [tf.shape(identity)[0], self.fc_identity.units])
            x = self.fc_identity.activation(bias)
        else:
            x = self.fc_identity(identity)
        x = acts['fc_identity'] = self.reshape_identity(x)
        identity_map = acts['conv_identity'] = self.conv_identity(x)  # [B, 14, 14, 384]

        batch_size = tf.shape(low_features)[0]
        num_frames = tf.shape(low_features)[1]
        low_flat = tf.reshape(low_features, tf.concat([[-1], tf.shape(low_features)[2:]], 0))
        # Frames are folded batch-major (sample 0 frames 0..M-1, sample 1 ...), so each identity
        # map is repeated M times in a row.
        identity_per_frame = tf.repeat(identity_map, num_frames, axis=0)
        x = acts['concat'] = tf.concat([identity_per_frame, low_flat], axis=-1)
        x = acts['conv1'] = self.conv1(x)
        x = acts['conv2'] = self.conv2(x)
        x = acts['conv3'] = self.conv3(x)
        x = acts['pool'] = self.pool(x)
        x = acts['fc1'] = self.fc1(self.flatten(x))
        x = acts['fc_frame_params'] = self.fc_out(x)
        frame_params = tf.reshape(x, [batch_size, num_frames, self.num_outputs])
        if return_activations:
            return frame_params, acts
        return frame_params
