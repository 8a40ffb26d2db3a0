r"""Synthetic videos of ICT-FaceKit people, drawn by an independent renderer, for the real
preprocessing path (`tools.make_synthetic --videos`, then `tools.preprocess`).

Unlike `mofl.data.synthetic` (frames drawn by mofl's own rasterizer in the training crop, with the
model's camera, landmarks projected from the true mesh), these clips share none of the model's
forward model: Mitsuba 3 draws the full ICT head (eyes, teeth, mouth interior, specular skin with
texture, environment light with cast shadows; `mofl.data.mitsuba_faces`) into frames larger than
the crop, with another focal length per clip; the frames go through MPEG-4 compression. Everything
the learner sees then comes from `tools.preprocess`: decoding, mediapipe's detection, the crop,
landmarks, dense points and head pose. The true meshes travel only in a sidecar file beside each
clip, which `tools.preprocess` copies into the records for evaluation.

Per identity (stream (seed, identity, 0)): ICT identity weights w ~ N(0, 1) truncated at
`truncation` on the full head's 100 modes, and an appearance (`head_appearance.sample_appearance`).
Per clip (stream (seed, identity, clip + 1)), over its F frames (`VideoOptions`):
- camera: focal length f = W · r with r log-uniform in `focal_ratio` (≈ 16–60° horizontal field
  of view), principal point at the frame centre;
- placement: the face's landmark box spans a fraction `face_fraction` of the frame height seen
  frontally (so the 1.6× crop is 0.5–0.8 of it), its centre anywhere that keeps that crop inside
  the frame, drifting by up to `drift` of the frame width over the clip, depth ±5 %;
- head motion: yaw, pitch and roll follow a slow sine sweep each (centre, amplitude and phase
  random; |yaw| ≤ 50°), so the frames of a clip are distinct views;
- expressions: two draws of `synthetic_appearance.sample_expression_weights` (0–3 active
  blendshapes) blended smoothly from the first frame to the last;
- lighting (`head_appearance.sample_lighting`) and a cluttered static background
  (`synthetic_appearance.sample_background`);
- sensor noise σ uniform in `noise_sigma` per clip, then the clip is written with OpenCV's
  MPEG-4 Part 2 encoder (`mp4v`).

Sidecar `CLIP.gt.npz` (ground truth; never read by training): `gt_vertices` [V, 3] (identity,
neutral, on the face asset's vertices, mm, model space), `gt_expression_vertices` [F, V, 3],
`gt_identity_weights` [100], `euler` [F, 3] (pitch, yaw, roll), `translation` [F, 3] mm,
`focal_px`, `frame_size` (H, W), `gt_landmarks_image` [F, 66, 2] (the asset's 66 landmark
vertices projected with the true camera, image pixels) and `asset_fingerprint`.
"""
import dataclasses
import math
import os
import sys
import time
from typing import Callable, Optional, Tuple

import cv2
import numpy as np

from mofl import landmarks as landmark_layout
from mofl.data import head_pose
from mofl.data import synthetic_appearance
from mofl.data import synthetic_identity
from mofl.facemodel import decimation

SIDECAR_SUFFIX = '.gt.npz'
CODEC = 'mp4v'


@dataclasses.dataclass
class VideoOptions:
    """Ranges of the per-clip parameters (module docstring)."""
    frame_size: Tuple[int, int] = (240, 320)   # (H, W)
    frames_per_clip: int = 8
    fps: float = 25.0
    focal_ratio: Tuple[float, float] = (0.9, 3.5)
    face_fraction: Tuple[float, float] = (0.32, 0.5)
    drift: float = 0.05
    max_yaw_deg: float = 50.0
    yaw_centre_deg: float = 20.0
    yaw_amplitude_deg: Tuple[float, float] = (10.0, 30.0)
    pitch_centre_deg: float = 8.0
    pitch_amplitude_deg: Tuple[float, float] = (3.0, 10.0)
    roll_deg: float = 8.0
    max_active_expressions: int = 3
    noise_sigma: Tuple[float, float] = (0.004, 0.012)
    spp: int = 16


@dataclasses.dataclass
class ClipScene:
    """The random parameters of one clip.

    Attributes:
        identity_index, clip_index: numbers of the person and of the clip.
        identity_weights: [K] ground-truth identity weights.
        head: [Vh, 3] the person's neutral full head, mm.
        appearance, lighting: `head_appearance` HeadAppearance / Lighting.
        euler: [F, 3] (pitch, yaw, roll) radians; translation: [F, 3] mm.
        expression_weights: [F, b].
        focal_px: float; frame_size: (H, W).
        background: [H, W, 3] uint8.
        noise_sigma: sensor noise σ (of the [0, 1] range).
        seed: the renderer's sampling seed of the clip.
    """
    identity_index: int
    clip_index: int
    identity_weights: np.ndarray
    head: np.ndarray
    appearance: object
    lighting: object
    euler: np.ndarray
    translation: np.ndarray
    expression_weights: np.ndarray
    focal_px: float
    frame_size: Tuple[int, int]
    background: np.ndarray
    noise_sigma: float
    seed: int

    @property
    def identity_name(self):
        return identity_name(self.identity_index)

    @property
    def relative_path(self):
        """`ID/VIDEO/CLIP` (no extension), VoxCeleb2's layout."""
        return f'{self.identity_name}/video{self.clip_index:03d}/00001'


def identity_name(index):
    return f'synth{int(index):05d}'


def _rng(*keys):
    return np.random.default_rng([int(k) for k in keys])


def _smooth_sweep(rng, num_frames, centre, amplitude):
    """centre + amplitude · sin(ω t + φ) over t ∈ [0, 1] (ω ∈ [π, 2π])."""
    t = np.linspace(0.0, 1.0, num_frames)
    omega = rng.uniform(math.pi, 2.0 * math.pi)
    phase = rng.uniform(0.0, 2.0 * math.pi)
    return centre + amplitude * np.sin(omega * t + phase)


class VideoGenerator:
    """Draws and renders synthetic clips of ICT-FaceKit people.

    Args:
        head: `ict_head.IctHead` (the full head with identity and expression bases).
        mesh: the face asset's SourceMesh (ICT, full or decimated): the ground truth is stored
            on its vertices and its landmarks give the placement and `gt_landmarks_image`.
        seed: seed of every draw.
        options: `VideoOptions`.
        truncation: |w_k| bound of the identity weights.
        render_fn: the renderer, `mitsuba_faces.render` by default (same signature).

    Raises:
        ValueError: when `mesh` is not an ICT-FaceKit asset or its expressions differ from the
            head's.
    """

    def __init__(self, head, mesh, seed=0, options=None,
                 truncation=synthetic_identity.DEFAULT_TRUNCATION,
                 render_fn: Optional[Callable] = None):
        if str(mesh.source) != 'ict':
            raise ValueError(f'the synthetic videos draw ICT-FaceKit heads; the face asset is '
                             f'{mesh.source!r} (use the ICT asset)')
        if list(np.asarray(mesh.expression_names)) != list(head.expression_names):
            raise ValueError('the asset\'s expression blendshapes are not the ICT head\'s')
        self.head = head
        self.mesh = mesh
        self.seed = int(seed)
        self.options = options or VideoOptions()
        self.identity_model = synthetic_identity.LinearIdentityModel(
            name='ict', template=np.asarray(head.vertices, np.float32),
            basis=np.asarray(head.identity_basis, np.float32), truncation=truncation,
            description=f'ICT-FaceKit full head, {head.identity_basis.shape[0]} modes')
        if render_fn is None:
            from mofl.data import mitsuba_faces  # pylint: disable=import-outside-toplevel
            render_fn = mitsuba_faces.render
        self.render_fn = render_fn
        # The asset's landmarks as full-head vertices (the face area is the head's first part).
        self.landmark_vertices = decimation.full_vertex_ids(mesh.landmark_indices, mesh)
        self.face_area_vertices = int(mesh.full_num_vertices or mesh.num_vertices)

    def scene(self, identity_index, clip_index):
        """The random parameters of clip `clip_index` of person `identity_index`."""
        opt = self.options
        person = _rng(self.seed, identity_index, 0)
        weights = self.identity_model.sample_weights(person)
        head = self.identity_model.vertices(weights)
        from mofl.data import head_appearance  # pylint: disable=import-outside-toplevel
        appearance = head_appearance.sample_appearance(person)

        rng = _rng(self.seed, identity_index, clip_index + 1)
        f = int(opt.frames_per_clip)
        height, width = opt.frame_size
        focal = width * math.exp(rng.uniform(*np.log(opt.focal_ratio)))
        euler = np.stack([
            _smooth_sweep(rng, f, rng.uniform(-1, 1) * math.radians(opt.pitch_centre_deg),
                          math.radians(rng.uniform(*opt.pitch_amplitude_deg))),
            np.clip(_smooth_sweep(rng, f, rng.uniform(-1, 1) * math.radians(opt.yaw_centre_deg),
                                  math.radians(rng.uniform(*opt.yaw_amplitude_deg))),
                    -math.radians(opt.max_yaw_deg), math.radians(opt.max_yaw_deg)),
            _smooth_sweep(rng, f, 0.0, rng.uniform(-1, 1) * math.radians(opt.roll_deg)),
        ], axis=1)

        landmarks = head[self.landmark_vertices]
        centre = 0.5 * (landmarks.min(0) + landmarks.max(0))
        extent = float((landmarks.max(0)[:2] - landmarks.min(0)[:2]).max())
        box_px = height * rng.uniform(*opt.face_fraction)
        depth = focal * extent / box_px
        half_crop = 0.5 * landmark_layout.CROP_SCALE * box_px
        start = np.array([rng.uniform(half_crop, width - half_crop),
                          rng.uniform(half_crop, height - half_crop)])
        drift = rng.uniform(-1, 1, 2) * opt.drift * width
        t = np.linspace(0.0, 1.0, f)[:, None]
        pixel = np.clip(start + t * drift, half_crop, np.array([width, height]) - half_crop)
        depths = depth * (1.0 + rng.uniform(-0.05, 0.05) * t[:, 0])
        rotation = head_pose.euler_to_rotation(euler)
        centre_camera = np.stack([(pixel[:, 0] - width / 2.0) * depths / focal,
                                  -(pixel[:, 1] - height / 2.0) * depths / focal, -depths], 1)
        translation = centre_camera - np.einsum('fij,j->fi', rotation, centre)

        keys = synthetic_appearance.sample_expression_weights(
            rng, list(self.head.expression_names), 2, opt.max_active_expressions)
        blend = 0.5 - 0.5 * np.cos(math.pi * t)          # smooth from the first to the last
        expression = (1.0 - blend) * keys[0] + blend * keys[1]
        lighting = head_appearance.sample_lighting(rng)
        background = synthetic_appearance.sample_background(rng, (height, width))
        return ClipScene(
            identity_index=int(identity_index), clip_index=int(clip_index),
            identity_weights=weights, head=head, appearance=appearance, lighting=lighting,
            euler=euler.astype(np.float32), translation=translation.astype(np.float32),
            expression_weights=expression.astype(np.float32), focal_px=float(focal),
            frame_size=(int(height), int(width)),
            background=np.clip(background * 255.0 + 0.5, 0, 255).astype(np.uint8),
            noise_sigma=float(rng.uniform(*opt.noise_sigma)),
            seed=int(rng.integers(0, 2 ** 31 - 1)))

    def frame_meshes(self, scene):
        """[F, Vh, 3] the full head of every frame (identity + expression), mm."""
        return scene.head[None] + np.einsum('fb,bvc->fvc', scene.expression_weights,
                                            self.head.expression_basis)

    def render(self, scene):
        """Renders a clip.

        Returns:
            (frames [F, H, W, 3] uint8 with sensor noise, ground truth dict (module docstring)).
        """
        from mofl.render import camera as camera_lib  # pylint: disable=import-outside-toplevel
        height, width = scene.frame_size
        camera = camera_lib.Camera.centered((height, width), scene.focal_px)
        meshes = self.frame_meshes(scene)
        rotations = head_pose.euler_to_rotation(scene.euler)
        noise = _rng(self.seed, scene.identity_index, scene.clip_index + 1, 1)
        frames = []
        for k, vertices in enumerate(meshes):
            image = self.render_fn(vertices, rotations[k], scene.translation[k], camera,
                                   scene.appearance, scene.lighting, scene.background,
                                   spp=self.options.spp, seed=scene.seed + k, head=self.head)
            noisy = image / 255.0 + noise.normal(0.0, scene.noise_sigma, image.shape)
            frames.append(np.clip(noisy * 255.0 + 0.5, 0, 255).astype(np.uint8))
        face_area = meshes[:, :self.face_area_vertices]
        neutral = scene.head[:self.face_area_vertices]
        projected = np.stack([
            head_pose.project(mesh[self.landmark_vertices], rotation, translation,
                              scene.focal_px, scene.frame_size)
            for mesh, rotation, translation in zip(meshes, rotations, scene.translation)])
        ground_truth = {
            'gt_vertices': decimation.to_asset_topology(neutral, self.mesh).astype(np.float32),
            'gt_expression_vertices': decimation.to_asset_topology(
                face_area, self.mesh).astype(np.float32),
            'gt_identity_weights': scene.identity_weights.astype(np.float32),
            'euler': scene.euler, 'translation': scene.translation,
            'focal_px': np.float32(scene.focal_px), 'frame_size': np.asarray(scene.frame_size),
            'gt_landmarks_image': projected.astype(np.float32),
            'asset_fingerprint': np.asarray(self.mesh.fingerprint()),
        }
        return np.stack(frames), ground_truth


def write_clip(path, frames, fps):
    """Writes [F, H, W, 3] uint8 RGB frames as an MPEG-4 file (`CODEC`) via a temporary file.

    Raises:
        IOError: when OpenCV cannot write the file or the written file reads back short.
    """
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + '.tmp.mp4'
    height, width = frames.shape[1:3]
    writer = cv2.VideoWriter(tmp, cv2.VideoWriter_fourcc(*CODEC), float(fps), (width, height))
    if not writer.isOpened():
        raise IOError(f'{path}: OpenCV cannot open an {CODEC} video writer')
    for frame in frames:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    capture = cv2.VideoCapture(tmp)
    count = 0
    while capture.read()[0]:
        count += 1
    capture.release()
    if count != len(frames):
        raise IOError(f'{path}: wrote {len(frames)} frames, {count} read back')
    os.replace(tmp, path)


def sidecar_path(video_path):
    """`ID/VIDEO/CLIP.gt.npz` beside `ID/VIDEO/CLIP.mp4`."""
    return os.path.splitext(video_path)[0] + SIDECAR_SUFFIX


def read_sidecar(video_path):
    """The ground-truth sidecar beside `video_path` as {name: array}, or None without one."""
    path = sidecar_path(video_path)
    if not os.path.exists(path):
        return None
    with np.load(path, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


def write_sidecar(path, ground_truth):
    tmp = path + '.tmp.npz'
    np.savez_compressed(tmp, **ground_truth)
    os.replace(tmp, path)


def write_tree(output_dir, generator, num_identities, clips_per_identity, progress=True):
    """Renders and writes `num_identities` × `clips_per_identity` clips with their sidecars.

    Resumable: a clip whose video and sidecar both exist is skipped (each is written to a
    temporary file and renamed, the sidecar last).

    Returns:
        dict: `clips` written, `clips_skipped` (already there), `frames`, `render_seconds`,
        `seconds_per_frame`.
    """
    written = skipped = frames_done = 0
    start = time.time()
    total = int(num_identities) * int(clips_per_identity)
    for identity in range(int(num_identities)):
        for clip in range(int(clips_per_identity)):
            scene_path = os.path.join(output_dir, f'{identity_name(identity)}/video{clip:03d}/'
                                                  '00001.mp4')
            if os.path.exists(scene_path) and os.path.exists(sidecar_path(scene_path)):
                skipped += 1
                continue
            scene = generator.scene(identity, clip)
            frames, ground_truth = generator.render(scene)
            write_clip(scene_path, frames, generator.options.fps)
            write_sidecar(sidecar_path(scene_path), ground_truth)
            written += 1
            frames_done += len(frames)
            if progress:
                elapsed = time.time() - start
                print(f'\r{written + skipped}/{total} clips, '
                      f'{frames_done / max(elapsed, 1e-9):.2f} frames/s', end='', flush=True,
                      file=sys.stderr)
    if progress and total:
        print('', file=sys.stderr)
    seconds = time.time() - start
    return {'clips': written, 'clips_skipped': skipped, 'frames': frames_done,
            'render_seconds': round(seconds, 2),
            'seconds_per_frame': round(seconds / max(frames_done, 1), 4)}
