"""The Execution service of the local backend, which tracks each Execute call as an operation.

Execute runs the action in the caller's task, so closing the Execute stream cancels the
action.  WaitExecution follows an operation that another caller's Execute is running, or
returns a recently finished one.

``ExecutionRpcs`` is a mixin of ``LocalBackend``, which provides the stores, the
executor, the metrics and the operation tables once it is open.
"""

from __future__ import annotations

import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
import structlog
from google.protobuf import timestamp_pb2
from google.rpc import status_pb2

from gomaproxy.digest import DigestKey
from gomaproxy.errors import BackendError, Code
from gomaproxy.local.actioncache import ActionCache
from gomaproxy.local.cas import ContentAddressableStorage, MessageT
from gomaproxy.local.executor import ExecutionOutcome, LocalExecutor
from gomaproxy.local.inputs import missing_blobs_error
from gomaproxy.local.metrics import LocalBackendMetrics
from gomaproxy.local.rpc_errors import check_digest_function, digest_key, status_of
from gomaproxy.protos import longrunning_pb2 as lro_pb2
from gomaproxy.protos import remote_execution_pb2 as re_pb2

log = structlog.get_logger(__name__)

# Finished operations kept for WaitExecution, oldest dropped first.
MAX_FINISHED_OPERATIONS = 1024


@dataclass
class Operation:
    """An Execute call, running or finished."""

    name: str
    action_digest: DigestKey
    finished: anyio.Event = field(default_factory=anyio.Event)
    response: re_pb2.ExecuteResponse | None = None

    def to_proto(self) -> lro_pb2.Operation:
        if self.response is None:
            stage = re_pb2.ExecutionStage.QUEUED
        else:
            stage = re_pb2.ExecutionStage.COMPLETED
        metadata = re_pb2.ExecuteOperationMetadata(
            stage=stage, action_digest=self.action_digest.to_proto()
        )
        operation = lro_pb2.Operation(name=self.name, done=self.response is not None)
        operation.metadata.Pack(metadata)
        if self.response is not None:
            operation.response.Pack(self.response)
        return operation


class ExecutionRpcs:
    """Execute and WaitExecution of ``LocalBackend``, with the operations they track."""

    state_dir: Path
    metrics: LocalBackendMetrics
    _action_cache: ActionCache | None
    _executor: LocalExecutor | None
    _running: dict[str, Operation]
    _finished: OrderedDict[str, Operation]

    if TYPE_CHECKING:

        def _require_open(self) -> None: ...

        def _require_cas(self) -> ContentAddressableStorage: ...

        async def _lookup_action_cache(self, key: DigestKey) -> re_pb2.ActionResult: ...

        async def _inline(
            self,
            result: re_pb2.ActionResult,
            inline_stdout: bool,
            inline_stderr: bool,
            inline_output_files: Sequence[str],
        ) -> None: ...

    async def execute(self, request: re_pb2.ExecuteRequest) -> AsyncIterator[lro_pb2.Operation]:
        """Yield a QUEUED operation, run the action, then yield the finished operation.

        Errors of the action, such as missing inputs (FAILED_PRECONDITION with MISSING
        violations) or a timeout (DEADLINE_EXCEEDED), are reported in the finished
        operation's ExecuteResponse.status, not raised.

        Raises:
            BackendError: INVALID_ARGUMENT for an invalid action digest.

        Closing the stream before the end cancels the action, and the operation finishes
        with status CANCELLED for any WaitExecution caller.
        """
        self._require_open()
        check_digest_function(request.digest_function)
        key = digest_key(request.action_digest, "action digest")
        queued_at = timestamp_pb2.Timestamp()
        queued_at.GetCurrentTime()

        operation = self._start_operation(request.instance_name, key)
        try:
            yield operation.to_proto()
            response = await self._execute_action(request, key, queued_at)
        except BaseException as exc:
            # Waiters in WaitExecution must learn that this operation will not finish.
            self._finish_operation(operation, _interrupted_response(exc))
            raise

        self._finish_operation(operation, response)
        yield operation.to_proto()

    async def wait_execution(
        self, request: re_pb2.WaitExecutionRequest
    ) -> AsyncIterator[lro_pb2.Operation]:
        """Yield the operation's current state and, if it is running, its finished state.

        Raises:
            BackendError: NOT_FOUND for an unknown or forgotten operation name.
        """
        operation = self._running.get(request.name) or self._finished.get(request.name)
        if operation is None:
            raise BackendError(
                Code.NOT_FOUND,
                f"operation {request.name!r} is unknown or finished too long ago; "
                "execute the action again",
            )

        if operation.response is None:
            yield operation.to_proto()
            await operation.finished.wait()
        yield operation.to_proto()

    async def _execute_action(
        self, request: re_pb2.ExecuteRequest, key: DigestKey, queued_at: timestamp_pb2.Timestamp
    ) -> re_pb2.ExecuteResponse:
        try:
            action = await self._read_required(key, re_pb2.Action, "action")
            if not request.skip_cache_lookup and not action.do_not_cache:
                cached = await self._cached_response(key)
                if cached is not None:
                    response = cached
                    await self._inline_for(request, response.result)
                    return response

            command_key = digest_key(action.command_digest, "command digest")
            command = await self._read_required(command_key, re_pb2.Command, "command")
            response = await self._run_action(key, action, command, queued_at)
        except BackendError as exc:
            log.info(
                "local_execute_failed",
                action_digest=str(key),
                code=exc.code.name,
                error=exc.message,
            )
            return re_pb2.ExecuteResponse(status=status_of(exc))
        except OSError as exc:
            log.error("local_execute_io_failed", action_digest=str(key), error=str(exc))
            error = BackendError(
                Code.INTERNAL,
                f"running action {key} failed on the local disk: {exc}; check free space "
                f"and permissions under {self.state_dir}",
            )
            return re_pb2.ExecuteResponse(status=status_of(error))

        await self._inline_for(request, response.result)
        return response

    async def _cached_response(self, key: DigestKey) -> re_pb2.ExecuteResponse | None:
        try:
            result = await self._lookup_action_cache(key)
        except BackendError as exc:
            if exc.code is not Code.NOT_FOUND:
                raise
            return None
        return re_pb2.ExecuteResponse(result=result, cached_result=True)

    async def _run_action(
        self,
        key: DigestKey,
        action: re_pb2.Action,
        command: re_pb2.Command,
        queued_at: timestamp_pb2.Timestamp,
    ) -> re_pb2.ExecuteResponse:
        executor = self._executor
        assert executor is not None
        action_cache = self._action_cache
        assert action_cache is not None

        with self._require_cas().pinned() as pins:
            outcome = await executor.execute(action, command, pins, queued_at)
            self._count_execution(outcome)
            stored = False
            if outcome.error is None:
                stored = await action_cache.put(key, action, outcome.result)
        log.debug(
            "local_action_finished",
            action_digest=str(key),
            exit_code=outcome.result.exit_code,
            timed_out=outcome.timed_out,
            cached=stored,
        )

        response = re_pb2.ExecuteResponse(result=outcome.result)
        if outcome.error is not None:
            response.status.CopyFrom(status_of(outcome.error))
        return response

    def _count_execution(self, outcome: ExecutionOutcome) -> None:
        if outcome.timed_out:
            label = "timeout"
        elif outcome.result.exit_code == 0:
            label = "0"
        else:
            label = "nonzero"
        self.metrics.actions_executed.labels(exit=label).inc()

    async def _read_required(
        self, key: DigestKey, message_type: type[MessageT], what: str
    ) -> MessageT:
        """Read a message the action needs; a missing blob is a MISSING precondition failure."""
        cas = self._require_cas()
        try:
            return await cas.read_message(key, message_type)
        except BackendError as exc:
            if exc.code is Code.NOT_FOUND:
                raise missing_blobs_error([key], what) from None
            raise

    def _start_operation(self, instance_name: str, key: DigestKey) -> Operation:
        suffix = f"operations/{uuid.uuid4()}"
        name = f"{instance_name}/{suffix}" if instance_name else suffix
        operation = Operation(name=name, action_digest=key)
        self._running[name] = operation
        return operation

    def _finish_operation(self, operation: Operation, response: re_pb2.ExecuteResponse) -> None:
        operation.response = response
        operation.finished.set()
        self._running.pop(operation.name, None)
        self._finished[operation.name] = operation
        while len(self._finished) > MAX_FINISHED_OPERATIONS:
            self._finished.popitem(last=False)

    async def _inline_for(
        self, request: re_pb2.ExecuteRequest, result: re_pb2.ActionResult
    ) -> None:
        await self._inline(
            result, request.inline_stdout, request.inline_stderr, request.inline_output_files
        )


def _interrupted_response(exc: BaseException) -> re_pb2.ExecuteResponse:
    """Build the response of an operation whose Execute call ended without a result."""
    if isinstance(exc, (GeneratorExit, anyio.get_cancelled_exc_class())):
        status = status_pb2.Status(
            code=Code.CANCELLED,
            message="execution was cancelled because its Execute call ended; execute again",
        )
    else:
        status = status_pb2.Status(
            code=Code.INTERNAL,
            message=f"execution failed unexpectedly with {type(exc).__name__}; see the proxy log",
        )
    return re_pb2.ExecuteResponse(status=status)
