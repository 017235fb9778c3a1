"""The goma HTTP frontend served by the real hypercorn server on 127.0.0.1.

Each test starts ``serve_http`` on port 0 with recording fake services and talks to it
over a trio TCP stream with h11, the way a goma client would.  Every test is wrapped in
``trio.fail_after`` so that a hang fails instead of blocking the run.
"""

from __future__ import annotations

import functools
import gzip
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, ParamSpec, TypeVar

import h11
import pytest
import trio
from prometheus_client import CollectorRegistry
from structlog.testing import capture_logs

from gomaproxy.errors import BadRequest, Code, GomaProxyError
from gomaproxy.goma.frontend import FrontendLimits, make_app
from gomaproxy.goma.httpserver import serve_http
from gomaproxy.protos import goma_data_pb2 as goma_pb2

_P = ParamSpec("_P")
_R = TypeVar("_R")

TEST_TIME_CAP_S = 15.0
PREFIX = "/cxx-compiler-service"


def time_capped(test: Callable[_P, Awaitable[_R]]) -> Callable[_P, Awaitable[_R]]:
    """Fail the wrapped async test when it runs longer than TEST_TIME_CAP_S."""

    @functools.wraps(test)
    async def capped(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        with trio.fail_after(TEST_TIME_CAP_S):
            return await test(*args, **kwargs)

    return capped


@dataclass
class FakeExecService:
    """Records every ExecReq, then returns ``response``, raises ``error`` or hangs."""

    response: goma_pb2.ExecResp = field(default_factory=lambda: make_exec_resp(b"compiled\n"))
    error: Exception | None = None
    hang: bool = False
    delay_s: float = 0.0
    requests: list[goma_pb2.ExecReq] = field(default_factory=list)
    request_ids: list[str] = field(default_factory=list)
    started: trio.Event = field(default_factory=trio.Event)
    cancelled: trio.Event = field(default_factory=trio.Event)

    async def exec(self, request: goma_pb2.ExecReq, *, request_id: str) -> goma_pb2.ExecResp:
        self.requests.append(request)
        self.request_ids.append(request_id)
        self.started.set()
        if self.error is not None:
            raise self.error
        try:
            if self.hang:
                await trio.sleep_forever()
            await trio.sleep(self.delay_s)
        except trio.Cancelled:
            self.cancelled.set()
            raise
        return self.response


@dataclass
class FakeFileService:
    """Records StoreFile and LookupFile requests; ``error`` is raised by both."""

    error: Exception | None = None
    stored: list[goma_pb2.StoreFileReq] = field(default_factory=list)
    looked_up: list[goma_pb2.LookupFileReq] = field(default_factory=list)

    async def store_file(self, request: goma_pb2.StoreFileReq) -> goma_pb2.StoreFileResp:
        self.stored.append(request)
        if self.error is not None:
            raise self.error
        return goma_pb2.StoreFileResp(hash_key=[f"key{i}" for i in range(len(request.blob))])

    async def lookup_file(self, request: goma_pb2.LookupFileReq) -> goma_pb2.LookupFileResp:
        self.looked_up.append(request)
        if self.error is not None:
            raise self.error
        blob = goma_pb2.FileBlob(blob_type=goma_pb2.FileBlob.FILE, content=b"data")
        return goma_pb2.LookupFileResp(blob=[blob for _ in request.hash_key])


def make_exec_req() -> goma_pb2.ExecReq:
    request = goma_pb2.ExecReq(
        command_spec=goma_pb2.CommandSpec(name="gcc", version="12.2.0", target="x86_64-linux-gnu"),
        arg=["gcc", "-c", "hello.c", "-o", "hello.o"],
        env=["PATH=/usr/bin"],
        cwd="/src",
    )
    request.input.add(filename="hello.c", hash_key="ab" * 32)
    return request


def make_exec_resp(stdout: bytes) -> goma_pb2.ExecResp:
    return goma_pb2.ExecResp(result=goma_pb2.ExecResult(exit_status=0, stdout_buffer=stdout))


@dataclass
class Reply:
    """One HTTP response as the client saw it."""

    status: int
    headers: dict[str, str]
    body: bytes


class HttpClient:
    """An HTTP/1.1 client on one kept-alive TCP connection."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self._stream = stream
        self._connection = h11.Connection(h11.CLIENT)

    async def request(
        self,
        method: str,
        target: str,
        body: bytes = b"",
        headers: list[tuple[str, str]] | None = None,
        *,
        chunked: bool = False,
    ) -> Reply:
        all_headers = [("Host", "localhost"), *(headers or [])]
        if chunked:
            all_headers.append(("Transfer-Encoding", "chunked"))
        else:
            all_headers.append(("Content-Length", str(len(body))))

        await self._send(h11.Request(method=method, target=target, headers=all_headers))
        if body:
            await self._send(h11.Data(data=body))
        await self._send(h11.EndOfMessage())
        return await self._receive_reply()

    async def receive_reply(self) -> Reply:
        """Read the response to a request sent with ``send_request_only``."""
        return await self._receive_reply()

    async def send_request_only(self, target: str, body: bytes) -> None:
        """Send a complete POST without reading the response."""
        headers = [("Host", "localhost"), ("Content-Length", str(len(body)))]
        await self._send(h11.Request(method="POST", target=target, headers=headers))
        await self._send(h11.Data(data=body))
        await self._send(h11.EndOfMessage())

    async def aclose(self) -> None:
        await self._stream.aclose()

    async def _send(self, event: Any) -> None:
        data = self._connection.send(event)
        if data:
            await self._stream.send_all(data)

    async def _receive_reply(self) -> Reply:
        response: h11.Response | None = None
        body = bytearray()
        while True:
            event = self._connection.next_event()
            if event is h11.NEED_DATA:
                self._connection.receive_data(await self._stream.receive_some(65536))
            elif isinstance(event, h11.Response):
                response = event
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                break
            elif isinstance(event, h11.ConnectionClosed):
                raise AssertionError("the server closed the connection before responding")

        assert response is not None
        if self._connection.our_state is h11.DONE and self._connection.their_state is h11.DONE:
            self._connection.start_next_cycle()

        headers = {name.decode().lower(): value.decode() for name, value in response.headers}
        return Reply(response.status_code, headers, bytes(body))


@dataclass
class Server:
    """A running frontend and the fakes behind it."""

    port: int
    exec_service: FakeExecService
    file_service: FakeFileService
    registry: CollectorRegistry

    async def connect(self) -> HttpClient:
        return HttpClient(await trio.open_tcp_stream("127.0.0.1", self.port))

    async def post(
        self, route: str, body: bytes = b"", headers: list[tuple[str, str]] | None = None
    ) -> Reply:
        client = await self.connect()
        try:
            return await client.request("POST", PREFIX + route, body, headers)
        finally:
            await client.aclose()

    async def get(self, target: str) -> Reply:
        client = await self.connect()
        try:
            return await client.request("GET", target)
        finally:
            await client.aclose()


StartServer = Callable[..., Awaitable[Server]]


@pytest.fixture
def start_server(nursery: trio.Nursery) -> StartServer:
    """Return a function that serves a frontend on 127.0.0.1 port 0 in the test nursery."""

    async def start(
        *,
        exec_service: FakeExecService | None = None,
        file_service: FakeFileService | None = None,
        limits: FrontendLimits | None = None,
        backend_availability: Callable[[], str] | None = None,
    ) -> Server:
        exec_service = exec_service or FakeExecService()
        file_service = file_service or FakeFileService()
        registry = CollectorRegistry()
        app = make_app(
            exec_service,
            file_service,
            limits=limits or FrontendLimits(),
            metrics_registry=registry,
            backend_availability=backend_availability,
        )
        serve = functools.partial(serve_http, app, host="127.0.0.1", port=0, graceful_timeout_s=0.5)
        port = await nursery.start(serve)
        return Server(port, exec_service, file_service, registry)

    return start


@time_capped
async def test_exec_gzip_body_reaches_service(start_server: StartServer) -> None:
    """A gzip ExecReq body is decoded and handed to the exec service field for field."""
    server = await start_server()
    body = gzip.compress(make_exec_req().SerializeToString())

    reply = await server.post("/e", body, [("Content-Encoding", "gzip")])

    assert reply.status == 200
    assert len(server.exec_service.requests) == 1
    received = server.exec_service.requests[0]
    assert received.command_spec.name == "gcc"
    assert received.command_spec.version == "12.2.0"
    assert list(received.arg) == ["gcc", "-c", "hello.c", "-o", "hello.o"]
    assert received.cwd == "/src"
    assert received.input[0].hash_key == "ab" * 32
    assert len(server.exec_service.request_ids[0]) == 16


@time_capped
async def test_exec_goma_deflate_body_accepted(start_server: StartServer) -> None:
    """A goma deflate body, zlib data without its header but with the Adler-32, decodes."""
    server = await start_server()
    serialized = make_exec_req().SerializeToString()
    body = zlib.compress(serialized, 3)[2:]
    assert body[-4:] == zlib.adler32(serialized).to_bytes(4, "big")

    reply = await server.post("/e", body, [("Content-Encoding", "deflate")])

    assert reply.status == 200
    assert server.exec_service.requests == [make_exec_req()]


@pytest.mark.parametrize(
    "encoding_headers",
    [[], [("Content-Encoding", "identity")]],
    ids=["header_absent", "identity"],
)
@time_capped
async def test_exec_uncompressed_body_accepted(
    start_server: StartServer, encoding_headers: list[tuple[str, str]]
) -> None:
    """An uncompressed body is accepted with or without Content-Encoding: identity."""
    server = await start_server()

    reply = await server.post("/e", make_exec_req().SerializeToString(), encoding_headers)

    assert reply.status == 200
    assert server.exec_service.requests == [make_exec_req()]


@time_capped
async def test_exec_query_string_ignored(start_server: StartServer) -> None:
    """A query string after the route does not change routing."""
    server = await start_server()

    reply = await server.post("/e?foo=bar", make_exec_req().SerializeToString())

    assert reply.status == 200
    assert len(server.exec_service.requests) == 1


@time_capped
async def test_exec_response_gzip_when_accepted(start_server: StartServer) -> None:
    """A client that accepts gzip gets a gzip body with a matching Content-Encoding."""
    server = await start_server()

    reply = await server.post(
        "/e", make_exec_req().SerializeToString(), [("Accept-Encoding", "gzip")]
    )

    assert reply.status == 200
    assert reply.headers["content-encoding"] == "gzip"
    assert reply.headers["content-type"] == "binary/x-protocol-buffer"
    decoded = goma_pb2.ExecResp.FromString(gzip.decompress(reply.body))
    assert decoded.result.stdout_buffer == b"compiled\n"


@time_capped
async def test_exec_response_identity_by_default(start_server: StartServer) -> None:
    """A client that sends no Accept-Encoding gets an uncompressed body."""
    server = await start_server()

    reply = await server.post("/e", make_exec_req().SerializeToString())

    assert reply.status == 200
    assert reply.headers.get("content-encoding", "identity") == "identity"
    assert reply.headers["content-type"] == "binary/x-protocol-buffer"
    assert goma_pb2.ExecResp.FromString(reply.body) == make_exec_resp(b"compiled\n")


@pytest.mark.parametrize(
    ("route", "body"),
    [
        ("/ping", b""),
        ("/e", make_exec_req().SerializeToString()),
        ("/s", goma_pb2.StoreFileReq().SerializeToString()),
        ("/l", goma_pb2.LookupFileReq(hash_key=["k"]).SerializeToString()),
        ("/sl", b""),
    ],
    ids=["ping", "exec", "store_file", "lookup_file", "save_log"],
)
@time_capped
async def test_ok_response_advertises_accept_encoding(
    start_server: StartServer, route: str, body: bytes
) -> None:
    """Every 200 carries Accept-Encoding: gzip, deflate, which keeps clients compressing."""
    server = await start_server()

    reply = await server.post(route, body)

    assert reply.status == 200
    assert reply.headers["accept-encoding"] == "gzip, deflate"


@time_capped
async def test_exec_unsupported_content_encoding_is_415(start_server: StartServer) -> None:
    """A Content-Encoding other than gzip, deflate or identity gets a 415 response."""
    server = await start_server()

    reply = await server.post("/e", b"\x00\x01", [("Content-Encoding", "br")])

    assert reply.status == 415
    assert b"br" in reply.body
    assert server.exec_service.requests == []


@time_capped
async def test_exec_garbage_gzip_is_400(start_server: StartServer) -> None:
    """A body labelled gzip that is not gzip data gets a 400 response."""
    server = await start_server()

    reply = await server.post("/e", b"this is not gzip", [("Content-Encoding", "gzip")])

    assert reply.status == 400
    assert server.exec_service.requests == []


@time_capped
async def test_exec_unparsable_body_is_400(start_server: StartServer) -> None:
    """A body that is not a serialized ExecReq gets a 400 response naming ExecReq."""
    server = await start_server()

    reply = await server.post("/e", b"\xff\xff\xff\xff")

    assert reply.status == 400
    assert reply.headers["content-type"].startswith("text/plain")
    assert b"ExecReq" in reply.body
    assert server.exec_service.requests == []


@time_capped
async def test_exec_missing_command_spec_is_400(start_server: StartServer) -> None:
    """An ExecReq without its required command_spec gets a 400 response naming the field."""
    server = await start_server()
    body = goma_pb2.ExecReq(arg=["gcc", "-c", "a.c"]).SerializePartialToString()

    reply = await server.post("/e", body)

    assert reply.status == 400
    assert b"ExecReq" in reply.body
    assert b"command_spec" in reply.body
    assert server.exec_service.requests == []


@time_capped
async def test_exec_oversized_content_length_is_413(start_server: StartServer) -> None:
    """A Content-Length above max_body_bytes gets a 413 response."""
    server = await start_server(limits=FrontendLimits(max_body_bytes=1024))

    reply = await server.post("/e", b"\x00" * 4096)

    assert reply.status == 413
    assert reply.headers["connection"] == "close"
    assert server.exec_service.requests == []


@time_capped
async def test_exec_oversized_chunked_body_is_413(start_server: StartServer) -> None:
    """A chunked body is rejected with 413 once the bytes received pass max_body_bytes."""
    server = await start_server(limits=FrontendLimits(max_body_bytes=1024))
    client = await server.connect()

    reply = await client.request("POST", PREFIX + "/e", b"\x00" * 4096, chunked=True)
    await client.aclose()

    assert reply.status == 413
    assert server.exec_service.requests == []


@time_capped
async def test_exec_oversized_decoded_body_is_413(start_server: StartServer) -> None:
    """A small gzip body that inflates past max_decoded_bytes gets a 413 response."""
    server = await start_server(limits=FrontendLimits(max_decoded_bytes=64 * 1024))
    body = gzip.compress(b"\x00" * (1024 * 1024))

    reply = await server.post("/e", body, [("Content-Encoding", "gzip")])

    assert reply.status == 413
    assert server.exec_service.requests == []


@time_capped
async def test_exec_large_body_accepted(start_server: StartServer) -> None:
    """An uncompressed ExecReq of about 60 MiB passes hypercorn and the default limits."""
    server = await start_server()
    request = make_exec_req()
    blob = goma_pb2.FileBlob(blob_type=goma_pb2.FileBlob.FILE, content=b"x" * (60 * 1024 * 1024))
    request.input.add(filename="big.h", hash_key="cd" * 32, content=blob)

    reply = await server.post("/e", request.SerializeToString())

    assert reply.status == 200
    assert len(server.exec_service.requests[0].input[1].content.content) == 60 * 1024 * 1024


@time_capped
async def test_unknown_path_is_404(start_server: StartServer) -> None:
    """A path that is not a route gets a 404 response."""
    server = await start_server()

    reply = await server.post("/nope", b"")

    assert reply.status == 404


@time_capped
async def test_get_on_exec_route_is_405(start_server: StartServer) -> None:
    """GET on a goma route gets a 405 response and an Allow header naming POST."""
    server = await start_server()

    reply = await server.get(PREFIX + "/e")

    assert reply.status == 405
    assert reply.headers["allow"] == "POST"


@time_capped
async def test_ping_returns_ok(start_server: StartServer) -> None:
    """POST to /ping with an empty body gets a 200 response and ok."""
    server = await start_server()

    reply = await server.post("/ping")

    assert reply.status == 200
    assert reply.body == b"ok\n"


@time_capped
async def test_save_log_returns_empty_response(start_server: StartServer) -> None:
    """POST to /sl is accepted and gets an empty SaveLogResp."""
    server = await start_server()
    body = gzip.compress(b"\x0a\x03abc")

    reply = await server.post("/sl", body, [("Content-Encoding", "gzip")])

    assert reply.status == 200
    assert reply.body == goma_pb2.SaveLogResp().SerializeToString()


@time_capped
async def test_healthz_returns_ok(start_server: StartServer) -> None:
    """GET /healthz outside the prefix gets a 200 response and ok."""
    server = await start_server()

    reply = await server.get("/healthz")

    assert reply.status == 200
    assert reply.body == b"ok\n"


@time_capped
async def test_healthz_reports_unavailable_backend(start_server: StartServer) -> None:
    """GET /healthz stays 200 while the backend is unavailable and names its state."""
    server = await start_server(backend_availability=lambda: "unavailable")

    reply = await server.get("/healthz")

    assert reply.status == 200
    assert reply.body == b"ok\nbackend: unavailable\n"


@time_capped
async def test_metrics_exposes_request_counter(start_server: StartServer) -> None:
    """GET /metrics lists the request counter with the ping that came before it."""
    server = await start_server()
    await server.post("/ping")

    reply = await server.get("/metrics")

    assert reply.status == 200
    assert b'gomaproxy_http_requests_total{route="ping",status="200"} 1.0' in reply.body
    assert b"gomaproxy_http_request_duration_seconds_bucket" in reply.body


@time_capped
async def test_keep_alive_reuses_connection(
    start_server: StartServer,
) -> None:
    """Two requests on one connection both succeed without a reconnect."""
    server = await start_server()
    client = await server.connect()

    first = await client.request("POST", PREFIX + "/ping")
    second = await client.request("POST", PREFIX + "/e", make_exec_req().SerializeToString())
    await client.aclose()

    assert first.status == 200
    assert second.status == 200
    assert "connection" not in second.headers
    assert len(server.exec_service.requests) == 1


@time_capped
async def test_store_file_reaches_file_service(start_server: StartServer) -> None:
    """A StoreFileReq reaches the file service and its keys come back."""
    server = await start_server()
    blob = goma_pb2.FileBlob(blob_type=goma_pb2.FileBlob.FILE, content=b"int x;\n")
    body = goma_pb2.StoreFileReq(blob=[blob, blob]).SerializeToString()

    reply = await server.post("/s", body)

    assert reply.status == 200
    assert server.file_service.stored[0].blob[0].content == b"int x;\n"
    assert list(goma_pb2.StoreFileResp.FromString(reply.body).hash_key) == ["key0", "key1"]


@time_capped
async def test_lookup_file_reaches_file_service(start_server: StartServer) -> None:
    """A LookupFileReq reaches the file service and its blobs come back."""
    server = await start_server()
    body = goma_pb2.LookupFileReq(hash_key=["k1"]).SerializeToString()

    reply = await server.post("/l", body)

    assert reply.status == 200
    assert list(server.file_service.looked_up[0].hash_key) == ["k1"]
    assert goma_pb2.LookupFileResp.FromString(reply.body).blob[0].content == b"data"


@time_capped
async def test_store_file_bad_request_is_400(start_server: StartServer) -> None:
    """BadRequest from the file service becomes a 400 response with its message."""
    file_service = FakeFileService(error=BadRequest("blob 0 has no content"))
    server = await start_server(file_service=file_service)

    reply = await server.post("/s", goma_pb2.StoreFileReq().SerializeToString())

    assert reply.status == 400
    assert b"blob 0 has no content" in reply.body


@time_capped
async def test_exec_bad_request_is_400(start_server: StartServer) -> None:
    """BadRequest from the exec service becomes a 400 response with its message."""
    exec_service = FakeExecService(error=BadRequest("no compiler matches gcc 12.2.0"))
    server = await start_server(exec_service=exec_service)

    reply = await server.post("/e", make_exec_req().SerializeToString())

    assert reply.status == 400
    assert b"no compiler matches gcc 12.2.0" in reply.body


@time_capped
async def test_exec_unavailable_is_503(start_server: StartServer) -> None:
    """A GomaProxyError with code UNAVAILABLE becomes a 503 response."""
    error = GomaProxyError("backend is restarting", code=Code.UNAVAILABLE)
    server = await start_server(exec_service=FakeExecService(error=error))

    reply = await server.post("/e", make_exec_req().SerializeToString())

    assert reply.status == 503
    assert b"backend is restarting" in reply.body


@time_capped
async def test_exec_unexpected_error_hidden_500(start_server: StartServer) -> None:
    """An unexpected exception becomes a 500 response whose body hides its text."""
    error = RuntimeError("secret internal detail /var/lib/x")
    server = await start_server(exec_service=FakeExecService(error=error))

    with capture_logs() as logs:
        reply = await server.post("/e", make_exec_req().SerializeToString())

    assert reply.status == 500
    assert b"secret" not in reply.body
    assert b"RuntimeError" not in reply.body
    assert any(entry["event"] == "request_handler_failed" for entry in logs)


@time_capped
async def test_exec_incomplete_response_is_500(start_server: StartServer) -> None:
    """An ExecResp without its required exit_status fails serialization and gives 500."""
    response = goma_pb2.ExecResp()
    response.result.stdout_buffer = b"no exit status"
    server = await start_server(exec_service=FakeExecService(response=response))

    reply = await server.post("/e", make_exec_req().SerializeToString())

    assert reply.status == 500


@time_capped
async def test_exec_past_deadline_is_504(start_server: StartServer) -> None:
    """An exec call that outlives exec_timeout_s is cancelled and the client gets a 504."""
    exec_service = FakeExecService(hang=True)
    server = await start_server(
        exec_service=exec_service, limits=FrontendLimits(exec_timeout_s=0.2)
    )

    reply = await server.post("/e", make_exec_req().SerializeToString())

    assert reply.status == 504
    assert exec_service.cancelled.is_set()


@time_capped
async def test_exec_client_disconnect_cancels_call(start_server: StartServer) -> None:
    """Closing the connection while Exec runs cancels the exec service call."""
    exec_service = FakeExecService(hang=True)
    server = await start_server(exec_service=exec_service)
    client = await server.connect()

    with capture_logs() as logs:
        await client.send_request_only(PREFIX + "/e", make_exec_req().SerializeToString())
        await exec_service.started.wait()
        await client.aclose()
        await exec_service.cancelled.wait()
        await _wait_for_event(logs, "http_request_finished")

    finished = _events_named(logs, "http_request_finished")[0]
    assert finished["client_disconnected"] is True
    assert finished["status"] == 499


async def _serve_in_scope(
    app_exec_service: FakeExecService,
    server_scope: trio.CancelScope,
    graceful_timeout_s: float,
    *,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    app = make_app(app_exec_service, FakeFileService(), metrics_registry=CollectorRegistry())
    with server_scope:
        await serve_http(
            app,
            host="127.0.0.1",
            port=0,
            graceful_timeout_s=graceful_timeout_s,
            task_status=task_status,
        )


@time_capped
async def test_serve_http_cancel_finishes_running_request() -> None:
    """Cancelling the server lets a running request finish within the grace period."""
    exec_service = FakeExecService(delay_s=0.3)
    server_scope = trio.CancelScope()

    async with trio.open_nursery() as nursery:
        port = await nursery.start(_serve_in_scope, exec_service, server_scope, 5.0)
        client = HttpClient(await trio.open_tcp_stream("127.0.0.1", port))
        await client.send_request_only(PREFIX + "/e", make_exec_req().SerializeToString())
        await exec_service.started.wait()
        server_scope.cancel()

        reply = await client.receive_reply()
        await client.aclose()

    assert reply.status == 200
    assert not exec_service.cancelled.is_set()


@time_capped
async def test_serve_http_cancel_bounded_by_grace() -> None:
    """A request that never ends is cancelled once the grace period is over."""
    exec_service = FakeExecService(hang=True)
    server_scope = trio.CancelScope()

    async with trio.open_nursery() as nursery:
        port = await nursery.start(_serve_in_scope, exec_service, server_scope, 0.2)
        client = HttpClient(await trio.open_tcp_stream("127.0.0.1", port))
        await client.send_request_only(PREFIX + "/e", make_exec_req().SerializeToString())
        await exec_service.started.wait()
        cancelled_at = trio.current_time()
        server_scope.cancel()

    await client.aclose()
    assert exec_service.cancelled.is_set()
    assert trio.current_time() - cancelled_at < 0.2 + 1.0 + 0.5


@time_capped
async def test_request_finished_log_line(start_server: StartServer) -> None:
    """Each request ends with one http_request_finished event carrying status and sizes."""
    server = await start_server()
    body = make_exec_req().SerializeToString()

    with capture_logs() as logs:
        reply = await server.post("/e", body)
        await _wait_for_event(logs, "http_request_finished")

    finished = _events_named(logs, "http_request_finished")
    assert len(finished) == 1
    assert finished[0]["status"] == 200
    assert finished[0]["body_bytes_in"] == len(body)
    assert finished[0]["body_bytes_out"] == len(reply.body)
    assert finished[0]["duration_ms"] >= 0


def _events_named(logs: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [entry for entry in logs if entry["event"] == name]


async def _wait_for_event(logs: list[dict[str, Any]], name: str) -> None:
    # The server task logs after the response bytes are sent, so the client can get
    # there first.  structlog offers no hook to wait on, hence the polling.
    while not _events_named(logs, name):  # noqa: ASYNC110
        await trio.sleep(0.01)
