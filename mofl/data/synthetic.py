r"""Synthetic ground-truth multi-frame samples: the stand-in benchmark.

The reference: docs/data.md "Synthetic ground truth".

A sample is M frames of one synthetic person, rendered with `mofl.render.image_renderer` and
written in the training-record format (`mofl.data.records`) together with the ground-truth meshes.

Each person (`Identity`) is a neutral shape drawn from a ground-truth identity model
(`mofl.data.synthetic_identity`: ICT-FaceKit's modes or a procedural basis) and an appearance
(`mofl.data.synthetic_appearance`: albedo, eye colour); this module draws the scenes and renders
them.

Per frame (`SyntheticGenerator.scene`): head pose (yaw uniform in ±45°, pitch ±15°, roll
±10°), a depth that makes the 1.6× landmark-box crop of `tools.preprocess` about fill the 240 px
image (±8 %) and a small image-plane jitter (±4 % of the image); expression weights (0–3 active
blendshapes of the asset, weights uniform in [0, 1], jawOpen ≤ 0.5); SH light = ambient + one
directional light from the camera's half-space, mildly coloured (`shading.directional_sh`); a
cluttered background (gradient, low-frequency colour noise, random rectangles, ellipses, lines
and polygons, fine noise).
After rendering, eye and mouth holes of the mesh (ICT's face area has no eyeballs or mouth
socket) are painted with a sclera/iris and a dark mouth interior, then the frame is blurred
(Gaussian σ uniform in [0.3, 1] px: at least a little, because the renderer does not
anti-alias) and sensor noise is added (σ uniform in [0.01, 0.02]).

Landmarks (the record's "detections"): the 66 landmark vertices of each frame's ground-truth mesh
projected into the image, the 17 jaw landmarks at the outermost projection along each contour
candidate line, i.e. on the face's outline (`mofl.facemodel.contour.select_contour_vertices`, the
same rule as the loss),
plus detector-like noise: a per-frame shift (σ 0.5 px) and per-landmark Gaussian noise (σ 1.2 px,
1.8 px on the jaw), up to twice that on the far side of a turned head. Confidence ≈ 0.95,
lowered by up to 0.45 for landmarks on the side turned away (at yaw ≥ 45°), halved for landmarks
hidden in the z-buffer, ±0.05 jitter, clipped to [0, 1].

Dense 2D points (optional, `dense_vertices`; our deviation, docs/data.md "Dense 2D points"): more
fixed vertices of each frame's mesh projected into the image, with the landmarks' per-frame shift
model (σ 0.5 px) and per-point noise (σ 1.2 px), confidence 0.95 where the z-buffer shows the
point and 0 where it is hidden. Their noise comes from a stream of its own, (seed, identity,
sample, 1), so adding them leaves every other pixel and number of a sample unchanged.

Ground truth per sample (`Sample.ground_truth`, stored by `tools.make_synthetic`): `gt_vertices`
[V, 3] (identity, neutral expression, mm, model space), `gt_expression_vertices` [M, V, 3]
(each frame's mesh), `gt_identity_weights` [K] and `gt_albedo` [V, 3]; the record's `pose` field
holds the true Euler angles.

Determinism: every random draw comes from NumPy `default_rng` streams seeded by (seed, identity)
and (seed, identity, sample), so a sample does not depend on the batch size, on how many other
identities are generated, or on the order they are rendered in; the renderer is deterministic.
"""
import dataclasses
import math
from typing import List, Optional, Sequence

import cv2
import numpy as np
import tensorflow as tf

from mofl import landmarks as landmark_layout
from mofl.data import synthetic_appearance
from mofl.data import synthetic_identity
from mofl.facemodel import contour as contour_lib
from mofl.facemodel import geometry
from mofl.render import camera as camera_lib
from mofl.render import image_renderer
from mofl.render import shading
from mofl.render import visibility

# tools.preprocess crops a square of 1.6× the landmark box; the synthetic faces are framed alike.
CROP_SCALE = camera_lib.LANDMARK_CROP_SCALE


@dataclasses.dataclass
class SceneOptions:
    """Ranges of the per-frame scene parameters (module docstring)."""
    max_yaw_deg: float = 45.0
    max_pitch_deg: float = 15.0
    max_roll_deg: float = 10.0
    depth_jitter: float = 0.08  # relative
    shift_jitter: float = 0.04  # of the image side
    max_active_expressions: int = 3
    blur_sigma_px: tuple = (0.3, 1.0)
    noise_sigma: tuple = (0.01, 0.02)
    landmark_sigma_px: float = 1.2
    jaw_landmark_sigma_px: float = 1.8
    landmark_shift_sigma_px: float = 0.5


@dataclasses.dataclass
class Identity:
    """One synthetic person.

    Attributes:
        index: identity number (names it: `synth00012`).
        name: identity id written to the records.
        weights: [K] ground-truth identity weights.
        vertices: [V, 3] identity mesh, neutral expression, mm, model space.
        appearance: its `Appearance`.
    """
    index: int
    name: str
    weights: np.ndarray
    vertices: np.ndarray
    appearance: synthetic_appearance.Appearance


@dataclasses.dataclass
class Scene:
    """The random parameters of one M-frame sample (and the rng that finishes its frames)."""
    identity: Identity
    sample_index: int
    euler_angles: np.ndarray      # [M, 3] head rotation, Euler (pitch, yaw, roll) radians
    translation: np.ndarray       # [M, 3] mm
    sh: np.ndarray                # [M, 27]
    expression_weights: np.ndarray  # [M, b]
    expression_vertices: np.ndarray  # [M, V, 3] mm, model space
    backgrounds: np.ndarray       # [M, H, W, 3]
    rng: np.random.Generator

    @property
    def num_frames(self):
        return int(self.euler_angles.shape[0])

    @property
    def clip(self):
        return f'{self.identity.name}/sample{self.sample_index:03d}'


@dataclasses.dataclass
class Sample:
    """One rendered multi-frame sample, ready for `records.encode_sample`.

    Attributes:
        scene: the `Scene` it was rendered from (ground truth: meshes, pose, light).
        images: [M, H, W, 3] uint8.
        landmarks: [M, 66, 2] noisy "detected" landmarks, pixels.
        landmark_confidence: [M, 66] in [0, 1].
        clean_landmarks: [M, 66, 2] the exact projections (sliding jaw points).
        landmark_vertices: [M, 66] int32 vertex of each landmark.
        masks: [M, H, W] float32 rendered face mask.
        dense_points: [M, K, 2] noisy dense 2D points, pixels (None without `dense_vertices`).
        dense_confidence: [M, K] in [0, 1], 0 where hidden (None without them).
    """
    scene: Scene
    images: np.ndarray
    landmarks: np.ndarray
    landmark_confidence: np.ndarray
    clean_landmarks: np.ndarray
    landmark_vertices: np.ndarray
    masks: np.ndarray
    dense_points: Optional[np.ndarray] = None
    dense_confidence: Optional[np.ndarray] = None

    def ground_truth(self):
        """{name: array} for `records.encode_sample(ground_truth=...)`."""
        return {
            'gt_vertices': self.scene.identity.vertices,
            'gt_expression_vertices': self.scene.expression_vertices,
            'gt_identity_weights': self.scene.identity.weights,
            'gt_albedo': self.scene.identity.appearance.albedo,
        }


def _rng(*keys):
    return np.random.default_rng([int(k) for k in keys])


class SyntheticGenerator:
    """Draws identities and scenes and renders them (module docstring).

    Args:
        mesh: the asset's SourceMesh (template, triangles, landmarks, contour lines, blendshapes).
        identity_model: a `LinearIdentityModel` on the same template.
        seed: base seed; every draw derives from it.
        camera: intrinsics and image size (default: 240×240, f = 1000 px). Pixel-valued scene
            options (blur, landmark noise) are given for the 240 crop and scale with the
            camera's width, so a smaller crop (`Camera.crop(128)`) is the same picture at a
            lower resolution.
        options: `SceneOptions`.
        rasterizer: optional `rasterize_triangles`-compatible callable (default: the op).
        dense_vertices: optional [K] vertex indices of `mesh` whose projections are the dense 2D
            points (module docstring); None: none.
    """

    def __init__(self, mesh, identity_model, seed=0, camera=None, options=None, rasterizer=None,
                 dense_vertices=None):
        self.mesh = mesh
        self.identity_model = identity_model
        self.seed = int(seed)
        self.camera = camera or camera_lib.Camera.centered(camera_lib.DEFAULT_IMAGE_SIZE,
                                                           camera_lib.DEFAULT_FOCAL_LENGTH_PX)
        self.options = options or SceneOptions()
        self.pixel_scale = self.camera.image_size[1] / float(camera_lib.DEFAULT_IMAGE_SIZE[1])
        self.rasterizer = rasterizer
        self.triangles = np.asarray(mesh.triangles, np.int32)
        self.landmark_indices = np.asarray(mesh.landmark_indices, np.int32)
        self.dense_vertices = (np.zeros([0], np.int32) if dense_vertices is None
                               else np.asarray(dense_vertices, np.int32).reshape(-1))
        if ((self.dense_vertices < 0) | (self.dense_vertices >= mesh.num_vertices)).any():
            raise ValueError(f'dense_vertices must index the {mesh.num_vertices} mesh vertices')
        self.contour_candidates = np.asarray(mesh.contour_candidates, np.int32)
        self.contour_directions = geometry.contour_outward_directions(mesh.vertices,
                                                                     mesh.contour_candidates)
        self.expression_basis = np.asarray(mesh.expression_basis, np.float32)
        template = np.asarray(mesh.vertices, np.float32)
        if identity_model.template.shape != template.shape:
            raise synthetic_identity.IdentityModelError(
                f'identity model template {identity_model.template.shape} does not match the '
                f'asset {template.shape}')
        landmarks = template[self.landmark_indices]
        self.landmark_centre, self.base_depth = camera_lib.frontal_face_placement(
            landmarks, float(self.camera.focal_x), self.camera.image_size[1], CROP_SCALE)
        # x of each landmark relative to the face's half-width: which side it is on.
        self.landmark_side = (landmarks[:, 0] - self.landmark_centre[0]) / \
            max(float(np.abs(landmarks[:, 0] - self.landmark_centre[0]).max()), 1e-6)

    def identity(self, index):
        """Identity `index` (drawn from the stream (seed, index, 0))."""
        rng = _rng(self.seed, index, 0)
        weights = self.identity_model.sample_weights(rng)
        vertices = self.identity_model.vertices(weights)
        appearance = synthetic_appearance.sample_albedo(vertices, self.landmark_indices, rng)
        return Identity(index=int(index), name=f'synth{int(index):05d}', weights=weights,
                        vertices=vertices, appearance=appearance)

    def scene(self, identity, sample_index, num_frames):
        """The random parameters of sample `sample_index` of `identity` (stream (seed, identity,
        sample + 1))."""
        opt = self.options
        rng = _rng(self.seed, identity.index, sample_index + 1)
        m = int(num_frames)
        rotation = np.stack([
            rng.uniform(-1, 1, m) * math.radians(opt.max_pitch_deg),
            rng.uniform(-1, 1, m) * math.radians(opt.max_yaw_deg),
            rng.uniform(-1, 1, m) * math.radians(opt.max_roll_deg)], axis=1).astype(np.float32)
        depth = self.base_depth * (1 + rng.uniform(-opt.depth_jitter, opt.depth_jitter, m))
        shift_px = rng.uniform(-opt.shift_jitter, opt.shift_jitter, (m, 2)) * \
            self.camera.image_size[1]
        shift_mm = shift_px * depth[:, None] / float(self.camera.focal_x)
        rotated_centre = np.einsum('mij,j->mi', _rotation_matrices(rotation),
                                   self.landmark_centre)
        translation = np.stack([shift_mm[:, 0], -shift_mm[:, 1], -depth], axis=1) - rotated_centre
        sh = synthetic_appearance.sample_lights(rng, m)
        weights = synthetic_appearance.sample_expression_weights(
            rng, self.mesh.expression_names, m, opt.max_active_expressions)
        expression_vertices = identity.vertices[None] + np.einsum(
            'mb,bvc->mvc', weights, self.expression_basis)
        backgrounds = np.stack([synthetic_appearance.sample_background(rng, self.camera.image_size)
                                for _ in range(m)])
        return Scene(identity=identity, sample_index=int(sample_index), euler_angles=rotation,
                     translation=translation.astype(np.float32), sh=sh,
                     expression_weights=weights,
                     expression_vertices=expression_vertices.astype(np.float32),
                     backgrounds=backgrounds, rng=rng)

    def render(self, scenes: Sequence[Scene], batch_size=8) -> List[Sample]:
        """Renders the scenes' frames, `batch_size` frames per renderer call.

        Returns:
            One `Sample` per scene, in order.
        """
        frames = [(s, f) for s in scenes for f in range(s.num_frames)]
        outputs = []
        for start in range(0, len(frames), max(1, int(batch_size))):
            chunk = frames[start:start + max(1, int(batch_size))]
            outputs.extend(self._render_frames(chunk))
        samples, cursor = [], 0
        for scene in scenes:
            per_frame = outputs[cursor:cursor + scene.num_frames]
            cursor += scene.num_frames
            samples.append(self._finish(scene, per_frame))
        return samples

    def _render_frames(self, chunk):
        """Renders [(scene, frame)] in one call; returns per-frame dicts of NumPy arrays."""
        def stack(getter):
            return np.stack([getter(s, f) for s, f in chunk]).astype(np.float32)
        outputs = self._render_core(
            stack(lambda s, f: s.expression_vertices[f]),
            stack(lambda s, f: s.identity.appearance.albedo),
            stack(lambda s, f: s.sh[f]),
            stack(lambda s, f: s.euler_angles[f]),
            stack(lambda s, f: s.translation[f]),
            stack(lambda s, f: s.backgrounds[f]))
        image, mask, landmarks, landmark_vertices, visible, dense, dense_visible = (
            np.asarray(o) for o in outputs)
        return [{'image': image[i], 'mask': mask[i], 'landmarks': landmarks[i],
                 'landmark_vertices': landmark_vertices[i], 'visible': visible[i],
                 'dense_points': dense[i], 'dense_visible': dense_visible[i]}
                for i in range(len(chunk))]

    @tf.function(reduce_retracing=True, autograph=False)
    def _render_core(self, vertices, albedo, sh, rotation, translation, background):
        """The TF part of `_render_frames` (traced once per batch size).

        Args:
            vertices: [B, V, 3] frame meshes (model space, mm).
            albedo: [B, V, 3].
            sh: [B, 27].
            rotation: [B, 3] Euler radians.
            translation: [B, 3] mm.
            background: [B, H, W, 3].

        Returns:
            image [B, H, W, 3], mask [B, H, W], landmarks [B, 66, 2] (exact projections, jaw on
            the silhouette), landmark vertices [B, 66] int32, visible [B, 66] bool (z-buffer),
            dense points [B, K, 2] (exact projections) and their visibility [B, K] bool.
        """
        rendered = image_renderer.render_image(
            vertices, self.triangles, albedo, sh, rotation, translation, camera=self.camera,
            background=background, rasterizer=self.rasterizer)
        _, points_camera, rotation_matrices = camera_lib.model_to_screen(
            vertices, rotation, translation, self.camera)
        contour = contour_lib.select_contour_vertices(
            points_camera[tf.newaxis], rotation_matrices[tf.newaxis], self.contour_candidates,
            self.contour_directions)
        landmark_vertices = contour_lib.landmark_vertex_indices(self.landmark_indices,
                                                                contour)[0]
        screen = tf.gather(rendered.screen_vertices, landmark_vertices, batch_dims=1)
        visible = visibility.zbuffer_visibility(screen, rendered.triangle_ids, rendered.depth)
        dense = tf.gather(rendered.screen_vertices, self.dense_vertices, axis=1)
        dense_visible = visibility.zbuffer_visibility(dense, rendered.triangle_ids,
                                                      rendered.depth)
        return (rendered.image, rendered.mask, screen[..., :2], landmark_vertices, visible,
                dense[..., :2], dense_visible)

    def _finish(self, scene, per_frame):
        """Paints eye/mouth holes, blurs, adds noise and detector noise (scene.rng, in order)."""
        opt = self.options
        rng = scene.rng
        images, landmarks, confidence = [], [], []
        for f, out in enumerate(per_frame):
            image = synthetic_appearance.paint_holes(
                out['image'], out['mask'], out['landmarks'], scene.identity.appearance.iris_color,
                float(scene.sh[f, 0]) * shading.SH_CONSTANT_TERM)
            # At least the 240 crop's smallest blur: the renderer does not anti-alias.
            sigma = max(rng.uniform(*opt.blur_sigma_px) * self.pixel_scale,
                        opt.blur_sigma_px[0])
            image = cv2.GaussianBlur(image, (0, 0), sigmaX=sigma, sigmaY=sigma)
            image = image + rng.uniform(*opt.noise_sigma) * rng.standard_normal(
                image.shape, dtype=np.float32)
            images.append((np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8))

            yaw = float(scene.euler_angles[f, 1])
            # Positive yaw turns the model's +x side away from the camera (R_y maps x̂ to
            # (cos, 0, −sin)).
            far = np.clip(self.landmark_side * math.sin(yaw) / math.sin(math.radians(45.0)),
                          0.0, 1.0)
            sigma_px = np.full(66, opt.landmark_sigma_px)
            sigma_px[landmark_layout.JAW_66] = opt.jaw_landmark_sigma_px
            sigma_px = sigma_px * (1.0 + far) * self.pixel_scale
            noise = rng.normal(0.0, 1.0, (66, 2)) * sigma_px[:, None] + \
                rng.normal(0.0, opt.landmark_shift_sigma_px * self.pixel_scale, (1, 2))
            landmarks.append(out['landmarks'] + noise)
            conf = (0.95 - 0.45 * far) * np.where(out['visible'], 1.0, 0.5)
            conf = conf + rng.uniform(-0.05, 0.05, 66)
            confidence.append(np.clip(conf, 0.0, 1.0))
        dense_points, dense_confidence = self._dense_detections(scene, per_frame)
        return Sample(
            scene=scene, images=np.stack(images),
            landmarks=np.stack(landmarks).astype(np.float32),
            landmark_confidence=np.stack(confidence).astype(np.float32),
            clean_landmarks=np.stack([o['landmarks'] for o in per_frame]).astype(np.float32),
            landmark_vertices=np.stack([o['landmark_vertices'] for o in per_frame]),
            masks=np.stack([o['mask'] for o in per_frame]),
            dense_points=dense_points, dense_confidence=dense_confidence)

    def _dense_detections(self, scene, per_frame):
        """Noisy dense points [M, K, 2] and confidences [M, K] (None, None without them)."""
        if not self.dense_vertices.size:
            return None, None
        opt = self.options
        rng = _rng(self.seed, scene.identity.index, scene.sample_index + 1, 1)
        points, confidence = [], []
        for out in per_frame:
            k = out['dense_points'].shape[0]
            noise = rng.normal(0.0, opt.landmark_sigma_px * self.pixel_scale, (k, 2)) + \
                rng.normal(0.0, opt.landmark_shift_sigma_px * self.pixel_scale, (1, 2))
            points.append(out['dense_points'] + noise)
            confidence.append(np.where(out['dense_visible'], 0.95, 0.0))
        return (np.stack(points).astype(np.float32), np.stack(confidence).astype(np.float32))


def _rotation_matrices(euler):
    """[M, 3] (pitch, yaw, roll) → [M, 3, 3] R = Rz·Ry·Rx (BUILD_NOTES), in NumPy."""
    return np.asarray(camera_lib.rotation_from_euler(np.asarray(euler, np.float32)), np.float64)
