"""Tests of the goma client against a counting and recording fake goma server.

The fake speaks HTTP/1.1 through h11 on 127.0.0.1 with an ephemeral port, records every
request with its headers in the order they arrived, and serves /ping, /e, /s and /l
with behaviour each test chooses.  Every test runs under a hard time cap.
"""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field

import h11
import pytest
import trio

from gomaproxy.client.http import (
    USER_AGENT,
    GomaHttpClient,
    HttpStatusError,
    ServerAddress,
)
from gomaproxy.goma.blob import hash_key
from gomaproxy.goma.codec import decode_request_body
from gomaproxy.protos import goma_data_pb2 as goma_pb2

TIME_CAP_SECONDS = 30


# ---------------------------------------------------------------------------------------
# The fake server.


@dataclass
class RecordedRequest:
    """One request as the fake received it, with its body decoded."""

    target: str
    headers: list[tuple[str, str]]
    body: bytes
    payload: bytes

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return None

    @property
    def header_names(self) -> list[str]:
        return [key for key, _ in self.headers]


@dataclass
class Reply:
    """What the fake sends back: status, extra headers and the body before encoding.

    ``content_encoding`` compresses the body (gzip, or raw deflate as goma servers
    send it); ``chunked`` omits Content-Length so that h11 frames the body in chunks.
    """

    status: int = 200
    body: bytes = b""
    accept_encoding: str | None = "gzip, deflate"
    content_encoding: str | None = None
    chunked: bool = False


Handler = Callable[[RecordedRequest], Reply]


@dataclass
class FakeGomaServer:
    """A goma server double that records requests and replies with ``handler``'s result."""

    handler: Handler
    requests: list[RecordedRequest] = field(default_factory=list)
    connections: int = 0
    close_after_each_response: bool = False
    port: int = 0

    def calls(self, verb: str) -> list[RecordedRequest]:
        return [request for request in self.requests if request.target.endswith(verb)]

    async def serve(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        task_status.started(self.port)
        await trio.serve_listeners(self._serve_connection, listeners)

    async def _serve_connection(self, stream: trio.SocketStream) -> None:
        self.connections += 1
        connection = h11.Connection(our_role=h11.SERVER)
        wire = _Wire()
        async with stream:
            while True:
                request = await self._read_request(stream, connection, wire)
                if request is None:
                    return
                self.requests.append(request)
                await self._send_reply(stream, connection, self.handler(request))
                if self.close_after_each_response or connection.our_state is not h11.DONE:
                    return
                connection.start_next_cycle()

    async def _read_request(
        self, stream: trio.SocketStream, connection: h11.Connection, wire: _Wire
    ) -> RecordedRequest | None:
        head: h11.Request | None = None
        body = b""
        while True:
            event = connection.next_event()
            if event is h11.NEED_DATA:
                data = await stream.receive_some(65536)
                wire.received += data
                connection.receive_data(data)
            elif isinstance(event, h11.Request):
                head = event
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                break
            elif isinstance(event, h11.ConnectionClosed):
                return None

        assert head is not None
        headers = wire.take_head(len(body))
        encoding = dict((key.lower(), value) for key, value in headers).get("content-encoding")
        payload = decode_request_body(body, encoding, max_decoded_bytes=1 << 30)
        return RecordedRequest(head.target.decode(), headers, body, payload)

    async def _send_reply(
        self, stream: trio.SocketStream, connection: h11.Connection, reply: Reply
    ) -> None:
        body = _encode(reply.body, reply.content_encoding)
        headers = [("Content-Type", "binary/x-protocol-buffer")]
        if reply.accept_encoding is not None:
            headers.append(("Accept-Encoding", reply.accept_encoding))
        if reply.content_encoding is not None:
            headers.append(("Content-Encoding", reply.content_encoding))
        if not reply.chunked:
            headers.append(("Content-Length", str(len(body))))

        data = connection.send(h11.Response(status_code=reply.status, headers=headers)) or b""
        if body:
            data += connection.send(h11.Data(data=body)) or b""
        data += connection.send(h11.EndOfMessage()) or b""
        await stream.send_all(data)


@dataclass
class _Wire:
    """The bytes one connection received, to read header values exactly as sent.

    h11 strips whitespace around header values, and goma's User-Agent ends in a space.
    """

    received: bytes = b""
    offset: int = 0

    def take_head(self, body_length: int) -> list[tuple[str, str]]:
        """Return the headers of the next request on the wire and skip past its body."""
        end = self.received.index(b"\r\n\r\n", self.offset)
        lines = self.received[self.offset : end].decode("latin-1").split("\r\n")
        self.offset = end + 4 + body_length

        headers: list[tuple[str, str]] = []
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers.append((name, value.lstrip(" ")))
        return headers


def _encode(body: bytes, encoding: str | None) -> bytes:
    if encoding == "gzip":
        return gzip.compress(body)
    if encoding == "deflate":
        compressor = zlib.compressobj(1, zlib.DEFLATED, -zlib.MAX_WBITS)
        return compressor.compress(body) + compressor.flush()
    return body


def exec_reply(response: goma_pb2.ExecResp, **options: object) -> Reply:
    return Reply(body=response.SerializeToString(), **options)  # type: ignore[arg-type]


def ok_exec_response(exit_status: int = 0) -> goma_pb2.ExecResp:
    return goma_pb2.ExecResp(result=goma_pb2.ExecResult(exit_status=exit_status))


def sample_exec_request() -> goma_pb2.ExecReq:
    request = goma_pb2.ExecReq(
        command_spec=goma_pb2.CommandSpec(name="gcc", version="12[x]", target="x86_64"),
        arg=["gcc", "-c", "a.c"],
        cwd="/tmp",
    )
    request.input.add(filename="a.c", hash_key="0" * 64)
    return request


async def start_server(nursery: trio.Nursery, handler: Handler) -> FakeGomaServer:
    server = FakeGomaServer(handler=handler)
    await nursery.start(server.serve)
    return server


def client_for(server: FakeGomaServer) -> GomaHttpClient:
    return GomaHttpClient(ServerAddress(host="127.0.0.1", port=server.port))


# ---------------------------------------------------------------------------------------
# HTTP layer.


async def test_http_client_header_order(nursery: trio.Nursery) -> None:
    """An Exec request carries compiler_proxy's headers in compiler_proxy's order."""
    server = await start_server(nursery, lambda _: exec_reply(ok_exec_response()))
    request = sample_exec_request()

    with trio.fail_after(TIME_CAP_SECONDS):
        async with client_for(server) as client:
            await client.exec(request)

    recorded = server.calls("/e")[0]
    assert recorded.target == "/cxx-compiler-service/e"
    assert recorded.header_names == [
        "Host",
        "User-Agent",
        "Content-Type",
        "Content-Length",
        "Accept-Encoding",
        "Content-Encoding",
    ]
    assert recorded.header("Host") == "127.0.0.1"
    assert recorded.header("User-Agent") == USER_AGENT
    assert recorded.header("Content-Type") == "binary/x-protocol-buffer"
    assert recorded.header("Content-Length") == str(len(recorded.body))
    assert recorded.header("Accept-Encoding") == "gzip"
    assert recorded.header("Content-Encoding") == "gzip"
    assert recorded.payload == request.SerializeToString()


async def test_http_client_ping_has_no_content_encoding(nursery: trio.Nursery) -> None:
    """A ping has an empty body and no Content-Encoding, but still offers gzip."""
    server = await start_server(nursery, lambda _: Reply(body=b"ok\n"))

    with trio.fail_after(TIME_CAP_SECONDS):
        async with client_for(server) as client:
            await client.ping()

    recorded = server.calls("/ping")[0]
    assert recorded.header_names == [
        "Host",
        "User-Agent",
        "Content-Type",
        "Content-Length",
        "Accept-Encoding",
    ]
    assert recorded.header("Content-Length") == "0"
    assert recorded.body == b""


async def test_http_client_negotiates_from_accept_encoding(nursery: trio.Nursery) -> None:
    """Each 200's Accept-Encoding picks the next body encoding: gzip, deflate, or none."""
    advertised = iter(["deflate", "gzip, deflate", None, "lzma2, deflate", "gzip"])
    server = await start_server(
        nursery, lambda _: exec_reply(ok_exec_response(), accept_encoding=next(advertised))
    )
    request = sample_exec_request()

    with trio.fail_after(TIME_CAP_SECONDS):
        async with client_for(server) as client:
            for _ in range(5):
                await client.exec(request)

    recorded = server.calls("/e")
    encodings = [call.header("Content-Encoding") for call in recorded]
    offers = [call.header("Accept-Encoding") for call in recorded]
    assert encodings == ["gzip", "deflate", "gzip", None, "deflate"]
    assert offers == ["gzip", "gzip", "gzip", None, "gzip"]
    assert all(call.payload == request.SerializeToString() for call in recorded)


async def test_http_client_deflate_body_has_adler_trailer(nursery: trio.Nursery) -> None:
    """A deflate body is a zlib stream without its 2-byte header, Adler-32 kept."""
    server = await start_server(
        nursery, lambda _: exec_reply(ok_exec_response(), accept_encoding="deflate")
    )
    request = sample_exec_request()

    with trio.fail_after(TIME_CAP_SECONDS):
        async with client_for(server) as client:
            await client.exec(request)
            await client.exec(request)

    body = server.calls("/e")[1].body
    payload = request.SerializeToString()
    assert zlib.decompress(b"\x78\x5e" + body) == payload
    assert int.from_bytes(body[-4:], "big") == zlib.adler32(payload)


async def test_http_client_415_turns_compression_off(nursery: trio.Nursery) -> None:
    """After a 415 the next request is sent uncompressed and without Accept-Encoding."""
    statuses = iter([415, 200])
    server = await start_server(
        nursery,
        lambda _: exec_reply(ok_exec_response(), status=next(statuses), accept_encoding=None),
    )

    with trio.fail_after(TIME_CAP_SECONDS):
        async with client_for(server) as client:
            with pytest.raises(HttpStatusError) as caught:
                await client.exec(sample_exec_request())
            await client.exec(sample_exec_request())

    first, second = server.calls("/e")
    assert caught.value.status == 415
    assert not caught.value.retryable
    assert first.header("Content-Encoding") == "gzip"
    assert second.header("Content-Encoding") is None
    assert second.header("Accept-Encoding") is None


async def test_http_client_400_turns_compression_off(nursery: trio.Nursery) -> None:
    """A 400 also switches request compression off."""
    server = await start_server(nursery, lambda _: Reply(status=400, body=b"bad request"))

    with trio.fail_after(TIME_CAP_SECONDS):
        async with client_for(server) as client:
            with pytest.raises(HttpStatusError):
                await client.exec(sample_exec_request())
            assert client.request_encoding is None


async def test_http_client_error_keeps_body_prefix(nursery: trio.Nursery) -> None:
    """A 503 raises a retryable error carrying the status and 200 bytes of the body."""
    server = await start_server(nursery, lambda _: Reply(status=503, body=b"x" * 300))

    with trio.fail_after(TIME_CAP_SECONDS):
        async with client_for(server) as client:
            with pytest.raises(HttpStatusError) as caught:
                await client.exec(sample_exec_request())

    assert caught.value.status == 503
    assert caught.value.retryable
    assert caught.value.body_prefix == b"x" * 200


@pytest.mark.parametrize("encoding", ["gzip", "deflate", None], ids=["gzip", "deflate", "identity"])
async def test_http_client_decodes_chunked_responses(
    nursery: trio.Nursery, encoding: str | None
) -> None:
    """Chunked bodies are read whole and decoded per their Content-Encoding."""
    blob = goma_pb2.FileBlob(blob_type=goma_pb2.FileBlob.FILE, content=b"a" * 5000, file_size=5000)
    response = goma_pb2.LookupFileResp(blob=[blob])
    server = await start_server(
        nursery,
        lambda _: Reply(body=response.SerializeToString(), content_encoding=encoding, chunked=True),
    )

    with trio.fail_after(TIME_CAP_SECONDS):
        async with client_for(server) as client:
            answer = await client.lookup_file(goma_pb2.LookupFileReq(hash_key=[hash_key(blob)]))
            again = await client.lookup_file(goma_pb2.LookupFileReq(hash_key=[hash_key(blob)]))

    assert answer == response
    assert again == response
    assert server.connections == 1


async def test_http_client_reuses_one_connection(nursery: trio.Nursery) -> None:
    """Consecutive calls share one kept-alive connection."""
    server = await start_server(nursery, lambda _: exec_reply(ok_exec_response()))

    with trio.fail_after(TIME_CAP_SECONDS):
        async with client_for(server) as client:
            for _ in range(3):
                await client.exec(sample_exec_request())

    assert len(server.calls("/e")) == 3
    assert server.connections == 1


async def test_http_client_reconnects_after_idle_close(nursery: trio.Nursery) -> None:
    """A connection the server closed while idle is replaced and the call succeeds."""
    server = await start_server(nursery, lambda _: exec_reply(ok_exec_response()))
    server.close_after_each_response = True

    with trio.fail_after(TIME_CAP_SECONDS):
        async with client_for(server) as client:
            await client.exec(sample_exec_request())
            await trio.sleep(0.05)
            await client.exec(sample_exec_request())

    assert len(server.calls("/e")) == 2
    assert client.connections_opened == 2


async def test_http_client_rejects_missing_required_field(nursery: trio.Nursery) -> None:
    """A 200 whose ExecResp lacks result.exit_status is a retryable transport error."""
    broken = goma_pb2.ExecResp()
    broken.result.stdout_buffer = b"out"
    server = await start_server(nursery, lambda _: Reply(body=broken.SerializePartialToString()))

    with trio.fail_after(TIME_CAP_SECONDS):
        async with client_for(server) as client:
            with pytest.raises(Exception, match="required fields missing") as caught:
                await client.exec(sample_exec_request())

    assert getattr(caught.value, "retryable", False)
