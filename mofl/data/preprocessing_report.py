"""What a preprocessing run (`mofl.data.preprocessing`) reports: the end-of-run summary as text,
the exit status of `tools.preprocess`, and the contact sheet of crops with their landmarks."""
import os

from absl import logging
import cv2
import numpy as np

from mofl.data import records


def write_contact_sheet(path, frames, columns=8):
    """A PNG grid of crops with their landmarks (green = confident, red = not), seen dense points
    (cyan) and yaw/pitch.

    Args:
        path: output PNG.
        frames: list of (sample dict, frame position in it); a sample as in
            `preprocessing.process_video` (`jpeg`) or `records.decode_sample` (`images`).
        columns: tiles per row.
    """
    if not frames:
        logging.warning('contact sheet %s: no frames to show', path)
        return
    tiles = []
    for sample, j in frames:
        image = sample['images'][j] if 'images' in sample else records.decode_jpeg(
            sample['jpeg'][j])
        tile = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
        if 'dense_points' in sample:   # seen dense points first, small and cyan
            for (u, v), c in zip(sample['dense_points'][j], sample['dense_confidence'][j]):
                if c > 0:
                    cv2.circle(tile, (int(round(u * 4)), int(round(v * 4))), 3, (255, 255, 0),
                               -1, lineType=cv2.LINE_AA, shift=2)
        for (u, v), c in zip(sample['landmarks'][j], sample['landmark_confidence'][j]):
            colour = (0, int(255 * c), int(255 * (1 - c)))
            cv2.circle(tile, (int(round(u * 4)), int(round(v * 4))), 6, colour, -1,
                       lineType=cv2.LINE_AA, shift=2)
        pitch, yaw, _ = np.rad2deg(sample['pose'][j])
        cv2.putText(tile, f'y{yaw:+.0f} p{pitch:+.0f}', (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45,
                    (255, 255, 255), 1, cv2.LINE_AA)
        tiles.append(tile)
    size = tiles[0].shape[0]
    rows = -(-len(tiles) // columns)
    grid = np.zeros((rows * size, min(columns, len(tiles)) * size, 3), np.uint8)
    for k, tile in enumerate(tiles):
        r, c = divmod(k, columns)
        grid[r * size:(r + 1) * size, c * size:(c + 1) * size] = tile
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    cv2.imwrite(path, grid)


def format_summary(summary):
    """The end-of-run report as text."""
    failed = ', '.join(f'{k} {v}' for k, v in summary['videos_failed'].items())
    dropped = ', '.join(f'{k} {v}' for k, v in summary['frames_dropped'].items())
    lines = [
        f"videos: {summary['videos_found']} found, {summary['videos_in_shard']} in this shard, "
        f"{summary['videos_skipped_done']} skipped (already done), "
        f"{summary['videos_processed']} processed, {summary['videos_ok']} ok",
        f'videos failed: {failed}',
        f"frames: {summary['frames_decoded']} decoded, {summary['frames_kept']} kept; "
        f'dropped: {dropped}',
        f"samples written: train {summary['samples_written']['train']}, "
        f"test {summary['samples_written']['test']}; usable records: "
        f"{summary['usable_records']} in this shard, "
        f"{summary['usable_records_all_shards']} in the output folder",
        f"speed: {summary['frames_per_second']:.1f} frames/s wall "
        f"({summary['wall_seconds']:.1f} s), {summary['frames_per_worker_second']:.1f} "
        'frames/s per worker',
    ]
    lines += [f'  failed {video}: {why}' for video, why in summary['failed_videos'].items()]
    return '\n'.join(lines)



def exit_status(summary):
    """1 when nothing usable remains: no video found, or this shard had videos and holds no
    committed record; else 0 (a shard that was dealt no video is not a failure)."""
    if summary['videos_found'] == 0:
        logging.error('no videos (ID/VIDEO/CLIP.mp4) found')
        return 1
    if summary['videos_in_shard'] > 0 and summary['usable_records'] == 0:
        logging.error('no usable records: every video of this shard failed')
        return 1
    if summary['videos_in_shard'] == 0:
        logging.warning('this shard was dealt no video')
    return 0


def contact_sheet_frames(paths, limit=32):
    """The first `limit` frames of the record files `paths` (in order), as `write_contact_sheet`
    takes them: [(decoded sample, frame index)]."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    frames = []
    for path in paths:
        for serialized in tf.data.TFRecordDataset(path):
            sample = records.decode_sample(serialized.numpy())
            frames.extend((sample, j) for j in range(sample['images'].shape[0]))
            if len(frames) >= limit:
                return frames[:limit]
    return frames
