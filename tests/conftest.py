"""Shared pytest fixtures: the ICT face asset (built once per session) and small synthetic data."""
import os

import pytest

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')


@pytest.fixture(scope='session')
def ict_dir():
    """The ICT-FaceKit folder; tests that need it skip (with the reason) when it is absent."""
    from mofl.facemodel import assets
    path = assets.default_ict_dir()
    if path is None:
        pytest.skip('ICT-FaceKit data not found ($MOFL_ICT_DIR or ../shared/ict-facekit)')
    return path


@pytest.fixture(scope='session')
def ict_assets(ict_dir):
    """FaceAssets of the ICT face area with the paper's 521-node graph."""
    from mofl.facemodel import graph
    from mofl.facemodel.sources import ict
    return graph.build_assets(ict.build_source(ict_dir), num_nodes=521, k=4)
