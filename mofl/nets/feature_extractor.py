"""Per-frame feature extractor of the Siamese towers (supplement Table 1).

Every activation shape of Table 1 is reproduced exactly. Three rows need a choice of padding the
table does not state:

| Row | Table 1 | Shape in -> out | Our padding/stride |
|---|---|---|---|
| Conv 11×11, stride 4 | (60, 60, 96) | 240 -> 60 | 'same' (240 / 4 = 60; 'valid' gives 58) |
| MaxPool 3×3, stride 2 | (29, 29, 96) | 60 -> 29 | 'valid' (floor((60 − 3) / 2) + 1) |
| Conv 5×5, "stride 1" | (14, 14, 256) | 29 -> 14 | zero-pad 1, then stride 2 'valid' |
| Conv 3×3, stride 1 | (14, 14, 384) | 14 -> 14 | 'same' |
| Conv 3×3, stride 2 | (7, 7, 256) | 14 -> 7 | 'same' |
| Conv 3×3, stride 2 | (4, 4, 256) | 7 -> 4 | 'same' |

The 5×5 row says stride 1, but a stride-1 convolution cannot take 29×29 to 14×14 (no padding gives
25×25); stride 2 with one pixel of zero padding gives floor((29 + 2 − 5) / 2) + 1 = 14 and is what
we use (docs/network.md "Networks").

The input image is centred ((x − 0.5) · 2) before the first convolution; that fixed affine map
adds no layer and no weight.

Initialisation (ours; the paper gives none): every ReLU layer of Tables 1–3 starts He-normal
(variance 2 / fan-in, zero bias), which keeps the activations' RMS roughly constant from row to
row. Keras' default Glorot init halves the second moment at every ReLU row, so by Table 2 the
identity path was 100× below its input (docs/network.md "Initialisation"). `initializer='glorot'`
restores the old behaviour for ablations.

Smaller networks (ours, for CPU-scale studies): `width_multiplier` scales every row's channel
count; any input size that survives the strides works (`feature_grids`), e.g. 128 → 32 → 15 →
7 → 4 → 2. At 240 and 1.0 the network is exactly Table 1.
"""
import keras
import tensorflow as tf

from mofl import paper_constants

IMAGE_SIZE = paper_constants.IMAGE_SIZE
LOW_FEATURES_SHAPE = (14, 14, 384)
MEDIUM_FEATURES_SHAPE = (4, 4, 256)
INITIALIZERS = ('he', 'glorot')


def relu_initializer(initializer):
    """Kernel initializer of a ReLU row for the `initializer` setting ('he' or 'glorot')."""
    if initializer == 'he':
        return keras.initializers.HeNormal()
    if initializer == 'glorot':
        return keras.initializers.GlorotUniform()
    raise ValueError(f'initializer must be one of {INITIALIZERS}, got {initializer!r}')


def scaled_width(width, width_multiplier):
    """round(width · width_multiplier), at least 1."""
    if width_multiplier <= 0:
        raise ValueError(f'width_multiplier must be > 0, got {width_multiplier}')
    return max(1, int(round(width * width_multiplier)))


def feature_grids(image_size):
    """Spatial sizes (low, medium) of Table 1's outputs for a square input of side `image_size`.

    240 gives (14, 4), the table's; the chain is conv 'same' /4, max pool 3 /2 'valid', pad 1 +
    conv 5×5 /2 'valid', conv 'same' /2 twice.

    Raises:
        ValueError: the input is too small for the strides.
    """
    size = -(-int(image_size) // 4)          # conv1, 'same', stride 4
    size = (size - 3) // 2 + 1               # pool1, 'valid'
    low = (size + 2 - 5) // 2 + 1            # pad 1, conv2 5×5 stride 2 'valid'
    half = -(-low // 2)                      # conv4, 'same', stride 2
    medium = -(-half // 2)                   # conv5, 'same', stride 2
    if size < 3 or low < 3:
        raise ValueError(f'image size {image_size} is too small for Table 1 (low-feature grid '
                         f'{low}; needs ≥ 3, i.e. an input of at least 48 pixels)')
    return low, medium


class FeatureExtractor(keras.Model):
    """Table 1: image -> lowFeatures (14, 14, 384) and mediumFeatures (4, 4, 256).

    The text (§3.4) calls the last two convolutions the "medium-level" feature layers; they are
    part of the per-frame tower and share its weights across frames like the rest of Table 1.

    Args:
        width_multiplier: scales every row's channel count (1.0 = Table 1).
        initializer: 'he' (default) or 'glorot' kernels for the ReLU rows.
    """

    def __init__(self, width_multiplier=1.0, initializer='he', name='feature_extractor',
                 **kwargs):
        super().__init__(name=name, **kwargs)
        width = lambda c: scaled_width(c, width_multiplier)
        conv = lambda c, k, s, pad, row: keras.layers.Conv2D(
            width(c), k, strides=s, padding=pad, activation='relu',
            kernel_initializer=relu_initializer(initializer), name=row)
        self.conv1 = conv(96, 11, 4, 'same', 'conv1_11x11_s4')
        self.pool1 = keras.layers.MaxPooling2D(3, strides=2, padding='valid', name='pool1_3x3_s2')
        self.pad2 = keras.layers.ZeroPadding2D(1, name='pad2')
        self.conv2 = conv(256, 5, 2, 'valid', 'conv2_5x5_s2')
        self.conv3 = conv(384, 3, 1, 'same', 'conv3_3x3_low')
        self.conv4 = conv(256, 3, 2, 'same', 'conv4_3x3_s2')
        self.conv5 = conv(256, 3, 2, 'same', 'conv5_3x3_s2_medium')

    def identity_path_layers(self):
        """The rows that feed only the identity estimate (Table 2): conv4, conv5."""
        return [self.conv4, self.conv5]

    def call(self, images, return_activations=False):
        """Runs one tower on a batch of frames.

        Args:
            images: [N, S, S, 3] float32 RGB in [0, 1] (N = batch × frames; S = 240 in Table 1).
            return_activations: also return every row's activation (for shape tests).

        Returns:
            low_features: [N, 14, 14, 384] (lowFeatures_f; grid and width as configured).
            medium_features: [N, 4, 4, 256] (mediumFeatures_f).
            activations (only with return_activations): dict row name -> tensor, in table order.
        """
        x = (tf.convert_to_tensor(images, tf.float32) - 0.5) * 2.0
        acts = {}
        x = acts['conv1'] = self.conv1(x)
        x = acts['pool1'] = self.pool1(x)
        x = acts['conv2'] = self.conv2(self.pad2(x))
        low = acts['low_features'] = self.conv3(x)
        x = acts['conv4'] = self.conv4(low)
        medium = acts['medium_features'] = self.conv5(x)
        if return_activations:
            return low, medium, acts
        return low, medium
