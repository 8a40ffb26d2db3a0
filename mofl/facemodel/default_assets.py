"""Which face asset the demo and the tools use by default, built on first use and cached.

ICT-FaceKit when `$MOFL_ICT_DIR` or `../shared/ict-facekit` beside the checkout exists, else the
mediapipe asset built from registry packages only (BUILD_NOTES.md "Face assets"). Every caller
logs which one.
"""
import os

from absl import logging

from mofl.facemodel import assets as assets_lib

# Bump when the way sources or graphs are built changes, so cached assets are rebuilt.
BUILDER_VERSION = 2


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
    """Runs one asset source and returns its SourceMesh."""
    if source == 'ict':
        from mofl.facemodel.sources import ict
        return ict.build_source(ict_dir or assets_lib.default_ict_dir())
    if source == 'mediapipe':
        from mofl.facemodel.sources import mediapipe_source
        return mediapipe_source.build_source(image_path=image_path)
    if source == 'bfm':
        from mofl.facemodel.sources import bfm
        return bfm.build_source(bfm_model, bfm_expressions, bfm_landmarks, bfm_units_to_mm)
    raise ValueError(f'unknown asset source {source!r} (use ict, mediapipe or bfm)')


def load_default_assets(num_nodes=521, skin_k=4):
    """Loads (building and caching on first use) the default face asset.

    Returns:
        mofl.facemodel.assets.FaceAssets.
    """
    from mofl.facemodel import graph as graph_lib
    source, ict_dir = default_source()
    path = os.path.join(cache_dir(), 'assets',
                        f'{source}-b{BUILDER_VERSION}-g{num_nodes}-k{skin_k}.npz')
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
    assets = graph_lib.build_assets(mesh, num_nodes=num_nodes, k=skin_k)
    assets.save(path)
    return assets
