"""ICT-FaceKit's full head (geometry, UV layout, identity and expression bases), loaded and cached.

This module loads the head that `mofl.data.mitsuba_faces` renders: ICT-FaceKit's generic neutral
mesh (26,719 vertices, 12 material groups), its 100 identity modes and its 53 ARKit-named
expression shapes, in millimetres in ICT's model space without recentring: vertex i < 9,409 of
the head is vertex i of the `ict` face asset's template (`mofl.facemodel.sources.ict`). The
identity modes are the synthetic data's ground-truth identity model, which the face asset (and
so the learner) never reads. Parsing ~155 OBJ files takes ~8 s, so the arrays are cached as an
`.npz` under `mofl.facemodel.default_assets.cache_dir()`/ict_head (and in memory per folder).

It holds `IctHead`, `load_ict_head`, the cache, and ICT's material and part tables
(`MATERIAL_NAMES`, `PART_NAMES`, `MATERIAL_PART`). What a person and a scene look like is in
`mofl.data.head_appearance` (skin and eye textures: `mofl.data.head_textures`); the Mitsuba
scene and rendering are in `mofl.data.mitsuba_faces`. Nothing here imports Mitsuba.
"""
import dataclasses
import functools
import gzip
import hashlib
import json
import os
from typing import Tuple

import numpy as np

from mofl.facemodel import mesh_io
from mofl.facemodel.sources import ict as ict_source

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
    neutral_path = ict_source.find_obj(ict_dir, 'generic_neutral_mesh')
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
            shape = mesh_io.read_obj_vertices(ict_source.find_obj(ict_dir, name), ICT_NUM_VERTICES)
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
