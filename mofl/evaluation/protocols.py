"""Evaluation protocols behind `mofl.evaluate`: synthetic Table 1, real scans, photometric
Table 4 (paper §4.2, supplement Table 4). The protocol's steps and constants are in
docs/evaluation.md "Geometric evaluation protocol"."""
import csv
import os
import time

import cv2
import numpy as np
from absl import logging

from mofl import model as model_lib


def parse_runs(spec):
    """'1:dirA,2:dirB' -> {1: 'dirA', 2: 'dirB'} (keys int)."""
    runs = {}
    for item in spec.split(','):
        key, sep, path = item.partition(':')
        if not sep or not key.strip().isdigit():
            raise ValueError(f'--runs entry {item!r} is not KEY:RUN_DIR')
        runs[int(key)] = path
    return runs


def _model_outputs(model, frames, identity_enabled=True):
    """Runs the model on [M, H, W, 3] frames of one person; returns numpy outputs."""
    import tensorflow as tf
    outputs = model(tf.convert_to_tensor(frames[None], tf.float32),
                    identity_enabled=identity_enabled)
    return {k: v[0].numpy() for k, v in outputs.items()}


def synthetic_geometry(runs, data, test_frames, max_samples, with_scale, metric):
    """Table 1 on the synthetic set: per-frame meshes vs ground truth, per train/test M.

    Every test sample has 4 frames; test M = m feeds the frames in consecutive groups of m
    (M = 1: each frame alone; M = 2: frames (0, 1) and (2, 3)), so every configuration is
    scored on the same frames. The baseline "template + fitted expression/pose" is the train
    M = min run with α = β = 0; "template, neutral" is v̄ itself (no fitting at all).

    Returns:
        {'vertex': {(train_m, test_m): [rmse], 'baselines': {...}}, 'surface': {...}}.
    """
    from mofl import run_dir as run_dir_lib
    from mofl.data import pipeline
    from mofl.evaluation import metrics
    dataset = pipeline.make_dataset(data, batch_size=1, num_frames=4, shuffle=False,
                                    repeat=False)
    samples = []
    for batch in dataset:
        samples.append({'images': batch['images'][0].numpy(),
                        'gt': batch['gt_expression_vertices'][0].numpy()})
        if max_samples and len(samples) >= max_samples:
            break
    if not samples:
        raise ValueError(f'{data}: no test samples')
    metrics_wanted = ['vertex', 'surface'] if metric == 'both' else [metric]
    results = {m: {} for m in metrics_wanted}
    baselines = {m: {} for m in metrics_wanted}

    def score(store, key, pred, gt, mesh):
        """Appends the RMSE of one predicted frame mesh to each wanted metric's list."""
        if 'vertex' in store:
            store['vertex'].setdefault(key, []).append(
                metrics.vertex_rmse(pred, gt, mesh.face_mask, with_scale=with_scale)['rmse_mm'])
        if 'surface' in store:
            lm = mesh.landmark_indices
            store['surface'].setdefault(key, []).append(metrics.mesh_rmse(
                pred, mesh.face_mask, gt, mesh.triangles, pred_landmarks=pred[lm],
                scan_landmarks=gt[lm], with_scale=with_scale)['rmse_mm'])

    baseline_name = None
    for train_m in sorted(runs):
        assets, model, step = run_dir_lib.load_run(runs[train_m])
        pipeline.check_ground_truth_mesh(data, assets.mesh)
        logging.info('train M=%d: %s (step %d), %d test samples', train_m, runs[train_m], step,
                     len(samples))
        start = time.time()
        for test_m in test_frames:
            for sample in samples:
                for first in range(0, 4 - test_m + 1, test_m):
                    group = slice(first, first + test_m)
                    out = _model_outputs(model, sample['images'][group])
                    for f in range(test_m):
                        score(results, (train_m, test_m), out['vertices'][f],
                              sample['gt'][first + f], assets.mesh)
        if baseline_name is None:   # template + fitted expression/pose, from the first run
            baseline_name = f'Template + fitted expr./pose (train M={train_m})'
            for sample in samples:
                for f in range(4):
                    score(baselines, 'Template, neutral', assets.mesh.vertices,
                          sample['gt'][f], assets.mesh)
            for sample in samples:
                for f in range(4):
                    out = _model_outputs(model, sample['images'][f:f + 1],
                                         identity_enabled=False)
                    score(baselines, baseline_name, out['vertices'][0], sample['gt'][f],
                          assets.mesh)
        logging.info('train M=%d evaluated in %.0f s', train_m, time.time() - start)
    return {m: {'results': results[m], 'baselines': baselines[m]} for m in metrics_wanted}


def read_pairs(path):
    """Reads the scans CSV: rows `scan_path,image[;image...]` (relative paths: to the CSV)."""
    base = os.path.dirname(os.path.abspath(path))
    rows = []
    with open(path) as f:
        for line_no, row in enumerate(csv.reader(f), 1):
            if not row or row[0].startswith('#'):
                continue
            if len(row) < 2:
                raise ValueError(f'{path}:{line_no}: need scan_path,image_path[;image_path...]')
            resolve = lambda p: p if os.path.isabs(p) else os.path.join(base, p)
            rows.append((resolve(row[0].strip()),
                         [resolve(p.strip()) for p in row[1].split(';') if p.strip()]))
    return rows


def real_scans(runs, pairs_path, with_scale, facewarehouse=False):
    """Tables 1–2 protocol on real scans: reconstruct from the images, surface RMSE.

    Args:
        runs: {train M: run folder}.
        pairs_path: CSV of `scan_path,image_path[;image_path...]` (`read_pairs`).
        with_scale: similarity instead of rigid alignment.
        facewarehouse: Table 2: every scan must be a FaceWarehouse `.obj` (11,510 vertices).

    Returns:
        {'surface': {'results': {(train M, test M): [N] RMSE in mm}, 'baselines': {}}}.

    Raises:
        ValueError: no scan could be evaluated, or (`facewarehouse`) a scan that is not one.
    """
    from mofl import run_dir as run_dir_lib
    from mofl import facemesh
    from mofl.data import face_tracking
    from mofl.data import inputs as inputs_lib
    from mofl.evaluation import datasets, metrics
    pairs = read_pairs(pairs_path)
    if facewarehouse:
        others = [scan for scan, _ in pairs if not scan.lower().endswith(('.obj', '.obj.gz'))]
        if others:
            raise ValueError(f'{pairs_path}: FaceWarehouse meshes are .obj files; not: '
                             f'{others[:3]}')
    results, failures = {}, 0
    with facemesh.FaceTracker() as tracker:
        crops = {}
        for scan_path, images in pairs:   # detect and crop once, as mofl.reconstruct does
            try:
                faces = [face_tracking.crop_face(tracker, inputs_lib.read_image(p),
                                                 face_tracking.DEFAULT_CROP_SCALE,
                                                 model_lib.IMAGE_SIZE[0], os.path.basename(p), p)
                         for p in images]
            except inputs_lib.InputError as e:
                logging.warning('skipping %s: %s', scan_path, e)
                failures += 1
                continue
            if any(face is None for face in faces):
                logging.warning('skipping %s: no face found in one of %s', scan_path, images)
                failures += 1
                continue
            crops[scan_path] = np.stack([face.crop for face in faces])
    for train_m in sorted(runs):
        assets, model, _ = run_dir_lib.load_run(runs[train_m])
        for scan_path, frames in crops.items():
            try:
                scan = datasets.load_scan(scan_path)
            except (OSError, ValueError) as e:
                logging.warning('skipping %s: %s', scan_path, e)
                failures += 1
                continue
            size = tuple(model.config.image_size)
            if frames.shape[1:3] != size:   # crops are cut at 240; smaller (CPU-scale) models
                frames = np.stack([cv2.resize(f, size[::-1], interpolation=cv2.INTER_AREA)
                                   for f in frames])
            out = _model_outputs(model, frames.astype(np.float32) / 255.0)
            for f in range(len(frames)):
                r = metrics.mesh_rmse(out['vertices'][f], assets.mesh.face_mask,
                                      scan.vertices, scan.triangles, with_scale=with_scale)
                results.setdefault((train_m, len(frames)), []).append(r['rmse_mm'])
    if not results:
        raise ValueError(f'{pairs_path}: no scan could be evaluated ({failures} failed)')
    return {'surface': {'results': results, 'baselines': {}}}


def photometric(runs, data, max_samples):
    """Supplement Table 4: mean/SD over images of the mean |render − input| (RGB 0..255) over the
    face-region pixels, for each model size (train M as in the runs, test M = 1)."""
    import tensorflow as tf
    from mofl import run_dir as run_dir_lib
    from mofl.data import pipeline
    from mofl.render import image_renderer
    dataset = pipeline.make_dataset(data, batch_size=1, num_frames=4, shuffle=False,
                                    repeat=False)
    frames = []
    for batch in dataset:
        frames.extend(batch['images'][0].numpy())
        if max_samples and len(frames) >= 4 * max_samples:
            break
    table = {}
    for size in sorted(runs):
        assets, model, _ = run_dir_lib.load_run(runs[size])
        face_triangles = np.all(assets.mesh.face_mask[assets.mesh.triangles], axis=1)
        errors = []
        for frame in frames:
            out = model(tf.convert_to_tensor(frame[None, None]))
            rendered = image_renderer.render_image(
                out['vertices'][:, 0], model.triangles, out['albedo'], out['sh'][:, 0],
                out['euler_angles'][:, 0], out['translation'][:, 0], camera=model.camera)
            ids = rendered.triangle_ids[0].numpy()
            region = (ids >= 0) & face_triangles[np.maximum(ids, 0)]
            if not region.any():
                continue
            diff = np.abs(np.clip(rendered.image[0].numpy(), 0, 1) - frame) * 255.0
            errors.append(float(diff[region].mean()))
        table[size] = (float(np.mean(errors)), float(np.std(errors)), len(errors))
        logging.info('size %d: %.2f ± %.2f over %d images', size, *table[size])
    return table
