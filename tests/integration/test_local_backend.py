"""Integration tests of the local backend: real files under tmp_path and real processes.

Every test that does I/O runs under ``trio.fail_after``.  Tests that need bubblewrap or
gcc are skipped where those are not installed.
"""

from __future__ import annotations

import os
import posixpath
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from pathlib import Path

import pytest
import trio
from google.rpc import error_details_pb2
from prometheus_client import CollectorRegistry

from gomaproxy.digest import DigestKey, digest_of_bytes, digest_of_message
from gomaproxy.errors import BackendError, Code
from gomaproxy.local.backend import LocalBackend
from gomaproxy.local.cas import ContentAddressableStorage
from gomaproxy.protos import bytestream_pb2 as bs_pb2
from gomaproxy.protos import longrunning_pb2 as lro_pb2
from gomaproxy.protos import remote_execution_pb2 as re_pb2

HAVE_BWRAP = shutil.which("bwrap") is not None
HAVE_GCC = shutil.which("gcc") is not None
needs_bwrap = pytest.mark.skipif(not HAVE_BWRAP, reason="bubblewrap (bwrap) is not installed")

TIME_LIMIT_S = 30.0
FAILING_SCRIPT = "echo hi > out/x.txt; echo err >&2; exit 3"


# Helpers.


BackendFactory = Callable[..., Awaitable[tuple[LocalBackend, CollectorRegistry]]]


@pytest.fixture
async def make_backend(tmp_path: Path) -> AsyncIterator[BackendFactory]:
    """Open local backends on ``tmp_path / "state"`` with their own registries; close them after."""
    opened: list[LocalBackend] = []

    async def make(
        *, cas_max_bytes: int = 64 * 1024 * 1024, use_bwrap: bool | None = None
    ) -> tuple[LocalBackend, CollectorRegistry]:
        registry = CollectorRegistry()
        backend = LocalBackend(
            tmp_path / "state", cas_max_bytes=cas_max_bytes, use_bwrap=use_bwrap, registry=registry
        )
        await backend.open()
        opened.append(backend)
        return backend, registry

    yield make
    for backend in opened:
        await backend.aclose()


async def upload(backend: LocalBackend, *blobs: bytes) -> list[re_pb2.Digest]:
    """Upload ``blobs`` with BatchUpdateBlobs and return their digests."""
    request = re_pb2.BatchUpdateBlobsRequest()
    for data in blobs:
        request.requests.add(digest=digest_of_bytes(data).to_proto(), data=data)
    response = await backend.batch_update_blobs(request)
    for entry in response.responses:
        assert entry.status.code == Code.OK, entry.status.message
    return [entry.digest for entry in response.responses]


async def upload_message(backend: LocalBackend, message: object) -> re_pb2.Digest:
    key, data = digest_of_message(message)  # type: ignore[arg-type]  # any protobuf message
    await upload(backend, data)
    return key.to_proto()


async def read_blob(backend: LocalBackend, digest: re_pb2.Digest) -> bytes:
    """Read a blob with BatchReadBlobs, failing the test on a non-OK status."""
    response = await backend.batch_read_blobs(re_pb2.BatchReadBlobsRequest(digests=[digest]))
    entry = response.responses[0]
    assert entry.status.code == Code.OK, entry.status.message
    return entry.data


async def upload_tree(
    backend: LocalBackend, files: Mapping[str, bytes], executables: Iterable[str] = ()
) -> re_pb2.Digest:
    """Upload ``files`` (relative path to content) as an input root and return its digest."""
    executable = set(executables)
    await upload(backend, *files.values())

    async def build(prefix: str) -> re_pb2.Digest:
        directory = re_pb2.Directory()
        children: set[str] = set()
        for path, data in sorted(files.items()):
            if posixpath.dirname(path) == prefix:
                directory.files.add(
                    name=posixpath.basename(path),
                    digest=digest_of_bytes(data).to_proto(),
                    is_executable=path in executable,
                )
            elif path.startswith(f"{prefix}/" if prefix else ""):
                rest = path[len(prefix) + 1 :] if prefix else path
                children.add(rest.split("/")[0])
        for child in sorted(children):
            child_digest = await build(posixpath.join(prefix, child))
            directory.directories.add(name=child, digest=child_digest)
        return await upload_message(backend, directory)

    return await build("")


async def upload_action(
    backend: LocalBackend,
    arguments: Sequence[str],
    *,
    files: Mapping[str, bytes] | None = None,
    output_paths: Sequence[str] = (),
    output_files: Sequence[str] = (),
    output_directories: Sequence[str] = (),
    environment: Mapping[str, str] | None = None,
    working_directory: str = "",
    platform: Mapping[str, str] | None = None,
    timeout_s: float | None = None,
    do_not_cache: bool = False,
) -> re_pb2.Digest:
    """Upload a Command, its input root and an Action; return the action digest."""
    command = re_pb2.Command(
        arguments=arguments,
        output_paths=output_paths,
        output_files=output_files,
        output_directories=output_directories,
        working_directory=working_directory,
    )
    for name, value in sorted((environment or {}).items()):
        command.environment_variables.add(name=name, value=value)

    action = re_pb2.Action(
        command_digest=await upload_message(backend, command),
        input_root_digest=await upload_tree(backend, files or {}),
        do_not_cache=do_not_cache,
    )
    for name, value in sorted((platform or {}).items()):
        action.platform.properties.add(name=name, value=value)
    if timeout_s is not None:
        action.timeout.FromNanoseconds(int(timeout_s * 1e9))
    return await upload_message(backend, action)


async def execute(
    backend: LocalBackend, action_digest: re_pb2.Digest, *, skip_cache_lookup: bool = False
) -> tuple[list[lro_pb2.Operation], re_pb2.ExecuteResponse]:
    """Run Execute to the end; return every operation and the final ExecuteResponse."""
    request = re_pb2.ExecuteRequest(
        action_digest=action_digest, skip_cache_lookup=skip_cache_lookup
    )
    operations = [operation async for operation in backend.execute(request)]
    response = re_pb2.ExecuteResponse()
    assert operations[-1].response.Unpack(response)
    return operations, response


def counter(
    registry: CollectorRegistry, name: str, labels: Mapping[str, str] | None = None
) -> float:
    return registry.get_sample_value(name, dict(labels or {})) or 0.0


def executed(registry: CollectorRegistry, exit_label: str) -> float:
    return counter(registry, "gomaproxy_local_actions_executed_total", {"exit": exit_label})


async def write_requests(
    resource_name: str, data: bytes, chunk: int, *, finish: bool = True, start: int = 0
) -> AsyncIterator[bs_pb2.WriteRequest]:
    offset = start
    while True:
        piece = data[offset : offset + chunk]
        last = offset + len(piece) >= len(data)
        yield bs_pb2.WriteRequest(
            resource_name=resource_name,
            write_offset=offset,
            data=piece,
            finish_write=last and finish,
        )
        offset += len(piece)
        if last:
            return


def upload_resource(key: DigestKey, instance: str = "") -> str:
    prefix = f"{instance}/" if instance else ""
    return f"{prefix}uploads/0f4e0e0c-1a57-4f6f-8f0a-2f1a2b3c4d5e/blobs/{key.hash}/{key.size_bytes}"


# Capabilities and CAS.


async def test_backend_capabilities_advertise_sha256_execution() -> None:
    """Capabilities name SHA256, a 4 MiB batch limit, allowed symlinks and execution."""
    backend = LocalBackend(Path("/nonexistent"), cas_max_bytes=1, registry=CollectorRegistry())

    capabilities = await backend.get_capabilities(re_pb2.GetCapabilitiesRequest())

    cache = capabilities.cache_capabilities
    assert list(cache.digest_functions) == [re_pb2.DigestFunction.SHA256]
    assert cache.max_batch_total_size_bytes == 4 * 1024 * 1024
    assert cache.symlink_absolute_path_strategy == re_pb2.SymlinkAbsolutePathStrategy.ALLOWED
    assert capabilities.execution_capabilities.exec_enabled
    assert capabilities.execution_capabilities.digest_function == re_pb2.DigestFunction.SHA256
    assert (capabilities.low_api_version.major, capabilities.low_api_version.minor) == (2, 0)
    assert (capabilities.high_api_version.major, capabilities.high_api_version.minor) == (2, 2)


async def test_backend_batch_upload_then_find_missing(make_backend: BackendFactory) -> None:
    """Uploaded blobs and the empty blob are present; others are reported missing."""
    with trio.fail_after(TIME_LIMIT_S):
        backend, _ = await make_backend()
        (present,) = await upload(backend, b"present")
        absent = digest_of_bytes(b"absent").to_proto()
        empty = digest_of_bytes(b"").to_proto()

        response = await backend.find_missing_blobs(
            re_pb2.FindMissingBlobsRequest(
                instance_name="any/name", blob_digests=[present, absent, empty]
            )
        )

        assert list(response.missing_blob_digests) == [absent]
        assert await read_blob(backend, present) == b"present"
        await backend.aclose()


async def test_backend_batch_upload_rejects_mismatched_blob(make_backend: BackendFactory) -> None:
    """A blob whose content differs from its digest gets INVALID_ARGUMENT naming both digests."""
    with trio.fail_after(TIME_LIMIT_S):
        backend, _ = await make_backend()
        claimed = digest_of_bytes(b"claimed")
        request = re_pb2.BatchUpdateBlobsRequest()
        request.requests.add(digest=claimed.to_proto(), data=b"actual")

        response = await backend.batch_update_blobs(request)

        status = response.responses[0].status
        assert status.code == Code.INVALID_ARGUMENT
        assert str(claimed) in status.message
        assert str(digest_of_bytes(b"actual")) in status.message
        missing = await backend.find_missing_blobs(
            re_pb2.FindMissingBlobsRequest(blob_digests=[claimed.to_proto()])
        )
        assert len(missing.missing_blob_digests) == 1


async def test_backend_batch_upload_mixed_statuses(
    tmp_path: Path, make_backend: BackendFactory
) -> None:
    """A batch stores its good blobs and reports each bad one with its own status."""
    with trio.fail_after(TIME_LIMIT_S):
        backend, registry = await make_backend(cas_max_bytes=1000)
        good = [b"first good", b"second good", b"first good"]
        claimed = digest_of_bytes(b"claimed")
        too_large = b"x" * 1001
        compressed = b"compressed"
        request = re_pb2.BatchUpdateBlobsRequest()
        request.requests.add(digest=digest_of_bytes(good[0]).to_proto(), data=good[0])
        request.requests.add(digest=claimed.to_proto(), data=b"actual")
        request.requests.add(digest=digest_of_bytes(too_large).to_proto(), data=too_large)
        request.requests.add(
            digest=digest_of_bytes(compressed).to_proto(),
            data=compressed,
            compressor=re_pb2.Compressor.ZSTD,
        )
        request.requests.add(digest=digest_of_bytes(good[1]).to_proto(), data=good[1])
        request.requests.add(digest=digest_of_bytes(good[2]).to_proto(), data=good[2])

        response = await backend.batch_update_blobs(request)

        codes = [entry.status.code for entry in response.responses]
        assert codes == [
            Code.OK,
            Code.INVALID_ARGUMENT,
            Code.RESOURCE_EXHAUSTED,
            Code.INVALID_ARGUMENT,
            Code.OK,
            Code.OK,
        ]
        assert [entry.digest for entry in response.responses] == [
            entry.digest for entry in request.requests
        ]
        assert await read_blob(backend, response.responses[0].digest) == good[0]
        assert await read_blob(backend, response.responses[4].digest) == good[1]
        missing = await backend.find_missing_blobs(
            re_pb2.FindMissingBlobsRequest(
                blob_digests=[entry.digest for entry in response.responses[1:4]]
            )
        )
        assert len(missing.missing_blob_digests) == 3
        stored_bytes = len(good[0]) + len(good[1])
        assert registry.get_sample_value("gomaproxy_local_cas_bytes") == stored_bytes
        assert sorted(os.listdir(tmp_path / "state" / "cas" / "tmp")) == []


async def test_backend_batch_upload_failed_write_is_per_blob(
    tmp_path: Path, make_backend: BackendFactory
) -> None:
    """A blob whose file cannot be written gets INTERNAL, and the rest are stored."""
    with trio.fail_after(TIME_LIMIT_S):
        backend, _ = await make_backend()
        blocked = b"blocked blob"
        stored = b"stored blob"
        blocked_key = digest_of_bytes(blocked)
        # A file where the blob's shard directory belongs makes creating that directory fail.
        (tmp_path / "state" / "cas" / blocked_key.hash[:2]).write_bytes(b"")
        request = re_pb2.BatchUpdateBlobsRequest()
        request.requests.add(digest=blocked_key.to_proto(), data=blocked)
        request.requests.add(digest=digest_of_bytes(stored).to_proto(), data=stored)

        response = await backend.batch_update_blobs(request)

        assert response.responses[0].status.code == Code.INTERNAL
        assert str(blocked_key) in response.responses[0].status.message
        assert response.responses[1].status.code == Code.OK
        assert await read_blob(backend, response.responses[1].digest) == stored
        missing = await backend.find_missing_blobs(
            re_pb2.FindMissingBlobsRequest(blob_digests=[blocked_key.to_proto()])
        )
        assert list(missing.missing_blob_digests) == [blocked_key.to_proto()]
        assert sorted(os.listdir(tmp_path / "state" / "cas" / "tmp")) == []


async def test_backend_batch_read_reports_missing_blob(make_backend: BackendFactory) -> None:
    """BatchReadBlobs gives NOT_FOUND for a blob that was never uploaded."""
    with trio.fail_after(TIME_LIMIT_S):
        backend, _ = await make_backend()
        absent = digest_of_bytes(b"never uploaded").to_proto()

        response = await backend.batch_read_blobs(re_pb2.BatchReadBlobsRequest(digests=[absent]))

        assert response.responses[0].status.code == Code.NOT_FOUND


async def test_backend_bytestream_write_then_read(make_backend: BackendFactory) -> None:
    """A chunked ByteStream write stores the blob, and reads honour offset and limit."""
    with trio.fail_after(TIME_LIMIT_S):
        backend, _ = await make_backend()
        data = os.urandom(3 * 1024 * 1024 + 17)
        key = digest_of_bytes(data)

        response = await backend.write(write_requests(upload_resource(key, "inst"), data, 1 << 20))

        assert response.committed_size == len(data)
        whole = bs_pb2.ReadRequest(resource_name=f"inst/blobs/{key.hash}/{key.size_bytes}")
        assert b"".join([r.data async for r in backend.read(whole)]) == data
        ranged = bs_pb2.ReadRequest(
            resource_name=f"blobs/{key.hash}/{key.size_bytes}", read_offset=1000, read_limit=5000
        )
        assert b"".join([r.data async for r in backend.read(ranged)]) == data[1000:6000]


async def test_backend_bytestream_present_blob_completes_early(
    make_backend: BackendFactory,
) -> None:
    """Writing a blob the CAS contains returns the full size after the first request."""
    with trio.fail_after(TIME_LIMIT_S):
        backend, _ = await make_backend()
        data = b"x" * 100
        await upload(backend, data)
        key = digest_of_bytes(data)
        consumed: list[int] = []

        async def requests() -> AsyncIterator[bs_pb2.WriteRequest]:
            async for request in write_requests(upload_resource(key), data, 10):
                consumed.append(request.write_offset)
                yield request

        response = await backend.write(requests())

        assert response.committed_size == 100
        assert consumed == [0]


async def test_backend_bytestream_rejects_wrong_offset(make_backend: BackendFactory) -> None:
    """A write_offset that skips bytes is INVALID_ARGUMENT and stores nothing."""
    with trio.fail_after(TIME_LIMIT_S):
        backend, _ = await make_backend()
        data = b"0123456789"
        key = digest_of_bytes(data)

        async def requests() -> AsyncIterator[bs_pb2.WriteRequest]:
            yield bs_pb2.WriteRequest(
                resource_name=upload_resource(key), write_offset=0, data=data[:4]
            )
            yield bs_pb2.WriteRequest(write_offset=6, data=data[6:], finish_write=True)

        with pytest.raises(BackendError) as caught:
            await backend.write(requests())

        assert caught.value.code is Code.INVALID_ARGUMENT
        assert "write_offset 6" in caught.value.message
        missing = await backend.find_missing_blobs(
            re_pb2.FindMissingBlobsRequest(blob_digests=[key.to_proto()])
        )
        assert len(missing.missing_blob_digests) == 1


async def test_backend_bytestream_resumes_partial_write(make_backend: BackendFactory) -> None:
    """A stream without finish_write resumes at the committed size from QueryWriteStatus."""
    with trio.fail_after(TIME_LIMIT_S):
        backend, _ = await make_backend()
        data = b"abcdefghij" * 10
        key = digest_of_bytes(data)
        resource = upload_resource(key)

        first = await backend.write(write_requests(resource, data[:40], 10, finish=False))
        status = await backend.query_write_status(
            bs_pb2.QueryWriteStatusRequest(resource_name=resource)
        )
        second = await backend.write(write_requests(resource, data, 30, start=40))
        final = await backend.query_write_status(
            bs_pb2.QueryWriteStatusRequest(resource_name=resource)
        )

        assert first.committed_size == 40
        assert (status.committed_size, status.complete) == (40, False)
        assert second.committed_size == 100
        assert (final.committed_size, final.complete) == (100, True)
        assert await read_blob(backend, key.to_proto()) == data


@pytest.mark.parametrize(
    ("offset", "code"),
    [(0, Code.NOT_FOUND), (-1, Code.OUT_OF_RANGE)],
    ids=["missing", "negative-offset"],
)
async def test_backend_bytestream_read_errors(
    make_backend: BackendFactory, offset: int, code: Code
) -> None:
    """ByteStream Read of a missing blob is NOT_FOUND and a negative offset is OUT_OF_RANGE."""
    with trio.fail_after(TIME_LIMIT_S):
        backend, _ = await make_backend()
        key = digest_of_bytes(b"never uploaded")
        request = bs_pb2.ReadRequest(
            resource_name=f"blobs/{key.hash}/{key.size_bytes}", read_offset=offset
        )

        with pytest.raises(BackendError) as caught:
            async for _ in backend.read(request):
                pass

        assert caught.value.code is code


async def test_backend_query_write_status_unknown_upload(make_backend: BackendFactory) -> None:
    """QueryWriteStatus of an upload never started is NOT_FOUND."""
    with trio.fail_after(TIME_LIMIT_S):
        backend, _ = await make_backend()
        key = digest_of_bytes(b"nothing")

        with pytest.raises(BackendError) as caught:
            await backend.query_write_status(
                bs_pb2.QueryWriteStatusRequest(resource_name=upload_resource(key))
            )

        assert caught.value.code is Code.NOT_FOUND


async def test_backend_state_dir_is_exclusive(tmp_path: Path, make_backend: BackendFactory) -> None:
    """A second local backend on an open state directory fails with FAILED_PRECONDITION."""
    with trio.fail_after(TIME_LIMIT_S):
        await make_backend()
        second = LocalBackend(tmp_path / "state", cas_max_bytes=1024, registry=CollectorRegistry())

        with pytest.raises(BackendError) as caught:
            await second.open()

        assert caught.value.code is Code.FAILED_PRECONDITION
        assert "in use" in caught.value.message


async def test_backend_reopen_keeps_cached_results(tmp_path: Path) -> None:
    """A backend opened again on the same state directory serves results cached before."""
    with trio.fail_after(TIME_LIMIT_S):
        async with LocalBackend(
            tmp_path / "state", cas_max_bytes=1 << 20, registry=CollectorRegistry()
        ) as first:
            action_digest = await upload_action(
                first, ["/bin/sh", "-c", "echo kept > k.txt"], output_files=["k.txt"]
            )
            await execute(first, action_digest)

        async with LocalBackend(
            tmp_path / "state", cas_max_bytes=1 << 20, registry=CollectorRegistry()
        ) as second:
            result = await second.get_action_result(
                re_pb2.GetActionResultRequest(action_digest=action_digest)
            )
            assert await read_blob(second, result.output_files[0].digest) == b"kept\n"


async def test_cas_eviction_skips_pinned_blobs(tmp_path: Path) -> None:
    """Over the cap, the least recently used unpinned blob goes first and pinned ones stay."""
    with trio.fail_after(TIME_LIMIT_S):
        cas = await ContentAddressableStorage.open(tmp_path / "cas", max_bytes=250)
        blobs = [bytes([index]) * 100 for index in range(3)]
        keys = [digest_of_bytes(blob) for blob in blobs]
        await cas.write(keys[0], blobs[0])
        await cas.write(keys[1], blobs[1])

        with cas.pinned([keys[0]]):
            await cas.write(keys[2], blobs[2])

        assert cas.contains(keys[0])
        assert not cas.contains(keys[1])
        assert cas.contains(keys[2])
        assert cas.total_bytes == 200
        assert not (tmp_path / "cas" / keys[1].hash[:2] / keys[1].hash).exists()


async def test_cas_batch_over_cap_evicts_to_cap(tmp_path: Path) -> None:
    """A batch that overflows the cap evicts older blobs first and keeps pinned ones."""
    with trio.fail_after(TIME_LIMIT_S):
        cas = await ContentAddressableStorage.open(tmp_path / "cas", max_bytes=250)
        blobs = [bytes([index]) * 100 for index in range(4)]
        keys = [digest_of_bytes(blob) for blob in blobs]
        await cas.write(keys[0], blobs[0])
        await cas.write(keys[1], blobs[1])

        with cas.pinned([keys[0]]):
            errors = await cas.write_batch([(keys[2], blobs[2]), (keys[3], blobs[3])])

        assert errors == [None, None]
        assert cas.contains(keys[0])
        assert not cas.contains(keys[1])
        assert not cas.contains(keys[2])
        assert cas.contains(keys[3])
        assert cas.total_bytes == 200


async def test_cas_reopen_indexes_existing_blobs(tmp_path: Path) -> None:
    """A store opened again on the same directory finds the blobs written before."""
    with trio.fail_after(TIME_LIMIT_S):
        first = await ContentAddressableStorage.open(tmp_path / "cas", max_bytes=1000)
        key = digest_of_bytes(b"kept")
        await first.write(key, b"kept")

        second = await ContentAddressableStorage.open(tmp_path / "cas", max_bytes=1000)

        assert second.contains(key)
        assert await second.read(key) == b"kept"
        assert second.total_bytes == 4


# Execution.


@pytest.mark.parametrize(
    "use_bwrap",
    [pytest.param(True, marks=needs_bwrap, id="bwrap"), pytest.param(False, id="direct")],
)
async def test_execute_failing_action_exact_result(
    tmp_path: Path, use_bwrap: bool, make_backend: BackendFactory
) -> None:
    """A non-zero exit is reported with its stdout, stderr and outputs, and is not cached."""
    with trio.fail_after(TIME_LIMIT_S):
        backend, registry = await make_backend(use_bwrap=use_bwrap)
        action_digest = await upload_action(
            backend, ["/bin/sh", "-c", FAILING_SCRIPT], output_paths=["out/x.txt"]
        )

        operations, response = await execute(backend, action_digest)

        assert len(operations) == 2
        assert not operations[0].done
        first_metadata = re_pb2.ExecuteOperationMetadata()
        assert operations[0].metadata.Unpack(first_metadata)
        assert first_metadata.stage == re_pb2.ExecutionStage.QUEUED
        assert operations[1].done
        assert operations[1].name == operations[0].name

        assert response.status.code == Code.OK
        assert not response.cached_result
        result = response.result
        assert result.exit_code == 3
        assert result.stdout_digest == digest_of_bytes(b"").to_proto()
        assert result.stderr_digest == digest_of_bytes(b"err\n").to_proto()
        assert await read_blob(backend, result.stderr_digest) == b"err\n"
        assert len(result.output_files) == 1
        assert result.output_files[0].path == "out/x.txt"
        assert result.output_files[0].digest == digest_of_bytes(b"hi\n").to_proto()
        assert not result.output_files[0].is_executable
        assert await read_blob(backend, result.output_files[0].digest) == b"hi\n"

        metadata = result.execution_metadata
        assert metadata.worker
        assert metadata.queued_timestamp.ToNanoseconds() > 0
        assert (
            metadata.worker_start_timestamp.ToNanoseconds()
            >= metadata.queued_timestamp.ToNanoseconds()
        )
        assert (
            metadata.execution_completed_timestamp.ToNanoseconds()
            >= metadata.execution_start_timestamp.ToNanoseconds()
        )
        assert metadata.output_upload_completed_timestamp.ToNanoseconds() > 0
        assert (
            metadata.worker_completed_timestamp.ToNanoseconds()
            >= metadata.output_upload_completed_timestamp.ToNanoseconds()
        )

        with pytest.raises(BackendError) as caught:
            await backend.get_action_result(
                re_pb2.GetActionResultRequest(action_digest=action_digest)
            )
        assert caught.value.code is Code.NOT_FOUND
        assert executed(registry, "nonzero") == 1
        assert list((tmp_path / "state" / "actions").iterdir()) == []


async def test_execute_success_is_cached_and_reused(make_backend: BackendFactory) -> None:
    """A successful result is cached, and a second Execute returns it without running."""
    with trio.fail_after(TIME_LIMIT_S):
        backend, registry = await make_backend()
        action_digest = await upload_action(
            backend, ["/bin/sh", "-c", "echo ok > result.txt"], output_files=["result.txt"]
        )

        _, first = await execute(backend, action_digest)
        runs_after_first = executed(registry, "0")
        _, second = await execute(backend, action_digest)
        cached = await backend.get_action_result(
            re_pb2.GetActionResultRequest(action_digest=action_digest)
        )

        assert first.result.exit_code == 0
        assert not first.cached_result
        assert second.cached_result
        assert second.status.code == Code.OK
        assert second.result.output_files == first.result.output_files
        assert cached.output_files == first.result.output_files
        assert runs_after_first == 1
        assert executed(registry, "0") == 1
        assert counter(registry, "gomaproxy_local_action_cache_hits_total") == 2
        assert counter(registry, "gomaproxy_local_action_cache_misses_total") == 1


async def test_execute_inlines_requested_outputs(make_backend: BackendFactory) -> None:
    """Requested stdout, stderr and output files come back inline as well as by digest."""
    with trio.fail_after(TIME_LIMIT_S):
        backend, _ = await make_backend()
        action_digest = await upload_action(
            backend,
            ["/bin/sh", "-c", "echo out; echo err >&2; echo file > f.txt"],
            output_files=["f.txt"],
        )
        request = re_pb2.ExecuteRequest(
            action_digest=action_digest,
            inline_stdout=True,
            inline_stderr=True,
            inline_output_files=["f.txt"],
        )

        operations = [operation async for operation in backend.execute(request)]

        response = re_pb2.ExecuteResponse()
        assert operations[-1].response.Unpack(response)
        assert response.result.stdout_raw == b"out\n"
        assert response.result.stderr_raw == b"err\n"
        assert response.result.output_files[0].contents == b"file\n"
        assert response.result.stdout_digest == digest_of_bytes(b"out\n").to_proto()


async def test_execute_skip_cache_lookup_runs_again(make_backend: BackendFactory) -> None:
    """skip_cache_lookup runs a cached action again instead of returning the cached result."""
    with trio.fail_after(TIME_LIMIT_S):
        backend, registry = await make_backend()
        action_digest = await upload_action(backend, ["/bin/sh", "-c", "true"])

        await execute(backend, action_digest)
        _, again = await execute(backend, action_digest, skip_cache_lookup=True)

        assert not again.cached_result
        assert executed(registry, "0") == 2


async def test_execute_do_not_cache_is_not_stored(make_backend: BackendFactory) -> None:
    """A successful action with do_not_cache is never stored in the action cache."""
    with trio.fail_after(TIME_LIMIT_S):
        backend, registry = await make_backend()
        action_digest = await upload_action(backend, ["/bin/sh", "-c", "true"], do_not_cache=True)

        await execute(backend, action_digest)
        _, again = await execute(backend, action_digest)

        assert not again.cached_result
        assert executed(registry, "0") == 2
        with pytest.raises(BackendError) as caught:
            await backend.get_action_result(
                re_pb2.GetActionResultRequest(action_digest=action_digest)
            )
        assert caught.value.code is Code.NOT_FOUND


async def test_execute_evicted_output_makes_cache_miss(
    tmp_path: Path, make_backend: BackendFactory
) -> None:
    """Once an output blob is evicted, the cached result is a miss and is removed."""
    with trio.fail_after(TIME_LIMIT_S):
        backend, registry = await make_backend(cas_max_bytes=64 * 1024)
        action_digest = await upload_action(
            backend, ["/bin/sh", "-c", "echo evictable > o.txt"], output_files=["o.txt"]
        )
        _, first = await execute(backend, action_digest)
        output_digest = first.result.output_files[0].digest
        request = re_pb2.GetActionResultRequest(action_digest=action_digest)
        await backend.get_action_result(request)

        await upload(backend, os.urandom(40 * 1024))
        await upload(backend, os.urandom(40 * 1024))

        missing = await backend.find_missing_blobs(
            re_pb2.FindMissingBlobsRequest(blob_digests=[output_digest])
        )
        assert list(missing.missing_blob_digests) == [output_digest]
        with pytest.raises(BackendError) as caught:
            await backend.get_action_result(request)
        assert caught.value.code is Code.NOT_FOUND
        entry = tmp_path / "state" / "ac" / action_digest.hash[:2]
        assert list(entry.iterdir()) == []
        assert counter(registry, "gomaproxy_local_action_cache_misses_total") == 2


async def test_execute_timeout_reports_deadline_exceeded(make_backend: BackendFactory) -> None:
    """An action past its timeout is killed and gets DEADLINE_EXCEEDED with partial output."""
    with trio.fail_after(TIME_LIMIT_S):
        backend, registry = await make_backend()
        action_digest = await upload_action(
            backend, ["/bin/sh", "-c", "echo partial; exec sleep 60"], timeout_s=0.5
        )

        started = trio.current_time()
        _, response = await execute(backend, action_digest)
        elapsed = trio.current_time() - started

        assert response.status.code == Code.DEADLINE_EXCEEDED
        assert await read_blob(backend, response.result.stdout_digest) == b"partial\n"
        assert response.result.exit_code == 137
        assert elapsed < 10
        assert executed(registry, "timeout") == 1
        with pytest.raises(BackendError):
            await backend.get_action_result(
                re_pb2.GetActionResultRequest(action_digest=action_digest)
            )


async def test_execute_rejects_escaping_output_path(
    tmp_path: Path, make_backend: BackendFactory
) -> None:
    """An output path with '..' is rejected with INVALID_ARGUMENT before anything runs."""
    with trio.fail_after(TIME_LIMIT_S):
        backend, registry = await make_backend()
        action_digest = await upload_action(
            backend, ["/bin/sh", "-c", "echo x > ../escape"], output_paths=["../escape"]
        )

        _, response = await execute(backend, action_digest)

        assert response.status.code == Code.INVALID_ARGUMENT
        assert "../escape" in response.status.message
        assert executed(registry, "0") + executed(registry, "nonzero") == 0
        assert not (tmp_path / "state" / "actions" / "escape").exists()


async def test_execute_rejects_output_below_outside_symlink(
    tmp_path: Path, make_backend: BackendFactory
) -> None:
    """An output under a symlink that leads outside the input root is rejected, not read."""
    with trio.fail_after(TIME_LIMIT_S):
        backend, _ = await make_backend()
        outside = tmp_path / "outside"
        outside.mkdir()
        (outside / "secret.txt").write_text("secret")
        action_digest = await upload_action(
            backend,
            ["/bin/sh", "-c", f"rmdir out && ln -s {outside} out"],
            output_files=["out/secret.txt"],
        )

        _, response = await execute(backend, action_digest)

        assert response.status.code == Code.INVALID_ARGUMENT
        assert "outside the input root" in response.status.message
        assert list(response.result.output_files) == []


async def test_execute_reports_symlink_output_unfollowed(make_backend: BackendFactory) -> None:
    """A declared output that is a symlink is reported with its target, not its content."""
    with trio.fail_after(TIME_LIMIT_S):
        backend, _ = await make_backend()
        action_digest = await upload_action(
            backend, ["/bin/sh", "-c", "ln -s /etc/passwd link"], output_paths=["link"]
        )

        _, response = await execute(backend, action_digest)

        assert response.status.code == Code.OK
        assert list(response.result.output_files) == []
        assert [(s.path, s.target) for s in response.result.output_symlinks] == [
            ("link", "/etc/passwd")
        ]


async def test_execute_collects_output_directory_tree(make_backend: BackendFactory) -> None:
    """A declared output directory becomes a Tree with its files, subdirectories and modes."""
    with trio.fail_after(TIME_LIMIT_S):
        backend, _ = await make_backend()
        script = (
            "mkdir -p gen/sub && echo a > gen/a.txt && echo b > gen/sub/b.sh"
            " && chmod +x gen/sub/b.sh"
        )
        action_digest = await upload_action(
            backend, ["/bin/sh", "-c", script], output_directories=["gen"], working_directory="work"
        )

        _, response = await execute(backend, action_digest)

        assert response.status.code == Code.OK
        (output,) = response.result.output_directories
        assert output.path == "gen"
        tree = re_pb2.Tree()
        tree.ParseFromString(await read_blob(backend, output.tree_digest))
        assert [f.name for f in tree.root.files] == ["a.txt"]
        assert tree.root.files[0].digest == digest_of_bytes(b"a\n").to_proto()
        assert [d.name for d in tree.root.directories] == ["sub"]
        (sub,) = tree.children
        assert tree.root.directories[0].digest == digest_of_message(sub)[0].to_proto()
        assert [(f.name, f.is_executable) for f in sub.files] == [("b.sh", True)]


async def test_execute_materialises_inputs_with_modes(make_backend: BackendFactory) -> None:
    """Input files appear with their content, executable bits and in the working directory."""
    with trio.fail_after(TIME_LIMIT_S):
        backend, _ = await make_backend()
        files = {"src/data.txt": b"payload\n", "src/tool.sh": b"#!/bin/sh\necho tool-ran\n"}
        command = re_pb2.Command(
            arguments=["/bin/sh", "-c", "cat data.txt; ./tool.sh; test -x data.txt || echo plain"],
            working_directory="src",
        )
        action = re_pb2.Action(
            command_digest=await upload_message(backend, command),
            input_root_digest=await upload_tree(backend, files, executables=["src/tool.sh"]),
        )
        action_digest = await upload_message(backend, action)

        _, response = await execute(backend, action_digest)

        assert response.result.exit_code == 0
        stdout = await read_blob(backend, response.result.stdout_digest)
        assert stdout == b"payload\ntool-ran\nplain\n"


@needs_bwrap
async def test_execute_cannot_remount_host_directories(make_backend: BackendFactory) -> None:
    """An action at the absolute root cannot make the read-only host /usr writable."""
    script = "mount -o remount,rw,bind /usr 2>/dev/null && echo remounted || echo refused"

    with trio.fail_after(TIME_LIMIT_S):
        backend, _ = await make_backend(use_bwrap=True)
        action = await upload_action(
            backend,
            ["/bin/sh", "-c", script],
            environment={"PATH": "/usr/bin:/bin"},
            platform={"InputRootAbsolutePath": "/"},
        )
        _, response = await execute(backend, action)

    assert response.result.exit_code == 0
    assert await read_blob(backend, response.result.stdout_digest) == b"refused\n"


@pytest.mark.parametrize(
    "use_bwrap",
    [pytest.param(True, marks=needs_bwrap, id="bwrap"), pytest.param(False, id="direct")],
)
async def test_execute_input_write_keeps_cas_blob(
    use_bwrap: bool, make_backend: BackendFactory
) -> None:
    """An action that changes an input file changes neither the blob nor later actions."""
    with trio.fail_after(TIME_LIMIT_S):
        backend, _ = await make_backend(use_bwrap=use_bwrap)
        files = {"src/data.txt": b"original\n"}
        # The owner of a read-only file can make it writable, and root does not need to.
        writer = await upload_action(
            backend,
            ["/bin/sh", "-c", "chmod u+w src/data.txt && echo changed > src/data.txt"],
            files=files,
        )
        reader = await upload_action(backend, ["/bin/cat", "src/data.txt"], files=files)

        _, written = await execute(backend, writer)
        _, read = await execute(backend, reader)

        assert written.result.exit_code == 0
        assert read.result.exit_code == 0
        assert await read_blob(backend, read.result.stdout_digest) == b"original\n"
        original = digest_of_bytes(b"original\n").to_proto()
        assert await read_blob(backend, original) == b"original\n"


@pytest.mark.parametrize(
    "use_bwrap",
    [pytest.param(True, marks=needs_bwrap, id="bwrap"), pytest.param(False, id="direct")],
)
async def test_execute_environment_is_exact(use_bwrap: bool, make_backend: BackendFactory) -> None:
    """The action gets the Command's environment and, under bwrap, only PWD besides it."""
    with trio.fail_after(TIME_LIMIT_S):
        backend, _ = await make_backend(use_bwrap=use_bwrap)
        action_digest = await upload_action(
            backend, ["/usr/bin/env"], environment={"A": "1", "LANG": "C"}, working_directory="w"
        )

        _, response = await execute(backend, action_digest)

        stdout = await read_blob(backend, response.result.stdout_digest)
        variables = sorted(stdout.decode().splitlines())
        if use_bwrap:
            assert [v for v in variables if not v.startswith("PWD=")] == ["A=1", "LANG=C"]
            (pwd,) = [v for v in variables if v.startswith("PWD=")]
            assert pwd.endswith("/root/w")
        else:
            assert variables == ["A=1", "LANG=C"]


async def test_execute_missing_input_reports_precondition(make_backend: BackendFactory) -> None:
    """A missing input blob gives FAILED_PRECONDITION with a MISSING violation naming it."""
    with trio.fail_after(TIME_LIMIT_S):
        backend, registry = await make_backend()
        never_uploaded = digest_of_bytes(b"not uploaded")
        root = re_pb2.Directory()
        root.files.add(name="in.txt", digest=never_uploaded.to_proto())
        command = re_pb2.Command(arguments=["/bin/cat", "in.txt"])
        action = re_pb2.Action(
            command_digest=await upload_message(backend, command),
            input_root_digest=await upload_message(backend, root),
        )
        action_digest = await upload_message(backend, action)

        _, response = await execute(backend, action_digest)

        assert response.status.code == Code.FAILED_PRECONDITION
        failure = error_details_pb2.PreconditionFailure()
        assert response.status.details[0].Unpack(failure)
        assert [(v.type, v.subject) for v in failure.violations] == [
            ("MISSING", f"blobs/{never_uploaded.hash}/{never_uploaded.size_bytes}")
        ]
        assert executed(registry, "0") + executed(registry, "nonzero") == 0


async def test_execute_missing_action_reports_precondition(make_backend: BackendFactory) -> None:
    """Executing an action digest that was never uploaded is a MISSING precondition failure."""
    with trio.fail_after(TIME_LIMIT_S):
        backend, _ = await make_backend()
        absent = digest_of_bytes(b"no such action")

        _, response = await execute(backend, absent.to_proto())

        assert response.status.code == Code.FAILED_PRECONDITION
        failure = error_details_pb2.PreconditionFailure()
        assert response.status.details[0].Unpack(failure)
        assert failure.violations[0].subject == f"blobs/{absent.hash}/{absent.size_bytes}"


async def test_execute_without_bwrap_rejects_absolute_root(make_backend: BackendFactory) -> None:
    """Without bubblewrap, InputRootAbsolutePath=/ fails with FAILED_PRECONDITION."""
    with trio.fail_after(TIME_LIMIT_S):
        backend, _ = await make_backend(use_bwrap=False)
        action_digest = await upload_action(
            backend, ["/bin/true"], platform={"InputRootAbsolutePath": "/"}
        )

        _, response = await execute(backend, action_digest)

        assert not backend.supports_absolute_input_root
        assert response.status.code == Code.FAILED_PRECONDITION
        assert "install the Debian package bubblewrap" in response.status.message


@needs_bwrap
@pytest.mark.skipif(not HAVE_GCC, reason="gcc is not installed")
async def test_execute_gcc_at_absolute_root_matches_local(
    tmp_path: Path, make_backend: BackendFactory
) -> None:
    """gcc under bwrap with InputRootAbsolutePath=/ builds the same object as a local gcc."""
    source_dir = tmp_path / "src"
    source_dir.mkdir()
    source = source_dir / "hello.c"
    source.write_text('#include <stdio.h>\nint main(void) { printf("hi\\n"); return 0; }\n')
    arguments = ["/usr/bin/gcc", "-c", str(source), "-o", "hello.o"]
    environment = {"PATH": "/usr/bin:/bin"}

    with trio.fail_after(60):
        local = await trio.run_process(arguments, cwd=source_dir, env=environment, check=True)
        assert local.returncode == 0
        expected = (source_dir / "hello.o").read_bytes()
        (source_dir / "hello.o").unlink()
        dependencies = await trio.run_process(
            ["/usr/bin/gcc", "-M", str(source)],
            cwd=source_dir,
            env=environment,
            capture_stdout=True,
        )
        input_paths = parse_make_dependencies(dependencies.stdout.decode())
        assert str(source) in input_paths
        assert "/usr/include/stdio.h" in input_paths

        backend, registry = await make_backend()
        assert backend.supports_absolute_input_root
        files = {path.lstrip("/"): await trio.Path(path).read_bytes() for path in input_paths}
        action_digest = await upload_action(
            backend,
            arguments,
            files=files,
            output_files=["hello.o"],
            environment=environment,
            working_directory=str(source_dir).lstrip("/"),
            platform={"InputRootAbsolutePath": "/"},
        )

        _, response = await execute(backend, action_digest)

        stderr = await read_blob(backend, response.result.stderr_digest)
        assert response.status.code == Code.OK, response.status.message
        assert response.result.exit_code == 0, stderr.decode()
        (output,) = response.result.output_files
        assert output.path == "hello.o"
        assert await read_blob(backend, output.digest) == expected
        assert executed(registry, "0") == 1


def parse_make_dependencies(text: str) -> list[str]:
    """Return the prerequisites of a ``gcc -M`` rule as normalised absolute paths."""
    _, _, prerequisites = text.replace("\\\n", " ").partition(":")
    return [os.path.normpath(path) for path in prerequisites.split()]


# WaitExecution.


async def test_wait_execution_unknown_name_not_found(make_backend: BackendFactory) -> None:
    """WaitExecution of a name no Execute produced is NOT_FOUND."""
    with trio.fail_after(TIME_LIMIT_S):
        backend, _ = await make_backend()

        with pytest.raises(BackendError) as caught:
            async for _ in backend.wait_execution(
                re_pb2.WaitExecutionRequest(name="operations/nope")
            ):
                pass

        assert caught.value.code is Code.NOT_FOUND


async def test_wait_execution_follows_running_operation(make_backend: BackendFactory) -> None:
    """WaitExecution on a running operation yields it and then its finished state."""
    with trio.fail_after(TIME_LIMIT_S):
        backend, _ = await make_backend()
        action_digest = await upload_action(backend, ["/bin/sh", "-c", "sleep 0.3; echo done"])
        waited: list[lro_pb2.Operation] = []

        stream = backend.execute(re_pb2.ExecuteRequest(action_digest=action_digest))
        first = await anext(stream)

        async def wait_for_it() -> None:
            request = re_pb2.WaitExecutionRequest(name=first.name)
            async for operation in backend.wait_execution(request):
                waited.append(operation)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(wait_for_it)
            final = await anext(stream)
        await stream.aclose()

        assert final.done
        assert [operation.done for operation in waited] == [False, True]
        assert waited[-1].response == final.response
        late = [
            op async for op in backend.wait_execution(re_pb2.WaitExecutionRequest(name=first.name))
        ]
        assert [op.done for op in late] == [True]


async def test_execute_closed_stream_cancels_operation(
    tmp_path: Path, make_backend: BackendFactory
) -> None:
    """Closing an Execute stream early kills the action and finishes the operation as CANCELLED."""
    with trio.fail_after(TIME_LIMIT_S):
        backend, _ = await make_backend()
        action_digest = await upload_action(backend, ["/bin/sh", "-c", "exec sleep 60"])
        stream = backend.execute(re_pb2.ExecuteRequest(action_digest=action_digest))
        first = await anext(stream)

        with trio.move_on_after(0.5):
            await anext(stream)
        await stream.aclose()

        late = [
            op async for op in backend.wait_execution(re_pb2.WaitExecutionRequest(name=first.name))
        ]
        response = re_pb2.ExecuteResponse()
        assert late[-1].response.Unpack(response)
        assert response.status.code == Code.CANCELLED
        assert list((tmp_path / "state" / "actions").iterdir()) == []


def test_parse_make_dependencies_splits_continuations() -> None:
    """The gcc -M parser returns every prerequisite across continuation lines."""
    text = "a.o: /x/a.c /usr/include/stdio.h \\\n /usr/include/features.h\n"

    assert parse_make_dependencies(text) == [
        "/x/a.c",
        "/usr/include/stdio.h",
        "/usr/include/features.h",
    ]
