"""Small test meshes shared by the tests: an icosphere and a two-triangle quad.

Triangles are counter-clockwise seen from outside (outward normals by the right-hand rule), as
BUILD_NOTES.md "Coordinates and units" requires.
"""
import numpy as np


def icosahedron():
    """The regular icosahedron on the unit sphere: ([12, 3] float64, [20, 3] int32)."""
    phi = (1.0 + np.sqrt(5.0)) / 2.0
    vertices = np.array([
        [-1, phi, 0], [1, phi, 0], [-1, -phi, 0], [1, -phi, 0],
        [0, -1, phi], [0, 1, phi], [0, -1, -phi], [0, 1, -phi],
        [phi, 0, -1], [phi, 0, 1], [-phi, 0, -1], [-phi, 0, 1],
    ], np.float64)
    vertices /= np.linalg.norm(vertices, axis=1, keepdims=True)
    triangles = np.array([
        [0, 11, 5], [0, 5, 1], [0, 1, 7], [0, 7, 10], [0, 10, 11],
        [1, 5, 9], [5, 11, 4], [11, 10, 2], [10, 7, 6], [7, 1, 8],
        [3, 9, 4], [3, 4, 2], [3, 2, 6], [3, 6, 8], [3, 8, 9],
        [4, 9, 5], [2, 4, 11], [6, 2, 10], [8, 6, 7], [9, 8, 1],
    ], np.int32)
    return vertices, triangles


def icosphere(subdivisions=2, radius=1.0, center=(0.0, 0.0, 0.0)):
    """A subdivided icosahedron: every triangle split in four, new vertices pushed to the sphere.

    Args:
        subdivisions: number of 1→4 splits (0 = icosahedron; V = 10·4^s + 2).
        radius: sphere radius.
        center: sphere centre.

    Returns:
        (vertices [V, 3] float32, triangles [T, 3] int32), outward-facing.
    """
    vertices, triangles = icosahedron()
    vertices = list(vertices)
    for _ in range(subdivisions):
        midpoint_index = {}

        def midpoint(a, b):
            key = (min(a, b), max(a, b))
            if key not in midpoint_index:
                middle = vertices[a] + vertices[b]
                vertices.append(middle / np.linalg.norm(middle))
                midpoint_index[key] = len(vertices) - 1
            return midpoint_index[key]

        split = []
        for a, b, c in triangles:
            ab, bc, ca = midpoint(a, b), midpoint(b, c), midpoint(c, a)
            split += [[a, ab, ca], [b, bc, ab], [c, ca, bc], [ab, bc, ca]]
        triangles = np.array(split, np.int32)
    vertices = np.asarray(vertices) * radius + np.asarray(center)
    return vertices.astype(np.float32), triangles.astype(np.int32)


def quad(width=2.0, height=2.0, center=(0.0, 0.0, 0.0)):
    """An axis-aligned rectangle in the plane z = center_z facing +z, as two triangles.

    Returns:
        (vertices [4, 3] float32 ordered bottom-left, bottom-right, top-right, top-left;
         triangles [2, 3] int32).
    """
    cx, cy, cz = center
    w, h = width / 2.0, height / 2.0
    vertices = np.array([[cx - w, cy - h, cz], [cx + w, cy - h, cz],
                         [cx + w, cy + h, cz], [cx - w, cy + h, cz]], np.float32)
    triangles = np.array([[0, 1, 2], [0, 2, 3]], np.int32)
    return vertices, triangles
