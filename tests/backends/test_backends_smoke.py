"""REAPI calls straight to buildbox-casd and BuildGrid, without the proxy.

These tests pin down the backend behaviour that docs/backends.md describes and that
the proxy's gRPC backend relies on: the capabilities, CAS presence checks, Execute
with cache hits, and how buildbox-run lays out the input root.
"""

from __future__ import annotations

import asyncio
import shutil
import uuid
from collections.abc import Awaitable, Callable
from typing import TypeVar

import pytest
from grpclib import Status
from grpclib.exceptions import GRPCError

from gomaproxy.protos import remote_execution_pb2 as re_pb2
from tests.backends.harness import RunningBackend
from tests.backends.reapi_client import ActionSpec, ReapiClient, build_input_tree

pytestmark = [pytest.mark.backends]

T = TypeVar("T")
SCENARIO_TIMEOUT_S = 120.0
OK = 0
INVALID_ARGUMENT = 3
DEADLINE_EXCEEDED = 4


def run_scenario(backend: RunningBackend, scenario: Callable[[ReapiClient], Awaitable[T]]) -> T:
    async def main() -> T:
        async with ReapiClient(backend.address) as client:
            return await asyncio.wait_for(scenario(client), SCENARIO_TIMEOUT_S)

    # A loop factory keeps the runner from setting, and at the end clearing, the
    # thread's current event loop, which later tests that create grpclib channels
    # outside a running loop depend on.
    with asyncio.Runner(loop_factory=asyncio.new_event_loop) as runner:
        return runner.run(main())


async def stdout_of(client: ReapiClient, response: re_pb2.ExecuteResponse) -> bytes:
    digest = response.result.stdout_digest
    if digest.size_bytes == 0:
        return response.result.stdout_raw
    return await client.read_blob(digest)


def unique_salt() -> bytes:
    """A salt that gives an action a digest no earlier test run has cached."""
    return uuid.uuid4().bytes


def test_capabilities_enable_execution(backend: RunningBackend) -> None:
    capabilities = run_scenario(backend, lambda client: client.capabilities())

    assert capabilities.execution_capabilities.exec_enabled
    assert re_pb2.DigestFunction.SHA256 in capabilities.cache_capabilities.digest_functions
    assert capabilities.cache_capabilities.action_cache_update_capabilities.update_enabled


def test_find_missing_blobs_after_upload(backend: RunningBackend) -> None:
    root, blobs = build_input_tree({"a.txt": unique_salt()})

    async def scenario(client: ReapiClient) -> tuple[set, set]:
        before = await client.find_missing(list(blobs))
        await client.upload(blobs)
        after = await client.find_missing(list(blobs))
        return before, after

    before, after = run_scenario(backend, scenario)

    assert before == set(blobs)
    assert after == set()
    assert root in blobs


def test_execute_echo_then_cache_hit(backend: RunningBackend) -> None:
    spec = ActionSpec(["/bin/echo", "hello"], salt=unique_salt())

    async def scenario(client: ReapiClient) -> tuple:
        first = await client.run(spec, {})
        second = await client.run(spec, {})
        return first, await stdout_of(client, first), second

    first, stdout, second = run_scenario(backend, scenario)

    assert first.status.code == OK, first.status.message
    assert first.result.exit_code == 0
    assert stdout == b"hello\n"
    assert not first.cached_result
    assert second.cached_result
    assert second.result.stdout_digest == first.result.stdout_digest


def test_failed_action_is_not_cached(backend: RunningBackend) -> None:
    spec = ActionSpec(["/bin/sh", "-c", "exit 3"], salt=unique_salt())

    async def scenario(client: ReapiClient) -> tuple:
        return await client.run(spec, {}), await client.run(spec, {})

    first, second = run_scenario(backend, scenario)

    assert first.result.exit_code == 3
    assert second.result.exit_code == 3
    assert not second.cached_result


def test_action_timeout_is_deadline_exceeded(backend: RunningBackend) -> None:
    spec = ActionSpec(["/bin/sh", "-c", "sleep 30"], timeout_s=1, salt=unique_salt())

    response = run_scenario(backend, lambda client: client.run(spec, {}))

    assert response.status.code == DEADLINE_EXCEEDED, response.status.message
    assert not response.cached_result


def test_input_root_is_sandbox_root(backend: RunningBackend) -> None:
    """The input root is mounted at /, and the host's /usr hides inputs under usr/."""
    script = (
        "pwd; cat /top.txt; cat /work/proj/a.txt; "
        "test -e /usr/include/gomaproxy-probe.h && echo visible || echo hidden; "
        "test -x /usr/bin/gcc && echo host-gcc; echo written > out/o.txt"
    )
    spec = ActionSpec(
        ["/bin/sh", "-c", script],
        output_paths=["out/o.txt"],
        working_directory="work/proj",
        salt=unique_salt(),
    )
    files = {
        "top.txt": b"top\n",
        "work/proj/a.txt": b"a\n",
        "usr/include/gomaproxy-probe.h": b"probe\n",
    }

    async def scenario(client: ReapiClient) -> tuple:
        response = await client.run(spec, files)
        return response, await stdout_of(client, response)

    response, stdout = run_scenario(backend, scenario)

    assert response.status.code == OK, response.status.message
    assert stdout.decode().splitlines() == ["/work/proj", "top", "a", "hidden", "host-gcc"]
    assert [output.path for output in response.result.output_files] == ["out/o.txt"]


@pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc is not installed")
def test_gcc_compiles_at_absolute_paths(backend: RunningBackend) -> None:
    """A compile laid out like a proxy request at root /: host gcc, inputs at client paths."""
    source = b'#include <stdio.h>\n#include "probe.h"\nint main(void) { return PROBE; }\n'
    spec = ActionSpec(
        ["/usr/bin/gcc", "-I/opt/probe/include", "-c", "main.c", "-o", "out/main.o"],
        environment={"PATH": "/usr/bin:/bin"},
        output_paths=["out/main.o"],
        working_directory="home/user/proj",
        platform={"InputRootAbsolutePath": "/"},
        salt=unique_salt(),
    )
    files = {"home/user/proj/main.c": source, "opt/probe/include/probe.h": b"#define PROBE 0\n"}

    response = run_scenario(backend, lambda client: client.run(spec, files))

    assert response.status.code == OK, response.status.message
    assert response.result.exit_code == 0
    assert [output.path for output in response.result.output_files] == ["out/main.o"]


def test_casd_ignores_input_root_absolute_path(casd_backend: RunningBackend) -> None:
    """casd accepts any InputRootAbsolutePath and still mounts the input root at /."""
    spec = ActionSpec(
        ["/bin/sh", "-c", "cat /marker.txt"],
        platform={"InputRootAbsolutePath": "/somewhere/else", "unknown-key": "x"},
        salt=unique_salt(),
    )

    async def scenario(client: ReapiClient) -> tuple:
        response = await client.run(spec, {"marker.txt": b"at root\n"})
        return response, await stdout_of(client, response)

    response, stdout = run_scenario(casd_backend, scenario)

    assert response.status.code == OK, response.status.message
    assert stdout == b"at root\n"


def test_buildgrid_bot_rejects_other_input_root(buildgrid_backend: RunningBackend) -> None:
    spec = ActionSpec(
        ["/bin/true"], platform={"InputRootAbsolutePath": "/somewhere/else"}, salt=unique_salt()
    )

    response = run_scenario(buildgrid_backend, lambda client: client.run(spec, {}))

    assert response.status.code == INVALID_ARGUMENT
    assert "InputRootAbsolutePath=/somewhere/else" in response.status.message


def test_buildgrid_rejects_unknown_platform_property(buildgrid_backend: RunningBackend) -> None:
    spec = ActionSpec(["/bin/true"], platform={"unknown-key": "x"}, salt=unique_salt())

    async def scenario(client: ReapiClient) -> GRPCError | None:
        try:
            await client.run(spec, {})
        except GRPCError as error:
            return error
        return None

    error = run_scenario(buildgrid_backend, scenario)

    assert error is not None, "Execute succeeded"
    assert error.status == Status.FAILED_PRECONDITION
    assert "Unregistered platform property" in (error.message or "")
