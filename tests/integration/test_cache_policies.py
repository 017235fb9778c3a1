"""goma cache policies, end to end: HTTP, the adapter and the local backend running gcc.

Each test serves a proxy on 127.0.0.1 port 0 over a ``LocalBackend`` wrapped in a
``RecordingBackend``, sends hand-built ExecReqs with the goma HTTP client, and checks
which GetActionResult and Execute calls the adapter made and the ``cache_hit`` of each
response.  The last tests use the in-memory fake backend to reach cache states the local
backend never produces, such as a cached failure.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import trio
from prometheus_client import CollectorRegistry

from gomaproxy.client.http import GomaHttpClient, ServerAddress
from gomaproxy.config import Config
from gomaproxy.digest import DigestKey, digest_of_bytes
from gomaproxy.goma.blob import file_blob, hash_key
from gomaproxy.local.backend import LocalBackend
from gomaproxy.protos import goma_data_pb2 as goma_pb2
from gomaproxy.protos import remote_execution_pb2 as re_pb2
from gomaproxy.proxy import open_proxy
from gomaproxy.remote.backend import Backend
from tests.fakes import FakeBackend, RecordingBackend

pytestmark = [
    pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc is not installed"),
    pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap is not installed"),
]

TIME_LIMIT_S = 60.0
GOOD_SOURCE = b"int answer(void) { return 42; }\n"
BROKEN_SOURCE = b"int broken(void) { return undeclared_name }\n"
# Small enough that two 40 KiB uploads push the compile's blobs out of the CAS.
SMALL_CAS_BYTES = 64 * 1024

Policy = goma_pb2.ExecReq.CachePolicy.ValueType
LOOKUP_AND_STORE = goma_pb2.ExecReq.LOOKUP_AND_STORE
LOOKUP_ONLY = goma_pb2.ExecReq.LOOKUP_ONLY
STORE_ONLY = goma_pb2.ExecReq.STORE_ONLY
LOOKUP_AND_STORE_SUCCESS = goma_pb2.ExecReq.LOOKUP_AND_STORE_SUCCESS
NO_CACHE = goma_pb2.ExecResp.NO_CACHE
MEM_CACHE = goma_pb2.ExecResp.MEM_CACHE
STORAGE_CACHE = goma_pb2.ExecResp.STORAGE_CACHE


def _gcc_hash() -> str:
    with open(os.path.realpath(shutil.which("gcc") or "gcc"), "rb") as handle:
        return hashlib.sha256(handle.read()).hexdigest()


GCC_PATH = shutil.which("gcc") or "/usr/bin/gcc"


def gcc_request(
    cwd: Path, source: bytes = GOOD_SOURCE, *, policy: Policy = LOOKUP_AND_STORE
) -> goma_pb2.ExecReq:
    """Build a relocatable gcc compile of ``source`` as ../src/a.c from ``cwd``."""
    request = goma_pb2.ExecReq(
        arg=["gcc", "-O2", "-c", "../src/a.c", "-o", "a.o"],
        cwd=str(cwd),
        expected_output_files=["a.o"],
        cache_policy=policy,
    )
    spec = request.command_spec
    spec.name, spec.version, spec.target = "gcc", "12[test]", "x86_64-linux-gnu"
    spec.local_compiler_path = GCC_PATH
    spec.binary_hash = GCC_HASH.encode()
    request.requester_info.path_style = goma_pb2.RequesterInfo.POSIX_STYLE
    blob = file_blob(source)
    request.input.add(filename="../src/a.c", hash_key=hash_key(blob), content=blob)
    return request


GCC_HASH = _gcc_hash() if shutil.which("gcc") else "0" * 64


async def _serve(
    tmp_path: Path, backend: Backend, nursery: trio.Nursery
) -> AsyncIterator[GomaHttpClient]:
    config = Config()
    config.server.port = 0
    config.state.dir = tmp_path / "proxy-state"
    config.log.format = "console"
    async with open_proxy(config, backend=backend, registry=CollectorRegistry()) as proxy:
        port = await nursery.start(proxy.serve)
        async with GomaHttpClient(ServerAddress.from_url(f"http://127.0.0.1:{port}")) as client:
            yield client
        nursery.cancel_scope.cancel()


@dataclass
class LocalSetup:
    local: LocalBackend
    recorder: RecordingBackend
    client: GomaHttpClient
    cwd: Path


async def _local_setup(
    tmp_path: Path, *, cas_max_bytes: int = 256 * 1024 * 1024
) -> AsyncIterator[LocalSetup]:
    cwd = tmp_path / "proj" / "out"
    cwd.mkdir(parents=True)
    local = LocalBackend(
        tmp_path / "local", cas_max_bytes=cas_max_bytes, registry=CollectorRegistry()
    )
    async with local, trio.open_nursery() as nursery:
        recorder = RecordingBackend(local)
        async for client in _serve(tmp_path, recorder, nursery):
            yield LocalSetup(local, recorder, client, cwd)


@pytest.fixture
async def setup(tmp_path: Path) -> AsyncIterator[LocalSetup]:
    async for served in _local_setup(tmp_path):
        yield served


@pytest.fixture
async def small_cas_setup(tmp_path: Path) -> AsyncIterator[LocalSetup]:
    async for served in _local_setup(tmp_path, cas_max_bytes=SMALL_CAS_BYTES):
        yield served


async def read_action(backend: Backend, digest: re_pb2.Digest) -> re_pb2.Action:
    request = re_pb2.BatchReadBlobsRequest(digests=[digest])
    response = await backend.batch_read_blobs(request)
    return re_pb2.Action.FromString(response.responses[0].data)


# One test per cache policy against the local backend.


async def test_lookup_and_store_second_request_hits(setup: LocalSetup) -> None:
    """LOOKUP_AND_STORE looks up, runs, stores; the repeat is a MEM_CACHE hit."""
    with trio.fail_after(TIME_LIMIT_S):
        first = await setup.client.exec(gcc_request(setup.cwd))
        second = await setup.client.exec(gcc_request(setup.cwd))

    recorder = setup.recorder
    assert first.result.exit_status == 0
    assert first.result.output[0].blob.content.startswith(b"\x7fELF")
    assert first.cache_hit == NO_CACHE
    assert second.result.exit_status == 0
    assert second.cache_hit == MEM_CACHE
    assert second.result.output[0].blob == first.result.output[0].blob
    assert recorder.calls["GetActionResult"] == 2
    assert recorder.calls["Execute"] == 1
    (execute,) = recorder.execute_requests
    assert not execute.skip_cache_lookup
    assert recorder.action_result_requests[1].action_digest == execute.action_digest
    action = await read_action(setup.local, execute.action_digest)
    assert not action.do_not_cache


async def test_lookup_only_never_stores(setup: LocalSetup) -> None:
    """LOOKUP_ONLY looks up and runs with do_not_cache, so nothing is stored."""
    with trio.fail_after(TIME_LIMIT_S):
        first = await setup.client.exec(gcc_request(setup.cwd, policy=LOOKUP_ONLY))
        second = await setup.client.exec(gcc_request(setup.cwd, policy=LOOKUP_ONLY))
        stored = await setup.client.exec(gcc_request(setup.cwd))

    recorder = setup.recorder
    assert first.result.exit_status == 0
    assert first.cache_hit == NO_CACHE
    assert second.cache_hit == NO_CACHE
    assert stored.cache_hit == NO_CACHE
    assert recorder.calls["GetActionResult"] == 3
    assert recorder.calls["Execute"] == 3
    only_action = await read_action(setup.local, recorder.execute_requests[0].action_digest)
    assert only_action.do_not_cache
    store_action = await read_action(setup.local, recorder.execute_requests[2].action_digest)
    assert not store_action.do_not_cache


async def test_lookup_only_hits_stored_result(setup: LocalSetup) -> None:
    """LOOKUP_ONLY finds what LOOKUP_AND_STORE stored for the same compile."""
    with trio.fail_after(TIME_LIMIT_S):
        stored = await setup.client.exec(gcc_request(setup.cwd))
        looked_up = await setup.client.exec(gcc_request(setup.cwd, policy=LOOKUP_ONLY))

    recorder = setup.recorder
    assert stored.cache_hit == NO_CACHE
    assert looked_up.cache_hit == MEM_CACHE
    assert looked_up.result.exit_status == 0
    assert recorder.calls["Execute"] == 1
    stored_digest = recorder.execute_requests[0].action_digest
    assert recorder.action_result_requests[1].action_digest == stored_digest
    assert looked_up.result.output[0].blob == stored.result.output[0].blob


async def test_store_only_skips_lookup_and_stores(setup: LocalSetup) -> None:
    """STORE_ONLY never calls GetActionResult, runs with skip_cache_lookup and stores."""
    with trio.fail_after(TIME_LIMIT_S):
        first = await setup.client.exec(gcc_request(setup.cwd, policy=STORE_ONLY))
        again = await setup.client.exec(gcc_request(setup.cwd, policy=STORE_ONLY))
        looked_up = await setup.client.exec(gcc_request(setup.cwd))

    recorder = setup.recorder
    assert first.result.exit_status == 0
    assert first.cache_hit == NO_CACHE
    assert again.cache_hit == NO_CACHE
    assert looked_up.cache_hit == MEM_CACHE
    assert recorder.calls["GetActionResult"] == 1
    assert recorder.calls["Execute"] == 2
    assert all(request.skip_cache_lookup for request in recorder.execute_requests)
    assert not any(response.cached_result for response in recorder.execute_responses)


async def test_lookup_and_store_success_keeps_failures_out(setup: LocalSetup) -> None:
    """LOOKUP_AND_STORE_SUCCESS stores a success but runs a failing compile every time."""
    broken = gcc_request(setup.cwd, BROKEN_SOURCE, policy=LOOKUP_AND_STORE_SUCCESS)
    good = gcc_request(setup.cwd, policy=LOOKUP_AND_STORE_SUCCESS)

    with trio.fail_after(TIME_LIMIT_S):
        failed = await setup.client.exec(broken)
        failed_again = await setup.client.exec(broken)
        first = await setup.client.exec(good)
        second = await setup.client.exec(good)

    recorder = setup.recorder
    assert failed.result.exit_status == 1
    assert b"undeclared_name" in failed.result.stderr_buffer
    assert failed_again.result.exit_status == 1
    assert failed_again.cache_hit == NO_CACHE
    assert first.cache_hit == NO_CACHE
    assert second.cache_hit == MEM_CACHE
    assert recorder.calls["GetActionResult"] == 4
    assert recorder.calls["Execute"] == 3
    action = await read_action(setup.local, recorder.execute_requests[0].action_digest)
    assert not action.do_not_cache


async def test_evicted_output_makes_cache_miss(small_cas_setup: LocalSetup) -> None:
    """A stored result whose output blob left the CAS is a miss, and the compile runs again."""
    setup = small_cas_setup
    with trio.fail_after(TIME_LIMIT_S):
        first = await setup.client.exec(gcc_request(setup.cwd))
        output = setup.recorder.execute_responses[0].result.output_files[0].digest
        for _ in range(2):
            data = os.urandom(40 * 1024)
            await setup.local.batch_update_blobs(
                re_pb2.BatchUpdateBlobsRequest(
                    requests=[{"digest": digest_of_bytes(data).to_proto(), "data": data}]
                )
            )
        missing = await setup.local.find_missing_blobs(
            re_pb2.FindMissingBlobsRequest(blob_digests=[output])
        )
        second = await setup.client.exec(gcc_request(setup.cwd))

    assert list(missing.missing_blob_digests) == [output]
    assert first.cache_hit == NO_CACHE
    assert second.cache_hit == NO_CACHE
    assert second.result.exit_status == 0
    assert second.result.output[0].blob == first.result.output[0].blob
    assert setup.recorder.calls["Execute"] == 2


# Cache states that only the fake backend produces.


def _object_runner(exit_code: int = 0):  # type: ignore[no-untyped-def]
    def run(command: re_pb2.Command, cas: dict[DigestKey, bytes]) -> re_pb2.ActionResult:
        content = b"object of " + " ".join(command.arguments).encode()
        digest = digest_of_bytes(content)
        cas[digest] = content
        result = re_pb2.ActionResult(exit_code=exit_code)
        for path in command.output_paths:
            result.output_files.add(path=path, digest=digest.to_proto())
        return result

    return run


@pytest.fixture
async def fake_setup(tmp_path: Path) -> AsyncIterator[tuple[FakeBackend, GomaHttpClient, Path]]:
    cwd = tmp_path / "proj" / "out"
    cwd.mkdir(parents=True)
    fake = FakeBackend(runner=_object_runner())
    async with trio.open_nursery() as nursery:
        async for client in _serve(tmp_path, fake, nursery):
            yield fake, client, cwd


def _with_failure(result: re_pb2.ActionResult) -> re_pb2.ActionResult:
    failed = re_pb2.ActionResult()
    failed.CopyFrom(result)
    failed.exit_code = 2
    failed.stderr_raw = b"exec format error\n"
    return failed


async def test_cached_failure_reruns_once_without_lookup(
    fake_setup: tuple[FakeBackend, GomaHttpClient, Path],
) -> None:
    """A cached non-zero exit is a miss; the action runs once with skip_cache_lookup."""
    fake, client, cwd = fake_setup
    with trio.fail_after(TIME_LIMIT_S):
        await client.exec(gcc_request(cwd))
        (digest,) = fake.action_cache
        fake.action_cache[digest] = _with_failure(fake.action_cache[digest])
        rerun = await client.exec(gcc_request(cwd))

    assert rerun.result.exit_status == 0
    assert rerun.cache_hit == NO_CACHE
    assert fake.calls["GetActionResult"] == 2
    assert fake.calls["Execute"] == 2
    assert fake.execute_requests[1].skip_cache_lookup
    assert fake.action_cache[digest].exit_code == 0


async def test_execute_cached_failure_reruns_once(
    fake_setup: tuple[FakeBackend, GomaHttpClient, Path],
) -> None:
    """A failure that Execute serves from its cache runs again with skip_cache_lookup."""
    fake, client, cwd = fake_setup
    fake.serve_cached_on_execute = True
    with trio.fail_after(TIME_LIMIT_S):
        await client.exec(gcc_request(cwd))
        (digest,) = fake.action_cache
        failure = _with_failure(fake.action_cache[digest])
        fake.action_cache[digest] = failure
        fake.answer_action_result = False
        rerun = await client.exec(gcc_request(cwd))

    assert rerun.result.exit_status == 0
    assert rerun.cache_hit == NO_CACHE
    assert fake.calls["Execute"] == 3
    assert not fake.execute_requests[1].skip_cache_lookup
    assert fake.execute_requests[2].skip_cache_lookup


async def test_cached_hit_with_missing_output_runs(
    fake_setup: tuple[FakeBackend, GomaHttpClient, Path],
) -> None:
    """A cached result whose output the CAS lacks is a miss in the adapter itself."""
    fake, client, cwd = fake_setup
    with trio.fail_after(TIME_LIMIT_S):
        first = await client.exec(gcc_request(cwd))
        (digest,) = fake.action_cache
        output = DigestKey.of(fake.action_cache[digest].output_files[0].digest)
        del fake.cas[output]
        second = await client.exec(gcc_request(cwd))

    assert first.cache_hit == NO_CACHE
    assert second.cache_hit == NO_CACHE
    assert second.result.exit_status == 0
    assert fake.calls["Execute"] == 2
    assert not fake.execute_requests[1].skip_cache_lookup


async def test_execute_cached_success_is_storage_cache(
    fake_setup: tuple[FakeBackend, GomaHttpClient, Path],
) -> None:
    """A success that Execute serves from its cache is reported as STORAGE_CACHE."""
    fake, client, cwd = fake_setup
    fake.serve_cached_on_execute = True
    with trio.fail_after(TIME_LIMIT_S):
        await client.exec(gcc_request(cwd))
        fake.answer_action_result = False
        second = await client.exec(gcc_request(cwd))

    assert second.cache_hit == STORAGE_CACHE
    assert second.result.exit_status == 0
    assert fake.executions == 1
