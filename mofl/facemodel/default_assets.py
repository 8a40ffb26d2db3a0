"""Which face asset the demo and the tools use by default, built on first use and cached.

ICT-FaceKit when `$MOFL_ICT_DIR` or `../shared/ict-facekit` beside the checkout exists, else the
mediapipe asset built from registry packages only (BUILD_NOTES.md "Face asset building"). Every
caller logs which one.
"""
import os

from absl import logging
import numpy as np

from mofl.facemodel import assets as assets_lib

# Bump when the way sources or graphs are built changes, so cached assets are rebuilt.
BUILDER_VERSION = 4   # 4: meshes carry the mediapipe correspondence
PAPER_NUM_NODES = 521     # |G| of the paper's deformation graph
COARSE_NUM_NODES = 260    # |G| on a ~2,500-vertex decimated mesh (node spacing ~1.4× the full's)


def default_source():
    """Returns ('ict', ict_dir) when ICT-FaceKit data is available, else ('mediapipe', None)."""
    ict_dir = assets_lib.default_ict_dir()
    if ict_dir is not None:
        return 'ict', ict_dir
    return 'mediapipe', None


def cache_dir():
    """$MOFL_CACHE_DIR, else ~/.cache/mofl."""
    return os.environ.get('MOFL_CACHE_DIR', os.path.join(os.path.expanduser('~'), '.cache', 'mofl'))


def build_source_mesh(source, ict_dir=None, image_path=None, bfm_model=None,
                      bfm_expressions=None, bfm_landmarks=None, bfm_units_to_mm=0.001):
    """Runs one asset source and returns its SourceMesh, with the mediapipe correspondence
    (`mofl.facemodel.mediapipe_correspondence`) attached."""
    from mofl.facemodel import mediapipe_correspondence
    if source == 'ict':
        from mofl.facemodel.sources import ict
        mesh = ict.build_source(ict_dir or assets_lib.default_ict_dir())
    elif source == 'mediapipe':
        from mofl.facemodel.sources import mediapipe_source
        mesh = mediapipe_source.build_source(image_path=image_path)
    elif source == 'bfm':
        from mofl.facemodel.sources import bfm
        mesh = bfm.build_source(bfm_model, bfm_expressions, bfm_landmarks, bfm_units_to_mm)
    else:
        raise ValueError(f'unknown asset source {source!r} (use ict, mediapipe or bfm)')
    mesh.mediapipe_vertices, mesh.mediapipe_residual_mm = mediapipe_correspondence.for_source(mesh)
    mapped = mesh.mediapipe_vertices >= 0
    logging.info('mediapipe correspondence of the %s mesh: %d of %d FaceMesh points on a vertex, '
                 'residual median %.2f mm, max %.2f mm', source, int(mapped.sum()),
                 mapped.size, float(np.median(mesh.mediapipe_residual_mm[mapped])),
                 float(mesh.mediapipe_residual_mm[mapped].max()))
    return mesh


def load_default_assets(num_nodes=None, skin_k=4, target_vertices=0):
    """Loads (building and caching on first use) the default face asset.

    Args:
        num_nodes: deformation graph size |G|; default `PAPER_NUM_NODES` for the full mesh,
            `COARSE_NUM_NODES` for a decimated one.
        skin_k: nodes per vertex in the skinning.
        target_vertices: > 0: the mesh decimated to about this many vertices
            (`mofl.facemodel.decimation`; a source mesh that has no more is used as it is, with
            the smaller graph).

    Returns:
        mofl.facemodel.assets.FaceAssets.
    """
    from mofl.facemodel import graph as graph_lib
    source, ict_dir = default_source()
    if num_nodes is None:
        num_nodes = COARSE_NUM_NODES if target_vertices > 0 else PAPER_NUM_NODES
    coarse = f'-v{int(target_vertices)}' if target_vertices > 0 else ''
    path = os.path.join(cache_dir(), 'assets',
                        f'{source}{coarse}-b{BUILDER_VERSION}-g{num_nodes}-k{skin_k}.npz')
    where = f' from {ict_dir}' if ict_dir else ' (no ICT-FaceKit data found)'
    if os.path.exists(path):
        try:
            assets = assets_lib.FaceAssets.load(path)
            logging.info('Using the %s face asset%s, cached at %s', source, where, path)
            return assets
        except assets_lib.AssetError as e:
            logging.warning('Rebuilding the cached asset: %s', e)
    logging.info('Building the %s face asset%s into %s', source, where, path)
    mesh = build_source_mesh(source, ict_dir=ict_dir)
    if target_vertices > 0:
        if target_vertices < mesh.num_vertices:
            from mofl.facemodel import decimation
            mesh = decimation.decimate_mesh(mesh, target_vertices)
        else:
            logging.info('The %s mesh has %d <= %d vertices: not decimated', source,
                         mesh.num_vertices, target_vertices)
    assets = graph_lib.build_assets(mesh, num_nodes=num_nodes, k=skin_k)
    assets.save(path)
    return assets


def load_asset(spec):
    """The face asset a binary's `--asset` names.

    Args:
        spec: None or '' or 'default': the default asset; 'default:N': the default asset
            decimated to about N vertices (CPU-scale training; the full mesh when the source has
            no more than N); anything else: the path of an asset .npz (`tools.build_assets`).

    Returns:
        (FaceAssets, a description for logs and manifests).

    Raises:
        assets.AssetError: for a missing or invalid file, or a malformed 'default:N'.
    """
    if not spec or spec == 'default':
        source, _ = default_source()
        return load_default_assets(), f'default ({source})'
    if spec.startswith('default:'):
        try:
            target = int(spec.split(':', 1)[1])
        except ValueError:
            raise assets_lib.AssetError(f'--asset={spec}: want default:VERTICES, e.g. '
                                        'default:2500') from None
        source, _ = default_source()
        assets = load_default_assets(target_vertices=target)
        return assets, f'default ({source}, {assets.mesh.num_vertices} vertices)'
    logging.info('Using the face asset %s', spec)
    return assets_lib.FaceAssets.load(spec), spec


def full_source_mesh(mesh, ict_dir=None):
    """The full SourceMesh a decimated asset mesh was made from (rebuilt from its source and
    checked against the coarse vertices), or `mesh` itself when it is not decimated.

    Raises:
        assets.AssetError: when this machine's source mesh is not the one the asset was
            decimated from.
    """
    if mesh.full_vertex_indices is None:
        return mesh
    full = build_source_mesh(mesh.source, ict_dir=ict_dir)
    same = (full.num_vertices == mesh.full_num_vertices and np.allclose(
        full.vertices[mesh.full_vertex_indices], mesh.vertices, atol=1e-3))
    if not same:
        raise assets_lib.AssetError(
            f'the decimated {mesh.source} asset was not made from the {mesh.source} mesh this '
            f'machine builds ({full.num_vertices} vertices); rebuild it with tools.build_assets')
    return full
