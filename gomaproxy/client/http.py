"""A goma HTTP/1.1 client that sends requests exactly as goma's compiler_proxy does.

Every call is ``POST <prefix><verb>`` with a serialized protobuf body over one kept-alive
connection.  The headers go out in compiler_proxy's order: Host (without port),
User-Agent, Content-Type, Content-Length, then Accept-Encoding while request
compression is on, then Content-Encoding when the body is compressed.

Compression negotiation follows compiler_proxy too.  Request bodies start out gzip.
After every 200 response the client reads the response's ``Accept-Encoding`` header
(a goma-specific use of it) and switches to the first listed encoding it can produce,
gzip or deflate.  A 200 without that header, or one that lists neither, turns request
compression off, and so does a 400 or 415.  A later 200 that lists one turns it on
again.

Only status 200 is success.  The client has no timeouts of its own: callers wrap each
call in ``anyio.fail_after``, with ``EXEC_TIMEOUT_SECONDS`` for ``exec`` and
``FILE_TIMEOUT_SECONDS`` for the others, as compiler_proxy does.
"""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass
from types import TracebackType
from typing import TypeVar

import anyio
import anyio.abc
import h11
import structlog
from google.protobuf.message import DecodeError, Message

from gomaproxy.errors import Code, GomaProxyError
from gomaproxy.goma.codec import (
    DEFLATE,
    GZIP,
    ResponseBodyError,
    decode_response_body,
    encode_request_body,
)
from gomaproxy.protos import goma_data_pb2 as goma_pb2

log = structlog.get_logger(__name__)

DEFAULT_URL_PREFIX = "/cxx-compiler-service"

# compiler_proxy's User-Agent format is "compiler-proxy built by <user> at
# <git hash>@<commit unix time> on <build time>Z " with a trailing space, and goma
# servers parse it for metrics.  This launcher is not built from a goma revision, so
# the revision, commit time and build time are zero placeholders in that format.
USER_AGENT = "compiler-proxy built by gomaproxy at 0@0 on 1970-01-01T00:00:00Z "

CONTENT_TYPE = "binary/x-protocol-buffer"

# The Accept-Encoding value compiler_proxy sends by default while compression is on.
CLIENT_ACCEPT_ENCODING = "gzip"

# The first request encoding, before any response has advertised encodings.
INITIAL_REQUEST_ENCODING = GZIP

# zlib level of request bodies, compiler_proxy's default.
REQUEST_COMPRESSION_LEVEL = 3

# compiler_proxy's default time to wait for an Exec response, and for the other calls.
EXEC_TIMEOUT_SECONDS = 610.0
FILE_TIMEOUT_SECONDS = 900.0

# Largest response body accepted, before and after decompression.  goma servers keep
# Exec responses near 6 MiB and file responses near 12 MiB, so this leaves headroom.
MAX_RESPONSE_BYTES = 256 * 1024 * 1024

# Bytes of a failed response's body that are kept for the error message.
ERROR_BODY_PREFIX_BYTES = 1000

_RECEIVE_SIZE = 64 * 1024

_PING = "/ping"
_EXEC = "/e"
_STORE_FILE = "/s"
_LOOKUP_FILE = "/l"

ResponseT = TypeVar("ResponseT", bound=Message)


# ---------------------------------------------------------------------------------------
# Errors.


class GomaRpcError(GomaProxyError):
    """A goma call that did not return a usable 200 response.

    ``retryable`` is True when compiler_proxy would send the same Exec again.
    """

    code = Code.UNAVAILABLE
    retryable = True


class HttpStatusError(GomaRpcError):
    """A goma call whose response status is not 200.

    ``body_prefix`` contains the first 1000 bytes of the response body, which the proxy
    fills with a plain-text reason.  5xx responses are retryable and every other status is
    not.
    """

    def __init__(self, verb: str, status: int, body_prefix: bytes) -> None:
        reason = body_prefix.decode("utf-8", errors="replace").strip() or "no reason given"
        hint = "; check --server and --url-prefix" if status == 404 else ""
        super().__init__(
            f"goma server returned HTTP {status} for {verb}: {reason}{hint}",
            code=Code.UNAVAILABLE if status >= 500 else Code.FAILED_PRECONDITION,
        )
        self.status = status
        self.body_prefix = body_prefix
        self.retryable = 500 <= status < 600


class TransportError(GomaRpcError):
    """A goma call failed below HTTP status level: connection, framing or body decoding."""


class _ConnectionLost(Exception):
    """A kept-alive connection closed before any byte of the response arrived."""


# ---------------------------------------------------------------------------------------
# Pure rules.


@dataclass(frozen=True)
class ServerAddress:
    """The address of a goma server and the URL path prefix of its verbs."""

    host: str
    port: int
    url_prefix: str = DEFAULT_URL_PREFIX

    @classmethod
    def from_url(cls, url: str, url_prefix: str = DEFAULT_URL_PREFIX) -> ServerAddress:
        """Parse ``http://host[:port]``.  The port defaults to 80.

        Raises:
            GomaProxyError: for a scheme other than http, a missing host or a bad port.
        """
        parts = urllib.parse.urlsplit(url)
        if parts.scheme != "http":
            raise GomaProxyError(
                f"invalid goma server URL {url!r}: only http:// is supported",
                code=Code.INVALID_ARGUMENT,
            )
        try:
            port = parts.port or 80
        except ValueError as exc:
            raise GomaProxyError(
                f"invalid port in goma server URL {url!r}: {exc}", code=Code.INVALID_ARGUMENT
            ) from None
        if not parts.hostname:
            raise GomaProxyError(
                f"invalid goma server URL {url!r}: the host is missing",
                code=Code.INVALID_ARGUMENT,
            )
        if parts.path not in ("", "/") or parts.query:
            raise GomaProxyError(
                f"invalid goma server URL {url!r}: give only http://host:port and pass a path "
                "prefix with --url-prefix",
                code=Code.INVALID_ARGUMENT,
            )
        return cls(host=parts.hostname, port=port, url_prefix=url_prefix.rstrip("/"))

    @property
    def host_header(self) -> str:
        """The Host header value: the host without port, IPv6 literals in brackets."""
        return f"[{self.host}]" if ":" in self.host else self.host


def next_request_encoding(accept_encoding: str | None) -> str | None:
    """Return the request encoding to use after a 200 with this ``Accept-Encoding`` value.

    The first listed encoding the client can produce wins (gzip or deflate), and q
    values are ignored.  None means request compression is off.
    """
    if not accept_encoding:
        return None

    for element in accept_encoding.split(","):
        name = element.partition(";")[0].strip().lower()
        if name in (GZIP, DEFLATE):
            return name
    return None


def request_headers(
    address: ServerAddress,
    body_length: int,
    *,
    compression_on: bool,
    content_encoding: str | None,
) -> list[tuple[str, str]]:
    """Return the request headers in compiler_proxy's order.

    ``Accept-Encoding`` is sent while request compression is on, and
    ``Content-Encoding`` only for a compressed body.
    """
    headers = [
        ("Host", address.host_header),
        ("User-Agent", USER_AGENT),
        ("Content-Type", CONTENT_TYPE),
        ("Content-Length", str(body_length)),
    ]
    if compression_on:
        headers.append(("Accept-Encoding", CLIENT_ACCEPT_ENCODING))
    if content_encoding is not None:
        headers.append(("Content-Encoding", content_encoding))
    return headers


def format_request_head(target: str, headers: list[tuple[str, str]]) -> bytes:
    """Serialize a POST request line and headers, values byte for byte, CRLF-terminated."""
    lines = [f"POST {target} HTTP/1.1", *(f"{name}: {value}" for name, value in headers)]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


@dataclass(frozen=True)
class _Response:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes

    def header(self, name: bytes) -> str | None:
        """Return the values of header ``name`` joined by commas, or None if absent."""
        values = [value.decode("latin-1") for key, value in self.headers if key == name]
        return ", ".join(values) if values else None


# ---------------------------------------------------------------------------------------
# The client.


class GomaHttpClient:
    """One kept-alive HTTP/1.1 connection to a goma server, used for one call at a time.

    A connection that the server closed while idle is replaced once per call.  A call
    that is cancelled, for example by the caller's ``fail_after``, closes the
    connection, and the next call opens a new one.
    """

    def __init__(self, address: ServerAddress) -> None:
        self.address = address
        # None while request compression is off.
        self._request_encoding: str | None = INITIAL_REQUEST_ENCODING
        # Set while a connection is open; h11 state and stream always change together.
        self._stream: anyio.abc.ByteStream | None = None
        self._h11: h11.Connection | None = None
        self.connections_opened = 0

    @property
    def request_encoding(self) -> str | None:
        """The encoding of the next non-empty request body, or None when uncompressed."""
        return self._request_encoding

    async def __aenter__(self) -> GomaHttpClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection, if one is open."""
        stream = self._stream
        self._stream = None
        self._h11 = None
        if stream is not None:
            await anyio.aclose_forcefully(stream)

    # Verbs ------------------------------------------------------------------------------

    async def ping(self) -> None:
        """Send ``/ping`` with an empty body; any 200 is success."""
        await self._call(_PING, b"")

    async def exec(self, request: goma_pb2.ExecReq) -> goma_pb2.ExecResp:
        """Send ``/e`` and return the server's ExecResp."""
        body = await self._call(_EXEC, request.SerializeToString())
        return _parse(goma_pb2.ExecResp, body, _EXEC)

    async def store_file(self, request: goma_pb2.StoreFileReq) -> goma_pb2.StoreFileResp:
        """Send ``/s`` and return the server's StoreFileResp."""
        body = await self._call(_STORE_FILE, request.SerializeToString())
        return _parse(goma_pb2.StoreFileResp, body, _STORE_FILE)

    async def lookup_file(self, request: goma_pb2.LookupFileReq) -> goma_pb2.LookupFileResp:
        """Send ``/l`` and return the server's LookupFileResp."""
        body = await self._call(_LOOKUP_FILE, request.SerializeToString())
        return _parse(goma_pb2.LookupFileResp, body, _LOOKUP_FILE)

    # Status handling ----------------------------------------------------------------------

    async def _call(self, verb: str, payload: bytes) -> bytes:
        """POST ``payload`` to ``verb`` and return the decoded body of a 200 response.

        Raises:
            HttpStatusError: for any status other than 200.
            TransportError: when the exchange or the body decoding fails.
        """
        encoding = self._request_encoding
        content_encoding = encoding if payload else None
        body = payload
        if content_encoding is not None:
            body = encode_request_body(payload, content_encoding, level=REQUEST_COMPRESSION_LEVEL)
        headers = request_headers(
            self.address,
            len(body),
            compression_on=encoding is not None,
            content_encoding=content_encoding,
        )

        response = await self._post(self.address.url_prefix + verb, headers, body)
        log.debug(
            "goma_rpc_finished",
            verb=verb,
            status=response.status,
            request_bytes=len(body),
            response_bytes=len(response.body),
            content_encoding=content_encoding,
        )

        if response.status != 200:
            if response.status in (400, 415):
                self._request_encoding = None
            raise HttpStatusError(verb, response.status, response.body[:ERROR_BODY_PREFIX_BYTES])

        self._request_encoding = next_request_encoding(response.header(b"accept-encoding"))
        try:
            return decode_response_body(
                response.body,
                response.header(b"content-encoding"),
                max_decoded_bytes=MAX_RESPONSE_BYTES,
            )
        except ResponseBodyError as exc:
            raise TransportError(f"invalid {verb} response body: {exc}") from exc

    # Connection handling --------------------------------------------------------------------

    async def _post(self, target: str, headers: list[tuple[str, str]], body: bytes) -> _Response:
        reused = self._stream is not None
        try:
            return await self._exchange(target, headers, body)
        except _ConnectionLost as lost:
            if not reused:
                raise TransportError(
                    f"connection to {self._peer()} closed before the response to {target}"
                ) from lost
            log.debug("goma_connection_reopened", peer=self._peer(), target=target)

        try:
            return await self._exchange(target, headers, body)
        except _ConnectionLost as lost:
            raise TransportError(
                f"connection to {self._peer()} closed before the response to {target}"
            ) from lost

    async def _exchange(
        self, target: str, headers: list[tuple[str, str]], body: bytes
    ) -> _Response:
        """Send one request and read its response, dropping the connection on failure."""
        stream, connection = await self._connection()
        try:
            await self._send_request(stream, connection, target, headers, body)
            response = await self._receive_response(stream, connection)
        except BaseException:
            await self.aclose()
            raise

        if connection.our_state is h11.DONE and connection.their_state is h11.DONE:
            connection.start_next_cycle()
        else:
            await self.aclose()
        return response

    async def _connection(self) -> tuple[anyio.abc.ByteStream, h11.Connection]:
        if self._stream is not None and self._h11 is not None:
            return self._stream, self._h11

        try:
            stream = await anyio.connect_tcp(self.address.host, self.address.port)
        except OSError as exc:
            raise TransportError(
                f"could not connect to goma server {self._peer()}: {exc}; "
                "check that the server runs and --server is right"
            ) from exc

        self.connections_opened += 1
        self._stream = stream
        self._h11 = h11.Connection(our_role=h11.CLIENT)
        return stream, self._h11

    async def _send_request(
        self,
        stream: anyio.abc.ByteStream,
        connection: h11.Connection,
        target: str,
        headers: list[tuple[str, str]],
        body: bytes,
    ) -> None:
        # h11 0.16 rejects header values with trailing whitespace, and goma's User-Agent
        # ends in a space.  So the head bytes come from format_request_head, and h11 gets
        # the same request with stripped values only to track the exchange and to frame
        # the response.
        stripped = [(name, value.strip()) for name, value in headers]
        connection.send(h11.Request(method="POST", target=target, headers=stripped))
        data = format_request_head(target, headers)
        if body:
            data += connection.send(h11.Data(data=body)) or b""
        data += connection.send(h11.EndOfMessage()) or b""

        try:
            await stream.send(data)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError) as exc:
            raise _ConnectionLost(str(exc)) from exc

    async def _receive_response(
        self, stream: anyio.abc.ByteStream, connection: h11.Connection
    ) -> _Response:
        response: h11.Response | None = None
        pieces: list[bytes] = []
        received = 0
        started = False

        while True:
            try:
                event = connection.next_event()
            except h11.RemoteProtocolError as exc:
                if not started:
                    raise _ConnectionLost(str(exc)) from exc
                raise TransportError(f"invalid HTTP response from {self._peer()}: {exc}") from exc

            if event is h11.NEED_DATA:
                data = await self._receive_some(stream, started)
                started = started or bool(data)
                connection.receive_data(data)
            elif isinstance(event, h11.Response):
                response = event
            elif isinstance(event, h11.Data):
                received += len(event.data)
                _check_response_size(received, self._peer())
                pieces.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                break
            elif isinstance(event, h11.ConnectionClosed):
                raise TransportError(f"{self._peer()} closed the connection mid-response")

        assert response is not None, "h11 delivers Response before EndOfMessage"
        return _Response(
            status=response.status_code, headers=list(response.headers), body=b"".join(pieces)
        )

    async def _receive_some(self, stream: anyio.abc.ByteStream, started: bool) -> bytes:
        """Read the next bytes; b"" means the server closed its side."""
        try:
            return await stream.receive(_RECEIVE_SIZE)
        except anyio.EndOfStream:
            return b""
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError) as exc:
            if not started:
                raise _ConnectionLost(str(exc)) from exc
            raise TransportError(f"reading the response from {self._peer()} failed: {exc}") from exc

    def _peer(self) -> str:
        return f"{self.address.host_header}:{self.address.port}"


def _check_response_size(size: int, peer: str) -> None:
    if size > MAX_RESPONSE_BYTES:
        raise TransportError(
            f"response from {peer} exceeds {MAX_RESPONSE_BYTES} bytes; the server misbehaves"
        )


def _parse(message_type: type[ResponseT], body: bytes, verb: str) -> ResponseT:
    """Parse a response body; a missing required field makes it invalid, as in goma."""
    message = message_type()
    try:
        message.ParseFromString(body)
    except DecodeError as exc:
        raise TransportError(f"invalid {verb} response: {exc}") from exc

    if not message.IsInitialized():
        missing = ", ".join(message.FindInitializationErrors())
        raise TransportError(f"invalid {verb} response: required fields missing: {missing}")
    return message
