"""Fixtures that install, start and stop real REAPI servers through scripts/backends/.

The tests here are marked ``backends`` and run only when ``GOMAPROXY_BACKEND_TESTS=1``
or ``CI=true`` is set, because the first run downloads about 40 MB of wheels, creates
a Python 3.13 virtual environment and may run apt-get. Each server starts once per
test session on a free 127.0.0.1 port with a new state directory, and is stopped by
PID when the session ends.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest

from tests.backends.harness import (
    SKIP_REASON,
    BackendError,
    RunningBackend,
    backend_tests_enabled,
    buildgrid,
    casd,
    free_port,
    make_state_dir,
)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "backends: tests against real REAPI servers started by scripts/backends/"
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if backend_tests_enabled():
        return
    skip = pytest.mark.skip(reason=SKIP_REASON)
    for item in items:
        if "backends" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def casd_backend() -> Iterator[RunningBackend]:
    state_dir = make_state_dir("gomaproxy-test-casd-")
    try:
        server = casd.start(state_dir, free_port())
    except BackendError as error:
        shutil.rmtree(state_dir, ignore_errors=True)
        pytest.fail(f"buildbox-casd did not start: {error}", pytrace=False)
    try:
        yield RunningBackend("casd", server.address, state_dir)
    finally:
        print(casd.stop(state_dir))  # noqa: T201 (shown with pytest -s)
        shutil.rmtree(state_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def buildgrid_backend() -> Iterator[RunningBackend]:
    try:
        buildgrid.find_python313(None)
    except BackendError as error:
        pytest.skip(f"BuildGrid cannot be installed here: {error}")
    state_dir = make_state_dir("gomaproxy-test-buildgrid-")
    try:
        server = buildgrid.start(state_dir, free_port())
    except BackendError as error:
        shutil.rmtree(state_dir, ignore_errors=True)
        pytest.fail(f"BuildGrid did not start: {error}", pytrace=False)
    try:
        yield RunningBackend("buildgrid", server.address, state_dir)
    finally:
        for line in buildgrid.stop(state_dir):
            print(line)  # noqa: T201 (shown with pytest -s)
        shutil.rmtree(state_dir, ignore_errors=True)


@pytest.fixture(params=["casd", "buildgrid"])
def backend(request: pytest.FixtureRequest) -> RunningBackend:
    """Each backend in turn."""
    return request.getfixturevalue(f"{request.param}_backend")
