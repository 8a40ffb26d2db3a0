"""A small procedural face-like test mesh with a mouth slit, 68 landmarks and two blendshapes.

Used by the asset/graph/BFM tests so they run in well under a second and without ../shared.
"""
import numpy as np


def grid_face(n=41, half_width=80.0, half_height=100.0):
    """A bumped grid (mm) with an open mouth slit at y = −40 for |x| < 25.

    Returns:
        dict with `vertices` [V, 3] float32, `triangles` [T, 3] int32 (counter-clockwise seen from
        +z), `landmarks68` [68] int, `expression_basis` [2, V, 3] (0: jaw open, 1: smile left),
        `names`.
    """
    xs = np.linspace(-half_width, half_width, n)
    ys = np.linspace(-half_height, half_height, n)
    gx, gy = np.meshgrid(xs, ys)                     # row = y index, column = x index
    gz = 60.0 * np.exp(-(gx / 70.0) ** 2 - (gy / 90.0) ** 2)
    gz += 25.0 * np.exp(-(gx / 10.0) ** 2 - ((gy - 10.0) / 18.0) ** 2)   # a nose
    vertices = np.stack([gx, gy, gz], -1).reshape(-1, 3).astype(np.float32)

    def vid(r, c):
        return r * n + c

    mouth_row = int(np.argmin(np.abs(ys + 40.0)))   # the slit lies between this row and the next
    triangles = []
    for r in range(n - 1):
        for c in range(n - 1):
            a, b, cc, d = vid(r, c), vid(r, c + 1), vid(r + 1, c + 1), vid(r + 1, c)
            in_slit = r == mouth_row and abs(xs[c] + xs[c + 1]) / 2 < 25.0
            if in_slit:
                continue
            triangles += [(a, b, cc), (a, cc, d)]
    triangles = np.asarray(triangles, np.int32)

    def nearest(x, y):
        return int(np.argmin((vertices[:, 0] - x) ** 2 + (vertices[:, 1] - y) ** 2))

    lm = []
    for t in np.linspace(-1, 1, 17):                  # jaw 0..16: a U-shaped contour
        lm.append(nearest(65.0 * t, -20.0 - 60.0 * (1 - t ** 2) ** 0.5))
    lm += [nearest(x, 45.0) for x in np.linspace(-55, -10, 5)]    # brows 17..26
    lm += [nearest(x, 45.0) for x in np.linspace(10, 55, 5)]
    lm += [nearest(0.0, y) for y in np.linspace(30, 0, 4)]        # nose bridge 27..30
    lm += [nearest(x, -10.0) for x in np.linspace(-12, 12, 5)]    # nostrils 31..35
    for cx in (-35.0, 35.0):                                       # eyes 36..47
        lm += [nearest(cx + 12 * np.cos(a), 25.0 + 5 * np.sin(a))
               for a in np.linspace(np.pi, -np.pi, 7)[:6]]
    y_up, y_lo = ys[mouth_row + 1], ys[mouth_row]
    lm += [nearest(x, y_up + 5) for x in np.linspace(-25, 25, 7)]       # outer upper 48..54
    lm += [nearest(x, y_lo - 8) for x in np.linspace(20, -20, 5)]       # outer lower 55..59
    lm += [nearest(-22, y_up), nearest(-8, y_up), nearest(0, y_up), nearest(8, y_up),
           nearest(22, y_up), nearest(8, y_lo), nearest(0, y_lo), nearest(-8, y_lo)]  # 60..67
    landmarks68 = np.asarray(lm, np.int64)

    jaw = np.zeros_like(vertices)
    below = vertices[:, 1] <= y_lo
    jaw[below, 1] = -8.0 * np.clip(1 - np.abs(vertices[below, 0]) / 70.0, 0, 1)
    smile = np.zeros_like(vertices)
    d2 = (vertices[:, 0] + 25.0) ** 2 + (vertices[:, 1] + 40.0) ** 2
    smile[:, 1] = 4.0 * np.exp(-d2 / 200.0)
    return {'vertices': vertices, 'triangles': triangles, 'landmarks68': landmarks68,
            'expression_basis': np.stack([jaw, smile]).astype(np.float32),
            'names': ['jawOpen', 'mouthSmile_L']}
