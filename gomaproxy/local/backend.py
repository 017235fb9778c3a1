"""The embedded local backend: an in-process REAPI v2 server behind the Backend interface.

It binds no port.  Blobs live in a size-capped CAS under ``<state_dir>/cas``, results in an
action cache under ``<state_dir>/ac``, and actions run in ``<state_dir>/actions``, under
bubblewrap when it is installed and usable.

Execute runs the action in the caller's task, so closing the Execute stream cancels the
action.  WaitExecution follows an operation that another caller's Execute is running, or
returns a recently finished one.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import socket
import subprocess
import uuid
import weakref
from collections import OrderedDict
from collections.abc import AsyncIterable, AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import final

import anyio
import anyio.to_thread
import structlog
from google.protobuf import any_pb2, timestamp_pb2
from google.rpc import status_pb2
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge

from gomaproxy.digest import DigestKey, is_valid_hash
from gomaproxy.errors import BackendError, Code
from gomaproxy.local.actioncache import ActionCache
from gomaproxy.local.bytestream import ByteStreamService
from gomaproxy.local.cas import ContentAddressableStorage, MessageT
from gomaproxy.local.executor import ExecutionOutcome, LocalExecutor
from gomaproxy.local.inputs import missing_blobs_error, remove_tree
from gomaproxy.local.sandbox import DEFAULT_HOST_TOOLCHAIN_DIRS
from gomaproxy.protos import bytestream_pb2 as bs_pb2
from gomaproxy.protos import longrunning_pb2 as lro_pb2
from gomaproxy.protos import remote_execution_pb2 as re_pb2
from gomaproxy.protos import semver_pb2

log = structlog.get_logger(__name__)

# Total blob bytes per BatchUpdateBlobs or BatchReadBlobs request, the usual gRPC message cap.
MAX_BATCH_TOTAL_SIZE_BYTES = 4 * 1024 * 1024

# Total stdout, stderr and output file bytes inlined into one result on request.
MAX_INLINE_BYTES = 1024 * 1024

# Finished operations kept for WaitExecution, oldest dropped first.
MAX_FINISHED_OPERATIONS = 1024

_BWRAP_PROBE_TIMEOUT_S = 10.0


class LocalBackendMetrics:
    """Prometheus metrics of the local backend, registered on one registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.actions_executed = Counter(
            "gomaproxy_local_actions_executed_total",
            "Actions run by the local backend, by exit: 0, nonzero or timeout.",
            ["exit"],
            registry=registry,
        )
        self.action_cache_hits = Counter(
            "gomaproxy_local_action_cache_hits_total",
            "Action cache lookups of the local backend that returned a result.",
            registry=registry,
        )
        self.action_cache_misses = Counter(
            "gomaproxy_local_action_cache_misses_total",
            "Action cache lookups of the local backend that found no usable result.",
            registry=registry,
        )
        self.cas_bytes = Gauge(
            "gomaproxy_local_cas_bytes",
            "Bytes of blobs held by the local CAS.",
            registry=registry,
        )


_metrics_by_registry: weakref.WeakKeyDictionary[CollectorRegistry, LocalBackendMetrics] = (
    weakref.WeakKeyDictionary()
)


def metrics_for(registry: CollectorRegistry) -> LocalBackendMetrics:
    """Return the local backend metrics of ``registry``, registering them on first use."""
    metrics = _metrics_by_registry.get(registry)
    if metrics is None:
        metrics = LocalBackendMetrics(registry)
        _metrics_by_registry[registry] = metrics
    return metrics


@dataclass
class _Operation:
    """An Execute call, running or finished."""

    name: str
    action_digest: DigestKey
    finished: anyio.Event = field(default_factory=anyio.Event)
    response: re_pb2.ExecuteResponse | None = None

    def to_proto(self) -> lro_pb2.Operation:
        if self.response is None:
            stage = re_pb2.ExecutionStage.QUEUED
        else:
            stage = re_pb2.ExecutionStage.COMPLETED
        metadata = re_pb2.ExecuteOperationMetadata(
            stage=stage, action_digest=self.action_digest.to_proto()
        )
        operation = lro_pb2.Operation(name=self.name, done=self.response is not None)
        operation.metadata.Pack(metadata)
        if self.response is not None:
            operation.response.Pack(self.response)
        return operation


@final
class LocalBackend:
    """An in-process REAPI v2 server: CAS, action cache and local execution.

    Call ``open`` (or use ``async with``) before any other method, and ``aclose`` at the end.
    """

    name = "local"

    def __init__(
        self,
        state_dir: Path,
        *,
        cas_max_bytes: int,
        max_concurrent_actions: int | None = None,
        use_bwrap: bool | None = None,
        host_toolchain_dirs: Sequence[str] | None = None,
        registry: CollectorRegistry | None = None,
    ) -> None:
        """Configure the backend; ``open`` does the I/O.

        Args:
            state_dir: directory for the CAS, the action cache and the action directories.
            cas_max_bytes: size cap of the CAS in bytes.
            max_concurrent_actions: actions run at once; None or 0 means one per CPU.
            use_bwrap: True requires bubblewrap, False never uses it, None uses it when
                ``bwrap`` is on PATH and works.
            host_toolchain_dirs: host directories shown read-only to sandboxed actions.
            registry: Prometheus registry for the metrics; None means the default one.
        """
        self.state_dir = state_dir
        self.cas_max_bytes = cas_max_bytes
        self.use_bwrap = use_bwrap
        self.host_toolchain_dirs = tuple(host_toolchain_dirs or DEFAULT_HOST_TOOLCHAIN_DIRS)
        self.metrics = metrics_for(registry if registry is not None else REGISTRY)
        slots = max_concurrent_actions or os.cpu_count() or 1
        self.action_limiter = anyio.CapacityLimiter(slots)

        self._cas: ContentAddressableStorage | None = None
        self._action_cache: ActionCache | None = None
        self._bytestream: ByteStreamService | None = None
        self._executor: LocalExecutor | None = None
        self._bwrap_path: str | None = None
        # Open descriptor holding the exclusive lock on the state directory while open.
        self._lock_fd: int | None = None
        self._running: dict[str, _Operation] = {}
        self._finished: OrderedDict[str, _Operation] = OrderedDict()

    # Life cycle.

    async def open(self) -> LocalBackend:
        """Create the state directories, index the CAS and detect bubblewrap.

        Raises:
            BackendError: FAILED_PRECONDITION when ``use_bwrap`` is True and bubblewrap is
                missing or does not work, or when another local backend uses the same
                state directory.
        """
        if self._cas is not None:
            return self

        self._bwrap_path = await _detect_bwrap(self.use_bwrap)
        self._lock_fd = await anyio.to_thread.run_sync(_lock_state_dir, self.state_dir)
        try:
            await self._open_stores()
        except BaseException:
            self._unlock()
            raise

        log.info(
            "local_backend_opened",
            state_dir=str(self.state_dir),
            bwrap=self._bwrap_path,
            action_slots=self.action_limiter.total_tokens,
        )
        return self

    async def _open_stores(self) -> None:
        actions_dir = self.state_dir / "actions"
        await anyio.to_thread.run_sync(_reset_actions_dir, actions_dir)

        cas = await ContentAddressableStorage.open(
            self.state_dir / "cas",
            max_bytes=self.cas_max_bytes,
            on_size_change=self.metrics.cas_bytes.set,
        )
        self.metrics.cas_bytes.set(cas.total_bytes)
        self._action_cache = await ActionCache.open(self.state_dir / "ac", cas)
        self._bytestream = ByteStreamService(cas)
        self._executor = LocalExecutor(
            cas,
            actions_dir=actions_dir,
            limiter=self.action_limiter,
            bwrap_path=self._bwrap_path,
            host_toolchain_dirs=self.host_toolchain_dirs,
            worker_name=f"gomaproxy-local@{socket.gethostname()}",
        )
        self._cas = cas

    async def aclose(self) -> None:
        """Discard unfinished uploads and release the state directory.

        Executions run in their callers' tasks, which must end before this is called.
        """
        if self._bytestream is not None:
            await self._bytestream.aclose()
        self._unlock()
        log.info("local_backend_closed", state_dir=str(self.state_dir))

    def _unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    async def __aenter__(self) -> LocalBackend:
        return await self.open()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    @property
    def supports_absolute_input_root(self) -> bool:
        """Whether actions may set InputRootAbsolutePath, which needs bubblewrap."""
        self._require_open()
        return self._bwrap_path is not None

    @property
    def limiters(self) -> Mapping[str, anyio.CapacityLimiter]:
        """Capacity limiters by name, for export as metrics."""
        return {"local_actions": self.action_limiter}

    # Capabilities and caches.

    async def get_capabilities(
        self, request: re_pb2.GetCapabilitiesRequest
    ) -> re_pb2.ServerCapabilities:
        sha256 = re_pb2.DigestFunction.SHA256
        return re_pb2.ServerCapabilities(
            cache_capabilities=re_pb2.CacheCapabilities(
                digest_functions=[sha256],
                action_cache_update_capabilities=re_pb2.ActionCacheUpdateCapabilities(
                    update_enabled=False
                ),
                max_batch_total_size_bytes=MAX_BATCH_TOTAL_SIZE_BYTES,
                symlink_absolute_path_strategy=re_pb2.SymlinkAbsolutePathStrategy.ALLOWED,
            ),
            execution_capabilities=re_pb2.ExecutionCapabilities(
                digest_function=sha256, exec_enabled=True, digest_functions=[sha256]
            ),
            low_api_version=semver_pb2.SemVer(major=2, minor=0),
            high_api_version=semver_pb2.SemVer(major=2, minor=2),
        )

    async def get_action_result(
        self, request: re_pb2.GetActionResultRequest
    ) -> re_pb2.ActionResult:
        """Return the cached result of an action.

        Raises:
            BackendError: NOT_FOUND on a miss, INVALID_ARGUMENT for an invalid digest.
        """
        _check_digest_function(request.digest_function)
        key = _digest_key(request.action_digest, "action digest")
        result = await self._lookup_action_cache(key)
        await self._inline(
            result, request.inline_stdout, request.inline_stderr, request.inline_output_files
        )
        return result

    async def find_missing_blobs(
        self, request: re_pb2.FindMissingBlobsRequest
    ) -> re_pb2.FindMissingBlobsResponse:
        _check_digest_function(request.digest_function)
        keys = [_digest_key(digest, "blob digest") for digest in request.blob_digests]
        missing = self._require_cas().find_missing(keys)
        return re_pb2.FindMissingBlobsResponse(
            missing_blob_digests=[key.to_proto() for key in missing]
        )

    async def batch_update_blobs(
        self, request: re_pb2.BatchUpdateBlobsRequest
    ) -> re_pb2.BatchUpdateBlobsResponse:
        """Store each blob and report a status per blob.

        Raises:
            BackendError: INVALID_ARGUMENT when the blobs total more than the batch limit.
        """
        _check_digest_function(request.digest_function)
        total = sum(len(blob.data) for blob in request.requests)
        _check_batch_size(total, "BatchUpdateBlobs")

        response = re_pb2.BatchUpdateBlobsResponse()
        for blob in request.requests:
            status = await self._store_blob(blob)
            response.responses.add(digest=blob.digest, status=status)
        return response

    async def batch_read_blobs(
        self, request: re_pb2.BatchReadBlobsRequest
    ) -> re_pb2.BatchReadBlobsResponse:
        """Return each blob with a status per blob.

        Raises:
            BackendError: INVALID_ARGUMENT when the blobs total more than the batch limit.
        """
        _check_digest_function(request.digest_function)
        total = sum(max(digest.size_bytes, 0) for digest in request.digests)
        _check_batch_size(total, "BatchReadBlobs")

        response = re_pb2.BatchReadBlobsResponse()
        for digest in request.digests:
            entry = response.responses.add(digest=digest, compressor=re_pb2.Compressor.IDENTITY)
            try:
                entry.data = await self._require_cas().read(_digest_key(digest, "blob digest"))
            except BackendError as exc:
                entry.status.CopyFrom(status_of(exc))
        return response

    # ByteStream.

    async def read(self, request: bs_pb2.ReadRequest) -> AsyncIterator[bs_pb2.ReadResponse]:
        """Yield a blob's bytes; see ``ByteStreamService.read`` for the rules."""
        self._require_open()
        assert self._bytestream is not None
        responses = self._bytestream.read(request)
        async with contextlib.aclosing(responses):
            async for response in responses:
                yield response

    async def write(self, requests: AsyncIterable[bs_pb2.WriteRequest]) -> bs_pb2.WriteResponse:
        """Store a streamed blob; see ``ByteStreamService.write`` for the rules."""
        self._require_open()
        assert self._bytestream is not None
        return await self._bytestream.write(requests)

    async def query_write_status(
        self, request: bs_pb2.QueryWriteStatusRequest
    ) -> bs_pb2.QueryWriteStatusResponse:
        self._require_open()
        assert self._bytestream is not None
        return await self._bytestream.query_write_status(request)

    # Execution.

    async def execute(self, request: re_pb2.ExecuteRequest) -> AsyncIterator[lro_pb2.Operation]:
        """Yield a QUEUED operation, run the action, then yield the finished operation.

        Errors of the action, such as missing inputs (FAILED_PRECONDITION with MISSING
        violations) or a timeout (DEADLINE_EXCEEDED), are reported in the finished
        operation's ExecuteResponse.status, not raised.

        Raises:
            BackendError: INVALID_ARGUMENT for an invalid action digest.

        Closing the stream before the end cancels the action, and the operation finishes
        with status CANCELLED for any WaitExecution caller.
        """
        self._require_open()
        _check_digest_function(request.digest_function)
        key = _digest_key(request.action_digest, "action digest")
        queued_at = timestamp_pb2.Timestamp()
        queued_at.GetCurrentTime()

        operation = self._start_operation(request.instance_name, key)
        try:
            yield operation.to_proto()
            response = await self._execute_action(request, key, queued_at)
        except BaseException as exc:
            # Waiters in WaitExecution must learn that this operation will not finish.
            self._finish_operation(operation, _interrupted_response(exc))
            raise

        self._finish_operation(operation, response)
        yield operation.to_proto()

    async def wait_execution(
        self, request: re_pb2.WaitExecutionRequest
    ) -> AsyncIterator[lro_pb2.Operation]:
        """Yield the operation's current state and, if it is running, its finished state.

        Raises:
            BackendError: NOT_FOUND for an unknown or forgotten operation name.
        """
        operation = self._running.get(request.name) or self._finished.get(request.name)
        if operation is None:
            raise BackendError(
                Code.NOT_FOUND,
                f"operation {request.name!r} is unknown or finished too long ago; "
                "execute the action again",
            )

        if operation.response is None:
            yield operation.to_proto()
            await operation.finished.wait()
        yield operation.to_proto()

    async def _execute_action(
        self, request: re_pb2.ExecuteRequest, key: DigestKey, queued_at: timestamp_pb2.Timestamp
    ) -> re_pb2.ExecuteResponse:
        try:
            action = await self._read_required(key, re_pb2.Action, "action")
            if not request.skip_cache_lookup and not action.do_not_cache:
                cached = await self._cached_response(key)
                if cached is not None:
                    response = cached
                    await self._inline_for(request, response.result)
                    return response

            command_key = _digest_key(action.command_digest, "command digest")
            command = await self._read_required(command_key, re_pb2.Command, "command")
            response = await self._run_action(key, action, command, queued_at)
        except BackendError as exc:
            log.info(
                "local_execute_failed",
                action_digest=str(key),
                code=exc.code.name,
                error=exc.message,
            )
            return re_pb2.ExecuteResponse(status=status_of(exc))
        except OSError as exc:
            log.error("local_execute_io_failed", action_digest=str(key), error=str(exc))
            error = BackendError(
                Code.INTERNAL,
                f"running action {key} failed on the local disk: {exc}; check free space "
                f"and permissions under {self.state_dir}",
            )
            return re_pb2.ExecuteResponse(status=status_of(error))

        await self._inline_for(request, response.result)
        return response

    async def _cached_response(self, key: DigestKey) -> re_pb2.ExecuteResponse | None:
        try:
            result = await self._lookup_action_cache(key)
        except BackendError as exc:
            if exc.code is not Code.NOT_FOUND:
                raise
            return None
        return re_pb2.ExecuteResponse(result=result, cached_result=True)

    async def _run_action(
        self,
        key: DigestKey,
        action: re_pb2.Action,
        command: re_pb2.Command,
        queued_at: timestamp_pb2.Timestamp,
    ) -> re_pb2.ExecuteResponse:
        executor = self._executor
        assert executor is not None
        action_cache = self._action_cache
        assert action_cache is not None

        with self._require_cas().pinned() as pins:
            outcome = await executor.execute(action, command, pins, queued_at)
            self._count_execution(outcome)
            stored = False
            if outcome.error is None:
                stored = await action_cache.put(key, action, outcome.result)
        log.debug(
            "local_action_finished",
            action_digest=str(key),
            exit_code=outcome.result.exit_code,
            timed_out=outcome.timed_out,
            cached=stored,
        )

        response = re_pb2.ExecuteResponse(result=outcome.result)
        if outcome.error is not None:
            response.status.CopyFrom(status_of(outcome.error))
        return response

    def _count_execution(self, outcome: ExecutionOutcome) -> None:
        if outcome.timed_out:
            label = "timeout"
        elif outcome.result.exit_code == 0:
            label = "0"
        else:
            label = "nonzero"
        self.metrics.actions_executed.labels(exit=label).inc()

    # Helpers.

    def _require_open(self) -> None:
        if self._cas is None:
            raise RuntimeError("LocalBackend is not open; call open() or use 'async with' first")

    def _require_cas(self) -> ContentAddressableStorage:
        self._require_open()
        assert self._cas is not None
        return self._cas

    async def _lookup_action_cache(self, key: DigestKey) -> re_pb2.ActionResult:
        self._require_open()
        assert self._action_cache is not None
        try:
            result = await self._action_cache.get(key)
        except BackendError:
            self.metrics.action_cache_misses.inc()
            raise
        self.metrics.action_cache_hits.inc()
        return result

    async def _read_required(
        self, key: DigestKey, message_type: type[MessageT], what: str
    ) -> MessageT:
        """Read a message the action needs; a missing blob is a MISSING precondition failure."""
        cas = self._require_cas()
        try:
            return await cas.read_message(key, message_type)
        except BackendError as exc:
            if exc.code is Code.NOT_FOUND:
                raise missing_blobs_error([key], what) from None
            raise

    async def _store_blob(self, blob: re_pb2.BatchUpdateBlobsRequest.Request) -> status_pb2.Status:
        try:
            if blob.compressor != re_pb2.Compressor.IDENTITY:
                raise BackendError(
                    Code.INVALID_ARGUMENT,
                    f"blob {blob.digest.hash}/{blob.digest.size_bytes} uses a compressor; "
                    "this server accepts only uncompressed blobs",
                )
            key = _digest_key(blob.digest, "blob digest")
            await self._require_cas().write(key, blob.data)
        except BackendError as exc:
            return status_of(exc)
        return status_pb2.Status(code=Code.OK)

    def _start_operation(self, instance_name: str, key: DigestKey) -> _Operation:
        suffix = f"operations/{uuid.uuid4()}"
        name = f"{instance_name}/{suffix}" if instance_name else suffix
        operation = _Operation(name=name, action_digest=key)
        self._running[name] = operation
        return operation

    def _finish_operation(self, operation: _Operation, response: re_pb2.ExecuteResponse) -> None:
        operation.response = response
        operation.finished.set()
        self._running.pop(operation.name, None)
        self._finished[operation.name] = operation
        while len(self._finished) > MAX_FINISHED_OPERATIONS:
            self._finished.popitem(last=False)

    async def _inline_for(
        self, request: re_pb2.ExecuteRequest, result: re_pb2.ActionResult
    ) -> None:
        await self._inline(
            result, request.inline_stdout, request.inline_stderr, request.inline_output_files
        )

    async def _inline(
        self,
        result: re_pb2.ActionResult,
        inline_stdout: bool,
        inline_stderr: bool,
        inline_output_files: Sequence[str],
    ) -> None:
        """Copy requested small outputs into ``result`` until MAX_INLINE_BYTES is used up.

        Blobs that do not fit, or that left the CAS, are not inlined; the digests stay set.
        """
        cas = self._require_cas()
        budget = MAX_INLINE_BYTES
        wanted: list[tuple[DigestKey, object, str]] = []
        if inline_stdout and result.stdout_digest.hash:
            wanted.append((DigestKey.of(result.stdout_digest), result, "stdout_raw"))
        if inline_stderr and result.stderr_digest.hash:
            wanted.append((DigestKey.of(result.stderr_digest), result, "stderr_raw"))
        paths = set(inline_output_files)
        for output_file in result.output_files:
            if output_file.path in paths:
                wanted.append((DigestKey.of(output_file.digest), output_file, "contents"))

        for key, message, field_name in wanted:
            if key.size_bytes > budget:
                continue
            try:
                data = await cas.read(key)
            except BackendError:
                continue
            setattr(message, field_name, data)
            budget -= key.size_bytes


def status_of(error: BackendError) -> status_pb2.Status:
    """Convert ``error`` to a google.rpc.Status, keeping its packed details."""
    status = status_pb2.Status(code=int(error.code), message=error.message)
    status.details.extend(detail for detail in error.details if isinstance(detail, any_pb2.Any))
    return status


def _interrupted_response(exc: BaseException) -> re_pb2.ExecuteResponse:
    """Build the response of an operation whose Execute call ended without a result."""
    if isinstance(exc, (GeneratorExit, anyio.get_cancelled_exc_class())):
        status = status_pb2.Status(
            code=Code.CANCELLED,
            message="execution was cancelled because its Execute call ended; execute again",
        )
    else:
        status = status_pb2.Status(
            code=Code.INTERNAL,
            message=f"execution failed unexpectedly with {type(exc).__name__}; see the proxy log",
        )
    return re_pb2.ExecuteResponse(status=status)


def _digest_key(digest: re_pb2.Digest, what: str) -> DigestKey:
    if is_valid_hash(digest.hash) and digest.size_bytes >= 0:
        return DigestKey.of(digest)
    raise BackendError(
        Code.INVALID_ARGUMENT,
        f"{what} {digest.hash!r}/{digest.size_bytes} is invalid; "
        "use a lowercase hex sha256 and a non-negative size",
    )


def _check_digest_function(value: int) -> None:
    if value in (re_pb2.DigestFunction.UNKNOWN, re_pb2.DigestFunction.SHA256):
        return
    raise BackendError(
        Code.INVALID_ARGUMENT,
        f"digest function {re_pb2.DigestFunction.Name(value)} is not supported; use SHA256",
    )


def _check_batch_size(total: int, call: str) -> None:
    if total <= MAX_BATCH_TOTAL_SIZE_BYTES:
        return
    raise BackendError(
        Code.INVALID_ARGUMENT,
        f"{call} request carries {total} blob bytes, more than the limit of "
        f"{MAX_BATCH_TOTAL_SIZE_BYTES}; send large blobs through ByteStream",
    )


def _lock_state_dir(state_dir: Path) -> int:
    """Take an exclusive lock on ``state_dir`` and return the descriptor that holds it.

    Raises:
        BackendError: FAILED_PRECONDITION when another local backend holds the lock.
    """
    state_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(state_dir / "local-backend.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise BackendError(
            Code.FAILED_PRECONDITION,
            f"state directory {state_dir} is in use by another local backend; "
            "give each proxy process its own state directory",
        ) from None
    return fd


def _reset_actions_dir(actions_dir: Path) -> None:
    """Delete action directories left by an earlier process and recreate the parent."""
    if actions_dir.exists():
        remove_tree(actions_dir)
    actions_dir.mkdir(parents=True)


async def _detect_bwrap(use_bwrap: bool | None) -> str | None:
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
        "--unshare-all", "--die-with-parent", "--new-session", "--", "true",
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
