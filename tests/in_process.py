"""Runs a binary's `main` in the pytest process, as `python -m MODULE ARGS` runs it, without the
TensorFlow start of a subprocess (5–15 s on a 2-core machine).

Every binary defines its flags in `define_flags(flag_values)` (only when run as a program, so
importing one claims no flag name: `mofl.flags_common`) and reads them in
`main(argv, flag_values)`. So `run_main` defines the binary's flags in a fresh `flags.FlagValues`
of its own, parses the arguments into it as `app.run` does and passes it to `main`; absl's global
FLAGS is never touched, and calls may nest or run in threads. Not restored: global random seeds
a binary sets (the trainer calls `keras.utils.set_random_seed`; no test relies on the seeds it
inherits).

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


@dataclasses.dataclass
class Result:
    """What subprocess.run(capture_output=True, text=True) would have returned."""
    returncode: int
    stdout: str
    stderr: str


def binary_flags(module, args=None):
    """The binary `module` and a fresh FlagValues holding its flags alone.

    Args:
        module: the binary's module name (what follows `python -m`).
        args: if given, command-line arguments parsed into the FlagValues.

    Returns:
        (module, FlagValues).
    """
    binary = importlib.import_module(module)
    flag_values = flags.FlagValues()
    binary.define_flags(flag_values)
    if args is not None:
        flag_values([module] + list(args))
    return binary, flag_values


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


def run_main(module, args, prepare=None):
    """Defines `module`'s flags in a FlagValues of its own, parses `args`, calls main.

    Args:
        module: the binary's module name (what follows `python -m`).
        args: its command-line arguments.
        prepare: optional function called with the binary's module before main runs (e.g. to
            monkeypatch one of its functions, with pytest's `monkeypatch` so that it is undone:
            the module stays imported).

    Returns:
        Result: main's return value (or SystemExit code) as returncode, what it printed to
        sys.stdout, and what it printed to sys.stderr or logged through absl logging.
    """
    stdout, stderr = io.StringIO(), io.StringIO()
    handler = _TextHandler(stderr)
    absl_logger = absl_logging.get_absl_logger()
    level = absl_logger.level
    code = 0
    binary, flag_values = binary_flags(module)
    with _same_op_determinism():
        if prepare is not None:
            prepare(binary)
        absl_logger.addHandler(handler)
        absl_logger.setLevel(logging.INFO)        # app.run's default verbosity
        try:
            with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
                try:
                    try:
                        argv = flag_values([module] + list(args))
                    except flags.Error as error:    # as app.run's parse_flags_with_usage
                        sys.stderr.write(f'FATAL Flags parsing error: {error}\n')
                        sys.stderr.write('Pass --helpshort or --helpfull to see help on flags.\n')
                        code = 1
                    else:
                        code = binary.main(argv, flag_values)
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
