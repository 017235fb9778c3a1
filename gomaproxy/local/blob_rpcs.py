"""The blob RPCs of the local backend, from the ContentAddressableStorage and ByteStream services.

``BlobRpcs`` is a mixin of ``LocalBackend``, which provides ``_require_open``,
``_require_cas`` and the ``_bytestream`` service once it is open.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterable, AsyncIterator
from typing import TYPE_CHECKING

import structlog
from google.rpc import status_pb2

from gomaproxy.digest import DigestKey
from gomaproxy.errors import BackendError, Code
from gomaproxy.local.bytestream import ByteStreamService
from gomaproxy.local.cas import ContentAddressableStorage
from gomaproxy.local.rpc_errors import (
    check_batch_size,
    check_digest_function,
    digest_key,
    status_of,
)
from gomaproxy.protos import bytestream_pb2 as bs_pb2
from gomaproxy.protos import remote_execution_pb2 as re_pb2

log = structlog.get_logger(__name__)


class BlobRpcs:
    """Blob uploads, downloads and existence checks of ``LocalBackend``."""

    _bytestream: ByteStreamService | None

    if TYPE_CHECKING:

        def _require_open(self) -> None: ...

        def _require_cas(self) -> ContentAddressableStorage: ...

    async def find_missing_blobs(
        self, request: re_pb2.FindMissingBlobsRequest
    ) -> re_pb2.FindMissingBlobsResponse:
        check_digest_function(request.digest_function)
        keys = [digest_key(digest, "blob digest") for digest in request.blob_digests]
        missing = self._require_cas().find_missing(keys)
        return re_pb2.FindMissingBlobsResponse(
            missing_blob_digests=[key.to_proto() for key in missing]
        )

    async def batch_update_blobs(
        self, request: re_pb2.BatchUpdateBlobsRequest
    ) -> re_pb2.BatchUpdateBlobsResponse:
        """Store each blob and report a status per blob.

        Raises:
            BackendError: INVALID_ARGUMENT when the blobs total more than the batch limit.
        """
        check_digest_function(request.digest_function)
        total = sum(len(blob.data) for blob in request.requests)
        check_batch_size(total, "BatchUpdateBlobs")

        # Blobs that fail the request checks get their status here, and the rest are
        # verified and written together in one worker-thread call.
        statuses: list[status_pb2.Status | None] = []
        accepted: list[tuple[DigestKey, bytes]] = []
        for blob in request.requests:
            try:
                accepted.append((_accepted_blob_key(blob), blob.data))
            except BackendError as exc:
                statuses.append(status_of(exc))
            else:
                statuses.append(None)

        errors = iter(await self._require_cas().write_batch(accepted))
        response = re_pb2.BatchUpdateBlobsResponse()
        for blob, status in zip(request.requests, statuses, strict=True):
            if status is None:
                status = _write_status(blob.digest, next(errors))
            response.responses.add(digest=blob.digest, status=status)
        return response

    async def batch_read_blobs(
        self, request: re_pb2.BatchReadBlobsRequest
    ) -> re_pb2.BatchReadBlobsResponse:
        """Return each blob with a status per blob.

        Raises:
            BackendError: INVALID_ARGUMENT when the blobs total more than the batch limit.
        """
        check_digest_function(request.digest_function)
        total = sum(max(digest.size_bytes, 0) for digest in request.digests)
        check_batch_size(total, "BatchReadBlobs")

        response = re_pb2.BatchReadBlobsResponse()
        for digest in request.digests:
            entry = response.responses.add(digest=digest, compressor=re_pb2.Compressor.IDENTITY)
            try:
                entry.data = await self._require_cas().read(digest_key(digest, "blob digest"))
            except BackendError as exc:
                entry.status.CopyFrom(status_of(exc))
        return response

    # ByteStream.

    async def read(self, request: bs_pb2.ReadRequest) -> AsyncIterator[bs_pb2.ReadResponse]:
        """Yield a blob's bytes; see ``ByteStreamService.read`` for the rules."""
        self._require_open()
        assert self._bytestream is not None
        responses = self._bytestream.read(request)
        async with contextlib.aclosing(responses):
            async for response in responses:
                yield response

    async def write(self, requests: AsyncIterable[bs_pb2.WriteRequest]) -> bs_pb2.WriteResponse:
        """Store a streamed blob; see ``ByteStreamService.write`` for the rules."""
        self._require_open()
        assert self._bytestream is not None
        return await self._bytestream.write(requests)

    async def query_write_status(
        self, request: bs_pb2.QueryWriteStatusRequest
    ) -> bs_pb2.QueryWriteStatusResponse:
        self._require_open()
        assert self._bytestream is not None
        return await self._bytestream.query_write_status(request)


def _accepted_blob_key(blob: re_pb2.BatchUpdateBlobsRequest.Request) -> DigestKey:
    """Check the compressor and digest of one uploaded blob and return its key."""
    if blob.compressor != re_pb2.Compressor.IDENTITY:
        raise BackendError(
            Code.INVALID_ARGUMENT,
            f"blob {blob.digest.hash}/{blob.digest.size_bytes} uses a compressor; "
            "this server accepts only uncompressed blobs",
        )
    return digest_key(blob.digest, "blob digest")


def _write_status(digest: re_pb2.Digest, error: BackendError | OSError | None) -> status_pb2.Status:
    if error is None:
        return status_pb2.Status(code=Code.OK)
    if isinstance(error, BackendError):
        return status_of(error)

    log.error(
        "local_cas_write_failed", digest=f"{digest.hash}/{digest.size_bytes}", error=str(error)
    )
    return status_pb2.Status(
        code=Code.INTERNAL,
        message=f"writing blob {digest.hash}/{digest.size_bytes} to the local CAS failed: "
        f"{error.strerror or error}; check the server's state directory and upload it again",
    )
