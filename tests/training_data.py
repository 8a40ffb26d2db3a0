"""Tiny training fixtures: a small face asset and a few multi-frame records (fast tests)."""
import os

import numpy as np

import in_process
import synthetic_face
from mofl.data import records
from mofl.facemodel import assets as assets_lib
from mofl.facemodel import geometry
from mofl.facemodel import graph as graph_lib


# Width multiplier of the networks the training, export, evaluation and reconstruction tests
# train: they check the machinery, not Tables 1–3's widths (tests/test_nets.py does), and a
# paper-width checkpoint with Adam's slots is ~390 MB.
TEST_WIDTH_MULTIPLIER = 0.25


def tiny_assets(n=15, num_nodes=20):
    """FaceAssets of the synthetic grid face (a few hundred vertices)."""
    face = synthetic_face.grid_face(n=n)
    v, tri, lm68 = face['vertices'], face['triangles'], face['landmarks68']
    lm66 = np.delete(lm68, [60, 64]).astype(np.int32)
    upper, lower = geometry.split_lips(v, tri, lm68, face['expression_basis'][0])
    mask = np.ones(len(v), bool)
    mesh = assets_lib.SourceMesh(
        vertices=v, triangles=tri, face_mask=mask, landmark_indices=lm66,
        contour_candidates=geometry.contour_candidate_lines(v, lm66[:17], mask, 6),
        expression_basis=face['expression_basis'],
        expression_sigma=np.full(2, assets_lib.BLENDSHAPE_SIGMA, np.float32),
        expression_names=np.asarray(face['names']),
        skin_color=np.array([0.7, 0.5, 0.4], np.float32),
        open_mouth_vertices=v + 0.5 * face['expression_basis'][0],
        upper_lip_vertices=upper, lower_lip_vertices=lower, source='synthetic')
    return graph_lib.build_assets(mesh, num_nodes=num_nodes, k=3)


REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def write_synthetic_set(directory, num_identities, seed, image_size=240):
    """The grid-face asset (21², 30 nodes) and a tools.make_synthetic set rendered with it:
    one 2-frame sample per identity, half the identities held out, `image_size`² frames.

    Returns:
        (asset path, data folder); the test split is DATA/test-*, the training split DATA/train-*.
    """
    asset = os.path.join(directory, 'grid.npz')
    tiny_assets(n=21, num_nodes=30).save(asset)
    data = os.path.join(directory, 'data')
    made = in_process.run_main('tools.make_synthetic', [
        f'--output_dir={data}', f'--asset={asset}', f'--num_identities={num_identities}',
        '--samples_per_identity=1', '--num_frames=2', '--test_fraction=0.5', f'--seed={seed}',
        f'--image_size={image_size}'])
    assert made.returncode == 0, made.stderr[-3000:]
    return asset, data


def write_records(directory, num_samples=4, num_frames=2, seed=0, num_shards=2,
                  landmark_value=None, ground_truth=None, dense_vertices=None,
                  dense_space=records.DENSE_SPACE_ASSET):
    """Writes smooth random frames with face-like landmarks; returns the shard glob.

    `landmark_value` overwrites every landmark coordinate (e.g. NaN for the NaN-guard test);
    `ground_truth` ({name: array}) is stored with every sample; `dense_vertices` ([K] vertex
    indices, in `dense_space`) adds K face-like dense points per frame.
    """
    rng = np.random.default_rng(seed)
    os.makedirs(directory, exist_ok=True)
    import tensorflow as tf
    writers = [tf.io.TFRecordWriter(os.path.join(directory, f'train-{i:05d}-of-{num_shards:05d}'
                                                 '.tfrecord')) for i in range(num_shards)]
    yy, xx = np.mgrid[0:240, 0:240] / 240.0
    for s in range(num_samples):
        frames = []
        for _ in range(num_frames):
            c = rng.random(3)
            img = (0.5 + 0.3 * np.sin(6 * xx[..., None] * c + 4 * yy[..., None] * c[::-1]))
            frames.append(np.clip(img * 255, 0, 255).astype(np.uint8))
        lm = 120 + rng.normal(0, 40, size=(num_frames, 66, 2))
        if landmark_value is not None:
            lm[:] = landmark_value
        dense = {}
        if dense_vertices is not None:
            k = len(dense_vertices)
            dense = dict(dense_points=(120 + rng.normal(0, 40, (num_frames, k, 2))).astype(
                np.float32), dense_confidence=np.ones((num_frames, k), np.float32),
                dense_vertices=dense_vertices, dense_space=dense_space)
        sample = records.encode_sample(np.stack(frames), lm.astype(np.float32),
                                       np.ones((num_frames, 66), np.float32),
                                       np.zeros((num_frames, 3), np.float32),
                                       identity=f'id{s:03d}', clip=f'id{s:03d}/v/0',
                                       ground_truth=ground_truth, **dense)
        writers[s % num_shards].write(sample)
    for w in writers:
        w.close()
    return os.path.join(directory, 'train-*.tfrecord')


def checkpointed_run(run_dir, model_config, step=1, perturb_seed=None, assets=None):
    """A mofl.train-style run directory (tiny asset unless given) with one checkpoint.

    Args:
        run_dir: the folder to create.
        model_config: mofl.model.ModelConfig.
        step: the checkpoint's step number.
        perturb_seed: if not None, every network weight is moved off its initial value by
            random noise (10 % of its spread), so outputs differ from input to input.
        assets: optional FaceAssets.

    Returns:
        (assets, model) as checkpointed.
    """
    import tensorflow as tf
    from mofl import model as model_lib
    from mofl import run_dir as run_dir_lib
    from mofl import train_config as train_config_lib
    assets = assets or tiny_assets()
    model = model_lib.FmlModel(assets, model_config)
    run_dir_lib.build_model(model, model_config)
    if perturb_seed is not None:
        rng = np.random.default_rng(perturb_seed)
        for variable in model.network.variables:
            value = variable.numpy()
            noise = rng.normal(0.0, 0.1 * (float(np.std(value)) + 1e-3), value.shape)
            variable.assign(value + noise.astype(np.float32))
    run_dir_lib.save_run_description(run_dir, assets, model_config, train_config_lib.TrainConfig())
    tf.train.CheckpointManager(
        tf.train.Checkpoint(model=model, step=tf.Variable(step, dtype=tf.int64)),
        os.path.join(run_dir, 'checkpoints'), max_to_keep=1).save(step)
    return assets, model
