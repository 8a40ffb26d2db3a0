"""Reading the user's input files: image and video paths, globs, decoded RGB frames.

Shared by the reconstruction binary, the evaluation on real scans and the mode visualisation:
`expand_inputs` turns a comma-separated list of paths and globs into paths, `read_image` and
`read_video_frames` decode them to RGB uint8, and `InputError` names the file that could not be
read.
"""
import glob
import os
from typing import Iterator, List, Tuple

import cv2
import numpy as np

from mofl.data import video as video_lib

IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.bmp', '.webp', '.tif', '.tiff')
VIDEO_EXTENSIONS = ('.mp4', '.avi', '.mov', '.mkv', '.webm', '.m4v', '.mpg', '.mpeg')


class InputError(ValueError):
    """An input file is missing, unreadable or of an unknown type."""


def expand_inputs(spec) -> List[str]:
    """Comma-separated paths and/or globs -> paths, in order (globs sorted). A glob that
    matches nothing and a missing literal path are kept, so they are reported as unreadable."""
    paths = []
    for item in (p.strip() for p in str(spec).split(',')):
        if not item:
            continue
        matches = sorted(glob.glob(item)) if glob.has_magic(item) else [item]
        paths.extend(matches or [item])
    return paths


def is_video(path):
    """Whether `path` has one of VIDEO_EXTENSIONS (case-insensitive)."""
    return os.path.splitext(path)[1].lower() in VIDEO_EXTENSIONS


def read_image(path):
    """RGB uint8 [H, W, 3] of an image file.

    Raises:
        InputError: missing or undecodable file.
    """
    if not os.path.isfile(path):
        raise InputError(f'{path}: ' + ('matches no file' if glob.has_magic(path) else
                                         'no such file'))
    bgr = cv2.imread(path, cv2.IMREAD_COLOR)
    if bgr is None:
        raise InputError(f'{path}: not a readable image')
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def read_video_frames(path, frame_stride=1, max_frames=0) -> Iterator[Tuple[int, np.ndarray]]:
    """(frame number, RGB uint8 frame [H, W, 3]) of every `frame_stride`-th frame of a video.

    Args:
        path: video file.
        frame_stride: keep frames 0, s, 2s, ...
        max_frames: stop after this many kept frames (0: no limit).

    Raises:
        InputError: missing file, or no frame could be decoded.
    """
    if not os.path.isfile(path):
        raise InputError(f'{path}: no such file')
    decoded = False
    for number, frame in video_lib.iter_frames(path, frame_stride, max_kept=max_frames):
        decoded = True
        yield number, frame
    if not decoded:
        raise InputError(f'{path}: not a readable video (no frame decoded)')
