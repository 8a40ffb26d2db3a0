"""Face-asset source `bfm`: a user's Basel Face Model 2009 plus an expression basis.

BFM is licensed data: mofl never ships it; users who hold it can build a paper-faithful asset
(the paper's template v̄ is the BFM mean, §3.2). Supported files:

- Model: `01_MorphableModel.mat` of BFM 2009 (MATLAB v5 or v7.3/HDF5). Read: `shapeMU` [3N, 1]
  (mean shape, x,y,z interleaved per vertex, micrometres → `units_to_mm` = 0.001), `tl` [T, 3]
  (1-based triangles), and `texMU` [3N, 1] (mean colour 0..255; its mean over the face gives the
  constant initial skin colour).
- Expressions: a `.mat` (v5 or v7.3) or `.npz` holding `w_exp` [3N, b] (basis vectors, same
  vertex order and units as `shapeMU`), `sigma_exp` [b] (standard deviation of each coefficient,
  e.g. the square roots of the PCA eigenvalues) and optionally `mu_exp` [3N] (a mean expression
  offset, added to the template). This is the layout of the FaceWarehouse-derived
  `Model_Expression.mat` distributed with 3DDFA for BFM; other bases can be converted to it.
- Landmarks: BFM has no official landmark set, so the 68 iBUG landmark vertex indices (0-based)
  come from a text file with 68 integers (whitespace separated).
"""
import os

import h5py
import numpy as np
import scipy.io

from mofl import landmarks as landmark_layout
from mofl.facemodel import assets as assets_lib
from mofl.facemodel import geometry

OPEN_MOUTH_LIP_GAP_MM = 4.0
CONTOUR_CANDIDATES = 12

_LICENSE = ('Derived from the Basel Face Model 2009 (University of Basel), licensed to the user; '
            'not redistributable.')


def _load_arrays(path, keys, optional=()):
    """Reads named arrays from a .mat (v5 or v7.3) or .npz file."""
    if not os.path.exists(path):
        raise FileNotFoundError(f'{path}: no such file')
    out = {}
    if path.endswith('.npz'):
        with np.load(path) as data:
            for k in keys + tuple(optional):
                if k in data.files:
                    out[k] = np.asarray(data[k])
    else:
        try:
            data = scipy.io.loadmat(path, variable_names=list(keys + tuple(optional)))
            out = {k: np.asarray(data[k]) for k in keys + tuple(optional) if k in data}
        except NotImplementedError:  # MATLAB v7.3 = HDF5; arrays are stored transposed.
            with h5py.File(path, 'r') as f:
                out = {k: np.asarray(f[k]).T for k in keys + tuple(optional) if k in f}
        except ValueError as e:
            raise ValueError(f'{path}: not a readable .mat file ({e})') from e
    missing = [k for k in keys if k not in out]
    if missing:
        raise ValueError(f'{path}: missing variable(s) {missing}')
    return out


def _interleaved_to_vertices(vec, n, path, name):
    vec = np.asarray(vec, np.float64).reshape(-1)
    if vec.size != 3 * n:
        raise ValueError(f'{path}: {name} has {vec.size} entries, expected 3×{n}')
    return vec.reshape(n, 3)


def build_source(model_path, expression_path, landmarks_path, units_to_mm=0.001):
    """Builds a SourceMesh from BFM 2009 + an expression basis + 68 landmark indices.

    Args:
        model_path: `01_MorphableModel.mat`.
        expression_path: expression basis file (see module docstring).
        landmarks_path: text file with 68 vertex indices.
        units_to_mm: scale of the files' coordinates to mm (BFM 2009: µm → 0.001).

    Returns:
        mofl.facemodel.assets.SourceMesh (source='bfm').
    """
    model = _load_arrays(model_path, ('shapeMU', 'tl'), optional=('texMU',))
    n = np.asarray(model['shapeMU']).size // 3
    vertices = _interleaved_to_vertices(model['shapeMU'], n, model_path, 'shapeMU') * units_to_mm
    tl = np.asarray(model['tl'], np.int64)
    if tl.ndim != 2 or 3 not in tl.shape:
        raise ValueError(f'{model_path}: tl must be [T, 3], got {tl.shape}')
    triangles = (tl if tl.shape[1] == 3 else tl.T) - 1
    if triangles.min() < 0 or triangles.max() >= n:
        raise ValueError(f'{model_path}: tl indices outside 1..{n}')
    # BFM's triangles are clockwise seen from the front; flip to our counter-clockwise rule when
    # the summed normal points backwards.
    geometry_normal = np.cross(vertices[triangles[:, 1]] - vertices[triangles[:, 0]],
                               vertices[triangles[:, 2]] - vertices[triangles[:, 0]]).sum(0)
    if geometry_normal[2] < 0:
        triangles = triangles[:, ::-1]
    triangles = np.ascontiguousarray(triangles, dtype=np.int32)

    expr = _load_arrays(expression_path, ('w_exp', 'sigma_exp'), optional=('mu_exp',))
    w_exp = np.asarray(expr['w_exp'], np.float64)
    if w_exp.shape[0] != 3 * n and w_exp.shape[1] == 3 * n:
        w_exp = w_exp.T
    if w_exp.shape[0] != 3 * n:
        raise ValueError(f'{expression_path}: w_exp has {w_exp.shape[0]} rows, the model has '
                         f'{3 * n} coordinates')
    b = w_exp.shape[1]
    basis = (w_exp.T.reshape(b, n, 3) * units_to_mm).astype(np.float32)
    sigma = np.asarray(expr['sigma_exp'], np.float64).reshape(-1)
    if sigma.size != b or np.any(sigma <= 0):
        raise ValueError(f'{expression_path}: sigma_exp must hold {b} positive values')
    if 'mu_exp' in expr:
        vertices = vertices + _interleaved_to_vertices(expr['mu_exp'], n, expression_path,
                                                       'mu_exp') * units_to_mm

    landmarks68 = np.loadtxt(landmarks_path, dtype=np.int64).reshape(-1)
    if landmarks68.size != 68 or landmarks68.min() < 0 or landmarks68.max() >= n:
        raise ValueError(f'{landmarks_path}: need 68 vertex indices in 0..{n - 1}')
    landmarks66 = landmark_layout.drop_inner_mouth_corners(landmarks68, axis=0).astype(np.int32)

    if 'texMU' in model:
        tex = _interleaved_to_vertices(model['texMU'], n, model_path, 'texMU')
        skin = np.clip(tex.mean(axis=0) / 255.0, 0.0, 1.0)
    else:
        skin = np.array([0.70, 0.52, 0.42])

    # Open the mouth by the first expression direction that separates the lip landmarks most.
    lip_upper, lip_lower = landmarks68[[61, 62, 63]], landmarks68[[67, 66, 65]]
    gap_change = (basis[:, lip_upper, 1] - basis[:, lip_lower, 1]).mean(axis=1)
    jaw = int(np.argmax(np.abs(gap_change)))
    jaw_dir = basis[jaw] * np.sign(gap_change[jaw])
    scale = OPEN_MOUTH_LIP_GAP_MM / max(abs(gap_change[jaw]), 1e-9)
    vertices = vertices.astype(np.float32)
    upper, lower = geometry.split_lips(vertices, triangles, landmarks68, jaw_dir)
    face_mask = np.ones(n, bool)
    return assets_lib.SourceMesh(
        vertices=vertices,
        triangles=triangles,
        face_mask=face_mask,
        landmark_indices=landmarks66,
        contour_candidates=geometry.contour_candidate_lines(vertices, landmarks66[:17], face_mask,
                                                            CONTOUR_CANDIDATES),
        expression_basis=basis,
        expression_sigma=sigma.astype(np.float32),
        expression_names=np.asarray([f'exp{u:02d}' for u in range(b)]),
        skin_color=skin.astype(np.float32),
        open_mouth_vertices=(vertices + scale * jaw_dir).astype(np.float32),
        upper_lip_vertices=upper,
        lower_lip_vertices=lower,
        source='bfm',
        license=_LICENSE)
