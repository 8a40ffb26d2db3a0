"""Ground-truth scan loaders: BU-3DFE (VRML `.wrl` + `.bnd`/`.pse`), FaceWarehouse (`.obj`), `.npz`.

Every loader returns a `Scan` in millimetres and raises `ScanFormatError` naming the file and the
reason on malformed input.

Formats as handled here:
- BU-3DFE `.wrl`: VRML 2.0 text. Every `IndexedFaceSet` node contributes its
  `coord [DEF n] Coordinate { point [ x y z, ... ] }` and `coordIndex [ a, b, c, -1, ... ]`
  (polygons end with −1, the last one may omit it; polygons with more than 3 corners are
  fan-triangulated; `ccw FALSE` flips the winding). Commas are optional, `#` starts a comment
  outside quoted strings, `texCoord`/`color`/`normal` nodes and their `*Index` fields are read
  past and ignored. Several face sets are concatenated. BU-3DFE scans are in mm.
- BU-3DFE `.bnd`: the 83 feature points, one per line, `index x y z` (the index is the 0-based
  vertex of the point in the matching `_F3D.wrl`) or `x y z`; blank lines and `#` comments skip.
- BU-3DFE `.pse`: its exact content is not publicly documented; read as the same point-list
  layout as `.bnd` (lines of `x y z` or `index x y z`). Check a file before relying on it.
- FaceWarehouse `.obj`: plain OBJ (`v`, `f`), a fixed 11,510-vertex topology; landmarks come
  from an optional vertex-index file (whitespace- or comma-separated integers, 0-based unless
  `one_based=True`). `unit_to_mm` converts the file's units (check your copy of the data).
- `.npz` (synthetic benchmark): `vertices [V, 3]`, `triangles [T, 3]`, optional `landmarks
  [L, 3]`, optional `name`; mm.
"""
import dataclasses
import os
import re
from typing import Optional

import numpy as np

from mofl.facemodel import mesh_io

FACEWAREHOUSE_NUM_VERTICES = 11510
BU3DFE_NUM_LANDMARKS = 83


class ScanFormatError(ValueError):
    """A scan or landmark file that cannot be parsed; the message names the file."""


@dataclasses.dataclass
class Scan:
    """A ground-truth surface.

    Attributes:
        vertices: [V, 3] float64, mm.
        triangles: [T, 3] int32, counter-clockwise seen from outside.
        landmarks: optional [L, 3] float64, mm.
        name: identifier (the file stem by default).
    """
    vertices: np.ndarray
    triangles: np.ndarray
    landmarks: Optional[np.ndarray]
    name: str

    def __post_init__(self):
        self.vertices = np.asarray(self.vertices, np.float64)
        self.triangles = np.asarray(self.triangles, np.int32)
        if self.landmarks is not None:
            self.landmarks = np.asarray(self.landmarks, np.float64)
        if self.vertices.ndim != 2 or self.vertices.shape[1] != 3:
            raise ScanFormatError(f'{self.name}: vertices must be [V, 3], got {self.vertices.shape}')
        if self.triangles.ndim != 2 or self.triangles.shape[1] != 3 or not len(self.triangles):
            raise ScanFormatError(f'{self.name}: triangles must be a non-empty [T, 3], got '
                                  f'{self.triangles.shape}')
        if self.triangles.min() < 0 or self.triangles.max() >= len(self.vertices):
            raise ScanFormatError(f'{self.name}: triangle index out of range '
                                  f'[0, {len(self.vertices)})')
        if not np.all(np.isfinite(self.vertices)):
            raise ScanFormatError(f'{self.name}: non-finite vertex coordinates')
        if self.landmarks is not None and (self.landmarks.ndim != 2
                                           or self.landmarks.shape[1] != 3):
            raise ScanFormatError(f'{self.name}: landmarks must be [L, 3], got '
                                  f'{self.landmarks.shape}')


def _scan(path, vertices, triangles, landmarks, name=None):
    """Builds a `Scan`, re-raising validation errors with the file's path."""
    name = _stem(path) if name is None else name
    try:
        return Scan(vertices, triangles, landmarks, name)
    except ScanFormatError as e:
        reason = str(e).split(': ', 1)[-1]
        raise ScanFormatError(f'{path}: {reason}') from None


def _stem(path):
    return os.path.splitext(os.path.basename(path))[0]


def _read_text(path):
    if not os.path.exists(path):
        raise FileNotFoundError(f'{path}: no such file')
    with open(path, 'rb') as f:
        return f.read().decode('latin-1')


# ---------------------------------------------------------------------------------------------
# VRML 2.0 (BU-3DFE)

_VRML_STRING_OR_COMMENT = re.compile(r'"(?:[^"\\]|\\.)*"|#[^\n]*')
_VRML_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]|[^\s,\[\]{}"]+')


def _vrml_tokens(text):
    text = _VRML_STRING_OR_COMMENT.sub(lambda m: m.group(0) if m.group(0)[0] == '"' else ' ', text)
    return _VRML_TOKEN.findall(text)


def _skip_value(tokens, i):
    """Index after the bracketed / braced group starting at tokens[i] (or after one token)."""
    if tokens[i] not in ('[', '{'):
        return i + 1
    depth = 0
    while i < len(tokens):
        if tokens[i] in ('[', '{'):
            depth += 1
        elif tokens[i] in (']', '}'):
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    raise IndexError('unbalanced brackets')


def _number_list(tokens, i, path, what):
    """Reads `[ n n n ... ]` at tokens[i]; returns (array of str tokens, index after `]`)."""
    if i >= len(tokens) or tokens[i] != '[':
        # VRML allows a single value without brackets.
        return tokens[i:i + 1], i + 1
    try:
        end = tokens.index(']', i)
    except ValueError:
        raise ScanFormatError(f'{path}: unterminated {what} list') from None
    return tokens[i + 1:end], end + 1


def _parse_coordinate_node(tokens, i, path):
    """Parses `[DEF name] Coordinate { point [ ... ] }` at tokens[i]; returns ([P, 3], next)."""
    if tokens[i] == 'DEF':
        i += 2
    if tokens[i] == 'USE':
        raise ScanFormatError(f'{path}: `coord USE {tokens[i + 1]}` is not supported')
    if tokens[i] != 'Coordinate' or tokens[i + 1] != '{':
        raise ScanFormatError(f'{path}: expected a Coordinate node after `coord`, got {tokens[i]!r}')
    end = _skip_value(tokens, i + 1)
    body = tokens[i + 2:end - 1]
    if 'point' not in body:
        return np.zeros((0, 3)), end
    values, _ = _number_list(body, body.index('point') + 1, path, 'point')
    try:
        points = np.asarray(values, np.float64)
    except ValueError as e:
        raise ScanFormatError(f'{path}: malformed Coordinate point ({e})') from e
    if points.size % 3:
        raise ScanFormatError(f'{path}: Coordinate point count {points.size} is not a multiple of 3')
    return points.reshape(-1, 3), end


def _polygons_from_coord_index(indices, path):
    """Splits a coordIndex list at −1 into fan triangles [T, 3]."""
    split = np.nonzero(indices < 0)[0]
    starts = np.r_[0, split + 1]
    ends = np.r_[split, len(indices)]
    tris = []
    for s, e in zip(starts, ends):
        poly = indices[s:e]
        if len(poly) == 0:
            continue
        if len(poly) < 3:
            raise ScanFormatError(f'{path}: a coordIndex polygon has {len(poly)} corners')
        for k in range(1, len(poly) - 1):
            tris.append((poly[0], poly[k], poly[k + 1]))
    return np.asarray(tris, np.int64).reshape(-1, 3)


def _fast_triangles(indices):
    """All-triangle coordIndex (`a b c -1` repeated) without a Python loop, else None."""
    if len(indices) % 4 == 0:
        quads = indices.reshape(-1, 4)
        if np.all(quads[:, 3] < 0) and np.all(quads[:, :3] >= 0):
            return quads[:, :3]
    return None


def read_wrl(path):
    """Reads the triangle mesh of a VRML 2.0 file (BU-3DFE `_F3D.wrl`); see the module docstring.

    Args:
        path: `.wrl` file.

    Returns:
        (vertices [V, 3] float64, triangles [T, 3] int32), in the file's units (mm for BU-3DFE).
    """
    text = _read_text(path)
    if not text.lstrip().startswith('#VRML'):
        raise ScanFormatError(f'{path}: not a VRML file (no #VRML header)')
    if text.lstrip().startswith('#VRML V1.0'):
        raise ScanFormatError(f'{path}: VRML 1.0 is not supported (BU-3DFE uses VRML 2.0)')
    tokens = _vrml_tokens(text)
    all_vertices, all_triangles, offset = [], [], 0
    i = 0
    try:
        while True:
            try:
                i = tokens.index('IndexedFaceSet', i)
            except ValueError:
                break
            if tokens[i + 1] != '{':
                raise ScanFormatError(f'{path}: IndexedFaceSet without a `{{` body')
            end = _skip_value(tokens, i + 1)
            vertices, index_tokens, ccw = None, None, True
            j = i + 2
            while j < end - 1:
                field = tokens[j]
                if field == 'coord':
                    vertices, j = _parse_coordinate_node(tokens, j + 1, path)
                elif field == 'coordIndex':
                    index_tokens, j = _number_list(tokens, j + 1, path, 'coordIndex')
                elif field == 'ccw':
                    ccw = tokens[j + 1] != 'FALSE'
                    j += 2
                else:
                    j += 1
                    if j < end - 1 and tokens[j] in ('[', '{'):
                        j = _skip_value(tokens, j)
                    elif j < end - 1 and tokens[j] in ('DEF',):
                        j += 2
            i = end
            if vertices is None or index_tokens is None:
                raise ScanFormatError(f'{path}: an IndexedFaceSet lacks `coord` or `coordIndex`')
            try:
                indices = np.asarray(index_tokens, np.int64)
            except ValueError as e:
                raise ScanFormatError(f'{path}: malformed coordIndex ({e})') from e
            triangles = _fast_triangles(indices)
            if triangles is None:
                triangles = _polygons_from_coord_index(indices, path)
            if len(triangles) and (triangles.max() >= len(vertices)):
                raise ScanFormatError(f'{path}: coordIndex {triangles.max()} out of range '
                                      f'({len(vertices)} points)')
            if not ccw:
                triangles = triangles[:, ::-1]
            all_vertices.append(vertices)
            all_triangles.append(triangles + offset)
            offset += len(vertices)
    except IndexError:
        raise ScanFormatError(f'{path}: truncated VRML (unbalanced brackets)') from None
    if not all_vertices:
        raise ScanFormatError(f'{path}: no IndexedFaceSet found')
    vertices = np.concatenate(all_vertices)
    triangles = np.concatenate(all_triangles).astype(np.int32)
    if not len(triangles):
        raise ScanFormatError(f'{path}: no polygons found')
    return vertices, triangles


# ---------------------------------------------------------------------------------------------
# Landmark point lists (BU-3DFE .bnd / .pse)

def read_point_list(path, expected_count=None):
    """Reads a landmark list: lines `x y z` or `index x y z` (BU-3DFE `.bnd` / `.pse`).

    Args:
        path: the file.
        expected_count: optional required number of points (83 for a BU-3DFE `.bnd`).

    Returns:
        (points [L, 3] float64, vertex_indices [L] int64 or None when lines have 3 numbers).
    """
    text = _read_text(path)
    rows = []
    for line_no, line in enumerate(text.splitlines(), 1):
        line = line.split('#', 1)[0].replace(',', ' ').strip()
        if not line:
            continue
        fields = line.split()
        if len(fields) not in (3, 4):
            raise ScanFormatError(f'{path}:{line_no}: expected `x y z` or `index x y z`, '
                                  f'got {len(fields)} fields')
        try:
            rows.append([float(v) for v in fields])
        except ValueError as e:
            raise ScanFormatError(f'{path}:{line_no}: not a number ({e})') from e
    if not rows:
        raise ScanFormatError(f'{path}: no landmark lines')
    if len({len(r) for r in rows}) != 1:
        raise ScanFormatError(f'{path}: lines mix 3 and 4 fields')
    values = np.asarray(rows)
    if expected_count is not None and len(values) != expected_count:
        raise ScanFormatError(f'{path}: {len(values)} landmarks, expected {expected_count}')
    if values.shape[1] == 4:
        if np.any(values[:, 0] != np.round(values[:, 0])) or np.any(values[:, 0] < 0):
            raise ScanFormatError(f'{path}: the first column must be a vertex index')
        return values[:, 1:], values[:, 0].astype(np.int64)
    return values, None


def read_bnd(path):
    """BU-3DFE `.bnd`: 83 feature points (see the module docstring).

    Returns:
        (points [83, 3] mm, vertex_indices [83] or None).
    """
    return read_point_list(path, expected_count=BU3DFE_NUM_LANDMARKS)


def read_pse(path):
    """BU-3DFE `.pse`, read as a point list (format not publicly documented; see module doc).

    Returns:
        (points [L, 3], vertex_indices [L] or None).
    """
    return read_point_list(path)


def load_bu3dfe_scan(wrl_path, landmark_path='auto'):
    """A BU-3DFE scan with its 83 landmarks.

    Args:
        wrl_path: `..._F3D.wrl`.
        landmark_path: a `.bnd` (or `.pse`) file; 'auto' uses `<same stem>.bnd` when it exists;
            None loads no landmarks.

    Returns:
        `Scan` (mm).
    """
    vertices, triangles = read_wrl(wrl_path)
    if landmark_path == 'auto':
        candidate = os.path.splitext(wrl_path)[0] + '.bnd'
        landmark_path = candidate if os.path.exists(candidate) else None
    landmarks = None
    if landmark_path is not None:
        reader = read_pse if landmark_path.lower().endswith('.pse') else read_bnd
        landmarks, indices = reader(landmark_path)
        if indices is not None and indices.max() >= len(vertices):
            raise ScanFormatError(f'{landmark_path}: landmark vertex index {indices.max()} beyond '
                                  f'the {len(vertices)} vertices of {wrl_path}')
    return _scan(wrl_path, vertices, triangles, landmarks)


# ---------------------------------------------------------------------------------------------
# FaceWarehouse (.obj)

def read_landmark_indices(path, one_based=False):
    """Vertex indices, whitespace/comma separated, `#` comments allowed.

    Returns:
        [L] int64, 0-based.
    """
    text = _read_text(path)
    tokens = re.sub(r'#[^\n]*', ' ', text).replace(',', ' ').split()
    try:
        indices = np.asarray([int(t) for t in tokens], np.int64)
    except ValueError as e:
        raise ScanFormatError(f'{path}: landmark indices must be integers ({e})') from e
    if not len(indices):
        raise ScanFormatError(f'{path}: no landmark indices')
    return indices - 1 if one_based else indices


def load_facewarehouse_scan(obj_path, landmark_indices=None, one_based=False, unit_to_mm=1.0,
                            check_topology=True):
    """A FaceWarehouse mesh (`.obj`, 11,510 vertices) with optional landmarks.

    Args:
        obj_path: `.obj` (or `.obj.gz`).
        landmark_indices: None, an int array of vertex indices, or a path to an index file.
        one_based: the index file counts from 1.
        unit_to_mm: multiplies the coordinates (1.0 when the file is in mm).
        check_topology: require FaceWarehouse's 11,510 vertices.

    Returns:
        `Scan` (mm).
    """
    try:
        vertices, polygons = mesh_io.read_obj(obj_path)
    except mesh_io.MeshFormatError as e:
        raise ScanFormatError(str(e)) from e
    if check_topology and len(vertices) != FACEWAREHOUSE_NUM_VERTICES:
        raise ScanFormatError(f'{obj_path}: {len(vertices)} vertices, FaceWarehouse meshes have '
                              f'{FACEWAREHOUSE_NUM_VERTICES} (pass check_topology=False)')
    if any(len(p) < 3 for p in polygons):
        raise ScanFormatError(f'{obj_path}: a face has fewer than 3 corners')
    triangles = mesh_io.triangulate(polygons)
    if not len(triangles):
        raise ScanFormatError(f'{obj_path}: no faces')
    vertices = vertices * float(unit_to_mm)
    landmarks = None
    if landmark_indices is not None:
        if isinstance(landmark_indices, (str, os.PathLike)):
            landmark_indices = read_landmark_indices(landmark_indices, one_based)
        landmark_indices = np.asarray(landmark_indices, np.int64)
        if landmark_indices.min() < 0 or landmark_indices.max() >= len(vertices):
            raise ScanFormatError(f'{obj_path}: landmark index out of range [0, {len(vertices)})')
        landmarks = vertices[landmark_indices]
    return _scan(obj_path, vertices, triangles, landmarks)


# ---------------------------------------------------------------------------------------------
# .npz (synthetic benchmark)

def save_npz_scan(path, scan):
    """Writes a `Scan` as `.npz` (vertices, triangles, optional landmarks, name)."""
    arrays = {'vertices': scan.vertices, 'triangles': scan.triangles, 'name': np.asarray(scan.name)}
    if scan.landmarks is not None:
        arrays['landmarks'] = scan.landmarks
    np.savez_compressed(path, **arrays)


def load_npz_scan(path):
    """Reads a `.npz` scan (see the module docstring)."""
    if not os.path.exists(path):
        raise FileNotFoundError(f'{path}: no such file')
    try:
        with np.load(path, allow_pickle=False) as data:
            if 'vertices' not in data or 'triangles' not in data:
                raise ScanFormatError(f'{path}: needs `vertices` and `triangles` arrays, has '
                                      f'{sorted(data.files)}')
            name = str(data['name']) if 'name' in data else _stem(path)
            landmarks = data['landmarks'] if 'landmarks' in data else None
            return _scan(path, data['vertices'], data['triangles'], landmarks, name)
    except (OSError, ValueError) as e:
        if isinstance(e, ScanFormatError):
            raise
        raise ScanFormatError(f'{path}: unreadable npz ({e})') from e


def load_scan(path, **kwargs):
    """Dispatches on the extension: `.wrl` (BU-3DFE), `.obj`/`.obj.gz` (FaceWarehouse), `.npz`."""
    lower = path.lower()
    if lower.endswith('.wrl'):
        return load_bu3dfe_scan(path, **kwargs)
    if lower.endswith('.obj') or lower.endswith('.obj.gz'):
        return load_facewarehouse_scan(path, **kwargs)
    if lower.endswith('.npz'):
        return load_npz_scan(path)
    raise ScanFormatError(f'{path}: unknown scan format (want .wrl, .obj or .npz)')
