"""Applies to every test, also nbval's notebook items under solutions/."""
import os
import sys

import pytest


def pytest_configure(config):
    """Under pytest-xdist, each worker's OpenMP/BLAS threads get an equal share of the cores.

    Notebook kernels and nbgrader's subprocesses inherit the setting; without it two workers each
    run torch on every core, and the oversubscribed threads make training cells several times slower.
    """
    workers = os.environ.get("PYTEST_XDIST_WORKER_COUNT")
    if not workers:
        return
    threads = max(1, (os.cpu_count() or 1) // int(workers))
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(name, str(threads))
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


def _missing_datasets() -> str | None:
    """Why the notebooks' datasets (CIFAR-10, MNIST) cannot be loaded, or None when they can."""
    from course_lib.data import DatasetNotFoundError, load_cifar10, load_mnist

    try:
        load_cifar10("test")
        load_mnist("test")
    except DatasetNotFoundError as err:
        return str(err)
    return None


def pytest_collection_modifyitems(config, items):
    """Notebooks need real data: without it they are skipped with the reason, and CI fails."""
    notebook_items = [i for i in items if i.path.suffix == ".ipynb" or i.get_closest_marker("notebook")]
    missing = _missing_datasets() if notebook_items else None
    if missing is None:
        return
    if os.environ.get("CI"):
        raise pytest.UsageError(f"CI runs the notebooks on real data, which is missing:\n{missing}")
    skip = pytest.mark.skip(reason="the notebooks need CIFAR-10 and MNIST: set COURSE_DATA_DIR or allow downloads (README, Data)")
    for item in notebook_items:
        item.add_marker(skip)
