"""The evaluation binary: synthetic Table 1, real-scan protocol, FaceWarehouse Table 2,
photometric Table 4, errors."""
import json

import numpy as np
import pytest

import in_process
import training_data
from mofl import model as model_lib
from mofl import sample_data
from mofl.evaluation import datasets
from mofl.evaluation import protocols
from mofl.facemodel import mesh_io

CONFIG = model_lib.ModelConfig(shape_dim=4, albedo_dim=4,
                               width_multiplier=training_data.TEST_WIDTH_MULTIPLIER)


@pytest.fixture(scope='module')
def setup(tmp_path_factory):
    base = tmp_path_factory.mktemp('evaluate')
    runs = {}
    for m, seed in ((1, 0), (2, 1)):
        runs[m] = str(base / f'run_m{m}')
        assets, _ = training_data.checkpointed_run(runs[m], CONFIG, perturb_seed=seed)
    # Ground truth = the template itself, so the "template, neutral" baseline is exactly 0.
    gt = np.broadcast_to(assets.mesh.vertices, (4,) + assets.mesh.vertices.shape)
    data = training_data.write_records(str(base / 'data'), num_samples=2, num_frames=4,
                                       ground_truth={'gt_expression_vertices': gt})
    return base, runs, data, assets


def _run(*args):
    return in_process.run_main('mofl.evaluate', args)


def test_synthetic_table1_layout_and_numbers(setup):
    base, runs, data, _ = setup
    out = str(base / 'table1')
    result = _run('--dataset=synthetic', f'--data={data}', f'--output={out}',
                  f'--runs=1:{runs[1]},2:{runs[2]}')
    assert result.returncode == 0, result.stderr[-3000:]
    assert 'Template, neutral' in result.stdout
    raw = json.load(open(out + '.json'))['vertex']
    np.testing.assert_allclose(raw['Template, neutral'], 0.0, atol=1e-4)
    # Every configuration is scored on the same 2 samples × 4 frames.
    for key in ('train1_test1', 'train1_test2', 'train2_test1', 'train2_test2'):
        assert len(raw[key]) == 8
        assert all(np.isfinite(raw[key]))
    assert open(out + '.md').read().count('| Mean |') == 1
    # Train M = 2 at test M = 1 and 2 feeds different groupings, so the numbers differ.
    assert raw['train2_test1'] != raw['train2_test2']


def test_real_scan_protocol_on_a_photo(setup, tmp_path):
    base, runs, _, assets = setup
    scan_path = str(tmp_path / 'scan.npz')
    datasets.save_npz_scan(scan_path, datasets.Scan(
        vertices=assets.mesh.vertices.astype(np.float64), triangles=assets.mesh.triangles,
        landmarks=None, name='template'))
    pairs = tmp_path / 'pairs.csv'
    pairs.write_text(f'# scan,images\n{scan_path},{sample_data.astronaut_path()}\n')
    table = protocols.real_scans({1: runs[1]}, str(pairs), with_scale=False)
    values = table['surface']['results'][(1, 1)]
    assert len(values) == 1 and 0.0 <= values[0] < 50.0


def _write_facewarehouse_obj(path, vertices, triangles):
    """The template in FaceWarehouse's .obj format: its 11,510-vertex count is reached by
    repeating the template's vertices (no face uses the copies), so the surface and the
    vertex cloud are the template's."""
    mesh_io.write_obj(path, np.resize(vertices, (datasets.FACEWAREHOUSE_NUM_VERTICES, 3)),
                      triangles)


def test_facewarehouse_meshes_print_table2(setup, tmp_path):
    base, runs, _, assets = setup
    scan_path = str(tmp_path / 'fw_template.obj')
    _write_facewarehouse_obj(scan_path, assets.mesh.vertices, assets.mesh.triangles)
    assert len(datasets.load_scan(scan_path).vertices) == datasets.FACEWAREHOUSE_NUM_VERTICES
    pairs = tmp_path / 'pairs.csv'
    pairs.write_text(f'{scan_path},{sample_data.astronaut_path()}\n')
    out = str(tmp_path / 'table2')
    result = _run('--dataset=facewarehouse', f'--pairs={pairs}', f'--output={out}',
                  f'--runs=1:{runs[1]},2:{runs[2]}')
    assert result.returncode == 0, result.stderr[-3000:]
    lines = [line for line in open(out + '.md').read().splitlines() if line.startswith('|')]
    header = [cell.strip() for cell in lines[0].strip('|').split('|')]
    assert header == ['', 'Ours, train M = 1, test M = 1', 'Ours, train M = 2, test M = 1']
    assert [line.split('|')[1].strip() for line in lines[2:]] == ['Mean', 'SD', 'Meshes']
    raw = json.load(open(out + '.json'))['surface']
    assert set(raw) == {'train1_test1', 'train2_test1'}
    assert all(len(v) == 1 and 0.0 <= v[0] < 50.0 for v in raw.values()), raw
    # A scan that is not a FaceWarehouse mesh is refused, naming it.
    npz = str(tmp_path / 'scan.npz')
    datasets.save_npz_scan(npz, datasets.load_scan(scan_path))
    pairs.write_text(f'{npz},{sample_data.astronaut_path()}\n')
    result = _run('--dataset=facewarehouse', f'--pairs={pairs}', f'--runs=1:{runs[1]}')
    assert result.returncode == 1 and 'scan.npz' in result.stderr


def test_photometric_table(setup):
    base, runs, data, _ = setup
    table = protocols.photometric({4: runs[1]}, data, max_samples=1)
    mean, sd, count = table[4]
    assert count == 4 and 0.0 < mean < 255.0 and sd >= 0.0


def test_bad_arguments_exit_1(setup):
    _, runs, _, _ = setup
    result = _run('--dataset=synthetic', f'--runs=one:{runs[1]}', '--data=x')
    assert result.returncode == 1 and 'KEY:RUN_DIR' in result.stderr
    result = _run('--dataset=scans', f'--runs=1:{runs[1]}')
    assert result.returncode == 1 and '--pairs' in result.stderr
