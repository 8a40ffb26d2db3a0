"""Tests of the direct reference fits (`mofl.fitting`, `tools.direct_fit`)."""
import json

import numpy as np
import pytest

import in_process
import training_data
from mofl import fitting
from mofl.data import synthetic
from mofl.data import synthetic_identity
from mofl.evaluation import metrics

@pytest.fixture(scope='module')
def scene():
    """Small grid-face assets and 3 identities × 2 frames rendered from its procedural model."""
    assets = training_data.tiny_assets(n=21, num_nodes=30)
    identity_model = synthetic_identity.procedural_identity_model(assets.mesh)
    generator = synthetic.SyntheticGenerator(assets.mesh, identity_model, seed=5)
    samples = generator.render([generator.scene(generator.identity(i), 0, 2)
                                for i in range(3)])
    return assets, identity_model, samples


def _fit(scene, identity, steps=150):
    assets, identity_model, samples = scene
    config = fitting.FitConfig(identity=identity, pose_steps=steps, identity_steps=steps,
                               learning_rate=0.02)
    fitted = fitting.fit_samples(
        assets, np.stack([s.images for s in samples]) / 255.0,
        np.stack([s.landmarks for s in samples]),
        np.stack([s.landmark_confidence for s in samples]), config,
        identity_basis=identity_model.basis,
        initial_rotation=np.stack([s.scene.euler_angles for s in samples]))
    identity_error = [metrics.vertex_rmse(p, s.scene.identity.vertices,
                                          assets.mesh.face_mask)['rmse_mm']
                      for p, s in zip(fitted['identity_vertices'], samples)]
    return fitted, float(np.mean(identity_error))


def test_ground_truth_model_fit_recovers_identity_better_than_the_template(scene):
    """With the identity model the data came from, the fit gets closer to the true neutral
    meshes than the template does, and the landmarks are fitted to a few pixels."""
    assets, _, samples = scene
    template_error = np.mean([metrics.vertex_rmse(assets.mesh.vertices,
                                                  s.scene.identity.vertices,
                                                  assets.mesh.face_mask)['rmse_mm']
                              for s in samples])
    fitted, error = _fit(scene, 'ground_truth')
    assert error < 0.7 * template_error, (error, template_error)
    assert fitted['landmark_rmse_px'].max() < 6.0
    assert fitted['vertices'].shape == (3, 2, assets.mesh.num_vertices, 3)


def test_template_fit_keeps_the_template_and_graph_fit_moves_it(scene):
    assets = scene[0]
    fitted, _ = _fit(scene, 'template', steps=20)
    np.testing.assert_allclose(fitted['identity_vertices'],
                               np.broadcast_to(assets.mesh.vertices,
                                               fitted['identity_vertices'].shape), atol=1e-5)
    fitted, _ = _fit(scene, 'graph', steps=20)
    assert np.abs(fitted['identity_vertices'] - assets.mesh.vertices).max() > 1e-3


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match='identity must be one of'):
        fitting.FitConfig(identity='pca')
    assets = training_data.tiny_assets()
    with pytest.raises(ValueError, match='needs identity_basis'):
        fitting.DirectFit(assets, 1, 1, fitting.FitConfig(identity='ground_truth'))
    with pytest.raises(ValueError, match='identity basis must be'):
        fitting.LinearIdentityFaceModel(assets, np.zeros([2, 5, 3]), albedo_dim=1)


def test_binary_on_a_synthetic_set_and_on_records_without_ground_truth(tmp_path):
    """`tools.direct_fit` reads the asset and identity model from the data's manifest, writes
    the table; records without ground truth are refused with the reason."""
    asset_path, data = training_data.write_synthetic_set(str(tmp_path), num_identities=2, seed=2)
    output = str(tmp_path / 'fit' / 'DIRECT')
    result = in_process.run_main('tools.direct_fit', [
        f'--data={data}/train-*', '--num_frames=2', '--pose_steps=5', '--identity_steps=5',
        f'--output={output}'])
    assert result.returncode == 0, result.stderr[-3000:]
    table = open(output + '.md').read()
    for label in ('Template (α = 0)', 'Free graph deformation', 'Ground-truth identity model'):
        assert label in table
    saved = json.load(open(output + '.json'))
    assert len(saved['results']['graph']['frame_mm']) == 2      # 1 sample × 2 frames

    plain = training_data.write_records(str(tmp_path / 'plain'), num_samples=1,
                                        num_frames=2, num_shards=1)
    result = in_process.run_main('tools.direct_fit', [
        f'--data={plain}', '--num_frames=2', f'--asset={asset_path}', '--identity=template'])
    assert result.returncode == 1
    assert 'no gt_vertices' in result.stderr
