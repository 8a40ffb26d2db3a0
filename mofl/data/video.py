"""Decoding video frames with OpenCV (shared by preprocessing and reconstruction)."""
import cv2


def iter_frames(path, stride=1, max_decoded=0, max_kept=0):
    """Yields (frame number, RGB uint8 frame) for every `stride`-th decoded frame.

    Args:
        path: video file (anything cv2.VideoCapture opens).
        stride: keep frames 0, s, 2s, ...
        max_decoded: stop after decoding this many frames, kept or not (0: no limit).
        max_kept: stop after yielding this many frames (0: no limit).

    An unreadable or truncated file simply yields fewer (or no) frames; callers decide whether
    that is an error.
    """
    capture = cv2.VideoCapture(path)
    try:
        number = kept = 0
        while capture.isOpened():
            if (max_decoded and number >= max_decoded) or (max_kept and kept >= max_kept):
                return
            ok, bgr = capture.read()
            if not ok or bgr is None:
                return
            if number % stride == 0:
                kept += 1
                yield number, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            number += 1
    finally:
        capture.release()
