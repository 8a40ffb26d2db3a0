"""Renders a face asset's template under three poses and lights into one overview PNG.

    python -m tools.render_preview --asset=out/assets/ict.npz --output=out/preview.png

Rows: frontal with a light from the upper front; yaw +35° lit from the subject's right; yaw −35°
with pitch and a warm light from the other side. Columns: the shaded render on a grey background,
its SH shading alone, and the camera-space normal map (the geometry view). Uses the default
240×240 camera of `mofl.render.camera` with the face region centred at `--depth` mm.
"""
import sys

import numpy as np
from absl import app
from absl import flags
from absl import logging

from mofl import flags_common


def define_flags(flag_values=flags.FLAGS):
    """Defines the binary's flags in `flag_values`."""
    flags_common.define_flags(
        ('output', 'image_size', 'focal_length'), flag_values, required=('output',),
        defaults={'focal_length': 1000.0}, notes={'output': 'The PNG.'})
    flags_common.define_asset_flag(required=True, flag_values=flag_values)
    flags.DEFINE_float('depth', 1000.0, 'Distance of the face-region centre from the camera (mm).',
                       flag_values=flag_values)
    flags.DEFINE_float('yaw_degrees', 35.0, 'Yaw of the two turned views.', flag_values=flag_values)
    flags.DEFINE_bool('face_only', False, 'Render only triangles inside the face mask.',
                      flag_values=flag_values)
    flags.DEFINE_enum('rasterizer', 'op', ['op', 'reference'], 'Rasterizer implementation.',
                      flag_values=flag_values)


GREY_BACKGROUND = (0.5, 0.5, 0.5)


def preview_scenes(yaw_degrees):
    """(name, [pitch, yaw, roll] radians, light direction, light colour, ambient) per row."""
    yaw = np.radians(yaw_degrees)
    return [
        ('frontal', [0.0, 0.0, 0.0], [0.2, 0.5, 1.0], [0.6, 0.6, 0.6], [0.3, 0.3, 0.3]),
        (f'yaw +{yaw_degrees:g}', [0.0, yaw, 0.0], [-0.8, 0.4, 0.6], [0.65, 0.65, 0.65],
         [0.25, 0.25, 0.25]),
        (f'yaw -{yaw_degrees:g}', [np.radians(10.0), -yaw, np.radians(5.0)], [0.9, 0.1, 0.5],
         [0.9, 0.7, 0.5], [0.2, 0.25, 0.35]),
    ]


def face_only_triangles(triangles, face_mask):
    """Triangles whose three corners all lie in the face mask, [T', 3]."""
    return triangles[np.all(face_mask[triangles], axis=1)]


def main(argv, flag_values=flags.FLAGS):
    """Renders the preview as the flags in `flag_values` say; returns the exit status."""
    from mofl import startup
    startup.quiet_tensorflow()
    del argv
    # Imported here so `--help` stays fast.
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    from mofl.facemodel import default_assets  # pylint: disable=import-outside-toplevel
    from mofl.render import camera as camera_lib  # pylint: disable=import-outside-toplevel
    from mofl.render import image_renderer  # pylint: disable=import-outside-toplevel
    from mofl.render import overlay  # pylint: disable=import-outside-toplevel
    from mofl.render import shading  # pylint: disable=import-outside-toplevel

    try:
        mesh = default_assets.load_asset(flag_values.asset)[0].mesh
    except (OSError, ValueError) as error:
        logging.error('cannot load asset %s: %s', flag_values.asset, error)
        return 1
    vertices = np.asarray(mesh.vertices, np.float32)
    triangles = np.asarray(mesh.triangles, np.int32)
    face_mask = np.asarray(mesh.face_mask, bool)
    if flag_values.face_only:
        triangles = face_only_triangles(triangles, face_mask)
    face_points = vertices[face_mask] if face_mask.any() else vertices
    face_center = 0.5 * (face_points.min(axis=0) + face_points.max(axis=0))

    scenes = preview_scenes(flag_values.yaw_degrees)
    count = len(scenes)
    euler = np.array([scene[1] for scene in scenes], np.float32)
    rotation = camera_lib.rotation_from_euler(euler).numpy()
    # Put the rotated face-region centre on the optical axis at the requested depth.
    translation = (np.array([0.0, 0.0, -flag_values.depth])
                   - rotation @ face_center).astype(np.float32)
    sh = shading.directional_sh(np.array([scene[2] for scene in scenes], np.float32),
                                np.array([scene[3] for scene in scenes], np.float32),
                                np.array([scene[4] for scene in scenes], np.float32))
    albedo = np.broadcast_to(np.asarray(mesh.skin_color, np.float32), vertices.shape)
    size = flag_values.image_size
    camera = camera_lib.Camera.centered((size, size), flag_values.focal_length)
    rasterizer = None
    if flag_values.rasterizer == 'reference':
        from mofl.render import reference_rasterizer  # pylint: disable=import-outside-toplevel
        rasterizer = reference_rasterizer.reference_rasterize_triangles

    rendered = image_renderer.render_image(
        tf.constant(np.broadcast_to(vertices, (count,) + vertices.shape)), triangles, albedo, sh,
        euler, translation, camera, background=GREY_BACKGROUND, rasterizer=rasterizer)
    rows = []
    for index, scene in enumerate(scenes):
        mask = rendered.mask[index].numpy()[..., np.newaxis]
        shading_view = rendered.shading[index].numpy() * mask + 0.5 * (1.0 - mask)
        normal_view = rendered.normals[index].numpy() * mask + 0.5 * (1.0 - mask)
        rows.append(overlay.side_by_side(
            [rendered.image[index].numpy(), shading_view, normal_view],
            labels=[f'{scene[0]}: render', 'shading', 'normals']))
        logging.info('%s: %.1f%% of the image covered', scene[0], 100.0 * mask.mean())
    overlay.save_png(flag_values.output, overlay.stack_rows(rows))
    logging.info('wrote %s', flag_values.output)
    return 0


if __name__ == '__main__':
    define_flags()
    sys.exit(app.run(main))
