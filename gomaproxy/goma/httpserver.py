"""Serve an ASGI application over HTTP/1.1 with hypercorn's trio worker.

``serve_http`` binds the listening socket itself, so that a bind failure surfaces as a
plain ``OSError`` and port 0 can be resolved before hypercorn starts.  The socket goes
to ``hypercorn.trio.run.worker_serve``, the function behind ``hypercorn.trio.serve``,
because ``serve`` only accepts addresses to bind.  Both belong to hypercorn 0.18, the
version pinned in pyproject.toml.

On cancellation hypercorn stops accepting, closes idle keep-alive connections, and gives
requests in flight ``graceful_timeout_s`` seconds to finish before they are cancelled.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Awaitable, Callable

import anyio
import structlog
from anyio.abc import TaskStatus
from hypercorn.config import Config, Sockets
from hypercorn.trio.run import worker_serve
from hypercorn.utils import wrap_app

from gomaproxy.goma._asgi import ASGIApp

log = structlog.get_logger(__name__)

# goma clients keep connections open and reuse them for later requests.  hypercorn closes
# a connection after 5 s idle and after 1000 requests by default; both are raised so that
# a build reconnects rarely.
_KEEP_ALIVE_TIMEOUT_S = 120.0
_KEEP_ALIVE_MAX_REQUESTS = 100_000

# Largest request line plus headers that h11 buffers.  hypercorn 0.18 has no body size
# limit for ASGI apps because it streams the body to them in pieces.  So a 64 MiB body
# passes, and the frontend enforces the body limits.
_MAX_HEADER_BYTES = 64 * 1024

_LISTEN_BACKLOG = 128

# Extra time after the grace period before the server's shielded scope is cancelled,
# so that hypercorn's own shutdown runs first.
_SHUTDOWN_MARGIN_S = 1.0


async def serve_http(
    app: ASGIApp,
    *,
    host: str,
    port: int,
    task_status: TaskStatus[int] = anyio.TASK_STATUS_IGNORED,
    graceful_timeout_s: float = 5.0,
) -> None:
    """Serve ``app`` on ``host``:``port`` until the calling scope is cancelled.

    Start it with ``await task_group.start(partial(serve_http, app, host=..., port=...))``,
    which returns the bound TCP port once the server accepts connections.  ``port=0``
    lets the kernel pick a free port.

    Cancellation:
        Cancelling the caller's scope starts a graceful shutdown.  This function keeps
        running for at most ``graceful_timeout_s`` plus one second, then re-raises the
        cancellation.

    Raises:
        OSError: when ``host`` does not resolve or the address cannot be bound.
    """
    listener = await _open_listener(host, port)
    with listener:
        bound_port = listener.getsockname()[1]
        await _serve_on(listener, app, bound_port, graceful_timeout_s, task_status)


async def _open_listener(host: str, port: int) -> socket.socket:
    addresses = await anyio.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )
    family, _, _, _, address = addresses[0]
    listener = socket.create_server(address[:2], family=family, backlog=_LISTEN_BACKLOG)
    listener.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return listener


async def _serve_on(
    listener: socket.socket,
    app: ASGIApp,
    bound_port: int,
    graceful_timeout_s: float,
    task_status: TaskStatus[int],
) -> None:
    config = _hypercorn_config(graceful_timeout_s)
    shutdown_requested = anyio.Event()
    server_scope = anyio.CancelScope(shield=True)

    async with anyio.create_task_group() as task_group:
        try:
            await task_group.start(
                _run_hypercorn, server_scope, app, config, listener, shutdown_requested.wait
            )
            log.info("http_server_started", port=bound_port)
            task_status.started(bound_port)
            await anyio.sleep_forever()
        finally:
            shutdown_requested.set()
            server_scope.deadline = anyio.current_time() + graceful_timeout_s + _SHUTDOWN_MARGIN_S
            log.info("http_server_stopping", graceful_timeout_s=graceful_timeout_s)


async def _run_hypercorn(
    server_scope: anyio.CancelScope,
    app: ASGIApp,
    config: Config,
    listener: socket.socket,
    shutdown_trigger: Callable[[], Awaitable[object]],
    *,
    task_status: TaskStatus[list[str]],
) -> None:
    # The shield lets hypercorn finish its graceful shutdown after the caller cancels;
    # the deadline that _serve_on sets then bounds how long that takes.
    with server_scope:
        await worker_serve(
            wrap_app(app, config.wsgi_max_body_size, "asgi"),
            config,
            sockets=Sockets(secure_sockets=[], insecure_sockets=[listener], quic_sockets=[]),
            shutdown_trigger=shutdown_trigger,
            task_status=task_status,
        )


def _hypercorn_config(graceful_timeout_s: float) -> Config:
    config = Config()
    config.backlog = _LISTEN_BACKLOG
    config.graceful_timeout = graceful_timeout_s
    config.keep_alive_timeout = _KEEP_ALIVE_TIMEOUT_S
    config.keep_alive_max_requests = _KEEP_ALIVE_MAX_REQUESTS
    config.h11_max_incomplete_size = _MAX_HEADER_BYTES
    # The frontend logs one line per request itself.
    config.accesslog = None
    # Send hypercorn's own messages through the standard logging tree instead of the
    # stderr handler that hypercorn installs by default.
    config.errorlog = logging.getLogger("hypercorn.error")
    config.include_server_header = False
    return config
