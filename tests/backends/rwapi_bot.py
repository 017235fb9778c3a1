#!/usr/bin/env python3
"""A Remote Workers API (v1test2) bot that runs BuildGrid's leases with buildbox-run.

No installable package ships a BuildGrid worker (buildbox-worker is on no registry
reachable here), so the backend tests use this bot. It opens ``--sessions`` bot
sessions, each in its own thread and each running at most one lease. For every lease
it writes the Action to a file and runs ``buildbox-run --disable-localcas``. That
downloads the input root from BuildGrid's CAS and runs the command in a bubblewrap
sandbox whose root is the input root. Then it uploads the outputs and the
ActionResult's blobs, and the bot returns that ActionResult in the lease.

Platform properties: the worker offers ``OSFamily=linux`` and ``ISA=x86-64``. An
``InputRootAbsolutePath`` other than ``/`` fails the lease with INVALID_ARGUMENT,
because buildbox-run always mounts the input root at ``/`` and would run the command
at the wrong absolute path.

It runs in BuildGrid's virtual environment (Python 3.13), because it uses the
generated protobuf modules and grpcio installed there.

Usage:
  rwapi_bot.py --remote 127.0.0.1:PORT --runner PATH/buildbox-run
               [--runner-arg=--ro-bind-mount=/usr:/usr ...] [--sessions N]
               [--instance NAME] [--work-dir DIR] [--ready-file FILE]
"""

from __future__ import annotations

import argparse
import logging
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import grpc
from buildgrid._protos.build.bazel.remote.execution.v2 import remote_execution_pb2 as re_pb2
from buildgrid._protos.build.bazel.remote.execution.v2 import (
    remote_execution_pb2_grpc as re_grpc,
)
from buildgrid._protos.google.devtools.remoteworkers.v1test2 import (
    bots_pb2,
    bots_pb2_grpc,
    worker_pb2,
)
from buildgrid._protos.google.rpc import code_pb2, status_pb2

log = logging.getLogger("rwapi_bot")

# BuildGrid 0.9.1 keeps CreateBotSession and UpdateBotSession calls open for 80% of
# their deadline while it waits for work, unless that is under 3 seconds. So updates
# long-poll for 24 s, and a create with a deadline of 3.5 s returns at once.
UPDATE_DEADLINE_S = 30.0
CREATE_DEADLINE_S = 3.5
START_TIMEOUT_S = 60.0
RETRY_DELAY_S = 1.0
STDERR_TAIL_BYTES = 2000
INPUT_ROOT_ABSOLUTE_PATH = "InputRootAbsolutePath"
# buildbox-run exits with 128 + SIGALRM when Action.timeout expires and it runs
# without LocalCAS.
TIMEOUT_EXIT_STATUSES = (128 + signal.SIGALRM, -signal.SIGALRM)


class LeaseFailure(Exception):
    """A lease that cannot run, with the gRPC status code to report for it."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


class Runner:
    """Runs one Action with buildbox-run and keeps track of the running processes."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.remote = args.remote
        self.instance = args.instance
        self.runner = args.runner
        self.runner_args = list(args.runner_arg)
        self.work_dir = args.work_dir
        self._processes: set[subprocess.Popen[bytes]] = set()
        self._lock = threading.Lock()

    def command(self, scratch_dir: Path, action_path: Path, result_path: Path) -> list[str]:
        command = [
            self.runner,
            f"--remote=http://{self.remote}",
            "--disable-localcas",
            f"--action={action_path}",
            f"--action-result={result_path}",
            f"--workspace-path={scratch_dir}",
            "--log-level=warning",
        ]
        if self.instance:
            command.append(f"--instance={self.instance}")
        return command + self.runner_args

    def run(self, action: re_pb2.Action) -> re_pb2.ActionResult:
        """Run ``action`` and return its ActionResult, or raise LeaseFailure."""
        check_input_root_path(action)
        with tempfile.TemporaryDirectory(prefix="lease-", dir=self.work_dir) as scratch:
            action_path = Path(scratch) / "action.bin"
            result_path = Path(scratch) / "result.bin"
            action_path.write_bytes(action.SerializeToString())
            returncode, stderr = self._run_process(
                self.command(Path(scratch), action_path, result_path)
            )
            if returncode != 0 or not result_path.exists():
                tail = stderr[-STDERR_TAIL_BYTES:].decode(errors="replace").strip()
                if action.HasField("timeout") and returncode in TIMEOUT_EXIT_STATUSES:
                    raise LeaseFailure(
                        code_pb2.DEADLINE_EXCEEDED,
                        f"the action ran longer than its timeout of {action.timeout.seconds} s",
                    )
                raise LeaseFailure(
                    code_pb2.INTERNAL, f"buildbox-run failed with exit status {returncode}: {tail}"
                )
            result = re_pb2.ActionResult()
            result.ParseFromString(result_path.read_bytes())
            return result

    def _run_process(self, command: list[str]) -> tuple[int, bytes]:
        try:
            process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
            )
        except OSError as error:
            raise LeaseFailure(
                code_pb2.INTERNAL, f"could not start {command[0]}: {error}"
            ) from error
        with self._lock:
            self._processes.add(process)
        try:
            _, stderr = process.communicate()
        finally:
            with self._lock:
                self._processes.discard(process)
        return process.returncode, stderr

    def terminate_all(self) -> None:
        with self._lock:
            processes = list(self._processes)
        for process in processes:
            process.terminate()


def check_input_root_path(action: re_pb2.Action) -> None:
    for prop in action.platform.properties:
        if prop.name == INPUT_ROOT_ABSOLUTE_PATH and prop.value != "/":
            raise LeaseFailure(
                code_pb2.INVALID_ARGUMENT,
                f"{INPUT_ROOT_ABSOLUTE_PATH}={prop.value} is not supported: buildbox-run "
                "mounts the input root at /, so only the value / can be honoured",
            )


def lease_action(lease: bots_pb2.Lease, cas: re_grpc.ContentAddressableStorageStub, instance: str):
    """Return the Action of a lease, whose payload is the Action or its Digest."""
    action = re_pb2.Action()
    if lease.payload.Is(re_pb2.Action.DESCRIPTOR):
        lease.payload.Unpack(action)
        return action
    digest = re_pb2.Digest()
    if not lease.payload.Unpack(digest):
        raise LeaseFailure(
            code_pb2.INVALID_ARGUMENT, f"lease payload type {lease.payload.type_url} is unknown"
        )
    response = cas.BatchReadBlobs(
        re_pb2.BatchReadBlobsRequest(instance_name=instance, digests=[digest]),
        timeout=UPDATE_DEADLINE_S,
    )
    entry = response.responses[0]
    if entry.status.code != code_pb2.OK:
        raise LeaseFailure(
            code_pb2.FAILED_PRECONDITION,
            f"action {digest.hash}/{digest.size_bytes} is not readable: {entry.status.message}",
        )
    action.ParseFromString(entry.data)
    return action


class BotSession:
    """One bot session: creates it, then loops over UpdateBotSession and runs leases."""

    def __init__(
        self, index: int, args: argparse.Namespace, channel: grpc.Channel, runner: Runner
    ) -> None:
        self.bot_id = f"{args.bot_id}-{index}"
        self.instance = args.instance
        self.bots = bots_pb2_grpc.BotsStub(channel)
        self.cas = re_grpc.ContentAddressableStorageStub(channel)
        self.runner = runner
        self.session: bots_pb2.BotSession | None = None

    def create(self) -> None:
        worker = worker_pb2.Worker()
        device = worker.devices.add(handle="primary")
        device.properties.add(key="OSFamily", value="linux")
        device.properties.add(key="ISA", value="x86-64")
        session = bots_pb2.BotSession(
            bot_id=self.bot_id, status=bots_pb2.BotStatus.OK, worker=worker
        )
        self.session = self.bots.CreateBotSession(
            bots_pb2.CreateBotSessionRequest(parent=self.instance, bot_session=session),
            timeout=CREATE_DEADLINE_S,
        )
        log.info("bot session %s created for bot %s", self.session.name, self.bot_id)

    def run_leases(self) -> None:
        assert self.session is not None
        for lease in self.session.leases:
            if lease.state != bots_pb2.LeaseState.ACTIVE:
                continue
            started = time.monotonic()
            try:
                action = lease_action(lease, self.cas, self.instance)
                result = self.runner.run(action)
            except LeaseFailure as failure:
                log.warning("lease %s failed: %s", lease.id, failure)
                lease.status.CopyFrom(status_pb2.Status(code=failure.code, message=str(failure)))
            except grpc.RpcError as error:
                log.warning("lease %s: reading the action failed: %s", lease.id, error.details())
                lease.status.CopyFrom(
                    status_pb2.Status(code=code_pb2.UNAVAILABLE, message=str(error.details()))
                )
            else:
                result.execution_metadata.worker = self.bot_id
                lease.result.Pack(result)
                lease.status.CopyFrom(status_pb2.Status(code=code_pb2.OK))
                log.info(
                    "lease %s done: exit code %d in %.3f s",
                    lease.id,
                    result.exit_code,
                    time.monotonic() - started,
                )
            lease.state = bots_pb2.LeaseState.COMPLETED

    def update(self) -> None:
        assert self.session is not None
        self.session = self.bots.UpdateBotSession(
            bots_pb2.UpdateBotSessionRequest(name=self.session.name, bot_session=self.session),
            timeout=UPDATE_DEADLINE_S,
        )

    def loop(self, stopping: threading.Event) -> None:
        while not stopping.is_set():
            try:
                if self.session is None:
                    self.create()
                self.run_leases()
                self.update()
            except grpc.RpcError as error:
                code = error.code()
                if code == grpc.StatusCode.DEADLINE_EXCEEDED:
                    continue  # the long poll ended without work
                log.warning(
                    "bot %s: %s failed with %s: %s; retrying in %g s",
                    self.bot_id,
                    "CreateBotSession" if self.session is None else "UpdateBotSession",
                    code.name,
                    error.details(),
                    RETRY_DELAY_S,
                )
                if code in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT):
                    self.session = None  # the server forgot the session; start a new one
                stopping.wait(RETRY_DELAY_S)
            except Exception:  # noqa: BLE001 (a dead thread would strand its session's leases)
                log.exception(
                    "bot %s: unexpected error; retrying in %g s", self.bot_id, RETRY_DELAY_S
                )
                stopping.wait(RETRY_DELAY_S)


def open_sessions(channel: grpc.Channel, sessions: list[BotSession], deadline: float) -> None:
    """Create every session, retrying timeouts and UNAVAILABLE until ``deadline``."""
    grpc.channel_ready_future(channel).result(timeout=max(deadline - time.monotonic(), 0.1))
    for session in sessions:
        while True:
            try:
                session.create()
                break
            except grpc.RpcError as error:
                retryable = error.code() in (
                    grpc.StatusCode.DEADLINE_EXCEEDED,
                    grpc.StatusCode.UNAVAILABLE,
                )
                if not retryable or time.monotonic() > deadline:
                    raise
                log.warning("CreateBotSession failed with %s; retrying", error.code().name)
                time.sleep(RETRY_DELAY_S)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--remote", required=True, help="BuildGrid's HOST:PORT, without TLS")
    parser.add_argument("--instance", default="", help='REAPI instance name (default: "")')
    parser.add_argument("--runner", required=True, help="path of the buildbox-run binary")
    parser.add_argument(
        "--runner-arg",
        action="append",
        default=[],
        help="extra buildbox-run option, for example --ro-bind-mount=/usr:/usr (repeatable)",
    )
    parser.add_argument(
        "--sessions", type=int, default=1, help="bot sessions, and so parallel actions (default 1)"
    )
    parser.add_argument(
        "--work-dir", help="directory for per-lease scratch files (default: TMPDIR)"
    )
    # The same bot id after a restart makes BuildGrid close the old session and queue
    # its leases again, instead of assigning jobs to it until it expires.
    parser.add_argument(
        "--bot-id",
        default=f"rwapi-bot-{socket.gethostname()}",
        help="bot id prefix, kept across restarts; session N gets the suffix -N",
    )
    parser.add_argument(
        "--ready-file", help="file to write once every session exists, for start-up scripts"
    )
    args = parser.parse_args(argv)
    if args.sessions < 1:
        parser.error(f"--sessions must be at least 1, got {args.sessions}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr
    )
    stopping = threading.Event()

    def request_stop(signum: int, _frame: object) -> None:
        log.info("received %s, stopping", signal.Signals(signum).name)
        stopping.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)

    channel = grpc.insecure_channel(args.remote)
    runner = Runner(args)
    sessions = [BotSession(index, args, channel, runner) for index in range(args.sessions)]
    try:
        open_sessions(channel, sessions, time.monotonic() + START_TIMEOUT_S)
    except (grpc.FutureTimeoutError, grpc.RpcError) as error:
        log.error("could not open bot sessions on %s: %s", args.remote, error)
        return 1
    if args.ready_file:
        Path(args.ready_file).write_text("".join(f"{s.session.name}\n" for s in sessions))

    # Daemon threads: a thread blocked in a long poll must not delay the exit.
    for session in sessions:
        threading.Thread(target=session.loop, args=(stopping,), daemon=True).start()
    while not stopping.wait(1.0):
        pass
    runner.terminate_all()
    log.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
