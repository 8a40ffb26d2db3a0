"""Entry checks of the geometry and shading core, and of the images entering the network and the
model: a wrong shape is refused with an error that names the tensor, instead of broadcasting
silently or failing deep inside TensorFlow."""
import numpy as np
import pytest

import training_data
from mofl.facemodel import face_model as face_model_lib
from mofl.render import camera
from mofl.render import shading

B, V = 2, 7


@pytest.fixture(scope='module')
def face_model():
    return face_model_lib.FaceModel(training_data.tiny_assets(), shape_dim=4, albedo_dim=3)


_CORE_ERRORS = [
    ('euler, 4 angles', lambda: camera.rotation_from_euler(np.zeros([B, 4])), 'euler_angles'),
    ('rigid, translation [3]', lambda: camera.rigid_transform(
        np.zeros([B, V, 3]), np.tile(np.eye(3), [B, 1, 1]), np.zeros(3)), 'translation'),
    ('rigid, rotation batch', lambda: camera.rigid_transform(
        np.zeros([B, V, 3]), np.tile(np.eye(3), [B + 1, 1, 1]), np.zeros([B, 3])), 'rotation'),
    ('rigid, 2D points', lambda: camera.rigid_transform(
        np.zeros([B, V, 2]), np.tile(np.eye(3), [B, 1, 1]), np.zeros([B, 3])), 'points'),
    ('rotate, rotation 4x4', lambda: camera.rotate_directions(
        np.zeros([B, V, 3]), np.tile(np.eye(4), [B, 1, 1])), 'rotation'),
    ('project, no batch', lambda: camera.project(np.zeros([V, 3])), 'points_camera'),
    ('unproject, depth count', lambda: camera.unproject(
        np.zeros([B, V, 2]), np.ones([B, V + 1])), 'depth'),
    ('model_to_screen, euler [3]', lambda: camera.model_to_screen(
        np.zeros([B, V, 3]), np.zeros(3), np.zeros([B, 3])), 'euler_angles'),
    ('sh, 9 coefficients', lambda: shading.irradiance(
        np.ones([B, V, 3]), np.zeros([B, 9])), 'sh'),
    ('sh, batch', lambda: shading.irradiance(
        np.ones([B, V, 3]), np.zeros([B + 1, 27])), 'sh'),
    ('normals, 2D', lambda: shading.sh_basis(np.ones([V, 2])), 'normals'),
    ('albedo, vertex count', lambda: shading.shade(
        np.ones([B, V + 1, 3]), np.ones([B, V, 3]), np.zeros([B, 27])), 'albedo'),
]


@pytest.mark.parametrize('call,name', [(c, n) for _, c, n in _CORE_ERRORS],
                         ids=[label for label, _, _ in _CORE_ERRORS])
def test_camera_and_shading_refuse_bad_shapes_naming_the_tensor(call, name):
    with pytest.raises(ValueError, match=name):
        call()


def test_shade_accepts_one_albedo_for_the_batch():
    colors = shading.shade(np.full([V, 3], 0.5), np.tile([[[0.0, 0.0, 1.0]]], [B, V, 1]),
                           shading.ambient_sh(np.ones([B, 3])))
    np.testing.assert_allclose(colors, 0.5, rtol=1e-5)


@pytest.mark.parametrize('method,args,name', [
    ('node_displacements', lambda m: [np.zeros([B, 5])], 'shape_params'),
    ('identity_vertices', lambda m: [np.zeros([4])], 'shape_params'),
    ('albedo', lambda m: [np.zeros([B, 4])], 'albedo_params'),
    ('expression_offsets', lambda m: [np.zeros([B, 2, m.num_expressions + 1])], 'expression'),
    ('vertices', lambda m: [np.zeros([B, 4]), np.zeros([B, m.num_expressions])], 'expression'),
    ('vertices', lambda m: [np.zeros([B, 4]), np.zeros([B + 1, 2, m.num_expressions])],
     'expression'),
    ('skin', lambda m: [np.zeros([B, m.num_nodes + 1, 3])], 'node_values'),
], ids=['alpha size', 'alpha rank', 'beta size', 'delta size', 'delta rank', 'delta batch',
        'node count'])
def test_face_model_refuses_bad_shapes_naming_the_tensor(face_model, method, args, name):
    with pytest.raises(ValueError, match=name):
        getattr(face_model, method)(*args(face_model))


# ----------------------------------------------------------------------------- network and model

M, SIDE = 2, 240


@pytest.fixture(scope='module')
def network():
    from mofl.nets import fml_network
    return fml_network.FmlNetwork(num_expressions=3, num_shape_params=4, num_albedo_params=3,
                                  width_multiplier=training_data.TEST_WIDTH_MULTIPLIER)


@pytest.fixture(scope='module')
def fml_model():
    from mofl import model as model_lib
    return model_lib.FmlModel(training_data.tiny_assets(), model_lib.ModelConfig(
        shape_dim=4, albedo_dim=3, width_multiplier=training_data.TEST_WIDTH_MULTIPLIER))


_IMAGE_ERRORS = [
    ('one frame, no M axis', [B, SIDE, SIDE, 3]),
    ('grey frames', [B, M, SIDE, SIDE, 1]),
    ('RGBA frames', [B, M, SIDE, SIDE, 4]),
    ('frames not 240 wide', [B, M, SIDE, 128, 3]),
]


@pytest.mark.parametrize('shape', [s for _, s in _IMAGE_ERRORS],
                         ids=[label for label, _ in _IMAGE_ERRORS])
def test_network_refuses_bad_images_naming_them(network, shape):
    with pytest.raises(ValueError, match='images must'):
        network(np.zeros(shape, np.float32))
    with pytest.raises(ValueError, match='images must'):
        network.standardize_identity_outputs(np.zeros(shape, np.float32))


def test_network_with_an_input_size_takes_any_frame_size():
    from mofl.nets import fml_network
    small = fml_network.FmlNetwork(num_expressions=3, num_shape_params=4, num_albedo_params=3,
                                   input_size=64, width_multiplier=0.125)
    outputs = small(np.zeros([1, 1, 80, 96, 3], np.float32))
    assert outputs['euler_angles'].shape == (1, 1, 3)
    with pytest.raises(ValueError, match='images must'):
        small(np.zeros([1, 80, 96, 3], np.float32))


@pytest.mark.parametrize('shape', [s for _, s in _IMAGE_ERRORS],
                         ids=[label for label, _ in _IMAGE_ERRORS])
def test_model_refuses_bad_images_naming_them(fml_model, shape):
    with pytest.raises(ValueError, match='images must'):
        fml_model(np.zeros(shape, np.float32))


def test_model_refuses_frames_of_another_size_than_its_camera(fml_model):
    height, width = fml_model.config.image_size
    with pytest.raises(ValueError, match=rf'images must have the model\'s {height}×{width}'):
        fml_model(np.zeros([1, 1, height, width + 16, 3], np.float32))
