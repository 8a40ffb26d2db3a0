"""Reconstruction tool and mode visualisation on real photos/video with a tiny checkpoint model."""
import json

import cv2
import numpy as np
import pytest

import in_process
import training_data
from mofl import export as export_lib
from mofl import facemesh
from mofl import inference
from mofl import model as model_lib
from mofl import reconstruct
from mofl import sample_data
from mofl.data import face_tracking
from mofl.data import inputs as inputs_lib
from mofl.evaluation import modes
from mofl.facemodel import mesh_io

CONFIG = model_lib.ModelConfig(shape_dim=8, albedo_dim=6,
                               width_multiplier=training_data.TEST_WIDTH_MULTIPLIER)
CROP = CONFIG.image_size[0]


@pytest.fixture(scope='module')
def run_dir(tmp_path_factory):
    """A mofl.train-style run directory (tiny asset) with one checkpoint of perturbed weights,
    so identity parameters differ from input to input."""
    run = str(tmp_path_factory.mktemp('reconstruct') / 'run')
    training_data.checkpointed_run(run, CONFIG, step=7, perturb_seed=0)
    return run


@pytest.fixture(scope='module')
def loaded(run_dir):
    return inference.load_model(run_dir)


def _config(inputs, output_dir, **kwargs):
    return reconstruct.ReconstructConfig(model='unused', input=inputs,
                                         output_dir=str(output_dir), **kwargs)


def test_astronaut_files_meshes_json_and_overlay(loaded, tmp_path):
    astronaut = sample_data.astronaut_path()
    broken = tmp_path / 'broken.png'
    broken.write_bytes(b'not an image')
    inputs = ','.join([astronaut, str(broken), str(tmp_path / 'missing.jpg')])
    out = tmp_path / 'out'
    summary = reconstruct.run(_config(inputs, out), model=loaded, log=lambda m: None)
    assert (summary['reconstructed'], summary['unreadable'], summary['no_face']) == (1, 2, 0)
    assert reconstruct.exit_status(summary) == 0
    for suffix in ('.obj', '.ply', '_albedo.obj', '_albedo.ply', '.json', '_overlay.png'):
        assert (out / f'astronaut{suffix}').is_file(), suffix

    # Independent re-run of the same crop through the model: the files must hold its outputs.
    rgb = inputs_lib.read_image(astronaut)
    with facemesh.FaceTracker() as tracker:
        face = face_tracking.crop_face(tracker, rgb, face_tracking.DEFAULT_CROP_SCALE, CROP,
                                       'a', astronaut)
    outputs = loaded.reconstruct(face.crop[None].astype(np.float32) / 255.0)
    want_vertices = outputs['vertices'][0]
    num_vertices = len(want_vertices)

    vertices, triangles, colors = mesh_io.read_ply(str(out / 'astronaut.ply'))
    np.testing.assert_allclose(vertices, want_vertices, atol=1e-4)
    np.testing.assert_array_equal(triangles, loaded.triangles)
    np.testing.assert_allclose(colors, np.clip(outputs['colors'][0], 0, 1), atol=0.5 / 255 + 1e-6)
    _, _, albedo = mesh_io.read_ply(str(out / 'astronaut_albedo.ply'))
    np.testing.assert_allclose(albedo, np.clip(outputs['albedo'], 0, 1), atol=0.5 / 255 + 1e-6)
    obj_vertices, polygons = mesh_io.read_obj(str(out / 'astronaut_albedo.obj'))
    np.testing.assert_allclose(obj_vertices, want_vertices, atol=1e-5)
    np.testing.assert_array_equal(mesh_io.triangulate(polygons), loaded.triangles)
    obj_text = (out / 'astronaut.obj').read_text()
    assert obj_text.startswith('# mofl FML reconstruction of astronaut.png')
    colored_line = next(l for l in obj_text.splitlines() if l.startswith('v '))
    assert len(colored_line.split()) == 7             # v x y z r g b

    record = json.loads((out / 'astronaut.json').read_text())
    assert len(record['shape_params']) == CONFIG.shape_dim
    assert len(record['albedo_params']) == CONFIG.albedo_dim
    np.testing.assert_allclose(record['shape_params'], outputs['shape_params'], atol=1e-5)
    assert list(record['expression']) == list(training_data.tiny_assets().mesh.expression_names)
    assert len(record['sh']) == 27
    assert len(record['pose']['rotation_euler_rad']) == 3
    np.testing.assert_allclose(record['pose']['translation_mm'], outputs['translation'][0],
                               atol=1e-4)
    landmarks = {k: np.asarray(v) for k, v in record['landmarks'].items() if k != 'rmse_crop_px'}
    assert all(v.shape == (66, 2) for v in landmarks.values())
    np.testing.assert_allclose(landmarks['projected_crop_px'], outputs['landmarks'][0], atol=1e-4)
    box = record['face']['crop_box']
    # Detected landmarks in the crop map back onto the detected image landmarks.
    back = face_tracking.crop_to_image_coordinates(landmarks['detected_crop_px'],
                                                   (box['x0'], box['y0'], box['side']), CROP)
    np.testing.assert_allclose(back, landmarks['detected_image_px'], atol=1e-3)
    assert record['model']['kind'] == 'checkpoint' and record['model']['step'] == 7
    assert num_vertices == training_data.tiny_assets().mesh.num_vertices

    png = cv2.imread(str(out / 'astronaut_overlay.png'))
    assert png.shape == (CROP, 4 * CROP + 3 * 2, 3)


def test_carphone_frames_share_identity_in_a_group(loaded, tmp_path):
    out = tmp_path / 'out'
    config = _config(sample_data.carphone_path(), out, group_size=3, frame_stride=10,
                     max_frames=3)
    summary = reconstruct.run(config, model=loaded, log=lambda m: None)
    assert summary['reconstructed'] == 3 and summary['groups'] == 1
    names = summary['frames']
    assert names == ['carphone_pristine_f00000', 'carphone_pristine_f00010',
                     'carphone_pristine_f00020']
    records = [json.loads((out / f'{n}.json').read_text()) for n in names]
    for record in records[1:]:
        assert record['shape_params'] == records[0]['shape_params']
        assert record['albedo_params'] == records[0]['albedo_params']
    assert [r['input']['frame_index'] for r in records] == [0, 10, 20]
    assert all(r['group']['members'] == names for r in records)
    group_png = cv2.imread(str(out / f'{names[0]}_group000_overlay.png'))
    assert group_png.shape == (3 * CROP + 2 * 2, 4 * CROP + 3 * 2, 3)

    # Reconstructed one by one, the frames get identities of their own.
    alone = reconstruct.run(_config(sample_data.carphone_path(), tmp_path / 'alone',
                                    group_size=1, frame_stride=10, max_frames=2),
                            model=loaded, log=lambda m: None)
    assert alone['groups'] == 2
    single = [json.loads((tmp_path / 'alone' / f'{n}.json').read_text())['shape_params']
              for n in alone['frames']]
    assert single[0] != single[1]


def test_no_face_image_fails_clearly(run_dir, tmp_path):
    ramp = np.tile(np.linspace(0, 255, 320, dtype=np.uint8)[None, :, None], (240, 1, 3))
    cv2.imwrite(str(tmp_path / 'gradient.png'), ramp)
    result = in_process.run_main('mofl.reconstruct', [
        f'--model={run_dir}', f'--input={tmp_path / "gradient.png"}',
        f'--output_dir={tmp_path / "out"}'])
    assert result.returncode == reconstruct.EXIT_NOTHING_RECONSTRUCTED, result.stderr[-2000:]
    assert 'no face found in' in result.stderr and 'gradient.png' in result.stderr
    assert 'nothing was reconstructed' in result.stderr
    summary = json.loads((tmp_path / 'out' / 'summary.json').read_text())
    assert (summary['no_face'], summary['reconstructed']) == (1, 0)


def test_wrong_model_paths_are_named(tmp_path):
    with pytest.raises(inference.ModelLoadError, match='no such file or directory'):
        inference.load_model(str(tmp_path / 'nowhere'))
    with pytest.raises(inference.ModelLoadError, match='saved_model.pb.*model_config.json'):
        inference.load_model(str(tmp_path))


def test_saved_model_and_checkpoint_agree(run_dir, loaded, tmp_path):
    assets, model, step = export_lib.restore_run(checkpoint_dir=run_dir)
    export_lib.export(model, assets, str(tmp_path / 'saved'), step=step)
    served = inference.load_model(str(tmp_path / 'saved'))
    assert served.info['kind'] == 'saved_model' and served.info['step'] == 7
    assert served.expression_names == loaded.expression_names
    np.testing.assert_array_equal(served.triangles, loaded.triangles)
    images = np.random.default_rng(1).random((2, CROP, CROP, 3)).astype(np.float32)
    a, b = served.reconstruct(images), loaded.reconstruct(images)
    for name in ('vertices', 'albedo', 'colors', 'shape_params', 'landmarks'):
        np.testing.assert_allclose(a[name], b[name], rtol=1e-4, atol=1e-4, err_msg=name)


def test_pca_matches_covariance_eigendecomposition():
    rng = np.random.default_rng(3)
    data = rng.normal(size=(12, 5)) @ np.diag([5.0, 3.0, 1.0, 0.5, 0.1]) + 7.0
    analysis = modes.pca(data, 3)
    eigenvalues, eigenvectors = np.linalg.eigh(np.cov(data, rowvar=False))
    order = np.argsort(eigenvalues)[::-1]
    np.testing.assert_allclose(analysis.stddev ** 2, eigenvalues[order[:3]], rtol=1e-8)
    np.testing.assert_allclose(analysis.explained_variance_ratio,
                               eigenvalues[order[:3]] / eigenvalues.sum(), rtol=1e-8)
    for k in range(3):
        assert abs(abs(analysis.components[k] @ eigenvectors[:, order[k]]) - 1) < 1e-8
    full = modes.pca(data, 5)               # all modes: the data comes back exactly
    np.testing.assert_allclose(full.mean + full.coefficients @ full.components, data, atol=1e-9)
    assert modes.pca(data[:3], 10).components.shape == (2, 5)   # rank S - 1


def test_visualize_modes_writes_png_and_npz(run_dir, tmp_path):
    data = training_data.write_records(str(tmp_path / 'data'), num_samples=4, num_frames=2)
    output = tmp_path / 'modes.png'
    result = in_process.run_main('tools.visualize_modes', [
        f'--model={run_dir}', f'--data={data}', '--max_samples=4', '--num_modes=2',
        f'--output={output}'])
    assert result.returncode == 0, result.stderr[-2000:]
    png = cv2.imread(str(output))
    block = 3 * CROP + 2 * 2
    assert png.shape == (22 + 2 + 2 * CROP + 2, 3 * block + 2 * modes.BLOCK_GAP, 3)
    arrays = np.load(tmp_path / 'modes.npz')
    num_vertices = training_data.tiny_assets().mesh.num_vertices
    assert int(arrays['num_samples']) == 4
    assert arrays['shape_mean'].shape == (num_vertices, 3)
    assert arrays['shape_components'].shape == (3, num_vertices, 3)    # rank 4 − 1
    assert arrays['albedo_components'].shape == (3, num_vertices, 3)
    ratios = arrays['shape_explained_variance_ratio']
    assert np.all(np.diff(ratios) <= 1e-7) and ratios.sum() == pytest.approx(1.0, abs=1e-4)
    assert int(arrays['model_step']) == 7
