"""Benchmarks FML training and inference speed on this machine, with FLOP counts (supp. Tables 1–3).

What is timed (all inside tf.function, after warm-up calls, on random images):
- training: the trainer's own step of the end-to-end stage (`trainer.train_step`: forward pass,
  image formation, the five loss terms of eq. 8–12, gradients, the finiteness check and one
  FusedAdam per parameter group) on B samples of M frames (default B = 1, M = 4, the paper's M);
  then its parts alone — the network's forward+backward, gradients of the whole loss, the
  optimizer, the guard — and, as the baseline in the same run, the previous trainer's step (one
  Keras Adam for everything, a tf.where guard per variable); the ratio full step / network
  forward+backward is printed for both;
- inference: the whole model (network, face model, image formation) on a batch of N single frames,
  i.e. B = N samples with M = 1 frame each (monocular reconstruction of N different images), for
  each N of --infer_batch_sizes; reported as milliseconds per frame;
- baseline: a square float32 matmul (--matmul_size) on the same CPU in the same run, whose
  GFLOP/s is the reference the model's GFLOP/s is compared with (their ratio is printed).

FLOPs are counted analytically from the built layers: 2·K·K·Cin·Cout·Hout·Wout per convolution
and 2·in·out per fully connected layer (biases, ReLUs and pooling are not counted), with the
activation sizes of Tables 1–3; the face model's matrix products (OCL of eq. 5, eq. 3, eq. 6) are
counted the same way; the image formation (projection, normals, SH shading: a few hundred FLOPs
per vertex) is left out. With --profile the analytic network count is cross-checked against
TensorFlow's profiler on the traced graph of one frame. Training FLOPs are taken as 3× the
forward FLOPs (backward ≈ 2× forward), the usual estimate.

    python -m tools.bench_train [--num_frames=4] [--train_steps=10] [--infer_batch_sizes=1,8]
"""
import os
import sys
import time

from absl import app
from absl import flags
from absl import logging

from mofl import flags_common


def define_flags(flag_values=flags.FLAGS):
    """Defines the binary's flags in `flag_values`."""
    flags_common.define_flags(
        ('shape_dim', 'albedo_dim', 'batch_size', 'num_frames', 'train_steps', 'seed'),
        flag_values, defaults={'batch_size': 1, 'train_steps': 10},
        notes={'batch_size': 'B, samples per training step.',
               'train_steps': 'Timed training steps.', 'seed': 'The random inputs.'})
    flags_common.define_asset_flag('default: the default asset, ICT-FaceKit when available.',
                                   flag_values=flag_values)
    flags.DEFINE_integer('warmup_steps', 3, 'Untimed training steps after tracing.',
                         flag_values=flag_values)
    flags.DEFINE_list('infer_batch_sizes', ['1', '8'], 'N of the "batch of N single frames" '
                      'inference runs (B = N, M = 1).', flag_values=flag_values)
    flags.DEFINE_integer('infer_repeats', 10, 'Timed inference calls per batch size.',
                         flag_values=flag_values)
    flags.DEFINE_integer('matmul_size', 2048, 'Side of the square matmul baseline.',
                         flag_values=flag_values)
    flags.DEFINE_boolean('profile', True, 'Cross-check the FLOP count with TF\'s profiler.',
                         flag_values=flag_values)


IMAGE_SIZE = 240


def _conv_flops(layer, out_hw):
    """2·K·K·Cin·Cout·Hout·Wout of a built Conv2D."""
    k_h, k_w, c_in, c_out = layer.kernel.shape
    return 2 * k_h * k_w * c_in * c_out * out_hw[0] * out_hw[1]


def _dense_flops(layer):
    """2·in·out of a built Dense layer."""
    fan_in, fan_out = layer.kernel.shape
    return 2 * fan_in * fan_out


def network_flop_rows(network):
    """Per-row FLOPs of Tables 1–3 for a built FmlNetwork.

    Kernel sizes come from the built layers, output sizes from the tables (an assertion against
    the layers' actual activations runs in `check_activation_sizes`).

    Returns:
        list of (table, row, flops, per) with per 'frame' (runs once per frame) or 'sample' (once
        per multi-frame sample: Table 2 and the identity rows of Table 3).
    """
    fe, idn, par = network.feature_extractor, network.identity_network, network.parameter_network
    rows = [
        ('Table 1', 'conv 11x11/4 -> 60x60x96', _conv_flops(fe.conv1, (60, 60)), 'frame'),
        ('Table 1', 'conv 5x5/2 -> 14x14x256', _conv_flops(fe.conv2, (14, 14)), 'frame'),
        ('Table 1', 'conv 3x3 -> 14x14x384 (low)', _conv_flops(fe.conv3, (14, 14)), 'frame'),
        ('Table 1', 'conv 3x3/2 -> 7x7x256', _conv_flops(fe.conv4, (7, 7)), 'frame'),
        ('Table 1', 'conv 3x3/2 -> 4x4x256 (medium)', _conv_flops(fe.conv5, (4, 4)), 'frame'),
        ('Table 2', 'conv 3x3 -> 4x4x384', _conv_flops(idn.conv1, (4, 4)), 'sample'),
        ('Table 2', 'conv 3x3 -> 4x4x256', _conv_flops(idn.conv2, (4, 4)), 'sample'),
        ('Table 2', 'fc 4096 -> 1000', _dense_flops(idn.fc1), 'sample'),
        ('Table 2', 'fc 1000 -> 1000', _dense_flops(idn.fc2), 'sample'),
    ]
    if idn.fc_out is not None:
        rows.append(('Table 2', f'fc 1000 -> g+a = {idn.fc_out.units}',
                     _dense_flops(idn.fc_out), 'sample'))
    rows += [
        ('Table 3', 'fc g+a -> 196', _dense_flops(par.fc_identity), 'sample'),
        ('Table 3', 'conv 3x3 -> 14x14x384 (identity)', _conv_flops(par.conv_identity, (14, 14)),
         'sample'),
        ('Table 3', 'conv 3x3 768 -> 14x14x384', _conv_flops(par.conv1, (14, 14)), 'frame'),
        ('Table 3', 'conv 3x3 -> 14x14x384', _conv_flops(par.conv2, (14, 14)), 'frame'),
        ('Table 3', 'conv 3x3 -> 14x14x256', _conv_flops(par.conv3, (14, 14)), 'frame'),
        ('Table 3', 'fc 6x6x256 -> 2048', _dense_flops(par.fc1), 'frame'),
        ('Table 3', f'fc 2048 -> 6+b+27 = {par.num_outputs}', _dense_flops(par.fc_out), 'frame'),
    ]
    return rows


def check_activation_sizes(network):
    """Asserts that the spatial sizes used by `network_flop_rows` are the network's own."""
    import tensorflow as tf
    acts = network(tf.zeros([1, 1, IMAGE_SIZE, IMAGE_SIZE, 3]), return_activations=True)
    acts = acts['activations']
    expected = {'table1/conv1': (60, 60), 'table1/conv2': (14, 14),
                'table1/low_features': (14, 14), 'table1/conv4': (7, 7),
                'table1/medium_features': (4, 4), 'table2/conv1': (4, 4),
                'table2/conv2': (4, 4), 'table3/conv_identity': (14, 14),
                'table3/conv1': (14, 14), 'table3/conv2': (14, 14), 'table3/conv3': (14, 14),
                'table3/pool': (6, 6)}
    for name, size in expected.items():
        got = tuple(acts[name].shape[1:3])
        assert got == size, f'{name}: activation {got}, FLOP table assumes {size}'


def face_model_flops(face_model, num_expressions):
    """FLOPs of decoding (matrix products only) as (per call, per sample, per frame).

    per call: OCL(Θs) = Θs − Q·(Qᵀ·Θs) (eq. 5), two [3G, r]×[r, g] products;
    per sample: α·OCL(Θs)ᵀ (eq. 1), skinning S (k weights per vertex, eq. 2), Θa·β (eq. 6);
    per frame: B·δ (eq. 3).
    """
    three_g, rank = face_model.ocl.basis.shape
    g, a = face_model.shape_dim, face_model.albedo_dim
    v, k = face_model.skin_weights.shape
    per_call = 4 * three_g * rank * g
    per_sample = 2 * g * three_g + 2 * k * 3 * v + 2 * a * 3 * v
    per_frame = 2 * num_expressions * 3 * v
    return per_call, per_sample, per_frame


def profiler_flops(function, *specs):
    """Float operations of the traced graph of `function` per TensorFlow's profiler, or None."""
    import tensorflow as tf
    try:
        graph = tf.function(function).get_concrete_function(*specs).graph
        options = (tf.compat.v1.profiler.ProfileOptionBuilder(
            tf.compat.v1.profiler.ProfileOptionBuilder.float_operation())
            .with_empty_output().build())
        return int(tf.compat.v1.profiler.profile(graph=graph, options=options).total_float_ops)
    except Exception as e:   # the profiler is a v1 tool; its failure must not stop the bench
        logging.warning('TF profiler FLOP count failed: %s', e)
        return None


def time_calls(function, args, repeats):
    """Seconds of each of `repeats` timed calls of `function(*args)` (list)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = function(*args)
        _block(result)
        times.append(time.perf_counter() - start)
    return times


def _block(result):
    """Forces the computation to finish (eager tensors are already done; fetch one value)."""
    import tensorflow as tf
    leaves = tf.nest.flatten(result)
    if leaves:
        leaves[0].numpy()


def main(argv, flag_values=flags.FLAGS):
    from mofl import startup
    startup.quiet_tensorflow()
    del argv
    import keras
    import numpy as np
    import tensorflow as tf
    from mofl import losses
    from mofl import model as model_lib
    from mofl import run_dir as run_dir_lib
    from mofl import trainer as trainer_lib
    from mofl import train_config as train_config_lib
    from mofl.facemodel import default_assets

    load_before = os.getloadavg()
    assets, _ = default_assets.load_asset(flag_values.asset)
    config = flags_common.config_from_flags(model_lib.ModelConfig, flag_values)   # g, a
    keras.utils.set_random_seed(flag_values.seed)
    model = model_lib.FmlModel(assets, config)
    run_dir_lib.build_model(model, config)
    mesh = assets.mesh
    num_params = sum(int(np.prod(v.shape)) for v in model.trainable_variables)
    net_params = sum(int(np.prod(v.shape)) for v in model.network.trainable_variables)

    # FLOPs, analytic (Tables 1–3) and the face model's products.
    check_activation_sizes(model.network)
    rows = network_flop_rows(model.network)
    net_frame = sum(f for *_, f, per in rows if per == 'frame')
    net_sample = sum(f for *_, f, per in rows if per == 'sample')
    face_call, face_sample, face_frame = face_model_flops(model.face_model, mesh.num_expressions)

    def forward_flops(batch, frames):
        """Analytic forward FLOPs of one model call on [batch, frames] images."""
        return (batch * frames * (net_frame + face_frame) + batch * (net_sample + face_sample)
                + face_call)

    profiled = None
    if flag_values.profile:
        spec = tf.TensorSpec([1, 1, IMAGE_SIZE, IMAGE_SIZE, 3], tf.float32)
        profiled = (profiler_flops(lambda x: model.network(x), spec),
                    profiler_flops(lambda x: model(x), spec))

    rng = np.random.default_rng(flag_values.seed)
    batch, frames = flag_values.batch_size, flag_values.num_frames

    # Baseline: a dense matmul on the same CPU, same run.
    n = flag_values.matmul_size
    mat_a = tf.constant(rng.random((n, n), np.float32))
    mat_b = tf.constant(rng.random((n, n), np.float32))
    matmul = tf.function(lambda x, y: tf.matmul(x, y))
    time_calls(matmul, (mat_a, mat_b), 2)
    matmul_times = time_calls(matmul, (mat_a, mat_b), 10)   # 10 more at the end of the run

    # Training: the trainer's own end-to-end step (trainer.train_step: parameter groups, one
    # FusedAdam each, one global-norm finiteness check), and its parts timed alone; the
    # previous trainer's step (one Keras Adam, a tf.where guard per variable) is the baseline.
    weights = losses.paper_loss_weights(mesh.num_vertices)
    train_config = train_config_lib.TrainConfig(learning_rate=1e-4)
    groups = trainer_lib.parameter_groups(model)
    optimizers = trainer_lib.make_optimizers(groups, 1e-4)
    variables = [v for g in train_config_lib.PARAMETER_GROUPS for v in groups[g]]
    network_variables = model.network.trainable_variables
    images = tf.constant(rng.random((batch, frames, IMAGE_SIZE, IMAGE_SIZE, 3), np.float32))
    landmarks = tf.constant(120.0 + rng.normal(0.0, 30.0, (batch, frames, 66, 2)), tf.float32)
    batch_dict = {'images': images, 'landmarks': landmarks,
                  'landmark_confidence': tf.ones([batch, frames, 66])}

    def total_loss():
        outputs = model(images, training=True)
        terms = model.loss_terms(outputs, images, landmarks, batch_dict['landmark_confidence'])
        return losses.total_loss({k: terms[k] for k in train_config_lib.LOSS_TERMS}, weights)

    @tf.function
    def full_step():
        return trainer_lib.train_step(model, batch_dict, 1, train_config, groups, optimizers,
                                      weights)['total']

    # A fixed random linear read-out of every network output: its gradient flows through all of
    # Tables 1–3, like the loss's.
    output_weights = {k: tf.constant(rng.normal(0.0, 1.0, v.shape), tf.float32)
                      for k, v in model.network(images).items()}

    @tf.function
    def network_forward_backward():
        with tf.GradientTape() as tape:
            outputs = model.network(images)
            loss = tf.add_n([tf.reduce_sum(outputs[k] * output_weights[k])
                             for k in sorted(output_weights)])
        return tape.gradient(loss, network_variables)

    @tf.function
    def loss_gradients():
        with tf.GradientTape() as tape:
            total = total_loss()
        return tape.gradient(total, variables)

    @tf.function
    def fused_adam_apply(grads):
        start = 0
        for group in train_config_lib.PARAMETER_GROUPS:
            count = len(groups[group])
            optimizers[group].apply_gradients(zip(grads[start:start + count], groups[group]))
            start += count
        return grads[0]

    keras_adam = keras.optimizers.Adam(learning_rate=1e-4)
    keras_adam.build(variables)

    @tf.function
    def keras_adam_apply(grads):
        keras_adam.apply_gradients(zip(grads, variables))
        return grads[0]

    @tf.function
    def global_norm_guard(grads):
        return tf.math.is_finite(tf.linalg.global_norm(grads))

    @tf.function
    def per_variable_guard(grads):
        finite = tf.constant(True)
        for g in grads:
            finite &= tf.reduce_all(tf.math.is_finite(g))
        return [tf.where(finite, g, tf.zeros_like(g)) for g in grads]

    previous_adam = keras.optimizers.Adam(learning_rate=1e-4)
    previous_adam.build(variables)

    @tf.function
    def previous_step():
        with tf.GradientTape() as tape:
            total = total_loss()
        grads = per_variable_guard(tape.gradient(total, variables))
        previous_adam.apply_gradients(zip(grads, variables))
        return total

    start = time.perf_counter()
    loss = float(full_step().numpy())
    trace_s = time.perf_counter() - start
    # Every part below updates the weights with its own optimizer or stale gradients; each
    # starts again from these weights, so all are timed on the same, sane model.
    weights_before = [v.numpy() for v in model.variables]
    grads = [tf.convert_to_tensor(g) for g in loss_gradients()]
    parts = {}
    for name, function, args in (
            ('full', full_step, ()), ('previous', previous_step, ()),
            ('network', network_forward_backward, ()), ('gradients', loss_gradients, ()),
            ('fused_adam', fused_adam_apply, (grads,)), ('keras_adam', keras_adam_apply, (grads,)),
            ('norm_guard', global_norm_guard, (grads,)),
            ('where_guard', per_variable_guard, (grads,))):
        for variable, value in zip(model.variables, weights_before):
            variable.assign(value)
        for _ in range(flag_values.warmup_steps):
            _block(function(*args))
        parts[name] = time_calls(function, args, flag_values.train_steps)
    train_times = parts['full']
    train_flops = 3 * forward_flops(batch, frames)

    # Inference: batch of N single frames (B = N, M = 1), whole model; network alone for scale.
    infer = tf.function(lambda x: model(x), reduce_retracing=True)
    network_only = tf.function(lambda x: model.network(x), reduce_retracing=True)
    inference = []
    for size in (int(s) for s in flag_values.infer_batch_sizes):
        frames_in = tf.constant(rng.random((size, 1, IMAGE_SIZE, IMAGE_SIZE, 3), np.float32))
        for name, function in (('model', infer), ('network only', network_only)):
            time_calls(function, (frames_in,), 1)     # trace + warm up
            times = time_calls(function, (frames_in,), flag_values.infer_repeats)
            flops = forward_flops(size, 1) if name == 'model' else size * (net_frame + net_sample)
            inference.append((name, size, times, flops))
    matmul_times += time_calls(matmul, (mat_a, mat_b), 10)
    load_after = os.getloadavg()
    median, best = np.median, np.min
    matmul_s = median(matmul_times)
    matmul_gflops = 2 * n ** 3 / matmul_s / 1e9
    train_s = median(train_times)

    # Report: the table first, the figures last.
    print()
    print(f'FML benchmark — {mesh.source} asset (V={mesh.num_vertices}, T={len(mesh.triangles)}, '
          f'b={mesh.num_expressions}, G={assets.graph.num_nodes}), g={config.shape_dim}, '
          f'a={config.albedo_dim}, {IMAGE_SIZE}x{IMAGE_SIZE} input')
    print(f'TensorFlow {tf.__version__}, {os.cpu_count()} CPU cores (shared with other jobs: '
          f'load average {load_before[0]:.2f} before, {load_after[0]:.2f} after), GPUs: '
          f'{len(tf.config.list_physical_devices("GPU"))}')
    print(f'Trainable parameters: {num_params:,} ({net_params:,} in the network)')
    print()
    print('Forward FLOPs (analytic: 2·K·K·Cin·Cout·Hout·Wout per conv, 2·in·out per FC):')
    print(f'  {"table":<8s} {"row":<36s} {"per":<7s} {"MFLOP":>10s}')
    for table, row, flops, per in rows:
        print(f'  {table:<8s} {row:<36s} {per:<7s} {flops / 1e6:10.1f}')
    print(f'  {"face":<8s} {"OCL(Θs) (eq. 5)":<36s} {"call":<7s} {face_call / 1e6:10.1f}')
    print(f'  {"face":<8s} {"identity + skinning + albedo":<36s} {"sample":<7s} '
          f'{face_sample / 1e6:10.1f}')
    print(f'  {"face":<8s} {"expression B·δ (eq. 3)":<36s} {"frame":<7s} '
          f'{face_frame / 1e6:10.1f}')
    print(f'  network per frame (Tables 1, 3 Siamese rows): {net_frame / 1e9:.3f} GFLOP; '
          f'per sample (Table 2, Table 3 identity rows): {net_sample / 1e9:.3f} GFLOP')
    single = forward_flops(1, 1)
    print(f'  one single frame (B=1, M=1), network + face model: {single / 1e9:.3f} GFLOP')
    if profiled is not None:
        net_prof, model_prof = profiled
        net_text = 'n/a' if net_prof is None else (
            f'{net_prof / 1e9:.3f} GFLOP (analytic/profiler = '
            f'{(net_frame + net_sample) / net_prof:.3f})')
        model_text = 'n/a' if model_prof is None else f'{model_prof / 1e9:.3f} GFLOP'
        print(f'  TF profiler, one frame: network {net_text}; whole model {model_text} '
              '(the profiler also counts bias adds, ReLUs, pooling and image formation)')
    print()
    print('Timings: median (and best) of the timed calls; GFLOP/s and the ratio from the median.')
    print(f'{"run":<52s} {"ms":>8s} {"(best)":>8s} {"per":<6s} {"GFLOP/s":>8s} '
          f'{"vs matmul":>9s}')

    def line(label, times, count, unit, flops):
        gflops = flops / median(times) / 1e9
        print(f'{label:<52s} {median(times) / count * 1e3:8.1f} {best(times) / count * 1e3:8.1f} '
              f'{unit:<6s} {gflops:8.1f} {gflops / matmul_gflops:9.2f}')
        return gflops

    line(f'matmul {n}x{n} float32 (baseline, start + end)', matmul_times, 1, 'call',
         2 * n ** 3)
    for name, size, times, flops in inference:
        line(f'inference {name}, batch of {size} single frames', times, size, 'frame', flops)
    train_gflops = line(f'training step B={batch}, M={frames} (3x forward FLOPs)', train_times, 1,
                        'step', train_flops)
    print(f'(first training call incl. tracing: {trace_s:.1f} s; its loss {loss:.4g}; '
          f'{flag_values.train_steps} timed steps after {flag_values.warmup_steps} warm-up; '
          'inference: '
          f'{flag_values.infer_repeats} timed calls per row after one warm-up)')
    print()
    ms = {k: median(v) * 1e3 for k, v in parts.items()}
    network_ms = ms['network']
    print(f'Training step B={batch}, M={frames}, end-to-end stage, parts timed alone (median ms; '
          f'ratio to the network\'s forward+backward):')
    rows = [
        ('network forward+backward (Tables 1-3)', ms['network']),
        ('face model + image formation + losses (+ backward)',
         max(ms['gradients'] - ms['network'], 0.0)),
        (f'optimizer: FusedAdam per group ({num_params:,} variables)', ms['fused_adam']),
        ('  previous: one Keras Adam', ms['keras_adam']),
        ('finiteness guard: global gradient norm', ms['norm_guard']),
        ('  previous: tf.where per variable', ms['where_guard']),
        ('full step, this trainer', ms['full']),
        ('  previous trainer\'s step (Keras Adam + per-variable guard)', ms['previous']),
    ]
    for label, value in rows:
        print(f'  {label:<62s} {value:8.1f} ms  {value / network_ms:5.2f}x')
    print()
    model_rows = {size: (median(times), flops) for name, size, times, flops in inference
                  if name == 'model'}
    for size, (seconds, flops) in model_rows.items():
        print(f'Inference, batch of {size} single frames: {seconds / size * 1e3:.1f} ms per frame, '
              f'{flops / size / 1e9:.3f} GFLOP per frame, {flops / seconds / 1e9:.1f} GFLOP/s '
              f'({flops / seconds / 1e9 / matmul_gflops:.2f}x the {matmul_gflops:.1f} GFLOP/s '
              'matmul baseline)')
    print(f'Full step / network forward+backward: {ms["full"] / network_ms:.2f} (this trainer), '
          f'{ms["previous"] / network_ms:.2f} (previous trainer); full step '
          f'{ms["previous"] / ms["full"]:.2f}x faster than before')
    print(f'Training: {1.0 / train_s:.3f} steps/s (B={batch}, M={frames}), '
          f'{forward_flops(batch, frames) / (batch * frames) / 1e9:.3f} GFLOP forward per frame, '
          f'{train_gflops:.1f} GFLOP/s ({train_gflops / matmul_gflops:.2f}x the matmul baseline)')
    return 0


if __name__ == '__main__':
    define_flags()
    sys.exit(app.run(main))
