"""The command line: start-up failures become one line, not a traceback."""

from __future__ import annotations

import socket

import pytest

from gomaproxy.cli import _startup_failure, main
from gomaproxy.errors import Code, ConfigError, GomaProxyError


def test_startup_failure_unwraps_nested_groups() -> None:
    """An OSError inside nested exception groups is reported by its own text."""
    error = OSError(98, "Address already in use")
    nested = ExceptionGroup("outer", [ExceptionGroup("inner", [error])])

    assert _startup_failure(nested) == ("[Errno 98] Address already in use", 1)


def test_startup_failure_config_error_exits_2() -> None:
    """A configuration error found while starting exits with status 2."""
    assert _startup_failure(ConfigError("state directory x is a file")) == (
        "state directory x is a file",
        2,
    )


def test_startup_failure_unreachable_backend_exits_1() -> None:
    """An unreachable backend is reported with its message and exit status 1."""
    error = GomaProxyError("backend grpc://127.0.0.1:1 did not answer", code=Code.UNAVAILABLE)

    assert _startup_failure(ExceptionGroup("g", [error])) == (
        "backend grpc://127.0.0.1:1 did not answer",
        1,
    )


def test_startup_failure_bad_host_names_flags() -> None:
    """A listen address that does not resolve points at --host and --port."""
    error = socket.gaierror(-2, "Name or service not known")

    message, status = _startup_failure(error) or ("", 0)

    assert status == 1
    assert "check --host and --port" in message


def test_startup_failure_leaves_bugs_alone() -> None:
    """An unexpected exception is not turned into a one-line message."""
    assert _startup_failure(ExceptionGroup("g", [RuntimeError("bug")])) is None


def test_main_version_prints_version(capsys: pytest.CaptureFixture[str]) -> None:
    """--version prints the package version and exits 0."""
    with pytest.raises(SystemExit) as caught:
        main(["--version"])

    assert caught.value.code == 0
    assert capsys.readouterr().out.startswith("gomaproxy 0.")


def test_main_rejects_port_out_of_range(capsys: pytest.CaptureFixture[str]) -> None:
    """serve --port 70000 exits 2 with a message naming the range."""
    assert main(["serve", "--port", "70000"]) == 2
    assert "between 0 and 65535" in capsys.readouterr().err
