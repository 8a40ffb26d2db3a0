"""Triangle rasterization for image formation (paper §3.3): the custom op and its gradient path.

`rasterize_triangles` runs the C++/CUDA op `MoflRasterizeTriangles` (mofl/render/ops/) and returns,
per pixel, the visible triangle, its depth and its perspective-correct barycentrics. The op is
forward-only (registered with `tf.no_gradient`). Gradients reach vertex positions through
`differentiable_barycentrics`, which recomputes the barycentrics in TF from the triangle ids with
visibility held fixed.

What this means at occlusion boundaries: the triangle id of every pixel is a constant of the
backward pass, so the gradient describes how the visible surface point of each pixel moves *within
its triangle* as vertices move (shading, texture and depth vary smoothly), but never the change of
*which* triangle (or background) a pixel shows. Silhouettes and self-occlusion edges therefore get
no gradient from pixels that would flip sides; a loss that needs the outline to move (e.g. the
photometric term where the face meets the background) only receives the interior signal, and the
landmark term must carry the boundary. The barycentric formula is smooth across a triangle's edges
(it extrapolates linearly), so gradients stay finite at pixels on edges.

Conventions: BUILD_NOTES.md "Rasterizer op"; semantics and gradients: docs/renderer.md.
"""
import os

import tensorflow as tf

_LIBRARY_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'ops',
                             'rasterize_triangles.so')
_BUILD_HINT = ('build it with `pip install --no-build-isolation --no-deps -e .` in the repository '
               'root, or `python -m mofl.render.ops.build_ops`')
_op_library = None


class RasterizerNotBuiltError(ImportError):
    """Raised when the compiled rasterizer op library is missing or fails to load."""


def load_op_library(path=_LIBRARY_PATH):
    """Loads the op library once per process; raises RasterizerNotBuiltError with a build hint."""
    global _op_library  # pylint: disable=global-statement
    if _op_library is not None and path == _LIBRARY_PATH:
        return _op_library
    if not os.path.exists(path):
        raise RasterizerNotBuiltError(
            f'rasterizer op library {path} does not exist; {_BUILD_HINT}.')
    try:
        library = tf.load_op_library(path)
    except tf.errors.NotFoundError as error:
        raise RasterizerNotBuiltError(
            f'rasterizer op library {path} does not load ({error}); it was probably built against '
            f'another TensorFlow. Rebuild it: {_BUILD_HINT}.') from error
    if path == _LIBRARY_PATH:
        _op_library = library
    return library


tf.no_gradient('MoflRasterizeTriangles')


def _check_image_size(image_size):
    try:
        height, width = (int(s) for s in image_size)
    except (TypeError, ValueError) as error:
        raise ValueError(f'image_size must be (height, width) integers, got {image_size!r}') \
            from error
    if height < 1 or width < 1:
        raise ValueError(f'image_size must be positive, got {image_size!r}')
    return height, width


def clip_to_screen(clip_vertices, image_size):
    """OpenGL-style clip-space vertices (x, y, z, w) to the op's screen space (u, v, d).

    x/w and y/w are normalised device coordinates in [−1, 1] (y up); u = (x/w + 1)·W/2,
    v = (1 − y/w)·H/2 and d = w, which for a perspective projection matrix is the camera depth −z.
    z (the NDC depth) is not needed: the op compares perspective-correct d.

    Args:
        clip_vertices: [B, V, 4].
        image_size: (H, W).

    Returns:
        [B, V, 3] (u, v, d).
    """
    height, width = _check_image_size(image_size)
    clip_vertices = tf.convert_to_tensor(clip_vertices)
    x, y, _, w = tf.unstack(clip_vertices, axis=-1)
    return tf.stack([(x / w + 1.0) * (0.5 * width), (1.0 - y / w) * (0.5 * height), w], axis=-1)


def _as_screen_space(vertices, image_size):
    """Accepts [B, V, 3] screen-space or [B, V, 4] clip-space vertices; returns screen space."""
    if vertices.shape.rank == 3 and vertices.shape[-1] == 4:
        return clip_to_screen(vertices, image_size)
    return vertices


def _check_mesh(vertices, triangles):
    if vertices.shape.rank is not None and (vertices.shape.rank != 3 or
                                            vertices.shape[-1] not in (None, 3)):
        raise ValueError(f'vertices must be [B, V, 3] (screen) or [B, V, 4] (clip space), got '
                         f'shape {vertices.shape}')
    if triangles.shape.rank is not None and (triangles.shape.rank != 2 or
                                             triangles.shape[-1] not in (None, 3)):
        raise ValueError(f'triangles must be [T, 3], got shape {triangles.shape}')


def rasterize_triangles(vertices, triangles, image_size, cull_backfaces=False, name=None):
    """Rasterizes a batch of screen-space meshes with a z-buffer (forward only).

    A pixel is covered by a triangle when its centre (c + 0.5, r + 0.5) lies inside or on the
    triangle's projection; the nearest depth wins, equal depths go to the lower triangle id.
    Triangles with a vertex at d <= 0 are dropped whole (no near-plane clipping).

    Args:
        vertices: [B, V, 3] float32 screen-space vertices (u, v, d): u right and v down in pixels,
            d > 0 the depth (d = −z in camera space); or [B, V, 4] OpenGL clip-space vertices
            (converted by `clip_to_screen`).
        triangles: [T, 3] int32 vertex indices, counter-clockwise seen from outside.
        image_size: (H, W) Python integers.
        cull_backfaces: drop triangles facing away from the camera (those counter-clockwise on
            screen, since v points down).
        name: optional name scope.

    Returns:
        triangle_ids: [B, H, W] int32, −1 on background.
        depth: [B, H, W] float32 perspective-correct depth, 0 on background.
        barycentrics: [B, H, W, 3] float32 perspective-correct barycentrics (no gradient; use
            `differentiable_barycentrics` for that), 0 on background.

    Raises:
        ValueError: on wrong shapes or image size.
        RasterizerNotBuiltError: when the op library is not built.
    """
    height, width = _check_image_size(image_size)
    with tf.name_scope(name or 'rasterize_triangles'):
        vertices = _as_screen_space(tf.convert_to_tensor(vertices, dtype=tf.float32), image_size)
        triangles = tf.convert_to_tensor(triangles, dtype=tf.int32)
        _check_mesh(vertices, triangles)
        library = load_op_library()
        return library.mofl_rasterize_triangles(
            vertices=vertices, triangles=triangles, image_height=height, image_width=width,
            cull_backfaces=bool(cull_backfaces))


def differentiable_barycentrics(vertices, triangles, triangle_ids, name=None):
    """Perspective-correct barycentrics recomputed in TF, differentiable w.r.t. `vertices`.

    Evaluates the op's formula (rasterize_triangles_math.h) for the triangle that `triangle_ids`
    names at each pixel: screen barycentrics l_k from edge functions at the pixel centre, then
    b_k = (l_k / d_k) / Σ_j (l_j / d_j). The ids are constants here (visibility held fixed; see the
    module docstring for what that means at occlusion boundaries). Values match the op's
    barycentrics up to float rounding.

    Args:
        vertices: [B, V, 3] float screen-space vertices (u, v, d), any float dtype, or [B, V, 4]
            clip space as in `rasterize_triangles`.
        triangles: [T, 3] int32.
        triangle_ids: [B, H, W] int32 from `rasterize_triangles`, −1 on background.
        name: optional name scope.

    Returns:
        [B, H, W, 3] barycentrics in the dtype of `vertices`, 0 on background.
    """
    with tf.name_scope(name or 'differentiable_barycentrics'):
        vertices = tf.convert_to_tensor(vertices)
        if not vertices.dtype.is_floating:
            vertices = tf.cast(vertices, tf.float32)
        triangles = tf.convert_to_tensor(triangles, dtype=tf.int32)
        triangle_ids = tf.convert_to_tensor(triangle_ids, dtype=tf.int32)
        if triangle_ids.shape.rank == 3 and None not in triangle_ids.shape[1:]:
            vertices = _as_screen_space(vertices, triangle_ids.shape[1:])
        _check_mesh(vertices, triangles)
        dtype = vertices.dtype
        shape = tf.shape(triangle_ids)
        height, width = shape[1], shape[2]

        covered = triangle_ids >= 0
        vertex_ids = tf.gather(triangles, tf.maximum(triangle_ids, 0))  # [B, H, W, 3]
        corners = tf.gather(vertices, vertex_ids, batch_dims=1)  # [B, H, W, 3 corners, 3]
        u, v, d = tf.unstack(corners, axis=-1)  # each [B, H, W, 3]
        u0, u1, u2 = tf.unstack(u, axis=-1)
        v0, v1, v2 = tf.unstack(v, axis=-1)

        px = tf.cast(tf.range(width), dtype) + 0.5
        py = tf.cast(tf.range(height), dtype) + 0.5
        px = px[tf.newaxis, tf.newaxis, :]
        py = py[tf.newaxis, :, tf.newaxis]

        edge0 = (u2 - u1) * (py - v1) - (v2 - v1) * (px - u1)
        edge1 = (u0 - u2) * (py - v2) - (v0 - v2) * (px - u2)
        edge2 = (u1 - u0) * (py - v0) - (v1 - v0) * (px - u0)
        area = (u1 - u0) * (v2 - v0) - (v1 - v0) * (u2 - u0)
        # Background pixels gather triangle 0, which says nothing about them; give them unit
        # edges, area and depth so no inf or NaN leaks into gradients through the final mask.
        covered3 = tf.broadcast_to(covered[..., tf.newaxis], tf.shape(d))
        edges = tf.stack([edge0, edge1, edge2], axis=-1)
        edges = tf.where(covered3, edges, tf.ones_like(edges))
        safe_area = tf.where(covered, area, tf.ones_like(area))
        safe_d = tf.where(covered3, d, tf.ones_like(d))
        s = (edges * (1.0 / safe_area)[..., tf.newaxis]) * (1.0 / safe_d)
        depth = 1.0 / ((s[..., 0] + s[..., 1]) + s[..., 2])
        barycentrics = s * depth[..., tf.newaxis]
        return tf.where(covered3, barycentrics, tf.zeros_like(barycentrics))
