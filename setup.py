"""Installs mofl and builds its custom TensorFlow op (the triangle rasterizer).

Install with `pip install --no-build-isolation -e .` so that the build sees the pinned TensorFlow of
the environment (the op must be compiled against the very TF it is loaded into). The op build lives
in `mofl/render/ops/build_ops.py`; it can also be run by hand:
`python -m mofl.render.ops.build_ops`.
"""
import importlib.util
import os

import setuptools
from setuptools.command.build_ext import build_ext

_HERE = os.path.dirname(os.path.abspath(__file__))


def _load_op_builder():
    """Imports build_ops.py by path, so setup.py never imports the mofl package itself."""
    path = os.path.join(_HERE, 'mofl', 'render', 'ops', 'build_ops.py')
    spec = importlib.util.spec_from_file_location('mofl_build_ops', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class BuildTensorFlowOps(build_ext):
    """Compiles the custom op libraries next to their sources (and into build_lib for wheels)."""

    def run(self):
        builder = _load_op_builder()
        built = builder.build_all(verbose=True)
        if not self.inplace and not self.editable_mode:
            for src in built:
                rel = os.path.relpath(src, _HERE)
                dst = os.path.join(self.build_lib, rel)
                os.makedirs(os.path.dirname(dst), exist_ok=True)
                self.copy_file(src, dst)

    def get_outputs(self):
        return []


setuptools.setup(
    name='mofl',
    version='0.1.0',
    description='FML: Face Model Learning from Videos (Tewari et al., CVPR 2019) in TensorFlow 2',
    # Only the library is installed: tools/ holds the binaries of this checkout, run from its
    # root as `python -m tools.X` (a top-level `tools` package in site-packages would be claimed
    # by any other project that installs one).
    packages=setuptools.find_packages(include=['mofl', 'mofl.*']),
    package_data={'mofl': ['render/ops/*.so', 'render/ops/*.cc', 'render/ops/*.h', 'assets/*.npz']},
    python_requires='>=3.10',
    # A sourceless placeholder extension makes setuptools run build_ext, which compiles our op.
    ext_modules=[setuptools.Extension('mofl.render.ops._placeholder', sources=[])],
    cmdclass={'build_ext': BuildTensorFlowOps},
    zip_safe=False,
)
