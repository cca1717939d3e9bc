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


# The longest test files (minutes each: they grade whole classes and drive a browser) start first, so
# that pytest-xdist's workers (--dist loadfile) finish together instead of one waiting on the last file.
SLOWEST_FIRST = ("test_grade_class.py", "test_hostile_submissions.py", "test_autograder.py", "test_browser.py")


def pytest_collection_modifyitems(config, items):
    """The slowest files first; notebooks need real data: without it they are skipped with the reason,
    and CI fails."""
    rank = {name: position for position, name in enumerate(SLOWEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: the rest keep their order
    notebook_items = [i for i in items if i.path.suffix == ".ipynb" or i.get_closest_marker("notebook")]
    missing = _missing_datasets() if notebook_items else None
    if missing is None:
        return
    if os.environ.get("CI"):
        raise pytest.UsageError(f"CI runs the notebooks on real data, which is missing:\n{missing}")
    skip = pytest.mark.skip(reason="the notebooks need CIFAR-10 and MNIST: set COURSE_DATA_DIR or allow downloads (README, Data)")
    for item in notebook_items:
        item.add_marker(skip)
