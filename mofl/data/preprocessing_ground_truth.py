"""The ground truth of synthetic videos on its way into the records (evaluation only).

`tools.make_synthetic --videos` writes a sidecar `CLIP.gt.npz` beside each clip and the tree's
provenance into `videos.json` (`mofl.data.synthetic_video`). Preprocessing copies, per sample,
the sidecar's meshes and landmarks into the record (`sample_ground_truth`), and the provenance
into the records folder's `manifest.json` (`write_ground_truth_manifest`), where the evaluation
tools find them. Training never reads either.
"""
import json
import os

import numpy as np

from mofl.data import face_tracking


def sample_ground_truth(sidecar, frame_indices, crop_boxes, size, video):
    """The records' ground truth of one sample, from its clip's sidecar.

    Args:
        sidecar: {name: array} (`mofl.data.synthetic_video` module docstring).
        frame_indices: [M] the video frame of each sample frame.
        crop_boxes: [M, 3] their crops (x0, y0, side), image pixels.
        size: crop side in pixels.
        video: the clip's path, for errors.

    Returns:
        {`gt_vertices` [V, 3], `gt_identity_weights` [K], `gt_expression_vertices` [M, V, 3],
        `gt_landmarks` [M, 66, 2] crop pixels}.

    Raises:
        ValueError: naming the clip, when a frame is not in its sidecar.
    """
    per_frame = sidecar['gt_expression_vertices']
    if np.max(frame_indices) >= per_frame.shape[0]:
        raise ValueError(f'{video}: frame {int(np.max(frame_indices))} is not in its ground-truth '
                         f'sidecar ({per_frame.shape[0]} frames)')
    landmarks = [face_tracking.to_crop_coordinates(sidecar['gt_landmarks_image'][f], box, size)
                 for f, box in zip(frame_indices, crop_boxes)]
    return {'gt_vertices': sidecar['gt_vertices'],
            'gt_identity_weights': sidecar['gt_identity_weights'],
            'gt_expression_vertices': per_frame[np.asarray(frame_indices)],
            'gt_landmarks': np.stack(landmarks).astype(np.float32)}


# What the evaluation tools read about the ground truth from the records folder's manifest.json
# (`mofl.data.pipeline.read_manifest`), copied from the video tree's videos.json.
GROUND_TRUTH_MANIFEST_KEYS = ('asset_spec', 'asset_fingerprint', 'identity_model')


def write_ground_truth_manifest(input_dir, output_dir):
    """Copies the ground truth's provenance (asset, identity model) of a synthetic video tree
    (its `videos.json`, `tools.make_synthetic --videos`) into `output_dir/manifest.json`, where
    the evaluation tools look for it; does nothing for a tree without one (real video)."""
    source = os.path.join(input_dir, 'videos.json')
    if not os.path.exists(source):
        return
    with open(source) as f:
        videos = json.load(f)
    manifest = {k: videos[k] for k in GROUND_TRUTH_MANIFEST_KEYS if k in videos}
    manifest['ground_truth_from'] = os.path.abspath(input_dir)
    tmp = os.path.join(output_dir, 'manifest.json.tmp')
    with open(tmp, 'w') as f:
        json.dump(manifest, f, indent=1)
    os.replace(tmp, os.path.join(output_dir, 'manifest.json'))
