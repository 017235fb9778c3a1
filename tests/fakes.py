"""An in-memory REAPI backend for unit and integration tests.

It counts and records every call, keeps a CAS and an action cache in dicts, and runs
actions with a scripted function instead of a process.  Tests can queue scripted stream
breaks and statuses to drive the retry paths.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import AsyncIterable, AsyncIterator, Callable
from contextlib import aclosing
from dataclasses import dataclass, field

import anyio
from google.protobuf import any_pb2

from gomaproxy.digest import DigestKey, digest_of_bytes
from gomaproxy.errors import BackendError, Code
from gomaproxy.protos import bytestream_pb2 as bs_pb2
from gomaproxy.protos import longrunning_pb2 as lro_pb2
from gomaproxy.protos import remote_execution_pb2 as re_pb2
from gomaproxy.remote.backend import Backend

# Runs an action: gets the Command and the CAS, returns the ActionResult.
Runner = Callable[[re_pb2.Command, dict[DigestKey, bytes]], re_pb2.ActionResult]


@dataclass
class StreamScript:
    """How one Execute or WaitExecution stream behaves.

    ``break_after`` yields that many not-done operations, then raises ``error``.
    ``status`` makes the done operation carry that ExecuteResponse status instead of a run.
    """

    break_after: int | None = None
    error: Code = Code.UNAVAILABLE
    status: Code | None = None


@dataclass
class FakeBackend:
    """A counting, recording REAPI backend held in memory."""

    runner: Runner | None = None
    name: str = "fake"
    max_batch_total_size_bytes: int = 4 * 1024 * 1024
    high_api: tuple[int, int] = (2, 2)
    cas: dict[DigestKey, bytes] = field(default_factory=dict)
    action_cache: dict[DigestKey, re_pb2.ActionResult] = field(default_factory=dict)
    calls: Counter[str] = field(default_factory=Counter)
    execute_requests: list[re_pb2.ExecuteRequest] = field(default_factory=list)
    batch_sizes: list[int] = field(default_factory=list)
    scripts: list[StreamScript] = field(default_factory=list)
    operations: dict[str, re_pb2.ExecuteRequest] = field(default_factory=dict)
    executions: int = 0
    action_result_requests: list[re_pb2.GetActionResultRequest] = field(default_factory=list)
    # The symlink_absolute_path_strategy capability sent in GetCapabilities.
    symlink_strategy: int = re_pb2.SymlinkAbsolutePathStrategy.DISALLOWED
    # Read by open_proxy: the fake accepts actions with InputRootAbsolutePath.
    supports_absolute_input_root: bool = True
    # Execute returns a result from action_cache, as REAPI servers do, unless the
    # request sets skip_cache_lookup.
    serve_cached_on_execute: bool = False
    # False makes every GetActionResult a miss, so only Execute returns cached results.
    answer_action_result: bool = True
    # When set, every Execute stream waits for it after its first operation, so tests
    # can hold an action in flight.
    execute_gate: anyio.Event | None = None
    # BatchUpdateBlobs rejects each of these digests once, with RESOURCE_EXHAUSTED.
    reject_upload_once: set[DigestKey] = field(default_factory=set)

    async def get_capabilities(
        self, request: re_pb2.GetCapabilitiesRequest
    ) -> re_pb2.ServerCapabilities:
        self.calls["GetCapabilities"] += 1
        capabilities = re_pb2.ServerCapabilities()
        capabilities.cache_capabilities.max_batch_total_size_bytes = self.max_batch_total_size_bytes
        capabilities.cache_capabilities.symlink_absolute_path_strategy = self.symlink_strategy
        capabilities.low_api_version.major = 2
        capabilities.high_api_version.major, capabilities.high_api_version.minor = self.high_api
        return capabilities

    async def get_action_result(
        self, request: re_pb2.GetActionResultRequest
    ) -> re_pb2.ActionResult:
        self.calls["GetActionResult"] += 1
        self.action_result_requests.append(request)
        result = self.action_cache.get(DigestKey.of(request.action_digest))
        if result is None or not self.answer_action_result:
            raise BackendError(Code.NOT_FOUND, "no cached result")
        return result

    async def find_missing_blobs(
        self, request: re_pb2.FindMissingBlobsRequest
    ) -> re_pb2.FindMissingBlobsResponse:
        self.calls["FindMissingBlobs"] += 1
        response = re_pb2.FindMissingBlobsResponse()
        for digest in request.blob_digests:
            if DigestKey.of(digest) not in self.cas:
                response.missing_blob_digests.add().CopyFrom(digest)
        return response

    async def batch_update_blobs(
        self, request: re_pb2.BatchUpdateBlobsRequest
    ) -> re_pb2.BatchUpdateBlobsResponse:
        self.calls["BatchUpdateBlobs"] += 1
        self.batch_sizes.append(len(request.SerializeToString()))
        response = re_pb2.BatchUpdateBlobsResponse()
        for entry in request.requests:
            digest = DigestKey.of(entry.digest)
            if digest in self.reject_upload_once:
                self.reject_upload_once.discard(digest)
                rejected = response.responses.add(digest=entry.digest)
                rejected.status.code = Code.RESOURCE_EXHAUSTED
                rejected.status.message = "scripted rejection"
                continue
            self._store(digest, entry.data)
            response.responses.add(digest=entry.digest)
        return response

    async def batch_read_blobs(
        self, request: re_pb2.BatchReadBlobsRequest
    ) -> re_pb2.BatchReadBlobsResponse:
        self.calls["BatchReadBlobs"] += 1
        response = re_pb2.BatchReadBlobsResponse()
        for digest in request.digests:
            response.responses.add(digest=digest, data=self.cas[DigestKey.of(digest)])
        return response

    async def read(self, request: bs_pb2.ReadRequest) -> AsyncIterator[bs_pb2.ReadResponse]:
        self.calls["Read"] += 1
        parts = request.resource_name.split("/")
        digest = DigestKey(parts[-2], int(parts[-1]))
        if digest not in self.cas:
            raise BackendError(Code.NOT_FOUND, f"blob {digest} not found")
        yield bs_pb2.ReadResponse(data=self.cas[digest])

    async def write(self, requests: AsyncIterable[bs_pb2.WriteRequest]) -> bs_pb2.WriteResponse:
        self.calls["Write"] += 1
        pieces, resource = [], ""
        async for request in requests:
            resource = request.resource_name or resource
            pieces.append(request.data)
        parts = resource.split("/")
        data = b"".join(pieces)
        self._store(DigestKey(parts[-2], int(parts[-1])), data)
        return bs_pb2.WriteResponse(committed_size=len(data))

    async def query_write_status(
        self, request: bs_pb2.QueryWriteStatusRequest
    ) -> bs_pb2.QueryWriteStatusResponse:
        self.calls["QueryWriteStatus"] += 1
        return bs_pb2.QueryWriteStatusResponse()

    async def execute(self, request: re_pb2.ExecuteRequest) -> AsyncIterator[lro_pb2.Operation]:
        self.calls["Execute"] += 1
        self.execute_requests.append(request)
        name = f"operations/{len(self.execute_requests)}"
        self.operations[name] = request
        async for operation in self._stream(name, request):
            yield operation

    async def wait_execution(
        self, request: re_pb2.WaitExecutionRequest
    ) -> AsyncIterator[lro_pb2.Operation]:
        self.calls["WaitExecution"] += 1
        execute = self.operations.get(request.name)
        if execute is None:
            raise BackendError(Code.NOT_FOUND, f"operation {request.name} not found")
        async for operation in self._stream(request.name, execute):
            yield operation

    async def aclose(self) -> None:
        self.calls["aclose"] += 1

    async def _stream(
        self, name: str, request: re_pb2.ExecuteRequest
    ) -> AsyncIterator[lro_pb2.Operation]:
        script = self.scripts.pop(0) if self.scripts else StreamScript()
        if script.break_after is not None:
            for _ in range(script.break_after):
                yield lro_pb2.Operation(name=name)
            raise BackendError(script.error, "scripted stream break")

        yield lro_pb2.Operation(name=name)
        if self.execute_gate is not None:
            await self.execute_gate.wait()
        response = re_pb2.ExecuteResponse()
        cached = self.action_cache.get(DigestKey.of(request.action_digest))
        if self.serve_cached_on_execute and cached is not None and not request.skip_cache_lookup:
            response.result.CopyFrom(cached)
            response.cached_result = True
        elif script.status is not None:
            response.status.code = script.status
            response.status.message = "scripted status"
        else:
            response.result.CopyFrom(self._run(request))
        packed = any_pb2.Any()
        packed.Pack(response)
        yield lro_pb2.Operation(name=name, done=True, response=packed)

    def _run(self, request: re_pb2.ExecuteRequest) -> re_pb2.ActionResult:
        self.executions += 1
        action = re_pb2.Action.FromString(self.cas[DigestKey.of(request.action_digest)])
        command = re_pb2.Command.FromString(self.cas[DigestKey.of(action.command_digest)])
        assert self.runner is not None, "FakeBackend needs a runner to execute actions"
        result = self.runner(command, self.cas)
        if result.exit_code == 0 and not action.do_not_cache:
            self.action_cache[DigestKey.of(request.action_digest)] = result
        return result

    def _store(self, digest: DigestKey, data: bytes) -> None:
        actual = hashlib.sha256(data).hexdigest()
        if actual != digest.hash or len(data) != digest.size_bytes:
            raise BackendError(Code.INVALID_ARGUMENT, f"data does not match digest {digest}")
        self.cas[digest] = data

    def put(self, data: bytes) -> DigestKey:
        """Store ``data`` in the CAS directly and return its digest."""
        digest = digest_of_bytes(data)
        self.cas[digest] = data
        return digest


@dataclass
class RecordingBackend:
    """Passes every call to ``inner`` and records the calls and the requests.

    It wraps a real backend, such as the local one, so that tests can check which cache
    lookups and executions the adapter requested and what the backend returned.
    """

    inner: Backend
    name: str = "recording"
    calls: Counter[str] = field(default_factory=Counter)
    action_result_requests: list[re_pb2.GetActionResultRequest] = field(default_factory=list)
    execute_requests: list[re_pb2.ExecuteRequest] = field(default_factory=list)
    execute_responses: list[re_pb2.ExecuteResponse] = field(default_factory=list)

    @property
    def supports_absolute_input_root(self) -> bool:
        return bool(getattr(self.inner, "supports_absolute_input_root", False))

    async def get_capabilities(
        self, request: re_pb2.GetCapabilitiesRequest
    ) -> re_pb2.ServerCapabilities:
        self.calls["GetCapabilities"] += 1
        return await self.inner.get_capabilities(request)

    async def get_action_result(
        self, request: re_pb2.GetActionResultRequest
    ) -> re_pb2.ActionResult:
        self.calls["GetActionResult"] += 1
        self.action_result_requests.append(request)
        return await self.inner.get_action_result(request)

    async def find_missing_blobs(
        self, request: re_pb2.FindMissingBlobsRequest
    ) -> re_pb2.FindMissingBlobsResponse:
        self.calls["FindMissingBlobs"] += 1
        return await self.inner.find_missing_blobs(request)

    async def batch_update_blobs(
        self, request: re_pb2.BatchUpdateBlobsRequest
    ) -> re_pb2.BatchUpdateBlobsResponse:
        self.calls["BatchUpdateBlobs"] += 1
        return await self.inner.batch_update_blobs(request)

    async def batch_read_blobs(
        self, request: re_pb2.BatchReadBlobsRequest
    ) -> re_pb2.BatchReadBlobsResponse:
        self.calls["BatchReadBlobs"] += 1
        return await self.inner.batch_read_blobs(request)

    async def read(self, request: bs_pb2.ReadRequest) -> AsyncIterator[bs_pb2.ReadResponse]:
        self.calls["Read"] += 1
        async with aclosing(self.inner.read(request)) as stream:
            async for response in stream:
                yield response

    async def write(self, requests: AsyncIterable[bs_pb2.WriteRequest]) -> bs_pb2.WriteResponse:
        self.calls["Write"] += 1
        return await self.inner.write(requests)

    async def query_write_status(
        self, request: bs_pb2.QueryWriteStatusRequest
    ) -> bs_pb2.QueryWriteStatusResponse:
        self.calls["QueryWriteStatus"] += 1
        return await self.inner.query_write_status(request)

    async def execute(self, request: re_pb2.ExecuteRequest) -> AsyncIterator[lro_pb2.Operation]:
        self.calls["Execute"] += 1
        self.execute_requests.append(request)
        async with aclosing(self.inner.execute(request)) as stream:
            async for operation in stream:
                self._record_response(operation)
                yield operation

    async def wait_execution(
        self, request: re_pb2.WaitExecutionRequest
    ) -> AsyncIterator[lro_pb2.Operation]:
        self.calls["WaitExecution"] += 1
        async with aclosing(self.inner.wait_execution(request)) as stream:
            async for operation in stream:
                self._record_response(operation)
                yield operation

    async def aclose(self) -> None:
        self.calls["aclose"] += 1

    def _record_response(self, operation: lro_pb2.Operation) -> None:
        if not operation.done or not operation.HasField("response"):
            return
        response = re_pb2.ExecuteResponse()
        operation.response.Unpack(response)
        self.execute_responses.append(response)
