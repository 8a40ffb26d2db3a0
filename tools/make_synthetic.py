r"""Writes the synthetic ground-truth set as records with GT meshes.

The reference: docs/data.md "Synthetic ground truth".

    python -m tools.make_synthetic --output_dir=data/synthetic --num_identities=24 \
        --samples_per_identity=2 --num_frames=4 --seed=0 --contact_sheet=data/synthetic/sheet.png

Identities come from a ground-truth identity model the learner never sees (`--identity_model`:
ICT's 100 identity modes on the ICT asset, else a procedural model; see
`mofl.data.synthetic_identity`), rendered with random pose, light, expression, background, blur
and noise. Every identity has `--samples_per_identity` samples of M = `--num_frames` frames with
the same identity and albedo.

Output (in `--output_dir`):
- `{train,test}-SSSSS-of-NNNNN.tfrecord`: the records (schema: `mofl.data.records`), with ground
  truth `gt_vertices` [V, 3] (identity, neutral expression, mm, model space),
  `gt_expression_vertices` [M, V, 3] (each frame's mesh), `gt_identity_weights` [K] and
  `gt_albedo` [V, 3]. The split is by identity: a seeded draw sends `--test_fraction` of the
  identities to `test` (a split without identities gets no files).
- `manifest.json`: asset, identity model, counts, seed, flags, timings.

`--image_size=N` renders N×N frames with the 240 crop's field of view (`Camera.crop`); with a
decimated asset (`--asset=default:2500` or a `tools.build_assets --target_vertices` file) the
frames are still rendered with the full source mesh, and the ground-truth meshes and albedo are
stored on the asset's vertices through its coarse-to-full map.
- `--dense_points=K` (default 0): K more 2D points per frame besides the 66 landmarks, on asset
  vertices spread evenly over the face (`mofl.landmarks.dense_point_vertices`), projected with the
  landmarks' noise model and hidden ones at confidence 0 (our deviation, docs/data.md "Dense
  2D points"; `mofl.train --lambda_dense_points` uses them). Everything else is unchanged by it.
- `--contact_sheet`: a PNG grid of the first samples (one row per sample, landmarks drawn: jaw
  yellow, others green, confidence < 0.5 red; seen dense points cyan).

`--videos`: instead of records, a VoxCeleb2-style tree of short clips `synthID/videoCCC/00001.mp4`
drawn by an independent renderer (Mitsuba 3: the full ICT head with eyes, teeth and mouth, specular
skin, environment light with cast shadows) in `--frame_width`×`--frame_height` frames with another
focal length per clip, smooth head motion and expression change, MPEG-4 compressed, each with its
ground truth in a sidecar `00001.gt.npz` (`mofl.data.synthetic_video`; needs the ICT asset).
`--samples_per_identity` clips per person, `--frames_per_clip` frames each; `tools.preprocess`
then makes the training records from it exactly as from real video. Re-running skips finished
clips.

Deterministic given `--seed` (and the other flags, except `--batch_size`, which only changes
speed). Demo default (24 identities × 2 samples × 4 frames) takes well under a minute on 2 CPU
cores.
"""
import json
import os
import sys
import time

from absl import app
from absl import flags
from absl import logging
import numpy as np

from mofl import flags_common
from mofl import startup
from mofl.facemodel import decimation   # NumPy only: flag checks stay fast


def define_flags(flag_values=flags.FLAGS):
    """Defines the binary's flags in `flag_values`."""
    flags_common.define_flags(
        ('output_dir', 'num_identities', 'num_frames', 'test_fraction', 'num_shards', 'seed'),
        flag_values, defaults={'num_identities': 24, 'test_fraction': 0.25},
        notes={'output_dir': 'Record shards and manifest.json.',
               'num_shards': 'Record files per split.'})
    flags.DEFINE_integer('samples_per_identity', 2, 'Distinct M-frame samples per identity.',
                         flag_values=flag_values)
    flags_common.define_asset_flag('default: mofl\'s default asset (ICT when its data is '
                                   'present, else mediapipe). A decimated asset\'s frames are '
                                   'rendered with the full mesh and its ground truth is stored '
                                   'on the asset\'s vertices.', flag_values=flag_values)
    flags_common.define_flags(
        ('image_size', 'ict_dir', 'batch_size', 'jpeg_quality', 'dense_points'), flag_values,
        defaults={'batch_size': 8},
        notes={'image_size': 'The camera keeps the 240 crop\'s field of view '
                             '(f = 1000 px · N / 240).',
               'batch_size': 'Frames per renderer call.'})
    flags.DEFINE_enum('identity_model', 'auto', ['auto', 'ict', 'procedural'],
                      'Ground-truth identity model. auto: ICT\'s identity modes when the asset '
                      'is the ICT face area and the ICT data is present, else procedural.',
                      flag_values=flag_values)
    flags.DEFINE_float('truncation', 2.5, 'Identity weights are N(0, 1) truncated at ±this.',
                       flag_values=flag_values)
    flags.DEFINE_bool('videos', False, 'Write a VoxCeleb2-style tree of synthetic clips drawn by '
                      'Mitsuba 3 (plus ground-truth sidecars) instead of records.',
                      flag_values=flag_values)
    flags_common.define_flags(('frames_per_clip', 'spp'), flag_values,
                              notes={'frames_per_clip': 'With --videos.', 'spp': 'With --videos.'})
    flags.DEFINE_integer('frame_width', 320, '--videos: frame width (pixels).',
                         flag_values=flag_values)
    flags.DEFINE_integer('frame_height', 240, '--videos: frame height (pixels).',
                         flag_values=flag_values)
    flags_common.define_flags(('contact_sheet',), flag_values)
    flags.DEFINE_integer('contact_sheet_samples', 8, 'Samples (rows) on the contact sheet.',
                         flag_values=flag_values)


def shard_path(output_dir, split, shard, num_shards):
    return os.path.join(output_dir, f'{split}-{shard:05d}-of-{num_shards:05d}.tfrecord')


def test_identities(num_identities, test_fraction, seed):
    """The identity indices of the test split: a seeded draw of round(fraction · N) identities
    (at least one when the fraction is positive and N ≥ 2)."""
    count = int(round(test_fraction * num_identities))
    if test_fraction > 0 and count == 0 and num_identities >= 2:
        count = 1
    count = min(count, num_identities)
    rng = np.random.default_rng([int(seed), 2 ** 31 - 1])
    return set(int(i) for i in rng.permutation(num_identities)[:count])


def contact_sheet(samples, max_rows):
    """One row per sample: its frames with landmarks (and seen dense points) drawn (uint8)."""
    from mofl.render import overlay  # pylint: disable=import-outside-toplevel
    rows = []
    for sample in samples[:max_rows]:
        panels = []
        for f in range(sample.images.shape[0]):
            image = sample.images[f]
            if sample.dense_points is not None:     # seen dense points first, in cyan
                seen = sample.dense_confidence[f] > 0
                image = overlay.draw_landmarks(image, sample.dense_points[f][seen],
                                               color=(0, 255, 255), radius=0.8)
            landmarks = sample.landmarks[f]
            confident = sample.landmark_confidence[f] >= 0.5
            image = overlay.draw_landmarks(image, landmarks[:17][confident[:17]],
                                           color=(255, 255, 0), radius=1.5)
            image = overlay.draw_landmarks(image, landmarks[17:][confident[17:]],
                                           color=(0, 255, 0), radius=1.5)
            image = overlay.draw_landmarks(image, landmarks[~confident], color=(255, 0, 0),
                                           radius=1.5)
            yaw = np.degrees(sample.scene.euler_angles[f, 1])
            panels.append(overlay.put_label(image, f'{sample.scene.clip} yaw {yaw:+.0f}'))
        rows.append(overlay.side_by_side(panels))
    return overlay.stack_rows(rows)


def on_asset_topology(ground_truth, mesh):
    """The per-vertex ground truth (rendered on the full mesh) on the asset's vertices."""
    per_vertex = ('gt_vertices', 'gt_expression_vertices', 'gt_albedo')
    return {k: decimation.to_asset_topology(v, mesh) if k in per_vertex else v
            for k, v in ground_truth.items()}


def check_flags(ict_dir, flag_values):
    """Raises app.UsageError for flag values that cannot work (before the slow imports)."""
    if not flag_values.output_dir:
        raise app.UsageError('--output_dir is required')
    for name in ('num_identities', 'samples_per_identity', 'num_frames', 'num_shards',
                 'batch_size'):
        if getattr(flag_values, name) < 1:
            raise app.UsageError(f'--{name} must be at least 1, got {getattr(flag_values, name)}')
    if flag_values.dense_points < 0:
        raise app.UsageError(f'--dense_points must be >= 0, got {flag_values.dense_points}')
    if flag_values.image_size % 16 or not 64 <= flag_values.image_size <= 240:
        raise app.UsageError(f'--image_size must be a multiple of 16 from 64 to 240, got '
                             f'{flag_values.image_size}')
    if not 0.0 <= flag_values.test_fraction <= 1.0:
        raise app.UsageError(f'--test_fraction must be in [0, 1], got {flag_values.test_fraction}')
    if flag_values.identity_model == 'ict' and not os.path.isdir(ict_dir or ''):
        raise app.UsageError(
            f'--identity_model=ict needs the ICT-FaceKit data, but the folder {ict_dir!r} does '
            'not exist; pass --ict_dir (or set $MOFL_ICT_DIR) or use --identity_model=procedural')


def run_videos(ict_dir, flag_values):
    """`--videos`: renders the clip tree; returns the summary (also in videos.json)."""
    if not ict_dir or not os.path.isdir(ict_dir):
        raise app.UsageError('--videos draws ICT-FaceKit heads: it needs the ICT-FaceKit data '
                             '(--ict_dir or $MOFL_ICT_DIR)')
    for name in ('frames_per_clip', 'spp'):
        if getattr(flag_values, name) < 1:
            raise app.UsageError(f'--{name} must be at least 1, got {getattr(flag_values, name)}')
    if min(flag_values.frame_width, flag_values.frame_height) < 64:
        raise app.UsageError('--frame_width and --frame_height must be at least 64')
    startup.quiet_tensorflow()
    from mofl.data import ict_head  # pylint: disable=import-outside-toplevel
    from mofl.data import synthetic_video  # pylint: disable=import-outside-toplevel
    from mofl.facemodel import assets as assets_lib  # pylint: disable=import-outside-toplevel
    from mofl.facemodel import default_assets  # pylint: disable=import-outside-toplevel
    start = time.time()
    try:
        assets, asset_name = default_assets.load_asset(flag_values.asset)
    except assets_lib.AssetError as error:
        raise app.UsageError(str(error)) from error
    head = ict_head.load_ict_head(ict_dir)
    options = synthetic_video.VideoOptions(
        frame_size=(flag_values.frame_height, flag_values.frame_width),
        frames_per_clip=flag_values.frames_per_clip, spp=flag_values.spp)
    try:
        generator = synthetic_video.VideoGenerator(head, assets.mesh, seed=flag_values.seed,
                                                   options=options,
                                                   truncation=flag_values.truncation)
    except ValueError as error:
        raise app.UsageError(str(error)) from error
    setup_seconds = time.time() - start
    summary = synthetic_video.write_tree(flag_values.output_dir, generator,
                                         flag_values.num_identities,
                                         flag_values.samples_per_identity)
    summary.update(asset=asset_name, asset_spec=flag_values.asset or 'default',
                   asset_fingerprint=assets.mesh.fingerprint(), identity_model='ict',
                   setup_seconds=round(setup_seconds, 2),
                   flags={name: flag_values[name].value for name in (
                       'num_identities', 'samples_per_identity', 'frames_per_clip', 'frame_width',
                       'frame_height', 'spp', 'seed', 'asset', 'truncation')})
    with open(os.path.join(flag_values.output_dir, 'videos.json'), 'w') as f:
        json.dump(summary, f, indent=2)
    print(f'wrote {summary["clips"]} clips ({summary["clips_skipped"]} already there) of '
          f'{flag_values.frames_per_clip} frames '
          f'{flag_values.frame_width}x{flag_values.frame_height} to '
          f'{flag_values.output_dir}; {summary["seconds_per_frame"]:.3f} s per frame')
    return summary


def run(flag_values=flags.FLAGS):
    """Generates the set as the parsed flags in `flag_values` say; returns the summary dict
    (also in manifest.json)."""
    from mofl.facemodel import assets as assets_lib  # pylint: disable=import-outside-toplevel
    ict_dir = flag_values.ict_dir or assets_lib.default_ict_dir()
    if flag_values.videos:
        if not flag_values.output_dir:
            raise app.UsageError('--output_dir is required')
        os.makedirs(flag_values.output_dir, exist_ok=True)
        return run_videos(ict_dir, flag_values)
    check_flags(ict_dir, flag_values)
    start = time.time()
    startup.quiet_tensorflow()   # TensorFlow loads after the flag checks: fast refusals
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    from mofl.data import records  # pylint: disable=import-outside-toplevel
    from mofl.data import synthetic  # pylint: disable=import-outside-toplevel
    from mofl.data import synthetic_identity  # pylint: disable=import-outside-toplevel

    from mofl.facemodel import default_assets  # pylint: disable=import-outside-toplevel
    from mofl.render import camera as camera_lib  # pylint: disable=import-outside-toplevel

    try:
        assets, asset_name = default_assets.load_asset(flag_values.asset)
    except assets_lib.AssetError as error:
        raise app.UsageError(str(error)) from error
    mesh = assets.mesh
    try:
        full_mesh = default_assets.full_source_mesh(mesh, ict_dir)
    except assets_lib.AssetError as error:
        raise app.UsageError(str(error)) from error
    try:
        identity_model = synthetic_identity.make_identity_model(
            flag_values.identity_model, full_mesh, ict_dir, flag_values.truncation)
    except synthetic_identity.IdentityModelError as error:
        raise app.UsageError(str(error)) from error
    logging.info('Asset: %s (source %s, %d vertices, %d blendshapes); rendered with %d '
                 'vertices', asset_name, mesh.source, mesh.num_vertices, mesh.num_expressions,
                 full_mesh.num_vertices)
    logging.info('Identity model: %s', identity_model.description)
    dense_vertices, dense_full_vertices = None, None
    if flag_values.dense_points:
        from mofl import landmarks as landmarks_lib  # pylint: disable=import-outside-toplevel
        try:
            dense_vertices = landmarks_lib.dense_point_vertices(mesh.vertices, mesh.face_mask,
                                                                flag_values.dense_points)
        except ValueError as error:
            raise app.UsageError(f'--dense_points: {error}') from error
        dense_full_vertices = decimation.full_vertex_ids(dense_vertices, mesh)
    generator = synthetic.SyntheticGenerator(full_mesh, identity_model, seed=flag_values.seed,
                                             camera=camera_lib.Camera.crop(flag_values.image_size),
                                             dense_vertices=dense_full_vertices)
    setup_seconds = time.time() - start

    os.makedirs(flag_values.output_dir, exist_ok=True)
    test_ids = test_identities(flag_values.num_identities, flag_values.test_fraction,
                               flag_values.seed)
    writers, paths, counts = {}, {}, {'train': 0, 'test': 0}
    for split in ('train', 'test'):
        paths[split] = [shard_path(flag_values.output_dir, split, s, flag_values.num_shards)
                        for s in range(flag_values.num_shards)]
        writers[split] = [tf.io.TFRecordWriter(p + '.tmp') for p in paths[split]]
    sheet_samples = []
    total = flag_values.num_identities * flag_values.samples_per_identity
    render_start = time.time()
    for index in range(flag_values.num_identities):
        identity = generator.identity(index)
        scenes = [generator.scene(identity, s, flag_values.num_frames)
                  for s in range(flag_values.samples_per_identity)]
        split = 'test' if index in test_ids else 'train'
        for sample in generator.render(scenes, flag_values.batch_size):
            scene = sample.scene
            serialized = records.encode_sample(
                sample.images, sample.landmarks, sample.landmark_confidence, scene.euler_angles,
                identity=identity.name, clip=scene.clip,
                frame_indices=list(range(scene.num_frames)),
                crop_boxes=np.tile([0.0, 0.0, float(generator.camera.image_size[1])],
                                   (scene.num_frames, 1)),
                ground_truth=on_asset_topology(sample.ground_truth(), mesh),
                jpeg_quality=flag_values.jpeg_quality, dense_points=sample.dense_points,
                dense_confidence=sample.dense_confidence, dense_vertices=dense_vertices)
            writers[split][counts[split] % flag_values.num_shards].write(serialized)
            counts[split] += 1
            if len(sheet_samples) < flag_values.contact_sheet_samples:
                sheet_samples.append(sample)
        done = (index + 1) * flag_values.samples_per_identity
        elapsed = time.time() - render_start
        print(f'\r{done}/{total} samples, {done / max(elapsed, 1e-9):.2f} samples/s',
              end='', file=sys.stderr, flush=True)
    print('', file=sys.stderr)
    for split in writers:
        for writer, path in zip(writers[split], paths[split]):
            writer.close()
            if counts[split]:
                os.replace(path + '.tmp', path)
            else:  # no identity in this split (e.g. --test_fraction=0): write no files
                os.remove(path + '.tmp')
        if not counts[split]:
            paths[split] = []
    render_seconds = time.time() - render_start

    if flag_values.contact_sheet:
        from mofl.render import overlay  # pylint: disable=import-outside-toplevel
        overlay.save_png(flag_values.contact_sheet,
                         contact_sheet(sheet_samples, flag_values.contact_sheet_samples))
        logging.info('Contact sheet: %s', flag_values.contact_sheet)

    summary = {
        'asset': asset_name,
        'asset_spec': flag_values.asset or 'default',
        'asset_source': str(mesh.source),
        'num_vertices': mesh.num_vertices,
        'asset_fingerprint': mesh.fingerprint(),
        'render_vertices': full_mesh.num_vertices,
        'image_size': flag_values.image_size,
        'identity_model': identity_model.name,
        'identity_model_description': identity_model.description,
        'num_identity_weights': identity_model.num_weights,
        'seed': flag_values.seed,
        'num_identities': flag_values.num_identities,
        'test_identities': sorted(test_ids),
        'samples_per_identity': flag_values.samples_per_identity,
        'num_frames': flag_values.num_frames,
        'samples': counts,
        'dense_points': flag_values.dense_points,
        'files': {split: [os.path.basename(p) for p in paths[split]] for split in paths},
        'ground_truth': ['gt_vertices', 'gt_expression_vertices', 'gt_identity_weights',
                         'gt_albedo'],
        'setup_seconds': round(setup_seconds, 2),
        'render_seconds': round(render_seconds, 2),
        'samples_per_second': round(total / max(render_seconds, 1e-9), 3),
        'flags': {name: flag_values[name].value for name in (
            'num_identities', 'samples_per_identity', 'num_frames', 'test_fraction',
            'num_shards', 'seed', 'asset', 'image_size', 'identity_model', 'ict_dir', 'truncation',
            'batch_size', 'jpeg_quality', 'contact_sheet', 'dense_points')},
    }
    with open(os.path.join(flag_values.output_dir, 'manifest.json'), 'w') as f:
        json.dump(summary, f, indent=2)
    print(f'wrote {counts["train"]} train + {counts["test"]} test samples of '
          f'{flag_values.num_frames} frames ({identity_model.name} identities, {mesh.source} '
          f'asset) to {flag_values.output_dir}; setup {setup_seconds:.1f} s, rendering '
          f'{render_seconds:.1f} s: '
          f'{summary["samples_per_second"]:.2f} samples/s '
          f'({summary["samples_per_second"] * flag_values.num_frames:.1f} frames/s)')
    return summary


def main(argv, flag_values=flags.FLAGS):
    """Generates the set as the flags in `flag_values` say."""
    if len(argv) > 1:
        raise app.UsageError(f'unexpected arguments: {argv[1:]}')
    run(flag_values)


if __name__ == '__main__':
    define_flags()
    app.run(main)
