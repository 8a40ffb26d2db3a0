"""What a synthetic person and scene look like: materials (`HeadAppearance`) and lighting.

`HeadAppearance` holds one person's materials: a skin albedo from very light to very dark, the
roughness and specular amount of Mitsuba's `principled` BSDF, and the parameters of procedural
skin detail (mottling, redness blotches, freckles, lip, cheek and brow tint), hair, iris, sclera,
teeth and mouth colours; `sample_appearance` draws one. `Lighting` holds an environment map (sky
or room gradient with a brighter window region) and one key light (a sun with hard shadows or a
spherical lamp with soft ones), all in camera space; `sample_lighting` draws one. The ranges of
both are the module constants. Colour helpers (`srgb_to_linear`, `linear_to_srgb`,
`blackbody_color`) live here too.

The skin and iris textures an appearance paints onto the head are in `mofl.data.head_textures`;
the head itself is `mofl.data.ict_head`; `mofl.data.mitsuba_faces` turns a head, an appearance and
a lighting into a Mitsuba scene and renders it. This module needs NumPy only.
"""
import dataclasses
import math
from typing import Tuple

import numpy as np

ENV_MAP_SIZE = (32, 64)          # lat-long (H, W)

# Appearance ranges (`sample_appearance`). Colours are display sRGB in [0, 1].
# Skin tones from very light to very dark; a tone is interpolated along this palette.
SKIN_TONE_PALETTE = np.array([
    [0.94, 0.80, 0.71], [0.88, 0.70, 0.58], [0.81, 0.61, 0.48], [0.71, 0.51, 0.38],
    [0.60, 0.42, 0.30], [0.48, 0.33, 0.23], [0.37, 0.25, 0.17], [0.26, 0.17, 0.12],
], np.float64)
SKIN_TINT_JITTER = 0.04          # ± relative brightness jitter of the tone (per channel: ¼)
ROUGHNESS_RANGE = (0.3, 0.7)     # principled roughness of the skin (alpha = roughness²)
SPECULAR_RANGE = (0.25, 0.6)     # principled `specular` (0.5 ↔ IOR 1.5; skin's ~1.4 ↔ 0.35)
DETAIL_STRENGTH_RANGE = (0.04, 0.12)   # relative albedo variation of the fine mottling
BLOTCH_STRENGTH_RANGE = (0.0, 0.12)    # relative redness variation of ~3 cm blotches
FRECKLE_DENSITY_RANGE = (0.0, 0.35)    # 0 = none; 0.35 = dense freckles on nose and cheeks
FRECKLE_PROBABILITY = 0.4              # the share of people with freckles
LIP_TINT_RANGE = (0.3, 0.8)            # 0 = lips like skin, 1 = strongly red-brown lips
CHEEK_TINT_RANGE = (0.0, 0.25)         # extra redness at the cheek centres
BROW_DENSITY_RANGE = (0.45, 0.9)       # opacity of the brow hair colour
PUPIL_RATIO_RANGE = (0.25, 0.45)       # pupil radius / iris radius
HAIR_COLORS = np.array([[0.05, 0.04, 0.035], [0.14, 0.10, 0.07], [0.30, 0.20, 0.12],
                        [0.52, 0.40, 0.25], [0.45, 0.22, 0.10]], np.float64)
IRIS_COLORS = np.array([[0.24, 0.14, 0.07], [0.12, 0.07, 0.04], [0.40, 0.28, 0.12],
                        [0.30, 0.42, 0.56], [0.36, 0.46, 0.30], [0.45, 0.48, 0.50]], np.float64)
SCLERA_COLOR = (0.86, 0.83, 0.79)
TEETH_COLOR = (0.86, 0.82, 0.72)
MOUTH_COLOR = (0.52, 0.20, 0.20)
COLOR_JITTER = 0.08              # ± relative jitter of sclera, teeth, mouth colours
HAIR_IRIS_JITTER = 0.15          # ± relative jitter of hair and iris colours
SCLERA_ROUGHNESS = 0.12
IRIS_ROUGHNESS = 0.15
TEETH_ROUGHNESS = 0.25
MOUTH_ROUGHNESS = 0.4

# Lighting ranges (`sample_lighting`); radiance and irradiance in linear units where a white
# Lambertian surface facing a key light of irradiance E has radiance E/π.
KEY_IRRADIANCE_RANGE = (1.5, 4.5)
KEY_TEMPERATURE_RANGE_K = (2700.0, 7500.0)
KEY_AZIMUTH_RANGE_DEG = (-100.0, 100.0)   # 0 = from the camera, ±90 = from the side
KEY_ELEVATION_RANGE_DEG = (-15.0, 60.0)
KEY_LAMP_PROBABILITY = 0.5                # else a sun (directional, hard shadows)
KEY_LAMP_RADIUS_DEG = (3.0, 12.0)         # angular radius of a lamp seen from the head
ENV_RADIANCE_RANGE = (0.12, 0.5)          # mean radiance of the environment
ENV_TEMPERATURE_RANGE_K = (3500.0, 10000.0)
WINDOW_GAIN_RANGE = (1.0, 8.0)            # window peak / mean environment radiance
WINDOW_SHARPNESS_RANGE = (3.0, 20.0)      # κ of the window lobe exp(κ(cos θ − 1))
WINDOW_AZIMUTH_RANGE_DEG = (-120.0, 120.0)
WINDOW_ELEVATION_RANGE_DEG = (-10.0, 60.0)
UP_TILT_DEG = 10.0                        # environment 'up' tilts by at most this

# Approximate display colours (sRGB) of black-body light, by temperature in kelvin.
_BLACKBODY_SRGB = (
    (2000.0, (1.00, 0.54, 0.07)), (2500.0, (1.00, 0.63, 0.28)), (3000.0, (1.00, 0.71, 0.42)),
    (3500.0, (1.00, 0.77, 0.54)), (4000.0, (1.00, 0.82, 0.64)), (4500.0, (1.00, 0.86, 0.73)),
    (5000.0, (1.00, 0.89, 0.81)), (5500.0, (1.00, 0.93, 0.88)), (6000.0, (1.00, 0.95, 0.94)),
    (6500.0, (1.00, 0.98, 0.99)), (7000.0, (0.96, 0.95, 1.00)), (8000.0, (0.89, 0.91, 1.00)),
    (9000.0, (0.84, 0.88, 1.00)), (10000.0, (0.80, 0.86, 1.00)),
)
_LUMINANCE = np.array([0.2126, 0.7152, 0.0722])


# ---------------------------------------------------------------------------------------------
# Colour helpers.
# ---------------------------------------------------------------------------------------------

def srgb_to_linear(values):
    """sRGB-encoded values in [0, 1] → linear, same shape (float64)."""
    v = np.clip(np.asarray(values, np.float64), 0.0, 1.0)
    return np.where(v <= 0.04045, v / 12.92, ((v + 0.055) / 1.055) ** 2.4)


def linear_to_srgb(values):
    """Linear values → sRGB-encoded values in [0, 1] (clipped first), same shape (float64)."""
    v = np.clip(np.asarray(values, np.float64), 0.0, 1.0)
    return np.where(v <= 0.0031308, v * 12.92, 1.055 * v ** (1.0 / 2.4) - 0.055)


def blackbody_color(temperature_k):
    """Linear RGB of black-body light at `temperature_k` kelvin, scaled to luminance 1.

    Args:
        temperature_k: float, clamped to [2000, 10000].

    Returns:
        [3] float64.
    """
    temps = np.array([t for t, _ in _BLACKBODY_SRGB])
    colors = srgb_to_linear(np.array([c for _, c in _BLACKBODY_SRGB]))
    t = float(np.clip(temperature_k, temps[0], temps[-1]))
    rgb = np.array([np.interp(t, temps, colors[:, k]) for k in range(3)])
    return rgb / float(rgb @ _LUMINANCE)


# ---------------------------------------------------------------------------------------------
# Appearance.
# ---------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class HeadAppearance:
    """One person's materials (all colours display sRGB in [0, 1]; ranges: module constants).

    Attributes:
        skin_color: skin base albedo, interpolated along `SKIN_TONE_PALETTE` (very light to very
            dark), its brightness jittered by ±`SKIN_TINT_JITTER` and each channel by a quarter
            of that.
        roughness: principled roughness of the skin, `ROUGHNESS_RANGE` [0.3, 0.7].
        specular: principled specular amount of the skin, `SPECULAR_RANGE` [0.25, 0.6].
        texture_seed: seeds the procedural skin and iris detail.
        detail_strength: relative albedo variation of the fine mottling (3D noise, 1–8 mm
            octaves), `DETAIL_STRENGTH_RANGE` [0.04, 0.12].
        blotch_strength: relative redness variation of ~3 cm blotches, [0, 0.12].
        freckle_density: freckles on nose and cheeks, [0, 0.35] for a share
            `FRECKLE_PROBABILITY` of people, else 0 (none).
        lip_tint: how much redder and darker than skin the lips are, [0.3, 0.8].
        cheek_tint: extra redness at the cheeks, [0, 0.25].
        hair_color: brow and lash-line colour (`HAIR_COLORS`, brightness
            ±`HAIR_IRIS_JITTER`), painted no lighter than the mean skin albedo.
        brow_density: opacity of the brows, [0.45, 0.9].
        iris_color: `IRIS_COLORS` (browns, hazel, blue, green, grey), brightness
            ±`HAIR_IRIS_JITTER`.
        pupil_ratio: pupil radius / iris radius, [0.25, 0.45].
        sclera_color, teeth_color, mouth_color: `SCLERA_COLOR`, `TEETH_COLOR`, `MOUTH_COLOR`
            (gums, tongue, mouth socket) with brightness ±`COLOR_JITTER` (per channel: ¼).
    """
    skin_color: Tuple[float, float, float] = (0.81, 0.61, 0.48)
    roughness: float = 0.5
    specular: float = 0.35
    texture_seed: int = 0
    detail_strength: float = 0.08
    blotch_strength: float = 0.05
    freckle_density: float = 0.0
    lip_tint: float = 0.5
    cheek_tint: float = 0.1
    hair_color: Tuple[float, float, float] = (0.14, 0.10, 0.07)
    brow_density: float = 0.7
    iris_color: Tuple[float, float, float] = (0.24, 0.14, 0.07)
    pupil_ratio: float = 0.35
    sclera_color: Tuple[float, float, float] = SCLERA_COLOR
    teeth_color: Tuple[float, float, float] = TEETH_COLOR
    mouth_color: Tuple[float, float, float] = MOUTH_COLOR


def _jittered(rng, color, amount):
    """A colour scaled by 1 ± amount, each channel further by 1 ± amount/4, clipped to [0, 1]."""
    scale = rng.uniform(1.0 - amount, 1.0 + amount) * \
        rng.uniform(1.0 - amount / 4.0, 1.0 + amount / 4.0, 3)
    return tuple(float(c) for c in np.clip(np.asarray(color) * scale, 0.0, 1.0))


def sample_appearance(rng: np.random.Generator) -> HeadAppearance:
    """Draws one person's materials (ranges in `HeadAppearance` and the module constants).

    Args:
        rng: numpy Generator.

    Returns:
        HeadAppearance.
    """
    position = rng.uniform(0.0, len(SKIN_TONE_PALETTE) - 1)
    low = min(int(position), len(SKIN_TONE_PALETTE) - 2)
    tone = SKIN_TONE_PALETTE[low] + (position - low) * (SKIN_TONE_PALETTE[low + 1] -
                                                        SKIN_TONE_PALETTE[low])
    hair = HAIR_COLORS[rng.integers(len(HAIR_COLORS))]
    iris = IRIS_COLORS[rng.integers(len(IRIS_COLORS))]
    return HeadAppearance(
        skin_color=_jittered(rng, tone, SKIN_TINT_JITTER),
        roughness=float(rng.uniform(*ROUGHNESS_RANGE)),
        specular=float(rng.uniform(*SPECULAR_RANGE)),
        texture_seed=int(rng.integers(2 ** 31)),
        detail_strength=float(rng.uniform(*DETAIL_STRENGTH_RANGE)),
        blotch_strength=float(rng.uniform(*BLOTCH_STRENGTH_RANGE)),
        freckle_density=float(rng.uniform(*FRECKLE_DENSITY_RANGE))
        if rng.uniform() < FRECKLE_PROBABILITY else 0.0,
        lip_tint=float(rng.uniform(*LIP_TINT_RANGE)),
        cheek_tint=float(rng.uniform(*CHEEK_TINT_RANGE)),
        hair_color=_jittered(rng, hair, HAIR_IRIS_JITTER),
        brow_density=float(rng.uniform(*BROW_DENSITY_RANGE)),
        iris_color=_jittered(rng, iris, HAIR_IRIS_JITTER),
        pupil_ratio=float(rng.uniform(*PUPIL_RATIO_RANGE)),
        sclera_color=_jittered(rng, SCLERA_COLOR, COLOR_JITTER),
        teeth_color=_jittered(rng, TEETH_COLOR, COLOR_JITTER),
        mouth_color=_jittered(rng, MOUTH_COLOR, COLOR_JITTER))


# ---------------------------------------------------------------------------------------------
# Lighting.
# ---------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Lighting:
    """An environment map plus one key light, all in camera space (= world space).

    Attributes:
        up: [3] unit 'up' of the environment (the camera's y, tilted by ≤ `UP_TILT_DEG`).
        sky_color, horizon_color, ground_color: linear RGB radiance of the environment straight
            up, at the horizon and straight down (a sky or a room: ceiling, walls, floor).
        window_direction: [3] unit direction of a brighter region (window, open sky).
        window_color: linear RGB peak radiance added there.
        window_sharpness: κ of the lobe window_color · exp(κ (cos θ − 1)).
        key_direction: [3] unit direction from the head towards the key light.
        key_irradiance: linear RGB irradiance the key light gives a surface facing it.
        key_radius_deg: 0 for a sun (Mitsuba `directional`, hard shadows), else the angular
            radius of a spherical lamp (area light, soft shadows).
        key_temperature_k, env_temperature_k: the colour temperatures drawn (for reference).
    """
    up: Tuple[float, float, float] = (0.0, 1.0, 0.0)
    sky_color: Tuple[float, float, float] = (0.3, 0.3, 0.3)
    horizon_color: Tuple[float, float, float] = (0.3, 0.3, 0.3)
    ground_color: Tuple[float, float, float] = (0.15, 0.15, 0.15)
    window_direction: Tuple[float, float, float] = (0.0, 0.5, 0.866)
    window_color: Tuple[float, float, float] = (0.0, 0.0, 0.0)
    window_sharpness: float = 8.0
    key_direction: Tuple[float, float, float] = (0.0, 0.0, 1.0)
    key_irradiance: Tuple[float, float, float] = (2.5, 2.5, 2.5)
    key_radius_deg: float = 0.0
    key_temperature_k: float = 6500.0
    env_temperature_k: float = 6500.0

    def environment_map(self, size=ENV_MAP_SIZE):
        """The environment as a lat-long image in Mitsuba's `envmap` layout.

        Pixel (row r, column c) of an (h, w) map looks along θ = π (r + 0.5)/h from +y and
        φ = 2π (c + 0.5)/w: d = (sin θ sin φ, cos θ, sin θ cos φ) (so −z, the view direction,
        is the centre column).

        Args:
            size: (h, w).

        Returns:
            [h, w, 3] float32 linear radiance.
        """
        h, w = size
        theta = np.pi * (np.arange(h) + 0.5) / h
        phi = 2.0 * np.pi * (np.arange(w) + 0.5) / w
        d = np.stack([np.sin(theta)[:, None] * np.sin(phi)[None],
                      np.cos(theta)[:, None] * np.ones(w)[None],
                      np.sin(theta)[:, None] * np.cos(phi)[None]], -1)
        elevation = d @ np.asarray(self.up)
        sky = np.sqrt(np.clip(elevation, 0.0, 1.0))[..., None]
        ground = np.sqrt(np.clip(-elevation, 0.0, 1.0))[..., None]
        horizon = np.asarray(self.horizon_color)
        radiance = horizon + sky * (np.asarray(self.sky_color) - horizon) + \
            ground * (np.asarray(self.ground_color) - horizon)
        lobe = np.exp(self.window_sharpness * (d @ np.asarray(self.window_direction) - 1.0))
        radiance = radiance + lobe[..., None] * np.asarray(self.window_color)
        return radiance.astype(np.float32)


def _direction(azimuth_deg, elevation_deg):
    """Camera-space unit vector; azimuth 0 = towards the camera (+z), 90 = +x; elevation up."""
    a, e = math.radians(azimuth_deg), math.radians(elevation_deg)
    return np.array([math.sin(a) * math.cos(e), math.sin(e), math.cos(a) * math.cos(e)])


def sample_lighting(rng: np.random.Generator) -> Lighting:
    """Draws an environment (sky or room gradient with a window) and a key light.

    Key light: azimuth uniform in `KEY_AZIMUTH_RANGE_DEG` (0 = from the camera, ±90 = from the
    side, beyond = from behind), elevation in `KEY_ELEVATION_RANGE_DEG`, black-body colour of
    `KEY_TEMPERATURE_RANGE_K`, irradiance `KEY_IRRADIANCE_RANGE`; a sun (hard shadows) or with
    probability `KEY_LAMP_PROBABILITY` a spherical lamp of angular radius `KEY_LAMP_RADIUS_DEG`.
    Environment: mean radiance `ENV_RADIANCE_RANGE` with a colour of `ENV_TEMPERATURE_RANGE_K`;
    horizon and ground darker than the sky by random factors; 'up' tilted by ≤ `UP_TILT_DEG`; a
    window lobe (`WINDOW_AZIMUTH_RANGE_DEG`, `WINDOW_ELEVATION_RANGE_DEG`, sharpness
    `WINDOW_SHARPNESS_RANGE`) with a peak `WINDOW_GAIN_RANGE` times the mean level.

    Args:
        rng: numpy Generator.

    Returns:
        Lighting.
    """
    tilt, around = math.radians(rng.uniform(0.0, UP_TILT_DEG)), rng.uniform(0.0, 2.0 * math.pi)
    up = np.array([math.sin(tilt) * math.cos(around), math.cos(tilt),
                   math.sin(tilt) * math.sin(around)])
    key_t = rng.uniform(*KEY_TEMPERATURE_RANGE_K)
    env_t = rng.uniform(*ENV_TEMPERATURE_RANGE_K)
    env_rgb = blackbody_color(env_t)
    level = rng.uniform(*ENV_RADIANCE_RANGE)
    sky = level * rng.uniform(0.8, 1.6) * env_rgb
    horizon = level * rng.uniform(0.6, 1.0) * env_rgb * _jittered_array(rng, 0.1)
    ground = level * rng.uniform(0.2, 0.7) * env_rgb * _jittered_array(rng, 0.2)
    window = _direction(rng.uniform(*WINDOW_AZIMUTH_RANGE_DEG),
                        rng.uniform(*WINDOW_ELEVATION_RANGE_DEG))
    window_rgb = level * rng.uniform(*WINDOW_GAIN_RANGE) * blackbody_color(
        rng.uniform(*ENV_TEMPERATURE_RANGE_K))
    key = _direction(rng.uniform(*KEY_AZIMUTH_RANGE_DEG), rng.uniform(*KEY_ELEVATION_RANGE_DEG))
    lamp = rng.uniform() < KEY_LAMP_PROBABILITY
    return Lighting(
        up=_tuple(up), sky_color=_tuple(sky), horizon_color=_tuple(horizon),
        ground_color=_tuple(ground), window_direction=_tuple(window),
        window_color=_tuple(window_rgb),
        window_sharpness=float(rng.uniform(*WINDOW_SHARPNESS_RANGE)),
        key_direction=_tuple(key),
        key_irradiance=_tuple(rng.uniform(*KEY_IRRADIANCE_RANGE) * blackbody_color(key_t)),
        key_radius_deg=float(rng.uniform(*KEY_LAMP_RADIUS_DEG)) if lamp else 0.0,
        key_temperature_k=float(key_t), env_temperature_k=float(env_t))


def _jittered_array(rng, amount):
    return 1.0 + rng.uniform(-amount, amount, 3)


def _tuple(v):
    return tuple(float(x) for x in np.asarray(v).reshape(-1))
