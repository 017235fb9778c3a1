"""ASGI 3 plumbing for the goma HTTP frontend: types, body reading and response sending.

Nothing here depends on goma messages.  ``Exchange`` wraps one HTTP request and keeps
the numbers that the frontend logs and counts when the request ends.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from gomaproxy.errors import RequestBodyError

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

Headers = Sequence[tuple[bytes, bytes]]

TEXT_PLAIN = b"text/plain; charset=utf-8"


class ClientDisconnected(Exception):
    """The client closed the connection before the response was sent."""


@dataclass(frozen=True)
class Response:
    """A complete HTTP response; ``Content-Length`` is added when it is sent."""

    status: int
    body: bytes
    headers: Headers = ()


def text_response(status: int, text: str, headers: Headers = ()) -> Response:
    """Build a plain-text response whose body is ``text`` plus a newline."""
    body = (text + "\n").encode("utf-8")
    return Response(status, body, [(b"content-type", TEXT_PLAIN), *headers])


@dataclass
class Exchange:
    """One HTTP request and its response, with the counts logged when the request ends."""

    scope: Scope
    receive: Receive
    send: Send
    # Body bytes as they crossed the wire, before decoding and after encoding.
    body_bytes_in: int = 0
    body_bytes_out: int = 0
    # None until the response has started.
    status: int | None = None
    body_complete: bool = False
    client_disconnected: bool = False
    # Message of the error that produced a non-200 response, for the final log line.
    error: str | None = field(default=None)

    @property
    def method(self) -> str:
        return str(self.scope["method"]).upper()

    @property
    def path(self) -> str:
        return str(self.scope["path"])

    def header(self, name: bytes) -> str | None:
        """Return the request header ``name`` (lower case), repeated values joined by commas."""
        values = [value for key, value in self.scope["headers"] if key.lower() == name]
        if not values:
            return None
        return b", ".join(values).decode("latin-1")

    def peer(self) -> str:
        """Return the client address as ``host:port``, or ``unknown`` for a Unix socket."""
        client = self.scope.get("client")
        if not client:
            return "unknown"
        host, port = client[0], client[1]
        if ":" in host:
            return f"[{host}]:{port}"
        return f"{host}:{port}"

    async def read_body(self, max_bytes: int) -> bytes:
        """Read the whole request body, rejecting it as soon as it exceeds ``max_bytes``.

        Raises:
            RequestBodyError: with HTTP status 413 when the declared or received body is
                larger than ``max_bytes``.
            ClientDisconnected: when the client goes away before the body ends.
        """
        declared = self._declared_length()
        if declared is not None and declared > max_bytes:
            raise _body_too_large(declared, max_bytes)

        body = bytearray()
        while True:
            message = await self.receive()
            if message["type"] == "http.disconnect":
                self.client_disconnected = True
                raise ClientDisconnected

            chunk = message.get("body", b"")
            self.body_bytes_in += len(chunk)
            if self.body_bytes_in > max_bytes:
                raise _body_too_large(self.body_bytes_in, max_bytes)
            body += chunk

            if not message.get("more_body", False):
                self.body_complete = True
                return bytes(body)

    async def wait_for_disconnect(self) -> None:
        """Wait until the server reports that the client closed the connection."""
        while True:
            message = await self.receive()
            if message["type"] == "http.disconnect":
                self.client_disconnected = True
                return

    async def send_response(self, response: Response) -> None:
        """Send ``response`` in one body message.

        A request whose body was not read to the end gets ``Connection: close``, because
        the rest of that body would otherwise be read as the next request.
        """
        headers = [*response.headers, (b"content-length", str(len(response.body)).encode())]
        if self._has_unread_body():
            headers.append((b"connection", b"close"))

        self.status = response.status
        await self.send(
            {"type": "http.response.start", "status": response.status, "headers": headers}
        )
        await self.send({"type": "http.response.body", "body": response.body})
        self.body_bytes_out = len(response.body)

    def _declared_length(self) -> int | None:
        value = self.header(b"content-length")
        if value is None:
            return None
        try:
            return int(value)
        except ValueError:
            # h11 rejects a malformed Content-Length before the request reaches the app.
            return None

    def _has_unread_body(self) -> bool:
        if self.body_complete:
            return False
        if self.header(b"transfer-encoding") is not None:
            return True
        return (self._declared_length() or 0) > 0


def _body_too_large(size: int, max_bytes: int) -> RequestBodyError:
    return RequestBodyError(
        f"request body of {size} bytes exceeds the limit of {max_bytes} bytes",
        http_status=413,
    )


async def serve_lifespan(receive: Receive, send: Send) -> None:
    """Acknowledge the server's lifespan startup and shutdown events.

    The frontend has no state to set up or release, so both succeed at once.
    """
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
