"""Real compiles through the real HTTP server on the embedded backend.

The proxy runs inside the test's trio run on 127.0.0.1 port 0; ``gomaproxy cc`` runs as a
separate process, the way a build would start it.  Objects are compared byte for byte
with a local gcc compile in the same working directory.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio
from prometheus_client import CollectorRegistry

import gomaproxy
from gomaproxy.config import Config
from gomaproxy.proxy import GomaProxy, open_proxy

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc is not installed"),
    pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap is not installed"),
]

SOURCE = b"""\
#include <stdio.h>
#include <string.h>
#include "util.h"

static const char *names[] = {"zero", "one", "two", "three"};

int count_vowels(const char *text) {
    int total = 0;
    for (size_t i = 0; i < strlen(text); i++) {
        if (strchr("aeiou", text[i]) != NULL) {
            total += SCALE;
        }
    }
    return total;
}

int main(void) {
    for (int i = 0; i < 4; i++) {
        printf("%s has %d vowels\\n", names[i], count_vowels(names[i]));
    }
    return 0;
}
"""
HEADER = b"#define SCALE 1\n"
# The directory that contains the gomaproxy package, so the launcher imports this checkout.
PACKAGE_ROOT = Path(gomaproxy.__file__).resolve().parent.parent
BROKEN = b"int broken(void) { return undeclared_name }\n"


@pytest.fixture
async def proxy(tmp_path: Path) -> AsyncIterator[tuple[GomaProxy, str]]:
    config = Config()
    config.server.port = 0
    config.state.dir = tmp_path / "state"
    config.log.format = "console"
    async with (
        open_proxy(config, registry=CollectorRegistry()) as running,
        trio.open_nursery() as nursery,
    ):
        port = await nursery.start(running.serve)
        yield running, f"http://127.0.0.1:{port}"
        nursery.cancel_scope.cancel()


def _project(root: Path) -> Path:
    (root / "src").mkdir(parents=True)
    (root / "include").mkdir()
    (root / "out").mkdir()
    (root / "src" / "vowels.c").write_bytes(SOURCE)
    (root / "include" / "util.h").write_bytes(HEADER)
    (root / "src" / "broken.c").write_bytes(BROKEN)
    return root / "out"


# Both the local and the remote compile see this environment.  goma clients do not
# forward locale variables, so a remote gcc prints ASCII quotes; the local one must too.
BASE_ENV = {"PATH": "/usr/bin:/bin"}


async def _cc(
    server: str, cwd: Path, report: Path, *args: str
) -> subprocess.CompletedProcess[bytes]:
    command = [
        sys.executable,
        "-m",
        "gomaproxy",
        "cc",
        "--server",
        server,
        "--report",
        str(report),
        "--",
        *args,
    ]
    client_state = cwd / ".client-state"
    env = {
        **BASE_ENV,
        "GOMAPROXY_CLIENT_STATE_DIR": str(client_state),
        "HOME": str(cwd),
        "PYTHONPATH": str(PACKAGE_ROOT),
    }
    return await trio.run_process(
        command, cwd=cwd, env=env, capture_stdout=True, capture_stderr=True, check=False
    )


async def _local(cwd: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    return await trio.run_process(
        list(args), cwd=cwd, env=BASE_ENV, capture_stdout=True, capture_stderr=True, check=False
    )


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


FLAGS = ["-O2", "-fPIC", "-I../include", "-c", "../src/vowels.c"]


async def test_compile_through_http_matches_local_gcc(
    proxy: tuple[GomaProxy, str], tmp_path: Path
) -> None:
    """A C file with system and project headers compiles remotely to the local object."""
    _, server = proxy
    cwd = _project(tmp_path / "proj")

    with trio.fail_after(120):
        local = await _local(cwd, "gcc", *FLAGS, "-o", "local.o")
        remote = await _cc(server, cwd, tmp_path / "r1.json", "gcc", *FLAGS, "-o", "remote.o")

    assert local.returncode == 0
    assert remote.returncode == 0, remote.stderr.decode()
    assert _sha256(cwd / "remote.o") == _sha256(cwd / "local.o")
    report = json.loads((tmp_path / "r1.json").read_text())
    assert report["exit_status"] == 0
    assert report["cache_hit"] == "NO_CACHE"


async def test_compile_twice_second_is_cache_hit(
    proxy: tuple[GomaProxy, str], tmp_path: Path
) -> None:
    """The second identical compile comes from the action cache with the same object."""
    _, server = proxy
    cwd = _project(tmp_path / "proj")

    with trio.fail_after(120):
        first = await _cc(server, cwd, tmp_path / "r1.json", "gcc", *FLAGS, "-o", "remote.o")
        digest = _sha256(cwd / "remote.o")
        (cwd / "remote.o").unlink()
        second = await _cc(server, cwd, tmp_path / "r2.json", "gcc", *FLAGS, "-o", "remote.o")

    assert first.returncode == 0, first.stderr.decode()
    assert second.returncode == 0, second.stderr.decode()
    assert json.loads((tmp_path / "r2.json").read_text())["cache_hit"] != "NO_CACHE"
    assert _sha256(cwd / "remote.o") == digest


async def test_broken_source_returns_compiler_exit_and_stderr(
    proxy: tuple[GomaProxy, str], tmp_path: Path
) -> None:
    """A compile error comes back with gcc's exit status and exactly its stderr."""
    _, server = proxy
    cwd = _project(tmp_path / "proj")
    args = ["gcc", "-O2", "-c", "../src/broken.c", "-o", "broken.o"]

    with trio.fail_after(120):
        local = await _local(cwd, *args)
        remote = await _cc(server, cwd, tmp_path / "r.json", *args)

    assert local.returncode == 1
    assert remote.returncode == local.returncode
    assert remote.stderr == local.stderr
    assert not (cwd / "broken.o").exists()


async def test_compile_without_bubblewrap_is_bad_request(tmp_path: Path) -> None:
    """With bubblewrap off, a compile that includes system headers gets BAD_REQUEST naming it."""
    config = Config()
    config.server.port = 0
    config.state.dir = tmp_path / "state"
    config.local.bubblewrap = "never"
    cwd = _project(tmp_path / "proj")

    async with (
        open_proxy(config, registry=CollectorRegistry()) as running,
        trio.open_nursery() as nursery,
    ):
        port = await nursery.start(running.serve)
        with trio.fail_after(120):
            remote = await _cc(
                f"http://127.0.0.1:{port}",
                cwd,
                tmp_path / "r.json",
                "gcc",
                *FLAGS,
                "-o",
                "remote.o",
            )
        nursery.cancel_scope.cancel()

    report = json.loads((tmp_path / "r.json").read_text())
    assert remote.returncode != 0
    assert b"bubblewrap" in remote.stderr
    assert report["cache_hit"] is None
    assert not (cwd / "remote.o").exists()
