r"""Synthetic ground-truth multi-frame samples: the stand-in benchmark (BUILD_NOTES.md "Data").

A sample is M frames of one synthetic person, rendered with `mofl.render.image_renderer` and
written in the training-record format (`mofl.data.records`) together with the ground-truth meshes.

Identity (shared by the M frames of every sample of one identity), from a ground-truth identity
model that the learner never sees:
- `ict`: ICT-FaceKit's 100 PCA identity modes. `identityK.obj` is the complete neutral mesh plus
  mode K already scaled by its standard deviation, so mode K's offset is
  (identityK − neutral)[:9409] · 10 mm (the asset's face area, cm → mm) and a random identity is
  v̄ + Σ_k w_k · offset_k with w_k ~ N(0, 1) truncated at ±`truncation`. Only this module and the
  evaluation read these files (`mofl.facemodel.sources.ict` deliberately does not).
- `procedural` (any asset, e.g. the mediapipe one): a fixed linear basis built from the template
  and its landmarks, sampled the same way (w_k ~ N(0, 1), truncated). Its modes, with s = the
  outer-eye-corner distance of the template (89 mm on ICT) as the length unit:
  * global anisotropic scaling about the landmark centroid: face width, height and depth, each
    with σ = 3.2 % (so ±8 % at the truncation);
  * smooth local displacement fields, each a sum of Gaussian radial-basis bumps
    exp(−‖v − p‖² / 2r²) (3D distance to a landmark-defined centre p, radius r a fraction of s)
    times a fixed direction, with a peak amplitude at w = 1 of 2.4–6.4 mm: nose projection,
    width, bridge and length; chin length and protrusion; jaw width; cheek fullness; cheekbone
    width; brow ridge; eye spacing; mouth width; lip fullness; forehead slope. Paired
    (left/right) regions move mirror-symmetrically; each pair also has an antisymmetric mode with
    a third of the amplitude, so faces are slightly asymmetric.
  The amplitudes are calibrated to ICT's: random identities lie 4.0 mm RMS (face region, mean of
  50) from the ICT template under this model and 4.1 mm under ICT's own 100 modes (whose first
  mode alone moves the face region by 3.1 mm RMS); on the mediapipe asset 4.1 mm.

Appearance per identity (`sample_albedo`): a skin tone interpolated along a palette from very
light to very dark skin, with a small random tint; smooth low-frequency per-vertex brightness and
redness variation (random Gaussian blobs), redder cheeks, darker eyebrows (a band just below the
iBUG brow landmarks), darker lash lines (along the eye contours) and redder lips (inside the
outer-lip polygon of the mesh seen from the front). Eye colour (iris) per identity.

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
same rule as the loss), plus
detector-like noise: a per-frame shift (σ 0.5 px) and per-landmark Gaussian noise (σ 1.2 px,
1.8 px on the jaw), up to twice that on the far side of a turned head. Confidence ≈ 0.95,
lowered by up to 0.45 for landmarks on the side turned away (at yaw ≥ 45°), halved for landmarks
hidden in the z-buffer, ±0.05 jitter, clipped to [0, 1].

Ground truth per sample (`Sample.ground_truth`, stored by `tools.make_synthetic`): `gt_vertices`
[V, 3] (identity, neutral expression, mm, model space), `gt_expression_vertices` [M, V, 3]
(each frame's mesh), `gt_identity_weights` [K] and `gt_albedo` [V, 3]; the record's `pose` field
holds the true Euler angles.

Determinism: every random draw comes from NumPy `default_rng` streams seeded by (seed, identity)
and (seed, identity, sample), so a sample does not depend on the batch size, on how many other
identities are generated, or on the order they are rendered in; the renderer is deterministic.
"""
import dataclasses
import hashlib
import json
import math
import os
from typing import List, Sequence

import cv2
import numpy as np
import tensorflow as tf

from mofl.facemodel import contour as contour_lib
from mofl.facemodel import geometry
from mofl.render import camera as camera_lib
from mofl.render import image_renderer
from mofl.render import shading
from mofl.render import visibility

IDENTITY_MODELS = ('auto', 'ict', 'procedural')
ICT_NUM_IDENTITY_MODES = 100
ICT_FACE_AREA_VERTICES = 9409
ICT_CM_TO_MM = 10.0
DEFAULT_TRUNCATION = 2.5
# tools.preprocess crops a square of 1.6× the landmark box; the synthetic faces are framed alike.
CROP_SCALE = camera_lib.LANDMARK_CROP_SCALE
# Caps on single blendshape weights (a wide-open jaw leaves ICT's face area with a large hole).
EXPRESSION_WEIGHT_CAPS = {'jawOpen': 0.5, 'mouthClose': 0.3}
_IDENTITY_CACHE_VERSION = 1
# Procedural identity model: σ of the global width/height/depth scaling (±8 % at the ±2.5
# truncation), and a gain on the bump amplitudes listed in `procedural_identity_basis`, chosen so
# that random procedural identities lie as far from the ICT template as random ICT identities
# (about 4 mm RMS over the face region).
SCALE_SIGMA = 0.032
BUMP_GAIN = 1.6

# 66-point layout (iBUG 68 without the inner-mouth corners 60 and 64).
_JAW = slice(0, 17)
_RIGHT_BROW, _LEFT_BROW = list(range(17, 22)), list(range(22, 27))
_RIGHT_EYE, _LEFT_EYE = list(range(36, 42)), list(range(42, 48))
_OUTER_LIPS = list(range(48, 60))
_INNER_MOUTH = [48, 60, 61, 62, 54, 63, 64, 65]  # outer corners + the 6 inner-lip points

# Skin reflectance from very light to very dark skin (display RGB in [0, 1]).
SKIN_TONE_PALETTE = np.array([
    [0.93, 0.78, 0.69],
    [0.87, 0.68, 0.56],
    [0.80, 0.60, 0.46],
    [0.70, 0.50, 0.36],
    [0.60, 0.41, 0.28],
    [0.48, 0.32, 0.21],
    [0.36, 0.23, 0.15],
    [0.25, 0.16, 0.11],
], np.float32)
HAIR_COLORS = np.array([[0.06, 0.05, 0.04], [0.15, 0.10, 0.07], [0.30, 0.20, 0.12],
                        [0.50, 0.38, 0.22]], np.float32)
IRIS_COLORS = np.array([[0.25, 0.15, 0.08], [0.12, 0.08, 0.05], [0.30, 0.42, 0.55],
                        [0.32, 0.40, 0.25], [0.45, 0.33, 0.18]], np.float32)


class IdentityModelError(ValueError):
    """Raised when the requested identity model cannot be used with the asset (the reason said)."""


# ----------------------------------------------------------------------------- identity models

@dataclasses.dataclass
class LinearIdentityModel:
    """A ground-truth identity model v = v̄ + Σ_k w_k · basis_k with w_k ~ N(0, 1), truncated.

    Attributes:
        name: 'ict' or 'procedural'.
        template: [V, 3] float32 v̄ in mm.
        basis: [K, V, 3] float32 offsets in mm for w_k = 1 (one standard deviation).
        truncation: |w_k| ≤ truncation.
        description: one line for logs and the manifest.
    """
    name: str
    template: np.ndarray
    basis: np.ndarray
    truncation: float = DEFAULT_TRUNCATION
    description: str = ''

    @property
    def num_weights(self):
        return int(self.basis.shape[0])

    def sample_weights(self, rng):
        """[K] float32 weights, N(0, 1) redrawn until within ±truncation."""
        weights = rng.standard_normal(self.num_weights)
        outside = np.abs(weights) > self.truncation
        while np.any(outside):
            weights[outside] = rng.standard_normal(int(outside.sum()))
            outside = np.abs(weights) > self.truncation
        return weights.astype(np.float32)

    def vertices(self, weights):
        """[K] weights → [V, 3] float32 identity mesh (neutral expression), mm."""
        weights = np.asarray(weights, np.float32)
        offsets = np.tensordot(weights, self.basis, axes=1)
        return (self.template + offsets).astype(np.float32)


def _ict_file(ict_dir, name):
    for candidate in (f'{name}.obj', f'{name}.obj.gz'):
        path = os.path.join(ict_dir, candidate)
        if os.path.exists(path):
            return path
    return None


def ict_identity_files(ict_dir):
    """The neutral mesh and the 100 identity-mode files of an ICT folder.

    Raises:
        IdentityModelError: naming the first missing file.
    """
    names = ['generic_neutral_mesh'] + [f'identity{k:03d}' for k in range(ICT_NUM_IDENTITY_MODES)]
    paths = []
    for name in names:
        path = _ict_file(ict_dir, name)
        if path is None:
            raise IdentityModelError(f'{ict_dir}: missing {name}.obj (or .obj.gz); the ict '
                                     'identity model needs ICT-FaceKit\'s 100 identity modes')
        paths.append(path)
    return paths


def load_ict_identity_offsets(ict_dir, cache_dir=None):
    """ICT's 100 identity modes as face-area offsets in mm (read once, then cached as .npy).

    Args:
        ict_dir: ICT-FaceKit `FaceXModel` folder (plain or gzipped OBJs).
        cache_dir: folder for the cache file (default: `default_assets.cache_dir()`); the key
            covers the folder and every file's size and mtime.

    Returns:
        [100, 9409, 3] float32 offsets: (identityK − neutral) · 10 for the face-area vertices.
    """
    from mofl.facemodel import default_assets  # pylint: disable=import-outside-toplevel
    from mofl.facemodel import mesh_io  # pylint: disable=import-outside-toplevel
    paths = ict_identity_files(ict_dir)
    key = hashlib.sha1(json.dumps(
        [_IDENTITY_CACHE_VERSION, os.path.abspath(ict_dir)] +
        [[os.path.basename(p), os.path.getsize(p), int(os.path.getmtime(p))] for p in paths]
    ).encode('utf-8')).hexdigest()[:16]
    cache_dir = cache_dir or os.path.join(default_assets.cache_dir(), 'ground_truth')
    cache_path = os.path.join(cache_dir, f'ict-identity-modes-{key}.npy')
    if os.path.exists(cache_path):
        try:
            offsets = np.load(cache_path)
            if offsets.shape == (ICT_NUM_IDENTITY_MODES, ICT_FACE_AREA_VERTICES, 3):
                return offsets
        except (OSError, ValueError):
            pass
    neutral = mesh_io.read_obj_vertices(paths[0], max_vertices=ICT_FACE_AREA_VERTICES)
    offsets = np.empty((ICT_NUM_IDENTITY_MODES, ICT_FACE_AREA_VERTICES, 3), np.float32)
    for k, path in enumerate(paths[1:]):
        mode = mesh_io.read_obj_vertices(path, max_vertices=ICT_FACE_AREA_VERTICES)
        offsets[k] = (mode - neutral) * ICT_CM_TO_MM
    try:
        os.makedirs(cache_dir, exist_ok=True)
        tmp = f'{cache_path}.{os.getpid()}.tmp.npy'
        np.save(tmp, offsets)
        os.replace(tmp, cache_path)
    except OSError:
        pass  # a read-only cache only costs the next run the reading time
    return offsets


def ict_identity_model(mesh, ict_dir, truncation=DEFAULT_TRUNCATION, cache_dir=None):
    """The ICT ground-truth identity model on an ICT face-area asset.

    Args:
        mesh: the asset's SourceMesh (must have the 9409 ICT face-area vertices).
        ict_dir: ICT-FaceKit folder with `identity000..099.obj[.gz]`.
        truncation: |w_k| bound.
        cache_dir: see `load_ict_identity_offsets`.

    Raises:
        IdentityModelError: no ICT folder, missing files or a vertex-count mismatch.
    """
    if not ict_dir or not os.path.isdir(ict_dir):
        raise IdentityModelError(
            f'identity model "ict" needs the ICT-FaceKit data (folder {ict_dir!r} not found; set '
            '--ict_dir or $MOFL_ICT_DIR, or use --identity_model=procedural)')
    if mesh.num_vertices != ICT_FACE_AREA_VERTICES:
        raise IdentityModelError(
            f'identity model "ict" needs an ICT face-area asset with {ICT_FACE_AREA_VERTICES} '
            f'vertices; this {mesh.source!r} asset has {mesh.num_vertices} (use '
            '--identity_model=procedural or an ICT asset)')
    offsets = load_ict_identity_offsets(ict_dir, cache_dir)
    return LinearIdentityModel(
        name='ict', template=np.asarray(mesh.vertices, np.float32), basis=offsets,
        truncation=truncation,
        description=f'ICT-FaceKit 100 identity modes from {ict_dir}, w ~ N(0, 1) '
                    f'truncated at ±{truncation}')


def _eye_scale(vertices, landmark_indices):
    """s = distance between the outer eye corners (66-layout 36 and 45), mm."""
    return float(np.linalg.norm(vertices[landmark_indices[36]] - vertices[landmark_indices[45]]))


def _gaussian(vertices, centre, radius):
    return np.exp(-np.sum((vertices - centre) ** 2, axis=-1) / (2.0 * radius ** 2))


def procedural_identity_basis(vertices, landmark_indices):
    """The procedural identity basis described in the module docstring.

    Args:
        vertices: [V, 3] template, mm.
        landmark_indices: [66] landmark vertex indices.

    Returns:
        (basis [K, V, 3] float32 offsets in mm at w = 1, names [K] str).
    """
    v = np.asarray(vertices, np.float64)
    lm = v[np.asarray(landmark_indices)]
    s = _eye_scale(v, landmark_indices)
    centre = lm.mean(axis=0)
    x_axis, y_axis, z_axis = np.eye(3)
    modes, names = [], []

    for axis, name in ((0, 'width'), (1, 'height'), (2, 'depth')):
        offset = np.zeros_like(v)
        offset[:, axis] = SCALE_SIGMA * (v[:, axis] - centre[axis])
        modes.append(offset)
        names.append(f'scale_{name}')

    def bump(point, radius, direction):
        return _gaussian(v, point, radius * s)[:, None] * np.asarray(direction)[None, :]

    def single(name, point, radius, direction, amplitude):
        modes.append(BUMP_GAIN * amplitude * bump(point, radius, direction))
        names.append(name)

    def pair(name, right_point, left_point, radius, direction, amplitude):
        """Mirror-symmetric bumps (x of `direction` flips on the left) + an antisymmetric mode."""
        mirrored = np.asarray(direction) * np.array([-1.0, 1.0, 1.0])
        right = bump(right_point, radius, direction)
        left = bump(left_point, radius, mirrored)
        modes.append(BUMP_GAIN * amplitude * (right + left))
        names.append(name)
        modes.append(BUMP_GAIN * amplitude / 3.0 * (right - left))
        names.append(name + '_asymmetry')

    outward = -x_axis  # on the subject's right side (x < 0 in model space) outward is −x
    single('nose_projection', lm[30], 0.22, z_axis, 3.0)
    single('nose_bridge', lm[28], 0.18, z_axis, 2.0)
    single('nose_length', lm[33], 0.18, -y_axis, 2.0)
    pair('nose_width', lm[31], lm[35], 0.12, outward, 1.5)
    single('chin_length', lm[8], 0.30, -y_axis, 3.5)
    single('chin_protrusion', lm[8], 0.30, z_axis, 3.0)
    pair('jaw_width', lm[4], lm[12], 0.35, outward, 4.0)
    cheek_r, cheek_l = 0.5 * (lm[2] + lm[31]), 0.5 * (lm[14] + lm[35])
    pair('cheek_fullness', cheek_r, cheek_l, 0.30, 0.6 * outward + 0.8 * z_axis, 3.0)
    bone_r, bone_l = 0.5 * (lm[1] + lm[36]), 0.5 * (lm[15] + lm[45])
    pair('cheekbone_width', bone_r, bone_l, 0.25, outward, 3.0)
    pair('brow_ridge', lm[19], lm[24], 0.25, z_axis, 2.5)
    pair('eye_spacing', lm[_RIGHT_EYE].mean(0), lm[_LEFT_EYE].mean(0), 0.22, outward, 2.0)
    pair('mouth_width', lm[48], lm[54], 0.18, outward, 2.5)
    single('upper_lip_fullness', lm[51], 0.14, z_axis, 2.0)
    single('lower_lip_fullness', lm[57], 0.14, z_axis, 2.0)
    forehead = 0.5 * (lm[19] + lm[24]) + np.array([0.0, 0.6 * s, -0.1 * s])
    single('forehead_slope', forehead, 0.45, z_axis, 4.0)
    return np.stack(modes).astype(np.float32), names


def procedural_identity_model(mesh, truncation=DEFAULT_TRUNCATION):
    """The procedural ground-truth identity model for any asset (module docstring)."""
    basis, names = procedural_identity_basis(mesh.vertices, mesh.landmark_indices)
    return LinearIdentityModel(
        name='procedural', template=np.asarray(mesh.vertices, np.float32), basis=basis,
        truncation=truncation,
        description=f'procedural: {len(names)} modes (global scaling + Gaussian bumps around '
                    f'landmark regions), w ~ N(0, 1) truncated at ±{truncation}')


def resolve_identity_model_kind(kind, mesh, ict_dir):
    """'auto' → 'ict' when the asset is ICT's face area and the ICT data is there, else
    'procedural'; 'ict' and 'procedural' pass through (checked when built)."""
    if kind not in IDENTITY_MODELS:
        raise IdentityModelError(f'unknown identity model {kind!r}, want one of {IDENTITY_MODELS}')
    if kind != 'auto':
        return kind
    usable = (str(mesh.source) == 'ict' and mesh.num_vertices == ICT_FACE_AREA_VERTICES and
              bool(ict_dir) and os.path.isdir(ict_dir) and
              _ict_file(ict_dir, 'identity000') is not None)
    return 'ict' if usable else 'procedural'


def make_identity_model(kind, mesh, ict_dir=None, truncation=DEFAULT_TRUNCATION, cache_dir=None):
    """Builds the identity model `kind` (auto | ict | procedural) for `mesh`.

    Raises:
        IdentityModelError: with the reason when `kind` cannot be used.
    """
    kind = resolve_identity_model_kind(kind, mesh, ict_dir)
    if kind == 'ict':
        return ict_identity_model(mesh, ict_dir, truncation, cache_dir)
    return procedural_identity_model(mesh, truncation)


# ----------------------------------------------------------------------------- appearance

def _smoothstep(edge0, edge1, x):
    t = np.clip((x - edge0) / (edge1 - edge0), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _distance_to_polyline(points, polyline, closed=False):
    """[V, 3] points, [P, 3] polyline → [V] distance to the nearest segment."""
    starts = polyline if closed else polyline[:-1]
    ends = np.roll(polyline, -1, axis=0) if closed else polyline[1:]
    best = np.full(points.shape[0], np.inf)
    for a, b in zip(starts, ends):
        ab = b - a
        t = np.clip((points - a) @ ab / max(float(ab @ ab), 1e-12), 0.0, 1.0)
        best = np.minimum(best, np.linalg.norm(points - (a + t[:, None] * ab), axis=1))
    return best


def _inside_polygon_xy(points, polygon):
    """[V] signed distance (> 0 inside) of points to a polygon in the x-y plane (mm)."""
    contour = np.asarray(polygon[:, :2], np.float32).reshape(-1, 1, 2)
    return np.array([cv2.pointPolygonTest(contour, (float(p[0]), float(p[1])), True)
                     for p in points[:, :2]])


@dataclasses.dataclass
class Appearance:
    """Per-identity appearance.

    Attributes:
        albedo: [V, 3] float32 per-vertex reflectance in [0, 1].
        skin_tone: [3] the base skin colour drawn from the palette.
        iris_color: [3] eye colour used to paint the eye holes.
    """
    albedo: np.ndarray
    skin_tone: np.ndarray
    iris_color: np.ndarray


def sample_albedo(vertices, landmark_indices, rng):
    """Draws one identity's reflectance (module docstring: skin tone, blobs, brows, lips).

    Args:
        vertices: [V, 3] the identity's neutral mesh (mm); the regions are placed on it.
        landmark_indices: [66].
        rng: numpy Generator.

    Returns:
        An `Appearance`.
    """
    v = np.asarray(vertices, np.float64)
    lm = v[np.asarray(landmark_indices)]
    s = _eye_scale(v, landmark_indices)
    position = rng.uniform(0.0, len(SKIN_TONE_PALETTE) - 1)
    low = int(math.floor(position))
    high = min(low + 1, len(SKIN_TONE_PALETTE) - 1)
    tone = (1 - (position - low)) * SKIN_TONE_PALETTE[low] + (position - low) * \
        SKIN_TONE_PALETTE[high]
    tone = tone * (1.0 + rng.uniform(-0.04, 0.04, 3))
    albedo = np.tile(tone, (v.shape[0], 1))

    brightness = np.zeros(v.shape[0])
    redness = np.zeros(v.shape[0])
    for _ in range(6):
        centre = v[rng.integers(v.shape[0])]
        blob = _gaussian(v, centre, rng.uniform(0.3, 0.6) * s)
        brightness += rng.normal(0.0, 0.05) * blob
        redness += rng.normal(0.0, 0.03) * blob
    cheek_red = rng.uniform(0.02, 0.08)
    for cheek in (0.5 * (lm[2] + lm[31]), 0.5 * (lm[14] + lm[35])):
        redness += cheek_red * _gaussian(v, cheek, 0.25 * s)
    albedo *= (1.0 + brightness)[:, None]
    albedo *= (1.0 + redness[:, None] * np.array([1.0, -0.5, -0.5]))

    hair = HAIR_COLORS[rng.integers(len(HAIR_COLORS))] * rng.uniform(0.8, 1.2)
    hair = np.minimum(hair, tone)  # brows are never lighter than the skin
    brow_strength = rng.uniform(0.5, 0.85)
    for brow in (_RIGHT_BROW, _LEFT_BROW):
        line = lm[brow] - np.array([0.0, 0.03 * s, 0.0])  # iBUG brow points mark the upper edge
        weight = brow_strength * (1.0 - _smoothstep(0.03 * s, 0.055 * s,
                                                     _distance_to_polyline(v, line)))
        albedo = albedo * (1 - weight[:, None]) + hair[None] * weight[:, None]
    for eye in (_RIGHT_EYE, _LEFT_EYE):
        weight = 0.5 * (1.0 - _smoothstep(0.008 * s, 0.02 * s,
                                          _distance_to_polyline(v, lm[eye], closed=True)))
        albedo = albedo * (1 - weight[:, None]) + hair[None] * weight[:, None]

    lips = lm[_OUTER_LIPS]
    near_lips = (v[:, 2] > lips[:, 2].min() - 0.15 * s) & \
        (np.abs(v[:, 1] - lips[:, 1].mean()) < 0.4 * s) & (np.abs(v[:, 0]) < 0.6 * s)
    lip_weight = np.zeros(v.shape[0])
    if np.any(near_lips):
        inside = _inside_polygon_xy(v[near_lips], lips)
        lip_weight[near_lips] = _smoothstep(-0.01 * s, 0.01 * s, inside)
    lip_color = tone * np.array([0.95, 0.62, 0.62]) * rng.uniform(0.8, 1.0)
    lip_weight *= rng.uniform(0.5, 0.8)
    albedo = albedo * (1 - lip_weight[:, None]) + lip_color[None] * lip_weight[:, None]

    return Appearance(albedo=np.clip(albedo, 0.0, 1.0).astype(np.float32),
                      skin_tone=tone.astype(np.float32),
                      iris_color=IRIS_COLORS[rng.integers(len(IRIS_COLORS))].copy())


# ----------------------------------------------------------------------------- scenes

def sample_background(rng, image_size):
    """A cluttered background: gradient, colour noise, random shapes and fine noise.

    Args:
        rng: numpy Generator.
        image_size: (H, W).

    Returns:
        [H, W, 3] float32 in [0, 1].
    """
    height, width = image_size
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    angle = rng.uniform(0, 2 * np.pi)
    ramp = (np.cos(angle) * xs / width + np.sin(angle) * ys / height)
    ramp = (ramp - ramp.min()) / max(float(np.ptp(ramp)), 1e-6)
    colors = rng.uniform(0.0, 1.0, (2, 3)).astype(np.float32)
    image = colors[0] * (1 - ramp[..., None]) + colors[1] * ramp[..., None]
    coarse = rng.uniform(0.0, 1.0, (int(rng.integers(3, 9)), int(rng.integers(3, 9)), 3))
    coarse = cv2.resize(coarse.astype(np.float32), (width, height),
                        interpolation=cv2.INTER_CUBIC)
    image = (1 - 0.35) * image + 0.35 * coarse
    for _ in range(int(rng.integers(6, 18))):
        layer = image.copy()
        color = tuple(float(c) for c in rng.uniform(0.0, 1.0, 3))
        kind = rng.integers(4)
        x0, y0 = (int(c) for c in rng.integers(-width // 4, width + width // 4, 2))
        size = int(rng.integers(8, width // 2))
        if kind == 0:
            cv2.rectangle(layer, (x0, y0), (x0 + size, y0 + int(rng.integers(8, height // 2))),
                          color, -1)
        elif kind == 1:
            cv2.ellipse(layer, (x0, y0), (size // 2, int(rng.integers(4, height // 4))),
                        float(rng.uniform(0, 180)), 0, 360, color, -1, cv2.LINE_AA)
        elif kind == 2:
            x1, y1 = (int(c) for c in rng.integers(0, width, 2))
            cv2.line(layer, (x0, y0), (x1, y1), color, int(rng.integers(1, 8)), cv2.LINE_AA)
        else:
            points = rng.integers(-width // 4, width + width // 4, (int(rng.integers(3, 6)), 2))
            cv2.fillPoly(layer, [points.astype(np.int32).reshape(-1, 1, 2)], color, cv2.LINE_AA)
        alpha = rng.uniform(0.5, 1.0)
        image = (1 - alpha) * image + alpha * layer
    image += rng.uniform(0.0, 0.04) * rng.standard_normal(image.shape, dtype=np.float32)
    return np.clip(image, 0.0, 1.0).astype(np.float32)


def sample_expression_weights(rng, names, num_frames, max_active=3):
    """Sparse blendshape weights per frame: 0..max_active active shapes, uniform in [0, 1].

    Args:
        rng: numpy Generator.
        names: [b] blendshape names of the asset.
        num_frames: M.
        max_active: most active shapes per frame.

    Returns:
        [M, b] float32 in [0, 1], capped by `EXPRESSION_WEIGHT_CAPS`.
    """
    names = [str(n) for n in names]
    caps = np.array([EXPRESSION_WEIGHT_CAPS.get(n, 1.0) for n in names], np.float32)
    weights = np.zeros((num_frames, len(names)), np.float32)
    for frame in range(num_frames):
        count = int(rng.integers(0, min(max_active, len(names)) + 1))
        chosen = rng.choice(len(names), size=count, replace=False)
        weights[frame, chosen] = rng.uniform(0.0, 1.0, count) * caps[chosen]
    return weights


def sample_lights(rng, num_frames):
    """Per-frame SH illumination γ: ambient + one directional light, mildly coloured.

    Returns:
        [M, 27] float32 (layout in `mofl.render.shading`).
    """
    ambient = rng.uniform(0.45, 0.85, (num_frames, 1)) * (1 + rng.uniform(-0.06, 0.06,
                                                                          (num_frames, 3)))
    strength = rng.uniform(0.15, 0.6, (num_frames, 1)) * (1 + rng.uniform(-0.08, 0.08,
                                                                          (num_frames, 3)))
    direction = rng.normal(0.0, 1.0, (num_frames, 3))
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    direction[:, 2] = np.abs(direction[:, 2]) + 0.3  # from the camera's half-space
    sh = shading.directional_sh(direction.astype(np.float32), strength.astype(np.float32),
                                ambient.astype(np.float32))
    return np.asarray(sh, np.float32)


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
    appearance: Appearance


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
    """
    scene: Scene
    images: np.ndarray
    landmarks: np.ndarray
    landmark_confidence: np.ndarray
    clean_landmarks: np.ndarray
    landmark_vertices: np.ndarray
    masks: np.ndarray

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
    """

    def __init__(self, mesh, identity_model, seed=0, camera=None, options=None, rasterizer=None):
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
        self.contour_candidates = np.asarray(mesh.contour_candidates, np.int32)
        self.contour_directions = geometry.contour_outward_directions(mesh.vertices,
                                                                     mesh.contour_candidates)
        self.expression_basis = np.asarray(mesh.expression_basis, np.float32)
        template = np.asarray(mesh.vertices, np.float32)
        if identity_model.template.shape != template.shape:
            raise IdentityModelError(
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
        appearance = sample_albedo(vertices, self.landmark_indices, rng)
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
        sh = sample_lights(rng, m)
        weights = sample_expression_weights(rng, self.mesh.expression_names, m,
                                            opt.max_active_expressions)
        expression_vertices = identity.vertices[None] + np.einsum(
            'mb,bvc->mvc', weights, self.expression_basis)
        backgrounds = np.stack([sample_background(rng, self.camera.image_size) for _ in range(m)])
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
        image, mask, landmarks, landmark_vertices, visible = (np.asarray(o) for o in outputs)
        return [{'image': image[i], 'mask': mask[i], 'landmarks': landmarks[i],
                 'landmark_vertices': landmark_vertices[i], 'visible': visible[i]}
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
            the silhouette), landmark vertices [B, 66] int32, visible [B, 66] bool (z-buffer).
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
        return rendered.image, rendered.mask, screen[..., :2], landmark_vertices, visible

    def _finish(self, scene, per_frame):
        """Paints eye/mouth holes, blurs, adds noise and detector noise (scene.rng, in order)."""
        opt = self.options
        rng = scene.rng
        images, landmarks, confidence = [], [], []
        for f, out in enumerate(per_frame):
            image = _paint_holes(out['image'], out['mask'], out['landmarks'],
                                 scene.identity.appearance.iris_color,
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
            sigma_px[_JAW] = opt.jaw_landmark_sigma_px
            sigma_px = sigma_px * (1.0 + far) * self.pixel_scale
            noise = rng.normal(0.0, 1.0, (66, 2)) * sigma_px[:, None] + \
                rng.normal(0.0, opt.landmark_shift_sigma_px * self.pixel_scale, (1, 2))
            landmarks.append(out['landmarks'] + noise)
            conf = (0.95 - 0.45 * far) * np.where(out['visible'], 1.0, 0.5)
            conf = conf + rng.uniform(-0.05, 0.05, 66)
            confidence.append(np.clip(conf, 0.0, 1.0))
        return Sample(
            scene=scene, images=np.stack(images),
            landmarks=np.stack(landmarks).astype(np.float32),
            landmark_confidence=np.stack(confidence).astype(np.float32),
            clean_landmarks=np.stack([o['landmarks'] for o in per_frame]).astype(np.float32),
            landmark_vertices=np.stack([o['landmark_vertices'] for o in per_frame]),
            masks=np.stack([o['mask'] for o in per_frame]))


def _rotation_matrices(euler):
    """[M, 3] (pitch, yaw, roll) → [M, 3, 3] R = Rz·Ry·Rx (BUILD_NOTES), in NumPy."""
    return np.asarray(camera_lib.rotation_from_euler(np.asarray(euler, np.float32)), np.float64)


def _paint_holes(image, mask, landmarks, iris_color, light):
    """Fills background pixels inside the eye and inner-mouth polygons (holes in the mesh).

    Args:
        image: [H, W, 3] float render.
        mask: [H, W] face mask.
        landmarks: [66, 2] exact projected landmarks.
        iris_color: [3].
        light: scalar ambient level that darkens the painted colours.

    Returns:
        [H, W, 3] float32.
    """
    image = np.array(image, np.float32)
    height, width = mask.shape
    paint = np.zeros_like(image)
    region = np.zeros((height, width), np.float32)
    scale = 16.0  # cv2 fixed-point sub-pixel coordinates (shift = 4)

    def polygon(points):
        return (np.round((np.asarray(points) - 0.5) * scale)).astype(np.int32).reshape(-1, 1, 2)

    level = float(np.clip(light, 0.3, 1.2))
    for eye in (_RIGHT_EYE, _LEFT_EYE):
        points = landmarks[eye]
        if not np.all(np.isfinite(points)):
            continue
        eye_mask = np.zeros((height, width), np.float32)
        cv2.fillPoly(eye_mask, [polygon(points)], 1.0, cv2.LINE_8, 4)
        eye_mask = cv2.dilate(eye_mask, np.ones((3, 3), np.uint8))
        layer = np.zeros_like(image)
        layer[:] = np.array([0.85, 0.82, 0.78], np.float32) * level
        centre = points.mean(axis=0)
        radius = 0.22 * float(np.linalg.norm(points[3] - points[0]))
        cv2.circle(layer, tuple(int(c) for c in np.round((centre - 0.5) * scale)),
                   int(round(radius * scale)), tuple(float(c) * level for c in iris_color),
                   -1, cv2.LINE_AA, 4)
        cv2.circle(layer, tuple(int(c) for c in np.round((centre - 0.5) * scale)),
                   int(round(0.45 * radius * scale)), (0.02, 0.02, 0.02), -1, cv2.LINE_AA, 4)
        paint = np.where(eye_mask[..., None] > 0, layer, paint)
        region = np.maximum(region, eye_mask)
    mouth = landmarks[_INNER_MOUTH]
    if np.all(np.isfinite(mouth)):
        mouth_mask = np.zeros((height, width), np.float32)
        cv2.fillPoly(mouth_mask, [polygon(mouth)], 1.0, cv2.LINE_8, 4)
        mouth_mask = cv2.dilate(mouth_mask, np.ones((3, 3), np.uint8))
        paint = np.where(mouth_mask[..., None] > 0,
                         np.array([0.22, 0.06, 0.06], np.float32) * level, paint)
        region = np.maximum(region, mouth_mask)
    fill = (region > 0) & (mask < 0.5)
    image[fill] = paint[fill]
    return image
