"""Tests of the goma client against a counting and recording fake goma server.

The fake speaks HTTP/1.1 through h11 on 127.0.0.1 with an ephemeral port, records every
request with its headers in the order they arrived, and serves /ping, /e, /s and /l
with behaviour each test chooses.  Every test runs under a hard time cap.
"""

from __future__ import annotations

import gzip
import json
import os
import random
import re
import stat
import sys
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import h11
import pytest
import trio

import gomaproxy
from gomaproxy.client.cc import (
    DEFAULT_SERVER,
    LauncherOptions,
    RemoteCompileError,
    parse_command_line,
    retry_delay,
    run_remote_compile,
)
from gomaproxy.client.http import (
    USER_AGENT,
    GomaHttpClient,
    HttpStatusError,
    ServerAddress,
)
from gomaproxy.goma.blob import ChunkSize, blob_for_content, chunked_file, file_blob, hash_key
from gomaproxy.goma.codec import decode_request_body
from gomaproxy.protos import goma_data_pb2 as goma_pb2

TIME_CAP_SECONDS = 30

REPO_ROOT = str(Path(gomaproxy.__file__).resolve().parent.parent)


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
    """A 503 raises a retryable error carrying the status and 1000 bytes of the body as text."""
    server = await start_server(nursery, lambda _: Reply(status=503, body=b"x" * 1300))

    with trio.fail_after(TIME_CAP_SECONDS):
        async with client_for(server) as client:
            with pytest.raises(HttpStatusError) as caught:
                await client.exec(sample_exec_request())

    assert caught.value.status == 503
    assert caught.value.retryable
    assert caught.value.body_prefix == b"x" * 1000
    assert caught.value.message.endswith(": " + "x" * 1000)


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
            first = await client.lookup_file(goma_pb2.LookupFileReq(hash_key=[hash_key(blob)]))
            again = await client.lookup_file(goma_pb2.LookupFileReq(hash_key=[hash_key(blob)]))

    assert first == response
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


# ---------------------------------------------------------------------------------------
# A fake goma service for whole launcher runs.

MiB = 1024 * 1024
OLD_SECONDS = 3600.0
COMPILE_TIME_CAP_SECONDS = 120

ExecScript = Callable[[goma_pb2.ExecReq, int], Reply]


@dataclass
class FakeGoma:
    """Serves /ping, /s and /l from an in-memory blob store and /e from ``exec_script``.

    ``exec_script`` receives each ExecReq with its 0-based call number.
    """

    exec_script: ExecScript
    blobs: dict[str, goma_pb2.FileBlob] = field(default_factory=dict)
    exec_requests: list[goma_pb2.ExecReq] = field(default_factory=list)
    store_requests: list[goma_pb2.StoreFileReq] = field(default_factory=list)
    lookup_requests: list[goma_pb2.LookupFileReq] = field(default_factory=list)

    def __call__(self, request: RecordedRequest) -> Reply:
        if request.target.endswith("/ping"):
            return Reply(body=b"ok\n")
        if request.target.endswith("/s"):
            return self._store(goma_pb2.StoreFileReq.FromString(request.payload))
        if request.target.endswith("/l"):
            return self._lookup(goma_pb2.LookupFileReq.FromString(request.payload))

        exec_request = goma_pb2.ExecReq.FromString(request.payload)
        self.exec_requests.append(exec_request)
        return self.exec_script(exec_request, len(self.exec_requests) - 1)

    def _store(self, request: goma_pb2.StoreFileReq) -> Reply:
        self.store_requests.append(request)
        keys = []
        for blob in request.blob:
            self.blobs[hash_key(blob)] = blob
            keys.append(hash_key(blob))
        return Reply(body=goma_pb2.StoreFileResp(hash_key=keys).SerializeToString())

    def _lookup(self, request: goma_pb2.LookupFileReq) -> Reply:
        self.lookup_requests.append(request)
        unknown = goma_pb2.FileBlob(blob_type=goma_pb2.FileBlob.FILE_UNSPECIFIED)
        blobs = [self.blobs.get(key, unknown) for key in request.hash_key]
        return Reply(body=goma_pb2.LookupFileResp(blob=blobs).SerializeToString())


def echoed_spec(request: goma_pb2.ExecReq) -> goma_pb2.CommandSpec:
    sent = request.command_spec
    return goma_pb2.CommandSpec(
        name=sent.name, version=sent.version, target=sent.target, binary_hash=sent.binary_hash
    )


def result_reply(
    request: goma_pb2.ExecReq,
    *,
    exit_status: int = 0,
    stdout: bytes = b"",
    stderr: bytes = b"",
    outputs: tuple[tuple[str, goma_pb2.FileBlob], ...] = (),
) -> Reply:
    """Reply with a finished compile that echoes the requested compiler."""
    result = goma_pb2.ExecResult(
        exit_status=exit_status,
        stdout_buffer=stdout,
        stderr_buffer=stderr,
        command_spec=echoed_spec(request),
    )
    for filename, blob in outputs:
        result.output.add(filename=filename, blob=blob)
    response = goma_pb2.ExecResp(result=result, cache_key="key-1")
    return Reply(body=response.SerializeToString())


def missing_reply(request: goma_pb2.ExecReq, filenames: list[str]) -> Reply:
    """Reply that the server lacks ``filenames``, as goma servers do: exit_status -1."""
    response = goma_pb2.ExecResp(
        result=goma_pb2.ExecResult(exit_status=-1, command_spec=echoed_spec(request)),
        missing_input=filenames,
        missing_reason=["not found in blob store"] * len(filenames),
    )
    return Reply(body=response.SerializeToString())


def object_output(content: bytes = b"OBJ") -> tuple[tuple[str, goma_pb2.FileBlob], ...]:
    return (("a.o", file_blob(content)),)


def backdate(path: Path, seconds: float = OLD_SECONDS) -> None:
    stamp = time.time() - seconds
    os.utime(path, (stamp, stamp))


def make_project(directory: Path, header: bytes = b"") -> Path:
    """Write a.c, which includes big.h, and an old big.h of ``header`` bytes."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "a.c").write_text('#include "big.h"\nint main(void) { return 0; }\n')
    (directory / "big.h").write_bytes(header or b"/* " + b"h" * 2000 + b" */\n")
    backdate(directory / "big.h")
    return directory


async def start_goma(nursery: trio.Nursery, script: ExecScript) -> tuple[FakeGoma, FakeGomaServer]:
    goma = FakeGoma(exec_script=script)
    server = await start_server(nursery, goma)
    return goma, server


def options_for(server: FakeGomaServer, state_dir: Path) -> LauncherOptions:
    """Return launcher options for ``server`` with a 10 ms first retry wait."""
    return LauncherOptions(
        server=f"http://127.0.0.1:{server.port}", state_dir=state_dir, retry_backoff_seconds=0.01
    )


def input_named(request: goma_pb2.ExecReq, filename: str) -> goma_pb2.ExecReq.Input:
    return next(entry for entry in request.input if entry.filename == filename)


COMPILE = ["gcc", "-c", "a.c", "-o", "a.o"]


# ---------------------------------------------------------------------------------------
# Whole launcher runs.


async def test_cc_missing_input_embedded_next_round(nursery: trio.Nursery, tmp_path: Path) -> None:
    """A missing old header is embedded in the second Exec, whose retry field is 1."""
    project = make_project(tmp_path / "src")
    header = (project / "big.h").read_bytes()

    def script(request: goma_pb2.ExecReq, call: int) -> Reply:
        if call == 0:
            return missing_reply(request, ["big.h"])
        return result_reply(request, outputs=object_output())

    goma, server = await start_goma(nursery, script)

    with trio.fail_after(COMPILE_TIME_CAP_SECONDS):
        outcome = await run_remote_compile(
            options_for(server, tmp_path / "state"), COMPILE, str(project)
        )

    first, second = goma.exec_requests
    assert [request.requester_info.retry for request in goma.exec_requests] == [0, 1]
    assert not input_named(first, "big.h").HasField("content")
    assert input_named(second, "big.h").content == file_blob(header)
    assert input_named(first, "big.h").hash_key == hash_key(file_blob(header))
    assert input_named(first, "a.c").HasField("content")
    assert outcome.exit_status == 0
    assert outcome.stats.exec_calls == 2
    assert outcome.stats.missing_rounds == 1
    assert outcome.outputs == ["a.o"]
    assert (project / "a.o").read_bytes() == b"OBJ"


async def test_cc_request_mirrors_compiler_proxy(nursery: trio.Nursery, tmp_path: Path) -> None:
    """The ExecReq carries argv as typed, filtered env, probes and requester info."""
    project = make_project(tmp_path / "src")
    goma, server = await start_goma(
        nursery, lambda request, _: result_reply(request, outputs=object_output())
    )
    environ = {**os.environ, "CPATH": "/opt/include", "SECRET_TOKEN": "x", "PWD": "/elsewhere"}

    with trio.fail_after(COMPILE_TIME_CAP_SECONDS):
        await run_remote_compile(
            options_for(server, tmp_path / "state"), COMPILE, str(project), environ=environ
        )

    (request,) = goma.exec_requests
    info = request.requester_info
    assert list(request.arg) == COMPILE
    assert list(request.env) == [f"PWD={project}", "CPATH=/opt/include"]
    assert request.cwd == str(project)
    assert list(request.expected_output_files) == ["a.o"]
    assert request.hermetic_mode
    assert request.HasField("trace")
    assert not request.trace
    assert not request.HasField("requester_env")
    assert request.command_spec.name == "gcc"
    assert len(request.command_spec.binary_hash) == 64
    assert list(request.command_spec.system_include_path)
    assert not list(request.command_spec.cxx_system_include_path)
    filenames = [entry.filename for entry in request.input]
    assert filenames == sorted(filenames)
    assert {"a.c", "big.h"} <= set(filenames)
    assert info.api_version == 2
    assert info.pid == os.getpid()
    assert info.retry == 0
    assert list(info.dimensions) == ["os:linux"]
    assert info.path_style == goma_pb2.RequesterInfo.POSIX_STYLE
    assert re.fullmatch(r"anonymous@[0-9a-f]{64}:8088/\d+/\d+", info.compiler_proxy_id)


async def test_cc_uploads_chunks_in_fives(nursery: trio.Nursery, tmp_path: Path) -> None:
    """A missing 11 MiB header is stored through /s, five chunks at most per request."""
    filler = b"/* " + b"c" * (11 * MiB) + b" */\n"
    project = make_project(tmp_path / "src", header=filler)
    meta, chunks = blob_for_content(filler)

    def script(request: goma_pb2.ExecReq, call: int) -> Reply:
        if call == 0:
            return missing_reply(request, ["big.h"])
        return result_reply(request, outputs=object_output())

    goma, server = await start_goma(nursery, script)

    with trio.fail_after(COMPILE_TIME_CAP_SECONDS):
        outcome = await run_remote_compile(
            options_for(server, tmp_path / "state"), COMPILE, str(project)
        )

    first, second = goma.exec_requests
    stored = [blob for request in goma.store_requests for blob in request.blob]
    assert len(chunks) == 6
    assert [len(request.blob) for request in goma.store_requests] == [5, 1]
    assert stored == list(chunks)
    assert all(request.requester_info.retry == 1 for request in goma.store_requests)
    assert input_named(first, "big.h").hash_key == hash_key(meta)
    assert not input_named(first, "big.h").HasField("content")
    assert input_named(second, "big.h").content == meta
    assert all(key in goma.blobs for key in meta.hash_key)
    assert outcome.stats.uploaded_chunks == 6


async def test_cc_downloads_file_meta_output(nursery: trio.Nursery, tmp_path: Path) -> None:
    """A FILE_META output is fetched through /l, five keys per request, at its offsets."""
    project = make_project(tmp_path / "src")
    content = random.Random(7).randbytes(21 * MiB + 123)
    served = chunked_file(content, ChunkSize.TOTAL)

    def script(request: goma_pb2.ExecReq, call: int) -> Reply:
        return result_reply(request, outputs=(("a.o", served.meta),))

    goma, server = await start_goma(nursery, script)
    goma.blobs.update({hash_key(chunk): chunk for chunk in served.chunks})

    with trio.fail_after(COMPILE_TIME_CAP_SECONDS):
        outcome = await run_remote_compile(
            options_for(server, tmp_path / "state"), COMPILE, str(project)
        )

    assert [len(request.hash_key) for request in goma.lookup_requests] == [5, 5, 1]
    assert [key for request in goma.lookup_requests for key in request.hash_key] == list(
        served.meta.hash_key
    )
    assert (project / "a.o").read_bytes() == content
    assert outcome.outputs == ["a.o"]


async def test_cc_failed_download_retries_store_only(nursery: trio.Nursery, tmp_path: Path) -> None:
    """An output whose chunks cannot be fetched makes the next Exec STORE_ONLY."""
    project = make_project(tmp_path / "src")
    unreachable = chunked_file(b"z" * (3 * MiB), ChunkSize.TOTAL).meta

    def script(request: goma_pb2.ExecReq, call: int) -> Reply:
        if call == 0:
            return result_reply(request, outputs=(("a.o", unreachable),))
        return result_reply(request, outputs=object_output(b"FRESH"))

    goma, server = await start_goma(nursery, script)

    with trio.fail_after(COMPILE_TIME_CAP_SECONDS):
        outcome = await run_remote_compile(
            options_for(server, tmp_path / "state"), COMPILE, str(project)
        )

    first, second = goma.exec_requests
    assert not first.HasField("cache_policy")
    assert second.cache_policy == goma_pb2.ExecReq.STORE_ONLY
    assert second.requester_info.retry == 1
    assert (project / "a.o").read_bytes() == b"FRESH"
    assert outcome.exit_status == 0
    assert not list(project.glob(".a.o.*"))


async def test_cc_retry_cap_on_503(nursery: trio.Nursery, tmp_path: Path) -> None:
    """Repeated 503 responses stop the compile after exactly 5 Exec calls."""
    project = make_project(tmp_path / "src")
    goma, server = await start_goma(nursery, lambda _request, _call: Reply(status=503))

    with trio.fail_after(COMPILE_TIME_CAP_SECONDS), pytest.raises(RemoteCompileError) as caught:
        await run_remote_compile(options_for(server, tmp_path / "state"), COMPILE, str(project))

    assert [request.requester_info.retry for request in goma.exec_requests] == [0, 1, 2, 3, 4]
    assert caught.value.stats.exec_calls == 5
    assert "503" in caught.value.messages[0]
    assert caught.value.fallback_allowed


async def test_cc_error_message_is_retried(nursery: trio.Nursery, tmp_path: Path) -> None:
    """An error_message response with error OK makes the launcher send the Exec again."""
    project = make_project(tmp_path / "src")

    def script(request: goma_pb2.ExecReq, call: int) -> Reply:
        if call == 0:
            response = goma_pb2.ExecResp(error_message=["backend busy"])
            return Reply(body=response.SerializeToString())
        return result_reply(request, outputs=object_output())

    goma, server = await start_goma(nursery, script)

    with trio.fail_after(COMPILE_TIME_CAP_SECONDS):
        outcome = await run_remote_compile(
            options_for(server, tmp_path / "state"), COMPILE, str(project)
        )

    assert [request.requester_info.retry for request in goma.exec_requests] == [0, 1]
    assert outcome.exit_status == 0


async def test_cc_bad_request_not_retried(nursery: trio.Nursery, tmp_path: Path) -> None:
    """BAD_REQUEST without binary_hash ends the compile after one call: no compiler."""
    project = make_project(tmp_path / "src")

    def script(request: goma_pb2.ExecReq, call: int) -> Reply:
        spec = echoed_spec(request)
        spec.ClearField("binary_hash")
        response = goma_pb2.ExecResp(
            error=goma_pb2.ExecResp.BAD_REQUEST,
            result=goma_pb2.ExecResult(exit_status=-1, command_spec=spec),
        )
        return Reply(body=response.SerializeToString())

    goma, server = await start_goma(nursery, script)

    with trio.fail_after(COMPILE_TIME_CAP_SECONDS), pytest.raises(RemoteCompileError) as caught:
        await run_remote_compile(options_for(server, tmp_path / "state"), COMPILE, str(project))

    assert len(goma.exec_requests) == 1
    assert "no matching compiler on the server" in caught.value.messages[0]


async def test_cc_hermetic_version_mismatch(nursery: trio.Nursery, tmp_path: Path) -> None:
    """A result from a compiler with another version fails the compile, naming the field."""
    project = make_project(tmp_path / "src")

    def script(request: goma_pb2.ExecReq, call: int) -> Reply:
        reply = result_reply(request, outputs=object_output())
        response = goma_pb2.ExecResp.FromString(reply.body)
        response.result.command_spec.version = "99[other]"
        return Reply(body=response.SerializeToString())

    goma, server = await start_goma(nursery, script)

    with trio.fail_after(COMPILE_TIME_CAP_SECONDS), pytest.raises(RemoteCompileError) as caught:
        await run_remote_compile(options_for(server, tmp_path / "state"), COMPILE, str(project))

    assert len(goma.exec_requests) == 1
    assert "version" in caught.value.messages[0]
    assert not (project / "a.o").exists()


async def test_cc_second_compile_sends_keys_only(nursery: trio.Nursery, tmp_path: Path) -> None:
    """After a clean compile, the same old inputs go by key only and tiny ones embedded."""
    project = make_project(tmp_path / "src")
    backdate(project / "a.c")
    goma, server = await start_goma(
        nursery, lambda request, _: result_reply(request, outputs=object_output())
    )
    options = options_for(server, tmp_path / "state")

    with trio.fail_after(COMPILE_TIME_CAP_SECONDS):
        await run_remote_compile(options, COMPILE, str(project))
        await run_remote_compile(options, COMPILE, str(project))

    first, second = goma.exec_requests
    assert not input_named(first, "big.h").HasField("content")
    assert not input_named(second, "big.h").HasField("content")
    assert input_named(second, "a.c").HasField("content")


async def test_cc_outputs_written_with_umask(nursery: trio.Nursery, tmp_path: Path) -> None:
    """Outputs get 0o666, or 0o777 when executable, minus the process umask."""
    project = make_project(tmp_path / "src")

    def script(request: goma_pb2.ExecReq, call: int) -> Reply:
        reply = result_reply(request, outputs=object_output())
        response = goma_pb2.ExecResp.FromString(reply.body)
        response.result.output.add(filename="tool", blob=file_blob(b"#!"), is_executable=True)
        return Reply(body=response.SerializeToString())

    _, server = await start_goma(nursery, script)
    mask = os.umask(0o022)
    try:
        with trio.fail_after(COMPILE_TIME_CAP_SECONDS):
            await run_remote_compile(options_for(server, tmp_path / "state"), COMPILE, str(project))
    finally:
        os.umask(mask)

    assert stat.S_IMODE((project / "a.o").stat().st_mode) == 0o644
    assert stat.S_IMODE((project / "tool").stat().st_mode) == 0o755


async def test_cc_main_passes_exit_status_and_output(nursery: trio.Nursery, tmp_path: Path) -> None:
    """The launcher process prints remote stdout/stderr unchanged and exits with its status."""
    project = make_project(tmp_path / "src")
    remote_stdout = b"remote out\x00\xff\n"
    remote_stderr = b"a.c:1: warning: remote\n"
    _, server = await start_goma(
        nursery,
        lambda request, _: result_reply(
            request, exit_status=3, stdout=remote_stdout, stderr=remote_stderr
        ),
    )
    report = tmp_path / "report.json"
    env = {
        **os.environ,
        "PYTHONPATH": REPO_ROOT,
        "GOMAPROXY_CLIENT_STATE_DIR": str(tmp_path / "state"),
    }
    command = [
        sys.executable, "-m", "gomaproxy.client.cc",
        "--server", f"http://127.0.0.1:{server.port}", "--report", str(report),
        "--", *COMPILE,
    ]  # fmt: skip

    with trio.fail_after(COMPILE_TIME_CAP_SECONDS):
        process = await trio.run_process(
            command,
            cwd=str(project),
            env=env,
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )

    summary = json.loads(report.read_text())
    assert process.returncode == 3
    assert process.stdout == remote_stdout
    assert process.stderr == remote_stderr
    assert summary["exit_status"] == 3
    assert summary["cache_hit"] == "NO_CACHE"
    assert summary["cache_key"] == "key-1"
    assert summary["exec_calls"] == 1
    assert summary["missing_rounds"] == 0
    assert summary["uploaded_chunks"] == 0
    assert summary["embedded_bytes"] > 0
    assert summary["outputs"] == []


async def test_cc_main_reports_failure_on_stderr(nursery: trio.Nursery, tmp_path: Path) -> None:
    """A failed remote compile prints one prefixed line per message and exits 1."""
    project = make_project(tmp_path / "src")
    _, server = await start_goma(nursery, lambda _request, _call: Reply(status=403))
    env = {**os.environ, "PYTHONPATH": REPO_ROOT, "GOMAPROXY_CLIENT_STATE_DIR": str(tmp_path)}
    command = [
        sys.executable, "-m", "gomaproxy.client.cc",
        "--server", f"http://127.0.0.1:{server.port}", "--", *COMPILE,
    ]  # fmt: skip

    with trio.fail_after(COMPILE_TIME_CAP_SECONDS):
        process = await trio.run_process(
            command,
            cwd=str(project),
            env=env,
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )

    assert process.returncode == 1
    assert process.stdout == b""
    assert process.stderr.startswith(b"gomaproxy cc: goma server returned HTTP 403")
    assert process.stderr.count(b"\n") == 1


def test_retry_delay_grows_and_caps() -> None:
    """Waits start at the base, grow 1.4 times per failure, stop at 5 s, and vary 60-100 %."""
    rng = random.Random(3)

    for failures, ceiling in [(1, 0.5), (2, 0.7), (3, 0.98), (10, 5.0), (30, 5.0)]:
        delays = [retry_delay(failures, 0.5, rng) for _ in range(200)]
        assert min(delays) >= 0.6 * ceiling - 1e-9
        assert max(delays) <= ceiling + 1e-9


def test_parse_command_line_splits_at_double_dash() -> None:
    """Options come before '--', the compile command after it, argv[0] kept as typed."""
    options, command = parse_command_line(
        ["--server", "http://[::1]:9000", "--report", "r.json", "-v", "--", "cc", "-c", "-o", "x"],
        environ={},
    )

    assert options.server == "http://[::1]:9000"
    assert options.report == Path("r.json")
    assert options.verbose
    assert not options.local_fallback
    assert options.url_prefix == "/cxx-compiler-service"
    assert command == ["cc", "-c", "-o", "x"]


def test_parse_command_line_server_default() -> None:
    """The server comes from GOMAPROXY_SERVER, else the local default."""
    from_env, _ = parse_command_line(["--", "gcc"], environ={"GOMAPROXY_SERVER": "http://h:1"})
    default, _ = parse_command_line(["--", "gcc"], environ={})

    assert from_env.server == "http://h:1"
    assert default.server == DEFAULT_SERVER


@pytest.mark.parametrize(
    "argv",
    [["gcc", "-c", "a.c"], ["--server", "http://h"], ["--"], ["--bogus", "--", "gcc"]],
    ids=["no-double-dash", "options-only", "empty-command", "unknown-option"],
)
def test_parse_command_line_usage_errors(argv: list[str]) -> None:
    """A missing '--', an empty command or an unknown option exits with status 2."""
    with pytest.raises(SystemExit) as caught:
        parse_command_line(argv, environ={})

    assert caught.value.code == 2
