"""Physically based renders of ICT-FaceKit heads with Mitsuba 3, for synthetic training videos.

mofl's own synthetic frames are drawn with the model's own image formation (Lambertian SH shading
of `mofl.render`), so a network trained on them never meets anything its renderer cannot
explain. This module draws frames with an established path tracer instead (Mitsuba 3, variant
`scalar_rgb`, CPU) and with image formation the model does NOT have:

- Specular reflection (Mitsuba's `principled` BSDF, roughness 0.3–0.7) on per-person skin albedo
  with procedural texture detail (multi-octave 3D noise, redness blotches, freckles, lip, cheek,
  brow and lash-line tint), painted in the ICT UV atlas.
- An environment map (sky or room gradient with a brighter window region) plus one key light (a
  sun with hard shadows or a spherical lamp with soft ones), with cast shadows and
  interreflections (path tracing, `MAX_PATH_DEPTH`).
- The full ICT head: head and neck, eyeballs (sclera with a wet specular, textured iris and
  pupil), teeth, gums, tongue and mouth socket. ICT's eyelash cards need an alpha texture we do
  not have, so they are left out and the lash line is painted on the lids instead.

Geometry (`load_ict_head`): ICT-FaceKit's generic neutral mesh (26,719 vertices, 12 material
groups), its 100 identity modes and its 53 ARKit-named expression shapes, in millimetres in
ICT's model space without recentring: vertex i < 9,409 of the head is vertex i of the `ict` face
asset's template (`mofl.facemodel.sources.ict`). The identity modes are the synthetic data's
ground-truth identity model, which the face asset (and so the learner) never reads. Parsing ~155
OBJ files takes ~8 s, so the arrays are cached as an `.npz` under
`mofl.facemodel.default_assets.cache_dir()`/ict_head.

Camera (`mitsuba_sensor`): mofl's convention (`mofl.render.camera`): camera at the origin looking
down −z, y up, u = c_x + f_x·x/d, v = c_y − f_y·y/d with d = −z, pixel (row r, column c)
centred at (c + 0.5, r + 0.5). Mitsuba's perspective sensor is set up so that every point
projects to the same pixel: horizontal field of view 2·atan(W / 2f_x), principal point shifted
by `principal_point_offset_x = (W/2 − c_x)/W`, `principal_point_offset_y = (H/2 − c_y)/H`
(fractions of the image; both signs measured, see tests/test_mitsuba_faces.py). Mitsuba has
square pixels only, so f_x must equal f_y. The head is posed in NumPy (camera space =
R·v + t) and the lights live in camera space.

Output (`render`): sRGB-encoded uint8 RGB (the linear radiance clipped to [0, 1], no tone curve),
composited over the given background with the render's coverage (alpha); optionally the
coverage mask itself. The pixel filter is a box, so the mask is the pixel's covered fraction.

Mitsuba is imported lazily (first render), so importing this module stays cheap. It renders on
all cores by default (`drjit.set_thread_count(n)` limits that); images do not depend on the
thread count, only on the inputs and `seed`. Costs (BUILD_NOTES.md "Pins and installation"): the
skin texture of a new appearance ~0.5 s (cached per head, `TEXTURE_CACHE_SIZE`), a 256² frame at
16 spp ~1.3 s on one core.
"""
import collections
import dataclasses
import functools
import gzip
import hashlib
import json
import math
import os
from typing import Tuple

import numpy as np

from mofl.facemodel import mesh_io

# ---------------------------------------------------------------------------------------------
# Constants and defaults.
# ---------------------------------------------------------------------------------------------

MITSUBA_VARIANT = 'scalar_rgb'   # CPU; the llvm_ad_rgb JIT variant failed on our machines
# Bump when the parsed head arrays change, so cached .npz files are rebuilt.
HEAD_CACHE_VERSION = 1

ICT_NUM_VERTICES = 26719
ICT_NUM_IDENTITIES = 100
ICT_NUM_EXPRESSIONS = 53
FACE_AREA_VERTICES = 9409        # vertices 0..9408 = the `ict` face asset's template
CM_TO_MM = 10.0

# ICT's material groups (`usemtl`, in file order) and the coarse part each belongs to.
MATERIAL_NAMES = ('M_Face', 'M_BackHead', 'M_GumsTongue', 'M_Teeth', 'M_ScleraLeft',
                  'M_IrisLeft', 'M_ScleraRight', 'M_IrisRight', 'M_LacrimalFluid',
                  'M_EyeBlend', 'M_EyeOcclusion', 'M_EyeLashes')
# skin: face, head and neck; mouth_interior: gums, tongue and mouth socket; teeth; eye: the
# eyeballs (sclera and iris layers); eyelashes: lash cards (alpha-textured in ICT; not rendered
# here); eye_overlay: the thin lacrimal-fluid, blend and occlusion shells that real-time
# renderers layer over the eyes (not rendered here: path tracing gives the occlusion itself).
PART_NAMES = ('skin', 'mouth_interior', 'teeth', 'eye', 'eyelashes', 'eye_overlay')
MATERIAL_PART = {
    'M_Face': 'skin', 'M_BackHead': 'skin', 'M_GumsTongue': 'mouth_interior',
    'M_Teeth': 'teeth', 'M_ScleraLeft': 'eye', 'M_IrisLeft': 'eye', 'M_ScleraRight': 'eye',
    'M_IrisRight': 'eye', 'M_LacrimalFluid': 'eye_overlay', 'M_EyeBlend': 'eye_overlay',
    'M_EyeOcclusion': 'eye_overlay', 'M_EyeLashes': 'eyelashes',
}
# Rendered meshes, each with one BSDF, and the ICT materials they are made of.
RENDER_GROUPS = collections.OrderedDict([
    ('skin', ('M_Face', 'M_BackHead')),
    ('mouth_interior', ('M_GumsTongue',)),
    ('teeth', ('M_Teeth',)),
    ('sclera', ('M_ScleraLeft', 'M_ScleraRight')),
    ('iris', ('M_IrisLeft', 'M_IrisRight')),
])
# Eyes. Each eye has a sclera layer and, inside it, an iris layer, both UV-mapped to [0, 1]²
# with the eye's axis at (0.5, 0.5). The iris layer's front is a disc (UV radius 0.09 — the pupil
# hole — to 0.45, 5° to 28° from the axis); the sclera layer bulges over it as a cornea. Without
# refraction that cornea would hide the iris, so its triangles (sclera UV radius < 0.15, up to
# 24° from the axis; the next ring of vertices lies at 0.17, 30°) are not rendered, and the
# iris texture puts the limbus at IRIS_VISIBLE_UV_RADIUS, where the sclera starts to cover it.
CORNEA_UV_RADIUS = 0.15
IRIS_VISIBLE_UV_RADIUS = 0.4

# Texture atlases: the skin atlas holds ICT's UV tiles 0 (face) and 1 (head and neck) side by
# side, SKIN_TEXTURE_SIZE texels each (~0.4 mm per texel on the face); the iris texture is one tile.
SKIN_TEXTURE_SIZE = 512
IRIS_TEXTURE_SIZE = 256
TEXTURE_CACHE_SIZE = 8           # textures kept per head (one per appearance)

# Rendering.
DEFAULT_SPP = 16
MAX_PATH_DEPTH = 4               # camera ray + up to three bounces (mouth, eye sockets)
NEAR_CLIP_MM = 10.0
FAR_CLIP_MM = 1.0e5
ENV_MAP_SIZE = (32, 64)          # lat-long (H, W)
KEY_LIGHT_DISTANCE_MM = 2000.0   # a lamp's centre, from the head's translation

# Appearance ranges (`sample_appearance`). Colours are display sRGB in [0, 1].
# Skin tones from very light to very dark; a tone is interpolated along this palette.
SKIN_TONE_PALETTE = np.array([
    [0.94, 0.80, 0.71], [0.88, 0.70, 0.58], [0.81, 0.61, 0.48], [0.71, 0.51, 0.38],
    [0.60, 0.42, 0.30], [0.48, 0.33, 0.23], [0.37, 0.25, 0.17], [0.26, 0.17, 0.12],
], np.float64)
SKIN_TINT_JITTER = 0.04          # ± relative brightness jitter of the tone (per channel: ¼)
ROUGHNESS_RANGE = (0.3, 0.7)     # principled roughness of the skin (alpha = roughness²)
SPECULAR_RANGE = (0.25, 0.6)     # principled `specular` (0.5 ↔ IOR 1.5; skin's ~1.4 ↔ 0.35)
DETAIL_STRENGTH_RANGE = (0.04, 0.12)   # relative albedo variation of the fine mottling
BLOTCH_STRENGTH_RANGE = (0.0, 0.12)    # relative redness variation of ~3 cm blotches
FRECKLE_DENSITY_RANGE = (0.0, 0.35)    # 0 = none; 0.35 = dense freckles on nose and cheeks
FRECKLE_PROBABILITY = 0.4              # the share of people with freckles
LIP_TINT_RANGE = (0.3, 0.8)            # 0 = lips like skin, 1 = strongly red-brown lips
CHEEK_TINT_RANGE = (0.0, 0.25)         # extra redness at the cheek centres
BROW_DENSITY_RANGE = (0.45, 0.9)       # opacity of the brow hair colour
PUPIL_RATIO_RANGE = (0.25, 0.45)       # pupil radius / iris radius
HAIR_COLORS = np.array([[0.05, 0.04, 0.035], [0.14, 0.10, 0.07], [0.30, 0.20, 0.12],
                        [0.52, 0.40, 0.25], [0.45, 0.22, 0.10]], np.float64)
IRIS_COLORS = np.array([[0.24, 0.14, 0.07], [0.12, 0.07, 0.04], [0.40, 0.28, 0.12],
                        [0.30, 0.42, 0.56], [0.36, 0.46, 0.30], [0.45, 0.48, 0.50]], np.float64)
SCLERA_COLOR = (0.86, 0.83, 0.79)
TEETH_COLOR = (0.86, 0.82, 0.72)
MOUTH_COLOR = (0.52, 0.20, 0.20)
COLOR_JITTER = 0.08              # ± relative jitter of sclera, teeth, mouth colours
HAIR_IRIS_JITTER = 0.15          # ± relative jitter of hair and iris colours
SCLERA_ROUGHNESS = 0.12
IRIS_ROUGHNESS = 0.15
TEETH_ROUGHNESS = 0.25
MOUTH_ROUGHNESS = 0.4

# Lighting ranges (`sample_lighting`); radiance and irradiance in linear units where a white
# Lambertian surface facing a key light of irradiance E has radiance E/π.
KEY_IRRADIANCE_RANGE = (1.5, 4.5)
KEY_TEMPERATURE_RANGE_K = (2700.0, 7500.0)
KEY_AZIMUTH_RANGE_DEG = (-100.0, 100.0)   # 0 = from the camera, ±90 = from the side
KEY_ELEVATION_RANGE_DEG = (-15.0, 60.0)
KEY_LAMP_PROBABILITY = 0.5                # else a sun (directional, hard shadows)
KEY_LAMP_RADIUS_DEG = (3.0, 12.0)         # angular radius of a lamp seen from the head
ENV_RADIANCE_RANGE = (0.12, 0.5)          # mean radiance of the environment
ENV_TEMPERATURE_RANGE_K = (3500.0, 10000.0)
WINDOW_GAIN_RANGE = (1.0, 8.0)            # window peak / mean environment radiance
WINDOW_SHARPNESS_RANGE = (3.0, 20.0)      # κ of the window lobe exp(κ(cos θ − 1))
WINDOW_AZIMUTH_RANGE_DEG = (-120.0, 120.0)
WINDOW_ELEVATION_RANGE_DEG = (-10.0, 60.0)
UP_TILT_DEG = 10.0                        # environment 'up' tilts by at most this

# Approximate display colours (sRGB) of black-body light, by temperature in kelvin.
_BLACKBODY_SRGB = (
    (2000.0, (1.00, 0.54, 0.07)), (2500.0, (1.00, 0.63, 0.28)), (3000.0, (1.00, 0.71, 0.42)),
    (3500.0, (1.00, 0.77, 0.54)), (4000.0, (1.00, 0.82, 0.64)), (4500.0, (1.00, 0.86, 0.73)),
    (5000.0, (1.00, 0.89, 0.81)), (5500.0, (1.00, 0.93, 0.88)), (6000.0, (1.00, 0.95, 0.94)),
    (6500.0, (1.00, 0.98, 0.99)), (7000.0, (0.96, 0.95, 1.00)), (8000.0, (0.89, 0.91, 1.00)),
    (9000.0, (0.84, 0.88, 1.00)), (10000.0, (0.80, 0.86, 1.00)),
)
_LUMINANCE = np.array([0.2126, 0.7152, 0.0722])

_MITSUBA = None   # the mitsuba module once imported and set to MITSUBA_VARIANT


# ---------------------------------------------------------------------------------------------
# Colour helpers.
# ---------------------------------------------------------------------------------------------

def srgb_to_linear(values):
    """sRGB-encoded values in [0, 1] → linear, same shape (float64)."""
    v = np.clip(np.asarray(values, np.float64), 0.0, 1.0)
    return np.where(v <= 0.04045, v / 12.92, ((v + 0.055) / 1.055) ** 2.4)


def linear_to_srgb(values):
    """Linear values → sRGB-encoded values in [0, 1] (clipped first), same shape (float64)."""
    v = np.clip(np.asarray(values, np.float64), 0.0, 1.0)
    return np.where(v <= 0.0031308, v * 12.92, 1.055 * v ** (1.0 / 2.4) - 0.055)


def blackbody_color(temperature_k):
    """Linear RGB of black-body light at `temperature_k` kelvin, scaled to luminance 1.

    Args:
        temperature_k: float, clamped to [2000, 10000].

    Returns:
        [3] float64.
    """
    temps = np.array([t for t, _ in _BLACKBODY_SRGB])
    colors = srgb_to_linear(np.array([c for _, c in _BLACKBODY_SRGB]))
    t = float(np.clip(temperature_k, temps[0], temps[-1]))
    rgb = np.array([np.interp(t, temps, colors[:, k]) for k in range(3)])
    return rgb / float(rgb @ _LUMINANCE)


def _smoothstep(edge0, edge1, x):
    t = np.clip((x - edge0) / (edge1 - edge0), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


# ---------------------------------------------------------------------------------------------
# The ICT head.
# ---------------------------------------------------------------------------------------------

@dataclasses.dataclass(eq=False)
class IctHead:
    """ICT-FaceKit's full head in mofl's model space (mm), with its identity and expression bases.

    Attributes:
        vertices: [26719, 3] float32 neutral head, mm; vertices 0..9408 are the `ict` face asset's
            template.
        triangles: [T, 3] int32, ICT's polygons fan-triangulated (quad (a, b, c, d) → (a, b, c),
            (a, c, d), as `mofl.facemodel.mesh_io.triangulate`), in file order.
        uvs: [U, 2] float32 ICT texture coordinates (u right, v up); material groups sit in
            different UV tiles (face u ∈ [0, 1), head [1, 2), gums [2, 3), teeth [3, 4), ...;
            sclera, iris and eye blend layers each use [0, 1)).
        uv_triangles: [T, 3] int32 index into `uvs` of each triangle corner.
        material: [T] int8 index into `material_names` (ICT's `usemtl` group).
        part: [T] int8 index into `part_names` (`PART_NAMES`).
        identity_basis: [100, 26719, 3] float32 mm, identity mode offsets already scaled by
            their standard deviations: identity weights are ~N(0, 1).
        expression_basis: [53, 26719, 3] float32 mm, full-activation blendshape offsets
            (weights in [0, 1]).
        expression_names: tuple of 53 str (ARKit names, the `ict` asset's order).
        landmark_indices: [68] int32 iBUG-68 landmark vertices (ICT's `idx_to_landmark_verts`).
        material_names, part_names: tuples of str.
    """
    vertices: np.ndarray
    triangles: np.ndarray
    uvs: np.ndarray
    uv_triangles: np.ndarray
    material: np.ndarray
    part: np.ndarray
    identity_basis: np.ndarray
    expression_basis: np.ndarray
    expression_names: Tuple[str, ...]
    landmark_indices: np.ndarray
    material_names: Tuple[str, ...] = MATERIAL_NAMES
    part_names: Tuple[str, ...] = PART_NAMES
    _cache: dict = dataclasses.field(default_factory=dict, repr=False)

    @property
    def num_vertices(self):
        return int(self.vertices.shape[0])

    def part_mask(self, name):
        """[T] bool: the triangles of part `name` (one of `part_names`)."""
        if name not in self.part_names:
            raise ValueError(f'part name {name!r} is not one of {self.part_names}')
        return self.part == self.part_names.index(name)

    def shape(self, identity_weights=None, expression_weights=None):
        """The head with identity and expression weights applied.

        Args:
            identity_weights: optional [k ≤ 100] weights of the first k identity modes (~N(0, 1)).
            expression_weights: optional [k ≤ 53] blendshape weights (in `expression_names`
                order, usually in [0, 1]).

        Returns:
            [26719, 3] float32 mm, model space.
        """
        out = self.vertices.astype(np.float64)
        for name, weights, basis in (('identity_weights', identity_weights, self.identity_basis),
                                     ('expression_weights', expression_weights,
                                      self.expression_basis)):
            if weights is None:
                continue
            weights = np.asarray(weights, np.float64)
            if weights.ndim != 1 or weights.shape[0] > basis.shape[0]:
                raise ValueError(f'{name} must have shape [k ≤ {basis.shape[0]}], got '
                                 f'{weights.shape}')
            out += np.tensordot(weights, basis[:weights.shape[0]], axes=1)
        return out.astype(np.float32)


def _find_obj(ict_dir, name):
    for candidate in (f'{name}.obj', f'{name}.obj.gz'):
        path = os.path.join(ict_dir, candidate)
        if os.path.exists(path):
            return path
    raise FileNotFoundError(f'{ict_dir}: missing {name}.obj (or .obj.gz); is this ICT-FaceKit\'s '
                            'FaceXModel folder?')


def _read_head_obj(path):
    """Parses positions, texture coordinates, polygons (with UV corners) and material groups.

    Returns:
        (vertices [V, 3] float64 cm, uvs [U, 2] float64, polygons: list of int tuples,
        uv_polygons: list of int tuples, material_of_polygon: list of str), indices 0-based.
    """
    opener = gzip.open if path.endswith('.gz') else open
    vertices, uvs, polygons, uv_polygons, materials = [], [], [], [], []
    material = None
    try:
        with opener(path, 'rb') as f:
            for raw in f:
                if raw.startswith(b'v '):
                    vertices.append(raw.split()[1:4])
                elif raw.startswith(b'vt '):
                    uvs.append(raw.split()[1:3])
                elif raw.startswith(b'usemtl'):
                    material = raw.split()[1].decode('ascii')
                elif raw.startswith(b'f '):
                    corners = [tok.split(b'/') for tok in raw.split()[1:]]
                    if any(len(c) < 2 or not c[1] for c in corners):
                        raise ValueError(f'a face without texture coordinates: {raw!r}')
                    polygons.append(tuple(int(c[0]) - 1 for c in corners))
                    uv_polygons.append(tuple(int(c[1]) - 1 for c in corners))
                    materials.append(material)
    except (OSError, EOFError, ValueError) as e:
        raise mesh_io.MeshFormatError(f'{path}: unreadable OBJ ({e})') from e
    return (np.asarray(vertices, np.float64), np.asarray(uvs, np.float64), polygons, uv_polygons,
            materials)


def _build_head(ict_dir):
    """Parses the ICT head, its identity modes and expressions (slow: ~155 OBJ files)."""
    with open(os.path.join(ict_dir, 'vertex_indices.json')) as f:
        indices = json.load(f)
    names = tuple(indices['expressions'])
    if len(names) != ICT_NUM_EXPRESSIONS:
        raise mesh_io.MeshFormatError(f'{ict_dir}/vertex_indices.json: {len(names)} expressions, '
                                      f'expected {ICT_NUM_EXPRESSIONS}')
    landmarks = np.asarray(indices['idx_to_landmark_verts'], np.int32)
    neutral_path = _find_obj(ict_dir, 'generic_neutral_mesh')
    neutral, uvs, polygons, uv_polygons, materials = _read_head_obj(neutral_path)
    if neutral.shape[0] != ICT_NUM_VERTICES:
        raise mesh_io.MeshFormatError(f'{neutral_path}: {neutral.shape[0]} vertices, expected '
                                      f'{ICT_NUM_VERTICES}')
    unknown = sorted(set(materials) - set(MATERIAL_NAMES), key=str)
    if unknown:
        raise mesh_io.MeshFormatError(f'{neutral_path}: unknown material groups {unknown}')
    triangles = mesh_io.triangulate(polygons)
    uv_triangles = mesh_io.triangulate(uv_polygons)
    corners = np.array([len(p) - 2 for p in polygons])
    material = np.repeat([MATERIAL_NAMES.index(m) for m in materials], corners).astype(np.int8)
    part = np.array([PART_NAMES.index(MATERIAL_PART[m]) for m in MATERIAL_NAMES],
                    np.int8)[material]

    def offsets(file_names):
        basis = np.empty((len(file_names), ICT_NUM_VERTICES, 3), np.float32)
        for k, name in enumerate(file_names):
            shape = mesh_io.read_obj_vertices(_find_obj(ict_dir, name), ICT_NUM_VERTICES)
            if shape.shape[0] != ICT_NUM_VERTICES:
                raise mesh_io.MeshFormatError(f'{ict_dir}/{name}: {shape.shape[0]} vertices, '
                                              f'expected {ICT_NUM_VERTICES}')
            basis[k] = (shape - neutral) * CM_TO_MM
        return basis

    return IctHead(
        vertices=(neutral * CM_TO_MM).astype(np.float32),
        triangles=triangles,
        uvs=uvs.astype(np.float32),
        uv_triangles=uv_triangles,
        material=material,
        part=part,
        identity_basis=offsets([f'identity{k:03d}' for k in range(ICT_NUM_IDENTITIES)]),
        expression_basis=offsets(names),
        expression_names=names,
        landmark_indices=landmarks)


_ARRAY_FIELDS = ('vertices', 'triangles', 'uvs', 'uv_triangles', 'material', 'part',
                 'identity_basis', 'expression_basis', 'landmark_indices')


def _head_cache_path(ict_dir):
    from mofl.facemodel import default_assets  # pylint: disable=import-outside-toplevel
    key = hashlib.sha1(os.path.realpath(ict_dir).encode('utf-8')).hexdigest()[:10]
    return os.path.join(default_assets.cache_dir(), 'ict_head',
                        f'ict-head-v{HEAD_CACHE_VERSION}-{key}.npz')


def _load_cached_head(path):
    """The cached head, or None when the file is missing, stale or unreadable."""
    if not os.path.exists(path):
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            if int(data['cache_version']) != HEAD_CACHE_VERSION:
                return None
            fields = {k: data[k] for k in _ARRAY_FIELDS}
            fields['expression_names'] = tuple(str(s) for s in data['expression_names'])
            if tuple(str(s) for s in data['material_names']) != MATERIAL_NAMES or \
                    tuple(str(s) for s in data['part_names']) != PART_NAMES:
                return None
    except (OSError, KeyError, ValueError):
        return None
    head = IctHead(**fields)
    if head.vertices.shape != (ICT_NUM_VERTICES, 3) or \
            head.identity_basis.shape != (ICT_NUM_IDENTITIES, ICT_NUM_VERTICES, 3) or \
            head.expression_basis.shape != (ICT_NUM_EXPRESSIONS, ICT_NUM_VERTICES, 3):
        return None
    return head


@functools.lru_cache(maxsize=2)
def _load_head_cached(real_dir):
    path = _head_cache_path(real_dir)
    head = _load_cached_head(path)
    if head is None:
        head = _build_head(real_dir)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = f'{path}.tmp{os.getpid()}.npz'
        np.savez(tmp, cache_version=HEAD_CACHE_VERSION,
                 expression_names=np.asarray(head.expression_names),
                 material_names=np.asarray(MATERIAL_NAMES), part_names=np.asarray(PART_NAMES),
                 **{k: getattr(head, k) for k in _ARRAY_FIELDS})
        os.replace(tmp, path)
    return head


def load_ict_head(ict_dir=None):
    """Loads ICT-FaceKit's full head (parsed once, then cached as .npz and in memory).

    Args:
        ict_dir: ICT-FaceKit's `FaceXModel` folder (`.obj` or `.obj.gz` files and
            `vertex_indices.json`); default `mofl.facemodel.assets.default_ict_dir()`.

    Returns:
        IctHead (shared between calls with the same folder: do not modify its arrays).

    Raises:
        FileNotFoundError: no folder given and none found, or a file missing.
    """
    if ict_dir is None:
        from mofl.facemodel import assets  # pylint: disable=import-outside-toplevel
        ict_dir = assets.default_ict_dir()
        if ict_dir is None:
            raise FileNotFoundError('ICT-FaceKit data not found: pass ict_dir or set '
                                    '$MOFL_ICT_DIR')
    if not os.path.isdir(ict_dir):
        raise FileNotFoundError(f'ict_dir {ict_dir}: no such folder')
    return _load_head_cached(os.path.realpath(ict_dir))


# ---------------------------------------------------------------------------------------------
# Render geometry (per head, cached): vertices split at UV seams, one mesh per render group.
# ---------------------------------------------------------------------------------------------

@dataclasses.dataclass
class _MeshGroup:
    """One rendered mesh: `source` [N] head vertex of each render vertex, `texcoords` [N, 2]
    Mitsuba texture coordinates (row = v · height of the group's texture), `faces` [F, 3]."""
    source: np.ndarray
    texcoords: np.ndarray
    faces: np.ndarray


def _cornea_triangles(head):
    """[T] bool: the sclera layer's cornea triangles, left out so that the iris shows.

    The sclera layer's front (UV radius < `CORNEA_UV_RADIUS` around (0.5, 0.5) in both eyes)
    bulges over the iris disc; without a refracting cornea it would hide the iris.
    """
    sclera = np.isin(head.material, [MATERIAL_NAMES.index('M_ScleraLeft'),
                                     MATERIAL_NAMES.index('M_ScleraRight')])
    radius = np.linalg.norm(head.uvs[head.uv_triangles] - 0.5, axis=2)     # [T, 3]
    return sclera & (radius < CORNEA_UV_RADIUS).all(axis=1)


def _render_groups(head):
    """Dict name → _MeshGroup for `RENDER_GROUPS` (cached on the head)."""
    if 'render_groups' in head._cache:
        return head._cache['render_groups']
    cornea = _cornea_triangles(head)
    groups = collections.OrderedDict()
    for name, materials in RENDER_GROUPS.items():
        ids = [MATERIAL_NAMES.index(m) for m in materials]
        keep = np.isin(head.material, ids) & ~cornea
        tri_v = head.triangles[keep].reshape(-1)
        tri_t = head.uv_triangles[keep].reshape(-1)
        pairs, corner_index = np.unique(np.stack([tri_v, tri_t], 1), axis=0, return_inverse=True)
        uv = head.uvs[pairs[:, 1]].astype(np.float64)
        if name == 'skin':      # tiles 0 (face) and 1 (head) side by side in one atlas
            u = uv[:, 0] / 2.0
        else:
            u = uv[:, 0] - np.floor(uv[:, 0])
        groups[name] = _MeshGroup(
            source=pairs[:, 0].astype(np.int64),
            texcoords=np.stack([u, 1.0 - uv[:, 1]], 1).astype(np.float32),
            faces=corner_index.reshape(-1, 3).astype(np.uint32))
    head._cache['render_groups'] = groups
    return groups


def _skin_position_map(head):
    """The neutral head's surface point under every skin-atlas texel (cached on the head).

    Returns:
        (positions [S, 2S, 3] float64 mm, tile [S, 2S] int: 0 face, 1 head and neck).
        Texels outside the UV islands take the nearest island texel's point.
    """
    if 'position_map' in head._cache:
        return head._cache['position_map']
    from scipy import interpolate  # pylint: disable=import-outside-toplevel
    size = SKIN_TEXTURE_SIZE
    skin = np.isin(head.material, [MATERIAL_NAMES.index('M_Face'),
                                   MATERIAL_NAMES.index('M_BackHead')])
    tri_v = head.triangles[skin].reshape(-1)
    tri_t = head.uv_triangles[skin].reshape(-1)
    pairs = np.unique(np.stack([tri_t, tri_v], 1), axis=0)
    uv_index, first = np.unique(pairs[:, 0], return_index=True)
    uv = head.uvs[uv_index].astype(np.float64)
    points = head.vertices[pairs[first, 1]].astype(np.float64)
    rows, cols = np.mgrid[:size, :2 * size]
    u_atlas = 2.0 * (cols + 0.5) / (2 * size)        # ICT u in [0, 2)
    v_ict = 1.0 - (rows + 0.5) / size
    tile = (u_atlas >= 1.0).astype(np.int64)
    positions = np.zeros((size, 2 * size, 3))
    for t in (0, 1):
        in_tile = np.floor(uv[:, 0]) == t
        query = np.stack([u_atlas[tile == t], v_ict[tile == t]], 1)
        linear = interpolate.LinearNDInterpolator(uv[in_tile], points[in_tile])(query)
        missing = np.isnan(linear[:, 0])
        if np.any(missing):
            linear[missing] = interpolate.NearestNDInterpolator(
                uv[in_tile], points[in_tile])(query[missing])
        positions[tile == t] = linear
    head._cache['position_map'] = (positions, tile)
    return positions, tile


# ---------------------------------------------------------------------------------------------
# Appearance.
# ---------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class HeadAppearance:
    """One person's materials (all colours display sRGB in [0, 1]; ranges: module constants).

    Attributes:
        skin_color: skin base albedo, interpolated along `SKIN_TONE_PALETTE` (very light to very
            dark), its brightness jittered by ±`SKIN_TINT_JITTER` and each channel by a quarter
            of that.
        roughness: principled roughness of the skin, `ROUGHNESS_RANGE` [0.3, 0.7].
        specular: principled specular amount of the skin, `SPECULAR_RANGE` [0.25, 0.6].
        texture_seed: seeds the procedural skin and iris detail.
        detail_strength: relative albedo variation of the fine mottling (3D noise, 1–8 mm
            octaves), `DETAIL_STRENGTH_RANGE` [0.04, 0.12].
        blotch_strength: relative redness variation of ~3 cm blotches, [0, 0.12].
        freckle_density: freckles on nose and cheeks, [0, 0.35] for a share
            `FRECKLE_PROBABILITY` of people, else 0 (none).
        lip_tint: how much redder and darker than skin the lips are, [0.3, 0.8].
        cheek_tint: extra redness at the cheeks, [0, 0.25].
        hair_color: brow and lash-line colour (`HAIR_COLORS`, brightness
            ±`HAIR_IRIS_JITTER`), painted no lighter than the mean skin albedo.
        brow_density: opacity of the brows, [0.45, 0.9].
        iris_color: `IRIS_COLORS` (browns, hazel, blue, green, grey), brightness
            ±`HAIR_IRIS_JITTER`.
        pupil_ratio: pupil radius / iris radius, [0.25, 0.45].
        sclera_color, teeth_color, mouth_color: `SCLERA_COLOR`, `TEETH_COLOR`, `MOUTH_COLOR`
            (gums, tongue, mouth socket) with brightness ±`COLOR_JITTER` (per channel: ¼).
    """
    skin_color: Tuple[float, float, float] = (0.81, 0.61, 0.48)
    roughness: float = 0.5
    specular: float = 0.35
    texture_seed: int = 0
    detail_strength: float = 0.08
    blotch_strength: float = 0.05
    freckle_density: float = 0.0
    lip_tint: float = 0.5
    cheek_tint: float = 0.1
    hair_color: Tuple[float, float, float] = (0.14, 0.10, 0.07)
    brow_density: float = 0.7
    iris_color: Tuple[float, float, float] = (0.24, 0.14, 0.07)
    pupil_ratio: float = 0.35
    sclera_color: Tuple[float, float, float] = SCLERA_COLOR
    teeth_color: Tuple[float, float, float] = TEETH_COLOR
    mouth_color: Tuple[float, float, float] = MOUTH_COLOR


def _jittered(rng, color, amount):
    """A colour scaled by 1 ± amount, each channel further by 1 ± amount/4, clipped to [0, 1]."""
    scale = rng.uniform(1.0 - amount, 1.0 + amount) * \
        rng.uniform(1.0 - amount / 4.0, 1.0 + amount / 4.0, 3)
    return tuple(float(c) for c in np.clip(np.asarray(color) * scale, 0.0, 1.0))


def sample_appearance(rng: np.random.Generator) -> HeadAppearance:
    """Draws one person's materials (ranges in `HeadAppearance` and the module constants).

    Args:
        rng: numpy Generator.

    Returns:
        HeadAppearance.
    """
    position = rng.uniform(0.0, len(SKIN_TONE_PALETTE) - 1)
    low = min(int(position), len(SKIN_TONE_PALETTE) - 2)
    tone = SKIN_TONE_PALETTE[low] + (position - low) * (SKIN_TONE_PALETTE[low + 1] -
                                                        SKIN_TONE_PALETTE[low])
    hair = HAIR_COLORS[rng.integers(len(HAIR_COLORS))]
    iris = IRIS_COLORS[rng.integers(len(IRIS_COLORS))]
    return HeadAppearance(
        skin_color=_jittered(rng, tone, SKIN_TINT_JITTER),
        roughness=float(rng.uniform(*ROUGHNESS_RANGE)),
        specular=float(rng.uniform(*SPECULAR_RANGE)),
        texture_seed=int(rng.integers(2 ** 31)),
        detail_strength=float(rng.uniform(*DETAIL_STRENGTH_RANGE)),
        blotch_strength=float(rng.uniform(*BLOTCH_STRENGTH_RANGE)),
        freckle_density=float(rng.uniform(*FRECKLE_DENSITY_RANGE))
        if rng.uniform() < FRECKLE_PROBABILITY else 0.0,
        lip_tint=float(rng.uniform(*LIP_TINT_RANGE)),
        cheek_tint=float(rng.uniform(*CHEEK_TINT_RANGE)),
        hair_color=_jittered(rng, hair, HAIR_IRIS_JITTER),
        brow_density=float(rng.uniform(*BROW_DENSITY_RANGE)),
        iris_color=_jittered(rng, iris, HAIR_IRIS_JITTER),
        pupil_ratio=float(rng.uniform(*PUPIL_RATIO_RANGE)),
        sclera_color=_jittered(rng, SCLERA_COLOR, COLOR_JITTER),
        teeth_color=_jittered(rng, TEETH_COLOR, COLOR_JITTER),
        mouth_color=_jittered(rng, MOUTH_COLOR, COLOR_JITTER))


def _value_noise(points, cell, seed):
    """Smooth 3D value noise in [−1, 1] (random values on a lattice of spacing `cell`, trilinear
    interpolation with smoothstep weights).

    Args:
        points: [N, 3] positions (mm).
        cell: lattice spacing (mm).
        seed: int.

    Returns:
        [N] float64.
    """
    table = np.random.default_rng(seed).uniform(-1.0, 1.0, 1 << 16)
    scaled = np.asarray(points, np.float64) / cell
    base = np.floor(scaled)
    frac = scaled - base
    weight = frac * frac * (3.0 - 2.0 * frac)
    base = base.astype(np.int64)
    # Per-axis hash terms of the two lattice planes around each point, XOR-combined below.
    terms = [(base[:, k] * prime, (base[:, k] + 1) * prime)
             for k, prime in enumerate((73856093, 19349663, 83492791))]
    weights = [(1.0 - weight[:, k], weight[:, k]) for k in range(3)]
    out = np.zeros(len(scaled))
    for i in (0, 1):
        for j in (0, 1):
            xy_key = terms[0][i] ^ terms[1][j]
            xy_weight = weights[0][i] * weights[1][j]
            for k in (0, 1):
                out += xy_weight * weights[2][k] * table[(xy_key ^ terms[2][k]) & 0xFFFF]
    return out


def _near(points, anchors, margin):
    """[N] bool: points inside the anchors' bounding box grown by `margin` (mm)."""
    low, high = anchors.min(0) - margin, anchors.max(0) + margin
    return np.all((points >= low) & (points <= high), axis=1)


def _fbm(points, cells, amplitudes, seed):
    """Sum of value-noise octaves, normalised to unit peak amplitude: [N] in about [−1, 1]."""
    total = sum(a * _value_noise(points, c, seed + 1000 * k)
                for k, (c, a) in enumerate(zip(cells, amplitudes)))
    return total / float(sum(amplitudes))


def _distance_to_polyline(points, polyline, closed=False):
    """[N] distance (mm) from [N, 3] points to the segments of a [P, 3] polyline."""
    starts = polyline if closed else polyline[:-1]
    ends = np.roll(polyline, -1, axis=0) if closed else polyline[1:]
    best = np.full(len(points), np.inf)
    for a, b in zip(starts, ends):
        ab = b - a
        t = np.clip((points - a) @ ab / max(float(ab @ ab), 1e-12), 0.0, 1.0)
        best = np.minimum(best, np.linalg.norm(points - (a + t[:, None] * ab), axis=1))
    return best


def _signed_distance_xy(points, polygon):
    """[N] signed distance (mm, > 0 inside) of points to a closed polygon, in the x-y plane."""
    from matplotlib import path as mpl_path  # pylint: disable=import-outside-toplevel
    flat = np.concatenate([points[:, :2], np.zeros((len(points), 1))], 1)
    ring = np.concatenate([polygon[:, :2], np.zeros((len(polygon), 1))], 1)
    distance = _distance_to_polyline(flat, ring, closed=True)
    inside = mpl_path.Path(polygon[:, :2]).contains_points(points[:, :2])
    return np.where(inside, distance, -distance)


def _skin_texture(head, appearance):
    """Linear skin albedo in the skin atlas (module docstring), [S, 2S, 3] float32 in [0, 1]."""
    positions, tile = _skin_position_map(head)
    shape = positions.shape[:2]
    p = positions.reshape(-1, 3)
    face = tile.reshape(-1) == 0
    lm = head.vertices[head.landmark_indices].astype(np.float64)
    seed = appearance.texture_seed
    albedo = np.tile(srgb_to_linear(appearance.skin_color), (len(p), 1))

    # Mottling (multiplicative luminance) and redness blotches.
    detail = _fbm(p, (8.0, 4.0, 2.0, 1.0), (0.45, 0.3, 0.2, 0.15), seed)
    albedo *= (1.0 + 2.0 * appearance.detail_strength * detail)[:, None]
    blotch = _fbm(p, (30.0, 14.0), (0.7, 0.3), seed + 1)
    albedo *= 1.0 + 2.0 * appearance.blotch_strength * blotch[:, None] * \
        np.array([0.6, -0.4, -0.4])

    # Cheeks: redder around a point between the lower eyelid, the nose wing and the jaw.
    for eyelid, nose, jaw in ((41, 31, 2), (46, 35, 14)):
        centre = 0.4 * lm[eyelid] + 0.3 * lm[nose] + 0.3 * lm[jaw]
        weight = np.exp(-np.sum((p - centre) ** 2, axis=1) / (2.0 * 18.0 ** 2)) * face
        albedo *= 1.0 + appearance.cheek_tint * weight[:, None] * np.array([0.5, -0.35, -0.3])

    # Freckles: sparse spots of fine noise, densest on the nose and the cheeks.
    if appearance.freckle_density > 0.0:
        nose_bridge = lm[29]
        region = np.exp(-np.sum((p - nose_bridge) ** 2, axis=1) / (2.0 * 40.0 ** 2)) * face
        region *= 0.5 + 0.5 * _value_noise(p, 25.0, seed + 2)
        spots = _value_noise(p, 1.4, seed + 3)
        threshold = 0.8 - appearance.freckle_density
        weight = _smoothstep(threshold, threshold + 0.15, spots) * np.clip(2.0 * region, 0, 1)
        albedo *= 1.0 - weight[:, None] * np.array([0.3, 0.42, 0.48])

    hair = np.minimum(srgb_to_linear(appearance.hair_color), albedo.mean(0))  # brows ≤ skin

    def paint(where, weight, color):
        albedo[where] = albedo[where] * (1.0 - weight[:, None]) + color * weight[:, None]

    # Brows: a band below the iBUG brow points (they trace its upper edge), hair-like streaks.
    for brow in (lm[17:22], lm[22:27]):
        line = brow - np.array([0.0, 4.0, 0.0])
        near = face & _near(p, line, 8.0)
        q = p[near]
        along = np.clip((q[:, 0] - line[:, 0].min()) / (np.ptp(line[:, 0]) + 1e-9), 0.0, 1.0)
        width = 4.0 + 2.0 * np.sin(np.pi * along)          # thinner at the ends
        weight = 1.0 - _smoothstep(0.5 * width, width, _distance_to_polyline(q, line))
        streaks = 0.5 + 0.5 * _value_noise(q * np.array([3.0, 1.0, 3.0]), 1.5, seed + 4)
        paint(near, appearance.brow_density * weight * (0.6 + 0.4 * streaks), hair)

    # Lash lines: darker lid margins along the eye contours.
    for eye in (lm[36:42], lm[42:48]):
        near = face & _near(p, eye, 3.0)
        weight = 1.0 - _smoothstep(0.6, 1.8, _distance_to_polyline(p[near], eye, closed=True))
        paint(near, 0.55 * weight, hair)

    # Lips: inside the outer-lip polygon seen from the front, soft-edged, redder and darker.
    lips = lm[48:60]
    near = face & (p[:, 2] > lips[:, 2].min() - 25.0) & \
        (np.abs(p[:, 1] - lips[:, 1].mean()) < 25.0) & (np.abs(p[:, 0]) < 40.0)
    weight = np.zeros(len(p))
    weight[near] = _smoothstep(-1.2, 1.2, _signed_distance_xy(p[near], lips))
    lip_factor = 1.0 + appearance.lip_tint * np.array([-0.1, -0.5, -0.45])
    albedo *= 1.0 + weight[:, None] * (lip_factor - 1.0)
    return np.clip(albedo, 0.0, 1.0).reshape(shape + (3,)).astype(np.float32)


def _iris_texture(appearance):
    """Linear albedo of the iris layer in its UV tile, [S, S, 3] float32: pupil, radial fibres,
    a darker limbal ring where the sclera starts to cover the iris, a lighter collarette."""
    size = IRIS_TEXTURE_SIZE
    rows, cols = np.mgrid[:size, :size]
    u = (cols + 0.5) / size - 0.5
    v = 0.5 - (rows + 0.5) / size
    r = np.hypot(u, v) / IRIS_VISIBLE_UV_RADIUS     # 1 at the limbus
    theta = np.arctan2(v, u)
    fibres = _value_noise(np.stack([40.0 * np.cos(theta), 40.0 * np.sin(theta), 3.0 * r],
                                   -1).reshape(-1, 3), 1.0, appearance.texture_seed + 5)
    fibres = fibres.reshape(r.shape)
    iris = srgb_to_linear(appearance.iris_color)
    pupil = appearance.pupil_ratio
    shade = (1.0 + 0.35 * fibres) * (1.0 - 0.65 * _smoothstep(0.75, 1.0, r))
    shade *= 1.0 + 0.35 * (1.0 - _smoothstep(pupil, pupil + 0.2, r))
    color = iris * shade[..., None]
    pupil_weight = 1.0 - _smoothstep(pupil - 0.03, pupil + 0.03, r)
    color = color * (1.0 - pupil_weight[..., None]) + 0.004 * pupil_weight[..., None]
    return np.clip(color, 0.0, 1.0).astype(np.float32)


def _textures(head, appearance):
    """(skin atlas, iris texture) of an appearance, cached per head (`TEXTURE_CACHE_SIZE`)."""
    cache = head._cache.setdefault('textures', collections.OrderedDict())
    if appearance in cache:
        cache.move_to_end(appearance)
        return cache[appearance]
    textures = (_skin_texture(head, appearance), _iris_texture(appearance))
    cache[appearance] = textures
    while len(cache) > TEXTURE_CACHE_SIZE:
        cache.popitem(last=False)
    return textures


# ---------------------------------------------------------------------------------------------
# Lighting.
# ---------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Lighting:
    """An environment map plus one key light, all in camera space (= world space).

    Attributes:
        up: [3] unit 'up' of the environment (the camera's y, tilted by ≤ `UP_TILT_DEG`).
        sky_color, horizon_color, ground_color: linear RGB radiance of the environment straight
            up, at the horizon and straight down (a sky or a room: ceiling, walls, floor).
        window_direction: [3] unit direction of a brighter region (window, open sky).
        window_color: linear RGB peak radiance added there.
        window_sharpness: κ of the lobe window_color · exp(κ (cos θ − 1)).
        key_direction: [3] unit direction from the head towards the key light.
        key_irradiance: linear RGB irradiance the key light gives a surface facing it.
        key_radius_deg: 0 for a sun (Mitsuba `directional`, hard shadows), else the angular
            radius of a spherical lamp (area light, soft shadows).
        key_temperature_k, env_temperature_k: the colour temperatures drawn (for reference).
    """
    up: Tuple[float, float, float] = (0.0, 1.0, 0.0)
    sky_color: Tuple[float, float, float] = (0.3, 0.3, 0.3)
    horizon_color: Tuple[float, float, float] = (0.3, 0.3, 0.3)
    ground_color: Tuple[float, float, float] = (0.15, 0.15, 0.15)
    window_direction: Tuple[float, float, float] = (0.0, 0.5, 0.866)
    window_color: Tuple[float, float, float] = (0.0, 0.0, 0.0)
    window_sharpness: float = 8.0
    key_direction: Tuple[float, float, float] = (0.0, 0.0, 1.0)
    key_irradiance: Tuple[float, float, float] = (2.5, 2.5, 2.5)
    key_radius_deg: float = 0.0
    key_temperature_k: float = 6500.0
    env_temperature_k: float = 6500.0

    def environment_map(self, size=ENV_MAP_SIZE):
        """The environment as a lat-long image in Mitsuba's `envmap` layout.

        Pixel (row r, column c) of an (h, w) map looks along θ = π (r + 0.5)/h from +y and
        φ = 2π (c + 0.5)/w: d = (sin θ sin φ, cos θ, sin θ cos φ) (so −z, the view direction,
        is the centre column).

        Args:
            size: (h, w).

        Returns:
            [h, w, 3] float32 linear radiance.
        """
        h, w = size
        theta = np.pi * (np.arange(h) + 0.5) / h
        phi = 2.0 * np.pi * (np.arange(w) + 0.5) / w
        d = np.stack([np.sin(theta)[:, None] * np.sin(phi)[None],
                      np.cos(theta)[:, None] * np.ones(w)[None],
                      np.sin(theta)[:, None] * np.cos(phi)[None]], -1)
        elevation = d @ np.asarray(self.up)
        sky = np.sqrt(np.clip(elevation, 0.0, 1.0))[..., None]
        ground = np.sqrt(np.clip(-elevation, 0.0, 1.0))[..., None]
        horizon = np.asarray(self.horizon_color)
        radiance = horizon + sky * (np.asarray(self.sky_color) - horizon) + \
            ground * (np.asarray(self.ground_color) - horizon)
        lobe = np.exp(self.window_sharpness * (d @ np.asarray(self.window_direction) - 1.0))
        radiance = radiance + lobe[..., None] * np.asarray(self.window_color)
        return radiance.astype(np.float32)


def _unit(v):
    v = np.asarray(v, np.float64)
    return v / np.linalg.norm(v)


def _direction(azimuth_deg, elevation_deg):
    """Camera-space unit vector; azimuth 0 = towards the camera (+z), 90 = +x; elevation up."""
    a, e = math.radians(azimuth_deg), math.radians(elevation_deg)
    return np.array([math.sin(a) * math.cos(e), math.sin(e), math.cos(a) * math.cos(e)])


def sample_lighting(rng: np.random.Generator) -> Lighting:
    """Draws an environment (sky or room gradient with a window) and a key light.

    Key light: azimuth uniform in `KEY_AZIMUTH_RANGE_DEG` (0 = from the camera, ±90 = from the
    side, beyond = from behind), elevation in `KEY_ELEVATION_RANGE_DEG`, black-body colour of
    `KEY_TEMPERATURE_RANGE_K`, irradiance `KEY_IRRADIANCE_RANGE`; a sun (hard shadows) or with
    probability `KEY_LAMP_PROBABILITY` a spherical lamp of angular radius `KEY_LAMP_RADIUS_DEG`.
    Environment: mean radiance `ENV_RADIANCE_RANGE` with a colour of `ENV_TEMPERATURE_RANGE_K`;
    horizon and ground darker than the sky by random factors; 'up' tilted by ≤ `UP_TILT_DEG`; a
    window lobe (`WINDOW_AZIMUTH_RANGE_DEG`, `WINDOW_ELEVATION_RANGE_DEG`, sharpness
    `WINDOW_SHARPNESS_RANGE`) with a peak `WINDOW_GAIN_RANGE` times the mean level.

    Args:
        rng: numpy Generator.

    Returns:
        Lighting.
    """
    tilt, around = math.radians(rng.uniform(0.0, UP_TILT_DEG)), rng.uniform(0.0, 2.0 * math.pi)
    up = np.array([math.sin(tilt) * math.cos(around), math.cos(tilt),
                   math.sin(tilt) * math.sin(around)])
    key_t = rng.uniform(*KEY_TEMPERATURE_RANGE_K)
    env_t = rng.uniform(*ENV_TEMPERATURE_RANGE_K)
    env_rgb = blackbody_color(env_t)
    level = rng.uniform(*ENV_RADIANCE_RANGE)
    sky = level * rng.uniform(0.8, 1.6) * env_rgb
    horizon = level * rng.uniform(0.6, 1.0) * env_rgb * _jittered_array(rng, 0.1)
    ground = level * rng.uniform(0.2, 0.7) * env_rgb * _jittered_array(rng, 0.2)
    window = _direction(rng.uniform(*WINDOW_AZIMUTH_RANGE_DEG),
                        rng.uniform(*WINDOW_ELEVATION_RANGE_DEG))
    window_rgb = level * rng.uniform(*WINDOW_GAIN_RANGE) * blackbody_color(
        rng.uniform(*ENV_TEMPERATURE_RANGE_K))
    key = _direction(rng.uniform(*KEY_AZIMUTH_RANGE_DEG), rng.uniform(*KEY_ELEVATION_RANGE_DEG))
    lamp = rng.uniform() < KEY_LAMP_PROBABILITY
    return Lighting(
        up=_tuple(up), sky_color=_tuple(sky), horizon_color=_tuple(horizon),
        ground_color=_tuple(ground), window_direction=_tuple(window),
        window_color=_tuple(window_rgb),
        window_sharpness=float(rng.uniform(*WINDOW_SHARPNESS_RANGE)),
        key_direction=_tuple(key),
        key_irradiance=_tuple(rng.uniform(*KEY_IRRADIANCE_RANGE) * blackbody_color(key_t)),
        key_radius_deg=float(rng.uniform(*KEY_LAMP_RADIUS_DEG)) if lamp else 0.0,
        key_temperature_k=float(key_t), env_temperature_k=float(env_t))


def _jittered_array(rng, amount):
    return 1.0 + rng.uniform(-amount, amount, 3)


def _tuple(v):
    return tuple(float(x) for x in np.asarray(v).reshape(-1))


# ---------------------------------------------------------------------------------------------
# Mitsuba scene and rendering.
# ---------------------------------------------------------------------------------------------

def mitsuba_available():
    """True when the `mitsuba` package can be imported (checked without importing it)."""
    import importlib.util  # pylint: disable=import-outside-toplevel
    return importlib.util.find_spec('mitsuba') is not None


def _mitsuba():
    """The mitsuba module with `MITSUBA_VARIANT` set (imported on first use)."""
    global _MITSUBA  # pylint: disable=global-statement
    if _MITSUBA is None:
        try:
            import mitsuba as mi  # pylint: disable=import-outside-toplevel
        except ImportError as e:
            raise ImportError('mofl.data.mitsuba_faces needs Mitsuba 3: pip install '
                              'mitsuba==3.9.1 (pinned in requirements.txt)') from e
        mi.set_variant(MITSUBA_VARIANT)
        _MITSUBA = mi
    elif _MITSUBA.variant() != MITSUBA_VARIANT:
        _MITSUBA.set_variant(MITSUBA_VARIANT)
    return _MITSUBA


def _camera_values(camera):
    """(H, W, f, c_x, c_y) from a mofl Camera with Python-float intrinsics; ValueError else."""
    try:
        height, width = (int(s) for s in camera.image_size)
        fx, fy = float(camera.focal_x), float(camera.focal_y)
        cx, cy = float(camera.principal_x), float(camera.principal_y)
    except (AttributeError, TypeError, ValueError) as e:
        raise ValueError(f'camera must be a mofl.render.camera.Camera with scalar intrinsics and '
                         f'image_size (H, W), got {camera!r}') from e
    if height <= 0 or width <= 0:
        raise ValueError(f'camera.image_size must be positive, got {camera.image_size}')
    if not (fx > 0 and fy > 0 and math.isfinite(fx) and math.isfinite(fy)):
        raise ValueError(f'camera focal lengths must be finite and > 0, got {fx}, {fy}')
    if abs(fx - fy) > 1e-6 * max(fx, fy):
        raise ValueError(f'camera: Mitsuba renders square pixels only (focal_x == focal_y), '
                         f'got focal_x={fx}, focal_y={fy}')
    if not (math.isfinite(cx) and math.isfinite(cy)):
        raise ValueError(f'camera principal point must be finite, got ({cx}, {cy})')
    return height, width, fx, cx, cy


def mitsuba_sensor(camera, spp=DEFAULT_SPP):
    """Mitsuba perspective-sensor dict that reproduces a mofl Camera (module docstring).

    Args:
        camera: mofl.render.camera.Camera with Python-float intrinsics, f_x = f_y.
        spp: samples per pixel.

    Returns:
        dict for `mitsuba.load_dict` (key 'sensor' of a scene): an hdrfilm of (H, W) with RGBA
        output and a box pixel filter, an independent sampler.
    """
    mi = _mitsuba()
    height, width, focal, cx, cy = _camera_values(camera)
    return {
        'type': 'perspective',
        'fov_axis': 'x',
        'fov': math.degrees(2.0 * math.atan(width / (2.0 * focal))),
        'principal_point_offset_x': (width / 2.0 - cx) / width,
        'principal_point_offset_y': (height / 2.0 - cy) / height,
        'near_clip': NEAR_CLIP_MM,
        'far_clip': FAR_CLIP_MM,
        'to_world': mi.ScalarTransform4f.look_at(origin=[0.0, 0.0, 0.0], target=[0.0, 0.0, -1.0],
                                                 up=[0.0, 1.0, 0.0]),
        'sampler': {'type': 'independent', 'sample_count': int(spp)},
        'film': {'type': 'hdrfilm', 'width': width, 'height': height, 'pixel_format': 'rgba',
                 'component_format': 'float32', 'rfilter': {'type': 'box'}},
    }


def _vertex_normals(vertices, triangles):
    """[V, 3] unit area-weighted vertex normals (outward for ICT's counter-clockwise winding)."""
    corners = vertices[triangles]
    face = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
    normals = np.zeros_like(vertices)
    for k in range(3):
        np.add.at(normals, triangles[:, k], face)
    length = np.linalg.norm(normals, axis=1, keepdims=True)
    return normals / np.maximum(length, 1e-12)


def _principled(mi, base_color, roughness, specular):
    """A two-sided principled BSDF; base_color is an RGB triple (linear) or a texture dict."""
    if not isinstance(base_color, dict):
        base_color = {'type': 'rgb', 'value': [float(c) for c in base_color]}
    return mi.load_dict({'type': 'twosided', 'bsdf': {
        'type': 'principled', 'base_color': base_color, 'roughness': float(roughness),
        'specular': float(specular), 'metallic': 0.0}})


def _bitmap_texture(mi, image):
    return {'type': 'bitmap', 'bitmap': mi.Bitmap(np.ascontiguousarray(image, np.float32)),
            'raw': True, 'filter_type': 'bilinear', 'wrap_mode': 'clamp'}


def _mesh(mi, name, positions, normals, group, bsdf):
    """A Mitsuba mesh of one render group in camera space."""
    props = mi.Properties()
    props['bsdf'] = bsdf
    mesh = mi.Mesh(name, vertex_count=len(group.source), face_count=len(group.faces),
                   has_vertex_normals=True, has_vertex_texcoords=True, props=props)
    params = mi.traverse(mesh)
    for key, values in (('vertex_positions', positions[group.source]),
                        ('vertex_normals', normals[group.source]),
                        ('vertex_texcoords', group.texcoords)):
        params[key] = type(params[key])(np.ascontiguousarray(values, np.float32).reshape(-1))
    params['faces'] = type(params['faces'])(np.ascontiguousarray(group.faces).reshape(-1))
    params.update()
    return mesh


def _materials(mi, head, appearance):
    """Dict render-group name → BSDF."""
    skin_texture, iris_texture = _textures(head, appearance)
    lin = srgb_to_linear
    return {
        'skin': _principled(mi, _bitmap_texture(mi, skin_texture), appearance.roughness,
                            appearance.specular),
        'mouth_interior': _principled(mi, lin(appearance.mouth_color), MOUTH_ROUGHNESS, 0.5),
        'teeth': _principled(mi, lin(appearance.teeth_color), TEETH_ROUGHNESS, 0.5),
        'sclera': _principled(mi, lin(appearance.sclera_color), SCLERA_ROUGHNESS, 0.5),
        'iris': _principled(mi, _bitmap_texture(mi, iris_texture), IRIS_ROUGHNESS, 0.5),
    }


def _emitters(mi, lighting, head_centre):
    """Dict of the environment and key-light emitters (camera space)."""
    emitters = {'environment': {'type': 'envmap',
                                'bitmap': mi.Bitmap(lighting.environment_map())}}
    direction = _unit(lighting.key_direction)
    irradiance = np.asarray(lighting.key_irradiance, np.float64)
    if lighting.key_radius_deg <= 0.0:
        emitters['key'] = {'type': 'directional', 'direction': _tuple(-direction),
                           'irradiance': {'type': 'rgb', 'value': _tuple(irradiance)}}
    else:
        # A sphere of angular radius α seen head-on gives irradiance L·π·sin²α.
        alpha = math.radians(lighting.key_radius_deg)
        radius = KEY_LIGHT_DISTANCE_MM * math.sin(alpha)
        radiance = irradiance / (math.pi * math.sin(alpha) ** 2)
        emitters['key'] = {
            'type': 'sphere', 'radius': radius,
            'center': _tuple(head_centre + KEY_LIGHT_DISTANCE_MM * direction),
            'emitter': {'type': 'area', 'radiance': {'type': 'rgb', 'value': _tuple(radiance)}}}
    return emitters


def _check_inputs(head, head_vertices, rotation, translation, appearance, lighting, background,
                  spp, image_size):
    vertices = np.asarray(head_vertices, np.float64)
    if vertices.shape != (head.num_vertices, 3):
        raise ValueError(f'head_vertices must have shape [{head.num_vertices}, 3], got '
                         f'{vertices.shape}')
    if not np.all(np.isfinite(vertices)):
        raise ValueError('head_vertices must be finite')
    rotation = np.asarray(rotation, np.float64)
    if rotation.shape != (3, 3):
        raise ValueError(f'rotation must have shape [3, 3], got {rotation.shape}')
    if not np.allclose(rotation @ rotation.T, np.eye(3), atol=1e-3) or \
            np.linalg.det(rotation) < 0:
        raise ValueError('rotation must be a rotation matrix (orthonormal, det +1)')
    translation = np.asarray(translation, np.float64)
    if translation.shape != (3,) or not np.all(np.isfinite(translation)):
        raise ValueError(f'translation must be 3 finite numbers (mm), got shape '
                         f'{translation.shape}')
    if not isinstance(appearance, HeadAppearance):
        raise ValueError(f'appearance must be a HeadAppearance, got {type(appearance).__name__}')
    if not isinstance(lighting, Lighting):
        raise ValueError(f'lighting must be a Lighting, got {type(lighting).__name__}')
    if background is not None:
        background = np.asarray(background)
        if background.shape != tuple(image_size) + (3,) or background.dtype != np.uint8:
            raise ValueError(f'background must be uint8 [{image_size[0]}, {image_size[1]}, 3], '
                             f'got {background.dtype} {background.shape}')
    if int(spp) != spp or spp < 1:
        raise ValueError(f'spp must be a positive integer, got {spp}')
    return vertices, rotation, translation, background


def render(head_vertices, rotation, translation, camera, appearance, lighting, background=None,
           spp=DEFAULT_SPP, seed=0, return_mask=False, head=None):
    """Path-traces one frame of a posed ICT head.

    Args:
        head_vertices: [26719, 3] the head in model space (mm), e.g. `IctHead.shape(...)`.
        rotation: [3, 3] model → camera rotation R.
        translation: [3] mm; camera-space points are R·v + t (camera looks down −z).
        camera: mofl.render.camera.Camera with Python-float intrinsics, f_x = f_y.
        appearance: HeadAppearance.
        lighting: Lighting (camera space).
        background: optional [H, W, 3] uint8 sRGB image shown where the head is not; None: black.
        spp: samples per pixel.
        seed: sampler seed; the same inputs and seed give the same image.
        return_mask: also return the head's coverage.
        head: the IctHead the vertices belong to (default `load_ict_head()`).

    Returns:
        [H, W, 3] uint8 sRGB image; with return_mask, (image, mask [H, W] float32 in [0, 1]).
    """
    head = load_ict_head() if head is None else head
    height, width, _, _, _ = _camera_values(camera)
    vertices, rotation, translation, background = _check_inputs(
        head, head_vertices, rotation, translation, appearance, lighting, background, spp,
        (height, width))
    mi = _mitsuba()
    posed = vertices @ rotation.T + translation
    normals = _vertex_normals(posed, head.triangles)
    bsdfs = _materials(mi, head, appearance)
    scene = {'type': 'scene',
             'integrator': {'type': 'path', 'max_depth': MAX_PATH_DEPTH, 'hide_emitters': True},
             'sensor': mitsuba_sensor(camera, spp)}
    scene.update(_emitters(mi, lighting, translation))
    for name, group in _render_groups(head).items():
        scene[name] = _mesh(mi, name, posed, normals, group, bsdfs[name])
    result = np.array(mi.render(mi.load_dict(scene), seed=int(seed), spp=int(spp)),
                      dtype=np.float64)
    color, alpha = result[..., :3], np.clip(result[..., 3], 0.0, 1.0)
    if background is not None:      # Mitsuba's RGB is premultiplied by coverage
        color = color + (1.0 - alpha[..., None]) * srgb_to_linear(background / 255.0)
    image = np.round(linear_to_srgb(color) * 255.0).astype(np.uint8)
    if return_mask:
        return image, alpha.astype(np.float32)
    return image
