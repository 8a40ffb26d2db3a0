"""Asset sources (BFM file formats), mesh I/O round trips and the build_assets binary."""
import os

import h5py
import numpy as np
import pytest
import scipy.io

import in_process
import synthetic_face
from mofl.facemodel import assets as assets_lib
from mofl.facemodel import default_assets
from mofl.facemodel import mesh_io
from mofl.facemodel.sources import bfm


def _write_bfm_files(tmp_path, hdf5=False):
    """A tiny BFM-2009-style model (µm, interleaved, 1-based clockwise `tl`) + expressions."""
    face = synthetic_face.grid_face(n=25)
    v = face['vertices'].astype(np.float64)
    model = {'shapeMU': (v * 1000.0).reshape(-1, 1),
             'tl': face['triangles'][:, ::-1].astype(np.float64) + 1,    # BFM winds clockwise
             'texMU': np.tile([[180.0, 130.0, 110.0]], (len(v), 1)).reshape(-1, 1)}
    model_path = str(tmp_path / '01_MorphableModel.mat')
    if hdf5:
        # MATLAB v7.3: HDF5 behind a 512-byte MATLAB header; arrays stored transposed.
        with h5py.File(model_path, 'w', userblock_size=512) as f:
            for k, a in model.items():
                f[k] = a.T
        with open(model_path, 'r+b') as f:
            f.write(b'MATLAB 7.3 MAT-file, Platform: GLNXA64'.ljust(116) + b'\x00' * 8
                    + b'\x00\x02IM')
    else:
        scipy.io.savemat(model_path, model)
    w_exp = face['expression_basis'].reshape(2, -1).T * 1000.0                 # [3N, b]
    expr_path = str(tmp_path / 'Model_Expression.mat')
    scipy.io.savemat(expr_path, {'w_exp': w_exp, 'sigma_exp': np.array([[2.0], [0.5]])})
    lm_path = str(tmp_path / 'bfm68.txt')
    np.savetxt(lm_path, face['landmarks68'], fmt='%d')
    return face, model_path, expr_path, lm_path


@pytest.mark.parametrize('hdf5', [False, True])
def test_bfm_source_reads_matlab_files(tmp_path, hdf5):
    face, model_path, expr_path, lm_path = _write_bfm_files(tmp_path, hdf5=hdf5)
    mesh = bfm.build_source(model_path, expr_path, lm_path)
    mesh.validate()
    np.testing.assert_allclose(mesh.vertices, face['vertices'], atol=1e-3)         # µm → mm
    np.testing.assert_allclose(mesh.expression_basis, face['expression_basis'], atol=1e-3)
    np.testing.assert_allclose(mesh.expression_sigma, [2.0, 0.5])
    # Clockwise BFM triangles were flipped to our counter-clockwise (+z facing) rule.
    np.testing.assert_array_equal(np.sort(mesh.triangles, 1), np.sort(face['triangles'], 1))
    tri = mesh.vertices[mesh.triangles]
    normal_z = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])[:, 2]
    assert np.mean(normal_z > 0) > 0.95
    np.testing.assert_allclose(mesh.skin_color, [180 / 255, 130 / 255, 110 / 255], atol=1e-6)
    # The open-mouth template parts the lips.
    gap = lambda verts: (verts[face['landmarks68'][62], 1] - verts[face['landmarks68'][66], 1])
    assert gap(mesh.open_mouth_vertices) > gap(mesh.vertices) + 3.0


def test_bfm_source_rejects_mismatched_files(tmp_path):
    _, model_path, _, lm_path = _write_bfm_files(tmp_path)
    bad = str(tmp_path / 'bad_expr.npz')
    np.savez(bad, w_exp=np.zeros((30, 2)), sigma_exp=np.ones(2))
    with pytest.raises(ValueError, match='bad_expr.npz'):
        bfm.build_source(model_path, bad, lm_path)
    short = str(tmp_path / 'lm.txt')
    np.savetxt(short, np.arange(10), fmt='%d')
    with pytest.raises(ValueError, match='68 vertex indices'):
        bfm.build_source(model_path, str(tmp_path / 'Model_Expression.mat'), short)


def test_obj_and_ply_round_trip(tmp_path):
    face = synthetic_face.grid_face(n=9)
    v, tri = face['vertices'], face['triangles']
    colors = np.random.default_rng(0).random(v.shape).astype(np.float32)
    mesh_io.write_obj(str(tmp_path / 'm.obj'), v, tri, colors=colors, header='licence line')
    v2, polys = mesh_io.read_obj(str(tmp_path / 'm.obj'))
    np.testing.assert_allclose(v2, v, atol=1e-5)
    np.testing.assert_array_equal(mesh_io.triangulate(polys), tri)
    mesh_io.write_ply(str(tmp_path / 'm.ply'), v, tri, colors=colors)
    v3, tri3, c3 = mesh_io.read_ply(str(tmp_path / 'm.ply'))
    np.testing.assert_allclose(v3, v, atol=1e-5)
    np.testing.assert_array_equal(tri3, tri)
    np.testing.assert_allclose(c3, colors, atol=1 / 255)


def test_obj_quads_are_fan_triangulated_and_errors_name_the_file(tmp_path):
    path = tmp_path / 'quad.obj'
    path.write_text('v 0 0 0\nv 1 0 0\nv 1 1 0\nv 0 1 0\nf 1/1 2/2 3/3 4/4\n')
    v, polys = mesh_io.read_obj(str(path))
    np.testing.assert_array_equal(mesh_io.triangulate(polys), [[0, 1, 2], [0, 2, 3]])
    empty = tmp_path / 'empty.obj'
    empty.write_text('# nothing\n')
    with pytest.raises(mesh_io.MeshFormatError, match='empty.obj'):
        mesh_io.read_obj(str(empty))


def test_default_source_falls_back_to_mediapipe(monkeypatch, tmp_path):
    monkeypatch.setenv('MOFL_ICT_DIR', str(tmp_path / 'does-not-exist'))
    assert default_assets.default_source() == ('mediapipe', None)
    os.makedirs(tmp_path / 'ict')
    monkeypatch.setenv('MOFL_ICT_DIR', str(tmp_path / 'ict'))
    assert default_assets.default_source() == ('ict', str(tmp_path / 'ict'))


def _run_build_assets(*args):
    return in_process.run_main('tools.build_assets', args)


def test_build_assets_binary_bfm_with_preview(tmp_path):
    _, model_path, expr_path, lm_path = _write_bfm_files(tmp_path)
    out, png = str(tmp_path / 'bfm.npz'), str(tmp_path / 'bfm.png')
    result = _run_build_assets('--source=bfm', f'--bfm_model={model_path}',
                               f'--bfm_expressions={expr_path}', f'--bfm_landmarks={lm_path}',
                               '--num_nodes=40', f'--output={out}', f'--preview={png}')
    assert result.returncode == 0, result.stderr
    assert '40 graph nodes' in result.stdout
    assets = assets_lib.FaceAssets.load(out)
    assert assets.graph.num_nodes == 40 and assets.mesh.source == 'bfm'
    assert os.path.getsize(png) > 10000


def test_build_assets_binary_reports_bad_input(tmp_path):
    result = _run_build_assets('--source=ict', f'--ict_dir={tmp_path}',
                               f'--output={tmp_path / "x.npz"}')
    assert result.returncode == 1
    assert 'vertex_indices.json' in result.stderr
    assert not os.path.exists(tmp_path / 'x.npz')


def test_obj_negative_indices_count_back_from_the_face_line(tmp_path):
    path = tmp_path / 'rel.obj'
    path.write_text('v 0 0 0\nv 1 0 0\nv 0 1 0\nf -3 -2 -1\nv 5 5 5\nv 6 5 5\nv 5 6 5\n'
                    'f -3 -2 -1\n')
    _, polys = mesh_io.read_obj(str(path))
    assert polys == [(0, 1, 2), (3, 4, 5)]
    vertices, polys = mesh_io.read_obj(str(path), max_vertices=3, max_polygons=1)
    assert vertices.shape == (3, 3) and polys == [(0, 1, 2)]
