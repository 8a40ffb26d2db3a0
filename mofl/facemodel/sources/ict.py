"""Face-asset source `ict`: ICT-FaceKit's `FaceXModel/` data (MIT licence).

Reads the generic neutral mesh and the 53 ARKit-named expression blendshapes (plain `.obj` or
`.obj.gz`), keeps the full face area (vertices 0..9408, quads 0..9229, fan-triangulated), converts
centimetres to millimetres and maps ICT's 68 iBUG landmark vertices onto the paper's 66-point
layout. ICT's 100 identity modes are deliberately NOT read here: they are the ground-truth identity
model of the synthetic benchmark and the learner must never see them (docs/data.md "Synthetic ground
truth").
"""
import json
import os

import numpy as np

from mofl import landmarks as landmark_layout
from mofl.facemodel import assets as assets_lib
from mofl.facemodel import mesh_io
from mofl.facemodel import geometry

FACE_AREA_VERTICES = 9409        # vertices 0..9408
FACE_AREA_POLYGONS = 9230        # polygons 0..9229
NARROW_FACE_VERTICES = 6706      # vertices 0..6705: the face region used for evaluation
CM_TO_MM = 10.0
# Weight of jawOpen used for the open-mouth template that places the graph nodes (§3.2): at 0.15
# the ICT lips part by a few millimetres.
OPEN_MOUTH_WEIGHT = 0.15
# Constant initial albedo r̄ (eq. 6): a mid skin tone, RGB in [0, 1] like the input images.
DEFAULT_SKIN_COLOR = (0.70, 0.52, 0.42)
# The fraction of the mouth's half-width, around its centre, whose lip vertices the graph must
# keep apart; towards the corners the two lips are one surface anyway.
LIP_CENTRE_FRACTION = 0.6
CONTOUR_CANDIDATES = 12

_LICENSE = ('Derived from ICT-FaceKit (USC Institute for Creative Technologies), MIT licence: '
            'Copyright (c) 2020 USC Institute for Creative Technologies. Permission is hereby '
            'granted, free of charge, to any person obtaining a copy of this software and '
            'associated documentation files, to deal in the Software without restriction '
            '(full notice in ICT-FaceKit LICENSE).')


def find_obj(ict_dir, name):
    """The path of `name`.obj or `name`.obj.gz in `ict_dir`; FileNotFoundError naming both."""
    for candidate in (f'{name}.obj', f'{name}.obj.gz'):
        path = os.path.join(ict_dir, candidate)
        if os.path.exists(path):
            return path
    raise FileNotFoundError(f'{ict_dir}: missing {name}.obj (or .obj.gz); is this ICT-FaceKit\'s '
                            'FaceXModel folder?')


def build_source(ict_dir):
    """Builds the SourceMesh of the ICT face area.

    Args:
        ict_dir: folder with `generic_neutral_mesh.obj[.gz]`, the expression `.obj[.gz]` files and
            `vertex_indices.json`.

    Returns:
        mofl.facemodel.assets.SourceMesh (source='ict').
    """
    index_path = os.path.join(ict_dir, 'vertex_indices.json')
    if not os.path.exists(index_path):
        raise FileNotFoundError(f'{index_path}: missing; is {ict_dir} ICT-FaceKit\'s FaceXModel?')
    with open(index_path) as f:
        indices = json.load(f)
    landmarks68 = np.asarray(indices['idx_to_landmark_verts'], np.int32)
    names = list(indices['expressions'])

    neutral, polygons = mesh_io.read_obj(find_obj(ict_dir, 'generic_neutral_mesh'),
                                         max_vertices=FACE_AREA_VERTICES,
                                         max_polygons=FACE_AREA_POLYGONS)
    if neutral.shape[0] != FACE_AREA_VERTICES:
        raise ValueError(f'{ict_dir}: neutral mesh has {neutral.shape[0]} vertices in its face '
                         f'area, expected {FACE_AREA_VERTICES}')
    vertices = (neutral * CM_TO_MM).astype(np.float32)
    triangles = mesh_io.triangulate(polygons)

    basis = np.empty((len(names), FACE_AREA_VERTICES, 3), np.float32)
    for u, name in enumerate(names):
        shape = mesh_io.read_obj_vertices(find_obj(ict_dir, name), FACE_AREA_VERTICES)
        basis[u] = (shape - neutral) * CM_TO_MM

    landmarks66 = landmark_layout.drop_inner_mouth_corners(landmarks68, axis=0)
    jaw_open = basis[names.index('jawOpen')]
    upper_lip, lower_lip = geometry.split_lips(vertices, triangles, landmarks68, jaw_open,
                                               LIP_CENTRE_FRACTION)
    face_mask = np.zeros(FACE_AREA_VERTICES, bool)
    face_mask[:NARROW_FACE_VERTICES] = True
    contour = geometry.contour_candidate_lines(vertices, landmarks66[:17], face_mask,
                                               CONTOUR_CANDIDATES)
    return assets_lib.SourceMesh(
        vertices=vertices,
        triangles=triangles,
        face_mask=face_mask,
        landmark_indices=landmarks66,
        contour_candidates=contour,
        expression_basis=basis,
        expression_sigma=np.full(len(names), assets_lib.BLENDSHAPE_SIGMA, np.float32),
        expression_names=np.asarray(names),
        skin_color=np.asarray(DEFAULT_SKIN_COLOR, np.float32),
        open_mouth_vertices=(vertices + OPEN_MOUTH_WEIGHT * jaw_open).astype(np.float32),
        upper_lip_vertices=upper_lip,
        lower_lip_vertices=lower_lip,
        source='ict',
        license=_LICENSE)
