"""The ids of the goma request that a backend call serves, for REAPI RequestMetadata.

The adapter binds the ids of the goma request it runs with ``bound_requester``; a backend
that sends RequestMetadata reads them with ``current_requester``.  The binding is a
context variable, so tasks that the request starts inherit it and nothing leaks into
other requests.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

from gomaproxy.protos import goma_data_pb2 as goma_pb2
from gomaproxy.protos import remote_execution_pb2 as re_pb2

TOOL_NAME = "gomaproxy"
# The binary gRPC metadata key that carries a serialized RequestMetadata.
REQUEST_METADATA_KEY = "build.bazel.remote.execution.v2.requestmetadata-bin"


@dataclass(frozen=True)
class RequesterIds:
    """The ids RequestMetadata carries: the goma task and the build it belongs to."""

    action_id: str = ""
    tool_invocation_id: str = ""


_NO_REQUESTER = RequesterIds()
_current: ContextVar[RequesterIds | None] = ContextVar("gomaproxy_requester", default=None)


def requester_ids(info: goma_pb2.RequesterInfo) -> RequesterIds:
    """Return the ids of a goma request, as goma-server derives them.

    The action id is the client's ``compiler_proxy_id`` and the invocation id is its
    ``build_id``.  Chromium's bots send no build id, so for a ``chrome-bot@`` proxy id
    the part before its last ``/`` (the proxy's own prefix) is used instead.
    """
    action_id = info.compiler_proxy_id
    invocation_id = info.build_id
    if not invocation_id and action_id.startswith("chrome-bot@"):
        slash = action_id.rfind("/")
        if slash > 0:
            invocation_id = action_id[:slash]
    return RequesterIds(action_id=action_id, tool_invocation_id=invocation_id)


@contextmanager
def bound_requester(info: goma_pb2.RequesterInfo) -> Iterator[RequesterIds]:
    """Make the ids of ``info`` current for the calls made inside the block."""
    ids = requester_ids(info)
    token = _current.set(ids)
    try:
        yield ids
    finally:
        _current.reset(token)


def current_requester() -> RequesterIds:
    """Return the ids bound by the innermost ``bound_requester``, or empty ids."""
    return _current.get() or _NO_REQUESTER


def request_metadata(ids: RequesterIds, tool_version: str) -> re_pb2.RequestMetadata:
    """Build the RequestMetadata message sent with every call made for ``ids``."""
    return re_pb2.RequestMetadata(
        tool_details=re_pb2.ToolDetails(tool_name=TOOL_NAME, tool_version=tool_version),
        action_id=ids.action_id,
        tool_invocation_id=ids.tool_invocation_id,
    )
