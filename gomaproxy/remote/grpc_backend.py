"""The Backend interface over gRPC, for any REAPI v2 server at a grpc:// or grpcs:// address.

Theory of operation.  ``open_grpc_backend`` opens one channel through the bridge and
wraps it in a ``GrpcBackend``.  Every call carries the configured instance name (when
the request names none), a ``requestmetadata-bin`` header with the ids of the goma
request being served, the configured authorization and extra headers, and a deadline
from the per-method table ``rpc_timeouts``.

Unary calls are retried on transient errors under the rules of ``remote.retry``, within
``retry_budget_s`` and never past the caller's deadline.  A RESOURCE_EXHAUSTED whose
message reports the request as too large is raised at once, so the CAS layer can split
the batch.  A
ByteStream Read that breaks is resumed at the offset it reached.  A ByteStream Write
that breaks asks QueryWriteStatus how much arrived and resumes there, or starts over
under a new upload id.  Execute and WaitExecution streams are not retried here, because
``remote.execute`` resumes them with WaitExecution.

Every call, retries included, passes the proxy-wide circuit breaker of
``remote.breaker`` in ``_GuardedChannel``.  While the breaker is open, calls fail at once
with ``CircuitOpenError`` (UNAVAILABLE) and are not retried, so goma clients fall back to
local compiles without waiting for the retry budget.
"""

from __future__ import annotations

import ssl
import time
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Sequence
from contextlib import aclosing, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TypeVar, final
from urllib.parse import urlsplit

import anyio
import anyio.to_thread
import structlog
from google.protobuf.message import Message
from prometheus_client import CollectorRegistry, Gauge

from gomaproxy import __version__
from gomaproxy.config import BackendConfig
from gomaproxy.errors import BackendError, Code, ConfigError
from gomaproxy.protos import bytestream_pb2 as bs_pb2
from gomaproxy.protos import longrunning_pb2 as lro_pb2
from gomaproxy.protos import remote_execution_pb2 as re_pb2
from gomaproxy.remote import bridge
from gomaproxy.remote import methods as m
from gomaproxy.remote.breaker import (
    CircuitBreaker,
    CircuitOpenError,
    Decision,
    Transition,
    is_transport_failure,
)
from gomaproxy.remote.requester import REQUEST_METADATA_KEY, current_requester, request_metadata
from gomaproxy.remote.retry import RetryPolicy, next_delay, summarize_attempts

log = structlog.get_logger(__name__)

ResponseT = TypeVar("ResponseT", bound=Message)
_RequestT = TypeVar("_RequestT", bound=Message)


class _NamesInstance(Protocol):
    instance_name: str


_InstanceRequestT = TypeVar("_InstanceRequestT", bound=_NamesInstance)

# Size of the data in one WriteRequest, as goma-server sends it.
WRITE_CHUNK_BYTES = 2 * 1024 * 1024
DEFAULT_GRPCS_PORT = 443


@dataclass(frozen=True)
class GrpcTarget:
    """Host, port and TLS flag of a REAPI server, parsed from a grpc:// or grpcs:// address."""

    host: str
    port: int
    tls: bool


def parse_target(address: str) -> GrpcTarget:
    """Parse ``grpc://host:port`` or ``grpcs://host[:port]`` (port 443 by default).

    IPv6 addresses go in brackets, as in ``grpc://[::1]:8980``.

    Raises:
        ConfigError: another scheme, a missing host or port, or a path.
    """
    parts = urlsplit(address)
    if parts.scheme not in ("grpc", "grpcs"):
        raise ConfigError(
            f"backend address {address!r} is not supported; use 'local', "
            "grpc://host:port or grpcs://host:port"
        )
    tls = parts.scheme == "grpcs"

    try:
        port = parts.port
    except ValueError:
        raise ConfigError(f"backend address {address!r} has an invalid port") from None
    if port is None and tls:
        port = DEFAULT_GRPCS_PORT
    if not parts.hostname or port is None:
        raise ConfigError(
            f"backend address {address!r} needs a host and a port, as in grpc://127.0.0.1:8980"
        )
    if parts.path not in ("", "/") or parts.query:
        raise ConfigError(
            f"backend address {address!r} has a path; set the REAPI instance in "
            "backend.instance_name instead"
        )
    return GrpcTarget(host=parts.hostname, port=port, tls=tls)


def rpc_timeouts(config: BackendConfig) -> dict[str, float]:
    """Return the deadline in seconds of each method by path; 0 means none."""
    unary = (
        m.GET_CAPABILITIES,
        m.GET_ACTION_RESULT,
        m.UPDATE_ACTION_RESULT,
        m.FIND_MISSING_BLOBS,
        m.BATCH_UPDATE_BLOBS,
        m.BATCH_READ_BLOBS,
        m.QUERY_WRITE_STATUS,
    )
    table = {method.path: config.rpc_timeout_s for method in unary}
    table[m.READ.path] = config.bytestream_timeout_s
    table[m.WRITE.path] = config.bytestream_timeout_s
    table[m.EXECUTE.path] = config.execute_timeout_s
    table[m.WAIT_EXECUTION.path] = config.execute_timeout_s
    return table


def resumed_read_request(request: bs_pb2.ReadRequest, received: int) -> bs_pb2.ReadRequest:
    """Return ``request`` moved past the ``received`` bytes that already arrived."""
    resumed = bs_pb2.ReadRequest(
        resource_name=request.resource_name, read_offset=request.read_offset + received
    )
    if request.read_limit > 0:
        resumed.read_limit = request.read_limit - received
    return resumed


def fresh_upload_resource(resource_name: str) -> str:
    """Return ``resource_name`` with a new upload id in its ``uploads/{id}`` part.

    The last ``uploads/{id}/blobs/`` or ``uploads/{id}/compressed-blobs/`` wins, so an
    instance name that contains ``uploads`` is left alone.  A name without that part
    is returned unchanged.
    """
    parts = resource_name.split("/")
    for index in range(len(parts) - 3, -1, -1):
        if parts[index] == "uploads" and parts[index + 2] in ("blobs", "compressed-blobs"):
            parts[index + 1] = str(uuid.uuid4())
            return "/".join(parts)
    return resource_name


@dataclass(frozen=True)
class PendingUpload:
    """The content of one ByteStream Write, kept so that a broken write can be resent."""

    resource_name: str
    data: bytes
    # Whether the caller finished the write; an unfinished one stays resumable.
    finish: bool

    async def requests(self, resource_name: str, offset: int) -> AsyncIterator[bs_pb2.WriteRequest]:
        """Yield WriteRequests for the bytes from ``offset`` on, in 2 MiB pieces."""
        while True:
            piece = self.data[offset : offset + WRITE_CHUNK_BYTES]
            last = offset + len(piece) >= len(self.data)
            yield bs_pb2.WriteRequest(
                resource_name=resource_name,
                write_offset=offset,
                data=piece,
                finish_write=last and self.finish,
            )
            offset += len(piece)
            if last:
                return


async def collect_upload(requests: AsyncIterable[bs_pb2.WriteRequest]) -> PendingUpload:
    """Read a whole Write request stream into memory.

    Raises:
        BackendError: INVALID_ARGUMENT for an empty stream, a missing resource name or
            offsets that leave a gap.
    """
    resource_name = ""
    pieces: list[bytes] = []
    received = 0
    finish = False
    async for request in requests:
        resource_name = resource_name or request.resource_name
        if request.write_offset != received:
            raise BackendError(
                Code.INVALID_ARGUMENT,
                f"Write of {resource_name!r} sent offset {request.write_offset} after "
                f"{received} bytes; send the blob from offset 0 without gaps",
            )
        pieces.append(request.data)
        received += len(request.data)
        finish = request.finish_write
        if finish:
            break

    if not resource_name:
        raise BackendError(
            Code.INVALID_ARGUMENT, "Write got no request with a resource name; send at least one"
        )
    return PendingUpload(resource_name=resource_name, data=b"".join(pieces), finish=finish)


@dataclass(frozen=True)
class Credentials:
    """TLS settings and per-call headers that a channel needs to reach the server."""

    ssl_context: ssl.SSLContext | None
    headers: tuple[tuple[str, str], ...]


def load_credentials(config: BackendConfig, *, tls: bool) -> Credentials:
    """Read the TLS files, the bearer token file and the extra headers of ``config``.

    Raises:
        ConfigError: a file cannot be read or parsed, or a header is invalid.
    """
    ssl_context = _ssl_context(config) if tls else None
    headers = list(parse_extra_headers(config.extra_headers))
    if config.bearer_token_file:
        # NOTE: the token is read only here, so a rotated token needs a proxy restart.
        headers.append(("authorization", f"Bearer {_read_token(config.bearer_token_file)}"))
    return Credentials(ssl_context=ssl_context, headers=tuple(headers))


def parse_extra_headers(entries: Sequence[str]) -> list[tuple[str, str]]:
    """Parse ``"name: value"`` entries into lower-case header pairs.

    Raises:
        ConfigError: an entry without a colon, an empty or reserved name, or a binary
            ``-bin`` header, which cannot be given as text.
    """
    headers = []
    for entry in entries:
        name, colon, value = entry.partition(":")
        name = name.strip().lower()
        if not colon or not name or not all(c.isalnum() or c in "-_." for c in name):
            raise ConfigError(
                f"backend.extra_headers entry {entry!r} is invalid; write 'name: value' "
                "with a name of letters, digits, '-', '_' and '.'"
            )
        if name.endswith("-bin") or name.startswith("grpc-") or name in ("te", "content-type"):
            raise ConfigError(
                f"backend.extra_headers entry {entry!r} sets the reserved or binary "
                f"header {name}; choose another name"
            )
        headers.append((name, value.strip()))
    return headers


def _ssl_context(config: BackendConfig) -> ssl.SSLContext:
    cert, key = config.tls_client_cert_file, config.tls_client_key_file
    if bool(cert) != bool(key):
        raise ConfigError(
            "backend.tls_client_cert_file and backend.tls_client_key_file must be set together"
        )
    try:
        context = ssl.create_default_context(cafile=config.tls_ca_file or None)
        if cert:
            context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            f"cannot load the backend TLS files (CA {config.tls_ca_file or 'system'}, "
            f"certificate {cert or 'none'}): {exc}; give readable PEM files"
        ) from exc
    context.set_alpn_protocols(["h2"])
    return context


def _read_token(path: str) -> str:
    try:
        token = Path(path).read_text().strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read backend.bearer_token_file {path}: {exc}") from exc
    if not token or any(c.isspace() for c in token):
        raise ConfigError(f"backend.bearer_token_file {path} must hold one token without spaces")
    return token


@asynccontextmanager
async def open_grpc_backend(
    config: BackendConfig, *, registry: CollectorRegistry | None = None
) -> AsyncIterator[GrpcBackend]:
    """Open a GrpcBackend for ``config.address``; the channel is closed on exit.

    The server is first contacted by the first call, not here.  With ``registry``, the
    state of the circuit breaker is exported there as ``gomaproxy_backend_circuit_open``.

    Raises:
        ConfigError: the address, a TLS file, the token file or a header is invalid.
    """
    target = parse_target(config.address)
    credentials = await anyio.to_thread.run_sync(lambda: load_credentials(config, tls=target.tls))
    if config.bearer_token_file and not target.tls:
        log.warning("grpc_backend_token_without_tls", address=config.address)

    async with bridge.open_channel(
        target.host, target.port, ssl_context=credentials.ssl_context
    ) as channel:
        backend = GrpcBackend(channel, config, headers=credentials.headers, registry=registry)
        log.info(
            "grpc_backend_opened",
            address=config.address,
            instance_name=config.instance_name,
            tls=target.tls,
            extra_headers=[name for name, _ in credentials.headers],
        )
        yield backend


@final
class GrpcBackend:
    """A REAPI v2 server reached over gRPC, behind the Backend interface.

    ``clock`` is the time source of the circuit breaker, ``anyio.current_time`` unless a
    test passes a fake one.
    """

    name = "grpc"

    def __init__(
        self,
        channel: bridge.Channel,
        config: BackendConfig,
        *,
        headers: Sequence[tuple[str, str]] = (),
        policy: RetryPolicy | None = None,
        registry: CollectorRegistry | None = None,
        clock: Callable[[], float] = anyio.current_time,
    ) -> None:
        self._instance = config.instance_name
        self._timeouts = rpc_timeouts(config)
        self._policy = policy or RetryPolicy(budget_s=config.retry_budget_s)
        self._headers = tuple(headers)
        self.breaker = CircuitBreaker(
            failure_threshold=config.breaker_failure_threshold,
            window_s=config.breaker_window_s,
            probe_interval_s=config.breaker_probe_interval_s,
        )
        self._channel = _GuardedChannel(
            channel, self.breaker, address=config.address, probe=self._probe, clock=clock
        )
        if registry is not None:
            gauge = Gauge(
                "gomaproxy_backend_circuit_open",
                "1 while the circuit breaker of the gRPC backend is open and calls fail "
                "at once, 0 while calls go to the server.",
                registry=registry,
            )
            gauge.set_function(lambda: 1.0 if self.breaker.is_open else 0.0)
        # Capabilities by instance name, read once each.
        self._capabilities: dict[str, re_pb2.ServerCapabilities] = {}
        self.address = config.address
        # Read by the proxy: whether requests may run at the filesystem root, and whether
        # the InputRootAbsolutePath platform property may be sent.
        self.supports_absolute_input_root = config.absolute_root
        self.sends_input_root_absolute_path = config.input_root_absolute_path_property

    async def get_capabilities(
        self, request: re_pb2.GetCapabilitiesRequest
    ) -> re_pb2.ServerCapabilities:
        """Return the server's capabilities, asking the server once per instance name."""
        self._with_instance(request)
        cached = self._capabilities.get(request.instance_name)
        if cached is None:
            cached = await self._unary(m.GET_CAPABILITIES, request)
            self._capabilities[request.instance_name] = cached
        return cached

    async def get_action_result(
        self, request: re_pb2.GetActionResultRequest
    ) -> re_pb2.ActionResult:
        """Return a cached result; a miss raises ``BackendError(NOT_FOUND)``."""
        return await self._unary(m.GET_ACTION_RESULT, self._with_instance(request))

    async def find_missing_blobs(
        self, request: re_pb2.FindMissingBlobsRequest
    ) -> re_pb2.FindMissingBlobsResponse:
        return await self._unary(m.FIND_MISSING_BLOBS, self._with_instance(request))

    async def batch_update_blobs(
        self, request: re_pb2.BatchUpdateBlobsRequest
    ) -> re_pb2.BatchUpdateBlobsResponse:
        """Upload a batch; a "too large" RESOURCE_EXHAUSTED is raised without retrying."""
        return await self._unary(m.BATCH_UPDATE_BLOBS, self._with_instance(request))

    async def batch_read_blobs(
        self, request: re_pb2.BatchReadBlobsRequest
    ) -> re_pb2.BatchReadBlobsResponse:
        return await self._unary(m.BATCH_READ_BLOBS, self._with_instance(request))

    async def read(self, request: bs_pb2.ReadRequest) -> AsyncIterator[bs_pb2.ReadResponse]:
        """Yield a blob's bytes, resuming at the offset reached when the stream breaks."""
        started = anyio.current_time()
        errors: list[BackendError] = []
        received = 0
        while True:
            attempt = resumed_read_request(request, received)
            try:
                responses = self._channel.server_stream(
                    m.READ,
                    attempt,
                    timeout_s=self._timeouts[m.READ.path],
                    metadata=self._metadata(),
                )
                async with aclosing(responses):
                    async for response in responses:
                        received += len(response.data)
                        yield response
                return
            except BackendError as exc:
                errors.append(exc)
            await anyio.sleep(self._retry_delay(m.READ, errors, started))

    async def write(self, requests: AsyncIterable[bs_pb2.WriteRequest]) -> bs_pb2.WriteResponse:
        """Upload a blob, resuming a broken write at the size QueryWriteStatus returns.

        When the server knows nothing of the broken upload, the blob is sent again from
        offset 0 under a new upload id.
        """
        upload = await collect_upload(requests)
        started = anyio.current_time()
        errors: list[BackendError] = []
        resource_name, offset = upload.resource_name, 0
        while True:
            try:
                return await self._channel.client_stream(
                    m.WRITE,
                    upload.requests(resource_name, offset),
                    timeout_s=self._timeouts[m.WRITE.path],
                    metadata=self._metadata(),
                )
            except BackendError as exc:
                errors.append(exc)
            delay = self._retry_delay(m.WRITE, errors, started)

            status = await self._upload_status(resource_name)
            if status is not None and status.complete:
                return bs_pb2.WriteResponse(committed_size=status.committed_size)
            if status is not None and 0 < status.committed_size < len(upload.data):
                offset = status.committed_size
            else:
                resource_name, offset = fresh_upload_resource(resource_name), 0
            log.info("grpc_write_resumed", resource_name=resource_name, offset=offset)
            await anyio.sleep(delay)

    async def query_write_status(
        self, request: bs_pb2.QueryWriteStatusRequest
    ) -> bs_pb2.QueryWriteStatusResponse:
        return await self._unary(m.QUERY_WRITE_STATUS, request)

    def execute(self, request: re_pb2.ExecuteRequest) -> AsyncIterator[lro_pb2.Operation]:
        """Open an Execute stream; breaks are left to the caller, which resumes them."""
        return self._channel.server_stream(
            m.EXECUTE,
            self._with_instance(request),
            timeout_s=self._timeouts[m.EXECUTE.path],
            metadata=self._metadata(),
        )

    def wait_execution(
        self, request: re_pb2.WaitExecutionRequest
    ) -> AsyncIterator[lro_pb2.Operation]:
        return self._channel.server_stream(
            m.WAIT_EXECUTION,
            request,
            timeout_s=self._timeouts[m.WAIT_EXECUTION.path],
            metadata=self._metadata(),
        )

    async def aclose(self) -> None:
        """Close the channel; the loop closes when ``open_grpc_backend`` exits."""
        await self._channel.close()

    def availability(self) -> str:
        """Return ``unavailable`` while the circuit breaker is open, else ``available``."""
        return "unavailable" if self.breaker.is_open else "available"

    async def _probe(self, channel: bridge.Channel) -> None:
        """Request the server's capabilities once, without retries, to test whether it responds."""
        request = self._with_instance(re_pb2.GetCapabilitiesRequest())
        await channel.unary(
            m.GET_CAPABILITIES,
            request,
            timeout_s=self._timeouts[m.GET_CAPABILITIES.path],
            metadata=self._metadata(),
        )

    def _with_instance(self, request: _InstanceRequestT) -> _InstanceRequestT:
        """Fill in the configured instance name when ``request`` names none."""
        if not request.instance_name and self._instance:
            request.instance_name = self._instance
        return request

    def _metadata(self) -> bridge.Metadata:
        ids = current_requester()
        serialized = request_metadata(ids, __version__).SerializeToString()
        return ((REQUEST_METADATA_KEY, serialized), *self._headers)

    async def _unary(
        self, method: m.RpcMethod[_RequestT, ResponseT], request: _RequestT
    ) -> ResponseT:
        return await self._retrying(
            method,
            lambda: self._channel.unary(
                method, request, timeout_s=self._timeouts[method.path], metadata=self._metadata()
            ),
        )

    async def _retrying(
        self, method: m.RpcMethod[Message, Message], call: Callable[[], Awaitable[ResponseT]]
    ) -> ResponseT:
        started = anyio.current_time()
        errors: list[BackendError] = []
        while True:
            try:
                return await call()
            except BackendError as exc:
                errors.append(exc)
            await anyio.sleep(self._retry_delay(method, errors, started))

    def _retry_delay(
        self, method: m.RpcMethod[Message, Message], errors: list[BackendError], started: float
    ) -> float:
        """Return the wait before the next attempt, or raise when no attempt is left."""
        error = errors[-1]
        if isinstance(error, CircuitOpenError):
            raise error
        now = anyio.current_time()
        remaining = min(started + self._policy.budget_s, anyio.current_effective_deadline()) - now
        delay = next_delay(error, len(errors) - 1, remaining, self._policy)
        if delay is None:
            if len(errors) == 1:
                raise error
            raise summarize_attempts(errors, now - started) from error

        log.info(
            "grpc_call_retry",
            rpc=method.name,
            attempt=len(errors),
            code=error.code.name,
            error=error.message,
            delay_s=round(delay, 3),
        )
        return delay

    async def _upload_status(self, resource_name: str) -> bs_pb2.QueryWriteStatusResponse | None:
        """Ask once how much of an upload arrived; None when the server does not report it."""
        request = bs_pb2.QueryWriteStatusRequest(resource_name=resource_name)
        try:
            return await self._channel.unary(
                m.QUERY_WRITE_STATUS,
                request,
                timeout_s=self._timeouts[m.QUERY_WRITE_STATUS.path],
                metadata=self._metadata(),
            )
        except BackendError as exc:
            log.debug("grpc_write_status_unknown", resource_name=resource_name, code=exc.code.name)
            return None


@final
class _GuardedChannel:
    """A channel whose every call first passes the circuit breaker and then reports to it.

    Calls the breaker rejects raise ``CircuitOpenError`` without contacting the server.
    When a probe is due, the call that finds it due first sends the probe, GetCapabilities,
    and goes on only if the server responds to it.
    """

    def __init__(
        self,
        channel: bridge.Channel,
        breaker: CircuitBreaker,
        *,
        address: str,
        probe: Callable[[bridge.Channel], Awaitable[None]],
        clock: Callable[[], float],
    ) -> None:
        self._channel = channel
        self._breaker = breaker
        self._address = address
        self._probe = probe
        self._clock = clock

    async def unary(
        self,
        method: m.RpcMethod[_RequestT, ResponseT],
        request: _RequestT,
        *,
        timeout_s: float | None,
        metadata: bridge.Metadata = (),
    ) -> ResponseT:
        await self._admit(method)
        try:
            response = await self._channel.unary(
                method, request, timeout_s=timeout_s, metadata=metadata
            )
        except BackendError as exc:
            self._record(ok=not is_transport_failure(exc))
            raise
        self._record(ok=True)
        return response

    async def server_stream(
        self,
        method: m.RpcMethod[_RequestT, ResponseT],
        request: _RequestT,
        *,
        timeout_s: float | None,
        metadata: bridge.Metadata = (),
    ) -> AsyncIterator[ResponseT]:
        """Yield the responses; the first one shows that the server was reached."""
        await self._admit(method)
        responses = self._channel.server_stream(
            method, request, timeout_s=timeout_s, metadata=metadata
        )
        reached = False
        try:
            async with aclosing(responses):
                async for response in responses:
                    if not reached:
                        reached = True
                        self._record(ok=True)
                    yield response
        except BackendError as exc:
            self._record(ok=not is_transport_failure(exc))
            raise
        if not reached:
            self._record(ok=True)

    async def client_stream(
        self,
        method: m.RpcMethod[_RequestT, ResponseT],
        requests: AsyncIterable[_RequestT],
        *,
        timeout_s: float | None,
        metadata: bridge.Metadata = (),
    ) -> ResponseT:
        await self._admit(method)
        try:
            response = await self._channel.client_stream(
                method, requests, timeout_s=timeout_s, metadata=metadata
            )
        except BackendError as exc:
            self._record(ok=not is_transport_failure(exc))
            raise
        self._record(ok=True)
        return response

    async def close(self) -> None:
        await self._channel.close()

    async def _admit(self, method: m.RpcMethod[Message, Message]) -> None:
        """Return when ``method`` may be called; raise ``CircuitOpenError`` when it may not."""
        decision = self._breaker.before_call(self._clock())
        if decision is Decision.CALL:
            return
        if decision is Decision.REJECT:
            raise self._open_error(method)

        try:
            await self._probe(self._channel)
        except BackendError as exc:
            ok = not is_transport_failure(exc)
            self._record(ok=ok, probe=True)
            if not ok:
                log.info("backend_probe_failed", address=self._address, error=str(exc))
                raise self._open_error(method) from exc
        except BaseException:
            # Cancelled or failed unexpectedly: the next call may probe instead.
            self._breaker.abandon_probe()
            raise
        else:
            self._record(ok=True, probe=True)

    def _record(self, *, ok: bool, probe: bool = False) -> None:
        opened_at = self._breaker.opened_at
        now = self._clock()
        transition = self._breaker.record(now, ok, probe=probe)
        if transition is Transition.OPENED:
            log.warning(
                "backend_circuit_opened",
                address=self._address,
                failures=self._breaker.failure_threshold,
                window_s=self._breaker.window_s,
                probe_interval_s=self._breaker.probe_interval_s,
            )
        elif transition is Transition.CLOSED and opened_at is not None:
            log.info(
                "backend_circuit_closed",
                address=self._address,
                open_s=round(now - opened_at, 3),
                by_probe=probe,
            )

    def _open_error(self, method: m.RpcMethod[Message, Message]) -> CircuitOpenError:
        now = self._clock()
        opened_at = self._breaker.opened_at
        open_for_s = 0.0 if opened_at is None else now - opened_at
        since = time.strftime("%H:%M:%S UTC", time.gmtime(time.time() - open_for_s))
        if self._breaker.probe_in_flight:
            probe = "a probe is in progress"
        else:
            probe = f"next probe in {self._breaker.next_probe_in(now):.1f} s"
        return CircuitOpenError(
            f"{method.name}: backend {self._address} is unavailable (circuit open since "
            f"{since}, {probe}); goma clients compile locally meanwhile"
        )
