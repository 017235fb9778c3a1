"""Merging of identical Exec requests in flight, through the Adapter and a counting backend.

The backend's Execute gate keeps the first action in flight, and
``wait_all_tasks_blocked`` shows when every other request waits for it, so the tests
order the requests without sleeps.
"""

from __future__ import annotations

import pytest
import structlog
import trio
import trio.testing
from prometheus_client import CollectorRegistry

from gomaproxy.config import ExecConfig
from gomaproxy.digest import DigestKey, digest_of_bytes
from gomaproxy.errors import Code, GomaProxyError
from gomaproxy.exec.adapter import Adapter, Limiters
from gomaproxy.exec.clientpath import PathStyle
from gomaproxy.exec.inflight import Ending, InflightActions, SharedResult
from gomaproxy.exec.inventory import Toolchain
from gomaproxy.goma.fileservice import FileService
from gomaproxy.goma.filestore import MemoryFileStore
from gomaproxy.metrics import ExecMetrics
from gomaproxy.protos import goma_data_pb2 as goma_pb2
from gomaproxy.protos import remote_execution_pb2 as re_pb2
from tests.fakes import FakeBackend, StreamScript
from tests.integration.test_adapter_fake_backend import (
    StaticInventory,
    compile_runner,
    make_request,
)

TIME_CAP_S = 10


def make_adapter(backend: FakeBackend) -> tuple[Adapter, CollectorRegistry]:
    registry = CollectorRegistry()
    config = ExecConfig()
    inventory = StaticInventory(
        Toolchain(argv0="/usr/bin/gcc", path_style=PathStyle.POSIX, platform={"OSFamily": "Linux"})
    )
    adapter = Adapter(
        backend=backend,
        files=FileService(MemoryFileStore(64 * 1024 * 1024)),
        inventory=inventory,
        config=config,
        limiters=Limiters.from_config(config),
        metrics=ExecMetrics(registry),
    )
    return adapter, registry


def merged_total(registry: CollectorRegistry) -> float:
    return registry.get_sample_value("gomaproxy_exec_merged_total") or 0.0


class Requests:
    """Runs Exec requests in a nursery and keeps each one's response or error."""

    def __init__(self, adapter: Adapter, nursery: trio.Nursery) -> None:
        self.adapter = adapter
        self.nursery = nursery
        self.responses: dict[str, goma_pb2.ExecResp] = {}
        self.errors: dict[str, GomaProxyError] = {}
        self.scopes: dict[str, trio.CancelScope] = {}

    def start(self, request_id: str, request: goma_pb2.ExecReq) -> None:
        scope = trio.CancelScope()
        self.scopes[request_id] = scope
        self.nursery.start_soon(self._run, request_id, request, scope)

    async def _run(
        self, request_id: str, request: goma_pb2.ExecReq, scope: trio.CancelScope
    ) -> None:
        with scope:
            try:
                self.responses[request_id] = await self.adapter.exec(request, request_id=request_id)
            except GomaProxyError as exc:
                self.errors[request_id] = exc


def in_flight_digest(backend: FakeBackend) -> DigestKey:
    return DigestKey.of(backend.execute_requests[-1].action_digest)


async def test_inflight_identical_requests_execute_once() -> None:
    """Ten identical requests share one GetActionResult and one Execute."""
    backend = FakeBackend(runner=compile_runner(), execute_gate=trio.Event())
    adapter, registry = make_adapter(backend)

    with trio.fail_after(TIME_CAP_S), structlog.testing.capture_logs() as logs:
        async with trio.open_nursery() as nursery:
            requests = Requests(adapter, nursery)
            for index in range(10):
                requests.start(f"r{index}", make_request())
            await trio.testing.wait_all_tasks_blocked()

            flight = adapter.inflight.get(in_flight_digest(backend))
            assert flight is not None
            assert flight.waiters == 9
            leader = flight.leader_request_id
            backend.execute_gate.set()

    assert backend.calls["Execute"] == 1
    assert backend.calls["GetActionResult"] == 1
    assert backend.executions == 1
    assert requests.errors == {}
    assert len(requests.responses) == 10
    blobs = {r.result.output[0].blob.SerializeToString() for r in requests.responses.values()}
    assert len(blobs) == 1
    for response in requests.responses.values():
        assert response.result.exit_status == 0
        assert response.cache_hit == goma_pb2.ExecResp.NO_CACHE
    assert merged_total(registry) == 9
    assert len(adapter.inflight) == 0

    finished = [entry for entry in logs if entry["event"] == "exec_finished"]
    merged = [entry["exec_merged"] for entry in finished]
    assert sorted(merged, key=str) == [None] + [leader] * 9


async def test_inflight_waiter_uses_own_cwd() -> None:
    """A waiter with another cwd takes the leader's result and converts it at its own root."""
    backend = FakeBackend(runner=compile_runner(), execute_gate=trio.Event())
    adapter, registry = make_adapter(backend)

    with trio.fail_after(TIME_CAP_S), structlog.testing.capture_logs() as logs:
        async with trio.open_nursery() as nursery:
            requests = Requests(adapter, nursery)
            requests.start("alice", make_request(cwd="/home/alice/src/out"))
            await trio.testing.wait_all_tasks_blocked()
            requests.start("bob", make_request(cwd="/home/bob/work/src/out"))
            await trio.testing.wait_all_tasks_blocked()
            backend.execute_gate.set()

    assert backend.calls["Execute"] == 1
    assert merged_total(registry) == 1
    alice, bob = requests.responses["alice"], requests.responses["bob"]
    assert bob.cache_key == alice.cache_key
    assert bob.result.exit_status == 0
    assert [o.filename for o in bob.result.output] == ["obj/a.o"]
    assert bob.result.output[0].blob == alice.result.output[0].blob

    finished = {entry["exec_merged"]: entry for entry in logs if entry["event"] == "exec_finished"}
    assert finished["alice"]["exec_root"] == "/home/bob/work/src"
    assert finished[None]["exec_root"] == "/home/alice/src"
    assert "response_ms" in finished["alice"]


@pytest.mark.parametrize(
    "policy",
    [goma_pb2.ExecReq.LOOKUP_ONLY, goma_pb2.ExecReq.STORE_ONLY],
    ids=["lookup_only", "store_only"],
)
async def test_inflight_uncacheable_requests_run_alone(policy: int) -> None:
    """LOOKUP_ONLY (do_not_cache) and STORE_ONLY requests each run their own Execute."""
    backend = FakeBackend(runner=compile_runner(), execute_gate=trio.Event())
    adapter, registry = make_adapter(backend)

    with trio.fail_after(TIME_CAP_S):
        async with trio.open_nursery() as nursery:
            requests = Requests(adapter, nursery)
            for index in range(3):
                request = make_request()
                request.cache_policy = policy
                requests.start(f"r{index}", request)
            await trio.testing.wait_all_tasks_blocked()

            assert backend.calls["Execute"] == 3
            assert len(adapter.inflight) == 0
            backend.execute_gate.set()

    assert backend.executions == 3
    assert merged_total(registry) == 0
    assert [r.result.exit_status for r in requests.responses.values()] == [0, 0, 0]


async def test_inflight_store_only_not_joined() -> None:
    """A cacheable request started while a STORE_ONLY one runs leads its own flight."""
    backend = FakeBackend(runner=compile_runner(), execute_gate=trio.Event())
    adapter, registry = make_adapter(backend)
    store_only = make_request()
    store_only.cache_policy = goma_pb2.ExecReq.STORE_ONLY

    with trio.fail_after(TIME_CAP_S):
        async with trio.open_nursery() as nursery:
            requests = Requests(adapter, nursery)
            requests.start("store", store_only)
            await trio.testing.wait_all_tasks_blocked()
            requests.start("lookup", make_request())
            await trio.testing.wait_all_tasks_blocked()

            assert backend.calls["Execute"] == 2
            assert len(adapter.inflight) == 1
            backend.execute_gate.set()

    assert merged_total(registry) == 0
    assert len(adapter.inflight) == 0


async def test_inflight_cancelled_leader_hands_over() -> None:
    """Cancelling the leader makes one waiter run the action again for all other waiters."""
    backend = FakeBackend(runner=compile_runner(), execute_gate=trio.Event())
    adapter, registry = make_adapter(backend)

    with trio.fail_after(TIME_CAP_S):
        async with trio.open_nursery() as nursery:
            requests = Requests(adapter, nursery)
            for index in range(5):
                requests.start(f"r{index}", make_request())
            await trio.testing.wait_all_tasks_blocked()

            digest = in_flight_digest(backend)
            first = adapter.inflight.get(digest)
            assert first is not None
            requests.scopes[first.leader_request_id].cancel()
            await trio.testing.wait_all_tasks_blocked()

            second = adapter.inflight.get(digest)
            assert second is not None
            assert second.leader_request_id != first.leader_request_id
            assert second.waiters == 3
            assert first.ending is Ending.HANDOVER
            assert backend.calls["Execute"] == 2
            backend.execute_gate.set()

    assert first.leader_request_id not in requests.responses
    assert requests.errors == {}
    assert len(requests.responses) == 4
    assert [r.result.exit_status for r in requests.responses.values()] == [0, 0, 0, 0]
    assert backend.calls["GetActionResult"] == 2
    assert backend.executions == 1
    assert merged_total(registry) == 3
    assert len(adapter.inflight) == 0


async def test_inflight_cancelled_waiter_leaves_flight() -> None:
    """Cancelling a waiter ends only that request, so the leader and other waiters finish."""
    backend = FakeBackend(runner=compile_runner(), execute_gate=trio.Event())
    adapter, _ = make_adapter(backend)

    with trio.fail_after(TIME_CAP_S):
        async with trio.open_nursery() as nursery:
            requests = Requests(adapter, nursery)
            requests.start("leader", make_request())
            await trio.testing.wait_all_tasks_blocked()
            requests.start("waiter1", make_request())
            requests.start("waiter2", make_request())
            await trio.testing.wait_all_tasks_blocked()

            requests.scopes["waiter1"].cancel()
            await trio.testing.wait_all_tasks_blocked()
            backend.execute_gate.set()

    assert sorted(requests.responses) == ["leader", "waiter2"]
    assert backend.calls["Execute"] == 1
    assert len(adapter.inflight) == 0


async def test_inflight_leader_error_reaches_every_waiter() -> None:
    """An Execute error of the leader is raised, with the same code and message, to all."""
    backend = FakeBackend(
        runner=compile_runner(),
        execute_gate=trio.Event(),
        scripts=[StreamScript(status=Code.FAILED_PRECONDITION)],
    )
    adapter, registry = make_adapter(backend)

    with trio.fail_after(TIME_CAP_S):
        async with trio.open_nursery() as nursery:
            requests = Requests(adapter, nursery)
            for index in range(4):
                requests.start(f"r{index}", make_request())
            await trio.testing.wait_all_tasks_blocked()
            backend.execute_gate.set()

    assert backend.calls["Execute"] == 1
    assert requests.responses == {}
    assert len(requests.errors) == 4
    assert {(e.code, e.message) for e in requests.errors.values()} == {
        (Code.INTERNAL, "exec error: FAILED_PRECONDITION: scripted status")
    }
    assert merged_total(registry) == 3
    assert len(adapter.inflight) == 0


async def test_inflight_leader_missing_inputs_not_shared() -> None:
    """Only the leader gets its failed upload as missing inputs, and waiters run alone."""
    source = b"int a(void) { return 1; }\n"
    backend = FakeBackend(runner=compile_runner(), reject_upload_once={digest_of_bytes(source)})
    adapter, registry = make_adapter(backend)

    with trio.fail_after(TIME_CAP_S), structlog.testing.capture_logs() as logs:
        async with trio.open_nursery() as nursery:
            requests = Requests(adapter, nursery)
            for index in range(4):
                requests.start(f"r{index}", make_request())

    finished = [entry for entry in logs if entry["event"] == "exec_finished"]
    assert sum("merged_wait_ms" in entry for entry in finished) == 3
    assert requests.errors == {}
    missing = [list(r.missing_input) for r in requests.responses.values()]
    assert sorted(missing) == [[], [], [], ["../src/a.c"]]
    statuses = [r.result.exit_status for r in requests.responses.values()]
    assert sorted(statuses) == [-1, 0, 0, 0]
    assert backend.calls["Execute"] == 3
    assert merged_total(registry) == 0
    assert len(adapter.inflight) == 0


async def test_inflight_later_request_starts_new_flight() -> None:
    """A request after the flight settled runs on its own and finds the action cache entry."""
    backend = FakeBackend(runner=compile_runner())
    adapter, registry = make_adapter(backend)

    with trio.fail_after(TIME_CAP_S):
        first = await adapter.exec(make_request(), request_id="first")
        second = await adapter.exec(make_request(), request_id="second")

    assert first.cache_hit == goma_pb2.ExecResp.NO_CACHE
    assert second.cache_hit == goma_pb2.ExecResp.MEM_CACHE
    assert backend.calls["GetActionResult"] == 2
    assert merged_total(registry) == 0
    assert len(adapter.inflight) == 0


async def test_inflight_actions_endings() -> None:
    """Settling removes the flight and wakes waiters with the ending, result or error."""
    inflight = InflightActions()
    digest = digest_of_bytes(b"action")
    shared = SharedResult(re_pb2.ActionResult(), goma_pb2.ExecResp.NO_CACHE, "executed")
    error = GomaProxyError("failed", code=Code.UNAVAILABLE)
    cases = [
        (Ending.RESULT, {"result": shared}),
        (Ending.ERROR, {"error": error}),
        (Ending.HANDOVER, {}),
        (Ending.RUN_ALONE, {}),
    ]

    for ending, outcome in cases:
        flight, leader = inflight.join(digest, "leader")
        joined, waiter_leads = inflight.join(digest, "waiter")
        assert leader
        assert not waiter_leads
        assert joined is flight
        assert flight.waiters == 1

        inflight.settle(flight, ending, **outcome)
        assert flight.settled.is_set()
        assert flight.ending is ending
        assert flight.result is outcome.get("result")
        assert flight.error is outcome.get("error")
        assert len(inflight) == 0
        assert inflight.get(digest) is None


async def test_inflight_actions_rejects_invalid_settle() -> None:
    """A second settle, or an outcome that does not match the ending, raises ValueError."""
    inflight = InflightActions()
    flight, _ = inflight.join(digest_of_bytes(b"action"), "leader")

    with pytest.raises(ValueError, match="needs a result"):
        inflight.settle(flight, Ending.RESULT)
    with pytest.raises(ValueError, match="needs an error"):
        inflight.settle(flight, Ending.HANDOVER, error=GomaProxyError("failed"))
    assert len(inflight) == 1

    inflight.settle(flight, Ending.HANDOVER)
    with pytest.raises(ValueError, match="settled already"):
        inflight.settle(flight, Ending.HANDOVER)
