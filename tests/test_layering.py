"""The layers of mofl (docs/architecture.md "Layers"): imports point down the layers only.

From the bottom: base (paper sizes, landmark layouts, the FaceMesh detector, sample paths,
start-up, shared flags) → facemodel → render → losses (and the optimiser) → nets → model → data →
libraries (run directory, export, inference, fits, evaluation, the trainer and its parts) →
binaries (`mofl.train`, `mofl.reconstruct`, `mofl.evaluate`, `tools/*`). A module may import its
own layer or any layer below it, never one above, and nothing imports a binary. A lazy import
inside a function counts too.

Every module's source is parsed with `ast` (no module is imported, so no TensorFlow): a module
missing from `LAYER_OF_MODULE` fails the test too, so a new module is placed in a layer when it
is added.
"""
import ast
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

LAYERS = ('base', 'facemodel', 'render', 'losses', 'nets', 'model', 'data', 'libraries',
          'binaries')

# Module or package (all modules below it) -> layer. The longest matching entry wins.
LAYER_OF_MODULE = {
    'mofl': 'base',   # the package's own __init__ only (`INIT_ONLY`)
    'mofl.paper_constants': 'base',
    'mofl.landmarks': 'base',
    'mofl.facemesh': 'base',
    'mofl.sample_data': 'base',
    'mofl.startup': 'base',
    'mofl.flags_common': 'base',
    'mofl.facemodel': 'facemodel',
    'mofl.render': 'render',
    'mofl.losses': 'losses',
    'mofl.optim': 'losses',
    'mofl.nets': 'nets',
    'mofl.model': 'model',
    'mofl.data': 'data',
    'mofl.run_dir': 'libraries',
    'mofl.export': 'libraries',
    'mofl.inference': 'libraries',
    'mofl.fitting': 'libraries',
    'mofl.evaluation': 'libraries',
    'mofl.train_config': 'libraries',
    'mofl.train_checkpoint': 'libraries',
    'mofl.train_summaries': 'libraries',
    'mofl.trainer': 'libraries',
    'mofl.train': 'binaries',
    'mofl.reconstruct': 'binaries',
    'mofl.evaluate': 'binaries',
    'tools': 'binaries',
}

# Packages whose entry holds for their own __init__ only, not for the modules below them (a new
# module of mofl/ must get its own entry).
INIT_ONLY = ('mofl',)


def layer_of(module):
    """The layer of a dotted module name (or of a name inside a module), None if not ours."""
    parts = module.split('.')
    for end in range(len(parts), 0, -1):
        prefix = '.'.join(parts[:end])
        if prefix in INIT_ONLY and end < len(parts):
            continue
        layer = LAYER_OF_MODULE.get(prefix)
        if layer is not None:
            return layer
    return None


def imported_names(module, source, is_package=False):
    """(line, dotted name) of every import of `source`, wherever it is (lazy ones included).

    `from a.b import c` gives `a.b.c` (c may be a module or a name in a.b: both lie in a.b's
    layer or below it, and `layer_of` finds the right one); relative imports are resolved
    against `module` (a package's `__init__` when `is_package`).
    """
    package = module if is_package else module.rpartition('.')[0]
    names = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ''
            if node.level:
                parts = package.split('.')
                parts = parts[:len(parts) - (node.level - 1)]
                base = '.'.join(parts + ([node.module] if node.module else []))
            names += [(node.lineno, f'{base}.{alias.name}') for alias in node.names]
    return names


def layering_errors(module, source, is_package=False, path=None):
    """Messages for every import of `source` that points up the layers or at a binary.

    Args:
        module: the dotted name of the module whose source it is.
        source: its Python source.
        is_package: `source` is the package `module`'s `__init__.py`.
        path: shown in the messages (default: the module name).
    """
    path = path or module
    own = layer_of(module)
    if own is None:
        return [f'{path}: {module} is in no layer (add it to LAYER_OF_MODULE)']
    errors = []
    for line, name in imported_names(module, source, is_package):
        target = layer_of(name)
        if target is None or name == module:
            continue
        if target == 'binaries':
            errors.append(f'{path}:{line}: {module} ({own}) imports {name}, a binary')
        elif LAYERS.index(target) > LAYERS.index(own):
            errors.append(f'{path}:{line}: {module} ({own}) imports {name} ({target}), a higher '
                          'layer')
    return errors


def modules_under(root, top):
    """(path, dotted name, is_package) of every .py file under root/top."""
    found = []
    for directory, _, files in os.walk(os.path.join(root, top)):
        for name in sorted(files):
            if not name.endswith('.py'):
                continue
            path = os.path.join(directory, name)
            module = os.path.relpath(path, root)[:-len('.py')].replace(os.sep, '.')
            is_package = name == '__init__.py'
            if is_package:
                module = module[:-len('.__init__')]
            found.append((path, module, is_package))
    return found


def tree_errors(root):
    """`layering_errors` of every module under root/mofl and root/tools."""
    errors = []
    for top in ('mofl', 'tools'):
        for path, module, is_package in modules_under(root, top):
            with open(path, encoding='utf-8') as f:
                source = f.read()
            errors += layering_errors(module, source, is_package, os.path.relpath(path, root))
    return errors


def test_every_module_imports_only_its_layer_or_lower_ones():
    modules = modules_under(ROOT, 'mofl')
    assert len(modules) > 50          # the walk found the package
    errors = tree_errors(ROOT)
    assert not errors, '\n'.join(errors)


def test_the_layer_table_names_no_missing_module():
    """Every entry of the table is a module or package of the checkout (no stale names)."""
    for name in LAYER_OF_MODULE:
        path = os.path.join(ROOT, *name.split('.'))
        assert os.path.isdir(path) or os.path.isfile(path + '.py'), name


_PLANTED = '''
import numpy as np

from mofl import landmarks                 # base: below
from mofl.render import camera             # own layer
from mofl.data import records              # data: above


def lazy():
    import mofl.model                      # model: above, inside a function
    from mofl import train                 # a binary
    from mofl.train_config import LOSS_TERMS   # libraries: above
    from . import shading                  # relative, own layer
    from ..nets import fml_network         # relative, above
    return np, landmarks, camera, records, mofl.model, train, LOSS_TERMS, shading, fml_network
'''


def test_checker_reports_planted_upward_imports():
    errors = layering_errors('mofl.render.planted', _PLANTED)
    assert [e.split(':')[1] for e in errors] == ['6', '10', '11', '12', '14']
    assert 'imports mofl.data.records (data), a higher layer' in errors[0]
    assert 'imports mofl.model (model), a higher layer' in errors[1]
    assert 'imports mofl.train, a binary' in errors[2]
    assert 'imports mofl.train_config.LOSS_TERMS (libraries)' in errors[3]
    assert 'imports mofl.nets.fml_network (nets)' in errors[4]
    # The same imports from the top of the data layer point down (the binary still does not).
    errors = layering_errors('mofl.data.planted', _PLANTED.replace('..nets', '..losses'))
    assert len(errors) == 2 and 'a binary' in errors[0] and '(libraries)' in errors[1]


def test_checker_reports_a_planted_module_in_a_copy_of_the_tree(tmp_path):
    facemodel = tmp_path / 'mofl' / 'facemodel'
    facemodel.mkdir(parents=True)
    (tmp_path / 'mofl' / '__init__.py').write_text('')
    (facemodel / '__init__.py').write_text('from mofl.facemodel import mesh_io\n')
    (facemodel / 'mesh_io.py').write_text('import numpy as np\n')
    assert tree_errors(str(tmp_path)) == []
    (facemodel / 'mesh_io.py').write_text(
        'import numpy as np\n\n\ndef load():\n    from mofl.nets import fml_network\n')
    assert tree_errors(str(tmp_path)) == [
        'mofl/facemodel/mesh_io.py:5: mofl.facemodel.mesh_io (facemodel) imports '
        'mofl.nets.fml_network (nets), a higher layer']
    (tmp_path / 'mofl' / 'newcomer.py').write_text('')
    assert ('mofl/newcomer.py: mofl.newcomer is in no layer (add it to LAYER_OF_MODULE)'
            in tree_errors(str(tmp_path)))


@pytest.mark.parametrize('module,layer', [
    ('mofl.train', 'binaries'), ('mofl.train_config', 'libraries'), ('mofl', 'base'),
    ('mofl.data.records', 'data'), ('mofl.nets.fml_network.FmlNetwork', 'nets'),
    ('tools.preprocess', 'binaries'), ('numpy', None), ('mofliness', None),
    ('mofl.newcomer', None)])
def test_layer_of_matches_whole_name_parts(module, layer):
    assert layer_of(module) == layer
