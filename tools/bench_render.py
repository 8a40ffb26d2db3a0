"""Benchmarks the rasterizer op against the pure-TF reference rasterizer on the same meshes.

Rasterizes a face-sized mesh of about 18k triangles at 240×240, batch 8 (paper §3.3 image size),
with the `MoflRasterizeTriangles` op and with `reference_rasterize_triangles`, checks that both
agree, and prints milliseconds per image and the speed-up, the figure last.

By default the mesh is a procedurally generated ellipsoid (75 × 100 × 90 mm half-axes) standing in
for a face; `--asset=PATH` loads a face asset's template mesh instead. Each batch image gets its own
small random head rotation; a simple perspective camera (BUILD_NOTES.md "Coordinates and units")
frames the mesh to fill about 80 % of the image height.

    python -m tools.bench_render [--asset=PATH] [--batch_size=8] [--reference_images=1]
"""
import os
import time

import numpy as np
from absl import app
from absl import flags

from mofl import flags_common
from mofl import startup
startup.quiet_tensorflow()   # before anything imports TensorFlow

from mofl.data import head_pose
from mofl.render.procedural_meshes import ellipsoid_mesh


def define_flags(flag_values=flags.FLAGS):
    """Defines the binary's flags in `flag_values`."""
    flags_common.define_flags(('batch_size', 'image_size', 'seed'), flag_values,
                              defaults={'batch_size': 8},
                              notes={'batch_size': 'Images per op call.',
                                     'seed': 'The random head rotations.'})
    flags_common.define_asset_flag('unset: a procedural ellipsoid is rasterized instead.',
                                   flag_values=flag_values)
    flags.DEFINE_integer('repeats', 20, 'Timed op calls per round, 5 rounds (after a warm-up '
                         'call).', flag_values=flag_values)
    flags.DEFINE_integer('reference_images', 1, 'Images the slow reference rasterizes (ms per '
                         'image is what is compared).', flag_values=flag_values)
    flags.DEFINE_bool('cull_backfaces', False, 'Rasterize with back-face culling.',
                      flag_values=flag_values)


CAMERA_DISTANCE_MM = 600.0


def screen_vertices(model_vertices, batch_size, image_size, seed):
    """Poses the mesh per image and projects it: returns [B, V, 3] (u, v, d) float32."""
    rng = np.random.default_rng(seed)
    centred = model_vertices - model_vertices.mean(axis=0)
    height_mm = np.ptp(centred[:, 1])
    focal = 0.8 * image_size * CAMERA_DISTANCE_MM / height_mm
    principal = image_size / 2.0
    out = []
    for _ in range(batch_size):
        angles = rng.uniform(-0.3, 0.3, size=3) * np.array([1.0, 1.5, 0.5])
        camera = centred @ head_pose.euler_to_rotation(angles).T + np.array([0.0, 0.0, -CAMERA_DISTANCE_MM])
        d = -camera[:, 2]
        out.append(np.stack([principal + focal * camera[:, 0] / d,
                             principal - focal * camera[:, 1] / d, d], axis=-1))
    return np.asarray(out, np.float32)


def main(argv, flag_values=flags.FLAGS):
    del argv
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    from mofl.render import rasterize  # pylint: disable=import-outside-toplevel
    from mofl.render import reference_rasterizer  # pylint: disable=import-outside-toplevel

    if flag_values.asset:
        from mofl.facemodel import default_assets  # pylint: disable=import-outside-toplevel
        mesh = default_assets.load_asset(flag_values.asset)[0].mesh
        model_vertices, triangles, source = mesh.vertices, mesh.triangles, flag_values.asset
    else:
        model_vertices, triangles = ellipsoid_mesh()
        source = 'procedural ellipsoid'
    size = flag_values.image_size
    vertices = tf.constant(screen_vertices(model_vertices, flag_values.batch_size, size,
                                           flag_values.seed))
    triangles = tf.constant(triangles, tf.int32)
    device = 'GPU' if tf.config.list_physical_devices('GPU') else 'CPU'
    print(f'mesh: {source}, {int(vertices.shape[1])} vertices, {int(triangles.shape[0])} '
          f'triangles; batch {flag_values.batch_size}, {size}x{size}, '
          f'cull_backfaces={flag_values.cull_backfaces}; op runs on {device}')

    def run_op():
        return rasterize.rasterize_triangles(vertices, triangles, (size, size),
                                             cull_backfaces=flag_values.cull_backfaces)

    ids, depth, _ = run_op()  # warm-up (loads the library, allocates)
    # The machine may be shared: take the median of 5 rounds, and report CPU time beside wall time.
    wall_ms, cpu_ms = [], []
    for _ in range(5):
        wall_start, cpu_start = time.perf_counter(), time.process_time()
        for _ in range(flag_values.repeats):
            ids, depth, _ = run_op()
        ids.numpy()
        images = flag_values.repeats * flag_values.batch_size
        wall_ms.append(1e3 * (time.perf_counter() - wall_start) / images)
        cpu_ms.append(1e3 * (time.process_time() - cpu_start) / images)
    op_ms = float(np.median(wall_ms))
    print(f'op: wall ms/image per round {np.round(wall_ms, 3).tolist()}, CPU ms/image (all '
          f'threads) {np.median(cpu_ms):.3f}, {os.cpu_count()} CPU cores visible')
    print(f'covered pixels: {np.mean(ids.numpy() >= 0):.3f}')

    count = max(1, min(flag_values.reference_images, flag_values.batch_size))
    start = time.perf_counter()
    ref_ids, ref_depth, _ = reference_rasterizer.reference_rasterize_triangles(
        vertices[:count], triangles, (size, size), cull_backfaces=flag_values.cull_backfaces)
    ref_ms = 1e3 * (time.perf_counter() - start) / count
    same = (np.array_equal(ids.numpy()[:count], ref_ids.numpy()) and
            np.array_equal(depth.numpy()[:count], ref_depth.numpy()))
    print(f'op and reference agree on ids and depth of {count} image(s): {same}')
    print(f'rasterize_triangles op: {op_ms:.3f} ms/image (median wall, batch '
          f'{flag_values.batch_size}) '
          f'| pure-TF reference: {ref_ms:.1f} ms/image ({count} image(s)) | '
          f'speed-up {ref_ms / op_ms:.0f}x')


if __name__ == '__main__':
    define_flags()
    app.run(main)
