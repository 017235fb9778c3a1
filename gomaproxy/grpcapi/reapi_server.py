"""A REAPI v2 gRPC server in front of any Backend, such as the embedded LocalBackend.

It serves Capabilities, ActionCache, ContentAddressableStorage, Execution and ByteStream
by handing each request to the backend's method of the same name, in trio.  Methods the
Backend interface lacks (UpdateActionResult, GetTree) return UNIMPLEMENTED.  Tests use it
to run the gRPC backend against a real server on 127.0.0.1.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator

import anyio

from gomaproxy.errors import BackendError, Code
from gomaproxy.protos import remote_execution_pb2 as re_pb2
from gomaproxy.remote import bridge
from gomaproxy.remote import methods as m
from gomaproxy.remote.backend import Backend
from gomaproxy.remote.methods import RpcKind


def reapi_handlers(backend: Backend) -> list[bridge.ServerHandler]:
    """Return the server handlers that serve ``backend`` over REAPI v2 and ByteStream."""
    table = [
        (m.GET_CAPABILITIES, RpcKind.UNARY, backend.get_capabilities),
        (m.GET_ACTION_RESULT, RpcKind.UNARY, backend.get_action_result),
        (m.UPDATE_ACTION_RESULT, RpcKind.UNARY, _update_action_result),
        (m.FIND_MISSING_BLOBS, RpcKind.UNARY, backend.find_missing_blobs),
        (m.BATCH_UPDATE_BLOBS, RpcKind.UNARY, backend.batch_update_blobs),
        (m.BATCH_READ_BLOBS, RpcKind.UNARY, backend.batch_read_blobs),
        (m.GET_TREE, RpcKind.SERVER_STREAM, _get_tree),
        (m.EXECUTE, RpcKind.SERVER_STREAM, backend.execute),
        (m.WAIT_EXECUTION, RpcKind.SERVER_STREAM, backend.wait_execution),
        (m.READ, RpcKind.SERVER_STREAM, backend.read),
        (m.WRITE, RpcKind.CLIENT_STREAM, backend.write),
        (m.QUERY_WRITE_STATUS, RpcKind.UNARY, backend.query_write_status),
    ]
    return [bridge.ServerHandler(method, kind, function) for method, kind, function in table]


async def serve_backend(
    backend: Backend,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    ssl_context: ssl.SSLContext | None = None,
    task_status: anyio.abc.TaskStatus[int] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``backend`` over gRPC on ``host:port`` until cancelled.

    Reports the bound port through ``task_status``, and port 0 picks a free one.  With
    ``ssl_context`` the server speaks TLS.  The backend stays open: its owner closes
    it after this returns.
    """
    await bridge.serve(
        reapi_handlers(backend),
        host=host,
        port=port,
        ssl_context=ssl_context,
        task_status=task_status,
    )


async def _update_action_result(request: re_pb2.UpdateActionResultRequest) -> re_pb2.ActionResult:
    raise BackendError(
        Code.UNIMPLEMENTED,
        "UpdateActionResult is not served; results enter the action cache by Execute",
    )


async def _get_tree(request: re_pb2.GetTreeRequest) -> AsyncIterator[re_pb2.GetTreeResponse]:
    raise BackendError(
        Code.UNIMPLEMENTED,
        "GetTree is not served; read the Tree blob named by the ActionResult instead",
    )
    yield re_pb2.GetTreeResponse()  # pragma: no cover - makes this an async generator
