"""The gRPC backend's circuit breaker against a real port on 127.0.0.1.

The backend first calls a port where nothing listens, so every connection is refused,
and later a ``reapi_server`` serving a LocalBackend on that same port.  A counting
wrapper around the bridge channel records every call that was sent towards the server,
so the tests check that an open breaker sends no call.  The breaker reads a fake clock
that the test moves forward, so no test waits for a probe interval.
"""

from __future__ import annotations

import functools
import re
from collections.abc import AsyncIterable, AsyncIterator
from contextlib import aclosing, asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import structlog.testing
import trio
from prometheus_client import CollectorRegistry

from gomaproxy.config import BackendConfig
from gomaproxy.errors import BackendError, Code
from gomaproxy.grpcapi.reapi_server import serve_backend
from gomaproxy.local.backend import LocalBackend
from gomaproxy.protos import remote_execution_pb2 as re_pb2
from gomaproxy.remote import bridge
from gomaproxy.remote.breaker import CircuitOpenError
from gomaproxy.remote.grpc_backend import GrpcBackend
from gomaproxy.remote.retry import RetryPolicy


class CountingChannel:
    """Passes every call to a bridge channel and records the method of each one."""

    def __init__(self, inner: bridge.Channel) -> None:
        self.inner = inner
        self.methods: list[str] = []

    async def unary(self, method: Any, request: Any, **settings: Any) -> Any:
        self.methods.append(method.name)
        return await self.inner.unary(method, request, **settings)

    async def server_stream(self, method: Any, request: Any, **settings: Any) -> AsyncIterator[Any]:
        self.methods.append(method.name)
        async with aclosing(self.inner.server_stream(method, request, **settings)) as responses:
            async for response in responses:
                yield response

    async def client_stream(
        self, method: Any, requests: AsyncIterable[Any], **settings: Any
    ) -> Any:
        self.methods.append(method.name)
        return await self.inner.client_stream(method, requests, **settings)

    async def close(self) -> None:
        await self.inner.close()


class FakeClock:
    """A time source that moves only when the test moves it."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def _free_port() -> int:
    with trio.socket.socket() as probe:
        await probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@asynccontextmanager
async def breaker_client(
    port: int,
    clock: FakeClock,
    registry: CollectorRegistry,
    policy: RetryPolicy | None = None,
    **settings: Any,
) -> AsyncIterator[tuple[GrpcBackend, CountingChannel]]:
    """Open a GrpcBackend whose breaker opens after two refused calls; no retries by default."""
    config = BackendConfig(
        address=f"grpc://127.0.0.1:{port}",
        retry_budget_s=0,
        breaker_failure_threshold=2,
        breaker_window_s=60,
        breaker_probe_interval_s=5,
        **settings,
    )
    async with bridge.open_channel("127.0.0.1", port) as channel:
        counting = CountingChannel(channel)
        backend = GrpcBackend(
            counting,  # type: ignore[arg-type]
            config,
            policy=policy,
            registry=registry,
            clock=clock,
        )
        yield backend, counting


def _circuit_open(registry: CollectorRegistry) -> float | None:
    return registry.get_sample_value("gomaproxy_backend_circuit_open")


async def _find_missing(backend: GrpcBackend) -> re_pb2.FindMissingBlobsResponse:
    return await backend.find_missing_blobs(re_pb2.FindMissingBlobsRequest())


@pytest.fixture
async def local_backend(tmp_path: Path) -> AsyncIterator[LocalBackend]:
    backend = LocalBackend(tmp_path / "server", cas_max_bytes=1 << 30, registry=CollectorRegistry())
    async with backend:
        yield backend


async def test_breaker_opens_then_closes_on_server(local_backend: LocalBackend) -> None:
    """Refused calls open the breaker, calls then fail unsent, and a probe closes it."""
    port = await _free_port()
    clock = FakeClock()
    registry = CollectorRegistry()

    with trio.fail_after(30), structlog.testing.capture_logs() as logs:
        async with breaker_client(port, clock, registry) as (backend, counting):
            for _ in range(2):
                with pytest.raises(BackendError) as refused:
                    await _find_missing(backend)
                assert refused.value.code == Code.UNAVAILABLE
                assert "connection failed" in refused.value.message
            assert counting.methods == ["FindMissingBlobs", "FindMissingBlobs"]
            assert _circuit_open(registry) == 1.0

            clock.now += 1
            with pytest.raises(CircuitOpenError) as rejected:
                await _find_missing(backend)
            assert counting.methods == ["FindMissingBlobs", "FindMissingBlobs"]

            clock.now += 10
            with pytest.raises(CircuitOpenError) as probe_failed:
                await _find_missing(backend)
            assert counting.methods[2:] == ["GetCapabilities"]
            assert backend.availability() == "unavailable"

            async with trio.open_nursery() as nursery:
                await nursery.start(functools.partial(serve_backend, local_backend, port=port))
                clock.now += 10
                response = await _find_missing(backend)
                nursery.cancel_scope.cancel()

            assert counting.methods[3:] == ["GetCapabilities", "FindMissingBlobs"]

    assert rejected.value.code == Code.UNAVAILABLE
    message = rejected.value.message
    assert f"backend grpc://127.0.0.1:{port} is unavailable (circuit open since" in message
    # The probe is due 5 s after opening, jittered by 20%, and 1 s of that has passed.
    next_probe = re.search(r"next probe in ([0-9.]+) s\)", message)
    assert next_probe is not None
    assert 3.0 <= float(next_probe.group(1)) <= 5.0
    assert message.endswith("goma clients compile locally meanwhile")
    assert isinstance(probe_failed.value.__cause__, BackendError)
    assert "next probe in" in probe_failed.value.message

    assert list(response.missing_blob_digests) == []
    assert _circuit_open(registry) == 0.0
    assert backend.availability() == "available"
    events = [entry["event"] for entry in logs]
    assert events.count("backend_circuit_opened") == 1
    assert events.count("backend_circuit_closed") == 1


async def test_breaker_ends_retries_when_opening() -> None:
    """A call retrying a refused connection stops at the first attempt the open breaker rejects."""
    port = await _free_port()
    clock = FakeClock()
    # Short waits between attempts and a budget far longer than the test.
    policy = RetryPolicy(base_delay_s=0.01, max_delay_s=0.02, budget_s=600)

    with trio.fail_after(30):
        async with breaker_client(port, clock, CollectorRegistry(), policy=policy) as (
            backend,
            counting,
        ):
            with pytest.raises(CircuitOpenError) as caught:
                await _find_missing(backend)

    assert caught.value.code == Code.UNAVAILABLE
    assert counting.methods == ["FindMissingBlobs", "FindMissingBlobs"]
