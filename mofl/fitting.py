"""Direct analysis-by-synthesis fits: free per-sample parameters, no network (reference only).

The synthetic benchmark (docs/evaluation.md "Direct reference fits") needs to know how far the
losses of eq. 8–12 pin a face down at all, independently of how well a network regresses it.
`fit_samples` optimises every parameter freely for a batch of multi-frame samples, with one of three
identity models:

| identity       | geometry of sample n                                  | what it measures          |
|----------------|-------------------------------------------------------|---------------------------|
| `template`     | v̄ (α = 0)                                             | pose/expression/light only |
| `graph`        | v̄ + S·OCL(I)·t_n, free node displacements t_n         | the losses without a prior |
|                | (OCL-projected, eq. 10 smoothness)                    |                           |
| `ground_truth` | v̄ + Σ_k w_nk·basis_k, w ~ N(0, 1) prior               | a perfectly learned model |

Albedo is free per sample in every mode (r̄ + a per-sample offset, eq. 11 sparsity), so the
photometric term never has to be explained by geometry. Two phases: pose, expression and light
on the template first (as the expression pre-training), then everything together.
"""
import dataclasses

import keras
import numpy as np
import tensorflow as tf

from mofl import losses
from mofl import model as model_lib
from mofl.facemodel import face_model as face_model_lib
from mofl.nets import fml_network
from mofl.render import camera as camera_lib

IDENTITY_MODES = ('template', 'graph', 'ground_truth')

# With Adam every stored entry moves by about one learning rate per step; the translation is
# stored in units of 100 mm so that it moves ~1 mm per step (angles, δ and SH are stored as is).
TRANSLATION_UNITS_MM = 100.0


@dataclasses.dataclass(frozen=True)
class FitConfig:
    """Settings of one direct fit.

    Attributes:
        identity: one of IDENTITY_MODES.
        pose_steps: Adam steps of the first phase (template, pose/expression/light).
        identity_steps: Adam steps of the second phase (all parameters).
        learning_rate: Adam learning rate (per stored unit).
        lambda_expression: λble (the paper's 1e−8 leaves δ unregularised; see docs/deviations.md).
        prior_weight: weight of Σ_k w_k² per sample (`ground_truth` mode). The default is the
            Gaussian prior's weight relative to λlan's landmark term for 2 px detector noise:
            λlan/240² px⁻² per squared pixel = d²/(2σ²) · 6.5e−4, so 0.5·w² · 6.5e−4.
    """
    identity: str = 'graph'
    pose_steps: int = 300
    identity_steps: int = 300
    learning_rate: float = 0.01
    lambda_expression: float = 1e-3
    prior_weight: float = 3.3e-4

    def __post_init__(self):
        if self.identity not in IDENTITY_MODES:
            raise ValueError(f'identity must be one of {IDENTITY_MODES}, got {self.identity!r}')
        if self.pose_steps < 0 or self.identity_steps < 0:
            raise ValueError('step counts must be >= 0')


class LinearIdentityFaceModel(face_model_lib.FaceModel):
    """FaceModel whose identity is a fixed linear model v̄ + Σ_k w_k·basis_k (no graph).

    Args:
        assets: FaceAssets.
        identity_basis: [K, V, 3] mm per unit weight.
        albedo_dim: albedo modes (as FaceModel).
    """

    def __init__(self, assets, identity_basis, albedo_dim, **kwargs):
        identity_basis = np.asarray(identity_basis, np.float32)
        if identity_basis.ndim != 3 or identity_basis.shape[1:] != assets.mesh.vertices.shape:
            raise ValueError(f'identity basis must be [K, {assets.mesh.num_vertices}, 3], got '
                             f'{identity_basis.shape}')
        super().__init__(assets, shape_dim=0, albedo_dim=albedo_dim, **kwargs)
        self.identity_basis = tf.constant(identity_basis)

    def identity_vertices(self, shape_params):
        """[B, K] weights → [B, V, 3] mm."""
        shape_params = self._check_params(shape_params, 'shape_params',
                                          int(self.identity_basis.shape[0]))
        return self.template[None] + tf.tensordot(shape_params, self.identity_basis, axes=1)

    def node_displacements(self, shape_params):
        """No deformation graph: [B, G, 3] zeros (the identity is `identity_vertices`')."""
        return tf.zeros([tf.shape(shape_params)[0], self.num_nodes, 3], tf.float32)


class DirectFit(tf.Module):
    """Free parameters of N samples with M frames each, and the model that renders them.

    Args:
        assets: FaceAssets.
        num_samples, num_frames: N, M.
        config: FitConfig.
        identity_basis: [K, V, 3] for `ground_truth` mode.
        initial_rotation: optional [N, M, 3] Euler radians (e.g. the records' pose estimates).
        image_size: the frames' side; the camera keeps the 240 crop's field of view
            (`camera.crop_focal_length`), as the data does.
    """

    def __init__(self, assets, num_samples, num_frames, config, identity_basis=None,
                 initial_rotation=None, image_size=240):
        super().__init__(name='direct_fit')
        self.config = config
        n, m = num_samples, num_frames
        num_nodes = assets.graph.num_nodes
        shape_dim = {'template': 0, 'graph': 3 * num_nodes,
                     'ground_truth': 0}[config.identity]
        self.model = model_lib.FmlModel(
            assets, model_lib.ModelConfig(
                shape_dim=shape_dim, albedo_dim=n, shape_init_stddev=0.0,
                albedo_init_stddev=0.0, image_size=(int(image_size), int(image_size)),
                focal_length=camera_lib.crop_focal_length(image_size)))
        if config.identity == 'graph':
            # Θs = I: α is the stacked node displacements t (mm), projected by the OCL.
            self.model.face_model.theta_shape.assign(tf.eye(shape_dim))
        elif config.identity == 'ground_truth':
            if identity_basis is None:
                raise ValueError('identity="ground_truth" needs identity_basis')
            self.model.face_model = LinearIdentityFaceModel(assets, identity_basis,
                                                            albedo_dim=n, albedo_init_stddev=0.0)
            shape_dim = int(np.shape(identity_basis)[0])
        b = assets.mesh.num_expressions
        rotation = (np.zeros([n, m, 3], np.float32) if initial_rotation is None
                    else np.asarray(initial_rotation, np.float32).reshape(n, m, 3))
        self.euler_angles = tf.Variable(rotation, name='euler_angles')
        self.translation = tf.Variable(tf.zeros([n, m, 3]), name='translation')
        self.expression = tf.Variable(tf.zeros([n, m, b]), name='expression')
        self.sh = tf.Variable(tf.tile(fml_network.ambient_sh(1.0)[None, None], [n, m, 1]),
                              name='sh')
        self.shape_params = tf.Variable(tf.zeros([n, shape_dim]), name='shape_params')
        # One-hot β: the model's Θa columns are then each sample's own albedo offset.
        self.albedo_params = tf.constant(np.eye(n, dtype=np.float32))
        self._translation_init = tf.constant(self.model.initial_translation, tf.float32)

    def params(self):
        """The network-output dict `FmlModel.form_image` takes."""
        return {'shape_params': self.shape_params, 'albedo_params': self.albedo_params,
                'euler_angles': self.euler_angles,
                'translation': self._translation_init + TRANSLATION_UNITS_MM * self.translation,
                'expression': self.expression, 'sh': self.sh}

    def frame_variables(self):
        return [self.euler_angles, self.translation, self.expression, self.sh]

    def identity_variables(self):
        """Per-sample identity and albedo (the basis of `graph` mode stays I)."""
        face = self.model.face_model
        ids = [self.shape_params] if self.config.identity != 'template' else []
        return ids + [face.theta_albedo, face.mean_albedo]


def fit_samples(assets, images, landmarks, landmark_confidence, config=FitConfig(),
                identity_basis=None, initial_rotation=None, log=None, log_every=100):
    """Fits free parameters to a batch of multi-frame samples (two phases, see module doc).

    Args:
        assets: FaceAssets.
        images: [N, M, S, S, 3] in [0, 1] (S = 240 for the paper's crops).
        landmarks: [N, M, 66, 2] pixels; landmark_confidence [N, M, 66].
        config: FitConfig.
        identity_basis: [K, V, 3] (`ground_truth` mode).
        initial_rotation: optional [N, M, 3] Euler radians.
        log: optional callable(str) for progress lines.
        log_every: steps between progress lines.

    Returns:
        dict of numpy arrays: identity_vertices [N, V, 3] (neutral), vertices [N, M, V, 3],
        landmarks [N, M, 66, 2] (fitted projections), landmark_rmse_px [N], and the final
        loss terms (floats) under 'terms'.
    """
    images = tf.convert_to_tensor(images, tf.float32)
    landmarks = tf.convert_to_tensor(landmarks, tf.float32)
    landmark_confidence = tf.convert_to_tensor(landmark_confidence, tf.float32)
    n, m = int(images.shape[0]), int(images.shape[1])
    fit = DirectFit(assets, n, m, config, identity_basis, initial_rotation,
                    image_size=int(images.shape[2]))
    model = fit.model
    weights = losses.paper_loss_weights(assets.mesh.num_vertices)
    weights['expression'] = config.lambda_expression
    prior = config.prior_weight if config.identity == 'ground_truth' else 0.0

    def run_phase(steps, variables, identity_enabled, name):
        optimizer = keras.optimizers.Adam(config.learning_rate)

        @tf.function(autograph=False)
        def step():
            with tf.GradientTape() as tape:
                out = model.form_image(fit.params(), identity_enabled=identity_enabled)
                terms = model.loss_terms(out, images, landmarks, landmark_confidence)
                total = losses.total_loss({k: terms[k] for k in weights}, weights)
                total += prior * tf.reduce_sum(tf.square(fit.shape_params)) / n
            optimizer.apply_gradients(zip(tape.gradient(total, variables), variables))
            return total, terms

        terms = {}
        for i in range(steps):
            total, terms = step()
            if log and ((i + 1) % log_every == 0 or i + 1 == steps):
                log(f'{name} step {i + 1}/{steps}: loss {float(total):.4g} (landmark '
                    f'{float(terms["landmark"]):.4g}, photometric {float(terms["photometric"]):.4g})')
        return {k: float(v) for k, v in terms.items()}

    terms = run_phase(config.pose_steps, fit.frame_variables() + [model.face_model.mean_albedo],
                      False, 'pose/expression/light')
    variables = fit.frame_variables() + fit.identity_variables()
    terms = run_phase(config.identity_steps, variables, True, f'{config.identity} identity') \
        or terms
    out = model.form_image(fit.params(), identity_enabled=True)
    fitted = out['landmarks'].numpy()
    error = np.sqrt(np.sum((fitted - landmarks.numpy()) ** 2, axis=-1))       # [N, M, 66]
    return {
        'identity_vertices': model.face_model.identity_vertices(fit.shape_params).numpy(),
        'vertices': out['vertices'].numpy(),
        'landmarks': fitted,
        'landmark_rmse_px': np.sqrt(np.mean(error ** 2, axis=(1, 2))),
        'terms': terms,
    }
