"""Running one REAPI action on this machine.

An execution first takes a slot of the executor's capacity limiter.  It then fetches and
checks the input tree, materialises it in ``<actions_dir>/<id>/root`` and creates the
working directory and the parents of the declared outputs.  It runs the Command, under
bubblewrap when that is available, stores stdout, stderr and the outputs in the CAS, and
removes the action directory.  Every blob of the result stays pinned in the caller's
``PinSet``, so the caller can store the result in the action cache before anything is
evicted.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, final

import anyio
import anyio.to_thread
import structlog
from google.protobuf import timestamp_pb2

from gomaproxy.digest import DigestKey
from gomaproxy.errors import BackendError, Code
from gomaproxy.local.cas import ContentAddressableStorage, PinSet
from gomaproxy.local.inputs import (
    InputTree,
    fetch_input_tree,
    make_real_directories,
    materialise_input_tree,
    missing_blobs_error,
    remove_tree,
)
from gomaproxy.local.outputs import (
    DeclaredOutput,
    collect_outputs,
    declared_outputs,
    directories_to_create,
    validate_relative_path,
)
from gomaproxy.local.sandbox import (
    INPUT_ROOT_ABSOLUTE_PATH,
    SandboxRequest,
    list_host_dir,
    plan_bwrap_command,
    validate_mount_path,
)
from gomaproxy.protos import remote_execution_pb2 as re_pb2

log = structlog.get_logger(__name__)

# Applied to actions without a timeout, so that a hung process cannot keep its slot forever.
DEFAULT_ACTION_TIMEOUT_S = 900.0

BWRAP_REQUIRED_MESSAGE = (
    "absolute input roots need bubblewrap: install the Debian package bubblewrap"
)

# Bounds for cleanup that must finish even when the execution is cancelled.
_CLEANUP_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class RunPlan:
    """The checked parts of an Action and its Command that decide how the action runs."""

    arguments: tuple[str, ...]
    environment: tuple[tuple[str, str], ...]
    # Relative to the input root; "" is the input root itself.
    working_directory: str
    outputs: tuple[DeclaredOutput, ...]
    # The InputRootAbsolutePath platform property, or None when the action did not set it.
    mount_path: str | None
    timeout_s: float


def plan_run(action: re_pb2.Action, command: re_pb2.Command) -> RunPlan:
    """Check ``action`` and ``command`` and extract what running them needs.

    Raises:
        BackendError: INVALID_ARGUMENT for empty arguments, an invalid environment
            variable name, working directory, output path, timeout or mount path.
    """
    if not command.arguments:
        raise BackendError(
            Code.INVALID_ARGUMENT, "command has no arguments; set at least the program to run"
        )
    for variable in command.environment_variables:
        if not variable.name or "=" in variable.name:
            raise BackendError(
                Code.INVALID_ARGUMENT,
                f"environment variable name {variable.name!r} is invalid; "
                "names must be non-empty and contain no '='",
            )

    validate_relative_path(command.working_directory, "working directory", allow_empty=True)
    outputs = declared_outputs(command)
    for output in outputs:
        validate_relative_path(output.path, "output path")

    return RunPlan(
        arguments=tuple(command.arguments),
        environment=tuple((var.name, var.value) for var in command.environment_variables),
        working_directory=command.working_directory,
        outputs=tuple(outputs),
        mount_path=_mount_path(action, command),
        timeout_s=_timeout_seconds(action),
    )


def _mount_path(action: re_pb2.Action, command: re_pb2.Command) -> str | None:
    # Action.platform replaces the deprecated Command.platform when it is set.
    platform = action.platform if action.platform.properties else command.platform
    values = [prop.value for prop in platform.properties if prop.name == INPUT_ROOT_ABSOLUTE_PATH]
    if not values:
        return None

    problem = validate_mount_path(values[-1])
    if problem is not None:
        raise BackendError(Code.INVALID_ARGUMENT, f"{problem}; give an absolute path")
    return values[-1]


def _timeout_seconds(action: re_pb2.Action) -> float:
    if not action.HasField("timeout"):
        return DEFAULT_ACTION_TIMEOUT_S

    seconds = action.timeout.seconds + action.timeout.nanos / 1e9
    if seconds < 0:
        raise BackendError(
            Code.INVALID_ARGUMENT,
            f"action timeout {seconds} s is negative; use a positive timeout or none",
        )
    return seconds if seconds > 0 else DEFAULT_ACTION_TIMEOUT_S


@dataclass(frozen=True)
class ExecutionOutcome:
    """The result of one run and, if the run did not succeed, the status to report.

    ``error`` is set for a timeout (DEADLINE_EXCEEDED, with partial stdout and stderr)
    and for outputs that could not be collected.  ``result`` still contains the exit code.
    """

    result: re_pb2.ActionResult
    error: BackendError | None
    timed_out: bool


@dataclass(frozen=True)
class ProcessResult:
    """The end state of a process: its exit code (128 + signal number when killed by a
    signal) and whether the timeout killed it."""

    exit_code: int
    timed_out: bool


@final
class LocalExecutor:
    """Runs actions in per-action directories, at most ``limiter.total_tokens`` at a time."""

    def __init__(
        self,
        cas: ContentAddressableStorage,
        *,
        actions_dir: Path,
        limiter: anyio.CapacityLimiter,
        bwrap_path: str | None,
        host_toolchain_dirs: Sequence[str],
        worker_name: str,
    ) -> None:
        self._cas = cas
        self.actions_dir = actions_dir
        self.limiter = limiter
        self.bwrap_path = bwrap_path
        self.host_toolchain_dirs = tuple(host_toolchain_dirs)
        self.worker_name = worker_name

    async def execute(
        self,
        action: re_pb2.Action,
        command: re_pb2.Command,
        pins: PinSet,
        queued_at: timestamp_pb2.Timestamp,
    ) -> ExecutionOutcome:
        """Run ``action`` and return its result; every blob it names is added to ``pins``.

        Raises:
            BackendError: INVALID_ARGUMENT for an invalid Command or input tree,
                FAILED_PRECONDITION for missing input blobs or when an absolute input root
                is requested without bubblewrap.

        Cancellation kills the action's process group and removes the action directory.
        """
        plan = plan_run(action, command)
        action_dir = self.actions_dir / uuid.uuid4().hex
        self._check_sandbox_available(plan, action_dir / "root")

        metadata = re_pb2.ExecutedActionMetadata(worker=self.worker_name)
        metadata.queued_timestamp.CopyFrom(queued_at)
        async with self.limiter:
            metadata.worker_start_timestamp.GetCurrentTime()
            outcome = await self._execute_in_slot(action, command, plan, action_dir, pins, metadata)

        outcome.result.execution_metadata.worker_completed_timestamp.GetCurrentTime()
        return outcome

    def _check_sandbox_available(self, plan: RunPlan, input_root: Path) -> None:
        if self.bwrap_path is not None:
            return
        if plan.mount_path is None or plan.mount_path == str(input_root):
            return
        raise BackendError(
            Code.FAILED_PRECONDITION,
            f"cannot run with {INPUT_ROOT_ABSOLUTE_PATH}={plan.mount_path}, because "
            f"{BWRAP_REQUIRED_MESSAGE}",
        )

    async def _execute_in_slot(
        self,
        action: re_pb2.Action,
        command: re_pb2.Command,
        plan: RunPlan,
        action_dir: Path,
        pins: PinSet,
        metadata: re_pb2.ExecutedActionMetadata,
    ) -> ExecutionOutcome:
        metadata.input_fetch_start_timestamp.GetCurrentTime()
        tree = await fetch_input_tree(self._cas, DigestKey.of(action.input_root_digest))
        blob_paths = self._pin_input_files(tree, pins)

        try:
            await anyio.to_thread.run_sync(_prepare_action_dir, action_dir, tree, blob_paths, plan)
            metadata.input_fetch_completed_timestamp.GetCurrentTime()
            return await self._run_and_collect(command, plan, action_dir, pins, metadata)
        finally:
            await _remove_action_dir(action_dir)

    def _pin_input_files(self, tree: InputTree, pins: PinSet) -> dict[DigestKey, Path]:
        """Pin every input file, check that the CAS has all of them, and find their files."""
        keys = tree.file_digests()
        pins.update(keys)
        missing = self._cas.find_missing(sorted(keys))
        if missing:
            raise missing_blobs_error(missing, "input files")
        return {key: self._cas.path_of(key) for key in keys if not key.is_empty}

    async def _run_and_collect(
        self,
        command: re_pb2.Command,
        plan: RunPlan,
        action_dir: Path,
        pins: PinSet,
        metadata: re_pb2.ExecutedActionMetadata,
    ) -> ExecutionOutcome:
        input_root = action_dir / "root"
        argv, cwd = await self._command_line(plan, input_root)

        metadata.execution_start_timestamp.GetCurrentTime()
        process = await run_process_group(
            argv,
            cwd=cwd,
            env=dict(plan.environment),
            timeout_s=plan.timeout_s,
            stdout_path=action_dir / "stdout",
            stderr_path=action_dir / "stderr",
        )
        metadata.execution_completed_timestamp.GetCurrentTime()

        metadata.output_upload_start_timestamp.GetCurrentTime()
        result = re_pb2.ActionResult(exit_code=process.exit_code)
        stdout_key = await self._cas.ingest_file(action_dir / "stdout")
        stderr_key = await self._cas.ingest_file(action_dir / "stderr")
        pins.update([stdout_key, stderr_key])
        result.stdout_digest.CopyFrom(stdout_key.to_proto())
        result.stderr_digest.CopyFrom(stderr_key.to_proto())

        error = None
        if process.timed_out:
            error = BackendError(
                Code.DEADLINE_EXCEEDED,
                f"action timed out after {plan.timeout_s:g} s and was killed; "
                "raise the action timeout or make the command faster",
            )
        else:
            error = await self._collect_outputs(input_root, command, pins, result)
        metadata.output_upload_completed_timestamp.GetCurrentTime()

        result.execution_metadata.CopyFrom(metadata)
        return ExecutionOutcome(result=result, error=error, timed_out=process.timed_out)

    async def _collect_outputs(
        self,
        input_root: Path,
        command: re_pb2.Command,
        pins: PinSet,
        result: re_pb2.ActionResult,
    ) -> BackendError | None:
        try:
            await collect_outputs(self._cas, pins, input_root, command, result)
        except BackendError as exc:
            log.info("local_output_rejected", error=str(exc))
            return exc
        return None

    async def _command_line(self, plan: RunPlan, input_root: Path) -> tuple[list[str], Path]:
        """Return the argument vector to start and the directory to start it in."""
        if self.bwrap_path is None:
            # NOTE: without bubblewrap the action runs unconfined, with this process's user,
            # network and view of the file system.
            return list(plan.arguments), input_root / plan.working_directory

        request = SandboxRequest(
            input_root=str(input_root),
            mount_path=plan.mount_path or str(input_root),
            working_directory=plan.working_directory,
            arguments=plan.arguments,
            environment=plan.environment,
            writable_directories=directories_to_create(plan.working_directory, plan.outputs),
            host_toolchain_dirs=self.host_toolchain_dirs,
            bwrap_path=self.bwrap_path,
        )
        argv = await anyio.to_thread.run_sync(plan_bwrap_command, request, list_host_dir)
        return argv, input_root.parent


def _prepare_action_dir(
    action_dir: Path, tree: InputTree, blob_paths: Mapping[DigestKey, Path], plan: RunPlan
) -> None:
    """Materialise the input root and create the working and output parent directories."""
    input_root = action_dir / "root"
    action_dir.mkdir(parents=True)
    input_root.mkdir()
    materialise_input_tree(input_root, tree, blob_paths)

    directories = directories_to_create(plan.working_directory, plan.outputs)
    make_real_directories(input_root, directories)


async def _remove_action_dir(action_dir: Path) -> None:
    with anyio.move_on_after(_CLEANUP_TIMEOUT_S, shield=True) as scope:
        try:
            await anyio.to_thread.run_sync(remove_tree, action_dir, abandon_on_cancel=True)
        except FileNotFoundError:
            pass
        except OSError as exc:
            log.warning("local_action_dir_cleanup_failed", path=str(action_dir), error=str(exc))
    if scope.cancelled_caught:
        log.warning("local_action_dir_cleanup_timed_out", path=str(action_dir))


async def run_process_group(
    argv: Sequence[str],
    *,
    cwd: Path,
    env: Mapping[str, str],
    timeout_s: float,
    stdout_path: Path,
    stderr_path: Path,
) -> ProcessResult:
    """Run ``argv`` in a new session with stdout and stderr going to the given files.

    On timeout the whole process group is killed with SIGKILL, and ``timed_out`` is set.
    After a normal exit, processes left in the group are killed too.

    Raises:
        BackendError: INVALID_ARGUMENT when the program cannot be started.

    Cancellation kills the process group and re-raises; the worker thread that started
    the process reaps it.
    """
    stdout_file, stderr_file = await anyio.to_thread.run_sync(
        _create_output_files, stdout_path, stderr_path
    )
    child = _Child(argv=list(argv), cwd=cwd, env=dict(env), stdout=stdout_file, stderr=stderr_file)

    timed_out = False
    returncode: int | None = None
    try:
        with anyio.move_on_after(timeout_s) as scope:
            # A limiter of its own: anyio's shared thread limiter must not be held for the
            # length of a compile, because file operations need those threads.
            returncode = await anyio.to_thread.run_sync(
                child.run, abandon_on_cancel=True, limiter=anyio.CapacityLimiter(1)
            )
        timed_out = scope.cancelled_caught
    except OSError as exc:
        raise BackendError(
            Code.INVALID_ARGUMENT,
            f"starting {argv[0]!r} in {str(cwd)!r} failed: {exc.strerror}; check the "
            "command's first argument and its working directory",
        ) from exc
    finally:
        pid = child.stop()
        if pid is not None:
            _kill_process_group(pid)

    return ProcessResult(exit_code=_exit_code(returncode), timed_out=timed_out)


class _Child:
    """One child process, started and reaped by a single worker thread.

    bubblewrap's --die-with-parent kills the sandbox when the *thread* that started it
    exits, so the thread that calls Popen also waits for the process.  ``stop`` makes a
    start that has not happened yet a no-op and returns the pid to kill, if any.
    """

    def __init__(
        self,
        *,
        argv: list[str],
        cwd: Path,
        env: dict[str, str],
        stdout: IO[bytes],
        stderr: IO[bytes],
    ) -> None:
        self._argv, self._cwd, self._env = argv, cwd, env
        self._stdout, self._stderr = stdout, stderr
        self._lock = threading.Lock()
        # Set by stop(); a child never starts after it.
        self._stopped = False
        self._pid: int | None = None

    def run(self) -> int | None:
        try:
            with self._lock:
                if self._stopped:
                    return None
                process = subprocess.Popen(
                    self._argv,
                    stdin=subprocess.DEVNULL,
                    stdout=self._stdout,
                    stderr=self._stderr,
                    cwd=self._cwd,
                    env=self._env,
                    start_new_session=True,
                )
                self._pid = process.pid
        finally:
            self._stdout.close()
            self._stderr.close()
        return process.wait()

    def stop(self) -> int | None:
        with self._lock:
            self._stopped = True
            return self._pid


def _create_output_files(stdout_path: Path, stderr_path: Path) -> tuple[IO[bytes], IO[bytes]]:
    stdout_file = open(stdout_path, "xb")  # closed by run_process_group
    try:
        stderr_file = open(stderr_path, "xb")  # closed by run_process_group
    except BaseException:
        stdout_file.close()
        raise
    return stdout_file, stderr_file


def _kill_process_group(process_group: int) -> None:
    try:
        os.killpg(process_group, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _exit_code(returncode: int | None) -> int:
    if returncode is None:
        # The process outlived the kill and the bounded wait; report it as killed.
        return 128 + signal.SIGKILL
    if returncode < 0:
        return 128 - returncode
    return returncode
