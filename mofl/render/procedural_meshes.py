"""Procedural test and benchmark meshes (no data files needed)."""
import numpy as np


def ellipsoid_mesh(rows=91, cols=100, radii=(75.0, 100.0, 90.0)):
    """Latitude-longitude ellipsoid; 2 · cols · (rows − 1) outward counter-clockwise triangles.

    Returns:
        vertices [V, 3] float32 (mm, model space), triangles [T, 3] int32.
    """
    theta = np.pi * np.arange(1, rows) / rows
    phi = 2.0 * np.pi * np.arange(cols) / cols
    theta, phi = np.meshgrid(theta, phi, indexing='ij')
    ring = np.stack([np.sin(theta) * np.sin(phi), np.cos(theta), np.sin(theta) * np.cos(phi)],
                    axis=-1).reshape(-1, 3)
    unit = np.concatenate([[[0.0, 1.0, 0.0]], ring, [[0.0, -1.0, 0.0]]])
    south = len(unit) - 1

    def index(i, j):
        return 1 + (i - 1) * cols + j % cols

    triangles = []
    for j in range(cols):
        triangles.append((0, index(1, j), index(1, j + 1)))
        triangles.append((south, index(rows - 1, j + 1), index(rows - 1, j)))
    for i in range(1, rows - 1):
        for j in range(cols):
            a, b, c, d = index(i, j), index(i, j + 1), index(i + 1, j), index(i + 1, j + 1)
            triangles += [(a, c, d), (a, d, b)]
    return (unit * np.asarray(radii)).astype(np.float32), np.asarray(triangles, np.int32)
