"""Physically based renders of ICT-FaceKit heads with Mitsuba 3, for synthetic training videos.

mofl's own synthetic frames are drawn with the model's own image formation (Lambertian SH shading
of `mofl.render`), so a network trained on them never meets anything its renderer cannot
explain. This module draws frames with an established path tracer instead (Mitsuba 3, variant
`scalar_rgb`, CPU) and with image formation the model does NOT have:

- Specular reflection (Mitsuba's `principled` BSDF, roughness 0.3–0.7) on per-person skin albedo
  with procedural texture detail (multi-octave 3D noise, redness blotches, freckles, lip, cheek,
  brow and lash-line tint), painted in the ICT UV atlas.
- An environment map (sky or room gradient with a brighter window region) plus one key light (a
  sun with hard shadows or a spherical lamp with soft ones), with cast shadows and
  interreflections (path tracing, `MAX_PATH_DEPTH`).
- The full ICT head: head and neck, eyeballs (sclera with a wet specular, textured iris and
  pupil), teeth, gums, tongue and mouth socket. ICT's eyelash cards need an alpha texture we do
  not have, so they are left out and the lash line is painted on the lids instead.

This module holds the rendering only: the camera (`mitsuba_sensor`), the Mitsuba scene (one mesh
and BSDF per render group, the emitters) and `render`. Its inputs live in sibling modules: the
head (`IctHead`, `load_ict_head`) in `mofl.data.ict_head`; a person's materials and the lighting
(`HeadAppearance`, `sample_appearance`, `Lighting`, `sample_lighting`) in
`mofl.data.head_appearance`; the skin and iris textures in `mofl.data.head_textures`.

Camera (`mitsuba_sensor`): mofl's convention (`mofl.render.camera`): camera at the origin looking
down −z, y up, u = c_x + f_x·x/d, v = c_y − f_y·y/d with d = −z, pixel (row r, column c)
centred at (c + 0.5, r + 0.5). Mitsuba's perspective sensor is set up so that every point
projects to the same pixel: horizontal field of view 2·atan(W / 2f_x), principal point shifted
by `principal_point_offset_x = (W/2 − c_x)/W`, `principal_point_offset_y = (H/2 − c_y)/H`
(fractions of the image; both signs measured, see tests/test_mitsuba_faces.py). Mitsuba has
square pixels only, so f_x must equal f_y. The head is posed in NumPy (camera space =
R·v + t) and the lights live in camera space.

Output (`render`): sRGB-encoded uint8 RGB (the linear radiance clipped to [0, 1], no tone curve),
composited over the given background with the render's coverage (alpha); optionally the
coverage mask itself. The pixel filter is a box, so the mask is the pixel's covered fraction.

Mitsuba is imported lazily (first render), so importing this module stays cheap. It renders on
all cores by default (`drjit.set_thread_count(n)` limits that); images do not depend on the
thread count, only on the inputs and `seed`. Costs (docs/realistic_benchmark.md "The renderer:
Mitsuba 3"): the skin texture of a new appearance ~0.5 s (cached per head,
`head_textures.TEXTURE_CACHE_SIZE`), a 256² frame at 16 spp ~1.3 s on one core.
"""
import collections
import dataclasses
import math

import numpy as np

from mofl.data import head_appearance
from mofl.data import head_textures
from mofl.data import ict_head
from mofl.facemodel import geometry

MITSUBA_VARIANT = 'scalar_rgb'   # CPU; the llvm_ad_rgb JIT variant failed on our machines

# Rendered meshes, each with one BSDF, and the ICT materials they are made of.
RENDER_GROUPS = collections.OrderedDict([
    ('skin', ('M_Face', 'M_BackHead')),
    ('mouth_interior', ('M_GumsTongue',)),
    ('teeth', ('M_Teeth',)),
    ('sclera', ('M_ScleraLeft', 'M_ScleraRight')),
    ('iris', ('M_IrisLeft', 'M_IrisRight')),
])
# Eyes. Each eye has a sclera layer and, inside it, an iris layer, both UV-mapped to [0, 1]²
# with the eye's axis at (0.5, 0.5). The iris layer's front is a disc (UV radius 0.09 — the pupil
# hole — to 0.45, 5° to 28° from the axis); the sclera layer bulges over it as a cornea. Without
# refraction that cornea would hide the iris, so its triangles (sclera UV radius < 0.15, up to
# 24° from the axis; the next ring of vertices lies at 0.17, 30°) are not rendered, and the
# iris texture puts the limbus at `head_textures.IRIS_VISIBLE_UV_RADIUS`, where the sclera
# starts to cover it.
CORNEA_UV_RADIUS = 0.15

DEFAULT_SPP = 16
MAX_PATH_DEPTH = 4               # camera ray + up to three bounces (mouth, eye sockets)
NEAR_CLIP_MM = 10.0
WINDOW_MARGIN_PX = 2             # only the head's projected box plus this is path-traced
FAR_CLIP_MM = 1.0e5
KEY_LIGHT_DISTANCE_MM = 2000.0   # a lamp's centre, from the head's translation

_MITSUBA = None   # the mitsuba module once imported and set to MITSUBA_VARIANT


# ---------------------------------------------------------------------------------------------
# Render geometry (per head, cached): vertices split at UV seams, one mesh per render group.
# ---------------------------------------------------------------------------------------------

@dataclasses.dataclass
class _MeshGroup:
    """One rendered mesh: `source` [N] head vertex of each render vertex, `texcoords` [N, 2]
    Mitsuba texture coordinates (row = v · height of the group's texture), `faces` [F, 3]."""
    source: np.ndarray
    texcoords: np.ndarray
    faces: np.ndarray


def _cornea_triangles(head):
    """[T] bool: the sclera layer's cornea triangles, left out so that the iris shows.

    The sclera layer's front (UV radius < `CORNEA_UV_RADIUS` around (0.5, 0.5) in both eyes)
    bulges over the iris disc; without a refracting cornea it would hide the iris.
    """
    sclera = np.isin(head.material, [ict_head.MATERIAL_NAMES.index('M_ScleraLeft'),
                                     ict_head.MATERIAL_NAMES.index('M_ScleraRight')])
    radius = np.linalg.norm(head.uvs[head.uv_triangles] - 0.5, axis=2)     # [T, 3]
    return sclera & (radius < CORNEA_UV_RADIUS).all(axis=1)


def _render_groups(head):
    """Dict name → _MeshGroup for `RENDER_GROUPS` (cached on the head)."""
    if 'render_groups' in head._cache:
        return head._cache['render_groups']
    cornea = _cornea_triangles(head)
    groups = collections.OrderedDict()
    for name, materials in RENDER_GROUPS.items():
        ids = [ict_head.MATERIAL_NAMES.index(m) for m in materials]
        keep = np.isin(head.material, ids) & ~cornea
        tri_v = head.triangles[keep].reshape(-1)
        tri_t = head.uv_triangles[keep].reshape(-1)
        pairs, corner_index = np.unique(np.stack([tri_v, tri_t], 1), axis=0, return_inverse=True)
        uv = head.uvs[pairs[:, 1]].astype(np.float64)
        if name == 'skin':      # tiles 0 (face) and 1 (head) side by side in one atlas
            u = uv[:, 0] / 2.0
        else:
            u = uv[:, 0] - np.floor(uv[:, 0])
        groups[name] = _MeshGroup(
            source=pairs[:, 0].astype(np.int64),
            texcoords=np.stack([u, 1.0 - uv[:, 1]], 1).astype(np.float32),
            faces=corner_index.reshape(-1, 3).astype(np.uint32))
    head._cache['render_groups'] = groups
    return groups


# ---------------------------------------------------------------------------------------------
# Mitsuba scene and rendering.
# ---------------------------------------------------------------------------------------------

def mitsuba_available():
    """True when the `mitsuba` package can be imported (checked without importing it)."""
    import importlib.util  # pylint: disable=import-outside-toplevel
    return importlib.util.find_spec('mitsuba') is not None


def _mitsuba():
    """The mitsuba module with `MITSUBA_VARIANT` set (imported on first use)."""
    global _MITSUBA  # pylint: disable=global-statement
    if _MITSUBA is None:
        try:
            import mitsuba as mi  # pylint: disable=import-outside-toplevel
        except ImportError as e:
            raise ImportError('mofl.data.mitsuba_faces needs Mitsuba 3: pip install '
                              'mitsuba==3.9.1 (pinned in requirements.txt)') from e
        mi.set_variant(MITSUBA_VARIANT)
        _MITSUBA = mi
    elif _MITSUBA.variant() != MITSUBA_VARIANT:
        _MITSUBA.set_variant(MITSUBA_VARIANT)
    return _MITSUBA


def _camera_values(camera):
    """(H, W, f, c_x, c_y) from a mofl Camera with Python-float intrinsics; ValueError else."""
    try:
        height, width = (int(s) for s in camera.image_size)
        fx, fy = float(camera.focal_x), float(camera.focal_y)
        cx, cy = float(camera.principal_x), float(camera.principal_y)
    except (AttributeError, TypeError, ValueError) as e:
        raise ValueError(f'camera must be a mofl.render.camera.Camera with scalar intrinsics and '
                         f'image_size (H, W), got {camera!r}') from e
    if height <= 0 or width <= 0:
        raise ValueError(f'camera.image_size must be positive, got {camera.image_size}')
    if not (fx > 0 and fy > 0 and math.isfinite(fx) and math.isfinite(fy)):
        raise ValueError(f'camera focal lengths must be finite and > 0, got {fx}, {fy}')
    if abs(fx - fy) > 1e-6 * max(fx, fy):
        raise ValueError(f'camera: Mitsuba renders square pixels only (focal_x == focal_y), '
                         f'got focal_x={fx}, focal_y={fy}')
    if not (math.isfinite(cx) and math.isfinite(cy)):
        raise ValueError(f'camera principal point must be finite, got ({cx}, {cy})')
    return height, width, fx, cx, cy


def mitsuba_sensor(camera, spp=DEFAULT_SPP, window=None):
    """Mitsuba perspective-sensor dict that reproduces a mofl Camera (module docstring).

    Args:
        camera: mofl.render.camera.Camera with Python-float intrinsics, f_x = f_y.
        spp: samples per pixel.
        window: optional (x0, y0, width, height) integer pixel window of the image: only it is
            rendered (Mitsuba's film crop; the camera stays that of the whole image).

    Returns:
        dict for `mitsuba.load_dict` (key 'sensor' of a scene): an hdrfilm of (H, W) with RGBA
        output and a box pixel filter, an independent sampler.
    """
    mi = _mitsuba()
    height, width, focal, cx, cy = _camera_values(camera)
    film = {'type': 'hdrfilm', 'width': width, 'height': height, 'pixel_format': 'rgba',
            'component_format': 'float32', 'rfilter': {'type': 'box'}}
    if window is not None:
        film.update(crop_offset_x=int(window[0]), crop_offset_y=int(window[1]),
                    crop_width=int(window[2]), crop_height=int(window[3]))
    return {
        'type': 'perspective',
        'fov_axis': 'x',
        'fov': math.degrees(2.0 * math.atan(width / (2.0 * focal))),
        'principal_point_offset_x': (width / 2.0 - cx) / width,
        'principal_point_offset_y': (height / 2.0 - cy) / height,
        'near_clip': NEAR_CLIP_MM,
        'far_clip': FAR_CLIP_MM,
        'to_world': mi.ScalarTransform4f.look_at(origin=[0.0, 0.0, 0.0], target=[0.0, 0.0, -1.0],
                                                 up=[0.0, 1.0, 0.0]),
        'sampler': {'type': 'independent', 'sample_count': int(spp)},
        'film': film,
    }


def _head_window(posed, camera, margin=WINDOW_MARGIN_PX):
    """The pixel window (x0, y0, width, height) that holds the head's projection (plus `margin`),
    clipped to the image; None when the head is not in the image. Only it is path-traced: the
    rest of the frame shows the background alone (the head casts no shadow onto it)."""
    height, width, focal, cx, cy = _camera_values(camera)
    depth = -posed[:, 2]
    front = depth > NEAR_CLIP_MM
    if not front.any():
        return None
    u = cx + focal * posed[front, 0] / depth[front]
    v = cy - focal * posed[front, 1] / depth[front]
    x0 = int(max(math.floor(u.min()) - margin, 0))
    y0 = int(max(math.floor(v.min()) - margin, 0))
    x1 = int(min(math.ceil(u.max()) + margin, width))
    y1 = int(min(math.ceil(v.max()) + margin, height))
    if x1 <= x0 or y1 <= y0:
        return None
    return x0, y0, x1 - x0, y1 - y0


def _principled(mi, base_color, roughness, specular):
    """A two-sided principled BSDF; base_color is an RGB triple (linear) or a texture dict."""
    if not isinstance(base_color, dict):
        base_color = {'type': 'rgb', 'value': [float(c) for c in base_color]}
    return mi.load_dict({'type': 'twosided', 'bsdf': {
        'type': 'principled', 'base_color': base_color, 'roughness': float(roughness),
        'specular': float(specular), 'metallic': 0.0}})


def _bitmap_texture(mi, image):
    return {'type': 'bitmap', 'bitmap': mi.Bitmap(np.ascontiguousarray(image, np.float32)),
            'raw': True, 'filter_type': 'bilinear', 'wrap_mode': 'clamp'}


def _mesh(mi, name, positions, normals, group, bsdf):
    """A Mitsuba mesh of one render group in camera space."""
    props = mi.Properties()
    props['bsdf'] = bsdf
    mesh = mi.Mesh(name, vertex_count=len(group.source), face_count=len(group.faces),
                   has_vertex_normals=True, has_vertex_texcoords=True, props=props)
    params = mi.traverse(mesh)
    for key, values in (('vertex_positions', positions[group.source]),
                        ('vertex_normals', normals[group.source]),
                        ('vertex_texcoords', group.texcoords)):
        params[key] = type(params[key])(np.ascontiguousarray(values, np.float32).reshape(-1))
    params['faces'] = type(params['faces'])(np.ascontiguousarray(group.faces).reshape(-1))
    params.update()
    return mesh


def _materials(mi, head, appearance):
    """Dict render-group name → BSDF."""
    skin_texture, iris_texture = head_textures.textures(head, appearance)
    lin = head_appearance.srgb_to_linear
    return {
        'skin': _principled(mi, _bitmap_texture(mi, skin_texture), appearance.roughness,
                            appearance.specular),
        'mouth_interior': _principled(mi, lin(appearance.mouth_color),
                                      head_appearance.MOUTH_ROUGHNESS, 0.5),
        'teeth': _principled(mi, lin(appearance.teeth_color), head_appearance.TEETH_ROUGHNESS,
                             0.5),
        'sclera': _principled(mi, lin(appearance.sclera_color),
                              head_appearance.SCLERA_ROUGHNESS, 0.5),
        'iris': _principled(mi, _bitmap_texture(mi, iris_texture),
                            head_appearance.IRIS_ROUGHNESS, 0.5),
    }


def _unit(v):
    v = np.asarray(v, np.float64)
    return v / np.linalg.norm(v)


def _tuple(v):
    return tuple(float(x) for x in np.asarray(v).reshape(-1))


def _emitters(mi, lighting, head_centre):
    """Dict of the environment and key-light emitters (camera space)."""
    emitters = {'environment': {'type': 'envmap',
                                'bitmap': mi.Bitmap(lighting.environment_map())}}
    direction = _unit(lighting.key_direction)
    irradiance = np.asarray(lighting.key_irradiance, np.float64)
    if lighting.key_radius_deg <= 0.0:
        emitters['key'] = {'type': 'directional', 'direction': _tuple(-direction),
                           'irradiance': {'type': 'rgb', 'value': _tuple(irradiance)}}
    else:
        # A sphere of angular radius α seen head-on gives irradiance L·π·sin²α.
        alpha = math.radians(lighting.key_radius_deg)
        radius = KEY_LIGHT_DISTANCE_MM * math.sin(alpha)
        radiance = irradiance / (math.pi * math.sin(alpha) ** 2)
        emitters['key'] = {
            'type': 'sphere', 'radius': radius,
            'center': _tuple(head_centre + KEY_LIGHT_DISTANCE_MM * direction),
            'emitter': {'type': 'area', 'radiance': {'type': 'rgb', 'value': _tuple(radiance)}}}
    return emitters


def _check_inputs(head, head_vertices, rotation, translation, appearance, lighting, background,
                  spp, image_size):
    vertices = np.asarray(head_vertices, np.float64)
    if vertices.shape != (head.num_vertices, 3):
        raise ValueError(f'head_vertices must have shape [{head.num_vertices}, 3], got '
                         f'{vertices.shape}')
    if not np.all(np.isfinite(vertices)):
        raise ValueError('head_vertices must be finite')
    rotation = np.asarray(rotation, np.float64)
    if rotation.shape != (3, 3):
        raise ValueError(f'rotation must have shape [3, 3], got {rotation.shape}')
    if not np.allclose(rotation @ rotation.T, np.eye(3), atol=1e-3) or \
            np.linalg.det(rotation) < 0:
        raise ValueError('rotation must be a rotation matrix (orthonormal, det +1)')
    translation = np.asarray(translation, np.float64)
    if translation.shape != (3,) or not np.all(np.isfinite(translation)):
        raise ValueError(f'translation must be 3 finite numbers (mm), got shape '
                         f'{translation.shape}')
    if not isinstance(appearance, head_appearance.HeadAppearance):
        raise ValueError(f'appearance must be a HeadAppearance, got {type(appearance).__name__}')
    if not isinstance(lighting, head_appearance.Lighting):
        raise ValueError(f'lighting must be a Lighting, got {type(lighting).__name__}')
    if background is not None:
        background = np.asarray(background)
        if background.shape != tuple(image_size) + (3,) or background.dtype != np.uint8:
            raise ValueError(f'background must be uint8 [{image_size[0]}, {image_size[1]}, 3], '
                             f'got {background.dtype} {background.shape}')
    if int(spp) != spp or spp < 1:
        raise ValueError(f'spp must be a positive integer, got {spp}')
    return vertices, rotation, translation, background


def render(head_vertices, rotation, translation, camera, appearance, lighting, background=None,
           spp=DEFAULT_SPP, seed=0, return_mask=False, head=None):
    """Path-traces one frame of a posed ICT head.

    Args:
        head_vertices: [26719, 3] the head in model space (mm), e.g. `IctHead.shape(...)`.
        rotation: [3, 3] model → camera rotation R.
        translation: [3] mm; camera-space points are R·v + t (camera looks down −z).
        camera: mofl.render.camera.Camera with Python-float intrinsics, f_x = f_y.
        appearance: HeadAppearance.
        lighting: Lighting (camera space).
        background: optional [H, W, 3] uint8 sRGB image shown where the head is not; None: black.
        spp: samples per pixel.
        seed: sampler seed; the same inputs and seed give the same image.
        return_mask: also return the head's coverage.
        head: the IctHead the vertices belong to (default `load_ict_head()`).

    Returns:
        [H, W, 3] uint8 sRGB image; with return_mask, (image, mask [H, W] float32 in [0, 1]).
    """
    head = ict_head.load_ict_head() if head is None else head
    height, width, _, _, _ = _camera_values(camera)
    vertices, rotation, translation, background = _check_inputs(
        head, head_vertices, rotation, translation, appearance, lighting, background, spp,
        (height, width))
    mi = _mitsuba()
    posed = vertices @ rotation.T + translation
    normals = geometry.vertex_normals(posed, head.triangles)
    bsdfs = _materials(mi, head, appearance)
    window = _head_window(posed, camera)
    scene = {'type': 'scene',
             'integrator': {'type': 'path', 'max_depth': MAX_PATH_DEPTH, 'hide_emitters': True},
             'sensor': mitsuba_sensor(camera, spp, window)}
    scene.update(_emitters(mi, lighting, translation))
    for name, group in _render_groups(head).items():
        scene[name] = _mesh(mi, name, posed, normals, group, bsdfs[name])
    result = np.zeros((height, width, 4))
    if window is not None:
        x0, y0, w, h = window
        result[y0:y0 + h, x0:x0 + w] = np.array(
            mi.render(mi.load_dict(scene), seed=int(seed), spp=int(spp)), dtype=np.float64)
    color, alpha = result[..., :3], np.clip(result[..., 3], 0.0, 1.0)
    if background is not None:      # Mitsuba's RGB is premultiplied by coverage
        color = color + (1.0 - alpha[..., None]) * head_appearance.srgb_to_linear(
            background / 255.0)
    image = np.round(head_appearance.linear_to_srgb(color) * 255.0).astype(np.uint8)
    if return_mask:
        return image, alpha.astype(np.float32)
    return image
