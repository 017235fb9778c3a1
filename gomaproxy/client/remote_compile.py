"""The Exec loop of ``gomaproxy cc``, which runs one compile on a goma server.

The Exec loop follows compiler_proxy.  ``requester_info.retry`` starts at 0 and grows
by one per retry, and a compile makes at most 5 Exec calls (4 retries).  Missing-input
rounds, 5xx and transport errors, ``error_message`` responses, chunk upload failures and
one failed output download (retried with cache_policy STORE_ONLY) all use up retries.
A BAD_REQUEST response, a 4xx status and a compiler mismatch end the compile at once.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import anyio
import anyio.to_thread
import structlog

from gomaproxy.client.compiler_info import CompilerInfo, probe_compiler
from gomaproxy.client.deps import expected_output_files, scan_dependencies
from gomaproxy.client.http import (
    EXEC_TIMEOUT_SECONDS,
    GomaHttpClient,
    GomaRpcError,
    ServerAddress,
)
from gomaproxy.client.inputs import (
    KnownFileStore,
    PlannedInput,
    embedded_bytes,
    exec_inputs,
    plan_inputs,
    record_missing,
    record_received,
    record_success,
)
from gomaproxy.client.request import (
    RequesterIdentity,
    build_exec_request,
    compiler_proxy_id,
)
from gomaproxy.client.responses import (
    CompileFailed,
    Done,
    MissingInputs,
    RetryExec,
    classify_response,
)
from gomaproxy.client.state import default_state_dir
from gomaproxy.client.transfer import (
    InputUploadError,
    OutputDownloadError,
    upload_chunks,
    write_outputs,
)
from gomaproxy.errors import Code, GomaProxyError
from gomaproxy.protos import goma_data_pb2 as goma_pb2

if TYPE_CHECKING:
    from gomaproxy.client.launcher_options import LauncherOptions

log = structlog.get_logger(__name__)

# compiler_proxy's kMaxExecRetry is 4, so one compile makes at most 5 Exec calls.
MAX_EXEC_RETRIES = 4

# compiler_proxy's HTTP layer waits after a failed request: 500 ms at first, 1.4 times
# longer after each further failure, at most 5 s, each wait a random 60 to 100 % of that.
DEFAULT_RETRY_BACKOFF_SECONDS = 0.5
_BACKOFF_GROWTH = 1.4
_BACKOFF_MAX_SECONDS = 5.0


@dataclass
class CompileStats:
    """Counters of one remote compile, reported whether or not it succeeds."""

    exec_calls: int = 0
    missing_rounds: int = 0
    embedded_bytes: int = 0
    uploaded_chunks: int = 0


@dataclass
class CompileOutcome:
    """The result of a remote compile: what the server's compiler printed and returned."""

    exit_status: int
    stdout: bytes
    stderr: bytes
    cache_hit: str
    cache_key: str
    outputs: list[str]
    stats: CompileStats = field(default_factory=CompileStats)

    def report(self) -> dict[str, object]:
        """Return the ``--report`` JSON summary."""
        return {
            "exit_status": self.exit_status,
            "cache_hit": self.cache_hit,
            "cache_key": self.cache_key,
            "exec_calls": self.stats.exec_calls,
            "missing_rounds": self.stats.missing_rounds,
            "embedded_bytes": self.stats.embedded_bytes,
            "uploaded_chunks": self.stats.uploaded_chunks,
            "outputs": self.outputs,
            "ran_locally": False,
            "error": None,
        }


class RemoteCompileError(GomaProxyError):
    """The remote compile failed; ``messages`` are the lines to show the user.

    ``fallback_allowed`` is False when compiler_proxy would not run the compile locally
    either, as for a BAD_REQUEST with reason UNSUPPORTED_COMPILER_FLAGS.
    """

    code = Code.UNAVAILABLE

    def __init__(
        self,
        messages: Sequence[str],
        *,
        stats: CompileStats,
        fallback_allowed: bool = True,
    ) -> None:
        super().__init__(messages[0] if messages else "remote compile failed")
        self.messages = tuple(messages) or ("remote compile failed",)
        self.stats = stats
        self.fallback_allowed = fallback_allowed


async def run_remote_compile(
    options: LauncherOptions,
    argv: Sequence[str],
    cwd: str,
    *,
    environ: Mapping[str, str] | None = None,
    rng: random.Random | None = None,
) -> CompileOutcome:
    """Run the compile ``argv`` in ``cwd`` on the goma server named by ``options``.

    Outputs are written below ``cwd``; stdout and stderr are returned, not printed.

    Args:
        options: server address, URL prefix and state directory.
        argv: the compile command, compiler first, exactly as typed.
        cwd: the absolute working directory of the compile.
        environ: the compile's environment; defaults to ``os.environ``.
        rng: the random source of the embedding cap's shuffle.

    Raises:
        RemoteCompileError: when the server path fails for good.
        DependencyScanError: when the compiler's ``-M`` run fails, as for a broken
            source file.
        CompilerProbeError: when the local compiler is missing or does not run.
    """
    env = dict(os.environ if environ is None else environ)
    state_dir = options.state_dir or default_state_dir(env)
    address = ServerAddress.from_url(options.server, options.url_prefix)

    info = await probe_compiler(argv[0], cwd=cwd, environ=env, cache_dir=state_dir)
    filenames = await scan_dependencies(
        argv, cwd=cwd, environ=env, compiler_path=info.local_compiler_path
    )
    store = await anyio.to_thread.run_sync(KnownFileStore.open_in, state_dir)

    try:
        async with GomaHttpClient(address) as client:
            session = _RemoteCompile(
                client=client,
                store=store,
                info=info,
                argv=list(argv),
                cwd=cwd,
                environ=env,
                filenames=filenames,
                rng=rng or random.Random(),
                retry_backoff_seconds=options.retry_backoff_seconds,
            )
            return await session.run()
    finally:
        store.close()


@dataclass
class _RemoteCompile:
    """The Exec loop of one compile and the state it carries between rounds."""

    client: GomaHttpClient
    store: KnownFileStore
    info: CompilerInfo
    argv: list[str]
    cwd: str
    environ: dict[str, str]
    filenames: list[str]
    rng: random.Random
    retry_backoff_seconds: float = DEFAULT_RETRY_BACKOFF_SECONDS
    stats: CompileStats = field(default_factory=CompileStats)
    requester: RequesterIdentity = field(init=False)

    def __post_init__(self) -> None:
        pid = os.getpid()
        user = self.environ.get("USER") or self.environ.get("LOGNAME") or "unknown"
        # Each launcher run is one compiler_proxy task, and its pid as the task number
        # keeps apart the ids of launchers started in the same second.
        proxy_id = compiler_proxy_id(user, os.uname().nodename, int(time.time()), pid)
        self.requester = RequesterIdentity(pid=pid, compiler_proxy_id=proxy_id)

    async def run(self) -> CompileOutcome:
        missing: set[str] = set()
        store_only = False
        reasons: list[str] = []
        failures = 0

        for retry in range(MAX_EXEC_RETRIES + 1):
            if failures:
                await anyio.sleep(retry_delay(failures, self.retry_backoff_seconds, self.rng))
            planned = await anyio.to_thread.run_sync(self._plan, missing)
            request = self._request(planned, retry, store_only)

            try:
                outcome = await self._attempt(request, planned)
            except _Retry as again:
                reasons.append(again.reason)
                log.debug("exec_retry", retry=retry, reason=again.reason)
                missing = set(again.missing)
                store_only = store_only or again.store_only
                failures = failures + 1 if again.transient else 0
                continue
            return outcome

        raise self._failure(
            [f"remote compile failed after {MAX_EXEC_RETRIES + 1} Exec attempts: {reasons[-1]}"]
        )

    def _plan(self, missing: set[str]) -> list[PlannedInput]:
        return plan_inputs(
            self.filenames, cwd=self.cwd, store=self.store, missing=missing, now=time.time()
        )

    def _request(
        self, planned: list[PlannedInput], retry: int, store_only: bool
    ) -> goma_pb2.ExecReq:
        inputs = exec_inputs(planned, rng=self.rng)
        self.stats.embedded_bytes += embedded_bytes(inputs)
        return build_exec_request(
            info=self.info,
            args=self.argv,
            environ=self.environ,
            cwd=self.cwd,
            inputs=inputs,
            expected_outputs=expected_output_files(self.argv),
            requester=self.requester,
            retry=retry,
            cache_policy=goma_pb2.ExecReq.STORE_ONLY if store_only else None,
        )

    async def _attempt(
        self, request: goma_pb2.ExecReq, planned: list[PlannedInput]
    ) -> CompileOutcome:
        """Make one Exec round, raising _Retry when another round should follow."""
        await self._upload(planned, request.requester_info)
        response = await self._exec(request)

        decision = classify_response(request, response)
        if isinstance(decision, CompileFailed):
            raise self._failure(decision.messages, fallback_allowed=decision.fallback_allowed)
        if isinstance(decision, MissingInputs):
            self.stats.missing_rounds += 1
            await anyio.to_thread.run_sync(record_missing, self.store, planned, decision.filenames)
            embedded = {entry.filename for entry in request.input if entry.HasField("content")}
            await anyio.to_thread.run_sync(
                record_received, self.store, planned, embedded, decision.filenames
            )
            raise _Retry(
                f"server lacks {len(decision.filenames)} inputs",
                decision.filenames,
                transient=False,
            )
        if isinstance(decision, RetryExec):
            raise _Retry(decision.reason)
        assert isinstance(decision, Done)

        outputs = await self._download(response, request)
        await anyio.to_thread.run_sync(record_success, self.store, planned)
        return CompileOutcome(
            exit_status=response.result.exit_status,
            stdout=response.result.stdout_buffer,
            stderr=response.result.stderr_buffer,
            cache_hit=goma_pb2.ExecResp.CacheSource.Name(response.cache_hit),
            cache_key=response.cache_key,
            outputs=outputs,
            stats=self.stats,
        )

    async def _upload(
        self, planned: list[PlannedInput], requester_info: goma_pb2.RequesterInfo
    ) -> None:
        try:
            self.stats.uploaded_chunks += await upload_chunks(self.client, planned, requester_info)
        except TimeoutError:
            raise _Retry("chunk upload timed out") from None
        except InputUploadError as exc:
            raise _Retry(f"chunk upload failed: {exc.message}") from exc
        except GomaRpcError as exc:
            if not exc.retryable:
                raise self._failure([f"chunk upload failed: {exc.message}"]) from exc
            raise _Retry(f"chunk upload failed: {exc.message}") from exc

    async def _exec(self, request: goma_pb2.ExecReq) -> goma_pb2.ExecResp:
        self.stats.exec_calls += 1
        try:
            with anyio.fail_after(EXEC_TIMEOUT_SECONDS):
                return await self.client.exec(request)
        except TimeoutError:
            raise _Retry(f"Exec timed out after {EXEC_TIMEOUT_SECONDS:.0f} s") from None
        except GomaRpcError as exc:
            if not exc.retryable:
                raise self._failure([exc.message]) from exc
            raise _Retry(exc.message) from exc

    async def _download(self, response: goma_pb2.ExecResp, request: goma_pb2.ExecReq) -> list[str]:
        """Write the outputs; a failed download is retried once with STORE_ONLY."""
        try:
            written = await write_outputs(
                self.client,
                response.result,
                cwd=self.cwd,
                requester_info=request.requester_info,
                umask=_current_umask(),
            )
        except OutputDownloadError as exc:
            if request.cache_policy == goma_pb2.ExecReq.STORE_ONLY:
                raise self._failure([f"output download failed: {exc.message}"]) from exc
            raise _Retry(
                f"output download failed: {exc.message}", store_only=True, transient=False
            ) from exc

        await anyio.to_thread.run_sync(
            self.store.mark_on_server, [(item.identity, item.hash_key) for item in written]
        )
        return [item.filename for item in written]

    def _failure(
        self, messages: Sequence[str], *, fallback_allowed: bool = True
    ) -> RemoteCompileError:
        return RemoteCompileError(messages, stats=self.stats, fallback_allowed=fallback_allowed)


class _Retry(Exception):
    """Another Exec round should follow.

    ``missing`` lists the inputs to send again.  ``transient`` marks a failure that waits
    out a backoff before the next round.
    """

    def __init__(
        self,
        reason: str,
        missing: Sequence[str] = (),
        *,
        store_only: bool = False,
        transient: bool = True,
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.missing = tuple(missing)
        self.store_only = store_only
        self.transient = transient


def retry_delay(failures: int, base_seconds: float, rng: random.Random) -> float:
    """Return the wait in seconds before the next Exec after ``failures`` failures in a row."""
    ceiling = min(base_seconds * _BACKOFF_GROWTH ** (failures - 1), _BACKOFF_MAX_SECONDS)
    return ceiling * rng.uniform(0.6, 1.0)


def _current_umask() -> int:
    # os.umask can only be read by setting it, so it is set back at once.
    # NOTE: another thread creating files between the two calls would use mask 0.
    mask = os.umask(0)
    os.umask(mask)
    return mask
