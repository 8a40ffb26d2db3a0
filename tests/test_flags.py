"""The one flag layer (`mofl.flags_common`): every flag name is defined in one place, and every
binary defines its flags into the FlagValues it is given, never at import.

The first test parses the sources with `ast` (no module is imported, so no TensorFlow): each
`flags.DEFINE_*('NAME', ...)` of mofl/ and tools/ is a place, and so is each `Flag('NAME', ...)`
of mofl/flags_common.py (the shared specs; the binaries that take a shared flag call
`flags_common.define_flags`, which is not a place).
"""
import ast
import collections
import importlib
import os

from absl import flags
import pytest

from mofl import flags_common

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COMMON = os.path.join('mofl', 'flags_common.py')

# Every binary: what follows `python -m`.
BINARIES = ('mofl.train', 'mofl.evaluate', 'mofl.reconstruct') + tuple(sorted(
    f'tools.{name[:-3]}' for name in os.listdir(os.path.join(ROOT, 'tools'))
    if name.endswith('.py') and name != '__init__.py'))


def _sources():
    for top in ('mofl', 'tools'):
        for folder, _, names in os.walk(os.path.join(ROOT, top)):
            for name in sorted(names):
                if name.endswith('.py'):
                    path = os.path.join(folder, name)
                    yield os.path.relpath(path, ROOT), open(path, encoding='utf-8').read()


def _function_name(call):
    return call.func.attr if isinstance(call.func, ast.Attribute) else getattr(call.func, 'id', '')


def flag_definitions():
    """({name: [place, ...]}, [places of DEFINE calls whose name is not a literal]).

    A place is 'path:line'.
    """
    places, unnamed = collections.defaultdict(list), []
    for path, source in _sources():
        tree = ast.parse(source)
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            function = _function_name(node)
            named = node.args and isinstance(node.args[0], ast.Constant)
            if function == 'Flag' and path == COMMON and named:
                places[node.args[0].value].append(f'{path}:{node.lineno}')
                for keyword in node.keywords:
                    if keyword.arg == 'aliases':
                        for alias in ast.literal_eval(keyword.value):
                            places[alias].append(f'{path}:{node.lineno}')
            elif function.startswith('DEFINE_'):
                if named:
                    places[node.args[0].value].append(f'{path}:{node.lineno}')
                elif path != COMMON:   # the shared definer defines the specs' names
                    unnamed.append(f'{path}:{node.lineno}')
        # A DEFINE_* function used other than by calling it (passed to a helper) hides names.
        called = {id(node.func) for node in ast.walk(tree) if isinstance(node, ast.Call)}
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and node.attr.startswith('DEFINE_')
                    and path != COMMON and id(node) not in called):
                unnamed.append(f'{path}:{node.lineno}')
    return places, unnamed


def test_each_flag_name_is_defined_in_one_place():
    places, unnamed = flag_definitions()
    assert len(places) > 150    # the parse found the flags
    duplicated = {name: where for name, where in places.items() if len(where) > 1}
    assert not duplicated, ('flags defined in more than one place (define them once in '
                            f'mofl/flags_common.py and share them): {duplicated}')
    assert not unnamed, f'DEFINE_* calls whose flag name is not a literal: {unnamed}'


def _is_main_block(node):
    return isinstance(node, ast.If) and '__main__' in ast.unparse(node.test)


def test_no_binary_defines_flags_at_import():
    """Flags are defined inside `define_flags` (called under `__main__`), never at module level."""
    for path, source in _sources():
        for node in ast.parse(source).body:
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)) or _is_main_block(node):
                continue
            for call in ast.walk(node):
                if isinstance(call, ast.Call) and (
                        _function_name(call).startswith('DEFINE_') or
                        _function_name(call) in ('define_flags', 'define_asset_flag')):
                    pytest.fail(f'{path}:{call.lineno} defines flags at import')


def test_specs_are_complete():
    kinds = {'string', 'integer', 'float', 'boolean', 'enum', 'list'}
    for spec in flags_common.SPECS.values():
        assert spec.kind in kinds, spec.name
        assert spec.help.strip(), spec.name
        assert (spec.kind == 'enum') == bool(spec.enum_values), spec.name
    groups = (flags_common.ASSET_FLAGS, flags_common.DATA_FLAGS, flags_common.DATA_WRITING_FLAGS,
              flags_common.VIDEO_FLAGS, flags_common.OUTPUT_FLAGS, flags_common.EVALUATION_FLAGS,
              flags_common.MODEL_FLAGS, flags_common.TRAINING_FLAGS)
    grouped = {name for group in groups for name in group}
    assert grouped == set(flags_common.SPECS), 'every spec is in a group, every name a spec'


def test_define_flags_defaults_notes_and_config():
    import dataclasses   # pylint: disable=import-outside-toplevel

    @dataclasses.dataclass
    class Config:
        data: str = 'from-config'
        num_frames: int = 7
        image_size: tuple = (96, 96)
        other: float = 0.5

    flag_values = flags.FlagValues()
    flags_common.define_flags(('data', 'num_frames', 'image_size', 'seed'), flag_values,
                              config=Config, defaults={'seed': 3}, notes={'seed': 'the test.'},
                              lower_bounds={'num_frames': 1})
    assert flag_values['data'].default == 'from-config'
    assert flag_values['num_frames'].default == 7
    assert flag_values['image_size'].default == 96
    assert flag_values['seed'].default == 3
    assert flag_values['seed'].help == 'Seed of the random draws. The test.'
    assert 'data' in [f.name for f in flag_values.get_key_flags_for_module(__name__)]
    flag_values(['test', '--data=x', '--num_frames=2'])
    config = flags_common.config_from_flags(Config, flag_values, image_size=(64, 64))
    assert config == Config(data='x', num_frames=2, image_size=(64, 64), other=0.5)
    with pytest.raises(flags.IllegalFlagValueError):
        flag_values['num_frames'].parse('0')
    with pytest.raises(ValueError, match='not among'):
        flags_common.define_flags(('seed',), flags.FlagValues(), defaults={'data': 'x'})


def test_asset_flag_keeps_its_help():
    flag_values = flags.FlagValues()
    flags_common.define_asset_flag('default: the default asset.', flag_values=flag_values)
    assert flag_values['asset'].help == (flags_common.ASSET_HELP + '. Default: the default '
                                         'asset.')
    assert flag_values['asset'].default is None


@pytest.mark.parametrize('module', BINARIES)
def test_binary_defines_its_flags_into_the_flag_values_it_is_given(module):
    """Importing a binary claims none of its flag names in absl's FLAGS; `define_flags` fills the
    given FlagValues, filed under the binary (its --help lists them), once per FlagValues."""
    binary = importlib.import_module(module)
    first, second = flags.FlagValues(), flags.FlagValues()
    binary.define_flags(first)
    binary.define_flags(second)
    assert set(first) == set(second) and len(first) > 0
    # (Libraries such as TensorFlow define their own flags in absl's FLAGS when imported.)
    assert not set(first) & set(flags.FLAGS), "a binary's flag is in absl's FLAGS"
    key = {f.name for f in first.get_key_flags_for_module(module)}
    assert key == set(first), set(first) - key
