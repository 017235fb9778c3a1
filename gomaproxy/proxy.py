"""The proxy as one object: file store, backend, adapter and HTTP frontend wired together.

A trio or anyio program opens it with ``open_proxy(config)`` and runs ``proxy.serve`` in
its own nursery; cancelling that nursery stops it.  Tests pass their own backend.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import anyio
import structlog
from prometheus_client import CollectorRegistry

from gomaproxy.config import Config
from gomaproxy.errors import BackendError, Code, ConfigError, GomaProxyError
from gomaproxy.exec.adapter import Adapter, Limiters
from gomaproxy.exec.inventory import Inventory, LocalCompilerInventory
from gomaproxy.exec.toml_inventory import load_toml_inventory
from gomaproxy.goma.fileservice import FileService
from gomaproxy.goma.filestore import DiskFileStore, FileStore
from gomaproxy.goma.frontend import FrontendLimits, make_app
from gomaproxy.goma.httpserver import serve_http
from gomaproxy.metrics import ExecMetrics, LimiterCollector
from gomaproxy.protos import remote_execution_pb2 as re_pb2
from gomaproxy.remote.backend import Backend

log = structlog.get_logger(__name__)


@dataclass
class GomaProxy:
    """A configured proxy, ready to serve goma clients over HTTP."""

    config: Config
    backend: Backend
    files: FileService
    adapter: Adapter
    registry: CollectorRegistry

    def __post_init__(self) -> None:
        server = self.config.server
        limits = FrontendLimits(
            max_body_bytes=server.max_body_bytes,
            max_decoded_bytes=server.max_decoded_bytes,
            exec_timeout_s=server.exec_timeout_s,
            file_timeout_s=server.file_timeout_s,
        )
        self.app = make_app(
            self.adapter,
            self.files,
            prefix=server.url_prefix,
            limits=limits,
            metrics_registry=self.registry,
            backend_availability=getattr(self.backend, "availability", None),
        )

    async def serve(
        self, *, task_status: anyio.abc.TaskStatus[int] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Serve HTTP until cancelled; reports the bound port through ``task_status``."""
        server = self.config.server
        await serve_http(
            self.app,
            host=server.host,
            port=server.port,
            task_status=task_status,
            graceful_timeout_s=server.graceful_timeout_s,
        )


@asynccontextmanager
async def open_proxy(
    config: Config,
    *,
    backend: Backend | None = None,
    file_store: FileStore | None = None,
    inventory: Inventory | None = None,
    registry: CollectorRegistry | None = None,
) -> AsyncIterator[GomaProxy]:
    """Build a GomaProxy; the backend and stores it opened are closed on exit.

    Raises:
        ConfigError: the backend address is not supported or the state directory cannot
            be created.
    """
    registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
    state_dir = config.state.dir
    try:
        os.makedirs(state_dir, exist_ok=True)
    except FileExistsError as exc:
        raise ConfigError(
            f"state directory {state_dir} exists but is not a directory; pass another --state-dir"
        ) from exc
    except OSError as exc:
        raise ConfigError(f"cannot create state directory {state_dir}: {exc.strerror}") from exc

    async with AsyncExitStack() as stack:
        if file_store is None:
            file_store = await DiskFileStore.open(state_dir / "files", config.file_store.max_bytes)
        if backend is None:
            backend = await _open_backend(config, registry, stack)

        allow_chroot = bool(getattr(backend, "supports_absolute_input_root", False))
        # A backend that does not say whether it accepts the InputRootAbsolutePath
        # property, as the local one, gets it when it runs actions at absolute paths.
        absolute_path_property = bool(
            getattr(backend, "sends_input_root_absolute_path", allow_chroot)
        )
        if inventory is None:
            inventory = await _open_inventory(config, allow_chroot)

        limiters = Limiters.from_config(config.exec)
        registry.register(LimiterCollector(limiters.by_name()))
        files = FileService(file_store)
        adapter = Adapter(
            backend=backend,
            files=files,
            inventory=inventory,
            config=config.exec,
            limiters=limiters,
            metrics=ExecMetrics(registry),
            instance_name=config.backend.instance_name,
            input_root_absolute_path=absolute_path_property,
        )
        log.info(
            "proxy_opened",
            backend=config.backend.address,
            state_dir=str(state_dir),
            absolute_roots=allow_chroot,
        )
        yield GomaProxy(
            config=config, backend=backend, files=files, adapter=adapter, registry=registry
        )


async def _open_inventory(config: Config, absolute_roots: bool) -> Inventory:
    """Load the configured inventory file, or use the compilers on this host."""
    if not config.exec.inventory_file:
        return LocalCompilerInventory(allow_chroot=absolute_roots)

    path = Path(config.exec.inventory_file)
    return await load_toml_inventory(path, absolute_roots=absolute_roots)


async def _check_backend(backend: Backend, config: Config) -> None:
    """Ask a remote backend for its capabilities once, so a wrong address fails at start.

    Raises:
        GomaProxyError: UNAVAILABLE when the backend does not respond in time or fails.
    """
    timeout_s = config.backend.startup_check_timeout_s
    if timeout_s <= 0:
        return

    address, instance = config.backend.address, config.backend.instance_name
    request = re_pb2.GetCapabilitiesRequest(instance_name=instance)
    try:
        with anyio.fail_after(timeout_s):
            capabilities = await backend.get_capabilities(request)
    except TimeoutError:
        raise GomaProxyError(
            f"backend {address} did not respond to GetCapabilities within {timeout_s:g} s; check "
            "that it runs and that the address is right",
            code=Code.UNAVAILABLE,
        ) from None
    except BackendError as exc:
        raise GomaProxyError(
            f"backend {address} failed GetCapabilities for instance {instance!r}: {exc}; check "
            "the address, the instance name and the TLS settings",
            code=Code.UNAVAILABLE,
        ) from exc

    high = capabilities.high_api_version
    log.info(
        "backend_checked",
        backend=address,
        instance=instance,
        api_version=f"{high.major}.{high.minor}",
    )


async def _open_backend(
    config: Config, registry: CollectorRegistry, stack: AsyncExitStack
) -> Backend:
    """Open the configured backend; ``stack`` closes it."""
    address = config.backend.address
    if address.startswith(("grpc://", "grpcs://")):
        from gomaproxy.remote.grpc_backend import open_grpc_backend

        backend = await stack.enter_async_context(
            open_grpc_backend(config.backend, registry=registry)
        )
        await _check_backend(backend, config)
        return backend
    if address != "local":
        raise ConfigError(
            f"backend address {address!r} is not supported; use 'local' for the embedded "
            "backend, or grpc://host:port or grpcs://host:port for a REAPI server"
        )

    from gomaproxy.local.backend import LocalBackend

    local = config.local
    use_bwrap = {"auto": None, "always": True, "never": False}[local.bubblewrap]
    backend = LocalBackend(
        config.state.dir / "local",
        cas_max_bytes=local.cas_max_bytes,
        max_concurrent_actions=local.max_concurrent_actions or None,
        use_bwrap=use_bwrap,
        host_toolchain_dirs=local.host_toolchain_dirs,
        registry=registry,
    )
    opener = getattr(backend, "open", None)
    if opener is not None:
        await opener()
    stack.push_async_callback(backend.aclose)
    return backend
