"""tools.probe_identity end to end on a tiny synthetic set: trains variants, measures them."""
import json
import os

import in_process
import training_data


def _train_freeze_in_process(probe, monkeypatch):
    """The 'freeze' variant's training in this process (in_process: no TensorFlow start);
    'freeze_trunk' still trains as the tool runs every variant, a `python -m` subprocess."""
    as_subprocess = probe.run_command

    def run_command(argv, cwd, env, log):
        if '--pretrain_identity_path=freeze' not in argv:
            return as_subprocess(argv, cwd, env, log)
        assert argv[1:3] == ['-m', 'mofl.train'] and cwd == training_data.REPO_ROOT
        training = in_process.run_main('mofl.train', argv[3:])
        log.write(training.stdout + training.stderr)
        return training.returncode

    monkeypatch.setattr(probe, 'run_command', run_command)


def test_probe_trains_variants_and_measures_the_identity_path(tmp_path, monkeypatch):
    asset, data = training_data.write_synthetic_set(str(tmp_path), num_identities=4, seed=3)
    out = tmp_path / 'probe'
    args = [f'--data={data}/train-*', f'--test_data={data}/test-*', f'--output_dir={out}',
            f'--asset={asset}', '--batch_size=2', '--num_frames=2', '--pretrain_steps=2',
            '--train_steps=1', '--num_test_samples=2',
            '--train_flags=shape_dim=4,albedo_dim=4,'
            f'width_multiplier={training_data.TEST_WIDTH_MULTIPLIER}']
    refused = in_process.run_main('tools.probe_identity', args + ['--variants=freeze,nonsense'])
    assert refused.returncode == 1 and 'nonsense' in refused.stderr
    assert not os.path.exists(out / 'freeze' / 'checkpoints')     # refused before training
    result = in_process.run_main('tools.probe_identity', args + [
        '--variants=freeze,freeze_trunk', '--pretrain_only=freeze_trunk'],
        prepare=lambda probe: _train_freeze_in_process(probe, monkeypatch))
    assert result.returncode == 0, result.stderr[-3000:]
    saved = json.load(open(out / 'probe.json'))
    assert [m['step'] for m in saved['freeze']['measurements']] == [2, 3]
    assert [m['step'] for m in saved['freeze_trunk']['measurements']] == [2]
    start = saved['freeze']['measurements'][0]
    for key in ('alpha_spread', 'landmark_px', 'identity_mm', 'template_identity_mm'):
        assert start[key] >= 0.0, key
    assert set(start['active']) == {'table1/conv4', 'table1/medium_features', 'table2/conv1',
                                    'table2/conv2', 'table2/fc1', 'table2/fc2'}
    assert all(0.0 <= v <= 1.0 for v in start['active'].values())
    table = open(out / 'probe.md').read()
    assert '| freeze | 3 |' in table and '| freeze_trunk | 2 |' in table
