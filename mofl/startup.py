"""Start-up of mofl's binaries: TensorFlow imported without its C++ start-up noise.

A CUDA build of TensorFlow on a machine without a GPU prints half a dozen lines before any program
output: CUDA plugin factories registered twice (cuFFT, cuDNN, cuBLAS), "computation placer already
registered", cuInit failing, oneDNN notices. They come from C++ (partly from absl logging before it
is initialised, which `TF_CPP_MIN_LOG_LEVEL` does not reach), so the binaries import TensorFlow
once through `quiet_tensorflow()`: with `TF_CPP_MIN_LOG_LEVEL=2` (unless the environment sets it)
and with file descriptor 2 pointed at a temporary file while TensorFlow loads and looks for
devices. If that import fails, what it printed is replayed before the exception propagates.

`MOFL_TF_LOGS=1` in the environment turns all of this off (TensorFlow's own lines come back, and
mediapipe's, which `mofl.facemesh` drops the same way while its graph starts).
Library code never calls `quiet_tensorflow`: only binaries, before their first TensorFlow import
(`mofl.facemesh` uses `native_stderr_dropped` around mediapipe's graph start-up).
"""
import contextlib
import os
import sys
import tempfile


def tensorflow_logs_wanted():
    """True when the user asked for TensorFlow's own start-up lines (`MOFL_TF_LOGS` set, not 0)."""
    return os.environ.get('MOFL_TF_LOGS', '') not in ('', '0')


@contextlib.contextmanager
def native_stderr_dropped():
    """Inside: file descriptor 2 (what C++ libraries print to) goes to a temporary file.

    Used around TensorFlow's import and around mediapipe's graph start-up (`mofl.facemesh`),
    whose C++ logging ignores Python's. Python's own `sys.stderr` is flushed first and restored
    after. If the block raises, what was captured is written to stderr before the exception
    propagates, so a failure keeps its explanation. With `MOFL_TF_LOGS` set nothing is dropped.
    """
    if tensorflow_logs_wanted():
        yield
        return
    sys.stderr.flush()
    saved_stderr = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        except BaseException:
            os.dup2(saved_stderr, 2)
            captured.seek(0)
            sys.stderr.write(captured.read().decode('utf-8', errors='replace'))
            raise
        finally:
            os.dup2(saved_stderr, 2)
            os.close(saved_stderr)


def quiet_tensorflow():
    """Imports TensorFlow (once) with its C++ start-up lines dropped; see the module docstring.

    Safe to call more than once and after TensorFlow was imported (it then only sets the log level
    for messages to come, which TensorFlow reads at import: no effect).
    """
    if tensorflow_logs_wanted():
        return
    os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
    if 'tensorflow' in sys.modules:
        return
    with native_stderr_dropped():
        import tensorflow as tf   # pylint: disable=import-outside-toplevel
        tf.config.list_physical_devices()        # cuInit and device discovery print here
