"""Procedural skin and iris textures of a `HeadAppearance`, painted in ICT-FaceKit's UV atlas.

The skin atlas holds ICT's UV tiles 0 (face) and 1 (head and neck) side by side,
`SKIN_TEXTURE_SIZE` texels each (~0.4 mm per texel on the face). Its albedo is the person's skin
colour with multi-octave 3D value noise (mottling), ~3 cm redness blotches, freckles, cheek
redness, brows, a lash line on the lids and lip tint, all evaluated at the neutral head's surface
point under each texel, so the detail is continuous across UV seams. The iris texture is one
tile of the iris layer: pupil, radial fibres, a darker limbal ring and a lighter collarette.

`textures` returns both for an appearance, cached per head (`TEXTURE_CACHE_SIZE`); a new
appearance's skin texture takes ~0.5 s. The head is `mofl.data.ict_head`, the appearance
`mofl.data.head_appearance`; `mofl.data.mitsuba_faces` puts the textures into its BSDFs.
"""
import collections

import numpy as np

from mofl.data import head_appearance
from mofl.data import ict_head
from mofl.facemodel import geometry

SKIN_TEXTURE_SIZE = 512
IRIS_TEXTURE_SIZE = 256
TEXTURE_CACHE_SIZE = 8           # textures kept per head (one per appearance)
# Each eye's iris layer is UV-mapped to [0, 1]² with the eye's axis at (0.5, 0.5); the sclera
# starts to cover it at this UV radius, where the iris texture puts the limbus (the sclera's
# cornea is not rendered: `mitsuba_faces.CORNEA_UV_RADIUS`).
IRIS_VISIBLE_UV_RADIUS = 0.4


def _smoothstep(edge0, edge1, x):
    t = np.clip((x - edge0) / (edge1 - edge0), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _skin_position_map(head):
    """The neutral head's surface point under every skin-atlas texel (cached on the head).

    Returns:
        (positions [S, 2S, 3] float64 mm, tile [S, 2S] int: 0 face, 1 head and neck).
        Texels outside the UV islands take the nearest island texel's point.
    """
    if 'position_map' in head._cache:
        return head._cache['position_map']
    from scipy import interpolate  # pylint: disable=import-outside-toplevel
    size = SKIN_TEXTURE_SIZE
    skin = np.isin(head.material, [ict_head.MATERIAL_NAMES.index('M_Face'),
                                   ict_head.MATERIAL_NAMES.index('M_BackHead')])
    tri_v = head.triangles[skin].reshape(-1)
    tri_t = head.uv_triangles[skin].reshape(-1)
    pairs = np.unique(np.stack([tri_t, tri_v], 1), axis=0)
    uv_index, first = np.unique(pairs[:, 0], return_index=True)
    uv = head.uvs[uv_index].astype(np.float64)
    points = head.vertices[pairs[first, 1]].astype(np.float64)
    rows, cols = np.mgrid[:size, :2 * size]
    u_atlas = 2.0 * (cols + 0.5) / (2 * size)        # ICT u in [0, 2)
    v_ict = 1.0 - (rows + 0.5) / size
    tile = (u_atlas >= 1.0).astype(np.int64)
    positions = np.zeros((size, 2 * size, 3))
    for t in (0, 1):
        in_tile = np.floor(uv[:, 0]) == t
        query = np.stack([u_atlas[tile == t], v_ict[tile == t]], 1)
        linear = interpolate.LinearNDInterpolator(uv[in_tile], points[in_tile])(query)
        missing = np.isnan(linear[:, 0])
        if np.any(missing):
            linear[missing] = interpolate.NearestNDInterpolator(
                uv[in_tile], points[in_tile])(query[missing])
        positions[tile == t] = linear
    head._cache['position_map'] = (positions, tile)
    return positions, tile


def _value_noise(points, cell, seed):
    """Smooth 3D value noise in [−1, 1] (random values on a lattice of spacing `cell`, trilinear
    interpolation with smoothstep weights).

    Args:
        points: [N, 3] positions (mm).
        cell: lattice spacing (mm).
        seed: int.

    Returns:
        [N] float64.
    """
    table = np.random.default_rng(seed).uniform(-1.0, 1.0, 1 << 16)
    scaled = np.asarray(points, np.float64) / cell
    base = np.floor(scaled)
    frac = scaled - base
    weight = frac * frac * (3.0 - 2.0 * frac)
    base = base.astype(np.int64)
    # Per-axis hash terms of the two lattice planes around each point, XOR-combined below.
    terms = [(base[:, k] * prime, (base[:, k] + 1) * prime)
             for k, prime in enumerate((73856093, 19349663, 83492791))]
    weights = [(1.0 - weight[:, k], weight[:, k]) for k in range(3)]
    out = np.zeros(len(scaled))
    for i in (0, 1):
        for j in (0, 1):
            xy_key = terms[0][i] ^ terms[1][j]
            xy_weight = weights[0][i] * weights[1][j]
            for k in (0, 1):
                out += xy_weight * weights[2][k] * table[(xy_key ^ terms[2][k]) & 0xFFFF]
    return out


def _near(points, anchors, margin):
    """[N] bool: points inside the anchors' bounding box grown by `margin` (mm)."""
    low, high = anchors.min(0) - margin, anchors.max(0) + margin
    return np.all((points >= low) & (points <= high), axis=1)


def _fbm(points, cells, amplitudes, seed):
    """Sum of value-noise octaves, normalised to unit peak amplitude: [N] in about [−1, 1]."""
    total = sum(a * _value_noise(points, c, seed + 1000 * k)
                for k, (c, a) in enumerate(zip(cells, amplitudes)))
    return total / float(sum(amplitudes))


def _signed_distance_xy(points, polygon):
    """[N] signed distance (mm, > 0 inside) of points to a closed polygon, in the x-y plane."""
    from matplotlib import path as mpl_path  # pylint: disable=import-outside-toplevel
    flat = np.concatenate([points[:, :2], np.zeros((len(points), 1))], 1)
    ring = np.concatenate([polygon[:, :2], np.zeros((len(polygon), 1))], 1)
    distance = geometry.distance_to_polyline(flat, ring, closed=True)
    inside = mpl_path.Path(polygon[:, :2]).contains_points(points[:, :2])
    return np.where(inside, distance, -distance)


def _skin_texture(head, appearance):
    """Linear skin albedo in the skin atlas (module docstring), [S, 2S, 3] float32 in [0, 1]."""
    positions, tile = _skin_position_map(head)
    shape = positions.shape[:2]
    p = positions.reshape(-1, 3)
    face = tile.reshape(-1) == 0
    lm = head.vertices[head.landmark_indices].astype(np.float64)
    seed = appearance.texture_seed
    albedo = np.tile(head_appearance.srgb_to_linear(appearance.skin_color), (len(p), 1))

    # Mottling (multiplicative luminance) and redness blotches.
    detail = _fbm(p, (8.0, 4.0, 2.0, 1.0), (0.45, 0.3, 0.2, 0.15), seed)
    albedo *= (1.0 + 2.0 * appearance.detail_strength * detail)[:, None]
    blotch = _fbm(p, (30.0, 14.0), (0.7, 0.3), seed + 1)
    albedo *= 1.0 + 2.0 * appearance.blotch_strength * blotch[:, None] * \
        np.array([0.6, -0.4, -0.4])

    # Cheeks: redder around a point between the lower eyelid, the nose wing and the jaw.
    for eyelid, nose, jaw in ((41, 31, 2), (46, 35, 14)):
        centre = 0.4 * lm[eyelid] + 0.3 * lm[nose] + 0.3 * lm[jaw]
        weight = np.exp(-np.sum((p - centre) ** 2, axis=1) / (2.0 * 18.0 ** 2)) * face
        albedo *= 1.0 + appearance.cheek_tint * weight[:, None] * np.array([0.5, -0.35, -0.3])

    # Freckles: sparse spots of fine noise, densest on the nose and the cheeks.
    if appearance.freckle_density > 0.0:
        nose_bridge = lm[29]
        region = np.exp(-np.sum((p - nose_bridge) ** 2, axis=1) / (2.0 * 40.0 ** 2)) * face
        region *= 0.5 + 0.5 * _value_noise(p, 25.0, seed + 2)
        spots = _value_noise(p, 1.4, seed + 3)
        threshold = 0.8 - appearance.freckle_density
        weight = _smoothstep(threshold, threshold + 0.15, spots) * np.clip(2.0 * region, 0, 1)
        albedo *= 1.0 - weight[:, None] * np.array([0.3, 0.42, 0.48])

    hair = np.minimum(head_appearance.srgb_to_linear(appearance.hair_color),
                      albedo.mean(0))  # brows ≤ skin

    def paint(where, weight, color):
        albedo[where] = albedo[where] * (1.0 - weight[:, None]) + color * weight[:, None]

    # Brows: a band below the iBUG brow points (they trace its upper edge), hair-like streaks.
    for brow in (lm[17:22], lm[22:27]):
        line = brow - np.array([0.0, 4.0, 0.0])
        near = face & _near(p, line, 8.0)
        q = p[near]
        along = np.clip((q[:, 0] - line[:, 0].min()) / (np.ptp(line[:, 0]) + 1e-9), 0.0, 1.0)
        width = 4.0 + 2.0 * np.sin(np.pi * along)          # thinner at the ends
        weight = 1.0 - _smoothstep(0.5 * width, width, geometry.distance_to_polyline(q, line))
        streaks = 0.5 + 0.5 * _value_noise(q * np.array([3.0, 1.0, 3.0]), 1.5, seed + 4)
        paint(near, appearance.brow_density * weight * (0.6 + 0.4 * streaks), hair)

    # Lash lines: darker lid margins along the eye contours.
    for eye in (lm[36:42], lm[42:48]):
        near = face & _near(p, eye, 3.0)
        weight = 1.0 - _smoothstep(0.6, 1.8, geometry.distance_to_polyline(p[near], eye, closed=True))
        paint(near, 0.55 * weight, hair)

    # Lips: inside the outer-lip polygon seen from the front, soft-edged, redder and darker.
    lips = lm[48:60]
    near = face & (p[:, 2] > lips[:, 2].min() - 25.0) & \
        (np.abs(p[:, 1] - lips[:, 1].mean()) < 25.0) & (np.abs(p[:, 0]) < 40.0)
    weight = np.zeros(len(p))
    weight[near] = _smoothstep(-1.2, 1.2, _signed_distance_xy(p[near], lips))
    lip_factor = 1.0 + appearance.lip_tint * np.array([-0.1, -0.5, -0.45])
    albedo *= 1.0 + weight[:, None] * (lip_factor - 1.0)
    return np.clip(albedo, 0.0, 1.0).reshape(shape + (3,)).astype(np.float32)


def _iris_texture(appearance):
    """Linear albedo of the iris layer in its UV tile, [S, S, 3] float32: pupil, radial fibres,
    a darker limbal ring where the sclera starts to cover the iris, a lighter collarette."""
    size = IRIS_TEXTURE_SIZE
    rows, cols = np.mgrid[:size, :size]
    u = (cols + 0.5) / size - 0.5
    v = 0.5 - (rows + 0.5) / size
    r = np.hypot(u, v) / IRIS_VISIBLE_UV_RADIUS     # 1 at the limbus
    theta = np.arctan2(v, u)
    fibres = _value_noise(np.stack([40.0 * np.cos(theta), 40.0 * np.sin(theta), 3.0 * r],
                                   -1).reshape(-1, 3), 1.0, appearance.texture_seed + 5)
    fibres = fibres.reshape(r.shape)
    iris = head_appearance.srgb_to_linear(appearance.iris_color)
    pupil = appearance.pupil_ratio
    shade = (1.0 + 0.35 * fibres) * (1.0 - 0.65 * _smoothstep(0.75, 1.0, r))
    shade *= 1.0 + 0.35 * (1.0 - _smoothstep(pupil, pupil + 0.2, r))
    color = iris * shade[..., None]
    pupil_weight = 1.0 - _smoothstep(pupil - 0.03, pupil + 0.03, r)
    color = color * (1.0 - pupil_weight[..., None]) + 0.004 * pupil_weight[..., None]
    return np.clip(color, 0.0, 1.0).astype(np.float32)


def textures(head, appearance):
    """(skin atlas, iris texture) of an appearance, cached per head (`TEXTURE_CACHE_SIZE`).

    Args:
        head: `ict_head.IctHead`.
        appearance: `head_appearance.HeadAppearance`.

    Returns:
        (skin [S, 2S, 3] float32, iris [S', S', 3] float32): linear albedo in [0, 1], S =
        `SKIN_TEXTURE_SIZE`, S' = `IRIS_TEXTURE_SIZE` (shared: do not modify).
    """
    cache = head._cache.setdefault('textures', collections.OrderedDict())
    if appearance in cache:
        cache.move_to_end(appearance)
        return cache[appearance]
    pair = (_skin_texture(head, appearance), _iris_texture(appearance))
    cache[appearance] = pair
    while len(cache) > TEXTURE_CACHE_SIZE:
        cache.popitem(last=False)
    return pair
