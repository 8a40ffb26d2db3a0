"""SavedModel export: the binary, its outputs against the Keras model, metadata, error paths."""
import json
import os

import numpy as np
import pytest
import tensorflow as tf

import in_process
import training_data
from mofl import export as export_lib
from mofl import model as model_lib
from mofl import run_dir as run_dir_lib
from mofl import train_config as train_config_lib

CONFIG = model_lib.ModelConfig(shape_dim=8, albedo_dim=6,
                               width_multiplier=training_data.TEST_WIDTH_MULTIPLIER)


def _perturb(model, rng, relative=0.1):
    """Moves every weight off its initial value, so a missed restore cannot go unnoticed."""
    for variable in model.variables:
        if 'float' in str(variable.dtype):
            value = variable.numpy()
            scale = relative * (float(np.std(value)) + 1e-3)
            variable.assign(value + rng.normal(0.0, scale, value.shape).astype(np.float32))


def _snapshot(model):
    """Every weight, in the model's (deterministic) variable order."""
    return [v.numpy().copy() for v in model.variables]


@pytest.fixture(scope='module')
def trained_run(tmp_path_factory):
    """A run directory as mofl.train leaves it, with checkpoints at steps 1 and 2."""
    run_dir = str(tmp_path_factory.mktemp('export') / 'run')
    assets = training_data.tiny_assets()
    model = model_lib.FmlModel(assets, CONFIG)
    run_dir_lib.build_model(model, CONFIG)
    run_dir_lib.save_run_description(run_dir, assets, CONFIG, train_config_lib.TrainConfig())
    step = tf.Variable(0, dtype=tf.int64)
    manager = tf.train.CheckpointManager(tf.train.Checkpoint(model=model, step=step),
                                         os.path.join(run_dir, 'checkpoints'), max_to_keep=5)
    rng = np.random.default_rng(0)
    weights = {}
    for number in (1, 2):
        _perturb(model, rng)
        step.assign(number)
        manager.save(checkpoint_number=number)
        weights[number] = _snapshot(model)
    return run_dir, assets, model, weights


@pytest.fixture(scope='module')
def exported(trained_run):
    """Runs the export binary on the run's checkpoints/ folder (latest checkpoint, step 2)."""
    run_dir = trained_run[0]
    output_dir = os.path.join(os.path.dirname(run_dir), 'saved_model')
    result = in_process.run_main('tools.export_savedmodel', [
        f'--checkpoint_dir={os.path.join(run_dir, "checkpoints")}', f'--output_dir={output_dir}'])
    assert result.returncode == 0, result.stderr[-3000:]
    return output_dir, result.stdout


@pytest.fixture(scope='module')
def loaded(exported):
    return tf.saved_model.load(exported[0])


def _images(num_frames, seed):
    yy, xx = np.mgrid[0:240, 0:240] / 240.0
    rng = np.random.default_rng(seed)
    frames = []
    for _ in range(num_frames):
        c = rng.random(3)
        smooth = 0.5 + 0.3 * np.sin(6 * xx[..., None] * c + 4 * yy[..., None] * c[::-1])
        frames.append(smooth + 0.05 * rng.random((240, 240, 3)))
    return np.clip(np.stack(frames), 0.0, 1.0).astype(np.float32)


def _keras_reference(model, images):
    """What the signature must return, from the Keras model with B = 1, M = N."""
    outputs = {k: v[0].numpy() for k, v in model(images[None]).items()
               if k in export_lib.OUTPUTS}
    outputs['identity_vertices'] = model.face_model.identity_vertices(
        tf.constant(outputs['shape_params'][None]))[0].numpy()
    outputs['triangles'] = model.triangles.numpy()
    return outputs


def _assert_outputs_equal(got, want):
    assert set(got) == set(want) == set(export_lib.OUTPUTS)
    for name, value in want.items():
        assert got[name].shape == value.shape, name
        if value.dtype.kind in 'biu':
            np.testing.assert_array_equal(got[name], value, err_msg=name)
        else:
            np.testing.assert_allclose(got[name], value, rtol=1e-5, atol=1e-5, err_msg=name)


@pytest.mark.parametrize('num_frames', [1, 3])
def test_signature_matches_keras_model(trained_run, loaded, num_frames):
    _, assets, model, _ = trained_run
    images = _images(num_frames, seed=num_frames)
    got = {k: v.numpy() for k, v in
           loaded.signatures['serving_default'](images=tf.constant(images)).items()}
    want = _keras_reference(model, images)
    _assert_outputs_equal(got, want)
    v, b = assets.mesh.num_vertices, assets.mesh.num_expressions
    assert got['vertices'].shape == (num_frames, v, 3)
    assert got['expression'].shape == (num_frames, b)
    assert got['landmarks'].shape == (num_frames, 66, 2)
    # The per-frame geometry is the identity plus that frame's blendshapes (eq. 3), in NumPy.
    offsets = np.einsum('fb,bvc->fvc', got['expression'], assets.mesh.expression_basis)
    np.testing.assert_allclose(got['vertices'], got['identity_vertices'][None] + offsets,
                               rtol=1e-5, atol=1e-3)


def test_metadata_and_description(trained_run, exported, loaded):
    _, assets, _, _ = trained_run
    output_dir, stdout = exported
    meta = {k: v.numpy() for k, v in loaded.signatures['metadata']().items()}
    mesh = assets.mesh
    np.testing.assert_array_equal(meta['template'], mesh.vertices)
    np.testing.assert_array_equal(meta['triangles'], mesh.triangles)
    np.testing.assert_array_equal(meta['landmark_indices'], mesh.landmark_indices)
    np.testing.assert_array_equal(meta['contour_candidates'], mesh.contour_candidates)
    np.testing.assert_array_equal(meta['face_mask'], mesh.face_mask)
    assert [n.decode() for n in meta['expression_names']] == [str(n) for n in
                                                             mesh.expression_names]
    assert meta['focal_length'] == pytest.approx(CONFIG.focal_length)
    np.testing.assert_array_equal(meta['image_size'], [240, 240])
    np.testing.assert_allclose(meta['principal_point'], [120.0, 120.0])
    assert (int(meta['shape_dim']), int(meta['albedo_dim'])) == (8, 6)
    assert int(meta['step']) == 2                      # the latest checkpoint was exported
    assert meta['asset_source'].decode() == mesh.source
    np.testing.assert_array_equal(loaded.template.numpy(), mesh.vertices)   # also attributes

    with open(os.path.join(output_dir, export_lib.SIGNATURE_FILE)) as f:
        description = json.load(f)
    outputs = description['signatures']['serving_default']['outputs']
    assert set(outputs) == set(export_lib.OUTPUTS)
    assert 'mm' in outputs['vertices']['description']
    assert description['sizes'] == {'V': mesh.num_vertices, 'T': len(mesh.triangles),
                                    'b': mesh.num_expressions, 'g': 8, 'a': 6}
    assert 'Exported step 2' in stdout and 'identity_vertices' in stdout


def test_load_exported_returns_numpy(trained_run, exported):
    _, _, model, _ = trained_run
    reconstruct, metadata = export_lib.load_exported(exported[0])
    frames = (_images(2, seed=7) * 255).round().astype(np.uint8)
    got = reconstruct(frames)                              # uint8 is scaled to [0, 1]
    assert all(isinstance(v, np.ndarray) for v in got.values())
    _assert_outputs_equal(got, _keras_reference(model, frames.astype(np.float32) / 255.0))
    single = reconstruct(frames[0].astype(np.float32) / 255.0)        # one [H, W, 3] frame
    assert single['vertices'].shape == (1,) + got['vertices'].shape[1:]
    assert metadata['asset_source'] == 'synthetic'
    assert list(metadata['expression_names']) == [str(n) for n in
                                                  trained_run[1].mesh.expression_names]


def test_restore_specific_checkpoint(trained_run):
    run_dir, _, _, weights = trained_run
    prefix = os.path.join(run_dir, 'checkpoints', 'ckpt-1')
    _, model, step = export_lib.restore_run(checkpoint=prefix)
    assert step == 1
    restored = _snapshot(model)
    assert len(restored) == len(weights[1])
    for index, (got, want) in enumerate(zip(restored, weights[1])):
        np.testing.assert_array_equal(got, want, err_msg=f'variable {index}')
    with pytest.raises(FileNotFoundError, match='ckpt-9'):
        export_lib.restore_run(run_dir, os.path.join(run_dir, 'checkpoints', 'ckpt-9'))


def test_missing_run_description_names_the_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match=str(tmp_path)):
        export_lib.restore_run(str(tmp_path))


def test_binary_exits_1_without_checkpoint(tmp_path):
    run_dir = str(tmp_path / 'untrained_run')
    run_dir_lib.save_run_description(run_dir, training_data.tiny_assets(), CONFIG,
                                     train_config_lib.TrainConfig())
    output_dir = str(tmp_path / 'saved_model')
    result = in_process.run_main('tools.export_savedmodel', [f'--checkpoint_dir={run_dir}',
                                                             f'--output_dir={output_dir}'])
    assert result.returncode == 1
    assert os.path.join(run_dir, 'checkpoints') in result.stderr
    assert 'no checkpoint' in result.stderr
    assert not os.path.exists(output_dir)


def test_outputs_of_older_saved_models_get_todays_names():
    old = {'rotation': 1, 'reflectance_params': 2, 'vertices': 3}
    assert export_lib.rename_legacy_outputs(old) == {'euler_angles': 1, 'albedo_params': 2,
                                                 'vertices': 3}
    current = {'euler_angles': 1, 'albedo_params': 2}
    assert export_lib.rename_legacy_outputs(current) == current
