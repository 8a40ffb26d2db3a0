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
we use (DESIGN.md §2).

The input image is centred ((x − 0.5) · 2) before the first convolution; that fixed affine map
adds no layer and no weight.
"""
import keras
import tensorflow as tf

IMAGE_SIZE = 240
LOW_FEATURES_SHAPE = (14, 14, 384)
MEDIUM_FEATURES_SHAPE = (4, 4, 256)


class FeatureExtractor(keras.Model):
    """Table 1: image -> lowFeatures (14, 14, 384) and mediumFeatures (4, 4, 256).

    The text (§3.4) calls the last two convolutions the "medium-level" feature layers; they are
    part of the per-frame tower and share its weights across frames like the rest of Table 1.
    """

    def __init__(self, name='feature_extractor', **kwargs):
        super().__init__(name=name, **kwargs)
        self.conv1 = keras.layers.Conv2D(96, 11, strides=4, padding='same', activation='relu',
                                         name='conv1_11x11_s4')
        self.pool1 = keras.layers.MaxPooling2D(3, strides=2, padding='valid', name='pool1_3x3_s2')
        self.pad2 = keras.layers.ZeroPadding2D(1, name='pad2')
        self.conv2 = keras.layers.Conv2D(256, 5, strides=2, padding='valid', activation='relu',
                                         name='conv2_5x5_s2')
        self.conv3 = keras.layers.Conv2D(384, 3, strides=1, padding='same', activation='relu',
                                         name='conv3_3x3_low')
        self.conv4 = keras.layers.Conv2D(256, 3, strides=2, padding='same', activation='relu',
                                         name='conv4_3x3_s2')
        self.conv5 = keras.layers.Conv2D(256, 3, strides=2, padding='same', activation='relu',
                                         name='conv5_3x3_s2_medium')

    def call(self, images, return_activations=False):
        """Runs one tower on a batch of frames.

        Args:
            images: [N, 240, 240, 3] float32 RGB in [0, 1] (N = batch × frames).
            return_activations: also return every row's activation (for shape tests).

        Returns:
            low_features: [N, 14, 14, 384] (lowFeatures_f).
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
