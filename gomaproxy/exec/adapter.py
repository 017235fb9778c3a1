"""The Exec adapter: one goma ExecReq in, one ExecResp out, through a REAPI backend.

Theory of operation.  Each Exec runs in the caller's task and opens task groups only for
its own fan-out (input digests, uploads, output conversion), so cancelling the caller
cancels every RPC of the request.  It goes through eight phases, each under its own
deadline from ``ExecConfig``:

1. inventory      pick the toolchain for the CommandSpec (BAD_REQUEST when none)
2. input tree     exec root, root-relative names, input digests, Merkle tree
3. setup          Command and Action and their digests
4. check cache    GetActionResult, unless the cache policy skips it
5. check missing  FindMissingBlobs over every digest of the request
6. upload         the missing blobs, batched or by ByteStream
7. execute        Execute and its operation stream
8. response       ActionResult to ExecResult

Requests with the same action digest share phases 4 to 7 (see ``inflight``): the first
one runs them, and the others wait in the ``merged_wait`` phase for its ActionResult or
error.  Requests that must skip the cache (STORE_ONLY) or must not be cached
(LOOKUP_ONLY) always run alone.

A phase ends the request early by returning a response (BAD_REQUEST, missing inputs) or
by raising a ``GomaProxyError``, which the HTTP frontend maps to a status code.  The
deadline of phase 2 turns the inputs not resolved by then into missing inputs (or into
DEADLINE_EXCEEDED when GetCapabilities is still running), that of phase 4 into a cache
miss, and the others into DEADLINE_EXCEEDED.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from contextlib import contextmanager

import anyio
import structlog
from google.rpc import error_details_pb2

from gomaproxy.config import ExecConfig
from gomaproxy.digest import DigestKey, digest_of_message
from gomaproxy.errors import BackendError, BadRequest, Code, GomaProxyError
from gomaproxy.exec import command as command_mod
from gomaproxy.exec.blobs import DigestCache
from gomaproxy.exec.clientpath import PathStyle, path_lib
from gomaproxy.exec.inflight import Ending, Flight, InflightActions, SharedResult
from gomaproxy.exec.inputs import GomaFiles, InputResolver
from gomaproxy.exec.inputtree import InputTreeBuilder, work_dir
from gomaproxy.exec.inventory import Inventory, Toolchain, apply_client_platform
from gomaproxy.exec.missing import fill_missing_inputs
from gomaproxy.exec.relocatable import NotRelocatable, UnknownFlag, check_relocatable
from gomaproxy.exec.response import OutputContext, fill_exec_result
from gomaproxy.exec.run import ExecRun, Limiters
from gomaproxy.metrics import ExecMetrics
from gomaproxy.protos import goma_data_pb2 as goma_pb2
from gomaproxy.protos import remote_execution_pb2 as re_pb2
from gomaproxy.remote import cas
from gomaproxy.remote.backend import Backend
from gomaproxy.remote.execute import ExecutePolicy, execute_and_wait
from gomaproxy.remote.requester import bound_requester

log = structlog.get_logger(__name__)

# Re-uploads after the backend reports inputs missing at Execute time.  After that
# many, the client gets those inputs back as missing inputs.
MAX_PRECONDITION_REUPLOADS = 2


class Adapter:
    """Runs goma Exec requests on a REAPI backend."""

    def __init__(
        self,
        *,
        backend: Backend,
        files: GomaFiles,
        inventory: Inventory,
        config: ExecConfig,
        limiters: Limiters,
        metrics: ExecMetrics,
        instance_name: str = "",
        digest_cache: DigestCache | None = None,
        input_root_absolute_path: bool = True,
    ) -> None:
        self._backend = backend
        self._files = files
        self._inventory = inventory
        self._config = config
        self._limiters = limiters
        self._metrics = metrics
        self._instance = instance_name
        # Whether actions may carry the InputRootAbsolutePath platform property.
        self._input_root_absolute_path = input_root_absolute_path
        self._digest_cache = digest_cache or DigestCache(config.digest_cache_entries)
        resolver = InputResolver(files, self._digest_cache, limiters.file_lookup)
        self._input_tree = InputTreeBuilder(
            resolver, missing_input_limit=config.missing_input_limit, metrics=metrics
        )
        self._capabilities: re_pb2.ServerCapabilities | None = None
        self._inflight = InflightActions()

    @property
    def inflight(self) -> InflightActions:
        """The actions that requests are running now, merged by action digest."""
        return self._inflight

    async def exec(self, request: goma_pb2.ExecReq, *, request_id: str) -> goma_pb2.ExecResp:
        """Run one goma Exec.

        Returns the ExecResp for every outcome the goma protocol expresses in a response:
        results, BAD_REQUEST, missing inputs.

        Raises:
            GomaProxyError: backend failures and deadlines; the frontend maps the code to
                an HTTP status so the client retries or falls back.
        """
        with (
            structlog.contextvars.bound_contextvars(request_id=request_id),
            bound_requester(request.requester_info),
        ):
            return await self._exec(request, request_id)

    async def _exec(self, request: goma_pb2.ExecReq, request_id: str) -> goma_pb2.ExecResp:
        run = ExecRun(request, request_id=request_id)
        started = time.perf_counter()
        retry = request.requester_info.retry
        self._metrics.client_retry.labels(retry=str(min(retry, 10))).inc()

        try:
            await self._run(run)
        except GomaProxyError as exc:
            run.outcome = f"error:{exc.code.name}"
            self._metrics.requests.labels(outcome="error").inc()
            self._log_finished(run, started, error=str(exc))
            raise
        except BaseException:
            run.outcome = "aborted"
            self._log_finished(run, started)
            raise

        self._metrics.requests.labels(outcome=run.outcome).inc()
        self._log_finished(run, started)
        return run.response

    def _log_finished(self, run: ExecRun, started: float, *, error: str | None = None) -> None:
        fields = {f"{name}_ms": round(ms, 2) for name, ms in run.timings.items()}
        log.info(
            "exec_finished",
            outcome=run.outcome,
            cache=run.cache,
            exit_status=run.response.result.exit_status
            if run.response.HasField("result")
            else None,
            inputs=len(run.request.input),
            outputs=list(run.request.expected_output_files)[:4],
            missing=run.missing,
            uploaded_blobs=run.uploaded,
            uploaded_bytes=run.uploaded_bytes,
            embedded_bytes=_embedded_bytes(run.request),
            output_bytes=_output_bytes(run.response),
            action=str(run.action_digest) if run.action_digest else None,
            exec_root=run.root or None,
            relocatable=run.relocatable,
            client_retry=run.request.requester_info.retry,
            exec_merged=run.merged_with,
            total_ms=round((time.perf_counter() - started) * 1000, 2),
            error=error,
            **fields,
        )

    @contextmanager
    def _phase(self, run: ExecRun, name: str, timeout_s: float) -> Iterator[anyio.CancelScope]:
        started = time.perf_counter()
        try:
            with anyio.move_on_after(timeout_s if timeout_s > 0 else math.inf) as scope:
                yield scope
        finally:
            elapsed = time.perf_counter() - started
            run.timings[name] = elapsed * 1000
            self._metrics.phase_seconds.labels(phase=name).observe(elapsed)

    async def _run(self, run: ExecRun) -> None:
        config = self._config

        with self._phase(run, "inventory", config.inventory_timeout_s) as scope:
            done = await self._pick_toolchain(run)
        if scope.cancelled_caught:
            raise GomaProxyError("toolchain selection timed out", code=Code.DEADLINE_EXCEEDED)
        if done:
            return

        # The builder applies the deadline to input resolution itself, so that inputs
        # still unresolved when it passes become missing inputs.
        deadline = _deadline(config.input_tree_timeout_s)
        with self._phase(run, "input_tree", 0):
            with anyio.CancelScope(deadline=deadline) as scope:
                absolute_symlinks = await self._absolute_symlinks_allowed()
            if scope.cancelled_caught:
                raise GomaProxyError(
                    "GetCapabilities timed out while building the input tree",
                    code=Code.DEADLINE_EXCEEDED,
                )
            done = await self._input_tree.build(
                run, absolute_symlinks=absolute_symlinks, deadline=deadline
            )
        if done:
            return

        with self._phase(run, "setup", config.setup_timeout_s) as scope:
            try:
                await self._setup(run)
            except BadRequest as exc:
                run.reject(str(exc))
                return
        if scope.cancelled_caught:
            raise GomaProxyError(
                "building the Command and Action timed out", code=Code.DEADLINE_EXCEEDED
            )

        shared = await self._merged_result(run)
        if shared is None:
            return
        run.cache = shared.cache
        await self._respond(run, shared.result, shared.source)

    async def _merged_result(self, run: ExecRun) -> SharedResult | None:
        """Run phases 4 to 7, or take their outcome from an identical request in flight.

        Returns None when the request is done without a result (missing inputs).
        """
        assert run.action is not None and run.action_digest is not None
        if run.action.do_not_cache or run.request.cache_policy == goma_pb2.ExecReq.STORE_ONLY:
            return await self._action_result(run)

        while True:
            flight, leader = self._inflight.join(run.action_digest, run.request_id)
            if leader:
                return await self._lead(run, flight)

            with self._phase(run, "merged_wait", 0):
                await flight.settled.wait()
            if flight.ending is Ending.HANDOVER:
                log.info("exec_merge_handover", leader=flight.leader_request_id)
                continue
            if flight.ending is Ending.RUN_ALONE:
                return await self._action_result(run)

            run.merged_with = flight.leader_request_id
            self._metrics.merged.inc()
            if flight.error is not None:
                raise GomaProxyError(flight.error.message, code=flight.error.code)
            return flight.result

    async def _lead(self, run: ExecRun, flight: Flight) -> SharedResult | None:
        """Run phases 4 to 7 for ``flight`` and settle it on every path.

        Cancellation: the waiters are woken with HANDOVER, so one of them runs the phases.
        Any error other than a ``GomaProxyError`` hands over too.
        """
        try:
            shared = await self._action_result(run)
        except GomaProxyError as exc:
            self._inflight.settle(flight, Ending.ERROR, error=exc)
            raise
        except BaseException:
            self._inflight.settle(flight, Ending.HANDOVER)
            raise

        if shared is None:
            self._inflight.settle(flight, Ending.RUN_ALONE)
        else:
            self._inflight.settle(flight, Ending.RESULT, result=shared)
        return shared

    async def _action_result(self, run: ExecRun) -> SharedResult | None:
        """Run phases 4 to 7.  Returns None when the request is done (missing inputs)."""
        config = self._config
        with self._phase(run, "check_cache", config.check_cache_timeout_s) as scope:
            cached = await self._check_cache(run)
        if scope.cancelled_caught:
            log.info("action_cache_check_timed_out", timeout_s=config.check_cache_timeout_s)
            cached = None

        if cached is not None:
            return SharedResult(cached, goma_pb2.ExecResp.MEM_CACHE, "action_cache")

        if await self._upload_inputs(run):
            return None

        response = await self._execute(run)
        if response is not None and _is_cached_failure(response, run.request):
            # The backend's own cache lookup found a failure.  Failures may come from a
            # broken worker, so they are run once more without the cache.
            log.info("execute_cached_failure_ignored", exit_code=response.result.exit_code)
            run.request.cache_policy = goma_pb2.ExecReq.STORE_ONLY
            response = await self._execute(run)
        if response is None:
            return None

        if response.cached_result:
            return SharedResult(response.result, goma_pb2.ExecResp.STORAGE_CACHE, "execute_cached")
        return SharedResult(response.result, goma_pb2.ExecResp.NO_CACHE, "executed")

    async def _pick_toolchain(self, run: ExecRun) -> bool:
        toolchain = await self._inventory.pick(run.request, run.response)
        if toolchain is None or not apply_client_platform(
            run.request, run.response, toolchain.platform
        ):
            run.outcome = "bad_request"
            return True

        run.toolchain = toolchain
        run.style = toolchain.path_style
        return False

    async def _setup(self, run: ExecRun) -> None:
        request, toolchain = run.request, run.toolchain
        assert toolchain is not None and run.input_root is not None

        environment = self._allowed_environment(run)
        platform = dict(toolchain.platform)
        if run.need_chroot:
            # The action runs with the host's toolchain directories and its inputs at their
            # client paths.  gcc needs PATH to find the assembler it runs.
            environment.setdefault("PATH", _toolchain_path(toolchain.argv0))
            environment.setdefault("HOME", "/")
            if self._input_root_absolute_path:
                platform["InputRootAbsolutePath"] = "/"
        else:
            run.relocatable = self._is_relocatable(run, environment)
            if run.relocatable:
                for name in command_mod.CWD_VARIABLES:
                    environment.pop(name, None)
            elif toolchain.absolute_root_supported and self._input_root_absolute_path:
                platform.setdefault("InputRootAbsolutePath", run.root)
            else:
                raise BadRequest(
                    f"the request is not relocatable ({run.not_relocatable_reason}), so it must "
                    f"run at its absolute root {run.root}, which this backend cannot do: install "
                    "bubblewrap on the server (Debian package bubblewrap) or make the request "
                    "relocatable"
                )

        layout = run.layout
        assert layout is not None
        target = request.command_spec.target if toolchain.clang_need_target else None
        arguments = command_mod.command_arguments(_argv0(run), request.arg, target=target)
        if layout.use_wrapper:
            arguments.insert(0, f"./{command_mod.WRAPPER_NAME}")
            environment["WORK_DIR"] = work_dir(run) or "."

        capabilities = await self._server_capabilities()
        sorted_platform = command_mod.sorted_platform(platform)
        command = command_mod.build_command(
            arguments=arguments,
            environment=environment,
            output_files=layout.output_files,
            output_directories=layout.output_directories,
            platform=sorted_platform,
            working_directory=layout.working_directory,
            use_output_paths=_supports_output_paths(capabilities),
        )
        command_digest, command_bytes = digest_of_message(command)
        run.blobs.add_bytes(command_digest, command_bytes)

        action = command_mod.build_action(
            command_digest=command_digest.to_proto(),
            input_root_digest=run.input_root.to_proto(),
            timeout_s=self._config.action_timeout_s,
            do_not_cache=request.cache_policy == goma_pb2.ExecReq.LOOKUP_ONLY,
            platform=sorted_platform,
        )
        action_digest, action_bytes = digest_of_message(action)
        run.blobs.add_bytes(action_digest, action_bytes)
        run.action, run.action_digest = action, action_digest
        run.response.cache_key = str(action_digest)

    def _allowed_environment(self, run: ExecRun) -> dict[str, str]:
        compiler = run.request.command_spec.name
        parsed = command_mod.parse_environment(run.request.env)
        environment, dropped = command_mod.allowed_environment(compiler, parsed)
        if dropped:
            log.debug("environment_dropped", compiler=compiler, variables=dropped)
        return environment

    def _is_relocatable(self, run: ExecRun, environment: dict[str, str]) -> bool:
        request = run.request
        compiler = request.command_spec.name
        try:
            check_relocatable(
                compiler,
                list(request.arg),
                [f"{name}={value}" for name, value in environment.items()],
                windows=run.style is PathStyle.WINDOWS,
            )
        except NotRelocatable as exc:
            run.not_relocatable_reason = str(exc)
            log.info(
                "request_not_relocatable",
                compiler=compiler,
                reason=str(exc),
                unknown_flag=isinstance(exc, UnknownFlag),
            )
            return False

        reason = (
            "javac outputs never contain the working directory"
            if compiler == "javac"
            else "no argument or variable names an absolute path"
        )
        log.debug("request_relocatable", compiler=compiler, reason=reason)
        return True

    async def _server_capabilities(self) -> re_pb2.ServerCapabilities:
        if self._capabilities is None:
            request = re_pb2.GetCapabilitiesRequest(instance_name=self._instance)
            self._capabilities = await self._backend.get_capabilities(request)
        return self._capabilities

    async def _absolute_symlinks_allowed(self) -> bool:
        capabilities = await self._server_capabilities()
        strategy = capabilities.cache_capabilities.symlink_absolute_path_strategy
        return strategy == re_pb2.SymlinkAbsolutePathStrategy.ALLOWED

    async def _check_cache(self, run: ExecRun) -> re_pb2.ActionResult | None:
        if run.request.cache_policy == goma_pb2.ExecReq.STORE_ONLY:
            return None
        assert run.action_digest is not None

        request = re_pb2.GetActionResultRequest(
            instance_name=self._instance, action_digest=_lookup_digest(run).to_proto()
        )
        try:
            result = await self._backend.get_action_result(request)
        except BackendError as exc:
            if exc.code != Code.NOT_FOUND:
                log.warning("action_cache_lookup_failed", code=exc.code.name, error=exc.message)
            return None

        if result.exit_code != 0:
            log.info("action_cache_hit_ignored", reason="non-zero exit", exit_code=result.exit_code)
            run.request.cache_policy = goma_pb2.ExecReq.STORE_ONLY
            return None
        if await self._outputs_missing(result):
            log.info("action_cache_hit_ignored", reason="outputs missing from the CAS")
            return None
        return result

    async def _outputs_missing(self, result: re_pb2.ActionResult) -> bool:
        digests = [DigestKey.of(f.digest) for f in result.output_files]
        digests += [DigestKey.of(d.tree_digest) for d in result.output_directories]
        for digest in (result.stdout_digest, result.stderr_digest):
            if digest.size_bytes:
                digests.append(DigestKey.of(digest))
        return bool(await cas.find_missing_blobs(self._backend, self._instance, digests))

    async def _upload_inputs(self, run: ExecRun) -> bool:
        config = self._config

        with self._phase(run, "check_missing", config.check_missing_timeout_s) as scope:
            missing = await cas.find_missing_blobs(self._backend, self._instance, list(run.blobs))
        if scope.cancelled_caught:
            raise GomaProxyError("FindMissingBlobs timed out", code=Code.DEADLINE_EXCEEDED)

        with self._phase(run, "upload", config.upload_timeout_s) as scope:
            done = await self._upload(run, missing)
        if scope.cancelled_caught:
            raise GomaProxyError("uploading inputs timed out", code=Code.DEADLINE_EXCEEDED)
        return done

    async def _upload(self, run: ExecRun, digests: list[DigestKey]) -> bool:
        capabilities = await self._server_capabilities()
        limit = cas.batch_byte_limit(capabilities.cache_capabilities.max_batch_total_size_bytes)

        async def read(digest: DigestKey) -> bytes:
            source = run.blobs.get(digest)
            if source is None:
                raise GomaProxyError(f"blob {digest} is not part of the request")
            return await source.read()

        failures = await cas.upload_blobs(
            self._backend,
            self._instance,
            digests,
            read,
            byte_limit=limit,
            read_limiter=self._limiters.cas_blob_lookup,
        )
        failed = {failure.digest for failure in failures}
        run.uploaded += len(digests) - len(failures)
        run.uploaded_bytes += sum(d.size_bytes for d in digests if d not in failed)
        if not failures:
            return False

        named = []
        for failure in failures:
            source = run.blobs.get(failure.digest)
            if source is not None and source.filename:
                named.append((source.filename, failure.reason))
        if not named:
            reasons = "; ".join(f"{f.digest}: {f.reason}" for f in failures)
            raise GomaProxyError(
                f"uploading {len(failures)} blobs failed: {reasons}", code=Code.UNAVAILABLE
            )

        fill_missing_inputs(
            run.response, run.request, named, limit=self._config.missing_input_limit
        )
        run.missing = len(run.response.missing_input)
        self._metrics.missing_inputs.inc(run.missing)
        run.outcome = "missing_inputs"
        return True

    async def _execute(self, run: ExecRun) -> re_pb2.ExecuteResponse | None:
        assert run.action_digest is not None
        config = self._config
        request = re_pb2.ExecuteRequest(
            instance_name=self._instance,
            action_digest=run.action_digest.to_proto(),
            skip_cache_lookup=run.request.cache_policy == goma_pb2.ExecReq.STORE_ONLY,
        )
        policy = ExecutePolicy(
            max_attempts=config.execute_max_attempts,
            attempt_timeout_s=config.execute_attempt_timeout_s,
        )

        for reupload in range(MAX_PRECONDITION_REUPLOADS + 1):
            with self._phase(run, "execute", config.execute_timeout_s) as scope:
                outcome = await execute_and_wait(self._backend, request, policy)
            if scope.cancelled_caught:
                raise GomaProxyError("execution timed out", code=Code.DEADLINE_EXCEEDED)

            response = outcome.response
            status = response.status.code
            if status == Code.OK:
                return response

            missing = _missing_blob_violations(response)
            if (
                status == Code.FAILED_PRECONDITION
                and missing
                and reupload < MAX_PRECONDITION_REUPLOADS
            ):
                log.info("execute_missing_blobs", blobs=len(missing), attempt=reupload)
                if await self._upload(run, missing):
                    return None
                continue
            raise _execute_status_error(response)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _respond(self, run: ExecRun, result: re_pb2.ActionResult, source: int) -> None:
        config = self._config
        run.response.cache_hit = source
        self._metrics.cache.labels(source=goma_pb2.ExecResp.CacheSource.Name(source)).inc()

        async def read_blob(digest: DigestKey) -> bytes:
            return await cas.read_blob(self._backend, self._instance, digest)

        context = OutputContext(
            read_blob=read_blob,
            store_blob=self._files.store_blob,
            limiter=self._limiters.output_file,
            paths=path_lib(run.style),
            cwd=run.cwd,
            root=_output_base(run),
            max_response_bytes=config.max_response_bytes,
        )
        with self._phase(run, "response", config.response_timeout_s) as scope:
            await fill_exec_result(context, run.response, result)
        if scope.cancelled_caught:
            raise GomaProxyError(
                "converting the action result timed out", code=Code.DEADLINE_EXCEEDED
            )
        if run.response.error_message:
            run.outcome = "internal"


def _deadline(timeout_s: float) -> float:
    """Return the absolute deadline ``timeout_s`` from now, where 0 or less means none."""
    return anyio.current_time() + timeout_s if timeout_s > 0 else math.inf


def _embedded_bytes(request: goma_pb2.ExecReq) -> int:
    """Return the file bytes the client embedded in the request."""
    return sum(len(entry.content.content) for entry in request.input if entry.HasField("content"))


def _output_bytes(response: goma_pb2.ExecResp) -> int:
    """Return the size of the output files the response carries or references."""
    return sum(output.blob.file_size for output in response.result.output)


def _output_base(run: ExecRun) -> str:
    """Return the client directory that the ActionResult's output paths are relative to."""
    working_directory = run.layout.working_directory if run.layout else ""
    if not working_directory:
        return run.root
    return path_lib(run.style).join(run.root, working_directory)


def _argv0(run: ExecRun) -> str:
    """Return the command to run, relative to the cwd when it is in a relocatable input tree.

    A toolchain file that the request ships sits in the input tree at its client path.
    A relocatable action runs under another absolute root, so an absolute argv[0] would
    miss it there.  A command from the workers' image keeps its absolute path.
    """
    toolchain = run.toolchain
    assert toolchain is not None
    argv0 = toolchain.argv0
    lib = path_lib(run.style)
    if not run.relocatable or not lib.is_abs(argv0) or not _is_shipped(run.request, toolchain):
        return argv0

    relative = lib.rel(run.cwd, lib.clean(argv0))
    if lib.separator not in relative:
        relative = "." + lib.separator + relative
    return relative


def _is_shipped(request: goma_pb2.ExecReq, toolchain: Toolchain) -> bool:
    """Tell whether argv[0] is a command file or an input, so it is in the input tree."""
    if any(file.path == toolchain.argv0 for file in toolchain.command_files):
        return True
    return any(entry.filename == toolchain.argv0 for entry in request.input)


def _lookup_digest(run: ExecRun) -> DigestKey:
    """Return the action digest to look up in the action cache.

    A LOOKUP_ONLY request runs its action with ``do_not_cache``, and that flag is part
    of the action digest, so no result is ever stored under it.  Such a request looks up
    the same action without the flag, where LOOKUP_AND_STORE requests store results.
    """
    assert run.action is not None and run.action_digest is not None
    if not run.action.do_not_cache:
        return run.action_digest

    cacheable = re_pb2.Action()
    cacheable.CopyFrom(run.action)
    cacheable.do_not_cache = False
    return digest_of_message(cacheable)[0]


def _is_cached_failure(response: re_pb2.ExecuteResponse, request: goma_pb2.ExecReq) -> bool:
    return (
        response.cached_result
        and response.result.exit_code != 0
        and request.cache_policy != goma_pb2.ExecReq.STORE_ONLY
    )


def _toolchain_path(argv0: str) -> str:
    directory = argv0.rsplit("/", 1)[0] or "/"
    standard = ["/usr/local/bin", "/usr/bin", "/bin"]
    return ":".join(dict.fromkeys([directory, *standard]))


def _supports_output_paths(capabilities: re_pb2.ServerCapabilities) -> bool:
    high = capabilities.high_api_version
    return (high.major, high.minor) >= (2, 1)


def _missing_blob_violations(response: re_pb2.ExecuteResponse) -> list[DigestKey]:
    missing = []
    for detail in response.status.details:
        failure = error_details_pb2.PreconditionFailure()
        if not detail.Unpack(failure):
            continue
        for violation in failure.violations:
            if violation.type != "MISSING":
                continue
            parts = violation.subject.split("/")
            if len(parts) >= 3 and parts[-3] == "blobs" and parts[-1].isdigit():
                missing.append(DigestKey(parts[-2], int(parts[-1])))
    return missing


def _execute_status_error(response: re_pb2.ExecuteResponse) -> GomaProxyError:
    value = response.status.code
    code = Code(value) if value in Code._value2member_map_ else Code.UNKNOWN
    message = response.status.message or response.message or "no message"
    if code in (Code.CANCELLED, Code.DEADLINE_EXCEEDED, Code.ABORTED, Code.UNAUTHENTICATED):
        return GomaProxyError(f"execution ended with {code.name}: {message}", code=code)
    return GomaProxyError(f"exec error: {code.name}: {message}", code=Code.INTERNAL)
