"""Reading and writing triangle meshes: Wavefront OBJ (plain or .gz) and binary/ASCII PLY."""
import gzip
import os

import numpy as np


class MeshFormatError(ValueError):
    """Raised for a mesh file that cannot be parsed; the message names the file."""


def _open_text(path):
    if not os.path.exists(path):
        raise FileNotFoundError(f'{path}: no such mesh file')
    if path.endswith('.gz'):
        return gzip.open(path, 'rb')
    return open(path, 'rb')


def read_obj(path, max_vertices=None, max_polygons=None):
    """Reads vertex positions and polygons (any arity) from an OBJ file.

    Texture/normal indices in faces (`f 1/2/3 ...`) are ignored; negative (relative) indices are
    resolved. Only the first `max_vertices` / `max_polygons` entries are kept when given (the
    ICT face area is a prefix of the full head).

    Args:
        path: `.obj` or `.obj.gz`.
        max_vertices: optional int.
        max_polygons: optional int.

    Returns:
        (vertices [V, 3] float64, polygons: list of int tuples, 0-based).
    """
    verts, polys = [], []
    num_seen = 0   # every `v` line so far: negative indices count back from here (OBJ rule)
    try:
        with _open_text(path) as f:
            for raw in f:
                if (max_vertices is not None and max_polygons is not None and
                        len(verts) >= max_vertices and len(polys) >= max_polygons):
                    break   # both limits reached: the rest of the file is not needed
                if raw.startswith(b'v '):
                    num_seen += 1
                    if max_vertices is None or len(verts) < max_vertices:
                        verts.append(raw[2:].split()[:3])
                elif raw.startswith(b'f '):
                    if max_polygons is None or len(polys) < max_polygons:
                        indices = [int(tok.split(b'/')[0]) for tok in raw[2:].split()]
                        polys.append(tuple(i - 1 if i > 0 else num_seen + i for i in indices))
    except (OSError, EOFError, ValueError) as e:
        raise MeshFormatError(f'{path}: unreadable OBJ ({e})') from e
    if not verts:
        raise MeshFormatError(f'{path}: no vertices found')
    try:
        vertices = np.asarray(verts, dtype=np.float64)
    except ValueError as e:
        raise MeshFormatError(f'{path}: malformed vertex line ({e})') from e
    if vertices.ndim != 2 or vertices.shape[1] != 3:
        raise MeshFormatError(f'{path}: vertex lines need 3 coordinates')
    return vertices, polys


def read_obj_vertices(path, max_vertices=None):
    """Reads only the vertex positions of an OBJ (fast path for blendshape files).

    Returns:
        [V, 3] float64.
    """
    return read_obj(path, max_vertices=max_vertices, max_polygons=0)[0]


def triangulate(polygons):
    """Fan-triangulates polygons.

    Args:
        polygons: iterable of index tuples with 3 or more entries.

    Returns:
        [T, 3] int32 triangles keeping each polygon's winding.
    """
    tris = []
    for p in polygons:
        for k in range(1, len(p) - 1):
            tris.append((p[0], p[k], p[k + 1]))
    return np.asarray(tris, dtype=np.int32).reshape(-1, 3)


def write_obj(path, vertices, triangles, colors=None, header=''):
    """Writes an OBJ; optional per-vertex colours use the common `v x y z r g b` extension.

    Args:
        path: output file.
        vertices: [V, 3].
        triangles: [T, 3] 0-based.
        colors: optional [V, 3] in [0, 1].
        header: comment text written at the top (e.g. a licence notice).
    """
    vertices = np.asarray(vertices, np.float64)
    lines = [f'# {line}' for line in header.splitlines()] if header else []
    if colors is None:
        lines += [f'v {x:.6f} {y:.6f} {z:.6f}' for x, y, z in vertices]
    else:
        colors = np.clip(np.asarray(colors, np.float64), 0.0, 1.0)
        lines += [f'v {x:.6f} {y:.6f} {z:.6f} {r:.4f} {g:.4f} {b:.4f}'
                  for (x, y, z), (r, g, b) in zip(vertices, colors)]
    lines += [f'f {a + 1} {b + 1} {c + 1}' for a, b, c in np.asarray(triangles)]
    with open(path, 'w') as f:
        f.write('\n'.join(lines) + '\n')


def write_ply(path, vertices, triangles, colors=None):
    """Writes a binary little-endian PLY with optional uint8 vertex colours.

    Args:
        path: output file.
        vertices: [V, 3].
        triangles: [T, 3].
        colors: optional [V, 3] in [0, 1].
    """
    vertices = np.asarray(vertices, np.float32)
    triangles = np.asarray(triangles, np.int32)
    header = ['ply', 'format binary_little_endian 1.0', f'element vertex {len(vertices)}',
              'property float x', 'property float y', 'property float z']
    vdtype = [('x', '<f4'), ('y', '<f4'), ('z', '<f4')]
    if colors is not None:
        header += ['property uchar red', 'property uchar green', 'property uchar blue']
        vdtype += [('red', 'u1'), ('green', 'u1'), ('blue', 'u1')]
    header += [f'element face {len(triangles)}', 'property list uchar int vertex_indices',
               'end_header']
    vrec = np.empty(len(vertices), dtype=vdtype)
    vrec['x'], vrec['y'], vrec['z'] = vertices.T
    if colors is not None:
        rgb = np.round(np.clip(np.asarray(colors), 0, 1) * 255).astype(np.uint8)
        vrec['red'], vrec['green'], vrec['blue'] = rgb.T
    frec = np.empty(len(triangles), dtype=[('n', 'u1'), ('idx', '<i4', (3,))])
    frec['n'] = 3
    frec['idx'] = triangles
    with open(path, 'wb') as f:
        f.write(('\n'.join(header) + '\n').encode('ascii'))
        f.write(vrec.tobytes())
        f.write(frec.tobytes())


def read_ply(path):
    """Reads a PLY written by `write_ply` (binary little endian or ASCII, triangles only).

    Returns:
        (vertices [V, 3] float32, triangles [T, 3] int32, colors [V, 3] float32 in [0, 1] or None).
    """
    with open(path, 'rb') as f:
        data = f.read()
    end = data.find(b'end_header\n')
    if not data.startswith(b'ply') or end < 0:
        raise MeshFormatError(f'{path}: not a PLY file')
    header = data[:end].decode('ascii').splitlines()
    body = data[end + len(b'end_header\n'):]
    fmt = next(line.split()[1] for line in header if line.startswith('format'))
    num_v = num_f = 0
    vprops = []
    current = None
    for line in header:
        tok = line.split()
        if tok[0] == 'element':
            current = tok[1]
            if current == 'vertex':
                num_v = int(tok[2])
            elif current == 'face':
                num_f = int(tok[2])
        elif tok[0] == 'property' and current == 'vertex':
            vprops.append((tok[2], {'float': '<f4', 'uchar': 'u1', 'double': '<f8'}[tok[1]]))
    names = [n for n, _ in vprops]
    has_color = 'red' in names
    if fmt == 'ascii':
        rows = body.decode('ascii').split('\n')
        vals = np.asarray([r.split() for r in rows[:num_v]], np.float64)
        verts = vals[:, :3].astype(np.float32)
        cols = vals[:, names.index('red'):names.index('red') + 3] / 255.0 if has_color else None
        tris = np.asarray([r.split()[1:4] for r in rows[num_v:num_v + num_f]], np.int32)
    elif fmt == 'binary_little_endian':
        vrec = np.frombuffer(body, dtype=vprops, count=num_v)
        verts = np.stack([vrec['x'], vrec['y'], vrec['z']], -1).astype(np.float32)
        cols = (np.stack([vrec['red'], vrec['green'], vrec['blue']], -1) / 255.0
                if has_color else None)
        frec = np.frombuffer(body, dtype=[('n', 'u1'), ('idx', '<i4', (3,))], count=num_f,
                             offset=vrec.nbytes)
        if num_f and np.any(frec['n'] != 3):
            raise MeshFormatError(f'{path}: only triangle faces are supported')
        tris = frec['idx'].astype(np.int32)
    else:
        raise MeshFormatError(f'{path}: unsupported PLY format {fmt}')
    return verts, tris, (None if cols is None else cols.astype(np.float32))
