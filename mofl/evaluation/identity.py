"""Is the learned identity model explaining people? Learned vs true neutral identity offsets.

Used by `tools.identity_report` and by the trainer's held-out identity summaries
(`mofl.train --identity_eval_data`). On synthetic data with ground truth (`tools.make_synthetic`),
for N samples of N' people:

- learned offsets  d̂_n = v̄ + S·OCL(Θs)·α_n − v̄  (the network's neutral identity minus the template)
- true offsets     d_n = gt_vertices_n − v̄       (on the asset's vertices)

both over the asset's face region, in mm, in model space (the data's faces share the template's
model-space frame: the synthetic generator poses the ground-truth mesh with the true pose).

Reported:
- `learned_rms_mm`, `true_rms_mm`: RMS length of the offsets (how far each model moves from v̄);
- `cosine`: cos∠(d̂_n, d_n), flattened over vertices and axes, mean over samples — 1 when the
  learned offset points exactly the true way, 0 when unrelated;
- `cosine_centred`: the same after subtracting each set's mean offset over the samples, i.e.
  whether the model tells these people apart the right way (a constant "average person" offset
  counts in `cosine` but not here);
- `cosine_translation_free`: `cosine` after subtracting each offset field's own mean over the
  face region: a uniform shift of the neutral face is absorbed by the pose's translation, so the
  images cannot tell it (it still counts in `cosine`; the Procrustes errors below ignore it);
- `cosine_translation_free_centred`: both: how well the shapes, shift removed, tell people apart;
- `cosine_similarity_free`: `cosine` after removing from each offset field its component in the
  7 directions of a similarity of the face (3 shifts, 3 small rotations and a scaling about the
  template's face centroid): the pose absorbs all of them, and a person's size trades against
  the distance to the camera, so this is the part of the shape the images can tell;
- `learned_directions_90`, `true_directions_90`: how many principal directions hold 90 % of the
  variance across people of the learned / true similarity-free offsets (how many ways the model
  tells people apart, against how many ways they differ);
- `true_variance_in_learned_directions`: the share of the true people's similarity-free variance
  that lies in the span of the learned offsets' top `LEARNED_DIRECTIONS` principal directions
  (1 when the model differs in exactly the ways people do, whatever its scale);
- `alpha_spread`: per-component SD of α across the samples, median over components;
- `identity_mm`, `identity_mm_scale`: per-vertex RMSE of the learned neutral mesh against the
  true one after rigid / similarity Procrustes, mean over samples, next to `template_mm`,
  `template_mm_scale` — the plain template's error on the same samples (the baseline to beat);
- `gain_rigid`, `gain_scale`: 1 − identity / template (0.2 = 20 % below the template).

And of the per-frame expression, when the samples carry `gt_expression_vertices`
(`expression_statistics`): the predicted expression offsets B·δ of every frame against the true
ones (`gt_expression_vertices − gt_vertices`), over the face region:
- `expression_true_rms_mm`, `expression_rms_mm`: RMS length of the true / predicted offsets;
- `expression_cosine`: cos∠ between all frames' predicted and true offsets pooled into one vector
  (pooled: a frame with a neutral face has no direction of its own);
- `expression_cosine_centred`: the same after subtracting each side's mean over the frames (does
  the expression follow the frames, beyond a constant offset?);
- `expression_error_rms_mm`: RMS of true − predicted; above `expression_true_rms_mm` the
  predicted expression adds more error to the frame meshes than it removes.
"""
import numpy as np

from mofl.evaluation import metrics

# Principal directions of the learned offsets used for `true_variance_in_learned_directions`.
LEARNED_DIRECTIONS = 10


def _cosines(a, b):
    """Row-wise cosine of [N, D] arrays (0 where either row is zero)."""
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return np.where(norms > 0, np.sum(a * b, axis=1) / np.maximum(norms, 1e-12), 0.0)


def _shift_free(offsets, points):
    """[N, 3P] offsets minus each row's mean 3D offset: a uniform shift of the whole neutral face
    is absorbed by the pose's translation (a gauge of the model the images cannot tell)."""
    per_point = offsets.reshape(len(offsets), points, 3)
    return (per_point - per_point.mean(1, keepdims=True)).reshape(len(offsets), -1)


def similarity_directions(template, face_mask):
    """[3P, 7] orthonormal directions of a similarity of the masked template: 3 shifts, 3 small
    rotations and a scaling about the face centroid (flattened like the offsets)."""
    points = np.asarray(template, np.float64)[np.asarray(face_mask, bool)]
    centred = points - points.mean(0)
    columns = []
    for axis in np.eye(3):
        columns.append(np.tile(axis, (len(points), 1)).ravel())          # shift
    for axis in np.eye(3):
        columns.append(np.cross(axis, centred).ravel())                  # small rotation
    columns.append(centred.ravel())                                      # scaling
    return np.linalg.qr(np.stack(columns, 1))[0]


def _similarity_free(offsets, gauge):
    """[N, 3P] offsets without their component along the [3P, 7] `gauge`; rows left with only
    round-off (a pure similarity) become exact zeros."""
    residual = offsets - (offsets @ gauge) @ gauge.T
    tiny = np.linalg.norm(residual, axis=1) <= 1e-9 * np.linalg.norm(offsets, axis=1)
    residual[tiny] = 0.0
    return residual


def _principal_directions(offsets):
    """([K, D] principal directions, [K] variance shares) of [N, D] offsets across samples."""
    centred = offsets - offsets.mean(0)
    _, singular, directions = np.linalg.svd(centred, full_matrices=False)
    variance = singular ** 2
    return directions, variance / max(float(variance.sum()), 1e-30)


def _directions_for(share, fraction=0.9):
    """How many leading principal directions hold `fraction` of the variance (0 if none)."""
    if not share.size or share.sum() <= 0:
        return 0
    return int(np.searchsorted(np.cumsum(share), fraction - 1e-12) + 1)


def offset_cosines(learned_vertices, gt_vertices, template, face_mask):
    """Per-sample cos∠(learned, true neutral offsets) over the face region, plain and
    translation-free (module docstring).

    Args:
        learned_vertices, gt_vertices: [N, V, 3] neutral meshes (mm).
        template: [V, 3] v̄.
        face_mask: [V] bool.

    Returns:
        ([N] plain cosines, [N] translation-free cosines).
    """
    mask = np.asarray(face_mask, bool)
    d_learned = _face_offsets(learned_vertices, template, mask)
    d_true = _face_offsets(gt_vertices, template, mask)
    points = int(mask.sum())
    return (_cosines(d_learned, d_true),
            _cosines(_shift_free(d_learned, points), _shift_free(d_true, points)))


def _face_offsets(vertices, template, mask):
    """[N, 3P] float64 offsets of [N, V, 3] meshes from the template over the P masked vertices."""
    vertices = np.asarray(vertices, np.float64)
    return (vertices[:, mask] - np.asarray(template, np.float64)[mask]).reshape(len(vertices), -1)


def landmark_rmse_px(predicted, observed):
    """[N] per-sample landmark error: RMS over the points and frames of ‖predicted − observed‖.

    Args:
        predicted, observed: [N, M, L, 2] pixels.
    """
    error = np.linalg.norm(np.asarray(predicted) - np.asarray(observed), axis=-1)
    return np.sqrt(np.mean(error ** 2, axis=(1, 2)))


def identity_statistics(learned_vertices, gt_vertices, template, face_mask, alpha=None,
                        mesh_errors=True):
    """Learned against true neutral identity (module docstring).

    Args:
        learned_vertices: [N, V, 3] the model's neutral identity meshes (mm).
        gt_vertices: [N, V, 3] the true ones on the same vertices.
        template: [V, 3] v̄.
        face_mask: [V] bool, the face region.
        alpha: optional [N, g] identity parameters (for `alpha_spread`).
        mesh_errors: also compute the Procrustes mesh errors (slower: N alignments × 4).

    Returns:
        dict of floats (keys in the module docstring) plus `num_samples`.

    Raises:
        ValueError: naming the argument whose shape does not fit.
    """
    learned = np.asarray(learned_vertices, np.float64)
    truth = np.asarray(gt_vertices, np.float64)
    template = np.asarray(template, np.float64)
    mask = np.asarray(face_mask, bool)
    if learned.ndim != 3 or learned.shape[2] != 3 or learned.shape[0] < 1:
        raise ValueError(f'learned_vertices must be [N, V, 3], got {learned.shape}')
    if truth.shape != learned.shape:
        raise ValueError(f'gt_vertices {truth.shape} does not match learned_vertices '
                         f'{learned.shape}')
    if template.shape != learned.shape[1:] or mask.shape != learned.shape[1:2]:
        raise ValueError(f'template {template.shape} / face_mask {mask.shape} do not fit '
                         f'{learned.shape[1]} vertices')
    count = learned.shape[0]
    points = int(mask.sum())
    d_learned = _face_offsets(learned, template, mask)
    d_true = _face_offsets(truth, template, mask)
    f_learned, f_true = _shift_free(d_learned, points), _shift_free(d_true, points)
    gauge = similarity_directions(template, mask)
    s_learned, s_true = _similarity_free(d_learned, gauge), _similarity_free(d_true, gauge)
    centred = lambda d: d - d.mean(0)
    result = {
        'num_samples': count,
        'learned_rms_mm': float(np.sqrt(np.mean(np.sum(d_learned ** 2, 1) / points))),
        'true_rms_mm': float(np.sqrt(np.mean(np.sum(d_true ** 2, 1) / points))),
        'cosine': float(np.mean(_cosines(d_learned, d_true))),
        'cosine_centred': float(np.mean(_cosines(centred(d_learned), centred(d_true))))
        if count > 1 else 0.0,
        'cosine_translation_free': float(np.mean(_cosines(f_learned, f_true))),
        'cosine_translation_free_centred': float(np.mean(_cosines(centred(f_learned),
                                                                  centred(f_true))))
        if count > 1 else 0.0,
        'cosine_similarity_free': float(np.mean(_cosines(s_learned, s_true))),
    }
    if count > 1:
        learned_directions, learned_share = _principal_directions(s_learned)
        _, true_share = _principal_directions(s_true)
        top = learned_directions[:min(LEARNED_DIRECTIONS, count - 1)]
        true_centred = centred(s_true)
        total = float(np.sum(true_centred ** 2))
        result['learned_directions_90'] = _directions_for(learned_share)
        result['true_directions_90'] = _directions_for(true_share)
        result['true_variance_in_learned_directions'] = (
            float(np.sum((true_centred @ top.T) ** 2)) / total
            if total > 0 and learned_share.sum() > 0 else 0.0)
    if alpha is not None:
        alpha = np.asarray(alpha, np.float64).reshape(count, -1)
        result['alpha_spread'] = float(np.median(alpha.std(axis=0))) if alpha.size else 0.0
        result['alpha_rms'] = float(np.sqrt(np.mean(alpha ** 2))) if alpha.size else 0.0
    if mesh_errors:
        for with_scale, suffix in ((False, ''), (True, '_scale')):
            mine = np.mean([metrics.vertex_rmse(p, g, mask, with_scale=with_scale)['rmse_mm']
                            for p, g in zip(learned, truth)])
            base = np.mean([metrics.vertex_rmse(template, g, mask, with_scale=with_scale)
                            ['rmse_mm'] for g in truth])
            result['identity_mm' + suffix] = float(mine)
            result['template_mm' + suffix] = float(base)
            result['gain_' + ('scale' if with_scale else 'rigid')] = float(1.0 - mine / base)
    return result


def expression_statistics(predicted_offsets, true_offsets, face_mask):
    """Predicted against true per-frame expression offsets (module docstring).

    Args:
        predicted_offsets: [N, M, V, 3] B·δ of every frame (mm).
        true_offsets: [N, M, V, 3] the true expression offsets on the same vertices.
        face_mask: [V] bool.

    Returns:
        dict of floats: expression_true_rms_mm, expression_rms_mm, expression_cosine,
        expression_cosine_centred, expression_error_rms_mm.

    Raises:
        ValueError: naming the argument whose shape does not fit.
    """
    predicted = np.asarray(predicted_offsets, np.float64)
    truth = np.asarray(true_offsets, np.float64)
    mask = np.asarray(face_mask, bool)
    if predicted.ndim != 4 or predicted.shape[-1] != 3:
        raise ValueError(f'predicted_offsets must be [N, M, V, 3], got {predicted.shape}')
    if truth.shape != predicted.shape:
        raise ValueError(f'true_offsets {truth.shape} does not match predicted_offsets '
                         f'{predicted.shape}')
    if mask.shape != predicted.shape[2:3]:
        raise ValueError(f'face_mask {mask.shape} does not fit {predicted.shape[2]} vertices')
    points = int(mask.sum())
    flat = lambda x: x[:, :, mask].reshape(-1, 3 * points)      # one row per frame
    p, t = flat(predicted), flat(truth)
    rms = lambda x: float(np.sqrt(np.sum(x ** 2) / (len(x) * points)))
    pooled_cosine = lambda a, b: (float(np.sum(a * b) / np.sqrt(np.sum(a ** 2) * np.sum(b ** 2)))
                                  if np.sum(a ** 2) > 0 and np.sum(b ** 2) > 0 else 0.0)
    return {
        'expression_true_rms_mm': rms(t),
        'expression_rms_mm': rms(p),
        'expression_cosine': pooled_cosine(p, t),
        'expression_cosine_centred': pooled_cosine(p - p.mean(0), t - t.mean(0)),
        'expression_error_rms_mm': rms(t - p),
    }


def measure_identity(model, samples, face_mask, batch_size=8, mesh_errors=True):
    """`identity_statistics` of a model (`mofl.model.FmlModel`) on loaded samples.

    Args:
        model: the model; its network gives α, its face model the neutral identity.
        samples: dict with `images` [N, M, S, S, 3] and `gt_vertices` [N, V, 3]
            (`mofl.data.pipeline.load_ground_truth_samples`).
        face_mask: [V] bool.
        batch_size: samples per network call.
        mesh_errors: as in `identity_statistics`.

    Returns:
        The statistics dict, plus `theta_rms_mm`: RMS of OCL(Θs) in mm per unit α, and, when
        `samples` has `landmarks`, `landmark_px`: the model's landmarks against the data's
        (RMS over the 66 points and M frames, mean over samples), and when it has
        `gt_expression_vertices` [N, M, V, 3], `expression_statistics` of the frames' δ.
    """
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    alphas, meshes, landmark_px, expressions = [], [], [], []
    for start in range(0, len(samples['images']), batch_size):
        images = tf.constant(samples['images'][start:start + batch_size])
        params = model.network(images)
        alpha = params['shape_params']
        alphas.append(alpha.numpy())
        meshes.append(model.face_model.identity_vertices(alpha).numpy())
        expressions.append(model.face_model.expression_offsets(params['expression']).numpy())
        if 'landmarks' in samples:
            landmark_px += landmark_rmse_px(model.form_image(params)['landmarks'].numpy(),
                                            samples['landmarks'][start:start + batch_size]
                                            ).tolist()
    result = identity_statistics(np.concatenate(meshes), samples['gt_vertices'],
                                 model.face_model.template.numpy(), face_mask,
                                 alpha=np.concatenate(alphas), mesh_errors=mesh_errors)
    if landmark_px:
        result['landmark_px'] = float(np.mean(landmark_px))
    if 'gt_expression_vertices' in samples:
        truth = (np.asarray(samples['gt_expression_vertices'], np.float64)
                 - np.asarray(samples['gt_vertices'], np.float64)[:, None])
        result.update(expression_statistics(np.concatenate(expressions), truth, face_mask))
    basis = model.face_model.shape_basis().numpy()
    result['theta_rms_mm'] = float(np.sqrt(np.mean(basis ** 2))) if basis.size else 0.0
    return result
