"""Ground-truth identity models of the synthetic data: the shape the learner never sees.

The reference: docs/data.md "Synthetic ground truth".

A synthetic identity (shared by the M frames of every sample of one person, see
`mofl.data.synthetic`) is drawn from one of two linear models:
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
"""
import dataclasses
import hashlib
import json
import os

import numpy as np

from mofl import landmarks as landmark_layout

IDENTITY_MODELS = ('auto', 'ict', 'procedural')
ICT_NUM_IDENTITY_MODES = 100
ICT_FACE_AREA_VERTICES = 9409
ICT_CM_TO_MM = 10.0
DEFAULT_TRUNCATION = 2.5
_IDENTITY_CACHE_VERSION = 1
# Procedural identity model: σ of the global width/height/depth scaling (±8 % at the ±2.5
# truncation), and a gain on the bump amplitudes listed in `procedural_identity_basis`, chosen so
# that random procedural identities lie as far from the ICT template as random ICT identities
# (about 4 mm RMS over the face region).
SCALE_SIGMA = 0.032
BUMP_GAIN = 1.6


class IdentityModelError(ValueError):
    """Raised when the requested identity model cannot be used with the asset (the reason said)."""


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


def eye_scale(vertices, landmark_indices):
    """s = distance between the outer eye corners (66-layout 36 and 45), mm."""
    return float(np.linalg.norm(vertices[landmark_indices[36]] - vertices[landmark_indices[45]]))


def gaussian_falloff(vertices, centre, radius):
    """[V] exp(−‖v − centre‖² / 2·radius²) of [V, 3] vertices (radius in mm)."""
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
    s = eye_scale(v, landmark_indices)
    centre = lm.mean(axis=0)
    x_axis, y_axis, z_axis = np.eye(3)
    modes, names = [], []

    for axis, name in ((0, 'width'), (1, 'height'), (2, 'depth')):
        offset = np.zeros_like(v)
        offset[:, axis] = SCALE_SIGMA * (v[:, axis] - centre[axis])
        modes.append(offset)
        names.append(f'scale_{name}')

    def bump(point, radius, direction):
        return gaussian_falloff(v, point, radius * s)[:, None] * np.asarray(direction)[None, :]

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
    pair('eye_spacing', lm[landmark_layout.RIGHT_EYE_66].mean(0),
         lm[landmark_layout.LEFT_EYE_66].mean(0), 0.22, outward, 2.0)
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
