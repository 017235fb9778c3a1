"""The gRPC backend against a real gRPC server on 127.0.0.1 that serves a LocalBackend.

The server is ``gomaproxy.grpcapi.reapi_server`` running in the test's trio run; the
client is ``GrpcBackend`` through the bridge, so every call crosses a real HTTP/2
connection.  Wrapper backends between the server and the LocalBackend count calls,
record what arrived, and inject faults: a broken Execute stream, a batch limit below
the advertised one, corrupted downloads.  Compiles run ``gomaproxy cc`` as a separate
process against a proxy whose backend address is ``grpc://127.0.0.1:<port>``.
"""

from __future__ import annotations

import functools
import hashlib
import json
import shutil
import socket
import ssl
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterable, AsyncIterator
from contextlib import aclosing, asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
import trio
from prometheus_client import CollectorRegistry

import gomaproxy
from gomaproxy.config import BackendConfig, Config
from gomaproxy.digest import DigestKey, digest_of_bytes
from gomaproxy.errors import BackendError, Code, GomaProxyError
from gomaproxy.grpcapi.reapi_server import serve_backend
from gomaproxy.local.backend import LocalBackend
from gomaproxy.protos import bytestream_pb2 as bs_pb2
from gomaproxy.protos import goma_data_pb2 as goma_pb2
from gomaproxy.protos import longrunning_pb2 as lro_pb2
from gomaproxy.protos import remote_execution_pb2 as re_pb2
from gomaproxy.proxy import open_proxy
from gomaproxy.remote import cas
from gomaproxy.remote.backend import Backend
from gomaproxy.remote.bridge import call_metadata
from gomaproxy.remote.grpc_backend import GrpcBackend, open_grpc_backend
from gomaproxy.remote.requester import REQUEST_METADATA_KEY, bound_requester

MiB = 1024 * 1024
# The directory that contains the gomaproxy package, so the launcher imports this checkout.
PACKAGE_ROOT = Path(gomaproxy.__file__).resolve().parent.parent

needs_compiler = pytest.mark.skipif(
    shutil.which("gcc") is None or shutil.which("bwrap") is None,
    reason="compiles need gcc and bubblewrap",
)
needs_openssl = pytest.mark.skipif(
    shutil.which("openssl") is None, reason="test certificates need openssl"
)


class RecordingBackend:
    """Passes every call to ``inner`` and records what arrived over gRPC."""

    name = "recording"

    def __init__(self, inner: Backend) -> None:
        self.inner = inner
        self.calls: Counter[str] = Counter()
        # (method, instance name or resource name) of every call that names one.
        self.instances: list[tuple[str, str]] = []
        self.metadata: list[tuple[str, dict[str, Any]]] = []
        self.find_missing_sizes: list[int] = []

    def _record(self, method: str, instance: str | None = None) -> None:
        self.calls[method] += 1
        self.metadata.append((method, dict(call_metadata())))
        if instance is not None:
            self.instances.append((method, instance))

    async def get_capabilities(
        self, request: re_pb2.GetCapabilitiesRequest
    ) -> re_pb2.ServerCapabilities:
        self._record("GetCapabilities", request.instance_name)
        return await self.inner.get_capabilities(request)

    async def get_action_result(
        self, request: re_pb2.GetActionResultRequest
    ) -> re_pb2.ActionResult:
        self._record("GetActionResult", request.instance_name)
        return await self.inner.get_action_result(request)

    async def find_missing_blobs(
        self, request: re_pb2.FindMissingBlobsRequest
    ) -> re_pb2.FindMissingBlobsResponse:
        self._record("FindMissingBlobs", request.instance_name)
        self.find_missing_sizes.append(len(request.blob_digests))
        return await self.inner.find_missing_blobs(request)

    async def batch_update_blobs(
        self, request: re_pb2.BatchUpdateBlobsRequest
    ) -> re_pb2.BatchUpdateBlobsResponse:
        self._record("BatchUpdateBlobs", request.instance_name)
        return await self.inner.batch_update_blobs(request)

    async def batch_read_blobs(
        self, request: re_pb2.BatchReadBlobsRequest
    ) -> re_pb2.BatchReadBlobsResponse:
        self._record("BatchReadBlobs", request.instance_name)
        return await self.inner.batch_read_blobs(request)

    async def read(self, request: bs_pb2.ReadRequest) -> AsyncIterator[bs_pb2.ReadResponse]:
        self._record("Read", request.resource_name)
        async with aclosing(self.inner.read(request)) as responses:
            async for response in responses:
                yield response

    async def write(self, requests: AsyncIterable[bs_pb2.WriteRequest]) -> bs_pb2.WriteResponse:
        self._record("Write")

        async def watched() -> AsyncIterator[bs_pb2.WriteRequest]:
            async for request in requests:
                if request.resource_name:
                    self.instances.append(("Write", request.resource_name))
                yield request

        return await self.inner.write(watched())

    async def query_write_status(
        self, request: bs_pb2.QueryWriteStatusRequest
    ) -> bs_pb2.QueryWriteStatusResponse:
        self._record("QueryWriteStatus", request.resource_name)
        return await self.inner.query_write_status(request)

    async def execute(self, request: re_pb2.ExecuteRequest) -> AsyncIterator[lro_pb2.Operation]:
        self._record("Execute", request.instance_name)
        async with aclosing(self.inner.execute(request)) as operations:
            async for operation in operations:
                yield operation

    async def wait_execution(
        self, request: re_pb2.WaitExecutionRequest
    ) -> AsyncIterator[lro_pb2.Operation]:
        self._record("WaitExecution")
        async with aclosing(self.inner.wait_execution(request)) as operations:
            async for operation in operations:
                yield operation

    async def aclose(self) -> None:
        """The test that opened ``inner`` closes it."""


class BreakingExecuteBackend(RecordingBackend):
    """Ends every Execute stream with UNAVAILABLE after its first operation.

    The action keeps running in a task of ``nursery``, as on a server whose connection
    to the client broke, so WaitExecution can still follow it to the end.
    """

    def __init__(self, inner: Backend, nursery: trio.Nursery) -> None:
        super().__init__(inner)
        self._nursery = nursery

    async def execute(self, request: re_pb2.ExecuteRequest) -> AsyncIterator[lro_pb2.Operation]:
        self._record("Execute", request.instance_name)
        first = await self._nursery.start(self._run_to_end, request)
        yield first
        raise BackendError(Code.UNAVAILABLE, "the test server broke the Execute stream")

    async def _run_to_end(
        self, request: re_pb2.ExecuteRequest, *, task_status: trio.TaskStatus[lro_pb2.Operation]
    ) -> None:
        async with aclosing(self.inner.execute(request)) as operations:
            task_status.started(await anext(operations))
            async for _ in operations:
                pass


class SmallBatchBackend(RecordingBackend):
    """Rejects BatchUpdateBlobs requests over 5 MiB, whatever the capabilities advertise."""

    LIMIT = 5 * MiB

    def __init__(self, inner: Backend) -> None:
        super().__init__(inner)
        self.rejected: list[int] = []
        self.accepted: list[int] = []

    async def batch_update_blobs(
        self, request: re_pb2.BatchUpdateBlobsRequest
    ) -> re_pb2.BatchUpdateBlobsResponse:
        size = request.ByteSize()
        if size > self.LIMIT:
            self.rejected.append(size)
            raise BackendError(
                Code.RESOURCE_EXHAUSTED, f"message too large: {size} bytes, limit {self.LIMIT}"
            )
        self.accepted.append(size)
        return await super().batch_update_blobs(request)


class CorruptingReadBackend(RecordingBackend):
    """Flips the first byte of every ByteStream Read."""

    async def read(self, request: bs_pb2.ReadRequest) -> AsyncIterator[bs_pb2.ReadResponse]:
        first = True
        async with aclosing(super().read(request)) as responses:
            async for response in responses:
                if first and response.data:
                    response.data = bytes([response.data[0] ^ 0xFF]) + response.data[1:]
                    first = False
                yield response


class FlakyByteStreamBackend(RecordingBackend):
    """Breaks the first Read after one chunk and the first Write in one of two ways.

    ``keep_partial`` makes the broken Write store its first request, so the upload can
    resume.  Otherwise the server keeps nothing and the client must start over.
    """

    def __init__(self, inner: Backend, *, keep_partial: bool) -> None:
        super().__init__(inner)
        self.keep_partial = keep_partial
        self.read_requests: list[bs_pb2.ReadRequest] = []
        # (resource name, first write offset) of every Write stream.
        self.writes: list[tuple[str, int]] = []

    async def read(self, request: bs_pb2.ReadRequest) -> AsyncIterator[bs_pb2.ReadResponse]:
        self.read_requests.append(bs_pb2.ReadRequest.FromString(request.SerializeToString()))
        broken = len(self.read_requests) == 1
        async with aclosing(super().read(request)) as responses:
            async for response in responses:
                yield response
                if broken:
                    raise BackendError(Code.UNAVAILABLE, "the test server broke the Read stream")

    async def write(self, requests: AsyncIterable[bs_pb2.WriteRequest]) -> bs_pb2.WriteResponse:
        stream = aiter(requests)
        first = await anext(stream)
        self.writes.append((first.resource_name, first.write_offset))
        if len(self.writes) > 1:
            return await super().write(_prepend(first, stream))

        if self.keep_partial:
            await super().write(_prepend(first, _nothing()))
        raise BackendError(Code.UNAVAILABLE, "the test server broke the Write stream")


async def _prepend(
    first: bs_pb2.WriteRequest, rest: AsyncIterator[bs_pb2.WriteRequest]
) -> AsyncIterator[bs_pb2.WriteRequest]:
    yield first
    async for request in rest:
        yield request


async def _nothing() -> AsyncIterator[bs_pb2.WriteRequest]:
    return
    yield bs_pb2.WriteRequest()  # makes this an async generator


class StallingBackend(RecordingBackend):
    """Never returns from FindMissingBlobs."""

    async def find_missing_blobs(
        self, request: re_pb2.FindMissingBlobsRequest
    ) -> re_pb2.FindMissingBlobsResponse:
        self._record("FindMissingBlobs", request.instance_name)
        await trio.sleep_forever()
        raise AssertionError("unreachable")


@pytest.fixture
async def local_backend(tmp_path: Path) -> AsyncIterator[LocalBackend]:
    backend = LocalBackend(tmp_path / "server", cas_max_bytes=1 << 30, registry=CollectorRegistry())
    async with backend:
        yield backend


@asynccontextmanager
async def serving(backend: Backend) -> AsyncIterator[int]:
    """Serve ``backend`` on 127.0.0.1 and yield the port."""
    async with trio.open_nursery() as nursery:
        port = await nursery.start(serve_backend, backend)
        yield port
        nursery.cancel_scope.cancel()


@asynccontextmanager
async def grpc_client(port: int, **settings: Any) -> AsyncIterator[GrpcBackend]:
    config = BackendConfig(address=f"grpc://127.0.0.1:{port}", **settings)
    async with open_grpc_backend(config) as backend:
        yield backend


def _whole_write(digest: DigestKey, data: bytes) -> bs_pb2.WriteRequest:
    return bs_pb2.WriteRequest(
        resource_name=cas.upload_resource_name("", digest), data=data, finish_write=True
    )


def _blob(index: int, size: int) -> bytes:
    seed = hashlib.sha256(f"blob-{index}".encode()).digest()
    return (seed * (size // len(seed) + 1))[:size]


async def test_grpc_backend_reads_capabilities_once(local_backend: LocalBackend) -> None:
    """Capabilities come from the server once and are then served from memory."""
    recorder = RecordingBackend(local_backend)

    with trio.fail_after(30):
        async with serving(recorder) as port, grpc_client(port, instance_name="ci") as client:
            first = await client.get_capabilities(re_pb2.GetCapabilitiesRequest())
            second = await client.get_capabilities(re_pb2.GetCapabilitiesRequest())

    assert first.cache_capabilities.max_batch_total_size_bytes == 4 * MiB
    assert first.execution_capabilities.exec_enabled
    assert second == first
    assert recorder.calls["GetCapabilities"] == 1
    assert recorder.instances == [("GetCapabilities", "ci")]


def _has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.skipif(not _has_ipv6_loopback(), reason="no IPv6 loopback address")
async def test_grpc_backend_ipv6_loopback(local_backend: LocalBackend) -> None:
    """A grpc://[::1]:port address reaches a server on the IPv6 loopback."""
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(functools.partial(serve_backend, local_backend, host="::1"))
            config = BackendConfig(address=f"grpc://[::1]:{port}")
            async with open_grpc_backend(config) as client:
                capabilities = await client.get_capabilities(re_pb2.GetCapabilitiesRequest())
            nursery.cancel_scope.cancel()

    assert capabilities.high_api_version.major == 2


async def test_grpc_backend_find_missing_in_chunks(local_backend: LocalBackend) -> None:
    """FindMissingBlobs over 2500 digests is sent in groups of at most 1000."""
    recorder = RecordingBackend(local_backend)
    digests = [digest_of_bytes(f"missing-{index}".encode()) for index in range(2500)]

    with trio.fail_after(60):
        async with serving(recorder) as port, grpc_client(port) as client:
            missing = await cas.find_missing_blobs(client, "", digests)

    assert sorted(missing) == sorted(digests)
    assert recorder.calls["FindMissingBlobs"] == 3
    assert max(recorder.find_missing_sizes) <= 1000
    assert sum(recorder.find_missing_sizes) == 2500


async def test_grpc_backend_uploads_batch_and_bytestream(local_backend: LocalBackend) -> None:
    """Small blobs go in a batch, a 5 MiB blob by ByteStream, and all read back verified."""
    recorder = RecordingBackend(local_backend)
    blobs = {
        digest_of_bytes(data): data for data in (_blob(1, 100), _blob(2, 3000), _blob(3, 5 * MiB))
    }

    async def read(digest: DigestKey) -> bytes:
        return blobs[digest]

    with trio.fail_after(60):
        async with serving(recorder) as port, grpc_client(port, instance_name="a/b") as client:
            capabilities = await client.get_capabilities(re_pb2.GetCapabilitiesRequest())
            limit = cas.batch_byte_limit(capabilities.cache_capabilities.max_batch_total_size_bytes)
            failures = await cas.upload_blobs(
                client,
                "a/b",
                list(blobs),
                read,
                byte_limit=limit,
                read_limiter=anyio.CapacityLimiter(4),
            )
            missing = await cas.find_missing_blobs(client, "a/b", list(blobs))
            downloaded = {digest: await cas.read_blob(client, "a/b", digest) for digest in blobs}

    assert failures == []
    assert missing == []
    assert downloaded == blobs
    assert recorder.calls["BatchUpdateBlobs"] == 1
    assert recorder.calls["Write"] == 1
    assert recorder.calls["Read"] == 3
    written = [name for method, name in recorder.instances if method == "Write"]
    assert written and all(name.startswith("a/b/uploads/") for name in written)
    read_names = [name for method, name in recorder.instances if method == "Read"]
    assert all(name.startswith("a/b/blobs/") for name in read_names)


async def test_grpc_backend_write_existing_blob_returns_early(local_backend: LocalBackend) -> None:
    """Writing a blob the server already has succeeds, even when the server stops reading."""
    data = _blob(4, 5 * MiB)
    digest = digest_of_bytes(data)

    with trio.fail_after(60):
        async with serving(local_backend) as port, grpc_client(port) as client:
            await cas.write_blob(client, "", digest, data)
            await cas.write_blob(client, "", digest, data)
            downloaded = await cas.read_blob(client, "", digest)

    assert downloaded == data


async def test_grpc_backend_download_detects_corruption(local_backend: LocalBackend) -> None:
    """A download whose bytes do not match the digest fails with DATA_LOSS."""
    data = _blob(5, 10_000)
    digest = digest_of_bytes(data)
    corrupting = CorruptingReadBackend(local_backend)

    with trio.fail_after(30):
        async with serving(corrupting) as port, grpc_client(port) as client:
            await cas.write_blob(client, "", digest, data)
            with pytest.raises(BackendError) as caught:
                await cas.read_blob(client, "", digest)

    assert caught.value.code == Code.DATA_LOSS


async def test_grpc_backend_action_cache_miss_is_not_found(local_backend: LocalBackend) -> None:
    """GetActionResult for an unknown action raises NOT_FOUND with the server's message."""
    request = re_pb2.GetActionResultRequest(action_digest=digest_of_bytes(b"none").to_proto())

    with trio.fail_after(30):
        async with serving(local_backend) as port, grpc_client(port) as client:
            with pytest.raises(BackendError) as caught:
                await client.get_action_result(request)

    assert caught.value.code == Code.NOT_FOUND
    assert "GetActionResult" in caught.value.message


async def test_grpc_backend_sends_request_metadata(local_backend: LocalBackend) -> None:
    """Every call carries RequestMetadata with the goma ids and the extra headers."""
    recorder = RecordingBackend(local_backend)
    info = goma_pb2.RequesterInfo(compiler_proxy_id="user@host:8088/1/7", build_id="build-42")

    with trio.fail_after(30):
        async with (
            serving(recorder) as port,
            grpc_client(port, extra_headers=["x-team: infra"]) as client,
        ):
            with bound_requester(info):
                await client.find_missing_blobs(re_pb2.FindMissingBlobsRequest())

    method, metadata = recorder.metadata[-1]
    assert method == "FindMissingBlobs"
    assert metadata["x-team"] == "infra"
    sent = re_pb2.RequestMetadata.FromString(metadata[REQUEST_METADATA_KEY])
    assert sent.tool_details.tool_name == "gomaproxy"
    assert sent.tool_details.tool_version == gomaproxy.__version__
    assert sent.action_id == "user@host:8088/1/7"
    assert sent.tool_invocation_id == "build-42"


async def _make_certificates(directory: Path) -> None:
    """Write a test CA and a server and a client certificate signed by it, for 127.0.0.1."""

    async def openssl(*args: str) -> None:
        await trio.run_process(
            ["openssl", *args], cwd=directory, capture_stdout=True, capture_stderr=True
        )

    # From Python 3.13, ssl.create_default_context sets VERIFY_X509_STRICT, which rejects
    # a CA certificate without keyUsage and a leaf without authorityKeyIdentifier.
    (directory / "san.ext").write_text(
        "subjectAltName=IP:127.0.0.1\nauthorityKeyIdentifier=keyid\n"
    )
    await openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        "-keyout", "ca.key", "-out", "ca.pem", "-subj", "/CN=gomaproxy test CA",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
    )  # fmt: skip
    for name in ("server", "client"):
        await openssl(
            "req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key",
            "-out", f"{name}.csr", "-subj", f"/CN={name}",
        )  # fmt: skip
        await openssl(
            "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-days", "1", "-out", f"{name}.pem", "-extfile", "san.ext",
        )  # fmt: skip


@needs_openssl
async def test_grpc_backend_grpcs_with_client_certificate(
    local_backend: LocalBackend, tmp_path: Path
) -> None:
    """grpcs:// trusts the configured CA, presents the client certificate and sends the token."""
    recorder = RecordingBackend(local_backend)
    certs = tmp_path / "certs"
    certs.mkdir()
    (certs / "token").write_text("test-token\n")

    with trio.fail_after(60):
        await _make_certificates(certs)
        server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=certs / "ca.pem")
        server_tls.verify_mode = ssl.CERT_REQUIRED
        server_tls.load_cert_chain(certs / "server.pem", certs / "server.key")
        server_tls.set_alpn_protocols(["h2"])
        async with trio.open_nursery() as nursery:
            port = await nursery.start(
                functools.partial(serve_backend, recorder, ssl_context=server_tls)
            )
            config = BackendConfig(
                address=f"grpcs://127.0.0.1:{port}",
                tls_ca_file=str(certs / "ca.pem"),
                tls_client_cert_file=str(certs / "client.pem"),
                tls_client_key_file=str(certs / "client.key"),
                bearer_token_file=str(certs / "token"),
            )
            async with open_grpc_backend(config) as client:
                capabilities = await client.get_capabilities(re_pb2.GetCapabilitiesRequest())
            nursery.cancel_scope.cancel()

    assert capabilities.execution_capabilities.exec_enabled
    method, metadata = recorder.metadata[-1]
    assert method == "GetCapabilities"
    assert metadata["authorization"] == "Bearer test-token"


@needs_openssl
async def test_grpc_backend_grpcs_rejects_unknown_ca(
    local_backend: LocalBackend, tmp_path: Path
) -> None:
    """A server certificate from a CA the client does not trust fails with UNAVAILABLE."""
    certs = tmp_path / "certs"
    certs.mkdir()

    with trio.fail_after(60):
        await _make_certificates(certs)
        server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        server_tls.load_cert_chain(certs / "server.pem", certs / "server.key")
        server_tls.set_alpn_protocols(["h2"])
        async with trio.open_nursery() as nursery:
            port = await nursery.start(
                functools.partial(serve_backend, local_backend, ssl_context=server_tls)
            )
            config = BackendConfig(address=f"grpcs://127.0.0.1:{port}", retry_budget_s=0.0)
            async with open_grpc_backend(config) as client:
                with pytest.raises(BackendError) as caught:
                    await client.get_capabilities(re_pb2.GetCapabilitiesRequest())
            nursery.cancel_scope.cancel()

    assert caught.value.code == Code.UNAVAILABLE
    assert "CERTIFICATE_VERIFY_FAILED" in caught.value.message


async def test_grpc_backend_unreachable_server_is_unavailable() -> None:
    """A closed port fails with UNAVAILABLE once the retry budget is spent."""
    with trio.socket.socket() as probe:
        await probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    with trio.fail_after(30):
        async with grpc_client(port, retry_budget_s=1.0) as client:
            with pytest.raises(BackendError) as caught:
                await client.get_capabilities(re_pb2.GetCapabilitiesRequest())

    assert caught.value.code == Code.UNAVAILABLE
    assert "attempts" in caught.value.message


async def test_grpc_backend_read_resumes_at_offset(local_backend: LocalBackend) -> None:
    """A Read that breaks after one chunk is resumed at the offset already received."""
    flaky = FlakyByteStreamBackend(local_backend, keep_partial=False)
    data = _blob(6, 3 * MiB)
    digest = digest_of_bytes(data)

    with trio.fail_after(60):
        async with serving(flaky) as port, grpc_client(port) as client:
            await local_backend.write(_prepend(_whole_write(digest, data), _nothing()))
            downloaded = await cas.read_blob(client, "", digest)

    assert downloaded == data
    assert len(flaky.read_requests) == 2
    assert flaky.read_requests[0].read_offset == 0
    assert flaky.read_requests[1].read_offset == 1 * MiB


async def test_grpc_backend_write_resumes_partial_upload(local_backend: LocalBackend) -> None:
    """A broken Write resumes under the same name at the size QueryWriteStatus returns."""
    flaky = FlakyByteStreamBackend(local_backend, keep_partial=True)
    data = _blob(7, 5 * MiB)
    digest = digest_of_bytes(data)

    with trio.fail_after(60):
        async with serving(flaky) as port, grpc_client(port) as client:
            await cas.write_blob(client, "", digest, data)
            downloaded = await cas.read_blob(client, "", digest)

    assert downloaded == data
    assert flaky.calls["QueryWriteStatus"] == 1
    (first_name, first_offset), (second_name, second_offset) = flaky.writes
    assert first_offset == 0
    assert second_name == first_name
    assert second_offset == 2 * MiB


async def test_grpc_backend_write_restarts_lost_upload(local_backend: LocalBackend) -> None:
    """A broken Write the server forgot starts again at 0 under a new upload id."""
    flaky = FlakyByteStreamBackend(local_backend, keep_partial=False)
    data = _blob(8, 3 * MiB)
    digest = digest_of_bytes(data)

    with trio.fail_after(60):
        async with serving(flaky) as port, grpc_client(port, instance_name="x") as client:
            await cas.write_blob(client, "x", digest, data)
            missing = await cas.find_missing_blobs(client, "x", [digest])

    assert missing == []
    (first_name, _), (second_name, second_offset) = flaky.writes
    assert second_offset == 0
    assert second_name != first_name
    assert second_name.startswith("x/uploads/")
    assert second_name.endswith(f"/blobs/{digest.hash}/{digest.size_bytes}")


async def test_grpc_backend_caller_cancel_not_retried(local_backend: LocalBackend) -> None:
    """A call that the caller cancels is abandoned at once and the channel stays usable."""
    stalling = StallingBackend(local_backend)

    with trio.fail_after(30):
        async with serving(stalling) as port, grpc_client(port) as client:
            with trio.move_on_after(0.5) as scope:
                await client.find_missing_blobs(re_pb2.FindMissingBlobsRequest())
            capabilities = await client.get_capabilities(re_pb2.GetCapabilitiesRequest())

    assert scope.cancelled_caught
    assert stalling.calls["FindMissingBlobs"] == 1
    assert capabilities.execution_capabilities.exec_enabled


async def test_grpc_backend_deadline_retried_within_budget(local_backend: LocalBackend) -> None:
    """A call past its per-RPC deadline is retried until the retry budget is spent."""
    stalling = StallingBackend(local_backend)

    with trio.fail_after(30):
        async with (
            serving(stalling) as port,
            grpc_client(port, rpc_timeout_s=0.3, retry_budget_s=1.5) as client,
        ):
            started = trio.current_time()
            with pytest.raises(BackendError) as caught:
                await client.find_missing_blobs(re_pb2.FindMissingBlobsRequest())
            elapsed = trio.current_time() - started

    assert caught.value.code == Code.DEADLINE_EXCEEDED
    assert stalling.calls["FindMissingBlobs"] >= 2
    assert elapsed < 3.0


async def test_upload_splits_batch_rejected_as_too_large(local_backend: LocalBackend) -> None:
    """Batches over the server's real 5 MiB limit are halved until they fit, then ByteStream.

    The adapter plans batches of at most 3 MiB, so the rejection is provoked with a
    larger byte limit, as a server that advertises more than it accepts would.
    """
    small = SmallBatchBackend(local_backend)
    blobs = {digest_of_bytes(_blob(i, 1_000_000)): _blob(i, 1_000_000) for i in range(8)}
    large = _blob(99, 5_800_000)
    blobs[digest_of_bytes(large)] = large

    async def read(digest: DigestKey) -> bytes:
        return blobs[digest]

    with trio.fail_after(120):
        async with serving(small) as port, grpc_client(port) as client:
            failures = await cas.upload_blobs(
                client,
                "",
                list(blobs),
                read,
                byte_limit=16 * MiB,
                read_limiter=anyio.CapacityLimiter(4),
            )
            missing = await cas.find_missing_blobs(client, "", list(blobs))

    assert failures == []
    assert missing == []
    assert small.rejected, "no batch was rejected, so nothing was split"
    assert all(size > 5 * MiB for size in small.rejected)
    assert small.accepted
    assert all(size <= 5 * MiB for size in small.accepted)
    assert sum(small.accepted) > 8_000_000
    # The 5.8 MB blob is rejected alone and then written by ByteStream.
    assert small.calls["Write"] == 1


# Compiles through the proxy.

SOURCE = b"""\
#include <stdio.h>
#include "shape.h"

int main(void) {
    for (int i = 0; i < SIDES; i++) {
        printf("side %d\\n", i);
    }
    return 0;
}
"""
HEADER = b"#define SIDES 4\n"
FLAGS = ["-O2", "-I../include", "-c", "../src/shape.c"]
BASE_ENV = {"PATH": "/usr/bin:/bin"}


def _project(root: Path) -> Path:
    (root / "src").mkdir(parents=True)
    (root / "include").mkdir()
    (root / "out").mkdir()
    (root / "src" / "shape.c").write_bytes(SOURCE)
    (root / "include" / "shape.h").write_bytes(HEADER)
    return root / "out"


async def _cc(
    server: str, cwd: Path, report: Path, *args: str
) -> subprocess.CompletedProcess[bytes]:
    command = [sys.executable, "-m", "gomaproxy", "cc", "--server", server]
    command += ["--report", str(report), "--", *args]
    env = {
        **BASE_ENV,
        "GOMAPROXY_CLIENT_STATE_DIR": str(cwd / ".client-state"),
        "HOME": str(cwd),
        "PYTHONPATH": str(PACKAGE_ROOT),
    }
    return await trio.run_process(
        command, cwd=cwd, env=env, capture_stdout=True, capture_stderr=True, check=False
    )


async def _gcc(cwd: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    return await trio.run_process(
        ["gcc", *args], cwd=cwd, env=BASE_ENV, capture_stdout=True, capture_stderr=True
    )


@asynccontextmanager
async def proxy_on(port: int, state_dir: Path) -> AsyncIterator[str]:
    """Run a proxy whose backend is the gRPC server on ``port``; yield its HTTP URL."""
    config = Config()
    config.server.port = 0
    config.state.dir = state_dir
    config.log.format = "console"
    config.backend.address = f"grpc://127.0.0.1:{port}"
    config.backend.instance_name = "gomaproxy/test"
    # The served LocalBackend runs actions at absolute paths under bubblewrap and reads
    # InputRootAbsolutePath, like the embedded backend.
    config.backend.absolute_root = True
    config.backend.input_root_absolute_path_property = True
    async with (
        open_proxy(config, registry=CollectorRegistry()) as proxy,
        trio.open_nursery() as nursery,
    ):
        http_port = await nursery.start(proxy.serve)
        yield f"http://127.0.0.1:{http_port}"
        nursery.cancel_scope.cancel()


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.e2e
@needs_compiler
async def test_grpc_backend_compile_matches_local_gcc(
    local_backend: LocalBackend, tmp_path: Path
) -> None:
    """A compile through a grpc:// backend gives gcc's object, and a rerun is a cache hit."""
    recorder = RecordingBackend(local_backend)
    cwd = _project(tmp_path / "proj")

    with trio.fail_after(180):
        await _gcc(cwd, *FLAGS, "-o", "local.o")
        async with serving(recorder) as port, proxy_on(port, tmp_path / "proxy") as server:
            first = await _cc(server, cwd, tmp_path / "r1.json", "gcc", *FLAGS, "-o", "remote.o")
            first_object = _sha256(cwd / "remote.o")
            (cwd / "remote.o").unlink()
            second = await _cc(server, cwd, tmp_path / "r2.json", "gcc", *FLAGS, "-o", "remote.o")

    assert first.returncode == 0, first.stderr.decode()
    assert second.returncode == 0, second.stderr.decode()
    assert first_object == _sha256(cwd / "local.o")
    assert _sha256(cwd / "remote.o") == first_object
    assert json.loads((tmp_path / "r1.json").read_text())["cache_hit"] == "NO_CACHE"
    assert json.loads((tmp_path / "r2.json").read_text())["cache_hit"] != "NO_CACHE"
    assert recorder.calls["Execute"] == 1
    other_instances = [
        name for _, name in recorder.instances if not name.startswith("gomaproxy/test")
    ]
    assert other_instances == []
    execute_metadata = [meta for method, meta in recorder.metadata if method == "Execute"]
    sent = re_pb2.RequestMetadata.FromString(execute_metadata[0][REQUEST_METADATA_KEY])
    assert sent.action_id
    assert sent.tool_details.tool_name == "gomaproxy"


@pytest.mark.e2e
@needs_compiler
async def test_grpc_backend_compile_survives_broken_execute_stream(
    local_backend: LocalBackend, tmp_path: Path
) -> None:
    """An Execute stream that breaks after its first operation is resumed by WaitExecution."""
    cwd = _project(tmp_path / "proj")

    with trio.fail_after(180):
        await _gcc(cwd, *FLAGS, "-o", "local.o")
        async with trio.open_nursery() as actions:
            breaking = BreakingExecuteBackend(local_backend, actions)
            async with serving(breaking) as port, proxy_on(port, tmp_path / "proxy") as server:
                result = await _cc(
                    server, cwd, tmp_path / "r.json", "gcc", *FLAGS, "-o", "remote.o"
                )
            actions.cancel_scope.cancel()

    assert result.returncode == 0, result.stderr.decode()
    assert _sha256(cwd / "remote.o") == _sha256(cwd / "local.o")
    assert breaking.calls["Execute"] == 1
    assert breaking.calls["WaitExecution"] >= 1


async def test_open_proxy_fails_fast_on_unreachable_backend(tmp_path: Path) -> None:
    """A gRPC backend that does not respond stops the proxy from starting, naming the address."""
    config = Config()
    config.state.dir = tmp_path / "state"
    config.backend.address = "grpc://127.0.0.1:1"
    config.backend.retry_budget_s = 0.5
    config.backend.startup_check_timeout_s = 5

    with trio.fail_after(30), pytest.raises(BaseException) as caught:
        async with open_proxy(config, registry=CollectorRegistry()):
            pass

    # The backend's task group may wrap the error in exception groups.
    error = caught.value
    while isinstance(error, BaseExceptionGroup):
        error = error.exceptions[0]
    assert isinstance(error, GomaProxyError)
    assert error.code == Code.UNAVAILABLE
    assert "backend grpc://127.0.0.1:1" in error.message
