"""SavedModel export of a trained FML model, and loading it back for reconstruction.

The exported SavedModel serves monocular or multi-frame reconstruction of ONE person: its
`serving_default` signature takes `images` [N, H, W, 3] (the N ≥ 1 frames of one identity, RGB in
[0, 1], H = W = 240 for the paper's crops) and runs the model with B = 1, M = N, so the shared
identity (α, β; paper §3.4, Table 2) is pooled over all N frames. It returns

    vertices            [N, V, 3] float32   per-frame geometry v(α, δ) (eq. 3), model space, mm
    identity_vertices   [V, 3]    float32   neutral identity v̄ + S·OCL(Θs)·α (eq. 2, 4), mm
    albedo              [V, 3]    float32   albedo r(β) (eq. 6), linear RGB, [0, 1] nominal
    colors              [N, V, 3] float32   shaded colours c_i (eq. 7), RGB, [0, 1] nominal
    triangles           [T, 3]    int32     counter-clockwise seen from outside
    euler_angles        [N, 3]    float32   Euler angles [pitch, yaw, roll] in radians
    translation         [N, 3]    float32   mm, camera space (camera at origin looking down −z)
    sh                  [N, 27]   float32   SH coefficients γ, band-major: sh[3·k + c]
    expression          [N, b]    float32   blendshape coefficients δ
    shape_params        [g]       float32   α
    albedo_params       [a]       float32   β
    landmarks           [N, 66, 2] float32  projected landmark pixels (u right, v down)
    landmark_vertices   [N, 66]   int32     their vertices (the jaw contour slides per frame)
    camera_vertices     [N, V, 3] float32   Φ(v) = R·v + t, camera space, mm
    visibility          [N, V]    bool      the model's vertex visibility (back-face or z-buffer)

A second signature, `metadata`, takes no input and returns the static description of the model:
template [V, 3], triangles, face_mask [V], landmark_indices [66], contour_candidates [17, K],
expression_names [b] (string), focal_length, principal_point [2] (u, v pixels), image_size [2]
(H, W), shape_dim, albedo_dim, step (training step of the checkpoint) and asset_source. The same
values are attributes of the loaded object (`loaded.template`, ...). `signature.json` beside the
SavedModel describes every output and its unit in plain text.
"""
import json
import os
from typing import Callable, Dict, NamedTuple

import numpy as np
import tensorflow as tf

SIGNATURE_FILE = 'signature.json'
SERVING_SIGNATURE = 'serving_default'
METADATA_SIGNATURE = 'metadata'

# name -> (shape, dtype, description with unit). N frames, V vertices, T triangles, b expressions,
# g shape and a albedo parameters (the model's sizes).
OUTPUTS = {
    'vertices': ('[N, V, 3]', 'float32', 'per-frame geometry with expression (eq. 3), model '
                 'space, mm; x to image right, y up, z towards the viewer'),
    'identity_vertices': ('[V, 3]', 'float32', 'neutral identity geometry (eq. 2 with OCL), '
                          'model space, mm'),
    'albedo': ('[V, 3]', 'float32', 'per-vertex albedo r (eq. 6), linear RGB, nominally '
               '[0, 1]'),
    'colors': ('[N, V, 3]', 'float32', 'shaded per-vertex colours c_i (eq. 7), RGB, nominally '
               '[0, 1]'),
    'triangles': ('[T, 3]', 'int32', 'vertex indices, counter-clockwise seen from outside'),
    'euler_angles': ('[N, 3]', 'float32', 'head rotation as Euler angles [pitch, yaw, roll], '
                     'radians; R = Rz(roll)·Ry(yaw)·Rx(pitch)'),
    'translation': ('[N, 3]', 'float32', 'mm; camera space, camera at the origin looking '
                    'down -z, so a visible face has t_z < 0'),
    'sh': ('[N, 27]', 'float32', 'spherical-harmonics lighting, 9 bands x 3 colours, '
           'band-major (sh[3k + c])'),
    'expression': ('[N, b]', 'float32', 'blendshape coefficients (names in metadata)'),
    'shape_params': ('[g]', 'float32', 'identity shape parameters alpha (shared by the frames)'),
    'albedo_params': ('[a]', 'float32', 'identity albedo parameters beta'),
    'landmarks': ('[N, 66, 2]', 'float32', 'projected landmarks, pixels (u right, v down, '
                  'origin at the top-left image corner, pixel centres at +0.5)'),
    'landmark_vertices': ('[N, 66]', 'int32', 'vertex of each landmark (jaw contour slides)'),
    'camera_vertices': ('[N, V, 3]', 'float32', 'R·v + t, camera space, mm'),
    'visibility': ('[N, V]', 'bool', 'vertex visible to the camera (model visibility mode)'),
}

# Output names of SavedModels written by older mofl versions → today's names (renamed on load).
LEGACY_OUTPUT_NAMES = {'rotation': 'euler_angles', 'reflectance_params': 'albedo_params'}

# Outputs of FmlModel.call with a leading [B = 1] that the signature drops.
_PER_SAMPLE_OUTPUTS = ('vertices', 'albedo', 'colors', 'euler_angles', 'translation', 'sh',
                       'expression', 'shape_params', 'albedo_params', 'landmarks',
                       'landmark_vertices', 'camera_vertices', 'visibility')


class ExportModule(tf.Module):
    """A trained FmlModel wrapped for serving: `reconstruct` and `metadata` signatures.

    Args:
        model: a built (restored) mofl.model.FmlModel.
        assets: the FaceAssets the model was built from.
        step: training step of the restored checkpoint (stored as metadata).
    """

    def __init__(self, model, assets, step=0):
        super().__init__(name='mofl_export')
        self.model = model
        config = model.config
        height, width = (int(s) for s in config.image_size)
        mesh = assets.mesh
        fixed = lambda value, dtype, name: tf.Variable(value, dtype=dtype, trainable=False,
                                                       name=name)
        self.template = fixed(mesh.vertices, tf.float32, 'template')
        self.triangles = fixed(mesh.triangles, tf.int32, 'triangles')
        self.face_mask = fixed(np.asarray(mesh.face_mask, bool), tf.bool, 'face_mask')
        self.landmark_indices = fixed(mesh.landmark_indices, tf.int32, 'landmark_indices')
        self.contour_candidates = fixed(mesh.contour_candidates, tf.int32,
                                        'contour_candidates')
        self.expression_names = fixed([str(n) for n in mesh.expression_names], tf.string,
                                      'expression_names')
        camera = model.camera
        self.focal_length = fixed(camera.focal_x, tf.float32, 'focal_length')
        self.principal_point = fixed([camera.principal_x, camera.principal_y], tf.float32,
                                     'principal_point')
        self.image_size = fixed([height, width], tf.int32, 'image_size')
        self.shape_dim = fixed(config.shape_dim, tf.int32, 'shape_dim')
        self.albedo_dim = fixed(config.albedo_dim, tf.int32, 'albedo_dim')
        self.step = fixed(int(step), tf.int64, 'step')
        self.asset_source = fixed(str(mesh.source), tf.string, 'asset_source')
        self.visibility_mode = fixed(config.visibility, tf.string, 'visibility_mode')
        self.reconstruct = tf.function(
            self._reconstruct,
            input_signature=[tf.TensorSpec([None, height, width, 3], tf.float32, name='images')],
            autograph=False)
        self.metadata = tf.function(self._metadata, input_signature=[], autograph=False)

    def _reconstruct(self, images):
        """images [N, H, W, 3] of one person -> dict of the outputs listed in OUTPUTS."""
        outputs = self.model(images[None], identity_enabled=True)
        result = {name: outputs[name][0] for name in _PER_SAMPLE_OUTPUTS}
        result['identity_vertices'] = self.model.face_model.identity_vertices(
            outputs['shape_params'])[0]
        result['triangles'] = tf.identity(self.model.triangles)
        return result

    def _metadata(self):
        """Static description of the model (no input)."""
        names = ('template', 'triangles', 'face_mask', 'landmark_indices', 'contour_candidates',
                 'expression_names', 'focal_length', 'principal_point', 'image_size',
                 'shape_dim', 'albedo_dim', 'step', 'asset_source', 'visibility_mode')
        return {name: tf.identity(getattr(self, name)) for name in names}


def export(model, assets, output_dir, step=0):
    """Writes the SavedModel of `model` and its `signature.json` to `output_dir`.

    Args:
        model: a built mofl.model.FmlModel with its trained weights.
        assets: the FaceAssets it was built from.
        output_dir: SavedModel directory (created; an existing SavedModel there is overwritten).
        step: training step of the weights (recorded in the metadata).

    Returns:
        dict describing the export (the content of signature.json).
    """
    module = ExportModule(model, assets, step)
    signatures = {SERVING_SIGNATURE: module.reconstruct.get_concrete_function(),
                  METADATA_SIGNATURE: module.metadata.get_concrete_function()}
    tf.saved_model.save(module, output_dir, signatures=signatures)
    height, width = (int(s) for s in model.config.image_size)
    mesh = assets.mesh
    description = {
        'format': 'mofl FML SavedModel',
        'signatures': {
            SERVING_SIGNATURE: {
                'inputs': {'images': {
                    'shape': f'[N, {height}, {width}, 3]', 'dtype': 'float32',
                    'description': 'N >= 1 frames of ONE person (B = 1, M = N), RGB in [0, 1]'}},
                'outputs': {name: {'shape': shape, 'dtype': dtype, 'description': text}
                            for name, (shape, dtype, text) in OUTPUTS.items()},
            },
            METADATA_SIGNATURE: {'inputs': {}, 'outputs': sorted(
                module.metadata.get_concrete_function().structured_outputs)},
        },
        'sizes': {'V': mesh.num_vertices, 'T': int(len(mesh.triangles)),
                  'b': mesh.num_expressions, 'g': int(model.config.shape_dim),
                  'a': int(model.config.albedo_dim)},
        'camera': {'focal_length_px': float(model.camera.focal_x),
                   'principal_point_px': [float(model.camera.principal_x),
                                          float(model.camera.principal_y)],
                   'image_size_hw': [height, width],
                   'convention': 'u = cx + f·x/d, v = cy − f·y/d with d = −z (BUILD_NOTES.md)'},
        'model_config': {k: (list(v) if isinstance(v, tuple) else v)
                         for k, v in vars(model.config).items()},
        'asset_source': str(mesh.source),
        'step': int(step),
    }
    with open(os.path.join(output_dir, SIGNATURE_FILE), 'w') as f:
        json.dump(description, f, indent=2)
    return description


def find_run_dir(checkpoint_dir=None, checkpoint=None):
    """The mofl.train output directory behind a checkpoint folder or prefix.

    Args:
        checkpoint_dir: a training output dir (holding model_config.json) or its `checkpoints/`
            subfolder; may be None when `checkpoint` is given.
        checkpoint: optional checkpoint prefix (e.g. RUN/checkpoints/ckpt-400).

    Returns:
        the run directory (str).

    Raises:
        FileNotFoundError: naming the folder, when no run description is found.
    """
    if not checkpoint_dir and not checkpoint:
        raise ValueError('give a checkpoint directory or a checkpoint prefix')
    start = checkpoint_dir or os.path.dirname(os.path.dirname(os.path.abspath(checkpoint)))
    for candidate in (start, os.path.dirname(os.path.abspath(start))):
        if os.path.exists(os.path.join(candidate, 'model_config.json')):
            return candidate
    raise FileNotFoundError(f'{start}: no model_config.json here or in its parent; is this a '
                            'mofl.train output directory (or its checkpoints/ folder)?')


def restore_run(checkpoint_dir=None, checkpoint=None):
    """Rebuilds the model of a training run and restores a checkpoint.

    Args:
        checkpoint_dir: a mofl.train output dir or its `checkpoints/` subfolder.
        checkpoint: optional checkpoint prefix; default the run's latest checkpoint.

    Returns:
        (assets, model, step).

    Raises:
        FileNotFoundError: naming the folder or prefix, when there is nothing to restore.
    """
    run_dir = find_run_dir(checkpoint_dir, checkpoint)
    from mofl import run_dir as run_dir_lib   # imports the whole model: only when needed
    return run_dir_lib.load_run(run_dir, checkpoint=checkpoint)


class Exported(NamedTuple):
    """A loaded export: `reconstruct(images) -> dict of numpy` and `metadata` (dict of numpy)."""
    reconstruct: Callable[[np.ndarray], Dict[str, np.ndarray]]
    metadata: Dict[str, np.ndarray]


def load_exported(path):
    """Loads a SavedModel written by `export`.

    Args:
        path: the SavedModel directory.

    Returns:
        Exported(reconstruct, metadata):
            reconstruct(images): images [N, H, W, 3] (or one frame [H, W, 3]) of one person,
                float in [0, 1] or uint8 in [0, 255] -> dict name -> numpy array, as listed in
                OUTPUTS (strings decoded to str).
            metadata: dict name -> numpy array (strings decoded to str).

    Raises:
        FileNotFoundError: `path` is not a SavedModel directory.
    """
    if not tf.saved_model.contains_saved_model(path):
        raise FileNotFoundError(f'{path}: no SavedModel here (write one with '
                                '`python -m tools.export_savedmodel`)')
    description_path = os.path.join(path, SIGNATURE_FILE)
    if os.path.exists(description_path):
        with open(description_path) as f:
            visibility = json.load(f).get('model_config', {}).get('visibility')
        if visibility == 'zbuffer':   # the graph then calls the rasterizer op: register it first
            from mofl.render import rasterize
            rasterize.load_op_library()
    loaded = tf.saved_model.load(path)
    serve = loaded.signatures[SERVING_SIGNATURE]
    metadata = {k: _to_numpy(v) for k, v in loaded.signatures[METADATA_SIGNATURE]().items()}

    def reconstruct(images):
        images = np.asarray(images)
        if images.ndim == 3:
            images = images[None]
        if images.dtype == np.uint8:
            images = images.astype(np.float32) / 255.0
        served = serve(images=tf.constant(images, tf.float32))
        return rename_legacy_outputs({k: _to_numpy(v) for k, v in served.items()})

    reconstruct.loaded = loaded   # keeps the SavedModel's resources alive with the callable
    return Exported(reconstruct, metadata)


def rename_legacy_outputs(outputs):
    """`outputs` with the names of SavedModels exported before a rename replaced by today's
    (`LEGACY_OUTPUT_NAMES`: `rotation` → `euler_angles`, `reflectance_params` → `albedo_params`)."""
    outputs = dict(outputs)
    for old_name, name in LEGACY_OUTPUT_NAMES.items():
        if old_name in outputs and name not in outputs:
            outputs[name] = outputs.pop(old_name)
    return outputs


def _to_numpy(tensor):
    """Tensor -> numpy; string tensors become str (scalar) or arrays of str."""
    value = tensor.numpy()
    if isinstance(value, bytes):
        return value.decode('utf-8')
    if value.dtype == object:
        return np.array([v.decode('utf-8') for v in value.reshape(-1)]).reshape(value.shape)
    return value
