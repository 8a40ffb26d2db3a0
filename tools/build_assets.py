"""Builds a face-asset .npz (template, landmarks, expression basis, deformation graph).

    python -m tools.build_assets --source=ict --ict_dir=../shared/ict-facekit \
        --output=out/assets/ict.npz --preview=out/assets/ict.png
    python -m tools.build_assets --source=ict --target_vertices=2500 --output=out/assets/ict2500.npz
    python -m tools.build_assets --source=mediapipe --output=out/assets/mediapipe.npz
    python -m tools.build_assets --source=bfm --bfm_model=01_MorphableModel.mat \
        --bfm_expressions=Model_Expression.mat --bfm_landmarks=bfm68.txt --output=out/bfm.npz

`--source=auto` (the default) uses ICT-FaceKit when $MOFL_ICT_DIR or ../shared/ict-facekit
exists, else mediapipe. See docs/face_assets.md "Sources" for what each source provides.
`--target_vertices=N` decimates the source mesh to about N vertices first (quadric decimation,
everything carried over exactly, the coarse-to-full vertex map stored in the asset:
`mofl.facemodel.decimation`; docs/face_assets.md "Decimated assets"). `--asset=default:N` of the
other binaries builds and caches the same for the default source.
"""
import os
import sys
import time

from absl import app
from absl import flags
from absl import logging

from mofl import flags_common
from mofl import startup
startup.quiet_tensorflow()   # before anything imports TensorFlow

from mofl.facemodel import assets as assets_lib
from mofl.facemodel import default_assets
from mofl.facemodel import graph as graph_lib


def define_flags(flag_values=flags.FLAGS):
    """Defines the binary's flags in `flag_values`."""
    flags_common.define_flags(('ict_dir', 'output'), flag_values, required=('output',),
                              notes={'output': 'The asset .npz.'})
    flags.DEFINE_enum('source', 'auto', ['auto', 'ict', 'mediapipe', 'bfm'], 'Asset source.',
                      flag_values=flag_values)
    flags.DEFINE_string('image', None, 'mediapipe source: a frontal face photo to measure the '
                        'template on (default: scikit-image\'s astronaut).',
                        flag_values=flag_values)
    flags.DEFINE_string('bfm_model', None, 'bfm source: 01_MorphableModel.mat of BFM 2009.',
                        flag_values=flag_values)
    flags.DEFINE_string('bfm_expressions', None, 'bfm source: expression basis (.mat/.npz with '
                        'w_exp, sigma_exp[, mu_exp]).', flag_values=flag_values)
    flags.DEFINE_string('bfm_landmarks', None, 'bfm source: text file with 68 vertex indices.',
                        flag_values=flag_values)
    flags.DEFINE_float('bfm_units_to_mm', 0.001, 'bfm source: coordinate units to mm (µm: 0.001).',
                       flag_values=flag_values)
    flags.DEFINE_integer('num_nodes', None, 'Deformation graph size |G| (default: the paper\'s '
                         f'{default_assets.PAPER_NUM_NODES}; {default_assets.COARSE_NUM_NODES} '
                         'with --target_vertices).', flag_values=flag_values)
    flags.DEFINE_integer('target_vertices', 0, 'Decimate the source mesh to about this many '
                         'vertices (0: keep the full mesh).', lower_bound=0,
                         flag_values=flag_values)
    flags.DEFINE_integer('skin_k', 4, 'Nodes each vertex is skinned to.', flag_values=flag_values)
    flags.DEFINE_float('lip_cut_extension', 15.0, 'mm beyond the mouth corners within which graph '
                       'geodesics may not cross between the lips.', flag_values=flag_values)
    flags.DEFINE_string('preview', None, 'Optional PNG preview of the asset.',
                        flag_values=flag_values)


def main(argv, flag_values=flags.FLAGS):
    del argv
    source = flag_values.source
    ict_dir = flag_values.ict_dir
    if source == 'auto':
        source, ict_dir = default_assets.default_source()
    if source == 'ict':
        ict_dir = ict_dir or assets_lib.default_ict_dir()
        if not ict_dir:
            logging.error('--source=ict needs --ict_dir (or $MOFL_ICT_DIR / ../shared/ict-facekit)')
            return 2
    logging.info('Building the %s face asset%s', source, f' from {ict_dir}' if ict_dir else '')
    start = time.time()
    try:
        mesh = default_assets.build_source_mesh(
            source, ict_dir=ict_dir, image_path=flag_values.image, bfm_model=flag_values.bfm_model,
            bfm_expressions=flag_values.bfm_expressions, bfm_landmarks=flag_values.bfm_landmarks,
            bfm_units_to_mm=flag_values.bfm_units_to_mm)
        full_vertices = mesh.num_vertices
        if flag_values.target_vertices:
            from mofl.facemodel import decimation  # pylint: disable=import-outside-toplevel
            mesh = decimation.decimate_mesh(mesh, flag_values.target_vertices)
            logging.info('Decimated %d -> %d vertices', full_vertices, mesh.num_vertices)
        num_nodes = flag_values.num_nodes or (
            default_assets.COARSE_NUM_NODES if flag_values.target_vertices
            else default_assets.PAPER_NUM_NODES)
        assets = graph_lib.build_assets(mesh, num_nodes=num_nodes, k=flag_values.skin_k,
                                        lip_cut_extension=flag_values.lip_cut_extension)
    except (OSError, ValueError) as e:
        logging.error('Could not build the %s asset: %s', source, e)
        return 1
    assets.save(flag_values.output)
    decimated = (f' (decimated from {full_vertices})' if mesh.full_vertex_indices is not None
                 else '')
    print(f'{source} asset: {mesh.num_vertices} vertices{decimated}, '
          f'{len(mesh.triangles)} triangles, '
          f'{assets.graph.num_nodes} graph nodes, {len(assets.graph.edges)} graph edges, '
          f'{mesh.num_expressions} expressions, 66 landmarks -> {flag_values.output} '
          f'({time.time() - start:.1f} s)')
    if flag_values.preview:
        from mofl.facemodel import preview
        os.makedirs(os.path.dirname(os.path.abspath(flag_values.preview)), exist_ok=True)
        preview.write_preview(assets, flag_values.preview)
        print(f'preview -> {flag_values.preview}')
    return 0


if __name__ == '__main__':
    define_flags()
    sys.exit(app.run(main))
