"""The whole model-based face autoencoder of FML (paper Fig. 2, §3.3–3.5).

images [B, M, 240, 240, 3]
  → FmlNetwork (supp. Tables 1–3): α, β shared by the M frames; R, t, δ, γ per frame
  → FaceModel (eq. 1–6): per-frame vertices v(α, δ), albedo r(β)
  → image formation (§3.3): Φ, Π, normals, SH shading c_i (eq. 7), visibility
  → loss terms (eq. 8–12): photometric, landmark, smoothness, sparsity, expression

`FmlModel.call` returns everything the losses, summaries, export and evaluation need;
`FmlModel.loss_terms` turns that plus the batch's images and landmarks into the five terms
(and our optional batch-mean identity term, weight 0 in the paper's configuration).
"""
import dataclasses
from typing import Optional, Tuple

import keras
import numpy as np
import tensorflow as tf
from tensorflow_graphics.util import shape as shape_lib

from mofl import paper_constants
from mofl import losses
from mofl.facemodel import contour as contour_lib
from mofl.facemodel import face_model as face_model_lib
from mofl.facemodel import geometry
from mofl.nets import fml_network
from mofl.render import camera as camera_lib
from mofl.render import image_renderer
from mofl.render import normals as normals_lib
from mofl.render import sampling
from mofl.render import shading
from mofl.render import visibility as visibility_lib

IMAGE_SIZE = (paper_constants.IMAGE_SIZE, paper_constants.IMAGE_SIZE)

# Units in which the loss terms are evaluated. The supplement's weights (λpho = 1.6/|V̄|,
# λlan = 4.7, λsmo = 1e−3, λspa = 1e−7) only balance one another in particular units, which the
# paper does not state; these are the ones under which all terms are of similar size at
# convergence (docs/network.md "Loss units"): colours in [0, 1], landmark positions as a fraction
# of the image width, graph node displacements in cm, albedo for the sparsity term in 0..255.
SMOOTHNESS_UNITS_PER_MM = 0.1
SPARSITY_ALBEDO_SCALE = 255.0


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Sizes and fixed settings of the model (flags of the training binary fill it).

    Attributes:
        shape_dim: g, learned graph deformation modes (paper 500).
        albedo_dim: learned albedo modes (paper 500).
        focal_length: pixels, for the crop of `image_size` (1000 for the paper's 240×240;
            `camera.crop_focal_length` gives the same field of view at other sizes).
        camera_distance: mm; if set, an untrained network's translation is (0, 0, −distance)
            (runs written before issue 11 all set 1000).
        initial_translation: mm, an untrained network's translation; None (and no
            camera_distance): where the data's faces are (`initial_translation_for`). mofl.train
            stores the resolved value in the run's model_config.json.
        visibility: 'backface' (the paper) or 'zbuffer'.
        photometric_region: 'face' (the asset's face mask) or 'all' vertices.
        shape_init_stddev, albedo_init_stddev: initial scale of Θs (mm) and Θa.
        shape_basis_scale, albedo_basis_scale: units in which Θs and Θa are stored, i.e. their
            learning-rate multipliers under Adam (`mofl.facemodel.face_model`); 1 = none.
        image_size: (H, W) of the data's frames (square, a multiple of 16 from 64 to 240;
            the paper's 240 or smaller for CPU-scale training, with Tables 1–3's grids following).
        network_input_size: side the network resizes frames to (0: the data's; ours, for
            CPU-scale studies).
        width_multiplier: scales every hidden width of Tables 1–3 (1.0 = the tables).
        initializer: 'he' (variance-preserving, default) or 'glorot' (Keras' default, the
            old behaviour) for the network's ReLU rows.
        orthogonal_complement: True (the paper): the learned identity basis passes through the
            OCL (eq. 4–5); False: Θs is used as it is (an ablation, docs/deviations.md; the
            CPU-scale identity configs use it).
        identity_standardization: ours (False = the paper): α and β batch-standardised to
            mean 0, spread 1 over the people of a batch (`SharedIdentityNetwork(standardize=)`,
            docs/training.md "Unit-scale identity parameters").
    """
    shape_dim: int = paper_constants.MODEL_SIZE
    albedo_dim: int = paper_constants.MODEL_SIZE
    focal_length: float = camera_lib.DEFAULT_FOCAL_LENGTH_PX
    camera_distance: Optional[float] = None
    initial_translation: Optional[Tuple[float, float, float]] = None
    visibility: str = 'backface'
    photometric_region: str = 'face'
    shape_init_stddev: float = 0.01
    albedo_init_stddev: float = 1e-4
    shape_basis_scale: float = 1.0
    albedo_basis_scale: float = 1.0
    image_size: Tuple[int, int] = IMAGE_SIZE
    network_input_size: int = 0
    width_multiplier: float = 1.0
    initializer: str = 'he'
    orthogonal_complement: bool = True
    identity_standardization: bool = False


def initial_translation_for(assets, config):
    """[3] float32 translation (mm) of an untrained network.

    `config.initial_translation` if set, else (0, 0, −`config.camera_distance`) if that is set,
    else the data's convention: the template, seen frontally, with its landmark-box centre on
    the optical axis at the depth at which it fills the crop as `tools.preprocess` and
    `tools.make_synthetic` cut it (`camera.frontal_face_placement`). Model space has its origin
    behind the face, so that is (0, 6.6, −1,065) mm for ICT-FaceKit: the centre of the synthetic
    faces' translations, where the old default (0, 0, −1,000) was 40–65 mm too near.
    """
    if config.initial_translation is not None:
        return np.asarray(config.initial_translation, np.float32).reshape(3)
    if config.camera_distance is not None:
        return np.array([0.0, 0.0, -float(config.camera_distance)], np.float32)
    landmarks = np.asarray(assets.mesh.vertices)[np.asarray(assets.mesh.landmark_indices)]
    centre, depth = camera_lib.frontal_face_placement(landmarks, config.focal_length,
                                                      config.image_size[1])
    return (np.array([0.0, 0.0, -depth]) - centre).astype(np.float32)


def resolve_initial_translation(assets, config):
    """`config` with `initial_translation` filled in (what a run stores, so that a later change
    of the default cannot change a trained model)."""
    if config.initial_translation is not None or config.camera_distance is not None:
        return config
    value = tuple(float(x) for x in initial_translation_for(assets, config))
    return dataclasses.replace(config, initial_translation=value)


class FmlModel(keras.Model):
    """Network + learned face model + differentiable image formation.

    Args:
        assets: mofl.facemodel.assets.FaceAssets (template, expressions, graph, landmarks).
        config: ModelConfig.
    """

    def __init__(self, assets, config=ModelConfig(), **kwargs):
        super().__init__(**kwargs)
        self.config = config
        self.initial_translation = initial_translation_for(assets, config)
        self.network = fml_network.FmlNetwork(
            num_expressions=assets.mesh.num_expressions,
            num_shape_params=config.shape_dim,
            num_albedo_params=config.albedo_dim,
            translation_init=self.initial_translation,
            sh_init=fml_network.ambient_sh(1.0),
            input_size=config.network_input_size or config.image_size[0],
            width_multiplier=config.width_multiplier,
            initializer=config.initializer,
            standardize_identity=config.identity_standardization)
        self.face_model = face_model_lib.FaceModel(
            assets, shape_dim=config.shape_dim, albedo_dim=config.albedo_dim,
            shape_init_stddev=config.shape_init_stddev,
            albedo_init_stddev=config.albedo_init_stddev,
            shape_basis_scale=config.shape_basis_scale,
            albedo_basis_scale=config.albedo_basis_scale,
            orthogonal_complement=config.orthogonal_complement)
        self.camera = camera_lib.Camera.centered(config.image_size, config.focal_length)
        mesh = assets.mesh
        self.triangles = tf.constant(mesh.triangles, tf.int32)
        self.contour_candidates = tf.constant(mesh.contour_candidates, tf.int32)
        self.contour_directions = tf.constant(geometry.contour_outward_directions(
            mesh.vertices, mesh.contour_candidates), tf.float32)
        self.landmark_indices = tf.constant(mesh.landmark_indices, tf.int32)
        # Detector calibration (mofl.data.detector_calibration): each landmark sits at its
        # vertex plus a fixed model-space offset; None for an uncalibrated asset.
        self.landmark_offsets = (None if mesh.landmark_offsets is None else
                                 tf.constant(mesh.landmark_offsets, tf.float32))
        self.graph_edges = tf.constant(assets.graph.edges, tf.int32)
        self.mesh_edges = tf.constant(assets.mesh_edges, tf.int32)
        region = (mesh.face_mask if config.photometric_region == 'face'
                  else np.ones(mesh.num_vertices, bool))
        self.photometric_mask = tf.constant(region, tf.bool)

    def albedo_variables(self):
        """Θa and r̄: the variables that get the larger fine-tuning learning rate (§4)."""
        return [self.face_model.theta_albedo, self.face_model.mean_albedo]

    def call(self, images, training=None, identity_enabled=True, stop_identity_gradient=False):
        """Regresses parameters and forms the per-vertex image of every frame.

        Args:
            images: [B, M, H, W, 3] RGB in [0, 1], H × W the config's `image_size`.
            training: Keras flag (unused by the layers; kept for the API).
            identity_enabled: False zeroes α and β (the expression pre-training stage: the
                face is the template with the constant skin colour, only pose, expression and
                light are learned).
            stop_identity_gradient: Table 3 reads α, β without sending gradients into the
                identity path (`FmlNetwork.call`).

        Returns:
            dict:
                shape_params [B, g], albedo_params [B, a], euler_angles [B, M, 3],
                translation [B, M, 3], expression [B, M, b], sh [B, M, 27] (network outputs);
                vertices [B, M, V, 3] model space (mm); albedo [B, V, 3];
                node_displacements [B, G, 3]; camera_vertices [B, M, V, 3];
                normals [B, M, V, 3] camera-space unit normals; screen [B, M, V, 3] (u, v, d);
                colors [B, M, V, 3] shaded colours c_i (eq. 7); visibility [B, M, V] bool;
                landmark_vertices [B, M, 66] int32 (contour slides per frame);
                landmarks [B, M, 66, 2] projected landmark pixels.

        Raises:
            ValueError: naming `images`, when it is not [B, M, H, W, 3] or its known H, W are
                not the model's `image_size` (the camera and the landmarks are in its pixels).
        """
        images = tf.convert_to_tensor(images, tf.float32)
        height, width = self.config.image_size
        shape_lib.check_static(images, has_rank=5, has_dim_equals=(-1, 3), tensor_name='images')
        for axis, side in ((2, height), (3, width)):
            if images.shape[axis] is not None and images.shape[axis] != side:
                raise ValueError(f'images must have the model\'s {height}×{width} frames, but it '
                                 f'has shape {images.shape.as_list()}')
        params = self.network(images, training=training,
                              stop_identity_gradient=stop_identity_gradient)
        return self.form_image(params, identity_enabled=identity_enabled)

    def form_image(self, params, identity_enabled=True):
        """Decodes parameters with the face model and forms the per-vertex image (§3.2–3.3).

        Everything of `call` after the network, for parameters from any source (the network,
        or free variables in a direct fit).

        Args:
            params: dict with shape_params [B, g], albedo_params [B, a], euler_angles
                [B, M, 3], translation [B, M, 3], expression [B, M, b], sh [B, M, 27].
            identity_enabled: as in `call`.

        Returns:
            `call`'s dict.
        """
        shape_params, albedo_params = params['shape_params'], params['albedo_params']
        if not identity_enabled:
            shape_params = tf.zeros_like(shape_params)
            albedo_params = tf.zeros_like(albedo_params)
        decoded = self.face_model(shape_params, albedo_params, params['expression'])
        vertices = decoded['vertices']                               # [B, M, V, 3]
        batch, frames = tf.shape(vertices)[0], tf.shape(vertices)[1]
        flat = lambda x: tf.reshape(x, tf.concat([[batch * frames], tf.shape(x)[2:]], 0))
        unflat = lambda x: tf.reshape(x, tf.concat([[batch, frames], tf.shape(x)[1:]], 0))

        screen, camera_vertices, rotation = camera_lib.model_to_screen(
            flat(vertices), flat(params['euler_angles']), flat(params['translation']), self.camera)
        normals = normals_lib.vertex_normals(camera_vertices, self.triangles)
        albedo = tf.repeat(decoded['albedo'], frames, axis=0)       # [B·M, V, 3]
        colors = shading.shade(albedo, normals, flat(params['sh']))
        visible = visibility_lib.vertex_visibility(
            camera_vertices, normals, screen_vertices=screen, triangles=self.triangles,
            image_size=self.config.image_size, mode=self.config.visibility)

        camera_vertices, normals, screen = unflat(camera_vertices), unflat(normals), unflat(screen)
        contour = contour_lib.select_contour_vertices(
            camera_vertices, unflat(rotation), self.contour_candidates, self.contour_directions)
        landmark_vertices = contour_lib.landmark_vertex_indices(self.landmark_indices, contour)
        if self.landmark_offsets is None:
            landmarks = tf.gather(screen[..., :2], landmark_vertices, axis=2, batch_dims=2)
        else:
            points = (tf.gather(vertices, landmark_vertices, axis=2, batch_dims=2) +
                      self.landmark_offsets)
            landmarks = self.project_points(points, params)
        outputs = dict(params)
        outputs.update({
            'shape_params': shape_params,
            'albedo_params': albedo_params,
            'vertices': vertices,
            'albedo': decoded['albedo'],
            'node_displacements': decoded['node_displacements'],
            'camera_vertices': camera_vertices,
            'normals': normals,
            'screen': screen,
            'colors': unflat(colors),
            'visibility': unflat(visible),
            'landmark_vertices': landmark_vertices,
            'landmarks': landmarks,
        })
        return outputs

    def project_points(self, points, params):
        """Projects model-space points with each frame's pose.

        Args:
            points: [B, M, P, 3] model-space points (mm).
            params: dict with euler_angles [B, M, 3] and translation [B, M, 3].

        Returns:
            [B, M, P, 2] pixels.
        """
        batch, frames = tf.shape(points)[0], tf.shape(points)[1]
        flat = lambda x: tf.reshape(x, tf.concat([[batch * frames], tf.shape(x)[2:]], 0))
        screen, _, _ = camera_lib.model_to_screen(flat(points), flat(params['euler_angles']),
                                                  flat(params['translation']), self.camera)
        return tf.reshape(screen[..., :2], tf.concat([[batch, frames], tf.shape(points)[2:3],
                                                      [2]], 0))

    def render_sample(self, outputs, sample=0, background=None):
        """Renders one sample of `call`'s outputs into an image per frame (needs the op).

        Args:
            outputs: `call`'s dict.
            sample: which batch element.
            background: optional [M, H, W, 3] images (e.g. the input frames) or a colour.

        Returns:
            image_renderer.RenderedImage with batch axis = the sample's M frames.
        """
        return image_renderer.render_image(
            outputs['vertices'][sample], self.triangles, outputs['albedo'][sample],
            outputs['sh'][sample], outputs['euler_angles'][sample], outputs['translation'][sample],
            camera=self.camera, background=background)

    def loss_terms(self, outputs, images, landmarks, landmark_confidence, eta=losses.PAPER_CHROMA_ETA,
                   sparsity_exponent=losses.PAPER_SPARSITY_EXPONENT, dense_points=None,
                   dense_confidence=None, dense_vertices=None, dense_offsets=None):
        """The five terms of eq. 8–12 for a batch (each the paper's sum per sample, batch mean), and
        our `identity_mean` (`losses.identity_mean_loss`; weight 0 in the paper's configuration).

        Args:
            outputs: `call`'s dict.
            images: [B, M, H, W, 3] input frames F[f].
            landmarks: [B, M, 66, 2] detected landmarks s_i (pixels).
            landmark_confidence: [B, M, 66] their confidences.
            eta, sparsity_exponent: η and p of eq. 11.
            dense_points: optional [B, M, K, 2] detected dense 2D points (pixels; our deviation,
                docs/data.md "Dense 2D points"), with `dense_confidence` [B, M, K] and
                `dense_vertices` [B, K] int32 (the asset vertex of each point) and optionally
                `dense_offsets` [B, K, 3] model-space offsets from those vertices (mm, a
                detector-calibrated asset's `mediapipe_offsets`).

        Returns:
            dict with photometric, landmark, smoothness, sparsity, expression scalars (in the
            loss units above), our `identity_mean`, `dense_points` (0 without dense points;
            the landmark term's form over the K points: `losses.landmark_loss`) and
            `depth_spread` (`losses.depth_spread_loss`), and the
            diagnostic `visible_fraction`.
            The chroma weights of eq. 11 come from this forward pass's shaded colours (mean over
            the frames) with the gradient stopped, i.e. from p̂_old.
        """
        images = tf.convert_to_tensor(images, tf.float32)
        batch, frames = tf.shape(images)[0], tf.shape(images)[1]
        flat_images = tf.reshape(images, tf.concat([[batch * frames], tf.shape(images)[2:]], 0))
        screen = outputs['screen']
        flat_uv = tf.reshape(screen[..., :2], [batch * frames, -1, 2])
        sampled, inside = sampling.bilinear_sample(flat_images, flat_uv)
        sampled = tf.reshape(sampled, tf.shape(outputs['colors']))
        inside = tf.reshape(inside, tf.shape(outputs['visibility']))
        visible = outputs['visibility'] & inside & self.photometric_mask
        albedo = outputs['albedo']
        weights = losses.chroma_weights(tf.stop_gradient(tf.reduce_mean(outputs['colors'], 1)),
                                        self.mesh_edges, eta=eta)
        to_landmark_units = 1.0 / self.config.image_size[1]    # pixels → fraction of width
        displacements_cm = outputs['node_displacements'] * SMOOTHNESS_UNITS_PER_MM
        if dense_points is None:
            dense_term = tf.zeros([], screen.dtype)
        else:
            if dense_confidence is None or dense_vertices is None:
                raise ValueError('loss_terms: dense_points needs dense_confidence and '
                                 'dense_vertices')
            dense_vertices = tf.convert_to_tensor(dense_vertices, tf.int32)
            shape_lib.check_static(dense_vertices, has_rank=2, tensor_name='dense_vertices')
            if dense_offsets is None:
                predicted = tf.gather(screen[..., :2], dense_vertices, axis=2, batch_dims=1)
            else:
                points = (tf.gather(outputs['vertices'], dense_vertices, axis=2, batch_dims=1) +
                          tf.convert_to_tensor(dense_offsets, screen.dtype)[:, tf.newaxis])
                predicted = self.project_points(points, outputs)
            dense_term = losses.landmark_loss(
                predicted * to_landmark_units,
                tf.convert_to_tensor(dense_points, screen.dtype) * to_landmark_units,
                dense_confidence)
        return {
            'photometric': losses.photometric_loss(sampled, outputs['colors'], visible),
            'landmark': losses.landmark_loss(outputs['landmarks'] * to_landmark_units,
                                             landmarks * to_landmark_units, landmark_confidence),
            'smoothness': losses.smoothness_loss(displacements_cm, self.graph_edges),
            'sparsity': losses.appearance_sparsity_loss(albedo * SPARSITY_ALBEDO_SCALE,
                                                        self.mesh_edges, weights,
                                                        p=sparsity_exponent),
            'expression': losses.expression_regularization(outputs['expression'],
                                                           self.face_model.expression_sigma),
            'identity_mean': losses.identity_mean_loss(displacements_cm),
            'dense_points': dense_term,
            'depth_spread': losses.depth_spread_loss(outputs['translation']),
            'visible_fraction': tf.reduce_mean(tf.cast(visible, tf.float32)),
        }
