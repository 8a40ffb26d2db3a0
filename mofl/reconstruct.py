r"""Reconstructs 3D faces from photos or a video with a trained FML model.

    python -m mofl.reconstruct --model=EXPORT_OR_RUN_DIR --input=photo.jpg --output_dir=out
    python -m mofl.reconstruct --model=... --input='people/ann_*.jpg' --output_dir=out
    python -m mofl.reconstruct --model=... --input=talk.mp4 --group_size=4 --output_dir=out

`--model` is a SavedModel written by `tools.export_savedmodel` (a folder with saved_model.pb) or
a `mofl.train` output directory (model_config.json, assets.npz, checkpoints/; its latest
checkpoint is used). Both go through `mofl.inference.load_model`, which returns the same
`ReconstructionModel`.

Every input frame goes through the preprocessing's face tracking and crop
(`mofl.data.face_tracking`: FaceMesh landmarks → `square_crop_box` → `crop_and_resize` to the
model's 240×240). Frames are then reconstructed in groups of one person: the group's frames
share the identity (α, β: geometry and albedo, paper §3.4) and each frame has its own
pose, expression and light. Images form one group when `--all_images_one_person` (the
default), else one group each; a video is cut into groups of `--group_size` consecutive frames
in which a face was found.

Per reconstructed frame NAME (the image's file name, or VIDEO_fNNNNN for frame NNNNN of a video)
in `--output_dir`:
- NAME.obj, NAME.ply: the posed-expression geometry (model space, mm) with the shaded vertex
  colours c_i (eq. 7); NAME_albedo.obj, NAME_albedo.ply: the same mesh with the albedo r (eq. 6).
- NAME.json: pose, lighting, named expression weights, identity parameters, crop box, detected
  and projected landmarks and the model's description (`frame_record`).
- NAME_overlay.png: input crop (detected landmarks green) | render over the input (projected
  landmarks red) | albedo | geometry (camera-space normal map).
For a group of several frames, FIRST_groupNNN_overlay.png (FIRST: the group's first frame, NNN:
the group number) stacks the frames' overlays; summary.json holds the run's counts.

Errors: an unreadable input or a frame without a face is logged, counted and skipped. Exit
status: 0 when at least one frame was reconstructed, 1 when none was, 2 when the model could not
be loaded or the arguments are wrong.
"""
import dataclasses
import json
import os
import sys
import time
from typing import List, Optional

import numpy as np

from mofl import startup
startup.quiet_tensorflow()   # before anything imports TensorFlow

from mofl import facemesh
from mofl import inference
from mofl.data import face_tracking
from mofl.data import inputs as inputs_lib
from mofl.facemodel import mesh_io
from mofl.render import overlay

EXIT_OK, EXIT_NOTHING_RECONSTRUCTED, EXIT_BAD_MODEL_OR_ARGS = 0, 1, 2


# ----------------------------------------------------------------------------- outputs


def frame_record(result: inference.FrameResult, model: inference.ReconstructionModel,
                 group_index, group_names, crop_scale):
    """The JSON-ready description of one reconstructed frame (NAME.json)."""
    face, out = result.face, result.outputs
    crop_size = model.image_size[0]
    euler_angles = np.asarray(out['euler_angles'], np.float64)
    projected = np.asarray(out['landmarks'], np.float64)
    rmse = float(np.sqrt(np.mean(np.sum((projected - face.landmarks_crop) ** 2, axis=-1))))
    as_list = lambda a: np.asarray(a, np.float64).round(6).tolist()
    return {
        'input': {'path': os.path.abspath(face.source), 'frame_index': face.frame_index,
                  'image_size_hw': list(face.input_size)},
        'group': {'index': group_index, 'size': len(group_names), 'members': group_names,
                  'note': 'shape_params and albedo_params are shared by the group'},
        'face': {'detection_score': face.score,
                 'crop_box': {'x0': float(face.box[0]), 'y0': float(face.box[1]),
                              'side': float(face.box[2])},
                 'crop_scale': crop_scale, 'crop_size': crop_size},
        'pose': {'rotation_euler_rad': as_list(euler_angles),
                 'rotation_euler_deg': as_list(np.rad2deg(euler_angles)),
                 'euler_order': '[pitch, yaw, roll], R = Rz(roll)·Ry(yaw)·Rx(pitch)',
                 'translation_mm': as_list(out['translation'])},
        'sh': as_list(out['sh']),
        'expression': {name: float(v) for name, v in zip(model.expression_names,
                                                          out['expression'])},
        'shape_params': as_list(out['shape_params']),
        'albedo_params': as_list(out['albedo_params']),
        'landmarks': {
            'detected_crop_px': as_list(face.landmarks_crop),
            'detected_image_px': as_list(face.landmarks_image),
            'projected_crop_px': as_list(projected),
            'projected_image_px': as_list(face_tracking.crop_to_image_coordinates(
                projected, face.box, crop_size)),
            'rmse_crop_px': rmse,
        },
        'model': model.info,
        'units': 'mesh files: model space, mm (x to image right, y up, z towards the viewer); '
                 'pixels: origin at the top-left corner, pixel centres at +0.5',
    }


def write_frame_outputs(result: inference.FrameResult, model: inference.ReconstructionModel,
                        output_dir, record) -> List[str]:
    """Writes NAME.obj/.ply (shaded), NAME_albedo.obj/.ply, NAME.json, NAME_overlay.png.

    Returns:
        the written paths.
    """
    stem = os.path.join(output_dir, result.face.name)
    vertices = result.outputs['vertices']
    header = mesh_header(model, result.face)
    paths = []
    for suffix, colors in (('', result.outputs['colors']), ('_albedo', result.outputs['albedo'])):
        mesh_io.write_obj(stem + suffix + '.obj', vertices, model.triangles, colors, header)
        mesh_io.write_ply(stem + suffix + '.ply', vertices, model.triangles, colors)
        paths += [stem + suffix + '.obj', stem + suffix + '.ply']
    record = dict(record, files={'mesh_shaded': [os.path.basename(p) for p in paths[:2]],
                                 'mesh_albedo': [os.path.basename(p) for p in paths[2:]],
                                 'overlay': os.path.basename(stem) + '_overlay.png'})
    with open(stem + '.json', 'w') as f:
        json.dump(record, f, indent=1)
    overlay.save_png(stem + '_overlay.png', result.overlay)
    return paths + [stem + '.json', stem + '_overlay.png']


def mesh_header(model: inference.ReconstructionModel, face: face_tracking.CroppedFace):
    """OBJ comment: what the file is and the face asset's licence."""
    lines = [f'mofl FML reconstruction of {os.path.basename(face.source)}'
             + ('' if face.frame_index is None else f' frame {face.frame_index}'),
             'model space, millimetres; x to image right, y up, z towards the viewer',
             f"face asset: {model.info['asset_source']}; model step {model.info['step']}"]
    if model.license:
        lines += ['', 'Face asset licence:'] + model.license.splitlines()
    else:
        lines += ['Face asset licence: see the licence of the asset this model was trained on']
    return '\n'.join(lines)


# ----------------------------------------------------------------------------- the run


@dataclasses.dataclass
class ReconstructConfig:
    """The binary's settings (its flags)."""
    model: str
    input: str
    output_dir: str
    group_size: int = 4
    frame_stride: int = 1
    max_frames: int = 0
    crop_scale: float = face_tracking.DEFAULT_CROP_SCALE
    all_images_one_person: bool = True
    min_detection_confidence: float = 0.5


def _unique_name(name, used):
    candidate, k = name, 2
    while candidate in used:
        candidate, k = f'{name}_{k}', k + 1
    used.add(candidate)
    return candidate


def print_progress(message):
    """Default progress printer: errors to stderr, everything else to stdout."""
    print(message, file=sys.stderr if message.startswith('ERROR') else sys.stdout, flush=True)


def iter_groups(config: ReconstructConfig, tracker, crop_size, counts, log=print_progress):
    """Yields lists of CroppedFace, one list per person group (see the module docstring).

    `counts` (a dict) receives frames_read, no_face, unreadable.
    """
    paths = inputs_lib.expand_inputs(config.input)
    videos = [p for p in paths if inputs_lib.is_video(p)]
    images = [p for p in paths if not inputs_lib.is_video(p)]
    used_names = set()
    pending = []
    for path in images:
        try:
            rgb = inputs_lib.read_image(path)
        except inputs_lib.InputError as e:
            counts['unreadable'] += 1
            log(f'ERROR unreadable input: {e}')
            continue
        counts['frames_read'] += 1
        name = _unique_name(os.path.splitext(os.path.basename(path))[0], used_names)
        face = face_tracking.crop_face(tracker, rgb, config.crop_scale, crop_size, name,
                                       path)
        if face is None:
            counts['no_face'] += 1
            log(f'ERROR no face found in {path}: skipped')
            continue
        log(f'  {path}: face found (score {face.score:.2f}, crop {face.box[2]:.0f} px)')
        if config.all_images_one_person:
            pending.append(face)
        else:
            yield [face]
    if pending:
        yield pending
    for path in videos:
        stem = _unique_name(os.path.splitext(os.path.basename(path))[0], used_names)
        group = []
        try:
            for number, rgb in inputs_lib.read_video_frames(path, config.frame_stride,
                                                            config.max_frames):
                counts['frames_read'] += 1
                face = face_tracking.crop_face(tracker, rgb, config.crop_scale, crop_size,
                                               f'{stem}_f{number:05d}', path, number)
                if face is None:
                    counts['no_face'] += 1
                    log(f'ERROR no face found in {path} frame {number}: skipped')
                    continue
                group.append(face)
                if len(group) == config.group_size:
                    yield group
                    group = []
        except inputs_lib.InputError as e:
            counts['unreadable'] += 1
            log(f'ERROR unreadable input: {e}')
        if group:
            yield group


def run(config: ReconstructConfig, model: Optional[inference.ReconstructionModel] = None,
        log=print_progress):
    """Reconstructs every input of `config` and writes the outputs.

    Args:
        config: ReconstructConfig.
        model: an already loaded model (default: `inference.load_model(config.model)`, which
            raises inference.ModelLoadError).
        log: progress printer.

    Returns:
        summary dict (also written to OUTPUT_DIR/summary.json): frames_read, reconstructed,
        no_face, unreadable, groups, files (count), seconds, and `frames` (names written).
    """
    if config.group_size < 1 or config.frame_stride < 1 or config.max_frames < 0:
        raise ValueError('--group_size and --frame_stride must be >= 1, --max_frames >= 0')
    start = time.time()
    model = model or inference.load_model(config.model)
    info = model.info
    log(f"model: {info['kind']} {info['path']} (step {info['step']}, {info['asset_source']} "
        f"asset, {len(model.expression_names)} expressions)")
    os.makedirs(config.output_dir, exist_ok=True)
    counts = {'frames_read': 0, 'reconstructed': 0, 'no_face': 0, 'unreadable': 0, 'groups': 0,
              'files': 0}
    names = []
    with facemesh.FaceTracker(config.min_detection_confidence) as tracker:
        for faces in iter_groups(config, tracker, model.image_size[0], counts, log):
            group_index = counts['groups']
            counts['groups'] += 1
            group_names = [f.name for f in faces]
            results = inference.reconstruct_group(model, faces)
            for result in results:
                record = frame_record(result, model, group_index, group_names, config.crop_scale)
                counts['files'] += len(write_frame_outputs(result, model, config.output_dir,
                                                           record))
                names.append(result.face.name)
                log(f"  wrote {result.face.name}.{{obj,ply,json}} + overlay (landmark rmse "
                    f"{record['landmarks']['rmse_crop_px']:.1f} px)")
            if len(results) > 1:
                group_path = os.path.join(config.output_dir,
                                          f'{group_names[0]}_group{group_index:03d}_overlay.png')
                overlay.save_png(group_path, overlay.stack_rows([r.overlay for r in results]))
                counts['files'] += 1
            counts['reconstructed'] += len(results)
            log(f'[group {group_index}] {len(results)} frame(s) reconstructed '
                f"({counts['reconstructed']} so far, {time.time() - start:.1f} s)")
    summary = dict(counts, seconds=round(time.time() - start, 2), frames=names,
                   model=info, input=config.input)
    with open(os.path.join(config.output_dir, 'summary.json'), 'w') as f:
        json.dump(summary, f, indent=1)
    return summary


def exit_status(summary):
    return EXIT_OK if summary['reconstructed'] > 0 else EXIT_NOTHING_RECONSTRUCTED


# ----------------------------------------------------------------------------- binary


def define_flags(flag_values=None):
    """Defines the binary's flags (ReconstructConfig's fields) in `flag_values` (None: absl's
    FLAGS)."""
    from absl import flags
    from mofl import flags_common
    flag_values = flags.FLAGS if flag_values is None else flag_values
    flags.DEFINE_string('input', None, 'Image file(s), comma-separated and/or globs, or a video '
                        'file.', flag_values=flag_values)
    flags.DEFINE_integer('group_size', ReconstructConfig.group_size, 'Video: consecutive face '
                         'frames per group sharing one identity.', flag_values=flag_values)
    flags.DEFINE_bool('all_images_one_person', ReconstructConfig.all_images_one_person,
                      'Images: reconstruct all of them as one person (shared identity); false: '
                      'each image alone.', flag_values=flag_values)
    flags_common.define_flags(
        ('model', 'output_dir') + flags_common.VIDEO_FLAGS, flag_values,
        config=ReconstructConfig, notes={
            'output_dir': 'Where the meshes, JSON and overlays go.',
            'max_frames': 'Video: frames reconstructed (after the stride).',
            'crop_scale': 'As tools.preprocess.'})
    flags.mark_flags_as_required(['model', 'input', 'output_dir'], flag_values=flag_values)


def main(argv, flag_values=None):
    """Reconstructs as the flags in `flag_values` (None: absl's FLAGS) say; returns the exit
    status."""
    from absl import flags
    from mofl import flags_common
    if len(argv) > 1:
        print(f'ERROR unexpected arguments: {argv[1:]}', file=sys.stderr)
        return EXIT_BAD_MODEL_OR_ARGS
    config = flags_common.config_from_flags(
        ReconstructConfig, flags.FLAGS if flag_values is None else flag_values)
    try:
        summary = run(config)
    except (inference.ModelLoadError, ValueError) as e:
        print(f'ERROR {e}', file=sys.stderr)
        return EXIT_BAD_MODEL_OR_ARGS
    print(f"done: {summary['reconstructed']} frame(s) reconstructed in {summary['groups']} "
          f"group(s) from {summary['frames_read']} frame(s) read; no face: {summary['no_face']}, "
          f"unreadable: {summary['unreadable']}; {summary['files']} files in "
          f"{config.output_dir} ({summary['seconds']:.1f} s)")
    status = exit_status(summary)
    if status != EXIT_OK:
        print('ERROR nothing was reconstructed', file=sys.stderr)
    return status


if __name__ == '__main__':
    from absl import app
    define_flags()
    sys.exit(app.run(main))
