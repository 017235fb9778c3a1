"""The one bridge between trio and grpclib, which runs only on asyncio.

This is the only module of gomaproxy, apart from the generated ``protos``, that imports
asyncio, trio_asyncio or grpclib.  It offers three things to trio code:

- ``open_channel``: a client ``Channel`` with ``unary``, ``server_stream``,
  ``client_stream`` and ``close``;
- ``serve``: a gRPC server whose handlers are trio functions;
- ``call_metadata``: the metadata of the call a server handler is serving.

A bridge built on threads could replace this module behind the same names, for Python
versions where trio_asyncio does not import.

Theory of operation.  Each channel or server owns a trio-asyncio loop, opened in the
task that opens the channel or runs the server, and its grpclib objects are created
inside that loop.  Every grpclib step (send a message, receive one, finish the call) runs
as one asyncio task through ``loop.run_aio_coroutine``.  So cancelling the trio caller
cancels exactly the step in progress, and a stream left unfinished is reset in a
shielded cleanup with a short deadline.  Server handlers run as one trio task per call,
started from the asyncio handler with ``loop.trio_as_future``, so trio cancel scopes
inside a handler never span two tasks.

Errors are translated in one place, ``_translated``: grpclib's ``GRPCError`` keeps its
status code, message and packed ``google.rpc.Status`` details, a reset stream or a
socket error becomes UNAVAILABLE, and a grpclib deadline becomes DEADLINE_EXCEEDED.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import socket
import ssl
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, final

import grpclib.client
import grpclib.const
import grpclib.exceptions
import grpclib.server
import grpclib.utils
import h2.exceptions
import structlog
import trio
import trio_asyncio
from google.protobuf import any_pb2
from google.rpc import status_pb2
from grpclib.encoding.base import StatusDetailsCodecBase

from gomaproxy.errors import BackendError, Code
from gomaproxy.remote.methods import RequestT, ResponseT, RpcKind, RpcMethod

log = structlog.get_logger(__name__)

# NOTE: grpclib 0.4.9 stores asyncio.current_task in grpclib.utils._current_task on
# import, and calls it in every client stream operation and around every server handler.
# If grpclib is imported before trio_asyncio replaces asyncio.current_task, it keeps the
# original.  From Python 3.12 the original is implemented in C and reads asyncio's own
# running loop, which trio-asyncio does not set, so every call fails with "RuntimeError:
# no running event loop".  Because any module, such as a test, may import grpclib first,
# this line rebinds the stored function to trio_asyncio's replacement.
# https://github.com/python-trio/trio-asyncio/issues/83
grpclib.utils._current_task = asyncio.current_task

# Metadata pairs.  Values of keys ending in "-bin" are bytes, and all others ASCII text.
Metadata = Sequence[tuple[str, str | bytes]]

# Time limit of cleanup that must run even while the caller is being cancelled, such as
# resetting a stream, closing a channel or stopping a server.
CLEANUP_TIMEOUT_S = 5.0


_CARDINALITY = {
    RpcKind.UNARY: grpclib.const.Cardinality.UNARY_UNARY,
    RpcKind.SERVER_STREAM: grpclib.const.Cardinality.UNARY_STREAM,
    RpcKind.CLIENT_STREAM: grpclib.const.Cardinality.STREAM_UNARY,
}


@dataclass(frozen=True)
class ServerHandler:
    """A trio function that serves one method.

    By kind, ``function`` is ``async (request) -> response`` (UNARY),
    ``(request) -> AsyncIterator[response]`` (SERVER_STREAM) or
    ``async (AsyncIterator[request]) -> response`` (CLIENT_STREAM).  It raises
    ``BackendError`` to end the call with that status.
    """

    method: RpcMethod[Any, Any]
    kind: RpcKind
    function: Callable[..., Any]


class _StatusAnyCodec(StatusDetailsCodecBase):
    """Carries ``google.rpc.Status`` details as packed ``Any`` messages, undecoded."""

    def encode(self, status: grpclib.const.Status, message: str | None, details: Any) -> bytes:
        packed = [detail for detail in details or () if isinstance(detail, any_pb2.Any)]
        proto = status_pb2.Status(code=status.value, message=message or "", details=packed)
        return proto.SerializeToString()

    def decode(self, status: grpclib.const.Status, message: str | None, data: bytes) -> Any:
        return tuple(status_pb2.Status.FromString(data).details)


# Client side.


@contextlib.asynccontextmanager
async def open_channel(
    host: str, port: int, *, ssl_context: ssl.SSLContext | None = None
) -> AsyncIterator[Channel]:
    """Open a channel to ``host:port``, which connects on the first call.

    Args:
        host: name or address of the server.
        port: TCP port.
        ssl_context: TLS settings for grpcs, or None for plaintext HTTP/2.

    The channel and its loop belong to the calling task and are closed on exit.
    """
    async with trio_asyncio.open_loop() as loop:
        grpc_channel = await loop.run_aio_coroutine(_new_channel(host, port, ssl_context))
        channel = Channel(loop, grpc_channel, f"{host}:{port}")
        try:
            yield channel
        finally:
            await channel.close()


async def _new_channel(
    host: str, port: int, ssl_context: ssl.SSLContext | None
) -> grpclib.client.Channel:
    # grpclib binds a channel to the running loop when it is constructed.
    return grpclib.client.Channel(
        host, port, ssl=ssl_context, status_details_codec=_StatusAnyCodec()
    )


@final
class Channel:
    """A gRPC client channel that trio code calls.

    Every call takes ``timeout_s``, the longest the call may take, and ``metadata``.
    The deadline sent to the server is the earlier of ``timeout_s`` and the caller's
    trio deadline.  Failures raise ``BackendError``.
    """

    def __init__(
        self, loop: trio_asyncio.TrioEventLoop, channel: grpclib.client.Channel, target: str
    ) -> None:
        self._loop = loop
        self._channel = channel
        self._closed = False
        self.target = target

    async def unary(
        self,
        method: RpcMethod[RequestT, ResponseT],
        request: RequestT,
        *,
        timeout_s: float | None,
        metadata: Metadata = (),
    ) -> ResponseT:
        """Send one request and return the one response."""
        stream = self._open(method, RpcKind.UNARY, timeout_s, metadata)
        with _translated(method, self.target):
            return await self._loop.run_aio_coroutine(_unary_call(stream, request))

    async def server_stream(
        self,
        method: RpcMethod[RequestT, ResponseT],
        request: RequestT,
        *,
        timeout_s: float | None,
        metadata: Metadata = (),
    ) -> AsyncIterator[ResponseT]:
        """Send one request and yield the responses; close the iterator with ``aclosing``.

        Closing it early resets the stream, which cancels the call on the server.
        """
        stream = self._open(method, RpcKind.SERVER_STREAM, timeout_s, metadata)
        with _translated(method, self.target):
            await self._step(stream.__aenter__())
            failure: BaseException | None = None
            try:
                await self._step(stream.send_message(request, end=True))
                while (response := await self._step(stream.recv_message())) is not None:
                    yield response
            except BaseException as exc:
                failure = exc
                raise
            finally:
                await self._finish(stream, failure)

    async def client_stream(
        self,
        method: RpcMethod[RequestT, ResponseT],
        requests: AsyncIterable[RequestT],
        *,
        timeout_s: float | None,
        metadata: Metadata = (),
    ) -> ResponseT:
        """Send every request of ``requests`` and return the one response.

        A server may send its response before it has read every request, as a
        ByteStream Write of a blob that the server already stores does.  That response
        is then returned.
        """
        stream = self._open(method, RpcKind.CLIENT_STREAM, timeout_s, metadata)
        with _translated(method, self.target):
            await self._step(stream.__aenter__())
            failure: BaseException | None = None
            try:
                return await self._send_all_and_receive(stream, requests)
            except BaseException as exc:
                failure = exc
                raise
            finally:
                await self._finish(stream, failure)

    async def close(self) -> None:
        """Close the connection, so calls in progress fail.  Closing twice is harmless."""
        if self._closed:
            return
        self._closed = True
        with trio.move_on_after(CLEANUP_TIMEOUT_S, shield=True):
            await self._loop.run_aio_coroutine(_close_channel(self._channel))

    def _open(
        self,
        method: RpcMethod[Any, Any],
        kind: RpcKind,
        timeout_s: float | None,
        metadata: Metadata,
    ) -> grpclib.client.Stream[Any, Any]:
        if self._closed:
            raise BackendError(
                Code.UNAVAILABLE, f"{method.name} on {self.target}: the channel is closed"
            )
        return self._channel.request(
            method.path,
            _CARDINALITY[kind],
            method.request_type,
            method.response_type,
            timeout=_call_timeout(timeout_s),
            metadata=list(metadata),
        )

    async def _step(self, coroutine: Any) -> Any:
        return await self._loop.run_aio_coroutine(coroutine)

    async def _send_all_and_receive(
        self, stream: grpclib.client.Stream[Any, Any], requests: AsyncIterable[Any]
    ) -> Any:
        try:
            async for request in requests:
                await self._step(stream.send_message(request))
            await self._step(stream.end())
        except (grpclib.exceptions.StreamTerminatedError, h2.exceptions.StreamClosedError):
            # The server stopped reading, and the response it may have sent is queued.
            pass
        response = await self._step(stream.recv_message())
        if response is None:
            raise grpclib.exceptions.ProtocolError("the server ended the call without a response")
        return response

    async def _finish(
        self, stream: grpclib.client.Stream[Any, Any], failure: BaseException | None
    ) -> None:
        """Read the trailers of a finished call, or reset an unfinished one."""
        if failure is None:
            await self._step(stream.__aexit__(None, None, None))
            return

        # With an exception grpclib only resets and releases the stream, and raises the
        # server's status instead of a StreamTerminatedError when it has one.
        with trio.move_on_after(CLEANUP_TIMEOUT_S, shield=True):
            await self._step(stream.__aexit__(type(failure), failure, failure.__traceback__))


async def _unary_call(stream: grpclib.client.Stream[Any, ResponseT], request: Any) -> ResponseT:
    async with stream:
        await stream.send_message(request, end=True)
        response = await stream.recv_message()
    if response is None:
        raise grpclib.exceptions.ProtocolError("the server ended the call without a response")
    return response


async def _close_channel(channel: grpclib.client.Channel) -> None:
    channel.close()


def _call_timeout(timeout_s: float | None) -> float | None:
    """Return the deadline to send: the earlier of ``timeout_s`` and the trio deadline."""
    candidates = [timeout_s] if timeout_s else []
    caller_deadline = trio.current_effective_deadline()
    if caller_deadline != math.inf:
        candidates.append(caller_deadline - trio.current_time())
    if not candidates:
        return None
    # grpclib rejects a call whose deadline has passed, and trio cancels it anyway.
    return max(min(candidates), 0.001)


@contextlib.contextmanager
def _translated(method: RpcMethod[Any, Any], target: str) -> Iterator[None]:
    """Turn grpclib, socket and asyncio errors of one call into ``BackendError``."""
    try:
        yield
    except grpclib.exceptions.GRPCError as exc:
        code = Code(exc.status.value)
        details = exc.details if isinstance(exc.details, tuple) else ()
        message = exc.message or f"the server returned {code.name} without a message"
        raise BackendError(code, f"{method.name} on {target}: {message}", details=details) from exc
    except grpclib.exceptions.StreamTerminatedError as exc:
        raise BackendError(
            Code.UNAVAILABLE,
            f"{method.name} on {target}: stream terminated ({exc}); the call is retried "
            "or the request fails over to the client",
        ) from exc
    except TimeoutError as exc:
        raise BackendError(
            Code.DEADLINE_EXCEEDED,
            f"{method.name} on {target}: deadline exceeded; raise the backend RPC timeout "
            "if the server is slow",
        ) from exc
    except (OSError, h2.exceptions.ProtocolError) as exc:
        raise BackendError(
            Code.UNAVAILABLE,
            f"{method.name} on {target}: connection failed: {exc}; check that the "
            "server is running and the backend address is right",
        ) from exc
    except grpclib.exceptions.ProtocolError as exc:
        raise BackendError(
            Code.INTERNAL, f"{method.name} on {target}: gRPC protocol error: {exc}"
        ) from exc
    except asyncio.CancelledError as exc:
        # The asyncio side cancelled the call while trio did not, as grpclib does when
        # the connection closes under it.
        raise BackendError(
            Code.UNAVAILABLE, f"{method.name} on {target}: the call was cancelled by the transport"
        ) from exc


# Server side.

_call_metadata: ContextVar[tuple[tuple[str, str | bytes], ...]] = ContextVar(
    "gomaproxy_grpc_call_metadata", default=()
)


def call_metadata() -> tuple[tuple[str, str | bytes], ...]:
    """Return the request metadata of the call the current server handler serves."""
    return _call_metadata.get()


async def serve(
    handlers: Sequence[ServerHandler],
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    ssl_context: ssl.SSLContext | None = None,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``handlers`` over gRPC on ``host:port`` until cancelled.

    Reports the bound port through ``task_status``, and port 0 picks a free one.  On
    cancellation the server stops accepting, cancels the calls in progress and waits
    for them for at most ``CLEANUP_TIMEOUT_S``.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    async with trio_asyncio.open_loop() as loop:
        listener = socket.create_server((host, port), family=family)
        bound_port = listener.getsockname()[1]
        try:
            server = await loop.run_aio_coroutine(
                _start_server(loop, handlers, listener, ssl_context)
            )
        except BaseException:
            listener.close()
            raise

        log.info("grpc_server_started", host=host, port=bound_port, methods=len(handlers))
        task_status.started(bound_port)
        try:
            await trio.sleep_forever()
        finally:
            with trio.move_on_after(CLEANUP_TIMEOUT_S, shield=True):
                await loop.run_aio_coroutine(_stop_server(server))
            log.info("grpc_server_stopped", host=host, port=bound_port)


class _Servable:
    """The mapping from method path to handler that grpclib's Server reads."""

    def __init__(self, mapping: dict[str, grpclib.const.Handler]) -> None:
        self._mapping = mapping

    def __mapping__(self) -> dict[str, grpclib.const.Handler]:
        return self._mapping


async def _start_server(
    loop: trio_asyncio.TrioEventLoop,
    handlers: Sequence[ServerHandler],
    listener: socket.socket,
    ssl_context: ssl.SSLContext | None,
) -> grpclib.server.Server:
    mapping = {
        handler.method.path: grpclib.const.Handler(
            _asyncio_handler(loop, handler),
            _CARDINALITY[handler.kind],
            handler.method.request_type,
            handler.method.response_type,
        )
        for handler in handlers
    }
    server = grpclib.server.Server([_Servable(mapping)], status_details_codec=_StatusAnyCodec())
    await server.start(sock=listener, ssl=ssl_context)
    return server


async def _stop_server(server: grpclib.server.Server) -> None:
    server.close()
    await server.wait_closed()


def _asyncio_handler(
    loop: trio_asyncio.TrioEventLoop, handler: ServerHandler
) -> Callable[[grpclib.server.Stream[Any, Any]], Any]:
    async def handle(stream: grpclib.server.Stream[Any, Any]) -> None:
        # Cancelling this asyncio task, as grpclib does on a client reset or a passed
        # deadline, cancels the trio task.
        await loop.trio_as_future(_serve_call, loop, handler, stream)

    return handle


async def _serve_call(
    loop: trio_asyncio.TrioEventLoop,
    handler: ServerHandler,
    stream: grpclib.server.Stream[Any, Any],
) -> None:
    metadata = tuple(stream.metadata.items()) if stream.metadata else ()
    token = _call_metadata.set(metadata)
    try:
        await _dispatch(loop, handler, stream)
    except BackendError as exc:
        log.debug(
            "grpc_call_failed", rpc=handler.method.name, code=exc.code.name, error=exc.message
        )
        raise grpclib.exceptions.GRPCError(
            grpclib.const.Status(int(exc.code)), exc.message, exc.details
        ) from None
    except grpclib.exceptions.GRPCError:
        raise
    except Exception:
        log.exception("grpc_handler_failed", rpc=handler.method.path)
        raise grpclib.exceptions.GRPCError(
            grpclib.const.Status.INTERNAL,
            f"{handler.method.name} failed unexpectedly; see the server log",
        ) from None
    finally:
        _call_metadata.reset(token)


async def _dispatch(
    loop: trio_asyncio.TrioEventLoop,
    handler: ServerHandler,
    stream: grpclib.server.Stream[Any, Any],
) -> None:
    if handler.kind is RpcKind.CLIENT_STREAM:
        requests = _incoming(loop, stream)
        async with contextlib.aclosing(requests):
            response = await handler.function(requests)
        await loop.run_aio_coroutine(stream.send_message(response))
        return

    request = await loop.run_aio_coroutine(stream.recv_message())
    if handler.kind is RpcKind.UNARY:
        response = await handler.function(request)
        await loop.run_aio_coroutine(stream.send_message(response))
        return

    async with contextlib.aclosing(handler.function(request)) as responses:
        async for response in responses:
            await loop.run_aio_coroutine(stream.send_message(response))


async def _incoming(
    loop: trio_asyncio.TrioEventLoop, stream: grpclib.server.Stream[Any, Any]
) -> AsyncIterator[Any]:
    while (request := await loop.run_aio_coroutine(stream.recv_message())) is not None:
        yield request
