"""CPU-scale FML: small crops end to end, identity diagnostics, the decimated asset's data."""
import csv
import dataclasses
import json
import os

import numpy as np
import pytest

import in_process
import training_data
from mofl.evaluation import identity


def _faces(seed=0, count=5, vertices=60):
    rng = np.random.default_rng(seed)
    template = rng.normal(0, 30, (vertices, 3))
    truth = template + rng.normal(0, 3, (count, vertices, 3))
    return template, truth


def test_identity_statistics_tell_right_from_wrong():
    template, truth = _faces()
    mask = np.ones(len(template), bool)
    perfect = identity.identity_statistics(truth, truth, template, mask, alpha=np.eye(5))
    assert perfect['cosine'] == pytest.approx(1.0) and perfect['identity_mm'] < 1e-6
    assert perfect['gain_rigid'] == pytest.approx(1.0) and perfect['gain_scale'] == \
        pytest.approx(1.0)
    assert perfect['alpha_spread'] == pytest.approx(0.4)       # SD of a column of I5
    none = identity.identity_statistics(np.repeat(template[None], 5, 0), truth, template, mask)
    assert none['learned_rms_mm'] == 0.0 and none['cosine'] == 0.0
    assert none['gain_rigid'] == pytest.approx(0.0, abs=1e-9)
    half = identity.identity_statistics(template + 0.5 * (truth - template), truth, template,
                                        mask, mesh_errors=False)
    assert half['cosine'] == pytest.approx(1.0)
    assert half['learned_rms_mm'] == pytest.approx(0.5 * half['true_rms_mm'])
    # A constant "average person" offset lowers the plain cosine, not the centred one.
    shifted = identity.identity_statistics(truth + np.linspace(-5, 5, 180).reshape(60, 3),
                                           truth, template, mask, mesh_errors=False)
    assert shifted['cosine'] < 0.95 and shifted['cosine_centred'] == pytest.approx(1.0)
    # A uniform shift of the learned face (the pose's translation absorbs it) lowers the plain
    # cosine, not the translation-free one; a shape change lowers both.
    moved = identity.identity_statistics(truth + np.array([0.0, 0.0, 30.0]), truth, template,
                                         mask, mesh_errors=False)
    assert moved['cosine'] < 0.9 and moved['cosine_translation_free'] == pytest.approx(1.0)
    assert moved['cosine_translation_free_centred'] == pytest.approx(1.0)
    assert shifted['cosine_translation_free'] < 0.95
    # A similarity of the learned faces (shift, small rotation, scaling about the template's
    # centroid) leaves the similarity-free cosine at 1 and what the model spans unchanged.
    centre = template.mean(0)
    spin = np.cross(np.array([0.0, 0.02, 0.0]), template - centre)
    similar = identity.identity_statistics(
        truth + np.array([1.0, -2.0, 3.0]) + spin + 0.03 * (template - centre), truth, template,
        mask, mesh_errors=False)
    assert similar['cosine_translation_free'] < 0.99
    assert similar['cosine_similarity_free'] == pytest.approx(1.0)
    assert similar['true_variance_in_learned_directions'] == pytest.approx(1.0)
    assert similar['learned_directions_90'] == similar['true_directions_90'] >= 2
    # Faces that differ from the template only by a scaling: no shape the images can tell.
    scaled = identity.identity_statistics(
        template + 0.05 * np.arange(5)[:, None, None] * (template - centre), truth, template,
        mask, mesh_errors=False)
    assert scaled['cosine_similarity_free'] == pytest.approx(0.0, abs=1e-9)
    assert none['learned_directions_90'] == 0
    assert none['true_variance_in_learned_directions'] == 0.0
    # One learned direction (a single true person's offset, scaled per sample) spans part of
    # the true variance, not all of it.
    one = identity.identity_statistics(
        template + np.linspace(-1, 1, 5)[:, None, None] * (truth[0] - template), truth, template,
        mask, mesh_errors=False)
    assert one['learned_directions_90'] == 1
    assert 0.0 < one['true_variance_in_learned_directions'] < 0.9
    wrong = identity.identity_statistics(template - (truth - template), truth, template, mask)
    assert wrong['cosine'] == pytest.approx(-1.0) and wrong['gain_rigid'] < 0
    with pytest.raises(ValueError, match='gt_vertices'):
        identity.identity_statistics(truth, truth[:4], template, mask)
    with pytest.raises(ValueError, match='face_mask'):
        identity.identity_statistics(truth, truth, template, mask[:10])


def test_expression_statistics_tell_right_from_wrong():
    rng = np.random.default_rng(3)
    mask = np.ones(40, bool)
    mask[:5] = False
    truth = rng.normal(0, 2, (6, 3, 40, 3))
    truth[0, 1] = 0.0                                   # a neutral frame
    exact = identity.expression_statistics(truth, truth, mask)
    assert exact['expression_cosine'] == pytest.approx(1.0)
    assert exact['expression_error_rms_mm'] == pytest.approx(0.0, abs=1e-12)
    assert exact['expression_rms_mm'] == pytest.approx(exact['expression_true_rms_mm'])
    # Outside the face region nothing counts.
    noisy_outside = truth.copy()
    noisy_outside[:, :, :5] += 100.0
    assert identity.expression_statistics(noisy_outside, truth, mask)[
        'expression_error_rms_mm'] == pytest.approx(0.0, abs=1e-12)
    # A constant offset plus noise: the pooled cosine sees the offset, the centred one does not.
    constant = rng.normal(0, 2, (1, 1, 40, 3))
    unrelated = constant + rng.normal(0, 0.5, truth.shape)
    stats = identity.expression_statistics(unrelated, truth + constant, mask)
    assert stats['expression_cosine'] > 0.3
    assert abs(stats['expression_cosine_centred']) < 0.2
    # Unrelated offsets as large as the truth add error: more than leaving them out would.
    noise = identity.expression_statistics(rng.normal(0, 2, truth.shape), truth, mask)
    assert noise['expression_error_rms_mm'] > 1.3 * noise['expression_true_rms_mm']
    none = identity.expression_statistics(np.zeros_like(truth), truth, mask)
    assert none['expression_cosine'] == 0.0 and none['expression_rms_mm'] == 0.0
    assert none['expression_error_rms_mm'] == pytest.approx(none['expression_true_rms_mm'])
    with pytest.raises(ValueError, match='true_offsets'):
        identity.expression_statistics(truth, truth[:, :2], mask)
    with pytest.raises(ValueError, match='face_mask'):
        identity.expression_statistics(truth, truth, mask[:10])


def test_small_crops_train_report_and_refuse_mismatches(tmp_path):
    asset, data = training_data.write_synthetic_set(str(tmp_path), num_identities=4, seed=5,
                                                    image_size=64)
    manifest = json.load(open(os.path.join(data, 'manifest.json')))
    assert manifest['image_size'] == 64
    run = str(tmp_path / 'run')
    common = [f'--data={data}/train-*', f'--asset={asset}', '--shape_dim=4', '--albedo_dim=4',
              '--batch_size=2', '--num_frames=2',
              f'--width_multiplier={training_data.TEST_WIDTH_MULTIPLIER}']
    bad = in_process.run_main('mofl.train', common + [f'--output_dir={run}', '--image_size=100'])
    assert bad.returncode == 2 and 'multiple of 16' in bad.stderr
    wrong = in_process.run_main('mofl.train', common + [f'--output_dir={run}_96',
                                                        '--image_size=96'])
    assert wrong.returncode == 1 and 'frames are 64×64' in wrong.stderr
    no_eval = in_process.run_main('mofl.train', common + [
        f'--output_dir={run}_eval', '--image_size=64', f'--identity_eval_data={tmp_path}/no-*'])
    assert no_eval.returncode == 1 and 'no training-record files match' in no_eval.stderr
    assert not os.path.exists(os.path.join(f'{run}_eval', 'checkpoints'))   # refused at start
    trained = in_process.run_main('mofl.train', common + [
        f'--output_dir={run}', '--image_size=64', '--pretrain_steps=1', '--train_steps=2',
        f'--identity_eval_data={data}/test-*', '--identity_eval_every=2',
        '--identity_eval_samples=2', '--image_summary_every=0', '--weight_average_decay=0.9',
        '--lambda_depth_spread=100', '--log_every=1'])
    assert trained.returncode == 0, trained.stderr[-3000:]
    assert 'held-out identity: cos' in trained.stderr
    # Our depth-spread term is trained, logged and written with the other terms.
    with open(os.path.join(run, 'losses.csv')) as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 3 and all(float(r['depth_spread']) >= 0.0 for r in rows)
    assert ' dep ' in trained.stderr
    assert 'held-out identity (averaged weights): cos' in trained.stderr
    config = json.load(open(os.path.join(run, 'model_config.json')))
    assert config['image_size'] == [64, 64]
    assert config['focal_length'] == pytest.approx(1000.0 * 64 / 240)
    too_many = in_process.run_main('tools.identity_report', [
        run, f'--data={data}/test-*', '--num_frames=4'])
    assert too_many.returncode == 1 and 'samples have 2 frames' in too_many.stderr
    report = in_process.run_main('tools.identity_report', [
        run, f'--data={data}/test-*', f'--train_data={data}/train-*', '--num_samples=2',
        '--num_frames=2', f'--output={tmp_path}/identity.json'])
    assert report.returncode == 0, report.stderr[-3000:]
    assert '| cos(learned, true offsets) |' in report.stdout
    saved = json.load(open(tmp_path / 'identity.json'))
    assert saved['step'] == 3 and set(saved['sets']) == {'held-out', 'training'}
    held_out = saved['sets']['held-out']
    assert held_out['template_mm'] > 0 and held_out['landmark_px'] > 0
    assert -1.0 <= held_out['cosine'] <= 1.0
    assert held_out['expression_true_rms_mm'] > 0 and -1.0 <= held_out['expression_cosine'] <= 1.0
    assert '| cos(predicted, true expression offsets) |' in report.stdout
    assert 'held-out expression: cos' in trained.stderr


def test_decimated_asset_data_keeps_ground_truth_on_its_vertices(tmp_path, ict_dir):
    from mofl.data import pipeline
    from mofl.data import synthetic
    from mofl.data import synthetic_identity
    from mofl.facemodel import decimation
    from mofl.facemodel import graph
    from mofl.facemodel.sources import ict
    full = ict.build_source(ict_dir)
    coarse = decimation.decimate_mesh(full, 2500)
    asset = str(tmp_path / 'ict2500.npz')
    graph.build_assets(coarse, num_nodes=260).save(asset)
    data = str(tmp_path / 'data')
    made = in_process.run_main('tools.make_synthetic', [
        f'--output_dir={data}', f'--asset={asset}', '--image_size=64', '--num_identities=2',
        '--samples_per_identity=1', '--num_frames=2', '--test_fraction=0', '--seed=4'])
    assert made.returncode == 0, made.stderr[-3000:]
    manifest = json.load(open(os.path.join(data, 'manifest.json')))
    assert manifest['render_vertices'] == full.num_vertices
    assert manifest['num_vertices'] == coarse.num_vertices
    samples = pipeline.load_ground_truth_samples(f'{data}/train-*', 2, 2)
    assert samples['images'].shape[2:4] == (64, 64)
    generator = synthetic.SyntheticGenerator(
        full, synthetic_identity.make_identity_model('ict', full, ict_dir), seed=4)
    for n in range(2):
        expected = generator.identity(n).vertices[coarse.full_vertex_indices]
        np.testing.assert_allclose(samples['gt_vertices'][n], expected, atol=1e-4)
    assert samples['gt_expression_vertices'].shape[2] == coarse.num_vertices
    # The manifest names the mesh; another mesh of the same size is refused, as is another size.
    assert manifest['asset_fingerprint'] == coarse.fingerprint()
    pipeline.check_ground_truth_mesh(f'{data}/train-*', coarse)
    moved = dataclasses.replace(coarse, vertices=coarse.vertices + np.float32(0.5))
    with pytest.raises(ValueError, match='another build of the asset'):
        pipeline.check_ground_truth_mesh(f'{data}/train-*', moved)
    with pytest.raises(ValueError, match=f'ground truth on {coarse.num_vertices} vertices'):
        pipeline.check_ground_truth_mesh(f'{data}/train-*', full)


def test_synthetic_benchmark_quick_runs_every_stage(tmp_path, monkeypatch):
    out = tmp_path / 'bench'
    monkeypatch.chdir(training_data.REPO_ROOT)     # the stages read configs/*.flags from here

    def prepare(benchmark):
        as_subprocess = benchmark.run_module

        def run_module(args, log):
            # The first stage (the face asset) runs as the tool runs every stage, `python -m`
            # in a subprocess; the others run the same command lines in this process (in_process:
            # no TensorFlow start of 5–15 s each), their output to the stage's log as before.
            if args[0] == 'tools.build_assets':
                return as_subprocess(args, log)
            stage = in_process.run_main(args[0], args[1:])
            log.write(stage.stdout + stage.stderr)
            return stage.returncode

        monkeypatch.setattr(benchmark, 'run_module', run_module)

    # One Table 1 training (train M = 4; --quick keeps the last two of --train_frames) and one
    # Table 4 model (--quick keeps the first two of --model_sizes).
    result = in_process.run_main('tools.synthetic_benchmark', [
        f'--output_dir={out}', '--quick', '--table4', '--train_frames=4', '--model_sizes=10'],
        prepare=prepare)
    assert result.returncode == 0, (result.stdout[-2000:], result.stderr[-3000:])
    for stage in ('face asset', 'synthetic data', 'reference fits', 'training, M = 4',
                  'Table 1, rigid', 'Table 1, with scale', 'identity report, M = 4',
                  'training, model size 10', 'Table 4'):
        assert f'] {stage}' in result.stdout, stage
    assert '] training, M = 2' not in result.stdout
    summary = open(out / 'BENCHMARK.md').read()
    for title in ('Reference fits', 'Table 1, rigid', 'Table 1, with scale', 'Table 4',
                  'Identity, train M = 4'):
        assert f'## {title}' in summary, title
    timings = json.load(open(out / 'timings.json'))
    assert {'asset', 'make_synthetic', 'train_m4', 'evaluate_table4'} <= set(timings)


def test_demo_remakes_data_of_another_asset_build(tmp_path, monkeypatch):
    asset = str(tmp_path / 'asset.npz')
    training_data.tiny_assets().save(asset)
    made = []

    def fake_make_synthetic(args, what):
        """Stands for the make_synthetic subprocess: a manifest for this asset's mesh."""
        from mofl.facemodel import assets as assets_lib
        made.append(args[0])
        os.makedirs(tmp_path / 'data', exist_ok=True)
        json.dump({'asset_fingerprint': assets_lib.FaceAssets.load(asset).mesh.fingerprint()},
                  open(tmp_path / 'data' / 'manifest.json', 'w'))

    demo, flag_values = in_process.binary_flags('tools.demo', [])
    monkeypatch.setattr(demo, '_run', fake_make_synthetic)
    os.makedirs(tmp_path / 'data')
    os.makedirs(tmp_path / 'run')
    json.dump({'asset_fingerprint': '0123456789abcdef'},          # another build's
              open(tmp_path / 'data' / 'manifest.json', 'w'))
    demo.make_data(str(tmp_path), asset, flag_values)
    assert made == ['tools.make_synthetic']
    stale = sorted(p.name.split('.stale')[0] for p in tmp_path.glob('*.stale*'))
    assert stale == ['data', 'run'] and not (tmp_path / 'run').exists()
    demo.make_data(str(tmp_path), asset, flag_values)         # now it is this build's
    assert made == ['tools.make_synthetic']
