"""Detection of a working bubblewrap (``bwrap``) for sandboxing local actions."""

from __future__ import annotations

import shutil
import subprocess

import anyio
import structlog

from gomaproxy.errors import BackendError, Code

log = structlog.get_logger(__name__)

_BWRAP_PROBE_TIMEOUT_S = 10.0


async def detect_bwrap(use_bwrap: bool | None) -> str | None:
    """Return the path of a working ``bwrap``, or None when it is not to be used.

    Raises:
        BackendError: FAILED_PRECONDITION when ``use_bwrap`` is True and bwrap is missing
            or fails its probe.
    """
    if use_bwrap is False:
        return None

    path = shutil.which("bwrap")
    problem = "bwrap is not on PATH" if path is None else await _probe_bwrap(path)
    if problem is None:
        return path

    if use_bwrap:
        raise BackendError(
            Code.FAILED_PRECONDITION,
            f"bubblewrap is required but unusable: {problem}; install the Debian package "
            "bubblewrap or turn the local sandbox off",
        )
    log.warning("local_bwrap_unavailable", reason=problem)
    return None


async def _probe_bwrap(path: str) -> str | None:
    """Run a trivial sandbox with the namespaces actions use; return the problem, if any."""
    probe = [
        path, "--ro-bind", "/", "/", "--proc", "/proc", "--dev", "/dev",
        "--unshare-all", "--die-with-parent", "--new-session", "--cap-drop", "ALL", "--", "true",
    ]  # fmt: skip
    try:
        with anyio.fail_after(_BWRAP_PROBE_TIMEOUT_S):
            completed = await anyio.run_process(probe, check=False, stdin=subprocess.DEVNULL)
    except TimeoutError:
        return f"{path} did not finish a trivial sandbox within {_BWRAP_PROBE_TIMEOUT_S:g} s"
    except OSError as exc:
        return f"{path} could not be started: {exc.strerror}"

    if completed.returncode != 0:
        stderr = completed.stderr.decode(errors="replace").strip()
        return f"{path} failed a trivial sandbox with exit code {completed.returncode}: {stderr}"
    return None
