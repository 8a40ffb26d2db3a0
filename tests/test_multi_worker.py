"""`mofl.train --strategy=multi_worker`: two local workers (MultiWorkerMirroredStrategy, TF_CONFIG
on loopback ports, CPU) train what one worker trains with the same global batch; only the chief
writes the run (OUTPUT_DIR/checkpoints, losses.csv, TensorBoard), the other worker checkpoints to
its scratch folder OUTPUT_DIR/workers/1; run again with more steps, both resume where they left.

One module fixture runs everything once (each worker is a `python -m mofl.train` process of its
own, started with its own TF_CONFIG): the two workers for steps 0→2, the same two again for
steps 2→3, and alongside the first pair the single-worker reference (`--strategy=default`, in
this process) for steps 0→3 in one go. Global batch 4 (2 samples per worker) out of 8 samples,
so that a step trains on a subset of the data and its choice shows in the losses; with
`--gradient_clip_norm` low enough to clip every step, so that the clip of the global gradient is
checked too (the gradient norms are 35–45 at these settings).
"""
import json
import os
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

import in_process
import same_training
import training_data
from mofl import train_config as train_config_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NUM_WORKERS = 2
FIRST_STEPS, RESUMED_STEPS = 2, 3
WORKER_TIMEOUT_S = 480
PORT_CLASH = ('Address already in use', 'Could not start gRPC server')


def _flags(asset, data, output_dir, train_steps):
    return [f'--asset={asset}', f'--data={data}', f'--output_dir={output_dir}', '--batch_size=4',
            '--num_frames=2', '--shape_dim=8', '--albedo_dim=8', '--pretrain_steps=0',
            f'--train_steps={train_steps}', '--finetune_steps=0', '--checkpoint_every=1',
            '--keep_checkpoints=5', '--log_every=1', '--summary_every=1',
            '--image_summary_every=0', '--deterministic', '--shuffle_buffer=8',
            '--gradient_clip_norm=10', f'--width_multiplier={training_data.TEST_WIDTH_MULTIPLIER}']


def _free_ports(count):
    """`count` distinct loopback ports that were free a moment ago (bound together, released)."""
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(count)]
    try:
        for s in sockets:
            s.bind(('localhost', 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _worker_env(ports, index):
    """One compute thread per worker (two workers share 2 cores), CPU only, its TF_CONFIG."""
    env = {k: v for k, v in os.environ.items() if k != 'TF_CONFIG'}
    env.update(TF_CONFIG=json.dumps({
        'cluster': {'worker': [f'localhost:{port}' for port in ports]},
        'task': {'type': 'worker', 'index': index}}),
        CUDA_VISIBLE_DEVICES='', TF_CPP_MIN_LOG_LEVEL='2', PYTHONUNBUFFERED='1',
        TF_NUM_INTRAOP_THREADS='1', TF_NUM_INTEROP_THREADS='1', OMP_NUM_THREADS='1')
    return env


class _Workers:
    """The workers of one run: started at once, each logging to LOG_DIR/NAME-worker<i>.log."""

    def __init__(self, flags, log_dir, name):
        self.flags, self.log_dir, self.name = flags, log_dir, name
        self.procs, self.logs = [], []

    def start(self):
        ports = _free_ports(NUM_WORKERS)
        self.procs, self.logs = [], []
        for index in range(NUM_WORKERS):
            log = os.path.join(self.log_dir, f'{self.name}-worker{index}.log')
            self.logs.append(log)
            with open(log, 'w') as out:
                self.procs.append(subprocess.Popen(
                    [sys.executable, '-m', 'mofl.train', '--strategy=multi_worker'] + self.flags,
                    cwd=ROOT, env=_worker_env(ports, index), stdout=out,
                    stderr=subprocess.STDOUT))

    def wait(self):
        """Waits for every worker; one that fails or hangs stops the others (a worker whose
        peer is gone would wait in its collectives). Returns the logs' texts."""
        deadline = time.time() + WORKER_TIMEOUT_S
        try:
            while any(p.poll() is None for p in self.procs):
                if any(p.poll() not in (None, 0) for p in self.procs) or time.time() > deadline:
                    break
                time.sleep(0.2)
        finally:
            self.stop()
        texts = []
        for log in self.logs:
            with open(log) as f:
                texts.append(f.read())
        return texts

    def stop(self):
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait()

    def ok(self):
        return all(p.returncode == 0 for p in self.procs)

    def run(self, while_running=None):
        """start + wait, started again on fresh ports (at most twice more) when a worker could
        not bind its port: another process took it between `_free_ports` and the worker's start.
        `while_running` is called once, while the first start's workers train."""
        for attempt in range(3):
            try:
                self.start()
                if while_running is not None and attempt == 0:
                    while_running()
            except BaseException:
                self.stop()
                raise
            texts = self.wait()
            if self.ok():
                return texts
            if attempt < 2 and any(clash in t for t in texts for clash in PORT_CLASH):
                continue
            codes = [p.returncode for p in self.procs]
            pytest.fail(f'{self.name}: workers exited with {codes}\n' + '\n'.join(
                f'--- worker {i} (last lines) ---\n' + t[-3000:] for i, t in enumerate(texts)))
        raise AssertionError('unreachable')


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
    base = tmp_path_factory.mktemp('multi_worker')
    asset = str(base / 'tiny.npz')
    training_data.tiny_assets().save(asset)
    data = training_data.write_records(str(base / 'data'), num_samples=8, num_frames=2)
    workers_dir, single_dir = str(base / 'workers'), str(base / 'single')
    reference = {}

    def single_worker_run():
        reference['result'] = in_process.run_main('mofl.train', ['--strategy=default'] + _flags(
            asset, data, single_dir, RESUMED_STEPS))

    first = _Workers(_flags(asset, data, workers_dir, FIRST_STEPS), str(base), 'first')
    first_logs = first.run(while_running=single_worker_run)
    assert reference['result'].returncode == 0, reference['result'].stderr[-3000:]
    numbers = same_training.checkpoint_numbers
    after_first = dict(checkpoints=numbers(os.path.join(workers_dir, 'checkpoints')),
                       scratch=numbers(os.path.join(workers_dir, 'workers', '1')),
                       worker_dirs=sorted(os.listdir(os.path.join(workers_dir, 'workers'))),
                       losses=same_training.losses(workers_dir),
                       event_files=len(os.listdir(os.path.join(workers_dir, 'train'))))
    resumed = _Workers(_flags(asset, data, workers_dir, RESUMED_STEPS), str(base), 'resumed')
    resumed_logs = resumed.run()
    return dict(workers=workers_dir, single=single_dir, first_logs=first_logs,
                resumed_logs=resumed_logs, after_first=after_first)


def test_two_workers_train_what_one_worker_trains_with_the_same_global_batch(runs):
    """Every step's losses and every checkpoint (weights, Adam's slots and counters, the step)
    of the two workers match the single-worker run within rounding (tolerances:
    tests/same_training.py)."""
    defaults = train_config_lib.TrainConfig()
    assert defaults.lambda_identity_mean == defaults.lambda_depth_spread == 0.0
    assert [r['step'] for r in same_training.losses(runs['single'])] == ['1', '2', '3']
    same_training.assert_same_training(runs['workers'], runs['single'],
                                       steps=range(1, RESUMED_STEPS + 1))


def test_only_the_chief_writes_the_run(runs):
    """Worker 0 (the chief) alone writes OUTPUT_DIR/checkpoints, losses.csv and TensorBoard;
    worker 1 writes its checkpoints, the same ones bit for bit, to OUTPUT_DIR/workers/1."""
    out = runs['workers']
    first = runs['after_first']
    assert first['checkpoints'] == first['scratch'] == [1, 2]
    assert first['worker_dirs'] == ['1']
    assert [r['step'] for r in first['losses']] == ['1', '2']
    assert first['event_files'] == 1
    for logs in (runs['first_logs'], runs['resumed_logs']):
        assert all('with 2 replica(s)' in log for log in logs)
    chief, other = runs['resumed_logs']
    assert f'checkpoints in {os.path.join(out, "checkpoints")}' in chief
    assert f'checkpoints in {os.path.join(out, "workers", "1")}' in other
    assert same_training.checkpoint_numbers(os.path.join(out, 'checkpoints')) == [1, 2, 3]
    assert same_training.checkpoint_numbers(os.path.join(out, 'workers', '1')) == [1, 2, 3]
    assert sorted(os.listdir(os.path.join(out, 'workers'))) == ['1']
    assert len(os.listdir(os.path.join(out, 'train'))) == 2      # one event file per chief run
    variables = same_training.checkpoint_variables
    chief_variables = variables(os.path.join(out, 'checkpoints', 'ckpt-3'))
    other_variables = variables(os.path.join(out, 'workers', '1', 'ckpt-3'))
    assert set(chief_variables) == set(other_variables)
    for name, value in chief_variables.items():
        np.testing.assert_array_equal(other_variables[name], value, err_msg=name)


def test_both_workers_resume_from_the_last_checkpoint(runs):
    out = runs['workers']
    chief, other = runs['resumed_logs']
    ckpt = os.path.join(out, 'checkpoints', 'ckpt-2')
    scratch = os.path.join(out, 'workers', '1', 'ckpt-2')
    assert f'Resumed from {ckpt} at step 2' in chief
    assert f'Resumed from {scratch} at step 2' in other
    for log in (chief, other):
        assert 'Training 2→3 steps' in log
        assert 'Done at step 3' in log
    # The chief's losses.csv continues: steps 1 and 2 of the first run, 3 of the resumed one.
    assert [r['step'] for r in same_training.losses(out)] == ['1', '2', '3']
