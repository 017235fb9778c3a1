"""The command line of ``gomaproxy cc``, parsed into LauncherOptions."""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from gomaproxy.client.http import DEFAULT_URL_PREFIX
from gomaproxy.client.remote_compile import DEFAULT_RETRY_BACKOFF_SECONDS

DEFAULT_SERVER = "http://127.0.0.1:8090"
SERVER_ENV = "GOMAPROXY_SERVER"


@dataclass(frozen=True)
class LauncherOptions:
    """Settings of one launcher run; see ``parse_command_line`` for their meaning."""

    server: str = DEFAULT_SERVER
    url_prefix: str = DEFAULT_URL_PREFIX
    report: Path | None = None
    local_fallback: bool = False
    verbose: bool = False
    state_dir: Path | None = None
    # First wait before retrying a failed Exec; missing-input rounds do not wait.
    retry_backoff_seconds: float = DEFAULT_RETRY_BACKOFF_SECONDS


def parse_command_line(
    argv: Sequence[str], environ: Mapping[str, str] | None = None
) -> tuple[LauncherOptions, list[str]]:
    """Split ``argv`` at ``--`` into launcher options and the compile command.

    Raises:
        SystemExit: with status 2 and a usage message for invalid options, a missing
            ``--`` or an empty compile command, as argparse does.
    """
    env = os.environ if environ is None else environ
    parser = _argument_parser(env)

    arguments = list(argv)
    split = arguments.index("--") if "--" in arguments else len(arguments)
    namespace, unknown = parser.parse_known_args(arguments[:split])
    if split == len(arguments):
        parser.error("missing '--' before the compiler command, as in: gomaproxy cc -- gcc ...")
    if unknown:
        parser.error(f"unrecognized options before '--': {' '.join(unknown)}")
    command = arguments[split + 1 :]
    if not command:
        parser.error("missing compiler command after '--'")

    options = LauncherOptions(
        server=namespace.server,
        url_prefix=namespace.url_prefix,
        report=namespace.report,
        local_fallback=namespace.local_fallback,
        verbose=namespace.verbose,
    )
    return options, command


def _argument_parser(environ: Mapping[str, str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gomaproxy cc",
        usage="gomaproxy cc [options] -- COMPILER ARGS...",
        description="Run one gcc or clang compile on a goma server.",
    )
    parser.add_argument(
        "--server",
        default=environ.get(SERVER_ENV) or DEFAULT_SERVER,
        help=f"goma server URL (default: ${SERVER_ENV} or {DEFAULT_SERVER})",
    )
    parser.add_argument(
        "--url-prefix",
        default=DEFAULT_URL_PREFIX,
        help=f"URL path prefix of the goma verbs (default: {DEFAULT_URL_PREFIX})",
    )
    parser.add_argument(
        "--report", type=Path, help="write a JSON summary of the compile to this file"
    )
    parser.add_argument(
        "--local-fallback",
        action="store_true",
        help="run the compiler locally when the remote compile fails",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug events to stderr")
    return parser
