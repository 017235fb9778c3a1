"""Real compiles through ``gomaproxy serve --backend grpc://...`` on casd and BuildGrid.

Each test starts the proxy as a subprocess pointed at a backend from conftest.py. It
compiles a C file that includes system headers, so the action runs with the input root
at /, and compares the object with a local gcc compile. A second compile must be
served from the backend's action cache.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# conftest.py has put scripts/ on sys.path through harness.py.
from accept_backends import PROXY_CONFIG
from accept_main import CompileSettings, ServerProcess, run_command, sha256_file

from tests.backends.harness import RunningBackend

pytestmark = [
    pytest.mark.backends,
    pytest.mark.skipif(
        importlib.util.find_spec("gomaproxy.remote.grpc_backend") is None,
        reason="this checkout has no gRPC backend (gomaproxy/remote/grpc_backend.py)",
    ),
]

COMPILE_TIMEOUT_S = 120.0
START_TIMEOUT_S = 60.0
SOURCE = b"""\
#include <stdio.h>
#include <string.h>
#include "scale.h"

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
    printf("%d\\n", count_vowels("backend"));
    return 0;
}
"""
HEADER = b"#define SCALE 2\n"
GCC_ARGS = ["gcc", "-O2", "-I../include", "-c", "../src/vowels.c"]


@pytest.fixture
def proxy(backend: RunningBackend, tmp_path: Path) -> Iterator[CompileSettings]:
    """Run ``gomaproxy serve`` against ``backend`` and return settings for ``gomaproxy cc``."""
    config_path = tmp_path / "gomaproxy.toml"
    config_path.write_text(PROXY_CONFIG)
    command = [sys.executable, "-m", "gomaproxy"]
    server = ServerProcess(command, tmp_path)
    server.args += ["--config", str(config_path), "--backend", backend.url]
    server.start(START_TIMEOUT_S)
    try:
        yield CompileSettings(
            compiler="gcc",
            jobs=1,
            timeout=COMPILE_TIMEOUT_S,
            gomaproxy_command=command,
            server_url=server.url,
            client_state_dir=tmp_path / "client-state",
        )
    finally:
        server.stop(10.0)
        print(f"proxy log {server.log_path}:\n{server.log_tail()}")  # noqa: T201 (shown on failure)


def make_project(root: Path) -> Path:
    (root / "src").mkdir(parents=True)
    (root / "include").mkdir()
    (root / "out").mkdir()
    (root / "src" / "vowels.c").write_bytes(SOURCE)
    (root / "include" / "scale.h").write_bytes(HEADER)
    return root / "out"


def test_compile_matches_local_then_hits_cache(
    proxy: CompileSettings, backend: RunningBackend, tmp_path: Path
) -> None:
    cwd = make_project(tmp_path / "project")
    local = run_command([*GCC_ARGS, "-o", "local.o"], cwd, COMPILE_TIMEOUT_S)
    assert local.returncode == 0, local.describe_failure()

    first_report = tmp_path / "first.json"
    first_args = proxy.proxy_cc_args(first_report, [*GCC_ARGS, "-o", "remote.o"])
    first = run_command(first_args, cwd, COMPILE_TIMEOUT_S, proxy.proxy_env())
    assert first.returncode == 0, first.describe_failure()
    assert sha256_file(cwd / "remote.o") == sha256_file(cwd / "local.o")
    assert json.loads(first_report.read_text())["exit_status"] == 0

    (cwd / "remote.o").unlink()
    second_report = tmp_path / "second.json"
    second_args = proxy.proxy_cc_args(second_report, [*GCC_ARGS, "-o", "remote.o"])
    second = run_command(second_args, cwd, COMPILE_TIMEOUT_S, proxy.proxy_env())
    assert second.returncode == 0, second.describe_failure()
    assert sha256_file(cwd / "remote.o") == sha256_file(cwd / "local.o")
    report = json.loads(second_report.read_text())
    assert report["cache_hit"] != "NO_CACHE", f"{backend.name}: {report}"
