"""The embedded local backend: an in-process REAPI v2 server behind the Backend interface.

It binds no port.  Blobs live in a size-capped CAS under ``<state_dir>/cas``, results in an
action cache under ``<state_dir>/ac``, and actions run in ``<state_dir>/actions``, under
bubblewrap when it is installed and usable.

``LocalBackend`` opens and closes the state directory and serves GetCapabilities and
GetActionResult.  It inherits the other RPCs from two mixins.  ``BlobRpcs`` in
``blob_rpcs.py`` serves the CAS batches and ByteStream, and ``ExecutionRpcs`` in
``execution_rpcs.py`` serves Execute and WaitExecution.
"""

from __future__ import annotations

import fcntl
import os
import socket
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import final

import anyio
import anyio.to_thread
import structlog
from prometheus_client import REGISTRY, CollectorRegistry

from gomaproxy.digest import DigestKey
from gomaproxy.errors import BackendError, Code
from gomaproxy.local.actioncache import ActionCache
from gomaproxy.local.blob_rpcs import BlobRpcs
from gomaproxy.local.bwrap_probe import detect_bwrap
from gomaproxy.local.bytestream import ByteStreamService
from gomaproxy.local.cas import ContentAddressableStorage
from gomaproxy.local.execution_rpcs import ExecutionRpcs, Operation
from gomaproxy.local.executor import LocalExecutor
from gomaproxy.local.inputs import remove_tree
from gomaproxy.local.metrics import metrics_for
from gomaproxy.local.rpc_errors import (
    MAX_BATCH_TOTAL_SIZE_BYTES,
    check_digest_function,
    digest_key,
)
from gomaproxy.local.sandbox import DEFAULT_HOST_TOOLCHAIN_DIRS
from gomaproxy.protos import remote_execution_pb2 as re_pb2
from gomaproxy.protos import semver_pb2

log = structlog.get_logger(__name__)

# Total stdout, stderr and output file bytes inlined into one result on request.
MAX_INLINE_BYTES = 1024 * 1024


@final
class LocalBackend(BlobRpcs, ExecutionRpcs):
    """An in-process REAPI v2 server: CAS, action cache and local execution.

    Call ``open`` (or use ``async with``) before any other method, and ``aclose`` at the end.
    """

    name = "local"

    def __init__(
        self,
        state_dir: Path,
        *,
        cas_max_bytes: int,
        max_concurrent_actions: int | None = None,
        use_bwrap: bool | None = None,
        host_toolchain_dirs: Sequence[str] | None = None,
        registry: CollectorRegistry | None = None,
    ) -> None:
        """Configure the backend; ``open`` does the I/O.

        Args:
            state_dir: directory for the CAS, the action cache and the action directories.
            cas_max_bytes: size cap of the CAS in bytes.
            max_concurrent_actions: actions run at once; None or 0 means one per CPU.
            use_bwrap: True requires bubblewrap, False never uses it, None uses it when
                ``bwrap`` is on PATH and works.
            host_toolchain_dirs: host directories shown read-only to sandboxed actions.
            registry: Prometheus registry for the metrics; None means the default one.
        """
        self.state_dir = state_dir
        self.cas_max_bytes = cas_max_bytes
        self.use_bwrap = use_bwrap
        self.host_toolchain_dirs = tuple(host_toolchain_dirs or DEFAULT_HOST_TOOLCHAIN_DIRS)
        self.metrics = metrics_for(registry if registry is not None else REGISTRY)
        slots = max_concurrent_actions or os.cpu_count() or 1
        self.action_limiter = anyio.CapacityLimiter(slots)

        self._cas: ContentAddressableStorage | None = None
        self._action_cache: ActionCache | None = None
        self._bytestream: ByteStreamService | None = None
        self._executor: LocalExecutor | None = None
        self._bwrap_path: str | None = None
        # Open descriptor holding the exclusive lock on the state directory while open.
        self._lock_fd: int | None = None
        self._running: dict[str, Operation] = {}
        self._finished: OrderedDict[str, Operation] = OrderedDict()

    # Life cycle.

    async def open(self) -> LocalBackend:
        """Create the state directories, index the CAS and detect bubblewrap.

        Raises:
            BackendError: FAILED_PRECONDITION when ``use_bwrap`` is True and bubblewrap is
                missing or does not work, or when another local backend uses the same
                state directory.
        """
        if self._cas is not None:
            return self

        self._bwrap_path = await detect_bwrap(self.use_bwrap)
        self._lock_fd = await anyio.to_thread.run_sync(_lock_state_dir, self.state_dir)
        try:
            await self._open_stores()
        except BaseException:
            self._unlock()
            raise

        log.info(
            "local_backend_opened",
            state_dir=str(self.state_dir),
            bwrap=self._bwrap_path,
            action_slots=self.action_limiter.total_tokens,
        )
        return self

    async def _open_stores(self) -> None:
        actions_dir = self.state_dir / "actions"
        await anyio.to_thread.run_sync(_reset_actions_dir, actions_dir)

        cas = await ContentAddressableStorage.open(
            self.state_dir / "cas",
            max_bytes=self.cas_max_bytes,
            on_size_change=self.metrics.cas_bytes.set,
        )
        self.metrics.cas_bytes.set(cas.total_bytes)
        self._action_cache = await ActionCache.open(self.state_dir / "ac", cas)
        self._bytestream = ByteStreamService(cas)
        self._executor = LocalExecutor(
            cas,
            actions_dir=actions_dir,
            limiter=self.action_limiter,
            bwrap_path=self._bwrap_path,
            host_toolchain_dirs=self.host_toolchain_dirs,
            worker_name=f"gomaproxy-local@{socket.gethostname()}",
        )
        self._cas = cas

    async def aclose(self) -> None:
        """Discard unfinished uploads and release the state directory.

        Executions run in their callers' tasks, which must end before this is called.
        """
        if self._bytestream is not None:
            await self._bytestream.aclose()
        self._unlock()
        log.info("local_backend_closed", state_dir=str(self.state_dir))

    def _unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    async def __aenter__(self) -> LocalBackend:
        return await self.open()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    @property
    def supports_absolute_input_root(self) -> bool:
        """Whether actions may set InputRootAbsolutePath, which needs bubblewrap."""
        self._require_open()
        return self._bwrap_path is not None

    @property
    def limiters(self) -> Mapping[str, anyio.CapacityLimiter]:
        """Capacity limiters by name, for export as metrics."""
        return {"local_actions": self.action_limiter}

    # Capabilities and caches.

    async def get_capabilities(
        self, request: re_pb2.GetCapabilitiesRequest
    ) -> re_pb2.ServerCapabilities:
        sha256 = re_pb2.DigestFunction.SHA256
        return re_pb2.ServerCapabilities(
            cache_capabilities=re_pb2.CacheCapabilities(
                digest_functions=[sha256],
                action_cache_update_capabilities=re_pb2.ActionCacheUpdateCapabilities(
                    update_enabled=False
                ),
                max_batch_total_size_bytes=MAX_BATCH_TOTAL_SIZE_BYTES,
                symlink_absolute_path_strategy=re_pb2.SymlinkAbsolutePathStrategy.ALLOWED,
            ),
            execution_capabilities=re_pb2.ExecutionCapabilities(
                digest_function=sha256, exec_enabled=True, digest_functions=[sha256]
            ),
            low_api_version=semver_pb2.SemVer(major=2, minor=0),
            high_api_version=semver_pb2.SemVer(major=2, minor=2),
        )

    async def get_action_result(
        self, request: re_pb2.GetActionResultRequest
    ) -> re_pb2.ActionResult:
        """Return the cached result of an action.

        Raises:
            BackendError: NOT_FOUND on a miss, INVALID_ARGUMENT for an invalid digest.
        """
        check_digest_function(request.digest_function)
        key = digest_key(request.action_digest, "action digest")
        result = await self._lookup_action_cache(key)
        await self._inline(
            result, request.inline_stdout, request.inline_stderr, request.inline_output_files
        )
        return result

    # Helpers.

    def _require_open(self) -> None:
        if self._cas is None:
            raise RuntimeError("LocalBackend is not open; call open() or use 'async with' first")

    def _require_cas(self) -> ContentAddressableStorage:
        self._require_open()
        assert self._cas is not None
        return self._cas

    async def _lookup_action_cache(self, key: DigestKey) -> re_pb2.ActionResult:
        self._require_open()
        assert self._action_cache is not None
        try:
            result = await self._action_cache.get(key)
        except BackendError:
            self.metrics.action_cache_misses.inc()
            raise
        self.metrics.action_cache_hits.inc()
        return result

    async def _inline(
        self,
        result: re_pb2.ActionResult,
        inline_stdout: bool,
        inline_stderr: bool,
        inline_output_files: Sequence[str],
    ) -> None:
        """Copy requested small outputs into ``result`` until MAX_INLINE_BYTES is used up.

        Blobs that do not fit, or that left the CAS, are not inlined; the digests stay set.
        """
        cas = self._require_cas()
        budget = MAX_INLINE_BYTES
        wanted: list[tuple[DigestKey, object, str]] = []
        if inline_stdout and result.stdout_digest.hash:
            wanted.append((DigestKey.of(result.stdout_digest), result, "stdout_raw"))
        if inline_stderr and result.stderr_digest.hash:
            wanted.append((DigestKey.of(result.stderr_digest), result, "stderr_raw"))
        paths = set(inline_output_files)
        for output_file in result.output_files:
            if output_file.path in paths:
                wanted.append((DigestKey.of(output_file.digest), output_file, "contents"))

        for key, message, field_name in wanted:
            if key.size_bytes > budget:
                continue
            try:
                data = await cas.read(key)
            except BackendError:
                continue
            setattr(message, field_name, data)
            budget -= key.size_bytes


def _lock_state_dir(state_dir: Path) -> int:
    """Take an exclusive lock on ``state_dir`` and return the descriptor that holds it.

    Raises:
        BackendError: FAILED_PRECONDITION when another local backend holds the lock.
    """
    state_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(state_dir / "local-backend.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise BackendError(
            Code.FAILED_PRECONDITION,
            f"state directory {state_dir} is in use by another local backend; "
            "give each proxy process its own state directory",
        ) from None
    return fd


def _reset_actions_dir(actions_dir: Path) -> None:
    """Delete action directories left by an earlier process and recreate the parent."""
    if actions_dir.exists():
        remove_tree(actions_dir)
    actions_dir.mkdir(parents=True)
