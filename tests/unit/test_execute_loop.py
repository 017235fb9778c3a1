"""The execute loop: stream breaks, WaitExecution, NOT_FOUND and retried statuses."""

from __future__ import annotations

import pytest
import trio

from gomaproxy.errors import BackendError, Code
from gomaproxy.protos import remote_execution_pb2 as re_pb2
from gomaproxy.remote.breaker import CircuitOpenError
from gomaproxy.remote.execute import ExecutePolicy, execute_and_wait
from tests.fakes import FakeBackend, StreamScript


def _backend() -> tuple[FakeBackend, re_pb2.ExecuteRequest]:
    def runner(command: re_pb2.Command, cas: object) -> re_pb2.ActionResult:
        return re_pb2.ActionResult(exit_code=0, stdout_raw=b"ran")

    backend = FakeBackend(runner=runner)
    command = backend.put(re_pb2.Command(arguments=["true"]).SerializeToString())
    root = backend.put(re_pb2.Directory().SerializeToString())
    action = re_pb2.Action(command_digest=command.to_proto(), input_root_digest=root.to_proto())
    digest = backend.put(action.SerializeToString())
    return backend, re_pb2.ExecuteRequest(action_digest=digest.to_proto())


POLICY = ExecutePolicy(max_attempts=5, attempt_timeout_s=60.0)


async def test_execute_broken_stream_resumes_with_wait_execution(
    autojump_clock: trio.abc.Clock,
) -> None:
    """A stream broken after the first operation completes through WaitExecution."""
    backend, request = _backend()
    backend.scripts.append(StreamScript(break_after=1))

    outcome = await execute_and_wait(backend, request, POLICY)

    assert outcome.response.result.stdout_raw == b"ran"
    assert backend.calls["Execute"] == 1
    assert backend.calls["WaitExecution"] == 1
    assert backend.executions == 1


async def test_execute_wait_not_found_executes_again(autojump_clock: trio.abc.Clock) -> None:
    """A NOT_FOUND from WaitExecution makes the loop call Execute again."""
    backend, request = _backend()
    backend.scripts.append(StreamScript(break_after=1))

    async def forget(request: re_pb2.WaitExecutionRequest):  # type: ignore[no-untyped-def]
        backend.calls["WaitExecution"] += 1
        raise BackendError(Code.NOT_FOUND, "forgotten")
        yield  # pragma: no cover

    backend.wait_execution = forget  # type: ignore[method-assign]

    outcome = await execute_and_wait(backend, request, POLICY)

    assert outcome.response.result.exit_code == 0
    assert backend.calls["Execute"] == 2
    assert backend.calls["WaitExecution"] == 1


async def test_execute_retries_unavailable_status(autojump_clock: trio.abc.Clock) -> None:
    """A done operation with status UNAVAILABLE is executed again."""
    backend, request = _backend()
    backend.scripts.append(StreamScript(status=Code.UNAVAILABLE))

    outcome = await execute_and_wait(backend, request, POLICY)

    assert outcome.response.status.code == Code.OK
    assert backend.calls["Execute"] == 2


async def test_execute_returns_permanent_status(autojump_clock: trio.abc.Clock) -> None:
    """FAILED_PRECONDITION is not retried; the response goes back to the caller."""
    backend, request = _backend()
    backend.scripts.append(StreamScript(status=Code.FAILED_PRECONDITION))

    outcome = await execute_and_wait(backend, request, POLICY)

    assert outcome.response.status.code == Code.FAILED_PRECONDITION
    assert backend.calls["Execute"] == 1


async def test_execute_gives_up_after_max_attempts(autojump_clock: trio.abc.Clock) -> None:
    """Five broken streams in a row end with one error that lists every attempt."""
    backend, request = _backend()
    backend.scripts.extend(StreamScript(break_after=0) for _ in range(5))

    with pytest.raises(BackendError) as caught:
        await execute_and_wait(backend, request, POLICY)

    assert caught.value.code == Code.UNAVAILABLE
    assert "after 5 attempts" in caught.value.message
    assert backend.calls["Execute"] == 5


async def test_execute_non_retried_stream_error_is_raised(autojump_clock: trio.abc.Clock) -> None:
    """A PERMISSION_DENIED stream error is raised at once."""
    backend, request = _backend()
    backend.scripts.append(StreamScript(break_after=0, error=Code.PERMISSION_DENIED))

    with pytest.raises(BackendError) as caught:
        await execute_and_wait(backend, request, POLICY)

    assert caught.value.code == Code.PERMISSION_DENIED
    assert backend.calls["Execute"] == 1


async def test_execute_circuit_open_not_retried(autojump_clock: trio.abc.Clock) -> None:
    """An Execute rejected by an open circuit breaker fails at once, without more attempts."""
    backend, request = _backend()

    async def reject(request: re_pb2.ExecuteRequest):  # type: ignore[no-untyped-def]
        backend.calls["Execute"] += 1
        raise CircuitOpenError("backend grpc://127.0.0.1:1 is unavailable (circuit open)")
        yield  # pragma: no cover

    backend.execute = reject  # type: ignore[method-assign]

    with pytest.raises(CircuitOpenError):
        await execute_and_wait(backend, request, POLICY)

    assert backend.calls["Execute"] == 1
