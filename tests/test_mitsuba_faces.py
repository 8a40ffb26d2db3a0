"""mofl.data.mitsuba_faces: camera alignment with mofl's projection, shadows, determinism and
input checks; the ICT head loader (mofl.data.ict_head); appearance and lighting draws
(mofl.data.head_appearance). Small images and few samples per pixel (the whole file takes
seconds once the ICT head cache exists)."""
import subprocess
import sys

import numpy as np
import pytest

from mofl.data import head_appearance
from mofl.data import ict_head
from mofl.data import mitsuba_faces

pytestmark = pytest.mark.skipif(not mitsuba_faces.mitsuba_available(),
                                reason='mitsuba is not installed (requirements.txt pins it)')


def _camera(height, width, focal, principal_x, principal_y):
    from mofl.render import camera as camera_lib
    return camera_lib.Camera(focal_x=focal, focal_y=focal, principal_x=principal_x,
                             principal_y=principal_y, image_size=(height, width))


def _project(points_camera, camera):
    """[N, 3] camera-space points → [N, 2] pixels with mofl's own projection."""
    from mofl.render import camera as camera_lib
    return camera_lib.project(np.asarray(points_camera, np.float32)[None], camera).numpy()[0]


@pytest.fixture(scope='module')
def head(ict_dir):
    return ict_head.load_ict_head(ict_dir)


def _frontal_pose(vertices, depth=1000.0):
    """Identity rotation and a translation putting the head's bounding-box centre at `depth`."""
    centre = 0.5 * (vertices.min(0) + vertices.max(0))
    return np.eye(3), np.array([0.0, 0.0, -depth]) - centre


@pytest.mark.parametrize('module', ['mitsuba_faces', 'ict_head', 'head_appearance',
                                    'head_textures'])
def test_import_does_not_load_mitsuba(module):
    code = (f'import sys, mofl.data.{module}; '
            'assert "mitsuba" not in sys.modules and "tensorflow" not in sys.modules')
    subprocess.run([sys.executable, '-c', code], check=True)


def test_sensor_matches_mofl_projection():
    """Small spheres at known camera-space points land where mofl's projection puts them, with
    an off-centre principal point on a non-square image."""
    mi = mitsuba_faces._mitsuba()  # pylint: disable=protected-access
    from scipy import ndimage
    camera = _camera(48, 72, focal=60.0, principal_x=29.0, principal_y=19.5)
    centres = np.array([[-150.0, 80.0, -1000.0], [200.0, -90.0, -1000.0], [10.0, 5.0, -800.0]])
    scene = {'type': 'scene', 'integrator': {'type': 'path', 'hide_emitters': True},
             'sensor': mitsuba_faces.mitsuba_sensor(camera, spp=64),
             'light': {'type': 'constant', 'radiance': 1.0}}
    for k, centre in enumerate(centres):
        scene[f'ball{k}'] = {'type': 'sphere', 'center': centre.tolist(), 'radius': 40.0,
                             'bsdf': {'type': 'diffuse'}}
    alpha = np.array(mi.render(mi.load_dict(scene), seed=0))[..., 3]
    labels, count = ndimage.label(alpha > 0.0)
    assert count == len(centres)
    rows, cols = np.mgrid[:alpha.shape[0], :alpha.shape[1]]
    found = []
    for label in range(1, count + 1):
        weight = np.where(labels == label, alpha, 0.0)
        found.append([(weight * (cols + 0.5)).sum() / weight.sum(),
                      (weight * (rows + 0.5)).sum() / weight.sum()])
    expected = _project(centres, camera)
    for point in expected:
        nearest = min(found, key=lambda f: np.hypot(*(np.asarray(f) - point)))
        np.testing.assert_allclose(nearest, point, atol=0.5)


def test_render_silhouette_matches_projected_vertices(head):
    """The rendered head's mask spans the projected extent of its vertices (off-centre camera)."""
    camera = _camera(56, 80, focal=150.0, principal_x=45.0, principal_y=25.0)
    rotation, translation = _frontal_pose(head.vertices, depth=1300.0)
    _, mask = mitsuba_faces.render(head.vertices, rotation, translation, camera,
                                   head_appearance.HeadAppearance(), head_appearance.Lighting(),
                                   spp=4, return_mask=True, head=head)
    skin = np.unique(head.triangles[head.part_mask('skin')])
    pixels = _project(head.vertices[skin] @ rotation.T + translation, camera)
    rows, cols = np.nonzero(mask > 0.5)
    assert 0 < rows.min() and rows.max() < 55 and 0 < cols.min() and cols.max() < 79
    assert abs(cols.min() - pixels[:, 0].min()) < 1.0
    assert abs(cols.max() + 1 - pixels[:, 0].max()) < 1.0
    assert abs(rows.min() - pixels[:, 1].min()) < 1.0
    assert abs(rows.max() + 1 - pixels[:, 1].max()) < 1.0


def test_side_light_darkens_far_half(head):
    camera = _camera(64, 64, focal=260.0, principal_x=32.0, principal_y=32.0)
    rotation, translation = _frontal_pose(head.vertices)
    dim_room = dict(sky_color=(0.02,) * 3, horizon_color=(0.02,) * 3, ground_color=(0.01,) * 3)
    halves = {}
    for name, direction in (('front', (0.0, 0.0, 1.0)), ('side', (1.0, 0.0, 0.0))):
        lighting = head_appearance.Lighting(key_direction=direction, key_irradiance=(3.0,) * 3,
                                            **dim_room)
        image, mask = mitsuba_faces.render(head.vertices, rotation, translation, camera,
                                           head_appearance.HeadAppearance(), lighting, spp=4,
                                           return_mask=True, head=head)
        gray = image.astype(np.float64).mean(-1)
        inside = mask > 0.99
        halves[name] = (gray[:, :32][inside[:, :32]].mean(), gray[:, 32:][inside[:, 32:]].mean())
    left, right = halves['front']
    assert 0.75 < left / right < 1.33           # frontal: both halves lit alike
    left, right = halves['side']
    assert left < 0.3 * right                   # light from +x (image right): left half in shadow


def test_head_shapes_and_face_area_match_the_asset(head, ict_dir):
    from mofl.facemodel.sources import ict
    assert head.vertices.shape == (26719, 3) and head.vertices.dtype == np.float32
    assert head.triangles.dtype == np.int32 and head.triangles.shape[1] == 3
    assert head.uv_triangles.shape == head.triangles.shape
    assert head.part.shape == head.material.shape == (len(head.triangles),)
    assert head.identity_basis.shape == (100, 26719, 3)
    assert head.expression_basis.shape == (53, 26719, 3)
    assert len(head.expression_names) == 53
    source = ict.build_source(ict_dir)
    np.testing.assert_allclose(head.vertices[:9409], source.vertices, atol=1e-4)
    assert list(head.expression_names) == list(source.expression_names)
    np.testing.assert_allclose(head.expression_basis[:, :9409], source.expression_basis,
                               atol=1e-4)
    np.testing.assert_array_equal(head.triangles[:len(source.triangles)], source.triangles)
    # Identity modes are SD-scaled: mode 0 moves the head by millimetres, mode 99 by much less.
    rms = np.sqrt((head.identity_basis ** 2).sum(-1).mean(-1))
    assert 1.0 < rms[0] < 10.0 and rms[99] < 0.2 * rms[0]


def test_parts(head):
    counts = {name: int(head.part_mask(name).sum()) for name in head.part_names}
    for name in ('skin', 'eye', 'teeth', 'mouth_interior'):
        assert counts[name] > 0, name
    assert sum(counts.values()) == len(head.triangles)
    # The eyeballs sit in the eye sockets (|x| 15–47 mm), the teeth behind the lips.
    eyes = head.vertices[np.unique(head.triangles[head.part_mask('eye')])]
    assert np.all(np.abs(eyes[:, 0]) > 15.0) and np.all(np.abs(eyes[:, 0]) < 47.0)
    teeth = head.vertices[np.unique(head.triangles[head.part_mask('teeth')])]
    lips = head.vertices[head.landmark_indices[48:68]]
    assert teeth[:, 2].max() < lips[:, 2].max()
    with pytest.raises(ValueError, match='part name'):
        head.part_mask('hair')


def test_render_is_deterministic_for_a_seed(head):
    camera = _camera(40, 40, focal=160.0, principal_x=20.0, principal_y=20.0)
    rng = np.random.default_rng(3)
    appearance = head_appearance.sample_appearance(rng)
    lighting = head_appearance.sample_lighting(rng)
    rotation, translation = _frontal_pose(head.vertices)
    background = np.full((40, 40, 3), 90, np.uint8)
    render = lambda seed: mitsuba_faces.render(head.vertices, rotation, translation, camera,
                                               appearance, lighting, background, spp=2,
                                               seed=seed, head=head)
    first = render(7)
    assert first.shape == (40, 40, 3) and first.dtype == np.uint8
    np.testing.assert_array_equal(first, render(7))
    assert np.any(first != render(8))
    assert np.all(first[0, 0] == 90)            # background shows where the head is not


def test_bad_inputs_name_the_argument(head):
    camera = _camera(16, 16, focal=60.0, principal_x=8.0, principal_y=8.0)
    appearance, lighting = head_appearance.HeadAppearance(), head_appearance.Lighting()
    v, t = head.vertices, np.array([0.0, 0.0, -1000.0])
    cases = [
        ('head_vertices', dict(head_vertices=v[:9409])),
        ('rotation', dict(rotation=np.eye(4))),
        ('rotation', dict(rotation=np.eye(3)[:2])),
        ('rotation', dict(rotation=2.0 * np.eye(3))),
        ('translation', dict(translation=t[:2])),
        ('background', dict(background=np.zeros((16, 17, 3), np.uint8))),
        ('camera', dict(camera=_camera(16, 16, 60.0, 8.0, 8.0).__class__(
            focal_x=60.0, focal_y=70.0, image_size=(16, 16)))),
        ('appearance', dict(appearance=None)),
        ('spp', dict(spp=0)),
    ]
    for name, change in cases:
        args = dict(head_vertices=v, rotation=np.eye(3), translation=t, camera=camera,
                    appearance=appearance, lighting=lighting, head=head)
        args.update(change)
        with pytest.raises(ValueError, match=name):
            mitsuba_faces.render(**args)


def test_sampled_appearance_and_lighting_ranges():
    rng = np.random.default_rng(0)
    for _ in range(20):
        appearance = head_appearance.sample_appearance(rng)
        assert 0.3 <= appearance.roughness <= 0.7
        assert all(0.0 <= c <= 1.0 for c in appearance.skin_color + appearance.iris_color)
        lighting = head_appearance.sample_lighting(rng)
        assert abs(np.linalg.norm(lighting.key_direction) - 1.0) < 1e-9
        env = lighting.environment_map((8, 16))
        assert env.shape == (8, 16, 3) and np.all(env >= 0.0)
    # The lat-long layout: the centre column looks down −z, the top row up (+y).
    env = head_appearance.Lighting(window_direction=(0.0, 0.0, -1.0), window_color=(5.0,) * 3,
                                   window_sharpness=50.0).environment_map((16, 32))
    row, col = np.unravel_index(np.argmax(env[..., 0]), env.shape[:2])
    assert row in (7, 8) and col in (15, 16)
