"""The whole Siamese network of FML (paper §3.4, Fig. 2; supplement Tables 1–3).

M frames of one sample go through the same per-frame tower (Table 1; the frames are folded into
the batch, so the towers share weights by construction), the frames' mediumFeatures are
mean-pooled into one identity estimate (Table 2), and each frame's parameters are regressed from
its lowFeatures and the shared identity parameters (Table 3). M may differ between calls and may
be 1 (monocular reconstruction).

Output scaling. The last FC of Table 3 produces raw, unitless numbers. We map them to physical
units with fixed (not learned) affine maps, which is standard practice and adds no layer:

    euler_angles = rotation_scale · raw[0:3]                        (radians, [pitch, yaw, roll])
    translation  = translation_init + translation_scale · raw[3:6]  (mm, camera space)
    expression   = expression_scale · raw[6:6+b]                    (blendshape coefficients δ)
    sh           = sh_init + sh_scale · raw[6+b:]                   (γ, 27 numbers)

The hidden rows start He-normal (variance-preserving, `feature_extractor`), so the last FC of
Table 3 sees inputs of RMS ≈ 0.5 and, at Glorot scale, would start at |raw| ≈ 1 (rotations of
0.2 rad, expressions of one σ); its initial kernel is therefore shrunk by `head_init_scale`
(default 0.1), so that an untrained network starts near a frontal face (R ≈ I) at the default
distance, with a neutral expression and ambient white light. The identity parameters α, β are
returned as Table 2's last FC gives them (Glorot, RMS ≈ its input's); they multiply the learned
bases Θs, Θa, whose own initialisation sets their scale.

Identity path. Table 1's conv4/conv5 and Table 2 feed only α, β (`identity_path_variables`);
expression pre-training leaves them as initialised (`mofl.train_config`). `call(...,
stop_identity_gradient=True)` lets Table 3 read α, β without sending gradients back into that
path.

Smaller networks (ours, CPU-scale studies): `input_size` area-resizes the frames inside the
network (the camera, landmarks and photometric term keep the data's pixels) and
`width_multiplier` scales every hidden width; 240 and 1.0 are Tables 1–3 exactly.

SH layout: the 27 numbers are 9 SH coefficients × 3 colour channels, band-major: sh[3·k + c] is
γ_k for channel c (reshape to [..., 9, 3]), k in the order of the real SH basis Y_00, Y_1−1, Y_10,
Y_11, Y_2−2, ..., Y_22. The default `sh_init` lights the face with ambient light only and makes the
shading factor Σ_k γ_k·H_k(n) equal `ambient` for the orthonormal basis (H_0 = Y_00 = 1 / (2√π)).
"""

import keras
import numpy as np
import tensorflow as tf
from tensorflow_graphics.util import shape as shape_lib

from mofl import paper_constants
from mofl.nets import feature_extractor as feature_extractor_lib
from mofl.nets.feature_extractor import FeatureExtractor
from mofl.nets.identity_network import SharedIdentityNetwork
from mofl.nets.parameter_network import NUM_SH_PARAMS, ParameterEstimationNetwork
from mofl.render import camera
from mofl.render import shading

DEFAULT_CAMERA_DISTANCE_MM = camera.DEFAULT_DEPTH_MM  # the face fills the 240 crop there


def ambient_sh(ambient=1.0):
    """[27] float32 SH coefficients of white ambient light whose shading factor is `ambient`."""
    return shading.ambient_sh(np.full([1, 3], ambient, np.float32))[0].numpy()


class FmlNetwork(keras.Model):
    """Siamese FML network: images of M frames -> shared identity + per-frame parameters.

    Args:
        num_expressions: b, the face asset's blendshape count (Table 3 says 64, the text 80).
        num_shape_params: g (default 500, Table 2).
        num_albedo_params: a (default 500, Table 2).
        translation_init: [3] mm, translation of an untrained network (camera looks down −z).
        translation_scale: mm per raw unit; a scalar or one value per axis.
        rotation_scale: radians per raw unit; a scalar or one value per angle.
        expression_scale: blendshape coefficient per raw unit.
        sh_init: [27] SH coefficients of an untrained network (default `ambient_sh()`).
        sh_scale: SH coefficient per raw unit.
        head_init_scale: multiplier of the standard deviation of the last FC's initial kernel
            (1 = Keras' Glorot scale); smaller values keep untrained outputs nearer the offsets.
        input_size: side the frames are area-resized to before Table 1 (0 or 240 with 240²
            data: none).
        width_multiplier: scales every hidden width of Tables 1–3 (1.0 = the tables).
        initializer: 'he' (default) or 'glorot' kernels for the ReLU rows.
        standardize_identity: ours, α and β batch-standardised (`SharedIdentityNetwork`).
    """

    def __init__(self, num_expressions, num_shape_params=paper_constants.MODEL_SIZE,
                 num_albedo_params=paper_constants.MODEL_SIZE,
                 translation_init=(0.0, 0.0, -DEFAULT_CAMERA_DISTANCE_MM), translation_scale=10.0,
                 rotation_scale=0.2, expression_scale=1.0, sh_init=None, sh_scale=0.5,
                 head_init_scale=0.1, input_size=0, width_multiplier=1.0, initializer='he',
                 standardize_identity=False, name='fml_network', **kwargs):
        super().__init__(name=name, **kwargs)
        if input_size < 0:
            raise ValueError(f'input_size must be >= 0, got {input_size}')
        self.input_size = int(input_size)
        low_grid, _ = feature_extractor_lib.feature_grids(self.input_size or
                                                          feature_extractor_lib.IMAGE_SIZE)
        self.num_expressions = int(num_expressions)
        self.num_shape_params = int(num_shape_params)
        self.num_albedo_params = int(num_albedo_params)
        self.translation_init = _constant(translation_init, [3], 'translation_init')
        self.translation_scale = _constant(translation_scale, [3], 'translation_scale')
        self.rotation_scale = _constant(rotation_scale, [3], 'rotation_scale')
        self.expression_scale = float(expression_scale)
        self.sh_init = _constant(ambient_sh() if sh_init is None else sh_init, [NUM_SH_PARAMS],
                                 'sh_init')
        self.sh_scale = float(sh_scale)
        head_initializer = keras.initializers.VarianceScaling(
            scale=float(head_init_scale) ** 2, mode='fan_avg', distribution='uniform')

        self.feature_extractor = FeatureExtractor(width_multiplier=width_multiplier,
                                                  initializer=initializer)
        self.identity_network = SharedIdentityNetwork(
            num_shape_params, num_albedo_params, width_multiplier=width_multiplier,
            initializer=initializer, standardize=standardize_identity)
        self.parameter_network = ParameterEstimationNetwork(
            num_expressions, head_kernel_initializer=head_initializer, low_grid=low_grid,
            width_multiplier=width_multiplier, initializer=initializer)

    def identity_path_variables(self):
        """Variables that feed only α, β: Table 1's conv4, conv5 and all of Table 2."""
        layers = self.feature_extractor.identity_path_layers()
        return ([v for layer in layers for v in layer.trainable_variables] +
                list(self.identity_network.trainable_variables))

    def trunk_variables(self):
        """Table 1's conv1–conv3: the lowFeatures rows, shared by both paths."""
        fe = self.feature_extractor
        return [v for layer in (fe.conv1, fe.conv2, fe.conv3) for v in layer.trainable_variables]

    def frame_head_variables(self):
        """Table 3: the per-frame parameter regressor."""
        return list(self.parameter_network.trainable_variables)

    def regressor_variables(self):
        """Every variable outside the identity path: the trunk and Table 3."""
        return self.trunk_variables() + self.frame_head_variables()

    def _checked_images(self, images):
        """`images` as a float32 tensor, its static shape checked.

        Raises:
            ValueError: naming `images`, when it is not [B, M, H, W, 3], or when the network
                has no `input_size` and H or W is known and not Table 1's 240.
        """
        images = tf.convert_to_tensor(images, tf.float32)
        shape_lib.check_static(images, has_rank=5, has_dim_equals=(-1, 3), tensor_name='images')
        if not self.input_size:
            side = feature_extractor_lib.IMAGE_SIZE
            for axis in (2, 3):
                if images.shape[axis] is not None and images.shape[axis] != side:
                    raise ValueError(f'images must be {side}×{side} frames (the network has no '
                                     f'input_size to resize them to), but it has shape '
                                     f'{images.shape.as_list()}')
        return images

    def _frames(self, images):
        """[B, M, H, W, 3] → [B·M, S, S, 3] frames at the network's input size."""
        frames = tf.reshape(images, tf.concat([[-1], tf.shape(images)[2:]], 0))
        if self.input_size and images.shape[2:4] != (self.input_size, self.input_size):
            frames = tf.image.resize(frames, [self.input_size, self.input_size], method='area')
        return frames

    def standardize_identity_outputs(self, images):
        """Data-dependent initialisation of Table 2's last FC (see
        `SharedIdentityNetwork.standardize_outputs`).

        Table 3 reads α and β too; its first FC absorbs the same affine map, so the per-frame
        parameters (pose, expression, light) are exactly what they were: only the face model
        sees the standardised α and β. (Without it, α's jump from ≈ 0.01 to spread 1 fed a
        large random identity map into the per-frame head.)

        Args:
            images: [N, M, 240, 240, 3] RGB in [0, 1], N ≥ 2 samples.

        Returns:
            identity_network.Standardization: the map applied to α and β.

        Raises:
            ValueError: `images` has the wrong shape (`call`).
        """
        images = self._checked_images(images)
        batch_size, num_frames = tf.shape(images)[0], tf.shape(images)[1]
        _, medium = self.feature_extractor(self._frames(images))
        medium = tf.reshape(medium, tf.concat([[batch_size, num_frames], tf.shape(medium)[1:]], 0))
        standardization = self.identity_network.standardize_outputs(medium)
        self.parameter_network.absorb_identity_affine_map(standardization.mean,
                                                          standardization.scale)
        return standardization

    def call(self, images, training=None, return_activations=False, stop_identity_gradient=False):
        """Regresses all parameters of a batch of multi-frame samples.

        Args:
            images: [B, M, H, W, 3] float32 RGB in [0, 1]; H = W = 240 when the network has no
                `input_size` (Table 1), else any size (area-resized to `input_size`).
            training: Keras flag; only `standardize_identity`'s batch standardisation uses it.
            return_activations: also return the activations of every table row, under keys
                'table1/<row>' ([B·M, ...]), 'table2/<row>' ([B, ...]) and 'table3/<row>'.
            stop_identity_gradient: Table 3 reads α, β through tf.stop_gradient (the identity
                path then learns only from the face model's use of α, β).

        Returns:
            dict with
                shape_params: [B, g] α.
                albedo_params: [B, a] β.
                euler_angles: [B, M, 3] Euler angles [pitch, yaw, roll] in radians.
                translation: [B, M, 3] mm.
                expression: [B, M, b] δ.
                sh: [B, M, 27] γ (layout in the module docstring).
            and, with return_activations, 'activations': dict name -> tensor.

        Raises:
            ValueError: naming `images`, when it is not [B, M, H, W, 3] (or, without
                `input_size`, its frames are not 240×240).
        """
        images = self._checked_images(images)
        batch_size = tf.shape(images)[0]
        num_frames = tf.shape(images)[1]
        frames = self._frames(images)
        low, medium, acts1 = self.feature_extractor(frames, return_activations=True)
        acts1 = {'input': (frames - 0.5) * 2.0, **acts1}
        low = tf.reshape(low, tf.concat([[batch_size, num_frames], tf.shape(low)[1:]], 0))
        medium = tf.reshape(medium,
                            tf.concat([[batch_size, num_frames], tf.shape(medium)[1:]], 0))
        acts2 = {'concat': medium}
        shape_params, albedo_params, more = self.identity_network(
            medium, return_activations=True, training=training)
        acts2.update(more)
        identity_inputs = (shape_params, albedo_params)
        if stop_identity_gradient:
            identity_inputs = tuple(tf.stop_gradient(x) for x in identity_inputs)
        raw, acts3 = self.parameter_network((*identity_inputs, low), return_activations=True)
        b = self.num_expressions
        outputs = {
            'shape_params': shape_params,
            'albedo_params': albedo_params,
            'euler_angles': self.rotation_scale * raw[..., 0:3],
            'translation': self.translation_init + self.translation_scale * raw[..., 3:6],
            'expression': self.expression_scale * raw[..., 6:6 + b],
            'sh': self.sh_init + self.sh_scale * raw[..., 6 + b:],
        }
        if return_activations:
            activations = {}
            for prefix, acts in (('table1', acts1), ('table2', acts2), ('table3', acts3)):
                activations.update({f'{prefix}/{k}': v for k, v in acts.items()})
            outputs['activations'] = activations
        return outputs


def _constant(value, shape, what):
    """Broadcasts a scalar or sequence to a float32 constant of `shape`; raises on a mismatch."""
    array = np.asarray(value, np.float32)
    try:
        array = np.broadcast_to(array, shape).copy()
    except ValueError as error:
        raise ValueError(f'{what} must be a scalar or of shape {shape}, got {array.shape}') \
            from error
    return tf.constant(array)
