"""mofl.startup: binaries import TensorFlow without its C++ start-up lines, and lose nothing when
that import fails."""
import os
import subprocess
import sys
import textwrap

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QUIET_IMPORT = ('from mofl import startup; startup.quiet_tensorflow(); '
                'import tensorflow as tf; print(float(tf.reduce_sum(tf.ones(3))))')


def _run(code, **env):
    environment = {k: v for k, v in os.environ.items()
                   if k not in ('TF_CPP_MIN_LOG_LEVEL', 'MOFL_TF_LOGS')}
    environment.update(env)
    return subprocess.run([sys.executable, '-c', code], cwd=ROOT, env=environment,
                          capture_output=True, text=True, timeout=300)


def test_tensorflow_start_up_prints_nothing_and_works():
    result = _run(QUIET_IMPORT)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == '3.0'
    assert result.stderr == ''


def test_failed_import_replays_what_it_printed(tmp_path):
    fake = tmp_path / 'tensorflow'
    fake.mkdir()
    (fake / '__init__.py').write_text(textwrap.dedent('''\
        import os
        os.write(2, b'libcudart.so.99: cannot open shared object file\\n')
        raise ImportError('broken TensorFlow install')
        '''))
    result = _run('from mofl import startup; startup.quiet_tensorflow()',
                  PYTHONPATH=f'{tmp_path}{os.pathsep}{ROOT}')
    assert result.returncode == 1
    assert 'libcudart.so.99: cannot open shared object file' in result.stderr
    assert 'ImportError: broken TensorFlow install' in result.stderr


def test_logs_come_back_on_request(tmp_path):
    fake = tmp_path / 'tensorflow'
    fake.mkdir()
    (fake / '__init__.py').write_text(textwrap.dedent('''\
        import os
        os.write(2, b'I tensorflow start-up line\\n')
        class config:
            list_physical_devices = staticmethod(lambda *a: [])
        '''))
    env = dict(PYTHONPATH=f'{tmp_path}{os.pathsep}{ROOT}')
    code = ('import os; from mofl import startup; startup.quiet_tensorflow(); import tensorflow; '
            'print(os.environ.get("TF_CPP_MIN_LOG_LEVEL"))')
    quiet = _run(code, **env)
    assert quiet.returncode == 0 and quiet.stderr == '' and quiet.stdout.strip() == '2'
    loud = _run(code, MOFL_TF_LOGS='1', **env)
    assert loud.returncode == 0 and 'I tensorflow start-up line' in loud.stderr
    assert loud.stdout.strip() == 'None'


def test_face_detector_start_up_prints_nothing_unless_asked():
    """mediapipe's C++ lines (XNNPACK delegate, feedback-manager warnings) are dropped while the
    FaceMesh graph starts and runs its first image; MOFL_TF_LOGS=1 brings them back."""
    code = textwrap.dedent('''\
        from mofl import startup
        startup.quiet_tensorflow()   # as every binary does first
        import numpy as np
        from mofl import facemesh, sample_data
        from PIL import Image
        image = np.asarray(Image.open(sample_data.astronaut_path()).convert('RGB'))
        with facemesh.FaceTracker() as tracker:
            found = [tracker.detect(image) is not None for _ in range(2)]
        print(found)
        ''')
    quiet = _run(code)
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stdout.strip() == '[True, True]'
    assert quiet.stderr == ''
    loud = _run(code, MOFL_TF_LOGS='1')
    assert loud.returncode == 0 and 'XNNPACK' in loud.stderr
