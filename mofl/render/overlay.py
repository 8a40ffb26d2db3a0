"""PNG-ready uint8 visualisations: side-by-side panels, alpha blends, 2D landmarks.

Used by TensorBoard summaries, the demo, reconstruction and `tools/render_preview.py`. Everything
takes NumPy arrays or eager tensors, float images in [0, 1] (clipped) or uint8, RGB, [H, W, 3]
(a [H, W] image is shown as grey), and returns new uint8 [H, W, 3] arrays.
"""
import os

import cv2
import numpy as np
from PIL import Image

DEFAULT_GAP_VALUE = 255  # white separators between panels


def _as_rgb(image):
    """[H, W], [H, W, 1] or [H, W, C≥3] as [H, W, 3] (grey repeated, extra channels dropped)."""
    image = np.asarray(image)
    if image.ndim == 2:
        image = image[..., np.newaxis]
    if image.shape[-1] == 1:
        image = np.repeat(image, 3, axis=-1)
    return image[..., :3]


def to_float_rgb(image):
    """An image as float64 [H, W, 3] in [0, 1] (uint8 scaled by 1/255, floats clipped)."""
    image = _as_rgb(image)
    if image.dtype == np.uint8:
        return image.astype(np.float64) / 255.0
    return np.clip(np.nan_to_num(image.astype(np.float64)), 0.0, 1.0)


def to_uint8(image):
    """A float [0, 1] or uint8 image, [H, W] or [H, W, C≥3], as uint8 [H, W, 3] RGB."""
    image = _as_rgb(image)
    if image.dtype == np.uint8:
        return image.copy()
    return (to_float_rgb(image) * 255.0 + 0.5).astype(np.uint8)


def side_by_side(images, gap=2, gap_value=DEFAULT_GAP_VALUE, labels=None):
    """Concatenates equally tall images left to right with `gap`-pixel separators.

    Args:
        images: a list of [H, W_k(, C)] images (float in [0, 1] or uint8).
        gap: separator width in pixels.
        gap_value: separator grey level (0–255).
        labels: optional list of strings, drawn into the top-left corner of each panel.

    Returns:
        uint8 [H, Σ W_k + gap·(K − 1), 3].
    """
    panels = [to_uint8(image) for image in images]
    height = panels[0].shape[0]
    if any(panel.shape[0] != height for panel in panels):
        raise ValueError(f'panels differ in height: {[p.shape for p in panels]}')
    if labels is not None:
        panels = [put_label(panel, label) for panel, label in zip(panels, labels)]
    separator = np.full((height, gap, 3), gap_value, np.uint8)
    pieces = []
    for index, panel in enumerate(panels):
        if index and gap:
            pieces.append(separator)
        pieces.append(panel)
    return np.concatenate(pieces, axis=1)


def stack_rows(rows, gap=2, gap_value=DEFAULT_GAP_VALUE):
    """Stacks equally wide uint8 images top to bottom with separators."""
    rows = [to_uint8(row) for row in rows]
    separator = np.full((gap, rows[0].shape[1], 3), gap_value, np.uint8)
    pieces = []
    for index, row in enumerate(rows):
        if index and gap:
            pieces.append(separator)
        pieces.append(row)
    return np.concatenate(pieces, axis=0)


def alpha_blend(base, overlay_image, mask=None, alpha=0.5):
    """base · (1 − α·mask) + overlay · α·mask, as uint8.

    Args:
        base: [H, W, 3] image.
        overlay_image: [H, W, 3] image drawn on top.
        mask: [H, W] weights in [0, 1] (None = everywhere).
        alpha: opacity of the overlay where mask = 1.

    Returns:
        uint8 [H, W, 3].
    """
    base = to_float_rgb(base)
    top = to_float_rgb(overlay_image)
    weight = alpha * (np.ones(base.shape[:2]) if mask is None else np.asarray(mask, np.float64))
    weight = weight[..., np.newaxis]
    return to_uint8(base * (1.0 - weight) + top * weight)


def put_label(image, text, scale=0.35, color=(255, 255, 0)):
    """Writes `text` into the top-left corner (with a dark outline for contrast)."""
    canvas = to_uint8(image)
    origin = (2, 10)
    cv2.putText(canvas, text, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 2, cv2.LINE_AA)
    cv2.putText(canvas, text, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, color, 1, cv2.LINE_AA)
    return canvas


def draw_landmarks(image, landmarks, color=(0, 255, 0), radius=2, thickness=-1):
    """Draws 2D landmarks as circles (cv2.circle, sub-pixel accurate).

    Args:
        image: [H, W, 3] image.
        landmarks: [N, 2] pixel coordinates (u, v) in the BUILD_NOTES.md "Coordinates and units"
            convention (pixel (r, c) is centred at (c + 0.5, r + 0.5)); non-finite points are
            skipped.
        color: RGB colour (0–255).
        radius: circle radius in pixels.
        thickness: −1 for filled circles, else the outline width.

    Returns:
        uint8 [H, W, 3] copy with the landmarks drawn.
    """
    canvas = np.ascontiguousarray(to_uint8(image))
    shift = 4  # cv2 fixed-point bits: centres with 1/16 pixel precision
    scale = 1 << shift
    for u, v in np.asarray(landmarks, np.float64).reshape(-1, 2):
        if not (np.isfinite(u) and np.isfinite(v)):
            continue
        # cv2 puts pixel centres at integer coordinates.
        center = (int(round((u - 0.5) * scale)), int(round((v - 0.5) * scale)))
        cv2.circle(canvas, center, int(round(radius * scale)), tuple(int(c) for c in color),
                   thickness, cv2.LINE_AA if thickness > 0 else cv2.LINE_8, shift)
    return canvas


def render_panels(input_image, rendered, index=0, alpha=0.7, with_normals=True, labels=True):
    """One row "input | render | blend | albedo | shading (| normals)" for batch element `index`.

    Args:
        input_image: [H, W, 3] the photo (or None to leave out the input and blend panels).
        rendered: an `image_renderer.RenderedImage`.
        index: batch element to show.
        alpha: opacity of the render in the blend panel.
        with_normals: add the camera-space normal map (geometry view).
        labels: write panel names.

    Returns:
        uint8 [H, W_total, 3].
    """
    mask = np.asarray(rendered.mask[index])
    panels, names = [], []
    if input_image is not None:
        panels.append(input_image)
        names.append('input')
    panels.append(np.asarray(rendered.image[index]))
    names.append('render')
    if input_image is not None:
        panels.append(alpha_blend(input_image, np.asarray(rendered.image[index]), mask, alpha))
        names.append('blend')
    panels.append(np.asarray(rendered.albedo[index]))
    names.append('albedo')
    panels.append(np.asarray(rendered.shading[index]))
    names.append('shading')
    if with_normals:
        panels.append(np.asarray(rendered.normals[index]))
        names.append('normals')
    return side_by_side(panels, labels=names if labels else None)


def save_png(path, image):
    """Writes an RGB image (float [0, 1] or uint8) as PNG, creating the folder."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    Image.fromarray(to_uint8(image)).save(path, format='PNG')
