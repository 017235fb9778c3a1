"""``gomaproxy cc``: a compiler launcher that runs one compile through a goma server.

It behaves like goma's gomacc plus compiler_proxy for a single compile.  It probes the
local compiler, lists the inputs with the compiler's ``-M`` output, and sends Exec
requests until the server returns a result.  Then it writes the outputs, prints the
remote stdout and stderr unchanged and exits with the remote exit status.

The Exec loop is in ``remote_compile`` and the option parsing in ``launcher_options``.
This module prints the result, runs the local fallback and writes the ``--report`` file.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import structlog
import trio

from gomaproxy.client.deps import DependencyScanError
from gomaproxy.client.launcher_options import (
    DEFAULT_SERVER,
    SERVER_ENV,
    LauncherOptions,
    parse_command_line,
)
from gomaproxy.client.remote_compile import (
    DEFAULT_RETRY_BACKOFF_SECONDS,
    MAX_EXEC_RETRIES,
    CompileOutcome,
    CompileStats,
    RemoteCompileError,
    retry_delay,
    run_remote_compile,
)
from gomaproxy.errors import GomaProxyError

__all__ = [
    "DEFAULT_RETRY_BACKOFF_SECONDS",
    "DEFAULT_SERVER",
    "LAUNCHER_FAILURE_STATUS",
    "MAX_EXEC_RETRIES",
    "SERVER_ENV",
    "CompileOutcome",
    "CompileStats",
    "LauncherOptions",
    "RemoteCompileError",
    "current_directory",
    "main",
    "parse_command_line",
    "retry_delay",
    "run_remote_compile",
]

# Exit status of the launcher when the remote compile fails and no local run replaces it.
LAUNCHER_FAILURE_STATUS = 1

_MESSAGE_PREFIX = "gomaproxy cc: "


def current_directory(environ: Mapping[str, str]) -> str:
    """Return the cwd as the shell spells it: $PWD when it names the cwd, else getcwd()."""
    cwd = os.getcwd()
    pwd = environ.get("PWD", "")
    if not os.path.isabs(pwd):
        return cwd
    try:
        return pwd if os.path.samefile(pwd, cwd) else cwd
    except OSError:
        return cwd


def main(argv: Sequence[str]) -> int:
    """Run the launcher with the arguments after ``cc`` and return its exit status."""
    options, command = parse_command_line(argv)
    _configure_logging(options.verbose)
    cwd = current_directory(os.environ)

    try:
        outcome = trio.run(run_remote_compile, options, command, cwd)
    except DependencyScanError as exc:
        sys.stderr.buffer.write(exc.stderr)
        return _handle_failure(
            options,
            command,
            cwd,
            [exc.message],
            CompileStats(),
            True,
            failure_status=exc.exit_status,
        )
    except RemoteCompileError as exc:
        return _handle_failure(options, command, cwd, exc.messages, exc.stats, exc.fallback_allowed)
    except (GomaProxyError, OSError) as exc:
        return _handle_failure(options, command, cwd, [str(exc)], CompileStats(), True)

    _write_report(options.report, outcome.report())
    sys.stdout.buffer.write(outcome.stdout)
    sys.stdout.flush()
    sys.stderr.buffer.write(outcome.stderr)
    sys.stderr.flush()
    return outcome.exit_status


def _handle_failure(
    options: LauncherOptions,
    command: list[str],
    cwd: str,
    messages: Sequence[str],
    stats: CompileStats,
    fallback_allowed: bool,
    *,
    failure_status: int = LAUNCHER_FAILURE_STATUS,
) -> int:
    """Print the failure, run the compile locally if allowed, and return the exit status.

    ``failure_status`` is returned when no local run replaces the remote compile.
    """
    for line in messages:
        sys.stderr.write(f"{_MESSAGE_PREFIX}{line}\n")
    sys.stderr.flush()

    ran_locally = options.local_fallback and fallback_allowed
    status = failure_status
    if ran_locally:
        sys.stderr.write(f"{_MESSAGE_PREFIX}running the compile locally\n")
        sys.stderr.flush()
        status = _run_locally(command, cwd)

    report = CompileOutcome(
        exit_status=status,
        stdout=b"",
        stderr=b"",
        cache_hit="",
        cache_key="",
        outputs=[],
        stats=stats,
    ).report()
    report.update(cache_hit=None, cache_key=None, ran_locally=ran_locally, error=messages[0])
    _write_report(options.report, report)
    return status


def _run_locally(command: list[str], cwd: str) -> int:
    try:
        return subprocess.run(command, cwd=cwd, check=False).returncode
    except OSError as exc:
        sys.stderr.write(f"{_MESSAGE_PREFIX}could not run {command[0]} locally: {exc}\n")
        return LAUNCHER_FAILURE_STATUS


def _write_report(path: Path | None, report: dict[str, object]) -> None:
    if path is None:
        return
    try:
        path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    except OSError as exc:
        sys.stderr.write(f"{_MESSAGE_PREFIX}could not write report {path}: {exc}\n")


def _configure_logging(verbose: bool) -> None:
    """Send structlog events to stderr: debug events with -v, warnings and up without.

    stdout stays reserved for the compiler's own output.
    """
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso"),
            structlog.dev.ConsoleRenderer(colors=False),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.DEBUG if verbose else logging.WARNING
        ),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=False,
    )


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
