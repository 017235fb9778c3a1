"""The gRPC methods of REAPI v2 and ByteStream that gomaproxy calls or serves.

Each method is a constant with its wire path and message types, so clients and servers
name methods by constant, never by a free string.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Generic, TypeVar

from google.protobuf.message import Message

from gomaproxy.protos import bytestream_pb2 as bs_pb2
from gomaproxy.protos import longrunning_pb2 as lro_pb2
from gomaproxy.protos import remote_execution_pb2 as re_pb2

RequestT = TypeVar("RequestT", bound=Message)
ResponseT = TypeVar("ResponseT", bound=Message)


@dataclass(frozen=True)
class RpcMethod(Generic[RequestT, ResponseT]):
    """A gRPC method: its path and its message types."""

    # "/package.Service/Method", as on the wire.
    path: str
    request_type: type[RequestT]
    response_type: type[ResponseT]

    @property
    def name(self) -> str:
        """The method name without its service, such as ``FindMissingBlobs``."""
        return self.path.rsplit("/", 1)[-1]


class RpcKind(enum.Enum):
    """How many messages each side of a call sends."""

    UNARY = "unary"
    SERVER_STREAM = "server_stream"
    CLIENT_STREAM = "client_stream"


_REAPI = "/build.bazel.remote.execution.v2."
_BYTESTREAM = "/google.bytestream.ByteStream/"

GET_CAPABILITIES = RpcMethod(
    _REAPI + "Capabilities/GetCapabilities",
    re_pb2.GetCapabilitiesRequest,
    re_pb2.ServerCapabilities,
)
GET_ACTION_RESULT = RpcMethod(
    _REAPI + "ActionCache/GetActionResult", re_pb2.GetActionResultRequest, re_pb2.ActionResult
)
UPDATE_ACTION_RESULT = RpcMethod(
    _REAPI + "ActionCache/UpdateActionResult",
    re_pb2.UpdateActionResultRequest,
    re_pb2.ActionResult,
)
FIND_MISSING_BLOBS = RpcMethod(
    _REAPI + "ContentAddressableStorage/FindMissingBlobs",
    re_pb2.FindMissingBlobsRequest,
    re_pb2.FindMissingBlobsResponse,
)
BATCH_UPDATE_BLOBS = RpcMethod(
    _REAPI + "ContentAddressableStorage/BatchUpdateBlobs",
    re_pb2.BatchUpdateBlobsRequest,
    re_pb2.BatchUpdateBlobsResponse,
)
BATCH_READ_BLOBS = RpcMethod(
    _REAPI + "ContentAddressableStorage/BatchReadBlobs",
    re_pb2.BatchReadBlobsRequest,
    re_pb2.BatchReadBlobsResponse,
)
GET_TREE = RpcMethod(
    _REAPI + "ContentAddressableStorage/GetTree", re_pb2.GetTreeRequest, re_pb2.GetTreeResponse
)
EXECUTE = RpcMethod(_REAPI + "Execution/Execute", re_pb2.ExecuteRequest, lro_pb2.Operation)
WAIT_EXECUTION = RpcMethod(
    _REAPI + "Execution/WaitExecution", re_pb2.WaitExecutionRequest, lro_pb2.Operation
)
READ = RpcMethod(_BYTESTREAM + "Read", bs_pb2.ReadRequest, bs_pb2.ReadResponse)
WRITE = RpcMethod(_BYTESTREAM + "Write", bs_pb2.WriteRequest, bs_pb2.WriteResponse)
QUERY_WRITE_STATUS = RpcMethod(
    _BYTESTREAM + "QueryWriteStatus",
    bs_pb2.QueryWriteStatusRequest,
    bs_pb2.QueryWriteStatusResponse,
)
