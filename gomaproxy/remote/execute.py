"""Execute an action and follow its operation stream to the end.

The stream is read under a per-attempt deadline.  A stream that breaks or ends before the
operation is done is resumed with WaitExecution on the remembered operation name.  A
NOT_FOUND from WaitExecution means the server forgot the operation, so the action is
executed again.  A done operation whose ExecuteResponse status is transient
(UNAVAILABLE, INTERNAL, ABORTED, RESOURCE_EXHAUSTED) is executed again too.  Attempts
are bounded, with jittered exponential backoff between them.
"""

from __future__ import annotations

import random
from contextlib import aclosing
from dataclasses import dataclass

import anyio
import structlog

from gomaproxy.errors import BackendError, Code
from gomaproxy.protos import longrunning_pb2 as lro_pb2
from gomaproxy.protos import remote_execution_pb2 as re_pb2
from gomaproxy.remote.backend import Backend
from gomaproxy.remote.breaker import CircuitOpenError

log = structlog.get_logger(__name__)

RETRIED_STREAM_CODES = frozenset(
    {Code.UNAVAILABLE, Code.DEADLINE_EXCEEDED, Code.INTERNAL, Code.RESOURCE_EXHAUSTED}
)
RETRIED_RESULT_CODES = frozenset(
    {Code.UNAVAILABLE, Code.INTERNAL, Code.ABORTED, Code.RESOURCE_EXHAUSTED}
)


@dataclass(frozen=True)
class ExecutePolicy:
    """Bounds of one execution: attempts, the deadline of each, and the backoff."""

    max_attempts: int = 5
    attempt_timeout_s: float = 60.0
    base_delay_s: float = 0.1
    max_delay_s: float = 10.0
    factor: float = 1.6


def backoff_delay(attempt: int, policy: ExecutePolicy, rng: random.Random | None = None) -> float:
    """Return the wait before attempt ``attempt + 1``: exponential, capped, jittered by 20%."""
    base = min(policy.max_delay_s, policy.base_delay_s * policy.factor**attempt)
    jitter = (rng or random).uniform(0.8, 1.2)
    return base * jitter


@dataclass
class ExecuteOutcome:
    """The final ExecuteResponse, and how many Execute and WaitExecution calls it took."""

    response: re_pb2.ExecuteResponse
    operation_name: str
    execute_calls: int
    wait_calls: int


def unpack_operation(operation: lro_pb2.Operation) -> re_pb2.ExecuteResponse:
    """Return the ExecuteResponse of a done operation.

    Raises:
        BackendError: the operation carries an error status, or no ExecuteResponse.
    """
    if operation.HasField("error"):
        code = (
            Code(operation.error.code)
            if operation.error.code in Code._value2member_map_
            else Code.UNKNOWN
        )
        raise BackendError(code, f"operation {operation.name} failed: {operation.error.message}")

    response = re_pb2.ExecuteResponse()
    if not operation.HasField("response") or not operation.response.Unpack(response):
        raise BackendError(
            Code.INTERNAL,
            f"operation {operation.name} is done but holds "
            f"{operation.response.type_url or 'nothing'} instead of an ExecuteResponse",
        )
    return response


async def execute_and_wait(
    backend: Backend, request: re_pb2.ExecuteRequest, policy: ExecutePolicy
) -> ExecuteOutcome:
    """Run ``request`` to completion and return its final ExecuteResponse.

    Raises:
        BackendError: a non-transient error, or the last error once the attempts are spent.
    """
    state = _StreamState()
    errors: list[BackendError] = []

    for attempt in range(policy.max_attempts):
        if attempt:
            await anyio.sleep(backoff_delay(attempt - 1, policy))

        try:
            response = await _follow_once(backend, request, state, policy.attempt_timeout_s)
        except BackendError as exc:
            errors.append(exc)
            if not _should_retry_stream(exc, state):
                raise
            log.info(
                "execute_stream_retry",
                attempt=attempt,
                code=exc.code.name,
                error=exc.message,
                operation=state.name,
            )
            continue

        code = _status_code(response)
        if code in RETRIED_RESULT_CODES:
            errors.append(BackendError(code, response.status.message))
            log.info(
                "execute_result_retry",
                attempt=attempt,
                code=code.name,
                error=response.status.message,
            )
            state.name = None
            continue
        return ExecuteOutcome(response, state.last_name, state.execute_calls, state.wait_calls)

    last = errors[-1]
    raise BackendError(
        last.code,
        f"execute failed after {policy.max_attempts} attempts: "
        + "; ".join(f"{e.code.name}: {e.message}" for e in errors),
    )


@dataclass
class _StreamState:
    # Name of an operation that is not done yet; set while a WaitExecution can resume it.
    name: str | None = None
    last_name: str = ""
    execute_calls: int = 0
    wait_calls: int = 0


def _status_code(response: re_pb2.ExecuteResponse) -> Code:
    value = response.status.code
    return Code(value) if value in Code._value2member_map_ else Code.UNKNOWN


def _should_retry_stream(exc: BackendError, state: _StreamState) -> bool:
    if isinstance(exc, CircuitOpenError):
        return False
    if exc.code == Code.NOT_FOUND and state.name is not None:
        state.name = None
        return True
    return exc.code in RETRIED_STREAM_CODES


async def _follow_once(
    backend: Backend, request: re_pb2.ExecuteRequest, state: _StreamState, timeout_s: float
) -> re_pb2.ExecuteResponse:
    if state.name is not None:
        state.wait_calls += 1
        stream = backend.wait_execution(re_pb2.WaitExecutionRequest(name=state.name))
    else:
        state.execute_calls += 1
        stream = backend.execute(request)

    try:
        with anyio.fail_after(timeout_s if timeout_s > 0 else None):
            async with aclosing(stream) as operations:
                async for operation in operations:
                    if operation.name:
                        state.name = operation.name
                        state.last_name = operation.name
                    if operation.done:
                        state.name = None
                        return unpack_operation(operation)
    except TimeoutError:
        raise BackendError(
            Code.DEADLINE_EXCEEDED, f"no finished operation within {timeout_s} s"
        ) from None

    raise BackendError(Code.UNAVAILABLE, "operation stream ended before the action finished")
