"""The Backend interface: the REAPI v2 calls the adapter makes, whatever serves them.

Each method takes and returns the REAPI request and response messages, so that a gRPC
backend is a thin mapping and the embedded local backend is an in-process REAPI server.
A call that ends with a non-OK status raises ``gomaproxy.errors.BackendError`` with the
status code; a cache miss in ``get_action_result`` is ``BackendError(Code.NOT_FOUND)``.

Streaming calls return async iterators.  Callers close them with
``contextlib.aclosing`` so that an abandoned stream is cancelled at once.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from gomaproxy.protos import bytestream_pb2 as bs_pb2
    from gomaproxy.protos import longrunning_pb2 as lro_pb2
    from gomaproxy.protos import remote_execution_pb2 as re_pb2


class Backend(Protocol):
    """A REAPI v2 server, as seen by the adapter."""

    name: str

    async def get_capabilities(
        self, request: re_pb2.GetCapabilitiesRequest
    ) -> re_pb2.ServerCapabilities: ...

    async def get_action_result(
        self, request: re_pb2.GetActionResultRequest
    ) -> re_pb2.ActionResult: ...

    async def find_missing_blobs(
        self, request: re_pb2.FindMissingBlobsRequest
    ) -> re_pb2.FindMissingBlobsResponse: ...

    async def batch_update_blobs(
        self, request: re_pb2.BatchUpdateBlobsRequest
    ) -> re_pb2.BatchUpdateBlobsResponse: ...

    async def batch_read_blobs(
        self, request: re_pb2.BatchReadBlobsRequest
    ) -> re_pb2.BatchReadBlobsResponse: ...

    def read(self, request: bs_pb2.ReadRequest) -> AsyncIterator[bs_pb2.ReadResponse]: ...

    async def write(self, requests: AsyncIterable[bs_pb2.WriteRequest]) -> bs_pb2.WriteResponse: ...

    async def query_write_status(
        self, request: bs_pb2.QueryWriteStatusRequest
    ) -> bs_pb2.QueryWriteStatusResponse: ...

    def execute(self, request: re_pb2.ExecuteRequest) -> AsyncIterator[lro_pb2.Operation]: ...

    def wait_execution(
        self, request: re_pb2.WaitExecutionRequest
    ) -> AsyncIterator[lro_pb2.Operation]: ...

    async def aclose(self) -> None: ...
