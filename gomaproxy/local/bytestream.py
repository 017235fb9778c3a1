"""ByteStream Read, Write and QueryWriteStatus over the local CAS.

Resource names follow the REAPI: ``{instance}/blobs/{hash}/{size}`` for reads and
``{instance}/uploads/{uuid}/blobs/{hash}/{size}`` for writes, where the instance name may
be empty or contain slashes and anything after the size is ignored.  A write stream that
ends without ``finish_write`` keeps its bytes, so a later stream with the same resource
name can resume at the ``committed_size`` that QueryWriteStatus returns.
"""

from __future__ import annotations

import contextlib
from collections import OrderedDict
from collections.abc import AsyncIterable, AsyncIterator
from typing import final

import structlog

from gomaproxy.digest import DigestKey, is_valid_hash
from gomaproxy.errors import BackendError, Code
from gomaproxy.local.cas import BlobWriter, ContentAddressableStorage
from gomaproxy.protos import bytestream_pb2 as bs_pb2

log = structlog.get_logger(__name__)

# Unfinished uploads kept for resumption; the oldest is dropped when a new one would exceed it.
MAX_PARTIAL_UPLOADS = 64


def parse_read_resource(resource_name: str) -> DigestKey:
    """Return the digest named by a ``{instance}/blobs/{hash}/{size}`` resource name.

    Raises:
        BackendError: INVALID_ARGUMENT for any other form, including compressed blobs.
    """
    parts = resource_name.split("/")
    for index, part in enumerate(parts):
        if part == "blobs" and index + 2 < len(parts):
            return _digest_from(parts[index + 1], parts[index + 2], resource_name)
        if part == "compressed-blobs":
            break
    raise BackendError(
        Code.INVALID_ARGUMENT,
        f"read resource name {resource_name!r} is invalid; "
        "use {instance}/blobs/{hash}/{size} with an uncompressed blob",
    )


def parse_upload_resource(resource_name: str) -> DigestKey:
    """Return the digest named by a ``{instance}/uploads/{uuid}/blobs/{hash}/{size}`` name.

    Raises:
        BackendError: INVALID_ARGUMENT for any other form, including compressed blobs.
    """
    parts = resource_name.split("/")
    for index, part in enumerate(parts):
        if part != "uploads" or index + 4 >= len(parts):
            continue
        if parts[index + 2] == "blobs":
            return _digest_from(parts[index + 3], parts[index + 4], resource_name)
        break
    raise BackendError(
        Code.INVALID_ARGUMENT,
        f"write resource name {resource_name!r} is invalid; "
        "use {instance}/uploads/{uuid}/blobs/{hash}/{size} with an uncompressed blob",
    )


def _digest_from(hash_text: str, size_text: str, resource_name: str) -> DigestKey:
    if is_valid_hash(hash_text) and size_text.isdigit():
        return DigestKey(hash_text, int(size_text))
    raise BackendError(
        Code.INVALID_ARGUMENT,
        f"resource name {resource_name!r} has an invalid digest {hash_text}/{size_text}; "
        "use a lowercase hex sha256 and a decimal size",
    )


@final
class ByteStreamService:
    """The ByteStream calls of the local backend."""

    def __init__(self, cas: ContentAddressableStorage) -> None:
        self._cas = cas
        # Unfinished uploads by resource name, oldest first.  A writer is removed while a
        # stream appends to it, so no two streams ever share one.
        self._partial: OrderedDict[str, BlobWriter] = OrderedDict()

    async def read(self, request: bs_pb2.ReadRequest) -> AsyncIterator[bs_pb2.ReadResponse]:
        """Yield the blob's bytes from ``read_offset``, at most ``read_limit`` (0: all).

        At least one message is yielded, empty when the range is empty.

        Raises:
            BackendError: INVALID_ARGUMENT for a bad resource name or limit, NOT_FOUND for
                a missing blob, OUT_OF_RANGE for an offset outside the blob.
        """
        key = parse_read_resource(request.resource_name)
        chunks = self._cas.read_chunks(key, offset=request.read_offset, limit=request.read_limit)
        sent_any = False
        async with contextlib.aclosing(chunks):
            async for chunk in chunks:
                sent_any = True
                yield bs_pb2.ReadResponse(data=chunk)
        if not sent_any:
            yield bs_pb2.ReadResponse()

    async def write(self, requests: AsyncIterable[bs_pb2.WriteRequest]) -> bs_pb2.WriteResponse:
        """Store the blob sent by ``requests`` and return how many bytes were committed.

        An upload of a blob the CAS already contains returns the full size at once, without
        reading the rest of the stream.

        Raises:
            BackendError: INVALID_ARGUMENT for an empty stream, a bad resource name, a
                ``write_offset`` that differs from the bytes received so far, too many bytes
                or content that does not match the digest.
        """
        stream = aiter(requests)
        first = await anext(stream, None)
        if first is None:
            raise BackendError(
                Code.INVALID_ARGUMENT, "write stream had no requests; send at least one"
            )

        resource_name = first.resource_name
        key = parse_upload_resource(resource_name)
        if self._cas.contains(key):
            await self._drop_partial(resource_name)
            return bs_pb2.WriteResponse(committed_size=key.size_bytes)

        writer = await self._writer_for(resource_name, key, first.write_offset)
        try:
            finished = await self._append_all(writer, first, stream, resource_name)
        except BaseException:
            await writer.discard()
            raise

        if finished:
            return bs_pb2.WriteResponse(committed_size=key.size_bytes)
        await self._keep_partial(resource_name, writer)
        return bs_pb2.WriteResponse(committed_size=writer.committed_size)

    async def query_write_status(
        self, request: bs_pb2.QueryWriteStatusRequest
    ) -> bs_pb2.QueryWriteStatusResponse:
        """Return how much of an upload was received and whether the blob is stored.

        Raises:
            BackendError: INVALID_ARGUMENT for a bad resource name, NOT_FOUND when the
                upload is unknown and the blob is not stored.
        """
        key = parse_upload_resource(request.resource_name)
        if self._cas.contains(key):
            return bs_pb2.QueryWriteStatusResponse(committed_size=key.size_bytes, complete=True)

        writer = self._partial.get(request.resource_name)
        if writer is not None:
            return bs_pb2.QueryWriteStatusResponse(
                committed_size=writer.committed_size, complete=False
            )
        raise BackendError(
            Code.NOT_FOUND,
            f"no upload in progress for {request.resource_name!r}; start it at write_offset 0",
        )

    async def aclose(self) -> None:
        """Discard every unfinished upload and its temporary file."""
        while self._partial:
            _, writer = self._partial.popitem(last=False)
            await writer.discard()

    async def _writer_for(self, resource_name: str, key: DigestKey, offset: int) -> BlobWriter:
        """Resume the unfinished upload of ``resource_name`` or start a new one at offset 0."""
        writer = self._partial.pop(resource_name, None)
        if writer is not None and offset == 0 and writer.committed_size > 0:
            await writer.discard()
            writer = None
        if writer is None:
            writer = self._cas.begin_write(key)
        return writer

    async def _append_all(
        self,
        writer: BlobWriter,
        first: bs_pb2.WriteRequest,
        stream: AsyncIterator[bs_pb2.WriteRequest],
        resource_name: str,
    ) -> bool:
        """Append every request's data; return True once ``finish_write`` committed the blob."""
        request: bs_pb2.WriteRequest | None = first
        while request is not None:
            _check_request(request, resource_name, writer.committed_size)
            await writer.append(request.data)
            if request.finish_write:
                await writer.commit()
                return True
            request = await anext(stream, None)
        return False

    async def _keep_partial(self, resource_name: str, writer: BlobWriter) -> None:
        self._partial[resource_name] = writer
        while len(self._partial) > MAX_PARTIAL_UPLOADS:
            dropped_name, dropped = self._partial.popitem(last=False)
            log.info("local_partial_upload_dropped", resource_name=dropped_name)
            await dropped.discard()

    async def _drop_partial(self, resource_name: str) -> None:
        writer = self._partial.pop(resource_name, None)
        if writer is not None:
            await writer.discard()


def _check_request(request: bs_pb2.WriteRequest, resource_name: str, committed: int) -> None:
    if request.resource_name and request.resource_name != resource_name:
        raise BackendError(
            Code.INVALID_ARGUMENT,
            f"write request names {request.resource_name!r} in a stream for {resource_name!r}; "
            "send one resource per stream",
        )
    if request.write_offset != committed:
        raise BackendError(
            Code.INVALID_ARGUMENT,
            f"write_offset {request.write_offset} of {resource_name!r} does not match the "
            f"{committed} bytes received so far; resume at the committed size",
        )
