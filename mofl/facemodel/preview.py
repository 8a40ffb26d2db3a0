"""A picture of a face asset: template with landmarks and graph, side view, expression shapes.

Drawn with matplotlib (flat-shaded triangles in depth order, orthographic), so it needs neither
the rasterizer op nor a GPU and works right after `tools.build_assets`.
"""
import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.collections import LineCollection, PolyCollection  # noqa: E402

_LIGHT = np.array([0.3, 0.4, 1.0]) / np.linalg.norm([0.3, 0.4, 1.0])
PREVIEW_EXPRESSIONS = ('jawOpen', 'mouthSmile_L', 'eyeBlink_R', 'browInnerUp_L', 'mouthPucker',
                       'browInnerUp', 'eyeBlink_L', 'mouthFunnel')


def _rotate_y(vertices, degrees):
    a = np.deg2rad(degrees)
    rot = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])
    return vertices @ rot.T


def draw_mesh(ax, vertices, triangles, color=(0.80, 0.65, 0.55), mask=None):
    """Flat-shaded orthographic view along −z of a mesh on a matplotlib axis.

    Args:
        ax: matplotlib axis.
        vertices: [V, 3] already posed (the viewer looks down −z).
        triangles: [T, 3].
        color: RGB base colour.
        mask: optional [V] bool; triangles with any vertex outside are drawn grey.
    """
    tri = vertices[triangles]                                   # [T, 3, 3]
    normals = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    normals /= np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-12)
    front = normals[:, 2] > 0
    shade = np.clip(normals @ _LIGHT, 0.0, 1.0) * 0.75 + 0.25
    base = np.tile(np.asarray(color, float), (len(tri), 1))
    if mask is not None:
        outside = ~np.all(mask[triangles], axis=1)
        base[outside] = (0.6, 0.6, 0.6)
    colors = np.clip(base * shade[:, None], 0, 1)
    order = np.argsort(tri[:, :, 2].mean(axis=1))
    order = order[front[order]]
    ax.add_collection(PolyCollection(tri[order, :, :2], facecolors=colors[order],
                                     edgecolors='none', antialiased=False))
    ax.set_xlim(vertices[:, 0].min() - 5, vertices[:, 0].max() + 5)
    ax.set_ylim(vertices[:, 1].min() - 5, vertices[:, 1].max() + 5)
    ax.set_aspect('equal')
    ax.axis('off')


def write_preview(assets, path, title=''):
    """Writes the asset preview PNG.

    Panels: template front view with the 66 landmarks (numbered; jaw contour candidates dotted)
    and the graph nodes/edges; side view; and up to eight expression shapes at weight 1.

    Args:
        assets: FaceAssets.
        path: output PNG.
        title: figure title.
    """
    mesh, graph = assets.mesh, assets.graph
    v, tri = mesh.vertices, mesh.triangles
    names = [str(n) for n in mesh.expression_names]
    shown = [n for n in PREVIEW_EXPRESSIONS if n in names][:6]
    if len(shown) < 6:
        shown += [n for n in names if n not in shown][:6 - len(shown)]
    fig, axes = plt.subplots(2, 4, figsize=(20, 11))
    axes = axes.ravel()

    draw_mesh(axes[0], v, tri, mask=mesh.face_mask)
    cand = mesh.contour_candidates[mesh.contour_candidates >= 0]
    axes[0].plot(v[cand, 0], v[cand, 1], '.', color='tab:orange', ms=2)
    lm = v[mesh.landmark_indices]
    axes[0].plot(lm[:, 0], lm[:, 1], 'o', color='red', ms=4)
    for i, (x, y) in enumerate(lm[:, :2]):
        axes[0].text(x + 1, y + 1, str(i), fontsize=6, color='darkred')
    axes[0].set_title(f'template: {len(v)} vertices, {len(tri)} triangles,\n'
                      '66 landmarks (orange: contour candidates)')

    draw_mesh(axes[1], v, tri, color=(0.85, 0.85, 0.85))
    segs = graph.nodes[graph.edges][:, :, :2]
    axes[1].add_collection(LineCollection(segs, colors='tab:blue', linewidths=0.5))
    axes[1].plot(graph.nodes[:, 0], graph.nodes[:, 1], '.', color='navy', ms=3)
    up, lo = mesh.upper_lip_vertices, mesh.lower_lip_vertices
    axes[1].plot(v[up, 0], v[up, 1], '.', color='tab:green', ms=1)
    axes[1].plot(v[lo, 0], v[lo, 1], '.', color='tab:purple', ms=1)
    axes[1].set_title(f'deformation graph: {graph.num_nodes} nodes, {len(graph.edges)} edges\n'
                      '(green/purple: lips)')

    side = _rotate_y(v, 90.0)
    draw_mesh(axes[2], side, tri)
    axes[2].set_title('side view (yaw 90°)')

    for ax, name in zip(axes[3:], ['open-mouth template (graph placement)'] + shown):
        if name.startswith('open-mouth'):
            draw_mesh(ax, _rotate_y(mesh.open_mouth_vertices, 25.0), tri)
        else:
            u = names.index(name)
            draw_mesh(ax, _rotate_y(v + mesh.expression_basis[u], 25.0), tri)
            name = f'{name} (δ=1, max {np.linalg.norm(mesh.expression_basis[u], axis=1).max():.1f} mm)'
        ax.set_title(name)
    fig.suptitle(title or f'face asset: source={mesh.source}', fontsize=14)
    fig.tight_layout(rect=(0, 0, 1, 0.96))
    fig.savefig(path, dpi=80)
    plt.close(fig)
