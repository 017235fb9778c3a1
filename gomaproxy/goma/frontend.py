"""ASGI application that serves the goma HTTP protocol.

goma clients POST serialized proto2 messages, optionally gzip or deflate compressed, to
``<prefix>/e`` (Exec), ``<prefix>/s`` (StoreFile), ``<prefix>/l`` (LookupFile),
``<prefix>/sl`` (SaveLog, accepted and dropped) and ``<prefix>/ping``.  Each request is
read with a size limit, decoded, parsed, passed to the exec or file service under a
deadline.  A success sends 200 with the serialized response, and a failure sends an
HTTP error status with a short plain-text body.

Every 200 response carries ``Accept-Encoding: gzip, deflate``.  goma clients read that
response header to choose the compression of their next request, and they stop
compressing when it is missing.  ``/healthz`` and ``/metrics`` sit outside the prefix.

The application speaks plain ASGI 3 and does not depend on a particular server.
"""

from __future__ import annotations

import time
import uuid
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, Protocol, TypeVar

import anyio
import anyio.to_thread
import prometheus_client
import structlog
from google.protobuf.message import DecodeError
from google.protobuf.message import Message as ProtoMessage
from prometheus_client import CollectorRegistry, Counter, Histogram

from gomaproxy.errors import Code, ConfigError, GomaProxyError, RequestBodyError, http_status_for
from gomaproxy.goma._asgi import (
    ASGIApp,
    ClientDisconnected,
    Exchange,
    Receive,
    Response,
    Scope,
    Send,
    serve_lifespan,
    text_response,
)
from gomaproxy.goma.codec import (
    ADVERTISED_ACCEPT_ENCODING,
    IDENTITY,
    choose_response_encoding,
    decode_request_body,
    encode_response_body,
)
from gomaproxy.protos import goma_data_pb2 as goma_pb2

__all__ = ["ExecService", "FileServiceLike", "FrontendLimits", "make_app"]

log = structlog.get_logger(__name__)

_T = TypeVar("_T")

_MIB = 1024 * 1024

PROTOBUF_CONTENT_TYPE = b"binary/x-protocol-buffer"

# Bodies at least this large are decoded, parsed, serialized and compressed in a worker
# thread.  zlib releases the GIL while it works, so other connections keep being served.
_THREAD_OFFLOAD_MIN_BYTES = 256 * 1024

# At most this many missing required fields are listed in a 400 body.
_MAX_LISTED_MISSING_FIELDS = 10

# Seconds; from a cached LookupFile to an Exec near its 600 s default deadline.
_DURATION_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    120.0,
    300.0,
    600.0,
)


class ExecService(Protocol):
    """Runs goma Exec requests."""

    async def exec(self, request: goma_pb2.ExecReq, *, request_id: str) -> goma_pb2.ExecResp: ...


class FileServiceLike(Protocol):
    """Stores and looks up goma FileBlobs."""

    async def store_file(self, request: goma_pb2.StoreFileReq) -> goma_pb2.StoreFileResp: ...

    async def lookup_file(self, request: goma_pb2.LookupFileReq) -> goma_pb2.LookupFileResp: ...


@dataclass(frozen=True)
class FrontendLimits:
    """Size limits and deadlines applied to every request."""

    # The request body as received, before decompression.
    max_body_bytes: int = 64 * _MIB
    # The decoded body of an Exec request.
    max_decoded_bytes: int = 64 * _MIB
    # The decoded body of a StoreFile, LookupFile or SaveLog request.
    max_file_decoded_bytes: int = 16 * _MIB
    exec_timeout_s: float = 600.0
    file_timeout_s: float = 60.0

    def __post_init__(self) -> None:
        names = (
            "max_body_bytes",
            "max_decoded_bytes",
            "max_file_decoded_bytes",
            "exec_timeout_s",
            "file_timeout_s",
        )
        for name in names:
            value = getattr(self, name)
            if value <= 0:
                raise ConfigError(f"FrontendLimits.{name} must be positive, got {value}")


def make_app(
    exec_service: ExecService,
    file_service: FileServiceLike,
    *,
    prefix: str = "/cxx-compiler-service",
    limits: FrontendLimits = FrontendLimits(),
    metrics_registry: CollectorRegistry | None = None,
    backend_availability: Callable[[], str] | None = None,
) -> ASGIApp:
    """Build the ASGI application of the goma frontend.

    Args:
        exec_service: handles ``<prefix>/e``.
        file_service: handles ``<prefix>/s`` and ``<prefix>/l``.
        prefix: URL path prefix of the goma routes, ``/cxx-compiler-service`` by default;
            empty or starting with ``/``, and a trailing slash is ignored.
        limits: body size limits and per-RPC deadlines.
        metrics_registry: where the HTTP metrics are registered and which ``/metrics``
            exposes; the process-wide default registry when None.
        backend_availability: returns the backend state, such as ``unavailable``, that
            ``/healthz`` adds as a ``backend:`` line; None leaves the line out.

    Raises:
        ConfigError: for a non-empty prefix that does not start with ``/``.

    Returns:
        An ASGI 3 application that also handles lifespan events.
    """
    if prefix and not prefix.startswith("/"):
        raise ConfigError(f"URL path prefix {prefix!r} must start with '/' or be empty")

    registry = metrics_registry if metrics_registry is not None else prometheus_client.REGISTRY
    return _GomaFrontend(
        exec_service, file_service, prefix.rstrip("/"), limits, registry, backend_availability
    )


class _HttpMetrics:
    """Request counter and latency histogram of the frontend."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "gomaproxy_http_requests_total",
            "HTTP requests by route and response status.",
            ["route", "status"],
            registry=registry,
        )
        self.duration = Histogram(
            "gomaproxy_http_request_duration_seconds",
            "Time from the start of an HTTP request to the end of its response, in seconds.",
            ["route"],
            buckets=_DURATION_BUCKETS,
            registry=registry,
        )


# One metrics object per registry, so that several apps built on the same registry (the
# default one in particular) do not register the same metric names twice.
_METRICS_BY_REGISTRY: weakref.WeakKeyDictionary[CollectorRegistry, _HttpMetrics] = (
    weakref.WeakKeyDictionary()
)


def _metrics_for(registry: CollectorRegistry) -> _HttpMetrics:
    metrics = _METRICS_BY_REGISTRY.get(registry)
    if metrics is None:
        metrics = _HttpMetrics(registry)
        _METRICS_BY_REGISTRY[registry] = metrics
    return metrics


_Handler = Callable[[Exchange, str], Awaitable[Response]]


@dataclass(frozen=True)
class _Route:
    """One path of the frontend."""

    # Value of the ``rpc`` log field and of the ``route`` metric label.
    name: str
    methods: frozenset[str]
    handler: _Handler


@dataclass(frozen=True)
class _RpcSpec:
    """Message type, service call, deadline and decoded size limit of one goma RPC."""

    request_type: type[ProtoMessage]
    call: Callable[[Any, str], Awaitable[ProtoMessage]]
    timeout_s: float
    max_decoded_bytes: int

    @property
    def message_name(self) -> str:
        return self.request_type.DESCRIPTOR.name


_NOT_FOUND_ROUTE = "not_found"
_POST = frozenset({"POST"})
_GET = frozenset({"GET", "HEAD"})


class _GomaFrontend:
    """The ASGI callable built by ``make_app``."""

    def __init__(
        self,
        exec_service: ExecService,
        file_service: FileServiceLike,
        prefix: str,
        limits: FrontendLimits,
        registry: CollectorRegistry,
        backend_availability: Callable[[], str] | None = None,
    ) -> None:
        self._exec_service = exec_service
        self._backend_availability = backend_availability
        self._file_service = file_service
        self._limits = limits
        self._registry = registry
        self._metrics = _metrics_for(registry)
        self._routes = self._build_routes(prefix)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await serve_lifespan(receive, send)
            return
        if scope["type"] != "http":
            return

        await self._serve_request(Exchange(scope, receive, send))

    def _build_routes(self, prefix: str) -> dict[str, _Route]:
        limits = self._limits
        exec_rpc = _RpcSpec(
            goma_pb2.ExecReq, self._call_exec, limits.exec_timeout_s, limits.max_decoded_bytes
        )
        store_file_rpc = _RpcSpec(
            goma_pb2.StoreFileReq,
            self._call_store_file,
            limits.file_timeout_s,
            limits.max_file_decoded_bytes,
        )
        lookup_file_rpc = _RpcSpec(
            goma_pb2.LookupFileReq,
            self._call_lookup_file,
            limits.file_timeout_s,
            limits.max_file_decoded_bytes,
        )
        save_log_rpc = _RpcSpec(
            goma_pb2.SaveLogReq,
            _drop_save_log,
            limits.file_timeout_s,
            limits.max_file_decoded_bytes,
        )

        return {
            prefix + "/e": _Route("exec", _POST, partial(self._serve_rpc, exec_rpc)),
            prefix + "/s": _Route("store_file", _POST, partial(self._serve_rpc, store_file_rpc)),
            prefix + "/l": _Route("lookup_file", _POST, partial(self._serve_rpc, lookup_file_rpc)),
            prefix + "/sl": _Route("save_log", _POST, partial(self._serve_rpc, save_log_rpc)),
            prefix + "/ping": _Route("ping", _POST, self._serve_ping),
            "/healthz": _Route("healthz", _GET, self._serve_healthz),
            "/metrics": _Route("metrics", _GET, self._serve_metrics),
        }

    async def _serve_request(self, exchange: Exchange) -> None:
        route = self._routes.get(exchange.path)
        route_name = route.name if route is not None else _NOT_FOUND_ROUTE
        request_id = uuid.uuid4().hex[:16]
        started = time.perf_counter()

        with structlog.contextvars.bound_contextvars(
            request_id=request_id, peer=exchange.peer(), rpc=route_name
        ):
            try:
                await self._dispatch(route, exchange, request_id)
            except ClientDisconnected:
                # Nothing can be sent any more; the final log line records the disconnect.
                pass
            finally:
                self._record(exchange, route_name, time.perf_counter() - started)

    async def _dispatch(self, route: _Route | None, exchange: Exchange, request_id: str) -> None:
        if route is None:
            await exchange.send_response(text_response(404, f"not found: {exchange.path}"))
            return
        if exchange.method not in route.methods:
            allow = ", ".join(sorted(route.methods)).encode()
            response = text_response(
                405,
                f"method {exchange.method} not allowed on {exchange.path}",
                [(b"allow", allow)],
            )
            await exchange.send_response(response)
            return

        try:
            response = await route.handler(exchange, request_id)
        except ClientDisconnected:
            raise
        except Exception as exc:  # noqa: BLE001 - the error boundary; unknown errors are logged there
            response = _error_response(exc, exchange, request_id)
        await exchange.send_response(response)

    def _record(self, exchange: Exchange, route_name: str, duration_s: float) -> None:
        # 499 is the de facto status for a request whose client left before the response.
        status = exchange.status if exchange.status is not None else 499
        self._metrics.requests.labels(route=route_name, status=str(status)).inc()
        self._metrics.duration.labels(route=route_name).observe(duration_s)

        emit = log.warning if status >= 500 else log.info
        emit(
            "http_request_finished",
            method=exchange.method,
            path=exchange.path,
            status=status,
            duration_ms=round(duration_s * 1000, 3),
            body_bytes_in=exchange.body_bytes_in,
            body_bytes_out=exchange.body_bytes_out,
            client_disconnected=exchange.client_disconnected,
            error=exchange.error,
        )

    async def _serve_ping(self, exchange: Exchange, request_id: str) -> Response:
        await exchange.read_body(self._limits.max_body_bytes)
        headers = [(b"accept-encoding", ADVERTISED_ACCEPT_ENCODING.encode())]
        return text_response(200, "ok", headers)

    async def _serve_healthz(self, exchange: Exchange, request_id: str) -> Response:
        """Return 200 while the proxy runs, even while its backend is unavailable."""
        if self._backend_availability is None:
            return text_response(200, "ok")
        return text_response(200, f"ok\nbackend: {self._backend_availability()}")

    async def _serve_metrics(self, exchange: Exchange, request_id: str) -> Response:
        body = prometheus_client.generate_latest(self._registry)
        content_type = prometheus_client.CONTENT_TYPE_LATEST.encode()
        return Response(200, body, [(b"content-type", content_type)])

    async def _serve_rpc(self, spec: _RpcSpec, exchange: Exchange, request_id: str) -> Response:
        body = await exchange.read_body(self._limits.max_body_bytes)
        content_encoding = exchange.header(b"content-encoding")
        request = await _in_worker_if_large(
            len(body), partial(_parse_request, spec, body, content_encoding)
        )

        response = await self._call_with_deadline(spec, exchange, request, request_id)

        encoding = choose_response_encoding(exchange.header(b"accept-encoding"))
        payload = await _in_worker_if_large(
            response.ByteSize(), partial(_encode_response, response, encoding)
        )
        return _protobuf_response(payload, encoding)

    async def _call_with_deadline(
        self, spec: _RpcSpec, exchange: Exchange, request: ProtoMessage, request_id: str
    ) -> ProtoMessage:
        """Run ``spec.call`` until it returns, its deadline passes or the client leaves.

        Raises:
            GomaProxyError: code DEADLINE_EXCEEDED when ``spec.timeout_s`` passes first.
            ClientDisconnected: when the client closes the connection first; the call is
                cancelled.
        """
        with anyio.move_on_after(spec.timeout_s):
            return await _cancel_on_disconnect(exchange, partial(spec.call, request, request_id))
        raise GomaProxyError(
            f"{spec.message_name} did not finish within {spec.timeout_s:g} s",
            code=Code.DEADLINE_EXCEEDED,
        )

    async def _call_exec(self, request: goma_pb2.ExecReq, request_id: str) -> goma_pb2.ExecResp:
        return await self._exec_service.exec(request, request_id=request_id)

    async def _call_store_file(
        self, request: goma_pb2.StoreFileReq, request_id: str
    ) -> goma_pb2.StoreFileResp:
        return await self._file_service.store_file(request)

    async def _call_lookup_file(
        self, request: goma_pb2.LookupFileReq, request_id: str
    ) -> goma_pb2.LookupFileResp:
        return await self._file_service.lookup_file(request)


async def _drop_save_log(request: goma_pb2.SaveLogReq, request_id: str) -> goma_pb2.SaveLogResp:
    """Accept a SaveLog request and drop it, because nothing in gomaproxy reads client logs."""
    return goma_pb2.SaveLogResp()


async def _cancel_on_disconnect(
    exchange: Exchange, call: Callable[[], Awaitable[ProtoMessage]]
) -> ProtoMessage:
    """Await ``call()``, cancelling it when the client closes the connection.

    Raises:
        ClientDisconnected: when the client left before ``call()`` finished.
    """
    result: ProtoMessage | None = None
    failure: Exception | None = None

    async with anyio.create_task_group() as task_group:
        task_group.start_soon(_watch_for_disconnect, exchange, task_group.cancel_scope)
        try:
            result = await call()
        except Exception as exc:  # noqa: BLE001 - raised again below
            # Kept and raised after the task group, which would wrap it in a group.
            failure = exc
        finally:
            task_group.cancel_scope.cancel()

    if exchange.client_disconnected:
        raise ClientDisconnected
    if failure is not None:
        raise failure
    assert result is not None
    return result


async def _watch_for_disconnect(exchange: Exchange, scope: anyio.CancelScope) -> None:
    await exchange.wait_for_disconnect()
    log.info("client_disconnected_during_call")
    scope.cancel()


async def _in_worker_if_large(size: int, work: Callable[[], _T]) -> _T:
    if size < _THREAD_OFFLOAD_MIN_BYTES:
        return work()
    return await anyio.to_thread.run_sync(work)


def _parse_request(spec: _RpcSpec, body: bytes, content_encoding: str | None) -> ProtoMessage:
    """Decode and parse a request body into ``spec.request_type``.

    Raises:
        RequestBodyError: for a body that does not decode, does not parse, or misses
            required fields.
    """
    decoded = decode_request_body(body, content_encoding, max_decoded_bytes=spec.max_decoded_bytes)
    name = spec.message_name

    try:
        request = spec.request_type.FromString(decoded)
    except DecodeError:
        raise RequestBodyError(
            f"invalid {name}: the body is not a serialized {name} message"
        ) from None

    missing = request.FindInitializationErrors()
    if missing:
        listed = ", ".join(missing[:_MAX_LISTED_MISSING_FIELDS])
        raise RequestBodyError(f"invalid {name}: missing required fields: {listed}")
    return request


def _encode_response(response: ProtoMessage, encoding: str) -> bytes:
    # SerializeToString raises EncodeError when a required field is unset, which is a bug
    # in the service and ends as a 500.
    return encode_response_body(response.SerializeToString(), encoding)


def _protobuf_response(payload: bytes, encoding: str) -> Response:
    headers = [
        (b"content-type", PROTOBUF_CONTENT_TYPE),
        (b"accept-encoding", ADVERTISED_ACCEPT_ENCODING.encode()),
    ]
    if encoding != IDENTITY:
        headers.append((b"content-encoding", encoding.encode()))
    return Response(200, payload, headers)


def _error_response(exc: Exception, exchange: Exchange, request_id: str) -> Response:
    """Map a handler failure to its HTTP response; unexpected errors are logged here."""
    if isinstance(exc, RequestBodyError):
        exchange.error = exc.message
        return text_response(exc.http_status, exc.message)
    if isinstance(exc, GomaProxyError):
        exchange.error = f"{exc.code.name}: {exc.message}"
        return text_response(http_status_for(exc.code), exc.message)

    log.exception("request_handler_failed")
    exchange.error = f"unexpected {type(exc).__name__}"
    return text_response(500, f"internal server error (request id {request_id})")
