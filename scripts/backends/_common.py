"""Helpers shared by the backend scripts: paths, daemons started and stopped by PID, ports.

Every server these scripts start listens on 127.0.0.1 only. A daemon's PID is written
to a file in its state directory, and ``stop_daemon`` signals exactly that PID after
checking that it still runs the program that was started.
"""

# ruff: noqa: T201 (the backend scripts report progress to the user with print)

from __future__ import annotations

import importlib.util
import os
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType

REPO_ROOT = Path(__file__).resolve().parent.parent.parent
# Where installs are kept: the wheel, the buildbox binaries and BuildGrid's venv.
DEFAULT_CACHE_DIR = Path(
    os.environ.get("GOMAPROXY_BACKENDS_CACHE_DIR") or REPO_ROOT / ".cache" / "backends"
)
LOOPBACK = "127.0.0.1"
LOG_TAIL_LINES = 30


def load_script(name: str) -> ModuleType:
    """Import ``scripts/backends/<name>.py`` as module ``gomaproxy_backends_<name>``.

    The prefix keeps ``buildgrid.py`` from shadowing the real ``buildgrid`` package.
    The scripts directory must be on sys.path, for the scripts' own imports.
    """
    module_name = f"gomaproxy_backends_{name}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(
        module_name, Path(__file__).with_name(f"{name}.py")
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


class BackendError(Exception):
    """A backend could not be installed, started or stopped."""


def make_state_dir(prefix: str, parent: Path | None = None) -> Path:
    """Create a new, empty state directory that other users may traverse but not list.

    ``tempfile.mkdtemp`` creates mode 0700, which keeps a PostgreSQL server running as
    user postgres out of its data directory below; 0711 lets it through.
    """
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    path.chmod(0o711)
    return path


def log_tail(path: Path, line_count: int = LOG_TAIL_LINES) -> str:
    """Return the last lines of a log file, indented, or a note that it is missing or empty."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return f"    ({path} does not exist)"
    lines = data.decode(errors="replace").rstrip().splitlines()
    if not lines:
        return f"    ({path} is empty)"
    return "\n".join(f"    {line}" for line in lines[-line_count:])


def run_checked(
    args: Sequence[str],
    step: str,
    *,
    env: dict[str, str] | None = None,
    timeout: float = 900.0,
) -> str:
    """Run a set-up command and return its stdout.

    Raises BackendError naming ``step`` with the command's output when it fails or
    times out.
    """
    try:
        result = subprocess.run(
            list(args),
            capture_output=True,
            text=True,
            env=env,
            stdin=subprocess.DEVNULL,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as error:
        raise BackendError(f"{step} timed out after {timeout:g} s: {shlex.join(args)}") from error
    except OSError as error:
        raise BackendError(f"{step} could not run {args[0]}: {error}") from error
    if result.returncode != 0:
        output = (result.stdout + result.stderr).strip().splitlines()
        tail = "\n".join(f"    {line}" for line in output[-LOG_TAIL_LINES:])
        raise BackendError(
            f"{step} failed with exit status {result.returncode}: {shlex.join(args)}\n{tail}"
        )
    return result.stdout


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago.

    Another process may take it before the caller binds it, which makes the caller's
    start fail with an error rather than connect to a stranger.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((LOOPBACK, 0))
        return probe.getsockname()[1]


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((LOOPBACK, port))
        except OSError:
            return False
        return True


def port_accepts(port: int) -> bool:
    """Tell whether a TCP connection to 127.0.0.1:``port`` succeeds."""
    try:
        with socket.create_connection((LOOPBACK, port), timeout=1.0):
            return True
    except OSError:
        return False


def start_daemon(
    args: Sequence[str],
    *,
    log_path: Path,
    pid_path: Path,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> subprocess.Popen[bytes]:
    """Start ``args`` in its own session with output to ``log_path`` and write its PID file.

    The new session keeps the daemon alive when the calling script exits, and keeps a
    Ctrl-C in the caller's terminal from reaching it.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log_file:
        log_file.write(f"--- {time.strftime('%H:%M:%S')} {shlex.join(args)}\n".encode())
        log_file.flush()
        try:
            process = subprocess.Popen(
                list(args),
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=cwd,
                start_new_session=True,
            )
        except OSError as error:
            raise BackendError(f"could not start {args[0]}: {error}") from error
    pid_path.write_text(f"{process.pid}\n")
    return process


def wait_until(
    ready: Callable[[], bool],
    *,
    process: subprocess.Popen[bytes],
    timeout: float,
    step: str,
    log_path: Path,
    interval: float = 0.05,
) -> float:
    """Poll ``ready`` until it returns True and return the seconds that took.

    Raises BackendError with the log's last lines when ``process`` exits first or
    ``timeout`` seconds pass.
    """
    start = time.monotonic()
    deadline = start + timeout
    while True:
        if ready():
            return time.monotonic() - start
        returncode = process.poll()
        if returncode is not None:
            raise BackendError(
                f"{step}: the process exited with status {returncode} during start-up.\n"
                f"Last lines of {log_path}:\n{log_tail(log_path)}"
            )
        if time.monotonic() >= deadline:
            raise BackendError(
                f"{step}: not ready after {timeout:g} s.\n"
                f"Last lines of {log_path}:\n{log_tail(log_path)}"
            )
        time.sleep(interval)


def read_pid(pid_path: Path) -> int | None:
    try:
        text = pid_path.read_text().strip()
    except FileNotFoundError:
        return None
    return int(text) if text.isdigit() else None


def process_command_line(pid: int) -> list[str] | None:
    """Return the command line of process ``pid``, or None when it has exited."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    if not cmdline:  # a zombie, which has exited already
        return None
    return cmdline.rstrip(b"\0").decode(errors="replace").split("\0")


def wait_for_exit(pid: int, timeout: float) -> bool:
    """Wait up to ``timeout`` seconds for ``pid`` to exit; reap it when it is our child."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            waited_pid, _ = os.waitpid(pid, os.WNOHANG)
            if waited_pid == pid:
                return True
        except ChildProcessError:
            pass  # not our child: fall back to /proc
        if process_command_line(pid) is None:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)


def stop_daemon(
    pid_path: Path,
    expected_program: str,
    *,
    grace_seconds: float = 10.0,
    stop_signal: signal.Signals = signal.SIGTERM,
    kill_signal: signal.Signals = signal.SIGKILL,
) -> str:
    """Stop the daemon named in ``pid_path``: ``stop_signal``, then ``kill_signal`` after
    ``grace_seconds`` (SIGTERM and SIGKILL by default).

    The PID is signalled only when one of the first two words of its command line (the
    program, or the script an interpreter runs) has the file name ``expected_program``,
    so a PID that the kernel has reused is left alone. Removes the PID file and returns
    a one-line description of step happened.
    """
    pid = read_pid(pid_path)
    if pid is None:
        return f"{pid_path.name}: no PID file, nothing to stop"
    command_line = process_command_line(pid)
    if command_line is None:
        pid_path.unlink(missing_ok=True)
        return f"{expected_program} (PID {pid}) was not running"
    if expected_program not in (Path(word).name for word in command_line[:2]):
        pid_path.unlink(missing_ok=True)
        return f"PID {pid} now runs {shlex.join(command_line)}, not {expected_program}; left it"

    os.kill(pid, stop_signal)
    if wait_for_exit(pid, grace_seconds):
        outcome = f"{expected_program} (PID {pid}) stopped"
    else:
        os.kill(pid, kill_signal)
        wait_for_exit(pid, 10.0)
        outcome = (
            f"{expected_program} (PID {pid}) was still running {grace_seconds:g} s after "
            f"{stop_signal.name}, sent {kill_signal.name}"
        )
    pid_path.unlink(missing_ok=True)
    return outcome
