"""Runs a binary's `main` in the pytest process, as `python -m MODULE ARGS` runs it, without the
TensorFlow start of a subprocess (5–15 s on a 2-core machine).

The binaries claim absl flag names at import (`--output_dir`, `--data`, ...), and two modules may
not define the same name in one FLAGS. So `run_main` gives the binary a FLAGS of its own for the
call: absl's own flags only, the binary (and every other module that defined flags) imported
afresh into it; afterwards FLAGS, the flag values and `sys.modules` are as before. Not restored:
global random seeds a binary sets (the trainer calls `keras.utils.set_random_seed`; no test
relies on the seeds it inherits), and a flag-defining module that a binary imports for the first
time stays imported without its flags (no binary does that today: each defines its own flags or
uses `mofl.flags_common`).

Tests whose point is the process itself (SIGKILL and resume, devices set before TensorFlow
starts, TensorFlow's silent start-up, op determinism for a whole run) keep a real subprocess.
"""
import contextlib
import dataclasses
import importlib
import io
import logging
import sys

from absl import app
from absl import flags
from absl import logging as absl_logging
from absl.testing import flagsaver

# FlagValues' registries (name-mangled attributes of its __dict__) that a binary's import fills.
_REGISTRIES = ('__flags', '__hiddenflags', '__flags_by_module', '__flags_by_module_id',
               '__key_flags_by_module', '__flags_parsed', '__unparse_flags_called')


@dataclasses.dataclass
class Result:
    """What subprocess.run(capture_output=True, text=True) would have returned."""
    returncode: int
    stdout: str
    stderr: str


def _is_absl(module_name):
    return module_name == 'absl' or module_name.startswith('absl.')


@contextlib.contextmanager
def _own_flags():
    """FLAGS holds absl's flags only inside; its registries and values come back afterwards.

    Yields the names of the modules (other than absl's) that had defined flags: the binary may
    import them, and they must run their DEFINEs again into the emptied FLAGS.
    """
    state = flags.FLAGS.__dict__
    saved = {key: state[key] for key in _REGISTRIES}
    absl_flags = {id(flag) for module, module_flags in saved['__flags_by_module'].items()
                  if _is_absl(module) for flag in module_flags}
    definers = [m for m in saved['__flags_by_module'] if not _is_absl(m)]
    with flagsaver.flagsaver():
        state['__flags'] = {name: flag for name, flag in saved['__flags'].items()
                            if id(flag) in absl_flags}
        state['__hiddenflags'] = set()
        for key in ('__flags_by_module', '__flags_by_module_id', '__key_flags_by_module'):
            state[key] = {module: [f for f in module_flags if id(f) in absl_flags]
                          for module, module_flags in saved[key].items()
                          if isinstance(module, int) or _is_absl(module)}
        state['__flags_parsed'] = False
        state['__unparse_flags_called'] = False
        try:
            yield definers
        finally:
            state.update(saved)


@contextlib.contextmanager
def _fresh_modules(names):
    """Imports of `names` inside run the modules again; sys.modules, and the attributes of their
    packages that an import sets (`tools.make_synthetic`), are restored afterwards."""
    missing = object()

    def parent(name):
        package, _, child = name.rpartition('.')
        return sys.modules.get(package), child

    attributes = {}
    for name in names:
        package, child = parent(name)
        attributes[name] = missing if package is None else getattr(package, child, missing)
    saved = {name: sys.modules.pop(name) for name in names if name in sys.modules}
    try:
        yield
    finally:
        for name in names:
            sys.modules.pop(name, None)
        sys.modules.update(saved)
        for name, value in attributes.items():
            package, child = parent(name)
            if package is None:
                continue
            if value is not missing:
                setattr(package, child, value)
            elif hasattr(package, child):
                delattr(package, child)


class _TextHandler(logging.Handler):
    """absl log lines as the binary's stderr shows them (level letter first, then the text)."""

    def __init__(self, stream):
        super().__init__(logging.DEBUG)
        self.stream = stream

    def emit(self, record):
        self.stream.write(f'{record.levelname[0]} {record.getMessage()}\n')


@contextlib.contextmanager
def _same_op_determinism():
    """`--deterministic` turns TensorFlow's op determinism on for the whole process: off again."""
    def enabled():
        if 'tensorflow' not in sys.modules:
            return False
        from tensorflow.python.framework import config  # pylint: disable=import-outside-toplevel
        return config.is_op_determinism_enabled()
    before = enabled()
    try:
        yield
    finally:
        if enabled() != before:
            from tensorflow.python.framework import config  # pylint: disable=import-outside-toplevel
            (config.enable_op_determinism if before else config.disable_op_determinism)()


@contextlib.contextmanager
def binary_flags(module):
    """Inside: `module` imported afresh, its flags alone (with absl's) in absl's FLAGS.

    Yields:
        the freshly imported module.
    """
    with _own_flags() as definers, _fresh_modules([module] + definers):
        binary = importlib.import_module(module)
        if hasattr(binary, '_define_flags'):   # flags defined only under `__name__ == '__main__'`
            binary._define_flags()  # pylint: disable=protected-access
        yield binary


def run_main(module, args, prepare=None):
    """Imports `module` into a FLAGS of its own, parses `args` as app.run does, calls main.

    Args:
        module: the binary's module name (what follows `python -m`).
        args: its command-line arguments.
        prepare: optional function called with the freshly imported module before main runs
            (e.g. to monkeypatch one of its functions).

    Returns:
        Result: main's return value (or SystemExit code) as returncode, what it printed to
        sys.stdout, and what it printed to sys.stderr or logged through absl logging.
    """
    stdout, stderr = io.StringIO(), io.StringIO()
    handler = _TextHandler(stderr)
    absl_logger = absl_logging.get_absl_logger()
    level = absl_logger.level
    code = 0
    with binary_flags(module) as binary, _same_op_determinism():
        if prepare is not None:
            prepare(binary)
        absl_logger.addHandler(handler)
        absl_logger.setLevel(logging.INFO)        # app.run's default verbosity
        try:
            with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
                try:
                    argv = app.parse_flags_with_usage([module] + list(args))
                    code = binary.main(argv)
                except app.UsageError as error:     # app.run prints usage, then this
                    sys.stderr.write(f'\n{error}\n')
                    code = error.exitcode
                except SystemExit as exit_:
                    code = exit_.code
        finally:
            absl_logger.removeHandler(handler)
            absl_logger.setLevel(level)
    if code is None or code is False:
        code = 0
    elif not isinstance(code, int):      # sys.exit('message'): printed, status 1
        stderr.write(f'{code}\n')
        code = 1
    return Result(returncode=int(code), stdout=stdout.getvalue(), stderr=stderr.getvalue())
