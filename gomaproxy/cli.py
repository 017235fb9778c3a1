"""The ``gomaproxy`` command: ``serve`` runs the proxy, ``cc`` compiles through one."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import structlog
import trio

from gomaproxy.config import Config, load_config
from gomaproxy.errors import ConfigError
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
    commands = parser.add_subparsers(dest="command")

    serve = commands.add_parser("serve", help="serve goma clients over HTTP")
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
        help="directory for the file store, the local CAS and the action cache",
    )
    serve.add_argument("--backend", help="'local' (default) or a grpc:// or grpcs:// address")
    serve.add_argument("--instance-name", help="REAPI instance name sent with every request")
    serve.add_argument("--log-format", choices=["json", "console"], help="log line format")
    serve.add_argument("--log-level", choices=["debug", "info", "warning", "error"])

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
    try:
        trio.run(_serve, config, options.port_file)
    except ConfigError as exc:
        log.error("server_config_invalid", error=exc.message)
        return 2
    except OSError as exc:
        log.error(
            "server_start_failed", error=str(exc), host=config.server.host, port=config.server.port
        )
        return 1
    return 0


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
