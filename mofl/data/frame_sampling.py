"""Choosing the M frames of a multi-frame sample with enough head-pose diversity (paper §3.1).

A set of frames is pose-diverse when its spread, max(yaw range, pitch range), reaches a minimum
angle. Each sample is drawn by picking one frame pair whose spread already reaches it (uniformly
among all such pairs) and filling the other M − 2 frames uniformly from the rest of the clip; the
frames are then put in random order. Samples of one clip are distinct as sets.
"""
import hashlib

import numpy as np


def pose_spread(poses):
    """max(yaw range, pitch range) of a set of frames.

    Args:
        poses: [N, 3] (pitch, yaw, roll) radians.

    Returns:
        float radians.
    """
    poses = np.asarray(poses)
    return float(max(np.ptp(poses[:, 0]), np.ptp(poses[:, 1])))


def clip_rng(seed, clip_id):
    """A NumPy Generator that depends only on (seed, clip_id), so runs are reproducible whatever
    the order in which workers finish."""
    digest = hashlib.sha256(f'{seed}:{clip_id}'.encode('utf-8')).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], 'little'))


def sample_pose_diverse(poses, num_frames, num_samples, min_spread, rng, max_attempts=50):
    """Draws up to `num_samples` distinct pose-diverse frame sets from one clip.

    Args:
        poses: [N, 3] (pitch, yaw, roll) radians of the clip's usable frames.
        num_frames: M.
        num_samples: samples wanted.
        min_spread: minimal `pose_spread` of a sample, radians (0 accepts any set).
        rng: np.random.Generator.
        max_attempts: draws per wanted sample before giving up on finding a new distinct set.

    Returns:
        list of [M] int arrays indexing `poses` (fewer than `num_samples` when the clip does not
        have that many distinct diverse sets; empty when it has none).
    """
    poses = np.asarray(poses, np.float64)
    n = len(poses)
    if n < num_frames or num_samples <= 0:
        return []
    if num_frames == 1:
        pairs = np.stack([np.arange(n), np.arange(n)], axis=-1) if min_spread <= 0 else \
            np.zeros((0, 2), int)
    else:
        i, j = np.triu_indices(n, k=1)
        spread = np.maximum(np.abs(poses[i, 0] - poses[j, 0]), np.abs(poses[i, 1] - poses[j, 1]))
        ok = spread >= min_spread
        pairs = np.stack([i[ok], j[ok]], axis=-1)
    if len(pairs) == 0:
        return []
    samples, seen = [], set()
    for _ in range(num_samples * max_attempts):
        if len(samples) == num_samples:
            break
        anchor = pairs[rng.integers(len(pairs))]
        chosen = list(dict.fromkeys(anchor.tolist()))
        rest = np.setdiff1d(np.arange(n), chosen)
        chosen += rng.choice(rest, num_frames - len(chosen), replace=False).tolist()
        key = frozenset(chosen)
        if key in seen:
            continue
        seen.add(key)
        samples.append(rng.permutation(np.array(chosen, np.int64)))
    return samples
