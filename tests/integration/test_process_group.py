"""Running action processes: long sandboxed runs, timeouts and cancellation."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import trio

from gomaproxy.local.executor import run_process_group

BWRAP = shutil.which("bwrap")


@pytest.mark.skipif(BWRAP is None, reason="bubblewrap is not installed")
async def test_process_group_outlives_idle_worker_threads(tmp_path: Path) -> None:
    """A sandboxed run longer than trio's 10 s idle-thread timeout is not killed.

    bubblewrap's --die-with-parent ties the sandbox to the thread that started it, so a
    run that outlives that thread used to end with SIGKILL after about 10 s.
    """
    assert BWRAP is not None
    argv = [
        BWRAP,
        "--ro-bind",
        "/",
        "/",
        "--die-with-parent",
        "--",
        "/bin/sh",
        "-c",
        "sleep 11.5; echo finished",
    ]

    with trio.fail_after(60):
        result = await run_process_group(
            argv,
            cwd=tmp_path,
            env={"PATH": "/usr/bin:/bin"},
            timeout_s=50,
            stdout_path=tmp_path / "out",
            stderr_path=tmp_path / "err",
        )

    assert result.exit_code == 0
    assert result.timed_out is False
    assert (tmp_path / "out").read_bytes() == b"finished\n"


async def test_process_group_timeout_kills_whole_group(tmp_path: Path) -> None:
    """On timeout the process and its children are killed and the run reports it."""
    argv = ["/bin/sh", "-c", "sleep 30 & sleep 30; echo never"]

    with trio.fail_after(20):
        result = await run_process_group(
            argv,
            cwd=tmp_path,
            env={"PATH": "/usr/bin:/bin"},
            timeout_s=0.5,
            stdout_path=tmp_path / "out",
            stderr_path=tmp_path / "err",
        )

    assert result.timed_out is True
    assert result.exit_code == 137
    assert (tmp_path / "out").read_bytes() == b""


async def test_process_group_missing_program_is_invalid_argument(tmp_path: Path) -> None:
    """A program that does not exist is reported as a BackendError naming it."""
    from gomaproxy.errors import BackendError, Code

    with trio.fail_after(10), pytest.raises(BackendError) as caught:
        await run_process_group(
            [str(tmp_path / "nope")],
            cwd=tmp_path,
            env={},
            timeout_s=5,
            stdout_path=tmp_path / "out",
            stderr_path=tmp_path / "err",
        )

    assert caught.value.code == Code.INVALID_ARGUMENT
    assert "nope" in caught.value.message
