"""The face-asset file: one `.npz` format written by `tools.build_assets`, read by everything else.

An asset holds what the paper keeps fixed while it learns the identity model (§3.2): the template
mesh v̄, the landmark vertices, the fixed expression blendshape basis B with its standard
deviations σδ (eq. 3, 12), the initial constant skin colour r̄ (eq. 6) and the coarse deformation
graph G with its skinning matrix S (eq. 1–2).

Two dataclasses:
- `SourceMesh`: what an asset *source* (ICT-FaceKit, mediapipe, BFM) provides before the graph is
  built. Every source module returns one.
- `FaceAssets`: a `SourceMesh` plus the deformation graph; this is what is saved and loaded.
"""
import dataclasses
import hashlib
import os
from typing import Optional

import numpy as np

ASSET_FORMAT_VERSION = 1
NUM_LANDMARKS = 66
NUM_MEDIAPIPE_POINTS = 468  # mediapipe FaceMesh's points (`SourceMesh.mediapipe_vertices`)
NUM_CONTOUR_LANDMARKS = 17  # Landmarks 0..16 of the 66 trace the jaw line and slide (§3.5).
# σδ of eq. 12 for blendshape rigs (ICT, mediapipe): each weight is a FACS-style activation with
# 0 = neutral and 1 = full; treating it as uniform on [0, 1] gives σδ = 1/√12 for every shape.
BLENDSHAPE_SIGMA = float(1.0 / np.sqrt(12.0))


class AssetError(ValueError):
    """Raised for an asset file that is missing, corrupt or inconsistent."""


@dataclasses.dataclass
class SourceMesh:
    """Template mesh, landmarks and expression basis delivered by an asset source.

    Attributes:
        vertices: [V, 3] float32 template v̄ in mm (model space, see BUILD_NOTES.md
            "Coordinates and units").
        triangles: [T, 3] int32, counter-clockwise seen from outside.
        face_mask: [V] bool, the face region used by evaluation and shown in previews.
        landmark_indices: [66] int32 vertex index of each landmark (66-point layout).
        contour_candidates: [17, K] int32 candidate vertex line per jaw landmark, padded with −1;
            the sliding correspondence picks one vertex of each line per frame.
        expression_basis: [b, V, 3] float32 blendshape offsets in mm for δ_u = 1 (matrix B, eq. 3).
        expression_sigma: [b] float32 σδ of each blendshape coefficient (eq. 12), > 0.
        expression_names: [b] str.
        skin_color: [3] float32 initial constant albedo r̄ in [0, 1] (eq. 6).
        open_mouth_vertices: [V, 3] float32 the template with a slightly open mouth, used only to
            place the graph nodes so that no node straddles the lips (§3.2).
        upper_lip_vertices, lower_lip_vertices: int32 vertex indices of the lips (tests check that
            the graph never joins the two).
        source: name of the source ('ict', 'mediapipe', 'bfm').
        license: licence notice of the data the asset was derived from.
        full_vertex_indices: for a decimated asset (`mofl.facemodel.decimation`), [V] int32 the
            index of each vertex in the source's full mesh (the coarse-to-full map); None for a
            full asset.
        full_num_vertices: vertex count of that full mesh (0 for a full asset).
        mediapipe_vertices: [468] int32 the vertex each of mediapipe FaceMesh's 468 points lies
            on, −1 for none (`mofl.facemodel.mediapipe_correspondence`; the dense points of
            `tools.preprocess`); None for an asset built before it existed.
        mediapipe_residual_mm: [468] float32 the registration residual of each of them, mm.
        landmark_offsets: optional [66, 3] float32 model-space offsets (mm) added to each
            landmark's vertex before projection: where a detector puts the landmark on the mean
            face, relative to its vertex (`mofl.data.detector_calibration`); None: zero.
        mediapipe_offsets: optional [468, 3] float32, the same for FaceMesh's points.
    """
    vertices: np.ndarray
    triangles: np.ndarray
    face_mask: np.ndarray
    landmark_indices: np.ndarray
    contour_candidates: np.ndarray
    expression_basis: np.ndarray
    expression_sigma: np.ndarray
    expression_names: np.ndarray
    skin_color: np.ndarray
    open_mouth_vertices: np.ndarray
    upper_lip_vertices: np.ndarray
    lower_lip_vertices: np.ndarray
    source: str
    license: str = ''
    full_vertex_indices: Optional[np.ndarray] = None
    full_num_vertices: int = 0
    mediapipe_vertices: Optional[np.ndarray] = None
    mediapipe_residual_mm: Optional[np.ndarray] = None
    landmark_offsets: Optional[np.ndarray] = None
    mediapipe_offsets: Optional[np.ndarray] = None

    @property
    def num_vertices(self):
        return int(self.vertices.shape[0])

    @property
    def num_expressions(self):
        return int(self.expression_basis.shape[0])

    def fingerprint(self):
        """16 hex digits identifying the template's vertices and triangles: data with ground
        truth on this mesh's vertices (tools.make_synthetic's manifest) records it, so that a
        mesh with the same vertex count but other vertices (e.g. a rebuilt decimation) is
        refused instead of compared vertex by vertex."""
        digest = hashlib.sha1(np.ascontiguousarray(self.vertices, np.float32).tobytes())
        digest.update(np.ascontiguousarray(self.triangles, np.int32).tobytes())
        return digest.hexdigest()[:16]

    def validate(self, where='asset'):
        """Checks shapes, index ranges and values; raises AssetError naming `where`."""
        v = self.num_vertices
        _expect(self.vertices.shape == (v, 3), where, f'vertices shape {self.vertices.shape}')
        _expect(self.triangles.ndim == 2 and self.triangles.shape[1] == 3, where,
                f'triangles shape {self.triangles.shape}')
        _expect(self.triangles.size and self.triangles.min() >= 0 and self.triangles.max() < v,
                where, 'triangle index out of range')
        _expect(self.face_mask.shape == (v,), where, f'face_mask shape {self.face_mask.shape}')
        _expect(self.landmark_indices.shape == (NUM_LANDMARKS,), where,
                f'landmark_indices shape {self.landmark_indices.shape}, want ({NUM_LANDMARKS},)')
        _expect(np.all((self.landmark_indices >= 0) & (self.landmark_indices < v)), where,
                'landmark index out of range')
        _expect(self.contour_candidates.ndim == 2 and
                self.contour_candidates.shape[0] == NUM_CONTOUR_LANDMARKS, where,
                f'contour_candidates shape {self.contour_candidates.shape}')
        _expect(np.all(self.contour_candidates < v), where, 'contour candidate out of range')
        _expect(np.all(self.contour_candidates.max(axis=1) >= 0), where,
                'a contour landmark has no candidate vertex')
        b = self.num_expressions
        _expect(self.expression_basis.shape == (b, v, 3), where,
                f'expression_basis shape {self.expression_basis.shape}')
        _expect(self.expression_sigma.shape == (b,) and np.all(self.expression_sigma > 0), where,
                'expression_sigma must be [b] and positive')
        _expect(len(self.expression_names) == b, where, 'expression_names length')
        _expect(self.skin_color.shape == (3,), where, 'skin_color shape')
        _expect(self.open_mouth_vertices.shape == (v, 3), where, 'open_mouth_vertices shape')
        for arr in (self.vertices, self.expression_basis, self.open_mouth_vertices):
            _expect(np.all(np.isfinite(arr)), where, 'non-finite coordinates')
        if self.full_vertex_indices is not None:
            indices = np.asarray(self.full_vertex_indices)
            _expect(indices.shape == (v,), where,
                    f'full_vertex_indices shape {indices.shape}, want ({v},)')
            _expect(np.all((indices >= 0) & (indices < int(self.full_num_vertices))), where,
                    'full_vertex_indices out of range of full_num_vertices')
        if self.mediapipe_vertices is not None:
            mapped = np.asarray(self.mediapipe_vertices)
            _expect(mapped.shape == (NUM_MEDIAPIPE_POINTS,), where,
                    f'mediapipe_vertices shape {mapped.shape}, want ({NUM_MEDIAPIPE_POINTS},)')
            _expect(np.all((mapped >= -1) & (mapped < v)), where,
                    'mediapipe_vertices out of range (vertex index or -1)')
            _expect(self.mediapipe_residual_mm is not None and
                    np.shape(self.mediapipe_residual_mm) == (NUM_MEDIAPIPE_POINTS,), where,
                    'mediapipe_residual_mm must be [468] beside mediapipe_vertices')
        for name, count in (('landmark_offsets', NUM_LANDMARKS),
                            ('mediapipe_offsets', NUM_MEDIAPIPE_POINTS)):
            offsets = getattr(self, name)
            if offsets is not None:
                _expect(np.shape(offsets) == (count, 3) and np.all(np.isfinite(offsets)), where,
                        f'{name} must be [{count}, 3] and finite, got shape {np.shape(offsets)}')


@dataclasses.dataclass
class DeformationGraph:
    """Coarse deformation graph G and its linear-blend skinning (paper §3.2, eq. 1–2).

    Attributes:
        nodes: [G, 3] float32 mean node positions ḡ in mm (on the closed-mouth template).
        node_vertex: [G] int32 template vertex each node was placed on.
        skin_indices: [V, k] int32 the k nodes each vertex is bound to.
        skin_weights: [V, k] float32 their weights; each row sums to 1. Together they form the
            sparse S ∈ R^{|V|×|G|} (applied per coordinate: S ⊗ I3 in the paper's 3|V|×3|G| form).
        edges: [E, 2] int32 node pairs (i < j) that share a skinned vertex: N_i of eq. 10.
    """
    nodes: np.ndarray
    node_vertex: np.ndarray
    skin_indices: np.ndarray
    skin_weights: np.ndarray
    edges: np.ndarray

    @property
    def num_nodes(self):
        return int(self.nodes.shape[0])

    def skinning_matrix(self, num_vertices):
        """Returns S as a dense [V, G] float32 matrix (for tests and least squares)."""
        s = np.zeros((num_vertices, self.num_nodes), np.float32)
        rows = np.repeat(np.arange(num_vertices), self.skin_indices.shape[1])
        np.add.at(s, (rows, self.skin_indices.reshape(-1)), self.skin_weights.reshape(-1))
        return s


@dataclasses.dataclass
class FaceAssets:
    """Everything fixed about the face model: `mesh` (a SourceMesh) and `graph`."""
    mesh: SourceMesh
    graph: DeformationGraph
    mesh_edges: np.ndarray  # [E_v, 2] int32 unique mesh edges (i < j): N_i of eq. 11.

    def save(self, path):
        """Writes the asset to `path` (.npz, compressed)."""
        arrays = {f'mesh/{f.name}': np.asarray(getattr(self.mesh, f.name))
                  for f in dataclasses.fields(SourceMesh)
                  if getattr(self.mesh, f.name) is not None}
        arrays.update({f'graph/{f.name}': getattr(self.graph, f.name)
                       for f in dataclasses.fields(DeformationGraph)})
        arrays['mesh_edges'] = self.mesh_edges
        arrays['format_version'] = np.int32(ASSET_FORMAT_VERSION)
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        tmp = f'{path}.{os.getpid()}.tmp.npz'     # unique: processes may share a cache
        np.savez_compressed(tmp, **arrays)
        os.replace(tmp, path)

    @classmethod
    def load(cls, path):
        """Reads an asset written by `save`; raises AssetError with the path and the reason."""
        if not os.path.exists(path):
            raise AssetError(f'{path}: no such face-asset file (build one with '
                             '`python -m tools.build_assets`)')
        try:
            with np.load(path, allow_pickle=False) as data:
                arrays = {k: data[k] for k in data.files}
        except Exception as e:  # zipfile/pickle/format errors all mean a corrupt file here.
            raise AssetError(f'{path}: not a readable face-asset .npz ({e})') from e
        version = int(arrays.get('format_version', -1))
        if version != ASSET_FORMAT_VERSION:
            raise AssetError(f'{path}: asset format version {version}, this mofl reads '
                             f'version {ASSET_FORMAT_VERSION}; rebuild it with tools.build_assets')
        try:
            optional = ('full_vertex_indices', 'full_num_vertices',  # decimated assets only
                        'mediapipe_vertices', 'mediapipe_residual_mm',  # newer builds only
                        'landmark_offsets', 'mediapipe_offsets')  # detector-calibrated only
            mesh = SourceMesh(**{f.name: _unwrap(arrays[f'mesh/{f.name}'])
                                 for f in dataclasses.fields(SourceMesh)
                                 if f.name not in optional or f'mesh/{f.name}' in arrays})
            mesh.full_num_vertices = int(mesh.full_num_vertices)
            graph = DeformationGraph(**{f.name: arrays[f'graph/{f.name}']
                                        for f in dataclasses.fields(DeformationGraph)})
            assets = cls(mesh=mesh, graph=graph, mesh_edges=arrays['mesh_edges'])
        except KeyError as e:
            raise AssetError(f'{path}: missing array {e}') from e
        mesh.validate(where=path)
        return assets


def mesh_edges_from_triangles(triangles):
    """Unique undirected edges of a triangle mesh.

    Args:
        triangles: [T, 3] int.

    Returns:
        [E, 2] int32 with i < j in every row, sorted.
    """
    e = np.concatenate([triangles[:, [0, 1]], triangles[:, [1, 2]], triangles[:, [2, 0]]])
    e = np.sort(e, axis=1)
    return np.unique(e, axis=0).astype(np.int32)


def _unwrap(arr):
    """0-d string arrays come back from npz as arrays; turn them into str."""
    if arr.ndim == 0 and arr.dtype.kind in 'US':
        return str(arr)
    return arr


def _expect(condition, where, what):
    if not condition:
        raise AssetError(f'{where}: invalid face asset: {what}')


def default_ict_dir() -> Optional[str]:
    """The ICT-FaceKit folder to use: $MOFL_ICT_DIR, else ../shared/ict-facekit beside the
    project checkout, else None."""
    env = os.environ.get('MOFL_ICT_DIR')
    if env:
        return env if os.path.isdir(env) else None
    here = os.path.dirname(os.path.abspath(__file__))
    candidate = os.path.normpath(os.path.join(here, '..', '..', '..', 'shared', 'ict-facekit'))
    return candidate if os.path.isdir(candidate) else None
