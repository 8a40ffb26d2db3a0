r"""Reference fits for the synthetic benchmark: free per-sample parameters, no network.

    python -m tools.direct_fit --data='out/synthetic/test-*' --num_samples=16 \
        --identity=template,graph,ground_truth --output=out/synthetic/DIRECT_FIT

Fits every parameter of each multi-frame sample freely (`mofl.fitting`) and scores the result
against the records' ground truth like Table 1 (per-vertex RMSE after Procrustes over the face
region, rigid and with scale): the neutral identity mesh against `gt_vertices`, every frame's
mesh against `gt_expression_vertices`, and the landmark error in pixels. The `ground_truth` row
uses the identity model the data was drawn from (named in the data's manifest.json), i.e. what a
perfectly learned face model would allow; `graph` shows what the losses alone recover.
Writes OUTPUT.md (one Markdown table) and OUTPUT.json (per-sample numbers).
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


def define_flags(flag_values=flags.FLAGS):
    """Defines the binary's flags in `flag_values` (learning_rate, lambda_expression: FitConfig's
    defaults)."""
    flags_common.define_flags(
        ('data', 'ict_dir', 'num_samples', 'num_frames', 'learning_rate', 'lambda_expression',
         'output'), flag_values, required=('data',),
        defaults={'num_samples': 16, 'learning_rate': 0.01, 'lambda_expression': 1e-3},
        notes={'data': 'With ground truth (tools.make_synthetic output).',
               'ict_dir': 'For data drawn from the ICT identity model.',
               'num_samples': 'Samples fitted.',
               'output': 'Write OUTPUT.md and OUTPUT.json.'})
    flags_common.define_asset_flag('the asset the data was made with; default: the manifest\'s, '
                                   'else the default asset.', flag_values=flag_values)
    flags.DEFINE_list('identity', ['template', 'graph', 'ground_truth'],
                      'Identity models to fit (template | graph | ground_truth).',
                      flag_values=flag_values)
    flags.DEFINE_integer('chunk', 16, 'Samples fitted together (memory).',
                         flag_values=flag_values)
    flags.DEFINE_integer('pose_steps', 300, 'Steps of the pose/expression/light phase.',
                         flag_values=flag_values)
    flags.DEFINE_integer('identity_steps', 300, 'Steps of the phase with identity and albedo.',
                         flag_values=flag_values)


IDENTITY_LABELS = {'template': 'Template (α = 0)',
                   'graph': 'Free graph deformation',
                   'ground_truth': 'Ground-truth identity model'}


def identity_basis_for(mesh, manifest, ict_dir):
    """[K, V, 3] the identity model the data was drawn from, on the asset's vertices (for a
    decimated asset: built on the full mesh the data was rendered with, then mapped)."""
    from mofl.data import synthetic_identity
    from mofl.facemodel import assets as assets_lib
    from mofl.facemodel import decimation
    from mofl.facemodel import default_assets
    kind = manifest.get('identity_model')
    if kind not in ('ict', 'procedural'):
        raise ValueError('identity=ground_truth needs the data\'s manifest.json with its '
                         f'identity_model (ict | procedural), found {kind!r}')
    ict_dir = ict_dir or assets_lib.default_ict_dir()
    full_mesh = default_assets.full_source_mesh(mesh, ict_dir)
    model = synthetic_identity.make_identity_model(kind, full_mesh, ict_dir=ict_dir)
    expected = manifest.get('num_identity_weights')
    if expected is not None and model.num_weights != expected:
        raise ValueError(f'identity model has {model.num_weights} weights, the data '
                         f'{expected}')
    return decimation.to_asset_topology(model.basis, mesh)


def score(fitted, samples, face_mask, template):
    """Per-sample identity errors and per-frame errors (rigid and with scale), in mm, and the
    cosines of the fitted to the true neutral offsets (`mofl.evaluation.identity`)."""
    from mofl.evaluation import identity
    from mofl.evaluation import metrics
    result = {'landmark_rmse_px': fitted['landmark_rmse_px'].tolist()}
    plain, translation_free = identity.offset_cosines(fitted['identity_vertices'],
                                                      samples['gt_vertices'], template, face_mask)
    result['identity_cosine'] = plain.tolist()
    result['identity_cosine_translation_free'] = translation_free.tolist()
    for with_scale, suffix in ((False, ''), (True, '_scale')):
        result['identity_mm' + suffix] = [
            metrics.vertex_rmse(p, g, face_mask, with_scale=with_scale)['rmse_mm']
            for p, g in zip(fitted['identity_vertices'], samples['gt_vertices'])]
        result['frame_mm' + suffix] = [
            metrics.vertex_rmse(p, g, face_mask, with_scale=with_scale)['rmse_mm']
            for ps, gs in zip(fitted['vertices'], samples['gt_expression_vertices'])
            for p, g in zip(ps, gs)]
    return result


def markdown(results, num_samples, num_frames):
    """One row per identity model: mean ± SD of every error."""
    header = ['Identity model', 'Identity, rigid (mm)', 'Identity, with scale (mm)',
              'Frames, rigid (mm)', 'Frames, with scale (mm)', 'Landmarks (px)',
              'Identity cos (translation-free)']
    lines = ['| ' + ' | '.join(header) + ' |', '|' + ' --- |' * len(header)]
    for mode, r in results.items():
        cells = [IDENTITY_LABELS[mode]]
        for key in ('identity_mm', 'identity_mm_scale', 'frame_mm', 'frame_mm_scale',
                    'landmark_rmse_px', 'identity_cosine_translation_free'):
            cells.append(f'{np.mean(r[key]):.2f} ± {np.std(r[key]):.2f}')
        lines.append('| ' + ' | '.join(cells) + ' |')
    lines.append('')
    lines.append(f'{num_samples} samples × {num_frames} frames; mean ± SD over samples '
                 '(identity, landmarks) or frames (frame meshes).')
    return '\n'.join(lines) + '\n'


def main(argv, flag_values=flags.FLAGS):
    """Fits as the flags in `flag_values` say; returns the exit status."""
    from mofl import startup
    startup.quiet_tensorflow()
    del argv
    from mofl import fitting
    from mofl.data import pipeline
    from mofl.facemodel import assets as assets_lib
    from mofl.facemodel import default_assets
    unknown = [m for m in flag_values.identity if m not in fitting.IDENTITY_MODES]
    if unknown:
        logging.error('--identity: unknown %s (choose from %s)', unknown,
                      ', '.join(fitting.IDENTITY_MODES))
        return 2
    manifest = pipeline.read_manifest(os.path.dirname(flag_values.data))
    try:
        spec = flag_values.asset or manifest.get('asset_spec')
        if spec is None and os.path.exists(str(manifest.get('asset'))):   # older manifests
            spec = manifest['asset']
        assets, _ = default_assets.load_asset(spec)
        pipeline.check_ground_truth_mesh(flag_values.data, assets.mesh)
        samples = pipeline.load_ground_truth_samples(flag_values.data, flag_values.num_samples,
                                                     flag_values.num_frames)
        basis = (identity_basis_for(assets.mesh, manifest, flag_values.ict_dir)
                 if 'ground_truth' in flag_values.identity else None)
    except (ValueError, FileNotFoundError, assets_lib.AssetError) as e:
        logging.error('%s', e)
        return 1
    count = len(samples['images'])
    results = {}
    for mode in flag_values.identity:
        config = flags_common.config_from_flags(fitting.FitConfig, flag_values, identity=mode)
        start = time.time()
        parts = []
        for first in range(0, count, flag_values.chunk):
            chunk = slice(first, first + flag_values.chunk)
            logging.info('%s: samples %d–%d of %d', mode, first,
                         min(first + flag_values.chunk, count) - 1, count)
            fitted = fitting.fit_samples(
                assets, samples['images'][chunk], samples['landmarks'][chunk],
                samples['landmark_confidence'][chunk], config, identity_basis=basis,
                initial_rotation=samples['pose'][chunk], log=logging.info)
            parts.append(score(fitted, {k: v[chunk] for k, v in samples.items()},
                               assets.mesh.face_mask, assets.mesh.vertices))
        results[mode] = {k: sum((p[k] for p in parts), []) for k in parts[0]}
        logging.info('%s fitted in %.0f s: identity %.2f mm, frames %.2f mm, landmarks %.2f px',
                     mode, time.time() - start, np.mean(results[mode]['identity_mm']),
                     np.mean(results[mode]['frame_mm']),
                     np.mean(results[mode]['landmark_rmse_px']))
    table = markdown(results, count, flag_values.num_frames)
    print(table)
    if flag_values.output:
        os.makedirs(os.path.dirname(os.path.abspath(flag_values.output)), exist_ok=True)
        with open(flag_values.output + '.md', 'w') as f:
            f.write(table)
        with open(flag_values.output + '.json', 'w') as f:
            json.dump({'flags': {k: getattr(flag_values, k) for k in (
                'data', 'num_samples', 'num_frames', 'pose_steps', 'identity_steps',
                'learning_rate', 'lambda_expression')}, 'results': results}, f, indent=1)
    return 0


if __name__ == '__main__':
    define_flags()
    sys.exit(app.run(main))
