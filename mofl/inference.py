"""Running a trained FML model on cropped faces: the library behind `mofl.reconstruct`.

`load_model` opens a SavedModel written by `tools.export_savedmodel` (a folder with
saved_model.pb) or a `mofl.train` output directory (model_config.json, assets.npz, checkpoints/;
its latest checkpoint is used) and returns the same `ReconstructionModel` for both.
`reconstruct_group` runs it on the `face_tracking.CroppedFace` crops of one person (the frames
share the identity α, β; paper §3.4) and renders each frame's overlay row.
"""
import dataclasses
import os
from typing import Callable, Dict, List, Tuple

import numpy as np

from mofl.data import face_tracking
from mofl.render import camera as camera_lib
from mofl.render import image_renderer
from mofl.render import overlay

PROJECTED_LANDMARK_COLOR = (255, 64, 64)
DETECTED_LANDMARK_COLOR = (0, 255, 0)


class ModelLoadError(RuntimeError):
    """`--model` names nothing loadable; the message says what was expected."""


@dataclasses.dataclass
class ReconstructionModel:
    """A trained model behind one interface, whether it came from a SavedModel or a checkpoint.

    Attributes:
        reconstruct: images [N, H, W, 3] float32 in [0, 1] of ONE person -> dict of numpy arrays
            named as in `mofl.export.OUTPUTS` (vertices [N, V, 3], identity_vertices [V, 3],
            albedo [V, 3], colors [N, V, 3], euler_angles [N, 3], translation [N, 3], sh [N, 27],
            expression [N, b], shape_params [g], albedo_params [a], landmarks [N, 66, 2],
            ...).
        triangles: [T, 3] int32.
        expression_names: [b] str.
        camera: the model's camera (crop intrinsics and image size).
        license: licence notice of the face asset ('' when the source does not carry one).
        info: JSON-ready description: kind ('saved_model' | 'checkpoint'), path, step,
            asset_source, shape_dim, albedo_dim, focal_length, image_size, visibility_mode.
    """
    reconstruct: Callable[[np.ndarray], Dict[str, np.ndarray]]
    triangles: np.ndarray
    expression_names: List[str]
    camera: camera_lib.Camera
    license: str
    info: dict

    @property
    def image_size(self) -> Tuple[int, int]:
        return tuple(self.camera.image_size)


def load_model(path) -> ReconstructionModel:
    """Loads `path`: a SavedModel folder (saved_model.pb) or a mofl.train output directory
    (model_config.json; also accepted: its checkpoints/ folder).

    Raises:
        ModelLoadError: naming the path and what it lacks.
    """
    from mofl import export as export_lib   # TensorFlow loads only once a model is needed
    if not path or not os.path.exists(path):
        raise ModelLoadError(f'--model={path!r}: no such file or directory')
    if not os.path.isdir(path):
        raise ModelLoadError(f'--model={path}: not a folder; expected a SavedModel (with '
                             'saved_model.pb) or a mofl.train output directory (with '
                             'model_config.json)')
    if os.path.exists(os.path.join(path, 'saved_model.pb')):
        try:
            exported = export_lib.load_exported(path)
        except (OSError, ValueError) as e:
            raise ModelLoadError(f'--model={path}: could not load the SavedModel ({e})') from e
        return _from_metadata(exported.reconstruct, exported.metadata,
                              license_text=str(exported.metadata.get('license', '')),
                              kind='saved_model', path=path)
    try:
        assets, model, step = export_lib.restore_run(checkpoint_dir=path)
    except (FileNotFoundError, ValueError) as e:
        raise ModelLoadError(f'--model={path}: neither a SavedModel (no saved_model.pb) nor '
                             f'a loadable mofl.train output directory ({e})') from e
    # The export module's serving function is the very graph a SavedModel would hold, so both
    # sources give identical outputs.
    module = export_lib.ExportModule(model, assets, step)

    def reconstruct(images):
        outputs = module.reconstruct(np.asarray(images, np.float32))
        return {name: value.numpy() for name, value in outputs.items()}

    metadata = {name: export_lib._to_numpy(value)  # pylint: disable=protected-access
                for name, value in module.metadata().items()}
    return _from_metadata(reconstruct, metadata, license_text=str(assets.mesh.license),
                          kind='checkpoint', path=path)


def _from_metadata(reconstruct, metadata, license_text, kind, path):
    """A ReconstructionModel from the export's `metadata` dict (the same for both sources)."""
    height, width = (int(s) for s in metadata['image_size'])
    focal = float(metadata['focal_length'])
    principal_u, principal_v = (float(c) for c in metadata['principal_point'])
    camera = camera_lib.Camera(focal_x=focal, focal_y=focal, principal_x=principal_u,
                               principal_y=principal_v, image_size=(height, width))
    info = {
        'kind': kind,
        'path': os.path.abspath(path),
        'step': int(metadata['step']),
        'asset_source': str(metadata['asset_source']),
        'shape_dim': int(metadata['shape_dim']),
        'albedo_dim': int(metadata['albedo_dim']),
        'focal_length_px': focal,
        'principal_point_px': [principal_u, principal_v],
        'image_size_hw': [height, width],
        'visibility_mode': str(metadata.get('visibility_mode', '')),
    }
    return ReconstructionModel(
        reconstruct=reconstruct, triangles=np.asarray(metadata['triangles'], np.int32),
        expression_names=[str(n) for n in np.asarray(metadata['expression_names']).reshape(-1)],
        camera=camera, license=license_text, info=info)


@dataclasses.dataclass
class FrameResult:
    """The model's outputs for one frame of a group (numpy; shapes as in `ReconstructionModel`,
    without the frame axis).

    Attributes:
        face: the frame's CroppedFace.
        outputs: name -> array; the identity outputs are the group's shared values.
        overlay: uint8 [S, 4·S + 6, 3], see `overlay_row`.
    """
    face: face_tracking.CroppedFace
    outputs: Dict[str, np.ndarray]
    overlay: np.ndarray


def reconstruct_group(model: ReconstructionModel,
                      faces: List[face_tracking.CroppedFace]) -> List[FrameResult]:
    """Reconstructs the frames of one person together and renders their overlays.

    Args:
        model: a ReconstructionModel.
        faces: the group's CroppedFace list (N ≥ 1), crops of the model's input size.

    Returns:
        one FrameResult per face; identity outputs (shape_params, albedo_params, albedo,
        identity_vertices) are the group's shared values.
    """
    images = np.stack([f.crop for f in faces]).astype(np.float32) / 255.0   # [N, S, S, 3]
    outputs = model.reconstruct(images)
    rendered = image_renderer.render_image(
        outputs['vertices'], model.triangles, outputs['albedo'], outputs['sh'],
        outputs['euler_angles'], outputs['translation'], camera=model.camera, background=images)
    shared = {'identity_vertices', 'albedo', 'shape_params', 'albedo_params', 'triangles'}
    results = []
    for i, face in enumerate(faces):
        frame = {k: (v if k in shared else v[i]) for k, v in outputs.items()}
        results.append(FrameResult(face=face, outputs=frame,
                                   overlay=overlay_row(face, frame, rendered, i)))
    return results


def overlay_row(face, frame_outputs, rendered, index):
    """uint8 [S, 4·S + 6, 3]: input crop | render over input | albedo | geometry (normals)."""
    crop = overlay.draw_landmarks(face.crop, face.landmarks_crop, DETECTED_LANDMARK_COLOR)
    render = overlay.draw_landmarks(np.asarray(rendered.image[index]),
                                    frame_outputs['landmarks'], PROJECTED_LANDMARK_COLOR)
    panels = [crop, render, np.asarray(rendered.albedo[index]),
              np.asarray(rendered.normals[index])]
    return overlay.side_by_side(panels, labels=['input', 'render', 'albedo', 'geometry'])
