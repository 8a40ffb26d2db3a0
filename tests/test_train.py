"""The training binary: stages, tf.distribute on CPU, exact resume after SIGKILL, NaN guard."""
import csv
import dataclasses
import glob
import json
import os
import signal
import subprocess
import sys
import tempfile
import time

import numpy as np
import pytest
import tensorflow as tf

import in_process
import same_training
import training_data
from mofl.data import records
from mofl import model as model_lib
from mofl import train_checkpoint
from mofl import trainer as trainer_lib
from mofl import train_config as train_config_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WIDTH = training_data.TEST_WIDTH_MULTIPLIER


@pytest.fixture(scope='module')
def run_inputs(tmp_path_factory):
    base = tmp_path_factory.mktemp('train')
    asset = str(base / 'tiny.npz')
    training_data.tiny_assets().save(asset)
    data = training_data.write_records(str(base / 'data'), num_samples=4, num_frames=2)
    return base, asset, data


def _train_flags(asset, data, output_dir, *extra):
    return [f'--asset={asset}', f'--data={data}', f'--output_dir={output_dir}', '--batch_size=2',
            '--num_frames=2', '--shape_dim=8', '--albedo_dim=8', '--pretrain_steps=2',
            '--train_steps=4', '--finetune_steps=2', '--checkpoint_every=2', '--log_every=1',
            '--summary_every=1', '--image_summary_every=0', '--deterministic',
            '--shuffle_buffer=8', f'--width_multiplier={WIDTH}', *extra]


def _train_args(asset, data, output_dir, *extra):
    """The command line of a training subprocess (for the tests of process behaviour)."""
    return [sys.executable, '-m', 'mofl.train'] + _train_flags(asset, data, output_dir, *extra)


def _train(args):
    """mofl.train's main with these flags, in this process."""
    return in_process.run_main('mofl.train', args)


def _env():
    return dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2', PYTHONUNBUFFERED='1')


def _single_thread_env():
    """One compute thread and no oneDNN: with --deterministic, runs are then bit-exact however
    loaded the machine is (multi-threaded CPU kernels once differed in the last bits, which
    Adam's normalisation amplified to 2e-5 in a slot)."""
    return dict(_env(), TF_NUM_INTRAOP_THREADS='1', TF_NUM_INTEROP_THREADS='1',
                TF_ENABLE_ONEDNN_OPTS='0', OMP_NUM_THREADS='1')


def _checkpoint_variables(output_dir):
    reader = tf.train.load_checkpoint(os.path.join(output_dir, 'checkpoints'))
    names = [n for n in reader.get_variable_to_shape_map() if n.startswith('model/')
             or 'optimizer' in n or n.startswith(('step', 'weight_average'))]
    return {n: reader.get_tensor(n) for n in names if 'OPTIMIZER_SLOT' not in n}


def test_resume_after_sigkill_continues_exactly(run_inputs):
    """With a weight average too: it is checkpointed and resumes exactly like the weights."""
    base, asset, data = run_inputs
    average = '--weight_average_decay=0.9'
    # The uninterrupted run trains alongside the one to be killed: one compute thread each, so
    # the two share a 2-core machine, and load does not change a bit of either.
    straight = str(base / 'straight')
    with open(base / 'straight.log', 'w+') as straight_log:
        uninterrupted = subprocess.Popen(_train_args(asset, data, straight, average), cwd=ROOT,
                                         env=_single_thread_env(), stdout=subprocess.DEVNULL,
                                         stderr=straight_log, text=True)
        proc = None
        try:
            killed = str(base / 'killed')
            proc = subprocess.Popen(_train_args(asset, data, killed, average), cwd=ROOT,
                                    env=_single_thread_env(), stdout=subprocess.DEVNULL,
                                    stderr=subprocess.PIPE, text=True)
            state = os.path.join(killed, 'checkpoints', 'checkpoint')
            deadline = time.time() + 600
            while time.time() < deadline:
                if os.path.exists(state) and 'ckpt-4' in open(state).read():
                    break
                assert proc.poll() is None, 'the run ended before it could be killed'
                time.sleep(0.1)
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            assert proc.returncode == -signal.SIGKILL
            assert tf.train.latest_checkpoint(
                os.path.join(killed, 'checkpoints')).endswith('ckpt-4')
            uninterrupted.wait(timeout=600)
            straight_log.seek(0)
            assert uninterrupted.returncode == 0, straight_log.read()[-3000:]
        finally:   # a failed assertion must not leave a training running
            for child in (uninterrupted, proc):
                if child is not None and child.poll() is None:
                    child.kill()
                    child.wait()

    resumed = subprocess.run(_train_args(asset, data, killed, average), cwd=ROOT,
                             env=_single_thread_env(), capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert 'at step 4' in resumed.stderr            # resumed, not restarted
    want, got = _checkpoint_variables(straight), _checkpoint_variables(killed)
    assert int(got['step/.ATTRIBUTES/VARIABLE_VALUE']) == 8
    assert set(want) == set(got)
    assert any(n.startswith('weight_average/averages/') for n in want)
    for name in want:   # bit-exact: weights, every Adam slot and counter, the step
        np.testing.assert_array_equal(got[name], want[name], err_msg=name)


def test_mirrored_strategy_on_two_cpu_devices(run_inputs):
    """Also with the unit-scale identity parameters (ours): their moving statistics are
    updated under the strategy (each replica standardises over its own samples). And, without
    them, the two replicas train what one device trains with the same global batch (every
    step's losses and every checkpoint, within rounding: tests/same_training.py), with a
    gradient clip that acts at every step (the global gradient is clipped, not each
    replica's share of it)."""
    base, asset, data = run_inputs
    out, plain = str(base / 'mirrored'), str(base / 'mirrored_plain')
    single = str(base / 'single_device')
    two_devices = ('--strategy=mirrored', '--num_cpu_devices=2')

    def flags(output_dir, *extra):   # stage 1 only, steps 0→4
        return [a for a in _train_flags(asset, data, output_dir, *extra) if not a.startswith(
            ('--pretrain_steps', '--finetune_steps'))] + ['--pretrain_steps=0',
                                                          '--finetune_steps=0']

    def command(output_dir, *extra):
        return [sys.executable, '-m', 'mofl.train'] + flags(output_dir, *extra)

    compared = ('--gradient_clip_norm=10',)
    logs = [tempfile.TemporaryFile('w+') for _ in range(2)]   # not pipes: logs are long
    procs = []
    try:
        for args, log in ((command(out, *two_devices, '--identity_standardization',
                                   '--weight_average_decay=0.9'), logs[0]),
                          (command(plain, *two_devices, *compared), logs[1])):
            procs.append(subprocess.Popen(args, cwd=ROOT, env=_env(), stdout=subprocess.DEVNULL,
                                          stderr=log, text=True))
        # The one-device run trains in this process meanwhile.
        reference = _train(flags(single, *compared))
        results = []
        for proc, log in zip(procs, logs):
            code = proc.wait(timeout=600)
            log.seek(0)
            results.append((code, log.read()))
    finally:   # a failed assertion must not leave a training running
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        for log in logs:
            log.close()
    assert reference.returncode == 0, reference.stderr[-3000:]
    for code, stderr in results:
        assert code == 0, stderr[-3000:]
        assert 'with 2 replica(s)' in stderr
    latest = tf.train.latest_checkpoint(os.path.join(out, 'checkpoints'))
    assert latest.endswith('ckpt-4')
    reader = tf.train.load_checkpoint(latest)
    moving = [n for n in reader.get_variable_to_shape_map() if 'identity_network/standardization' in n
              and 'moving_variance' in n]
    assert len(moving) == 1 and np.all(reader.get_tensor(moving[0]) > 0), moving
    assert int(reader.get_tensor('weight_average/updates/.ATTRIBUTES/VARIABLE_VALUE')) == 4
    assert 'with 1 replica(s)' in reference.stderr
    same_training.assert_same_training(plain, single, steps=(2, 4))


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(run_inputs, tmp_path):
    base, asset, data = run_inputs
    out = str(tmp_path / 'nan')
    args = _train_flags(asset, data, out, '--checkpoint_iterator=false')
    first = _train([a.replace('--train_steps=4', '--train_steps=0')
                    .replace('--finetune_steps=2', '--finetune_steps=0') for a in args])
    assert first.returncode == 0, first.stderr[-3000:]
    good = _checkpoint_variables(out)

    bad_data = training_data.write_records(str(tmp_path / 'bad'), num_samples=2, num_frames=2,
                                           landmark_value=float('nan'))
    second = _train([a.replace(data, bad_data) for a in args])
    assert second.returncode == 3
    assert 'non-finite loss (landmark, total)' in second.stderr
    assert tf.train.latest_checkpoint(os.path.join(out, 'checkpoints')).endswith('ckpt-2')
    after = _checkpoint_variables(out)
    for name in good:
        np.testing.assert_array_equal(after[name], good[name])


def _trainer(asset, data, output_dir, model_config=None, **train):
    from mofl.facemodel import assets as assets_lib
    values = dict(data=data, output_dir=str(output_dir), batch_size=2, num_frames=2,
                  pretrain_steps=1, train_steps=1, finetune_steps=1, learning_rate=1e-3,
                  albedo_learning_rate=1e-1, image_summary_every=0, checkpoint_every=100)
    values.update(train)
    return trainer_lib.Trainer(assets_lib.FaceAssets.load(asset),
                               model_config or model_lib.ModelConfig(shape_dim=4, albedo_dim=4,
                                                                     width_multiplier=WIDTH),
                               train_config_lib.TrainConfig(**values))


def _group_snapshot(trainer):
    return {g: [v.numpy().copy() for v in vs] for g, vs in trainer.group_variables.items()}


def _changed(before, after):
    return {g: [not np.array_equal(a, b) for a, b in zip(after[g], before[g])] for g in before}


def test_weight_average_is_the_moving_average_of_the_steps_and_what_runs_load(run_inputs,
                                                                            tmp_path):
    """--weight_average_decay: after step n the average moves by 1 − min(d, (1+n)/(10+n)) of
    its distance to the weights; load_run gives the averaged model, or the raw one on request."""
    from mofl import optim
    from mofl import run_dir
    from mofl.facemodel import assets as assets_lib
    base, asset, data = run_inputs
    trainer = _trainer(asset, data, tmp_path, weight_average_decay=0.5)
    variables = optim.averaged_variables(trainer.model.variables)
    assert len(variables) == len(trainer.weight_average.state.averages) > 10
    expected = [v.numpy().astype(np.float64) for v in variables]
    def follow(step, terms):
        decay = min(0.5, (1.0 + step) / (10.0 + step))
        for i, v in enumerate(variables):
            expected[i] = decay * expected[i] + (1 - decay) * v.numpy()
    trainer.restore()
    trainer.train(on_step=follow)
    raw = [v.numpy().copy() for v in variables]
    for want, got in zip(expected, trainer.weight_average.state.averages):
        np.testing.assert_allclose(got.numpy(), want, rtol=1e-5, atol=1e-6)
    assert any(not np.allclose(a.numpy(), r) for a, r in zip(trainer.weight_average.state.averages,
                                                             raw))
    with trainer.weight_average.applied():
        for v, a in zip(variables, trainer.weight_average.state.averages):
            np.testing.assert_array_equal(v.numpy(), a.numpy())
    for v, r in zip(variables, raw):
        np.testing.assert_array_equal(v.numpy(), r)
    run_dir.save_run_description(str(tmp_path), assets_lib.FaceAssets.load(asset),
                                 trainer.model_config, trainer.config)
    checkpoint = trainer.manager.latest_checkpoint
    assert run_dir.has_weight_average(checkpoint)
    for averaged, want in ((True, [a.numpy() for a in trainer.weight_average.state.averages]),
                           (False, raw)):
        _, model, step = run_dir.load_run(str(tmp_path), checkpoint, averaged=averaged)
        assert step == 3
        for v, w in zip(optim.averaged_variables(model.variables), want):
            np.testing.assert_array_equal(v.numpy(), w)


def test_weight_average_added_when_resuming_starts_from_the_restored_weights(run_inputs,
                                                                           tmp_path):
    from mofl import optim
    base, asset, data = run_inputs
    first = _trainer(asset, data, tmp_path, train_steps=0, finetune_steps=0)
    first.restore()
    first.train()
    trained = [v.numpy() for v in optim.averaged_variables(first.model.variables)]
    resumed = _trainer(asset, data, tmp_path, weight_average_decay=0.9)
    assert resumed.restore() == 1
    assert int(resumed.weight_average.state.updates.numpy()) == 0
    for average, want in zip(resumed.weight_average.state.averages, trained):
        np.testing.assert_array_equal(average.numpy(), want)
    resumed.train()
    assert int(resumed.weight_average.state.updates.numpy()) == 2


def test_stages_train_the_right_variables(run_inputs, tmp_path):
    base, asset, data = run_inputs
    trainer = _trainer(asset, data, tmp_path)
    trainer.restore()
    before = _group_snapshot(trainer)
    trainer.train(max_steps=1)                          # stage 0: Table 3 only
    after_pretrain = _group_snapshot(trainer)
    changed = _changed(before, after_pretrain)
    assert all(changed['frame_head'])
    for group in ('trunk', 'identity_path', 'shape_basis', 'albedo'):
        assert not any(changed[group]), group
    trainer.train(max_steps=1)                          # stage 1: everything
    changed = _changed(after_pretrain, _group_snapshot(trainer))
    for group, flags in changed.items():
        assert all(flags), group
    rates = {g: float(o.learning_rate.numpy()) for g, o in trainer.optimizers.items()}
    assert rates['albedo'] == pytest.approx(1e-3)
    trainer.train(max_steps=1)                          # stage 2: larger albedo rate
    rates = {g: float(o.learning_rate.numpy()) for g, o in trainer.optimizers.items()}
    assert rates['albedo'] == pytest.approx(1e-1)
    assert rates['trunk'] == rates['frame_head'] == pytest.approx(1e-3)
    assert int(trainer.step.numpy()) == 3
    # Each group's Adam counts only the steps it was applied: Θs joined at step 1.
    assert int(trainer.optimizers['frame_head'].iterations.numpy()) == 3
    assert int(trainer.optimizers['shape_basis'].iterations.numpy()) == 2
    # The albedo group's Adam is saved under its pre-rename key
    # (train_checkpoint.CHECKPOINT_GROUP_KEYS), so runs written before the rename resume with
    # its state.
    saved = tf.train.load_checkpoint(trainer.manager.latest_checkpoint).get_variable_to_shape_map()
    assert any(n.startswith('optimizer_reflectance/') for n in saved)
    assert not any(n.startswith('optimizer_albedo/') for n in saved)


def test_runs_with_the_albedo_optimizer_under_either_key_resume(run_inputs, tmp_path,
                                                               monkeypatch):
    """Runs written by the seventh session's code saved the albedo group's Adam as
    `optimizer_albedo` (older and newer runs: `optimizer_reflectance`): they resume with its
    state, and keep their key."""
    _, asset, data = run_inputs
    with monkeypatch.context() as patched:
        patched.setitem(train_checkpoint.CHECKPOINT_GROUP_KEYS, 'albedo', 'albedo')
        first = _trainer(asset, data, tmp_path, finetune_steps=1)
        first.restore()
        first.train()
    saved_iterations = int(first.optimizers['albedo'].iterations.numpy())
    assert saved_iterations > 0
    resumed = _trainer(asset, data, tmp_path, finetune_steps=2)
    assert resumed.restore() == 3
    assert int(resumed.optimizers['albedo'].iterations.numpy()) == saved_iterations
    resumed.train()
    saved = tf.train.load_checkpoint(resumed.manager.latest_checkpoint).get_variable_to_shape_map()
    assert any(n.startswith('optimizer_albedo/') for n in saved)


@pytest.mark.parametrize('mode', ['freeze', 'stop_gradient', 'freeze_trunk', 'train'])
def test_pretraining_leaves_the_identity_path_as_initialised(run_inputs, tmp_path, mode):
    """The old behaviour ('train') must move the identity path, or this test could not fail."""
    _, asset, data = run_inputs
    trainer = _trainer(asset, data, tmp_path, pretrain_steps=3, train_steps=0,
                       finetune_steps=0, pretrain_identity_path=mode)
    trainer.restore()
    before = _group_snapshot(trainer)
    trainer.train()
    changed = _changed(before, _group_snapshot(trainer))
    assert any(changed['identity_path']) == (mode == 'train')
    assert any(changed['trunk']) == (mode != 'freeze_trunk')
    assert all(changed['frame_head'])


def test_train_binary_rejects_missing_data(tmp_path, run_inputs):
    _, asset, _ = run_inputs
    result = _train(_train_flags(asset, str(tmp_path / 'nothing-*.tfrecord'),
                                 str(tmp_path / 'out')))
    assert result.returncode == 1
    assert 'nothing-*.tfrecord' in result.stderr


def test_resuming_with_another_model_is_refused(run_inputs, tmp_path):
    _, asset, data = run_inputs
    out = str(tmp_path / 'run')
    first = _train(_train_flags(asset, data, out, '--train_steps=0', '--finetune_steps=0',
                                '--pretrain_steps=1'))
    assert first.returncode == 0, first.stderr[-3000:]
    before = open(os.path.join(out, 'model_config.json')).read()
    # The untrained translation is stored resolved, so a later default cannot change the run.
    assert len(json.loads(before)['initial_translation']) == 3
    second = _train(_train_flags(asset, data, out, '--shape_dim=9'))
    assert second.returncode == 1
    assert 'shape_dim: run 8 vs flags 9' in second.stderr
    assert open(os.path.join(out, 'model_config.json')).read() == before


def test_model_without_learned_modes_trains(run_inputs, tmp_path):
    """Size 0 (supp. Table 4's first column): no Θs/Θa modes, inside tf.function."""
    _, asset, data = run_inputs
    from mofl.facemodel import assets as assets_lib
    config = train_config_lib.TrainConfig(data=data, output_dir=str(tmp_path), batch_size=2,
                                     num_frames=2, pretrain_steps=1, train_steps=1,
                                     finetune_steps=0, image_summary_every=0,
                                     checkpoint_every=100)
    trainer = trainer_lib.Trainer(assets_lib.FaceAssets.load(asset),
                                  model_lib.ModelConfig(shape_dim=0, albedo_dim=0,
                                                        width_multiplier=WIDTH), config)
    trainer.restore()
    history = trainer.train()
    assert len(history) == 2 and all(np.isfinite(h['total']) for h in history)


def test_identity_output_init_standardises_alpha_when_end_to_end_training_starts(run_inputs,
                                                                                tmp_path):
    _, asset, data = run_inputs
    from mofl.data import pipeline
    trainer = _trainer(asset, data, tmp_path, model_lib.ModelConfig(
        shape_dim=6, albedo_dim=5, initializer='glorot', width_multiplier=WIDTH),
        finetune_steps=0, learning_rate=1e-6,
        identity_output_init=True, identity_init_samples=4, pretrain_identity_path='train')
    images = next(iter(pipeline.make_dataset(data, 4, 2, shuffle=False, repeat=False)))['images']

    def identity_outputs():
        out = trainer.model.network(images)
        return np.concatenate([out['shape_params'], out['albedo_params']], axis=1)

    standardised = []
    original = trainer.standardize_identity_outputs

    def spy():   # records α, β right after the hook, before the first end-to-end step
        original()
        standardised.append(identity_outputs())

    trainer.standardize_identity_outputs = spy
    trainer.restore()
    trainer.train(max_steps=1)                       # pre-training: the head is untouched
    assert not standardised
    spread_before = identity_outputs().std(axis=0)
    assert np.all(spread_before < 0.1), spread_before
    trainer.train(max_steps=1)                       # end-to-end: standardised first
    assert len(standardised) == 1
    np.testing.assert_allclose(standardised[0].mean(axis=0), 0.0, atol=1e-3)
    np.testing.assert_allclose(standardised[0].std(axis=0), 1.0, rtol=1e-3)


def test_pretraining_length_changes_pose_but_not_identity_of_the_exported_model(run_inputs,
                                                                                tmp_path):
    """Same seed, 1 vs 5 pre-training steps (the default stage 0), each exported: α, β and the
    identity mesh and albedo are identical, the regressed pose is not. (The modes 'freeze' and
    'stop_gradient' also keep the identity path's own weights, see
    test_pretraining_leaves_the_identity_path_as_initialised, but α moves with the shared trunk
    they train.)"""
    _, asset, data = run_inputs
    from mofl import export as export_lib
    results = {}
    for steps in (1, 5):
        out = str(tmp_path / f'pre{steps}')
        args = [a for a in _train_flags(asset, data, out) if not a.startswith(
            ('--pretrain_steps', '--train_steps', '--finetune_steps', '--checkpoint_every'))]
        trained = _train(args + [f'--pretrain_steps={steps}', '--train_steps=0',
                                 '--finetune_steps=0', f'--checkpoint_every={steps}'])
        assert trained.returncode == 0, trained.stderr[-3000:]
        saved = str(tmp_path / f'saved{steps}')
        exported = in_process.run_main('tools.export_savedmodel', [f'--checkpoint_dir={out}',
                                                                   f'--output_dir={saved}'])
        assert exported.returncode == 0, exported.stderr[-3000:]
        images = np.random.default_rng(0).uniform(size=(2, 240, 240, 3)).astype(np.float32)
        results[steps] = export_lib.load_exported(saved).reconstruct(images)
    for key in ('shape_params', 'albedo_params', 'identity_vertices', 'albedo'):
        np.testing.assert_array_equal(results[1][key], results[5][key], err_msg=key)
    for key in ('euler_angles', 'translation'):
        assert np.abs(results[1][key] - results[5][key]).max() > 1e-6, key


def test_train_flags_take_their_defaults_from_the_configs():
    """One source of defaults: every flag of mofl.train that fills a ModelConfig or TrainConfig
    field defaults to that field's value (the configs hold the defaults, not the binary)."""
    # Not plain copies: required paths, and the focal length that follows --image_size.
    derived = {'data', 'output_dir', 'focal_length'}
    defaults = {**dataclasses.asdict(model_lib.ModelConfig()),
                **dataclasses.asdict(train_config_lib.TrainConfig())}
    defaults['image_size'] = defaults['image_size'][0]
    checked = 0
    _, flag_values = in_process.binary_flags('mofl.train')   # a FlagValues of their own
    for name, value in defaults.items():
        if name in derived or name not in flag_values:
            continue
        assert flag_values[name].default == value, name
        checked += 1
    assert checked >= 50


@pytest.mark.parametrize('module', ['mofl.train', 'tools.render_preview', 'tools.direct_fit'])
def test_each_binary_lists_the_shared_asset_flag_in_its_help(module):
    """--asset is defined once (mofl.flags_common) but filed under the binary that asked for it,
    so that the binary's --help shows it."""
    _, flag_values = in_process.binary_flags(module)
    assert 'asset' in [f.name for f in flag_values.get_key_flags_for_module(module)]


def test_new_training_options_reach_the_configs():
    """--noorthogonal_complement, --lambda_identity_mean and --lambda_depth_spread (ours) land
    in ModelConfig and TrainConfig, and their terms are among the trained loss terms."""
    train_binary, flag_values = in_process.binary_flags('mofl.train', [
        '--data=x', '--output_dir=y', '--noorthogonal_complement', '--lambda_identity_mean=2.5',
        '--lambda_depth_spread=40'])
    model_config, train_config = train_binary.configs_from_flags(flag_values)
    assert model_config.orthogonal_complement is False
    assert train_config.lambda_identity_mean == 2.5
    assert train_config.lambda_depth_spread == 40.0
    assert {'identity_mean', 'depth_spread'} <= set(train_config_lib.LOSS_TERMS)


@pytest.mark.parametrize('config', sorted(
    os.path.basename(p) for p in glob.glob(os.path.join(ROOT, 'configs', '*.flags'))))
def test_every_config_names_only_flags_of_mofl_train(config):
    """Each configs/*.flags (nested flagfiles included) parses with mofl.train's flags; a typo or a
    renamed flag fails here instead of at the start of a user's run."""
    cwd = os.getcwd()
    os.chdir(ROOT)   # nested --flagfile paths are relative to the repository
    try:
        _, flag_values = in_process.binary_flags('mofl.train')
        args = flag_values.read_flags_from_files([f'--flagfile=configs/{config}'])
        assert args
        for arg in args:
            name = arg.lstrip('-').split('=', 1)[0]
            if name not in flag_values and name.startswith('no'):
                name = name[2:]
            assert name in flag_values, f'{config}: unknown flag {arg}'
            if '=' in arg:
                flag_values[name].parser.parse(arg.split('=', 1)[1])   # the value parses
    finally:
        os.chdir(cwd)


def test_dense_point_term_is_the_landmark_form_over_the_chosen_vertices():
    """FmlModel.loss_terms' `dense_points` (ours): 0 without dense points; for points that are
    the projections of the chosen vertices moved by (3, −4) px at confidence c, c · 25 px² per
    point and frame in landmark units (1/width), summed, batch mean; hidden points (c = 0) drop
    out, even when NaN; the gradient reaches the geometry."""
    assets = training_data.tiny_assets()
    model = model_lib.FmlModel(assets, model_lib.ModelConfig(
        shape_dim=2, albedo_dim=2, width_multiplier=WIDTH, image_size=(64, 64),
        network_input_size=64))
    rng = np.random.default_rng(0)
    b, m, v = 2, 3, assets.mesh.num_vertices
    translation = tf.Variable(np.tile(model.network.translation_init.numpy(), (b, m, 1)))
    params = {'shape_params': tf.zeros([b, 2]), 'albedo_params': tf.zeros([b, 2]),
              'euler_angles': tf.constant(rng.normal(0, 0.1, (b, m, 3)), tf.float32),
              'translation': translation, 'expression': tf.zeros([b, m, 2]),
              'sh': tf.zeros([b, m, 27])}
    images = tf.zeros([b, m, 64, 64, 3])
    landmarks, confidence = tf.zeros([b, m, 66, 2]), tf.zeros([b, m, 66])
    ids = np.array([[3, 10, 20, 40], [v - 1, 0, 7, 7]], np.int32)
    weight = np.array([1.0, 0.5, 0.0, 2.0], np.float32)
    with tf.GradientTape() as tape:
        outputs = model.form_image(params)
        projected = tf.gather(outputs['screen'][..., :2], ids, axis=2, batch_dims=1).numpy()
        detected = projected + np.array([3.0, -4.0], np.float32)
        detected[:, :, 2] = np.nan                             # weight 0: ignored
        terms = model.loss_terms(outputs, images, landmarks, confidence,
                                 dense_points=detected,
                                 dense_confidence=np.broadcast_to(weight, (b, m, 4)),
                                 dense_vertices=ids)
    want = m * weight.sum() * 25.0 / 64.0 ** 2
    np.testing.assert_allclose(terms['dense_points'].numpy(), want, rtol=1e-4)
    assert np.all(np.isfinite(tape.gradient(terms['dense_points'], translation).numpy()))
    assert float(model.loss_terms(outputs, images, landmarks, confidence)['dense_points']) == 0.0
    with pytest.raises(ValueError, match='dense_confidence and dense_vertices'):
        model.loss_terms(outputs, images, landmarks, confidence, dense_points=detected)


def test_dense_point_weight_trains_on_records_that_have_them(run_inputs, tmp_path):
    base, asset, plain_data = run_inputs
    num_vertices = training_data.tiny_assets().mesh.num_vertices
    data = training_data.write_records(str(base / 'dense'), num_samples=4, num_frames=2,
                                       dense_vertices=[0, 5, 100, num_vertices - 1])
    trainer = _trainer(asset, data, tmp_path, lambda_dense_points=0.5)
    trainer.restore()
    history = trainer.train(max_steps=2)
    assert all(h['dense_points'] > 0 and np.isfinite(h['dense_points']) for h in history)
    with open(os.path.join(tmp_path, 'losses.csv')) as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 and all(float(row['dense_points']) > 0 for row in rows)
    with pytest.raises(ValueError, match='needs records with dense 2D points'):
        _trainer(asset, plain_data, tmp_path / 'plain', lambda_dense_points=0.5)
    elsewhere = training_data.write_records(str(base / 'dense_far'), num_samples=2,
                                            num_frames=2, dense_vertices=[0, num_vertices])
    with pytest.raises(ValueError, match=f'has {num_vertices} vertices'):
        _trainer(asset, elsewhere, tmp_path / 'far', lambda_dense_points=0.5)
    # With weight 0 (the paper) such records train like any others.
    _trainer(asset, data, tmp_path / 'zero').train(max_steps=1)


def test_training_reads_no_ground_truth(run_inputs, tmp_path):
    """Records may carry ground truth for evaluation (synthetic data, sidecars of synthetic
    videos); the trainer's batches hold only what real preprocessing gives."""
    base, asset, _ = run_inputs
    num_vertices = training_data.tiny_assets().mesh.num_vertices
    truth = {'gt_vertices': np.zeros((num_vertices, 3), np.float32),
             'gt_expression_vertices': np.zeros((2, num_vertices, 3), np.float32),
             'gt_landmarks': np.zeros((2, 66, 2), np.float32)}
    data = training_data.write_records(str(base / 'with_truth'), num_samples=4, num_frames=2,
                                       ground_truth=truth, dense_vertices=[0, 5])
    trainer = _trainer(asset, data, tmp_path, lambda_dense_points=0.5)
    assert set(trainer.dataset.element_spec) == {
        'images', 'landmarks', 'landmark_confidence', 'dense_points', 'dense_confidence',
        'dense_vertices'}


def test_dense_points_of_the_detector_train_through_the_asset_correspondence(run_inputs,
                                                                            tmp_path):
    """Records of tools.preprocess hold FaceMesh point indices (mediapipe468 space): the trainer
    maps them through the asset's correspondence, and refuses an asset without one."""
    base, plain_asset, _ = run_inputs
    data = training_data.write_records(str(base / 'mediapipe'), num_samples=4, num_frames=2,
                                       dense_vertices=[1, 4, 33, 467],
                                       dense_space=records.DENSE_SPACE_MEDIAPIPE)
    with pytest.raises(ValueError, match='no mediapipe correspondence'):
        _trainer(plain_asset, data, tmp_path / 'none', lambda_dense_points=0.5)
    assets = training_data.tiny_assets()
    table = np.full(468, -1, np.int32)
    table[[1, 4, 33]] = [3, 50, 120]                  # 467 has no vertex: it drops out
    assets.mesh.mediapipe_vertices = table
    assets.mesh.mediapipe_residual_mm = np.zeros(468, np.float32)
    asset = str(tmp_path / 'with_map.npz')
    assets.save(asset)
    trainer = _trainer(asset, data, tmp_path / 'run', lambda_dense_points=0.5)
    batch = next(iter(trainer.dataset))
    np.testing.assert_array_equal(batch['dense_vertices'].numpy()[0], [3, 50, 120, 0])
    assert np.all(batch['dense_confidence'].numpy()[..., 3] == 0)
    assert np.all(batch['dense_confidence'].numpy()[..., :3] == 1)
    trainer.restore()
    history = trainer.train(max_steps=1)
    assert history[0]['dense_points'] > 0 and np.isfinite(history[0]['dense_points'])


def test_unit_scale_identity_needs_a_batch_of_two(run_inputs, tmp_path):
    _, asset, data = run_inputs
    config = model_lib.ModelConfig(shape_dim=4, albedo_dim=4, width_multiplier=WIDTH,
                                   identity_standardization=True)
    with pytest.raises(ValueError, match='needs --batch_size >= 2, got 1'):
        _trainer(asset, data, tmp_path, model_config=config, batch_size=1)
