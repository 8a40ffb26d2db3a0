"""Model analysis (supplement §1.1): PCA over reconstructions, top modes rendered at ±2σ; the
library behind `tools.visualize_modes`.

Every sample (a multi-frame training record, or one image run through the reconstruction's face
crop) is reconstructed with `mofl.inference.load_model`'s model. Of each reconstruction two
things are kept: the neutral identity geometry v̄ + S·OCL(Θs)·α (eq. 2 with OCL, no expression;
Θs itself in a `--noorthogonal_complement` run) and the albedo r(β) (eq. 6). A PCA of each set
(over the flattened [V·3] vectors) gives the mean and the principal modes; the PNG shows, one
row per mode, the mean −2σ, mean and +2σ of the shape mode (frontal and side view, uniform grey
albedo under a fixed light) and of the albedo mode (frontal, on the mean geometry, unlit), with
each mode's share of the variance. The arrays go to the `.npz` beside the PNG (see `save_pca`).

TensorFlow and the renderer are imported inside the functions that need them, so a binary can
import this module before it quiets TensorFlow's start-up (`mofl.startup`).
"""
import dataclasses
import os
import sys
from typing import Optional

import cv2
import numpy as np

PANEL_BACKGROUND = (0.15, 0.15, 0.15)
SHAPE_GREY = 0.75
BLOCK_GAP = 8


@dataclasses.dataclass
class Pca:
    """Principal components of a set of flattened vectors.

    Attributes:
        mean: [D].
        components: [K, D] orthonormal rows, sign fixed so the largest entry is positive.
        stddev: [K] standard deviation of the data along each component.
        explained_variance_ratio: [K] share of the total variance.
        coefficients: [S, K] each sample's coordinates along the components.
    """
    mean: np.ndarray
    components: np.ndarray
    stddev: np.ndarray
    explained_variance_ratio: np.ndarray
    coefficients: np.ndarray


def pca(data, num_components):
    """PCA of data [S, D] (S ≥ 2) by SVD of the centred matrix; keeps ≤ num_components modes
    (at most S − 1, the rank of S centred samples)."""
    data = np.asarray(data, np.float64)
    if data.shape[0] < 2:
        raise ValueError(f'PCA needs at least 2 samples, got {data.shape[0]}')
    mean = data.mean(axis=0)
    centred = data - mean
    _, singular, rows = np.linalg.svd(centred, full_matrices=False)
    keep = min(num_components, data.shape[0] - 1, rows.shape[0])
    rows, singular = rows[:keep], singular[:keep]
    signs = np.sign(rows[np.arange(keep), np.argmax(np.abs(rows), axis=1)])
    rows = rows * signs[:, None]
    total = float(np.sum(centred ** 2))
    return Pca(mean=mean, components=rows, stddev=singular / np.sqrt(data.shape[0] - 1),
               explained_variance_ratio=singular ** 2 / max(total, 1e-30),
               coefficients=centred @ rows.T)


def record_samples(model, pattern, num_frames, max_samples):
    """Images [M, S, S, 3] float32 of the first `max_samples` records of `pattern`."""
    from mofl.data import pipeline
    files = pipeline.list_record_files(pattern)
    if not num_frames:
        num_frames = pipeline.peek_layout(files)['num_frames']
    dataset = pipeline.make_dataset(files, batch_size=8, num_frames=num_frames, shuffle=False,
                                    repeat=False, image_size=model.image_size[0],
                                    drop_remainder=False)
    count = 0
    for batch in dataset:
        for images in batch['images'].numpy():
            if count == max_samples:
                return
            count += 1
            yield images


def image_samples(model, spec, max_samples):
    """Crops [1, S, S, 3] float32 of the images in `spec` where a face is found."""
    from mofl import facemesh
    from mofl.data import face_tracking
    from mofl.data import inputs as inputs_lib
    count = 0
    with facemesh.FaceTracker() as tracker:
        for path in inputs_lib.expand_inputs(spec):
            if count == max_samples:
                return
            try:
                rgb = inputs_lib.read_image(path)
            except inputs_lib.InputError as e:
                print(f'ERROR {e}: skipped', file=sys.stderr)
                continue
            face = face_tracking.crop_face(tracker, rgb, face_tracking.DEFAULT_CROP_SCALE,
                                           model.image_size[0], os.path.basename(path), path)
            if face is None:
                print(f'ERROR no face found in {path}: skipped', file=sys.stderr)
                continue
            count += 1
            yield face.crop[None].astype(np.float32) / 255.0


def collect_identities(model, samples, log=print):
    """Reconstructs every sample; returns identity vertices [S, V, 3] and albedo [S, V, 3]."""
    shapes, albedos = [], []
    for images in samples:
        outputs = model.reconstruct(images)
        shapes.append(outputs['identity_vertices'])
        albedos.append(outputs['albedo'])
        if len(shapes) % 20 == 0:
            log(f'  {len(shapes)} samples reconstructed')
    if not shapes:
        raise ValueError('no sample could be reconstructed')
    return np.stack(shapes), np.stack(albedos)


def mode_variants(analysis: Pca, mode, sigma, num_vertices):
    """[3, V, 3]: mean − σ_k·sigma·u_k, mean, mean + σ_k·sigma·u_k."""
    step = sigma * analysis.stddev[mode] * analysis.components[mode]
    return np.stack([analysis.mean - step, analysis.mean, analysis.mean + step]).reshape(
        3, num_vertices, 3)


def render_views(model, vertices, albedo, yaw_deg, lit):
    """Renders meshes [B, V, 3] (mm) with albedo [B, V, 3] from a fixed framing.

    The meshes are centred on the first mesh's bounding box and placed so that the whole head
    fits the model's crop. `lit`: grey-shape preview light; else ambient 1 (the image is the
    albedo).

    Returns:
        [B, H, W, 3] float images.
    """
    from mofl.render import image_renderer
    from mofl.render import shading
    vertices = np.asarray(vertices, np.float32)
    lo, hi = vertices[0].min(axis=0), vertices[0].max(axis=0)
    centred = vertices - (lo + hi) / 2.0
    height, width = model.image_size
    extent = float(max(hi - lo))
    depth = float(model.camera.focal_x) * extent / (0.9 * min(height, width))
    batch = len(vertices)
    rotation = np.tile([[0.0, np.deg2rad(yaw_deg), 0.0]], (batch, 1)).astype(np.float32)
    translation = np.tile([[0.0, 0.0, -depth]], (batch, 1)).astype(np.float32)
    if lit:
        sh = shading.directional_sh(np.tile([[0.4, 0.4, 1.0]], (batch, 1)),
                                    np.full((batch, 3), 0.7), np.full((batch, 3), 0.35))
    else:
        sh = shading.ambient_sh(np.ones((batch, 3), np.float32))
    rendered = image_renderer.render_image(centred, model.triangles, albedo, sh, rotation,
                                           translation, camera=model.camera,
                                           background=np.array(PANEL_BACKGROUND, np.float32))
    return np.asarray(rendered.image)


def mode_grid(model, shape_pca, albedo_pca, num_modes, sigma=2.0, side_yaw_deg=60.0,
              title=''):
    """The PNG grid: one row per mode, blocks shape-frontal | shape-side | albedo.

    Returns:
        uint8 [H_total, W_total, 3].
    """
    from mofl.render import overlay
    num_vertices = shape_pca.mean.size // 3
    num_rows = min(num_modes, len(shape_pca.stddev), len(albedo_pca.stddev))
    mean_shape = shape_pca.mean.reshape(1, num_vertices, 3)
    grey = np.full((3, num_vertices, 3), SHAPE_GREY, np.float32)
    names = ('-{s:g}sd', 'mean', '+{s:g}sd')
    rows = []
    for k in range(num_rows):
        shapes = mode_variants(shape_pca, k, sigma, num_vertices)
        albedos = np.clip(mode_variants(albedo_pca, k, sigma, num_vertices), 0.0, 1.0)
        frontal = render_views(model, shapes, grey, 0.0, lit=True)
        side = render_views(model, shapes, grey, side_yaw_deg, lit=True)
        colour = render_views(model, np.repeat(mean_shape, 3, 0), albedos, 0.0, lit=False)
        shape_pct = 100.0 * shape_pca.explained_variance_ratio[k]
        albedo_pct = 100.0 * albedo_pca.explained_variance_ratio[k]
        labels = [n.format(s=sigma) for n in names]
        blocks = [
            overlay.side_by_side(list(frontal), labels=[
                f'shape {k + 1} ({shape_pct:.1f}%) {labels[0]}'] + labels[1:]),
            overlay.side_by_side(list(side), labels=[f'side {labels[0]}'] + labels[1:]),
            overlay.side_by_side(list(colour), labels=[
                f'albedo {k + 1} ({albedo_pct:.1f}%) {labels[0]}'] + labels[1:]),
        ]
        rows.append(overlay.side_by_side(blocks, gap=BLOCK_GAP))
    grid = overlay.stack_rows(rows)
    if title:
        strip = np.zeros((22, grid.shape[1], 3), np.uint8)
        cv2.putText(strip, title, (4, 15), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1,
                    cv2.LINE_AA)
        grid = overlay.stack_rows([strip, grid])
    return grid


def save_pca(path, shape_pca, albedo_pca, triangles, num_vertices, info):
    """Writes the PCA arrays: {shape,albedo}_{mean [V, 3], components [K, V, 3], stddev [K],
    explained_variance_ratio [K], coefficients [S, K]}, triangles [T, 3], num_samples,
    model_step, asset_source."""
    arrays = {'triangles': np.asarray(triangles, np.int32),
              'num_samples': np.int64(len(shape_pca.coefficients)),
              'model_step': np.int64(info['step']), 'asset_source': str(info['asset_source'])}
    for prefix, analysis in (('shape', shape_pca), ('albedo', albedo_pca)):
        arrays[f'{prefix}_mean'] = analysis.mean.reshape(num_vertices, 3).astype(np.float32)
        arrays[f'{prefix}_components'] = analysis.components.reshape(
            -1, num_vertices, 3).astype(np.float32)
        arrays[f'{prefix}_stddev'] = analysis.stddev.astype(np.float32)
        arrays[f'{prefix}_explained_variance_ratio'] = \
            analysis.explained_variance_ratio.astype(np.float32)
        arrays[f'{prefix}_coefficients'] = analysis.coefficients.astype(np.float32)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    np.savez_compressed(path, **arrays)


@dataclasses.dataclass
class ModesConfig:
    """What `run` analyses and writes (the flags of `tools.visualize_modes`, of the same names).

    Attributes:
        model: SavedModel folder or `mofl.train` output directory.
        output: output PNG.
        data: TFRecord glob(s) of samples; exactly one of `data` and `images`.
        images: image files (comma-separated / globs), each one sample.
        max_samples: reconstruct at most this many samples.
        num_frames: `data`: frames per sample given to the model (0: the records' own count).
        num_modes: modes shown (rows of the PNG).
        num_saved_modes: modes kept in the .npz.
        sigma: shown deviation from the mean, in standard deviations.
        side_yaw_deg: yaw of the side view, degrees.
        npz: output .npz (None: `output` with .npz).
    """
    model: str
    output: str
    data: Optional[str] = None
    images: Optional[str] = None
    max_samples: int = 200
    num_frames: int = 0
    num_modes: int = 4
    num_saved_modes: int = 50
    sigma: float = 2.0
    side_yaw_deg: float = 60.0
    npz: Optional[str] = None


def run(config: ModesConfig) -> int:
    """Reconstructs the samples, writes the PNG and the .npz, prints what it did.

    Errors (a model that does not load, no sample, unreadable data) are printed to stderr as
    `ERROR ...`.

    Returns:
        the exit status of `tools.visualize_modes`: 0 done, 1 no analysis possible, 2 the model
        could not be loaded or `data` / `images` are not exactly one.
    """
    if bool(config.data) == bool(config.images):
        print('ERROR give exactly one of --data and --images', file=sys.stderr)
        return 2
    from mofl import inference
    try:
        model = inference.load_model(config.model)
    except inference.ModelLoadError as e:
        print(f'ERROR {e}', file=sys.stderr)
        return 2
    print(f"model: {model.info['kind']} {model.info['path']} (step {model.info['step']})")
    samples = (record_samples(model, config.data, config.num_frames, config.max_samples)
               if config.data else image_samples(model, config.images, config.max_samples))
    try:
        shapes, albedos = collect_identities(model, samples)
        num_samples, num_vertices = shapes.shape[:2]
        keep = max(config.num_saved_modes, config.num_modes)
        shape_pca = pca(shapes.reshape(num_samples, -1), keep)
        albedo_pca = pca(albedos.reshape(num_samples, -1), keep)
    except (FileNotFoundError, ValueError) as e:
        print(f'ERROR {e}', file=sys.stderr)
        return 1
    title = (f"PCA over {num_samples} reconstructions (model step {model.info['step']}); "
             f'mean -/+ {config.sigma:g} sd; (%) = explained variance')
    grid = mode_grid(model, shape_pca, albedo_pca, config.num_modes, config.sigma,
                     config.side_yaw_deg, title)
    from mofl.render import overlay
    overlay.save_png(config.output, grid)
    npz_path = config.npz or os.path.splitext(config.output)[0] + '.npz'
    save_pca(npz_path, shape_pca, albedo_pca, model.triangles, num_vertices, model.info)
    for name, analysis in (('shape', shape_pca), ('albedo', albedo_pca)):
        shown = ', '.join(f'{100 * r:.1f}%' for r in
                          analysis.explained_variance_ratio[:config.num_modes])
        print(f'{name}: top modes explain {shown}; stddev of mode 1 '
              f'{analysis.stddev[0]:.4g}' + (' mm' if name == 'shape' else ''))
    print(f'wrote {config.output} ({grid.shape[1]}x{grid.shape[0]}) and {npz_path}')
    return 0
