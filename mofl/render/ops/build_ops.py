"""Compiles mofl's custom TensorFlow op (the triangle rasterizer) with the installed TF's flags.

Run by setup.py's build_ext and runnable by hand: `python -m mofl.render.ops.build_ops`.

Writes `mofl/render/ops/rasterize_triangles.so`:
- always buildable: the op and its CPU kernel, one g++ call;
- when `nvcc` is on PATH and TensorFlow is built with CUDA: the same library with the CUDA kernel
  linked in (one nvcc call, one g++ call). If that fails, a warning is printed and the CPU-only
  library is built instead; the GPU part never fails an install.

Environment: `MOFL_CUDA_ARCHS` (e.g. "80,90") picks the SASS targets of the CUDA build;
`MOFL_SKIP_CUDA=1` builds the CPU-only library even where CUDA is available.
"""
import os
import shutil
import subprocess
import sys
import tempfile

OPS_DIR = os.path.dirname(os.path.abspath(__file__))
LIBRARY_PATH = os.path.join(OPS_DIR, 'rasterize_triangles.so')
CPU_SOURCE = os.path.join(OPS_DIR, 'rasterize_triangles.cc')
CUDA_SOURCE = os.path.join(OPS_DIR, 'rasterize_triangles_gpu.cu.cc')
DEFAULT_CUDA_ARCHS = ('75', '80', '86', '89', '90')

# No fused multiply-add anywhere: the kernels must round exactly like the pure-TF reference.
_CXX_FLAGS = ['-std=c++17', '-O3', '-fPIC', '-shared', '-D_GLIBCXX_USE_CXX11_ABI=1',
              '-ffp-contract=off']


def tensorflow_flags():
    """Returns (compile_flags, link_flags) of the installed TensorFlow."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    return list(tf.sysconfig.get_compile_flags()), list(tf.sysconfig.get_link_flags())


def cuda_home():
    """Returns the CUDA toolkit root holding the static CUDA runtime, or None without nvcc.

    Looks at $CUDA_HOME, $CUDA_PATH, the folder above the `nvcc` on PATH and /usr/local/cuda (the
    `nvcc` on PATH may be a wrapper script outside the toolkit).
    """
    nvcc = shutil.which('nvcc')
    if nvcc is None:
        return None
    candidates = [os.environ.get('CUDA_HOME'), os.environ.get('CUDA_PATH'),
                  os.path.dirname(os.path.dirname(os.path.realpath(nvcc))), '/usr/local/cuda']
    for root in candidates:
        if root and os.path.exists(os.path.join(root, 'lib64', 'libcudart_static.a')):
            return root
    return None


def nvcc_command(output_path, archs=None):
    """The nvcc command that compiles the CUDA kernel to an object file (no TF headers needed).

    Args:
        output_path: where the object file goes.
        archs: SASS architectures such as ('80', '90'); PTX of the first one is embedded too so
            newer GPUs can JIT it. Defaults to $MOFL_CUDA_ARCHS or DEFAULT_CUDA_ARCHS.

    Returns:
        The argument list.
    """
    compile_flags, _ = tensorflow_flags()
    if archs is None:
        env = os.environ.get('MOFL_CUDA_ARCHS')
        archs = tuple(a.strip() for a in env.split(',')) if env else DEFAULT_CUDA_ARCHS
    gencode = [f'-gencode=arch=compute_{a},code=sm_{a}' for a in archs]
    gencode.append(f'-gencode=arch=compute_{archs[0]},code=compute_{archs[0]}')
    includes = [f for f in compile_flags if f.startswith('-I')]
    # `-x cu`: nvcc would compile a .cu.cc file as plain C++.
    return (['nvcc', '-x', 'cu', '-c', CUDA_SOURCE, '-o', output_path, '-std=c++17', '-O3',
             '--fmad=false', '-Xcompiler', '-fPIC', '-D_GLIBCXX_USE_CXX11_ABI=1',
             f'-I{OPS_DIR}'] + includes + gencode)


def _run(command, verbose):
    if verbose:
        print(' '.join(command), flush=True)
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        # TF's headers print pages of warnings; the error is at the end.
        output = (result.stdout + result.stderr)[-4000:]
        raise RuntimeError(f'command failed ({result.returncode}): {" ".join(command)}\n'
                           f'...{output}')


def build_cpu_library(output_path=LIBRARY_PATH, verbose=False):
    """Builds the op with its CPU kernel only; returns the library path."""
    compile_flags, link_flags = tensorflow_flags()
    command = (['g++'] + _CXX_FLAGS + [f'-I{OPS_DIR}', CPU_SOURCE, '-o', output_path] +
               compile_flags + link_flags)
    _run(command, verbose)
    return output_path


def build_cuda_library(output_path=LIBRARY_PATH, verbose=False):
    """Builds the op with CPU and CUDA kernels (statically linked CUDA runtime)."""
    compile_flags, link_flags = tensorflow_flags()
    cuda_root = cuda_home()
    if cuda_root is None:
        raise RuntimeError('no CUDA toolkit with lib64/libcudart_static.a found (set CUDA_HOME)')
    with tempfile.TemporaryDirectory() as tmp:
        cuda_object = os.path.join(tmp, 'rasterize_triangles_gpu.cu.o')
        _run(nvcc_command(cuda_object), verbose)
        partial_path = os.path.join(tmp, 'rasterize_triangles.so')
        # The static CUDA runtime comes before TF's libraries: libtensorflow_framework exports a
        # CUDA 12 runtime shim that would otherwise satisfy our CUDA 13 calls. --exclude-libs
        # keeps our runtime private, so it never binds to or replaces TensorFlow's.
        cudart = os.path.join(cuda_root, 'lib64', 'libcudart_static.a')
        command = (['g++'] + _CXX_FLAGS +
                   ['-DMOFL_WITH_CUDA', f'-I{OPS_DIR}', CPU_SOURCE, cuda_object, cudart,
                    '-Wl,--exclude-libs,libcudart_static.a', '-o', partial_path] +
                   compile_flags + link_flags + ['-ldl', '-lrt', '-lpthread'])
        _run(command, verbose)
        shutil.move(partial_path, output_path)
    return output_path


def cuda_build_wanted():
    """True when nvcc is on PATH and the installed TensorFlow is built with CUDA."""
    if os.environ.get('MOFL_SKIP_CUDA') == '1' or shutil.which('nvcc') is None:
        return False
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    return bool(tf.test.is_built_with_cuda())


def build_all(verbose=False):
    """Builds every op library; returns the list of written .so paths."""
    if cuda_build_wanted():
        try:
            return [build_cuda_library(verbose=verbose)]
        except Exception as error:  # pylint: disable=broad-except
            print(f'WARNING: mofl could not build the CUDA kernel of the rasterizer op; building '
                  f'the CPU-only library instead. Reason:\n{error}', file=sys.stderr, flush=True)
    return [build_cpu_library(verbose=verbose)]


if __name__ == '__main__':
    print(build_all(verbose=True))
