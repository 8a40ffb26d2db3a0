"""Appearance of the synthetic data: albedo, eye and mouth paint, backgrounds, light and
expression weights (docs/data.md "Synthetic ground truth").

Appearance per identity (`sample_albedo`): a skin tone interpolated along a palette from very
light to very dark skin, with a small random tint; smooth low-frequency per-vertex brightness and
redness variation (random Gaussian blobs), redder cheeks, darker eyebrows (a band just below the
iBUG brow landmarks), darker lash lines (along the eye contours) and redder lips (inside the
outer-lip polygon of the mesh seen from the front). Eye colour (iris) per identity.

Per frame (drawn by `mofl.data.synthetic.SyntheticGenerator.scene`): an SH light
(`sample_lights`), sparse expression weights (`sample_expression_weights`) and a cluttered
background (`sample_background`); after rendering, `paint_holes` fills the mesh's eye and mouth
holes.
"""
import dataclasses
import math

import cv2
import numpy as np

from mofl import landmarks as landmark_layout
from mofl.data import synthetic_identity
from mofl.facemodel import geometry
from mofl.render import shading

# Caps on single blendshape weights (a wide-open jaw leaves ICT's face area with a large hole).
EXPRESSION_WEIGHT_CAPS = {'jawOpen': 0.5, 'mouthClose': 0.3}

# Skin albedo from very light to very dark skin (display RGB in [0, 1]).
SKIN_TONE_PALETTE = np.array([
    [0.93, 0.78, 0.69],
    [0.87, 0.68, 0.56],
    [0.80, 0.60, 0.46],
    [0.70, 0.50, 0.36],
    [0.60, 0.41, 0.28],
    [0.48, 0.32, 0.21],
    [0.36, 0.23, 0.15],
    [0.25, 0.16, 0.11],
], np.float32)
HAIR_COLORS = np.array([[0.06, 0.05, 0.04], [0.15, 0.10, 0.07], [0.30, 0.20, 0.12],
                        [0.50, 0.38, 0.22]], np.float32)
IRIS_COLORS = np.array([[0.25, 0.15, 0.08], [0.12, 0.08, 0.05], [0.30, 0.42, 0.55],
                        [0.32, 0.40, 0.25], [0.45, 0.33, 0.18]], np.float32)


def _smoothstep(edge0, edge1, x):
    t = np.clip((x - edge0) / (edge1 - edge0), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _inside_polygon_xy(points, polygon):
    """[V] signed distance (> 0 inside) of points to a polygon in the x-y plane (mm)."""
    contour = np.asarray(polygon[:, :2], np.float32).reshape(-1, 1, 2)
    return np.array([cv2.pointPolygonTest(contour, (float(p[0]), float(p[1])), True)
                     for p in points[:, :2]])


@dataclasses.dataclass
class Appearance:
    """Per-identity appearance.

    Attributes:
        albedo: [V, 3] float32 per-vertex albedo in [0, 1].
        skin_tone: [3] the base skin colour drawn from the palette.
        iris_color: [3] eye colour used to paint the eye holes.
    """
    albedo: np.ndarray
    skin_tone: np.ndarray
    iris_color: np.ndarray


def sample_albedo(vertices, landmark_indices, rng):
    """Draws one identity's albedo (module docstring: skin tone, blobs, brows, lips).

    Args:
        vertices: [V, 3] the identity's neutral mesh (mm); the regions are placed on it.
        landmark_indices: [66].
        rng: numpy Generator.

    Returns:
        An `Appearance`.
    """
    v = np.asarray(vertices, np.float64)
    lm = v[np.asarray(landmark_indices)]
    s = synthetic_identity.eye_scale(v, landmark_indices)
    position = rng.uniform(0.0, len(SKIN_TONE_PALETTE) - 1)
    low = int(math.floor(position))
    high = min(low + 1, len(SKIN_TONE_PALETTE) - 1)
    tone = (1 - (position - low)) * SKIN_TONE_PALETTE[low] + (position - low) * \
        SKIN_TONE_PALETTE[high]
    tone = tone * (1.0 + rng.uniform(-0.04, 0.04, 3))
    albedo = np.tile(tone, (v.shape[0], 1))

    brightness = np.zeros(v.shape[0])
    redness = np.zeros(v.shape[0])
    for _ in range(6):
        centre = v[rng.integers(v.shape[0])]
        blob = synthetic_identity.gaussian_falloff(v, centre, rng.uniform(0.3, 0.6) * s)
        brightness += rng.normal(0.0, 0.05) * blob
        redness += rng.normal(0.0, 0.03) * blob
    cheek_red = rng.uniform(0.02, 0.08)
    for cheek in (0.5 * (lm[2] + lm[31]), 0.5 * (lm[14] + lm[35])):
        redness += cheek_red * synthetic_identity.gaussian_falloff(v, cheek, 0.25 * s)
    albedo *= (1.0 + brightness)[:, None]
    albedo *= (1.0 + redness[:, None] * np.array([1.0, -0.5, -0.5]))

    hair = HAIR_COLORS[rng.integers(len(HAIR_COLORS))] * rng.uniform(0.8, 1.2)
    hair = np.minimum(hair, tone)  # brows are never lighter than the skin
    brow_strength = rng.uniform(0.5, 0.85)
    for brow in (landmark_layout.RIGHT_BROW_66, landmark_layout.LEFT_BROW_66):
        line = lm[brow] - np.array([0.0, 0.03 * s, 0.0])  # iBUG brow points mark the upper edge
        weight = brow_strength * (1.0 - _smoothstep(0.03 * s, 0.055 * s,
                                                     geometry.distance_to_polyline(v, line)))
        albedo = albedo * (1 - weight[:, None]) + hair[None] * weight[:, None]
    for eye in (landmark_layout.RIGHT_EYE_66, landmark_layout.LEFT_EYE_66):
        weight = 0.5 * (1.0 - _smoothstep(0.008 * s, 0.02 * s,
                                          geometry.distance_to_polyline(v, lm[eye], closed=True)))
        albedo = albedo * (1 - weight[:, None]) + hair[None] * weight[:, None]

    lips = lm[landmark_layout.OUTER_LIPS_66]
    near_lips = (v[:, 2] > lips[:, 2].min() - 0.15 * s) & \
        (np.abs(v[:, 1] - lips[:, 1].mean()) < 0.4 * s) & (np.abs(v[:, 0]) < 0.6 * s)
    lip_weight = np.zeros(v.shape[0])
    if np.any(near_lips):
        inside = _inside_polygon_xy(v[near_lips], lips)
        lip_weight[near_lips] = _smoothstep(-0.01 * s, 0.01 * s, inside)
    lip_color = tone * np.array([0.95, 0.62, 0.62]) * rng.uniform(0.8, 1.0)
    lip_weight *= rng.uniform(0.5, 0.8)
    albedo = albedo * (1 - lip_weight[:, None]) + lip_color[None] * lip_weight[:, None]

    return Appearance(albedo=np.clip(albedo, 0.0, 1.0).astype(np.float32),
                      skin_tone=tone.astype(np.float32),
                      iris_color=IRIS_COLORS[rng.integers(len(IRIS_COLORS))].copy())


def sample_background(rng, image_size):
    """A cluttered background: gradient, colour noise, random shapes and fine noise.

    Args:
        rng: numpy Generator.
        image_size: (H, W).

    Returns:
        [H, W, 3] float32 in [0, 1].
    """
    height, width = image_size
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    angle = rng.uniform(0, 2 * np.pi)
    ramp = (np.cos(angle) * xs / width + np.sin(angle) * ys / height)
    ramp = (ramp - ramp.min()) / max(float(np.ptp(ramp)), 1e-6)
    colors = rng.uniform(0.0, 1.0, (2, 3)).astype(np.float32)
    image = colors[0] * (1 - ramp[..., None]) + colors[1] * ramp[..., None]
    coarse = rng.uniform(0.0, 1.0, (int(rng.integers(3, 9)), int(rng.integers(3, 9)), 3))
    coarse = cv2.resize(coarse.astype(np.float32), (width, height),
                        interpolation=cv2.INTER_CUBIC)
    image = (1 - 0.35) * image + 0.35 * coarse
    for _ in range(int(rng.integers(6, 18))):
        layer = image.copy()
        color = tuple(float(c) for c in rng.uniform(0.0, 1.0, 3))
        kind = rng.integers(4)
        x0, y0 = (int(c) for c in rng.integers(-width // 4, width + width // 4, 2))
        size = int(rng.integers(8, width // 2))
        if kind == 0:
            cv2.rectangle(layer, (x0, y0), (x0 + size, y0 + int(rng.integers(8, height // 2))),
                          color, -1)
        elif kind == 1:
            cv2.ellipse(layer, (x0, y0), (size // 2, int(rng.integers(4, height // 4))),
                        float(rng.uniform(0, 180)), 0, 360, color, -1, cv2.LINE_AA)
        elif kind == 2:
            x1, y1 = (int(c) for c in rng.integers(0, width, 2))
            cv2.line(layer, (x0, y0), (x1, y1), color, int(rng.integers(1, 8)), cv2.LINE_AA)
        else:
            points = rng.integers(-width // 4, width + width // 4, (int(rng.integers(3, 6)), 2))
            cv2.fillPoly(layer, [points.astype(np.int32).reshape(-1, 1, 2)], color, cv2.LINE_AA)
        alpha = rng.uniform(0.5, 1.0)
        image = (1 - alpha) * image + alpha * layer
    image += rng.uniform(0.0, 0.04) * rng.standard_normal(image.shape, dtype=np.float32)
    return np.clip(image, 0.0, 1.0).astype(np.float32)


def sample_expression_weights(rng, names, num_frames, max_active=3):
    """Sparse blendshape weights per frame: 0..max_active active shapes, uniform in [0, 1].

    Args:
        rng: numpy Generator.
        names: [b] blendshape names of the asset.
        num_frames: M.
        max_active: most active shapes per frame.

    Returns:
        [M, b] float32 in [0, 1], capped by `EXPRESSION_WEIGHT_CAPS`.
    """
    names = [str(n) for n in names]
    caps = np.array([EXPRESSION_WEIGHT_CAPS.get(n, 1.0) for n in names], np.float32)
    weights = np.zeros((num_frames, len(names)), np.float32)
    for frame in range(num_frames):
        count = int(rng.integers(0, min(max_active, len(names)) + 1))
        chosen = rng.choice(len(names), size=count, replace=False)
        weights[frame, chosen] = rng.uniform(0.0, 1.0, count) * caps[chosen]
    return weights


def sample_lights(rng, num_frames):
    """Per-frame SH illumination γ: ambient + one directional light, mildly coloured.

    Returns:
        [M, 27] float32 (layout in `mofl.render.shading`).
    """
    ambient = rng.uniform(0.45, 0.85, (num_frames, 1)) * (1 + rng.uniform(-0.06, 0.06,
                                                                          (num_frames, 3)))
    strength = rng.uniform(0.15, 0.6, (num_frames, 1)) * (1 + rng.uniform(-0.08, 0.08,
                                                                          (num_frames, 3)))
    direction = rng.normal(0.0, 1.0, (num_frames, 3))
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    direction[:, 2] = np.abs(direction[:, 2]) + 0.3  # from the camera's half-space
    sh = shading.directional_sh(direction.astype(np.float32), strength.astype(np.float32),
                                ambient.astype(np.float32))
    return np.asarray(sh, np.float32)


def paint_holes(image, mask, landmarks, iris_color, light):
    """Fills background pixels inside the eye and inner-mouth polygons (holes in the mesh).

    Args:
        image: [H, W, 3] float render.
        mask: [H, W] face mask.
        landmarks: [66, 2] exact projected landmarks.
        iris_color: [3].
        light: scalar ambient level that darkens the painted colours.

    Returns:
        [H, W, 3] float32.
    """
    image = np.array(image, np.float32)
    height, width = mask.shape
    paint = np.zeros_like(image)
    region = np.zeros((height, width), np.float32)
    scale = 16.0  # cv2 fixed-point sub-pixel coordinates (shift = 4)

    def polygon(points):
        return (np.round((np.asarray(points) - 0.5) * scale)).astype(np.int32).reshape(-1, 1, 2)

    level = float(np.clip(light, 0.3, 1.2))
    for eye in (landmark_layout.RIGHT_EYE_66, landmark_layout.LEFT_EYE_66):
        points = landmarks[eye]
        if not np.all(np.isfinite(points)):
            continue
        eye_mask = np.zeros((height, width), np.float32)
        cv2.fillPoly(eye_mask, [polygon(points)], 1.0, cv2.LINE_8, 4)
        eye_mask = cv2.dilate(eye_mask, np.ones((3, 3), np.uint8))
        layer = np.zeros_like(image)
        layer[:] = np.array([0.85, 0.82, 0.78], np.float32) * level
        centre = points.mean(axis=0)
        radius = 0.22 * float(np.linalg.norm(points[3] - points[0]))
        cv2.circle(layer, tuple(int(c) for c in np.round((centre - 0.5) * scale)),
                   int(round(radius * scale)), tuple(float(c) * level for c in iris_color),
                   -1, cv2.LINE_AA, 4)
        cv2.circle(layer, tuple(int(c) for c in np.round((centre - 0.5) * scale)),
                   int(round(0.45 * radius * scale)), (0.02, 0.02, 0.02), -1, cv2.LINE_AA, 4)
        paint = np.where(eye_mask[..., None] > 0, layer, paint)
        region = np.maximum(region, eye_mask)
    mouth = landmarks[landmark_layout.INNER_MOUTH_66]
    if np.all(np.isfinite(mouth)):
        mouth_mask = np.zeros((height, width), np.float32)
        cv2.fillPoly(mouth_mask, [polygon(mouth)], 1.0, cv2.LINE_8, 4)
        mouth_mask = cv2.dilate(mouth_mask, np.ones((3, 3), np.uint8))
        paint = np.where(mouth_mask[..., None] > 0,
                         np.array([0.22, 0.06, 0.06], np.float32) * level, paint)
        region = np.maximum(region, mouth_mask)
    fill = (region > 0) & (mask < 0.5)
    image[fill] = paint[fill]
    return image
