"""The ``gomaproxy`` command: ``serve`` runs the proxy, ``cc`` compiles through one."""

from __future__ import annotations

import argparse
import os
import signal
import socket
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import structlog
import trio

from gomaproxy import __version__
from gomaproxy.config import Config, load_config, unknown_env_names
from gomaproxy.errors import ConfigError, GomaProxyError
from gomaproxy.log import configure_logging

log = structlog.get_logger(__name__)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the process exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] == "cc":
        from gomaproxy.client.cc import main as cc_main

        return cc_main(args[1:])

    parser = _parser()
    options = parser.parse_args(args)
    if options.command != "serve":
        parser.print_help()
        return 2
    return _serve_command(options)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gomaproxy",
        description="A goma-compatible remote compile proxy for REAPI v2 backends.",
        epilog="Run 'gomaproxy cc -- gcc -c a.c -o a.o' to compile through a running proxy; "
        "'gomaproxy cc --help' lists its options.",
    )
    parser.add_argument("--version", action="version", version=f"gomaproxy {__version__}")
    commands = parser.add_subparsers(dest="command")

    serve = commands.add_parser(
        "serve",
        help="serve goma clients over HTTP",
        description="Serve goma clients over HTTP and run their compiles on a REAPI backend. "
        "Flags override GOMAPROXY_<SECTION>_<KEY> environment variables, which override the "
        "--config file.",
    )
    serve.add_argument("--config", type=Path, help="TOML configuration file")
    serve.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    serve.add_argument(
        "--port", type=int, help="port to listen on; 0 picks a free one (default 8090)"
    )
    serve.add_argument(
        "--port-file", type=Path, help="write the bound port to this file once the server listens"
    )
    serve.add_argument(
        "--state-dir",
        type=Path,
        help="directory for the file store, the local CAS and the action cache "
        "(default $XDG_STATE_HOME/gomaproxy, else ~/.local/state/gomaproxy)",
    )
    serve.add_argument("--backend", help="'local' (default) or a grpc:// or grpcs:// address")
    serve.add_argument("--instance-name", help="REAPI instance name sent with every request")
    serve.add_argument(
        "--log-format", choices=["json", "console"], help="log line format (default json)"
    )
    serve.add_argument(
        "--log-level",
        choices=["debug", "info", "warning", "error"],
        help="lowest level that is logged (default info)",
    )

    commands.add_parser("cc", help="compile through a running proxy (gomaproxy cc -- gcc ...)")
    return parser


def _serve_command(options: argparse.Namespace) -> int:
    overrides: dict[str, Any] = {
        "server.host": options.host,
        "server.port": options.port,
        "state.dir": options.state_dir,
        "backend.address": options.backend,
        "backend.instance_name": options.instance_name,
        "log.format": options.log_format,
        "log.level": options.log_level,
    }
    try:
        config = load_config(options.config, overrides=overrides)
    except ConfigError as exc:
        print(f"gomaproxy: {exc.message}", file=sys.stderr)  # noqa: T201
        return 2

    configure_logging(format=config.log.format, level=config.log.level)
    unknown = unknown_env_names(os.environ)
    if unknown:
        log.warning(
            "config_env_unknown",
            names=unknown,
            hint="GOMAPROXY_<SECTION>_<KEY> must name a setting of gomaproxy/config.py",
        )
    try:
        trio.run(_serve, config, options.port_file)
    except BaseException as exc:  # noqa: BLE001 - start-up failures arrive in exception groups
        failure = _startup_failure(exc)
        if failure is None:
            raise
        message, status = failure
        log.error(
            "server_start_failed", error=message, host=config.server.host, port=config.server.port
        )
        print(f"gomaproxy: {message}", file=sys.stderr)  # noqa: T201
        return status
    log.info("server_stopped", pid=os.getpid())
    return 0


def _startup_failure(exc: BaseException) -> tuple[str, int] | None:
    """Return a one-line message and exit status for an expected start-up failure.

    Nurseries wrap errors in exception groups.  A group whose every leaf is a gomaproxy
    error (bad configuration, unreachable backend) or an OS error is reported by its
    first leaf.  Anything else is a bug and
    returns None, so the caller re-raises it with its traceback.
    """
    leaves = _leaves(exc)
    expected = (GomaProxyError, OSError)
    if not leaves or not all(isinstance(leaf, expected) for leaf in leaves):
        return None

    first = leaves[0]
    if isinstance(first, ConfigError):
        return first.message, 2
    if isinstance(first, GomaProxyError):
        return first.message, 1
    if isinstance(first, socket.gaierror):
        return f"cannot resolve the listen address: {first.strerror}; check --host and --port", 1
    return str(first), 1


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in _leaves(inner)]
    return [exc]


async def _serve(config: Config, port_file: Path | None) -> None:
    from gomaproxy.proxy import open_proxy

    async with open_proxy(config) as proxy, trio.open_nursery() as nursery:
        port = await nursery.start(proxy.serve)
        log.info(
            "server_started",
            host=config.server.host,
            port=port,
            backend=config.backend.address,
            pid=os.getpid(),
        )
        if port_file is not None:
            _write_port_file(port_file, port)
        nursery.start_soon(_stop_on_signal, nursery.cancel_scope)


async def _stop_on_signal(scope: trio.CancelScope) -> None:
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for signum in signals:
            log.info("server_stopping", signal=signal.Signals(signum).name)
            scope.cancel()
            return


def _write_port_file(path: Path, port: int) -> None:
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(f"{port}\n")
    os.replace(temporary, path)


if __name__ == "__main__":
    sys.exit(main())
