"""Tests of the synthetic ground-truth set: `mofl.data.synthetic` and `tools.make_synthetic`.

`tools.make_synthetic` runs in process through `in_process.run_main`, which defines its flags in a
FlagValues of their own and passes it to its `main`.
"""
import glob
import json
import os

import numpy as np
import pytest
import tensorflow as tf

from mofl.data import pipeline
from mofl.data import records
from mofl.data import synthetic
from mofl.data import synthetic_identity
from mofl.facemodel import assets as assets_lib
from mofl.facemodel import geometry
from mofl.facemodel import graph as graph_lib
from mofl.facemodel import mesh_io
import in_process  # tests/ is on sys.path under pytest (rootdir-relative import)
import synthetic_face


def _rms(a, b):
    return float(np.sqrt(np.mean(np.sum((np.asarray(a) - np.asarray(b)) ** 2, axis=-1))))


@pytest.fixture(scope='module')
def grid_mesh():
    """A small procedural face asset (no ICT data needed): the bumped grid of synthetic_face."""
    face = synthetic_face.grid_face(n=31)
    vertices, triangles = face['vertices'], face['triangles']
    landmarks66 = np.delete(face['landmarks68'], [60, 64]).astype(np.int32)
    everywhere = np.ones(len(vertices), bool)
    upper, lower = geometry.split_lips(vertices, triangles, face['landmarks68'],
                                       face['expression_basis'][0])
    return assets_lib.SourceMesh(
        vertices=vertices, triangles=triangles, face_mask=everywhere,
        landmark_indices=landmarks66,
        contour_candidates=geometry.contour_candidate_lines(vertices, landmarks66[:17],
                                                            everywhere, 5),
        expression_basis=face['expression_basis'],
        expression_sigma=np.full(2, assets_lib.BLENDSHAPE_SIGMA, np.float32),
        expression_names=np.asarray(face['names']),
        skin_color=np.array([0.7, 0.5, 0.4], np.float32),
        open_mouth_vertices=vertices + 0.5 * face['expression_basis'][0],
        upper_lip_vertices=upper, lower_lip_vertices=lower, source='grid')


@pytest.fixture(scope='module')
def grid_generator(grid_mesh):
    model = synthetic_identity.make_identity_model('auto', grid_mesh, ict_dir=None)
    return synthetic.SyntheticGenerator(grid_mesh, model, seed=3)


@pytest.fixture(scope='module')
def grid_samples(grid_generator):
    """2 identities × 1 sample × 2 frames."""
    scenes = [grid_generator.scene(grid_generator.identity(i), 0, 2) for i in range(2)]
    return grid_generator.render(scenes, batch_size=3)


@pytest.fixture(scope='module')
def ict_generator(ict_assets, ict_dir):
    model = synthetic_identity.make_identity_model('auto', ict_assets.mesh, ict_dir)
    assert model.name == 'ict'
    return synthetic.SyntheticGenerator(ict_assets.mesh, model, seed=11)


def test_auto_picks_procedural_without_ict(grid_mesh, grid_generator):
    assert synthetic_identity.resolve_identity_model_kind('auto', grid_mesh, None) == 'procedural'
    assert grid_generator.identity_model.name == 'procedural'


def test_ict_modes_are_the_identity_files(ict_generator, ict_dir):
    """w = e_k gives exactly ICT's identityK mesh (face area, mm): offsets = (K − neutral)·10."""
    model = ict_generator.identity_model
    assert model.basis.shape == (100, synthetic_identity.ICT_FACE_AREA_VERTICES, 3)
    for k in (0, 57):
        path = [p for p in synthetic_identity.ict_identity_files(ict_dir)
                if f'identity{k:03d}' in p][0]
        expected = mesh_io.read_obj_vertices(
            path, synthetic_identity.ICT_FACE_AREA_VERTICES) * 10.0
        weights = np.zeros(100, np.float32)
        weights[k] = 1.0
        np.testing.assert_allclose(model.vertices(weights), expected, atol=2e-3)


def test_ict_ground_truth_is_identity_plus_expression(ict_generator, ict_assets):
    identity = ict_generator.identity(4)
    expected_identity = ict_assets.mesh.vertices + np.einsum(
        'k,kvc->vc', identity.weights.astype(np.float64), ict_generator.identity_model.basis)
    np.testing.assert_allclose(identity.vertices, expected_identity, atol=1e-3)
    assert np.all(np.abs(identity.weights) <= synthetic_identity.DEFAULT_TRUNCATION)
    scene = ict_generator.scene(identity, 0, 3)
    for f in range(3):
        expected = identity.vertices.astype(np.float64)
        for u in np.nonzero(scene.expression_weights[f])[0]:
            expected = expected + scene.expression_weights[f, u] * \
                ict_assets.mesh.expression_basis[u]
        np.testing.assert_allclose(scene.expression_vertices[f], expected, atol=1e-3)
    names = list(ict_assets.mesh.expression_names)
    assert np.all(scene.expression_weights >= 0) and np.all(scene.expression_weights <= 1)
    assert np.all(scene.expression_weights[:, names.index('jawOpen')] <= 0.5)
    assert np.all((scene.expression_weights > 0).sum(axis=1) <= 3)


@pytest.mark.parametrize('which', ['ict', 'procedural'])
def test_identities_differ_plausibly(which, ict_assets, ict_generator):
    """Identities differ from the template and each other by a few mm RMS (ICT: mode 0 alone is
    3.9 mm RMS); the procedural model runs here on the ICT template for a like-for-like scale."""
    if which == 'ict':
        generator = ict_generator
    else:
        model = synthetic_identity.procedural_identity_model(ict_assets.mesh)
        generator = synthetic.SyntheticGenerator(ict_assets.mesh, model, seed=11)
    meshes = [generator.identity(i).vertices for i in range(6)]
    template = ict_assets.mesh.vertices
    to_template = [_rms(m, template) for m in meshes]
    between = [_rms(meshes[i], meshes[j]) for i in range(6) for j in range(i + 1, 6)]
    assert 1.5 < np.mean(to_template) < 12.0, to_template
    assert min(between) > 1.0, between


def test_procedural_basis_is_symmetric_with_asymmetric_modes(grid_mesh):
    basis, names = synthetic_identity.procedural_identity_basis(grid_mesh.vertices,
                                                                grid_mesh.landmark_indices)
    assert basis.shape == (len(names), grid_mesh.num_vertices, 3)
    v = grid_mesh.vertices
    # The grid is mirror-symmetric in x: vertex i at (x, y) has a partner at (−x, y).
    keys = {(round(float(p[0]), 3), round(float(p[1]), 3)): i for i, p in enumerate(v)}
    partner = np.array([keys[(round(-float(p[0]), 3), round(float(p[1]), 3))] for p in v])
    mirror = np.array([-1.0, 1.0, 1.0])
    for mode, name in zip(basis, names):
        mirrored = mode[partner] * mirror
        if name.endswith('_asymmetry'):
            np.testing.assert_allclose(mirrored, -mode, atol=0.05 * np.abs(mode).max() + 1e-4)
        elif name.startswith(('nose_width', 'jaw_width', 'mouth_width', 'scale')):
            np.testing.assert_allclose(mirrored, mode, atol=0.05 * np.abs(mode).max() + 1e-4)


@pytest.fixture(params=['grid', 'ict'])
def any_generator(request):
    """The procedural generator on the small grid asset, and the ICT one (skips without ICT)."""
    return request.getfixturevalue(f'{request.param}_generator')


def test_albedo_varies_between_and_within_identities(any_generator):
    for generator in (any_generator,):
        albedos = [generator.identity(i).appearance.albedo for i in range(4)]
        means = np.array([a.mean(axis=0) for a in albedos])
        assert np.all((albedos[0] >= 0) & (albedos[0] <= 1))
        # Skin tones differ between identities, and the albedo is not one constant colour.
        assert np.max(np.abs(means[:, None] - means[None]).sum(-1)) > 0.05
        assert all((a.std(axis=0) / a.mean(axis=0)).max() > 0.02 for a in albedos)


def test_landmarks_land_on_the_rendered_face(any_generator):
    samples = any_generator.render(
        [any_generator.scene(any_generator.identity(i), 0, 2) for i in range(2)], batch_size=4)
    for sample in samples:
        clean = sample.clean_landmarks
        assert np.all(np.isfinite(clean))
        assert np.all((clean > 0) & (clean < 240))
        rows = np.clip(np.floor(clean[..., 1]).astype(int), 0, 239)
        cols = np.clip(np.floor(clean[..., 0]).astype(int), 0, 239)
        on_face = np.stack([m[r, c] for m, r, c in zip(sample.masks, rows, cols)])  # [M, 66]
        # Brow and nose landmarks lie inside the rendered mesh; jaw ones on its silhouette and
        # eye/mouth ones on the rims of holes, where a 3×3 neighbourhood reaches the mask.
        assert on_face[:, 17:36].mean() > 0.95, on_face[:, 17:36]
        grown = tf.nn.max_pool2d(sample.masks[..., None], 3, 1, 'SAME')[..., 0].numpy()
        near_face = np.stack([m[r, c] for m, r, c in zip(grown, rows, cols)])
        assert near_face.mean() > 0.95, near_face
        error = np.linalg.norm(sample.landmarks - clean, axis=-1)
        assert 0.5 < error.mean() < 5.0
        assert np.all((sample.landmark_confidence >= 0) & (sample.landmark_confidence <= 1))
        # The face is neither tiny nor huge: the landmarks span a good part of the crop.
        span = clean.max(axis=1) - clean.min(axis=1)
        assert np.all(span.max(axis=-1) > 70) and np.all(span.max(axis=-1) < 220)


def test_far_side_landmarks_get_lower_confidence(ict_generator):
    identity = ict_generator.identity(0)
    scene = ict_generator.scene(identity, 0, 1)
    scene.euler_angles[0] = [0.0, np.radians(40.0), 0.0]  # +x side (image right) turns away
    sample = ict_generator.render([scene])[0]
    side = ict_generator.landmark_side
    conf = sample.landmark_confidence[0]
    assert conf[side > 0.5].mean() < conf[side < -0.5].mean() - 0.2


def test_images_are_cluttered_and_noisy(grid_samples):
    for sample in grid_samples:
        for image, mask in zip(sample.images, sample.masks):
            background = image[mask < 0.5].astype(np.float64)
            assert background.std(axis=0).mean() > 15  # not a flat colour
            assert 0.05 < mask.mean() < 0.95


def test_deterministic_given_the_seed(grid_mesh, grid_samples):
    model = synthetic_identity.procedural_identity_model(grid_mesh)

    def encoded(samples):
        return [records.encode_sample(s.images, s.landmarks, s.landmark_confidence,
                                      s.scene.euler_angles, s.scene.identity.name, s.scene.clip,
                                      ground_truth=s.ground_truth()) for s in samples]

    def serialized(seed, batch_size):
        generator = synthetic.SyntheticGenerator(grid_mesh, model, seed=seed)
        scenes = [generator.scene(generator.identity(i), 0, 2) for i in range(2)]
        return encoded(generator.render(scenes, batch_size))

    first = encoded(grid_samples)  # seed 3, batch size 3
    assert serialized(3, 1) == first  # byte-identical, whatever the batch size
    other = serialized(4, 3)
    assert all(a != b for a, b in zip(first, other))


def test_records_round_trip_through_the_pipeline(grid_samples, tmp_path):
    path = str(tmp_path / 'train-00000-of-00001.tfrecord')
    with tf.io.TFRecordWriter(path) as writer:
        for s in grid_samples:
            writer.write(records.encode_sample(
                s.images, s.landmarks, s.landmark_confidence, s.scene.euler_angles,
                s.scene.identity.name, s.scene.clip, ground_truth=s.ground_truth()))
    dataset = pipeline.make_dataset(path, batch_size=2, num_frames=2, shuffle=False,
                                    repeat=False)
    batch = next(iter(dataset))
    assert batch['images'].shape == (2, 2, 240, 240, 3)
    for b, sample in enumerate(grid_samples):
        np.testing.assert_allclose(batch['gt_vertices'][b], sample.scene.identity.vertices)
        np.testing.assert_allclose(batch['gt_expression_vertices'][b],
                                   sample.scene.expression_vertices)
        np.testing.assert_allclose(batch['gt_identity_weights'][b],
                                   sample.scene.identity.weights)
        np.testing.assert_allclose(batch['landmarks'][b], sample.landmarks, atol=1e-4)
        np.testing.assert_allclose(batch['pose'][b], sample.scene.euler_angles, atol=1e-6)
        # JPEG at quality 95 keeps the frames close to the rendered ones.
        decoded = np.asarray(batch['images'][b]) * 255.0
        assert np.abs(decoded - sample.images).mean() < 4.0


def _run_binary(args):
    return in_process.run_main('tools.make_synthetic', args)


def test_binary_end_to_end(grid_mesh, tmp_path):
    asset_path = str(tmp_path / 'grid.npz')
    graph_lib.build_assets(grid_mesh, num_nodes=40, k=4).save(asset_path)
    out = tmp_path / 'out'
    sheet = str(tmp_path / 'sheet.png')
    result = _run_binary([f'--output_dir={out}', f'--asset={asset_path}', '--num_identities=2',
                          '--samples_per_identity=1', '--num_frames=2', '--test_fraction=0.5',
                          '--seed=5', f'--contact_sheet={sheet}', '--dense_points=12'])
    assert result.returncode == 0, result.stderr[-3000:]
    assert 'samples/s' in result.stdout
    assert os.path.getsize(sheet) > 1000
    manifest = json.loads((out / 'manifest.json').read_text())
    assert manifest['identity_model'] == 'procedural'
    assert manifest['samples'] == {'train': 1, 'test': 1}
    assert sorted(os.path.basename(p) for p in glob.glob(str(out / '*.tfrecord'))) == [
        'test-00000-of-00001.tfrecord', 'train-00000-of-00001.tfrecord']
    batch = next(iter(pipeline.make_dataset(str(out / 'train-*.tfrecord'), batch_size=1,
                                            num_frames=2, shuffle=False, repeat=False)))
    assert batch['gt_expression_vertices'].shape == (1, 2, grid_mesh.num_vertices, 3)
    assert manifest['dense_points'] == 12
    assert batch['dense_points'].shape == (1, 2, 12, 2)
    assert batch['dense_vertices'].numpy().max() < grid_mesh.num_vertices


def test_binary_rejects_ict_model_without_ict_data(tmp_path):
    result = _run_binary([f'--output_dir={tmp_path}', '--identity_model=ict',
                          f'--ict_dir={tmp_path / "no_such_folder"}'])
    assert result.returncode != 0
    assert 'ICT-FaceKit data' in result.stderr


def test_ict_model_rejects_a_non_ict_asset(grid_mesh, tmp_path):
    with pytest.raises(synthetic_identity.IdentityModelError, match='9409'):
        synthetic_identity.make_identity_model('ict', grid_mesh, str(tmp_path))
    with pytest.raises(synthetic_identity.IdentityModelError, match='ICT-FaceKit data'):
        synthetic_identity.make_identity_model('ict', grid_mesh, str(tmp_path / 'missing'))


def test_dense_points_are_their_vertices_projected_and_change_nothing_else(grid_mesh,
                                                                           grid_samples):
    model = synthetic_identity.procedural_identity_model(grid_mesh)
    inner = grid_mesh.landmark_indices[17:]     # fixed vertices: their clean projections known
    generator = synthetic.SyntheticGenerator(grid_mesh, model, seed=3, dense_vertices=inner)
    scenes = [generator.scene(generator.identity(i), 0, 2) for i in range(2)]
    samples = generator.render(scenes, batch_size=3)
    for dense, plain in zip(samples, grid_samples):     # grid_samples: seed 3, no dense points
        assert plain.dense_points is None and plain.dense_confidence is None
        np.testing.assert_array_equal(dense.images, plain.images)
        np.testing.assert_array_equal(dense.landmarks, plain.landmarks)
        assert dense.dense_points.shape == (2, len(inner), 2)
        error = np.linalg.norm(dense.dense_points - dense.clean_landmarks[:, 17:], axis=-1)
        # σ 1.2 px per axis plus a 0.5 px per-frame shift: a mean of about 1.6 px.
        assert 0.8 < error.mean() < 3.0 and error.max() < 10.0, error
        assert set(np.unique(dense.dense_confidence)) <= {0.0, np.float32(0.95)}
    with pytest.raises(ValueError, match='dense_vertices'):
        synthetic.SyntheticGenerator(grid_mesh, model, dense_vertices=[grid_mesh.num_vertices])


def test_dense_points_hidden_by_a_turned_head_get_zero_confidence(ict_generator, ict_assets):
    from mofl import landmarks as landmarks_lib   # pylint: disable=import-outside-toplevel
    mesh = ict_assets.mesh
    dense = landmarks_lib.dense_point_vertices(mesh.vertices, mesh.face_mask, 150)
    generator = synthetic.SyntheticGenerator(mesh, ict_generator.identity_model, seed=11,
                                             dense_vertices=dense)
    scene = generator.scene(generator.identity(0), 0, 2)
    scene.euler_angles[:] = [[0.0, 0.0, 0.0], [0.0, np.radians(45.0), 0.0]]
    confidence = generator.render([scene])[0].dense_confidence
    x = mesh.vertices[dense, 0] - mesh.vertices[mesh.face_mask, 0].mean()
    # Frontal: most points are seen; turned (+x side away): the far side loses many more.
    assert confidence[0].mean() > 0.8 * 0.95
    far, near = x > 20.0, x < -20.0
    assert (confidence[1][far] == 0).mean() > (confidence[1][near] == 0).mean() + 0.2
