import os
import sys
import uuid
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

sys.path.insert(0, str(Path(__file__).resolve().parent))

# Property-based tests (tests/test_properties.py) draw the same examples on every run and keep no
# example database, so CI is deterministic; HYPOTHESIS_PROFILE=explore draws new ones each run.
settings.register_profile("course", derandomize=True, database=None, deadline=None, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("explore", settings.get_profile("course"), derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "course"))


def _without_local_constants() -> None:
    """Make derandomized examples depend on the test alone.

    Hypothesis (from 6.131) draws about one number or string in twenty from the constants found in
    the local modules imported so far (course_lib, course_grading, scripts), not from the seed. Which
    of those a pytest-xdist worker has imported depends on the test files it happened to run first,
    so a derandomized test still drew other examples on some runs (issue 24: the NaN image that
    failed test_image_arrays_hold_one_valid_label_per_image_or_refuse once in three runs was drawn
    only after course_lib.checks.mlp had been imported). This empties that pool. It is private API:
    should a later Hypothesis rename it, nothing happens here and examples may vary again.
    """
    try:
        from hypothesis.internal.conjecture import providers
        from hypothesis.internal.constants_ast import Constants
    except ImportError:
        return
    if callable(getattr(providers, "_get_local_constants", None)):
        empty = Constants()
        providers._get_local_constants = lambda: empty


if settings.default.derandomize:
    _without_local_constants()


@pytest.fixture
def isolated_dirs(tmp_path, monkeypatch):
    """Empty data and cache folders and no downloads, so tests never touch a user's files."""
    monkeypatch.setenv("COURSE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("COURSE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("COURSE_DOWNLOAD", "0")
    return tmp_path


def real_data_dir() -> Path:
    """``COURSE_DATA_DIR`` for tests on real data: required in CI, else skipped with a reason."""
    value = os.environ.get("COURSE_DATA_DIR")
    if value and Path(value).is_dir():
        return Path(value)
    if os.environ.get("CI"):
        pytest.fail("CI must set COURSE_DATA_DIR to the real data (../shared/data)")
    pytest.skip("set COURSE_DATA_DIR to run tests on real data")



def service(variable: str, what: str, how: str) -> str:
    """The address in ``variable`` of a service a test needs: required in CI, else skipped with a reason."""
    value = os.environ.get(variable)
    if value:
        return value
    advice = f"set {variable} to {what}; {how}"
    if os.environ.get("CI"):
        pytest.fail(f"CI provides this service: {advice} (.ci/run does)")
    pytest.skip(advice)


@pytest.fixture
def postgres_url():
    """A new, empty database on the server of ``COURSE_TEST_POSTGRES_URL``, dropped afterwards."""
    import psycopg
    import sqlalchemy

    url = service("COURSE_TEST_POSTGRES_URL", "postgresql://user@host:port/db",
                  'eval "$(scripts/postgres_for_tests.sh start)" starts a throwaway server and sets it')
    server = sqlalchemy.engine.make_url(url).set(drivername="postgresql")
    database = f"course_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server.render_as_string(hide_password=False), autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{database}"')
    yield server.set(database=database).render_as_string(hide_password=False)
    with psycopg.connect(server.render_as_string(hide_password=False), autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
