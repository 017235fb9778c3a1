"""CAS transfers on top of any Backend: FindMissingBlobs, uploads and verified downloads.

Batches are planned on the *serialized* request size with headroom below the smallest of
the server's advertised limit and gRPC's 4 MiB default message size, and at most 1000
entries each.  Blobs too large for a batch travel by ByteStream in 2 MiB chunks.  The
empty blob is never sent, asked about or downloaded: every REAPI server must treat it
as present.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import aclosing
from dataclasses import dataclass

import anyio
import structlog

from gomaproxy.digest import DigestKey
from gomaproxy.errors import BackendError, Code, GomaProxyError
from gomaproxy.protos import bytestream_pb2 as bs_pb2
from gomaproxy.protos import remote_execution_pb2 as re_pb2
from gomaproxy.remote.backend import Backend
from gomaproxy.remote.retry import is_message_too_large

log = structlog.get_logger(__name__)

MAX_BATCH_ENTRIES = 1000
MAX_FIND_MISSING_DIGESTS = 1000
GRPC_DEFAULT_MESSAGE_BYTES = 4 * 1024 * 1024
# Fraction of the smallest message limit that one batch may fill; the rest is left for
# framing that a server may count differently.
BATCH_HEADROOM = 0.75
BYTESTREAM_CHUNK_BYTES = 2 * 1024 * 1024


def batch_byte_limit(advertised: int) -> int:
    """Return the serialized-size budget of one batch for an advertised batch limit.

    0 means the server advertised none, and only gRPC's default message size applies.
    """
    limit = (
        GRPC_DEFAULT_MESSAGE_BYTES
        if advertised <= 0
        else min(advertised, GRPC_DEFAULT_MESSAGE_BYTES)
    )
    return int(limit * BATCH_HEADROOM)


def _varint_len(value: int) -> int:
    length = 1
    while value >= 0x80:
        value >>= 7
        length += 1
    return length


def _field_len(payload: int) -> int:
    return 1 + _varint_len(payload) + payload


def batch_entry_bytes(digest: DigestKey) -> int:
    """Return the bytes one blob adds to a serialized BatchUpdateBlobsRequest."""
    digest_bytes = _field_len(len(digest.hash)) + (
        1 + _varint_len(digest.size_bytes) if digest.size_bytes else 0
    )
    request_bytes = _field_len(digest_bytes) + (
        _field_len(digest.size_bytes) if digest.size_bytes else 0
    )
    return _field_len(request_bytes)


def plan_batches(
    digests: Sequence[DigestKey], *, instance_name: str, byte_limit: int
) -> tuple[list[list[DigestKey]], list[DigestKey]]:
    """Split ``digests`` into batches for BatchUpdateBlobs and a list for ByteStream.

    Returns:
        (batches, large): each batch fits ``byte_limit`` serialized bytes and contains at
        most 1000 blobs; ``large`` are the blobs that fit no batch on their own.
    """
    base = _field_len(len(instance_name.encode())) if instance_name else 0
    batches: list[list[DigestKey]] = []
    large: list[DigestKey] = []
    current: list[DigestKey] = []
    current_bytes = base

    for digest in sorted(digests, key=lambda d: d.size_bytes):
        entry = batch_entry_bytes(digest)
        if base + entry > byte_limit:
            large.append(digest)
            continue
        if current and (current_bytes + entry > byte_limit or len(current) >= MAX_BATCH_ENTRIES):
            batches.append(current)
            current, current_bytes = [], base
        current.append(digest)
        current_bytes += entry

    if current:
        batches.append(current)
    return batches, large


@dataclass(frozen=True)
class MissingBlob:
    """A blob that could not be uploaded, and why."""

    digest: DigestKey
    reason: str


# Reads the bytes to upload for a digest; raises a GomaProxyError when the content is gone.
BlobReader = Callable[[DigestKey], Awaitable[bytes]]


async def find_missing_blobs(
    backend: Backend, instance_name: str, digests: Sequence[DigestKey]
) -> list[DigestKey]:
    """Return the digests the CAS lacks, asking in groups of at most 1000 digests."""
    wanted = sorted({d for d in digests if not d.is_empty})
    missing: list[DigestKey] = []

    for start in range(0, len(wanted), MAX_FIND_MISSING_DIGESTS):
        group = wanted[start : start + MAX_FIND_MISSING_DIGESTS]
        request = re_pb2.FindMissingBlobsRequest(
            instance_name=instance_name, blob_digests=[d.to_proto() for d in group]
        )
        response = await backend.find_missing_blobs(request)
        missing.extend(DigestKey.of(d) for d in response.missing_blob_digests)
    return missing


async def upload_blobs(
    backend: Backend,
    instance_name: str,
    digests: Sequence[DigestKey],
    read: BlobReader,
    *,
    byte_limit: int,
    read_limiter: anyio.CapacityLimiter,
) -> list[MissingBlob]:
    """Upload ``digests``, reading each blob with ``read`` under ``read_limiter``.

    Returns the blobs that could not be uploaded, each with the reason; an empty list
    means every blob is now in the CAS.

    Raises:
        BackendError: a batch call failed as a whole.
    """
    wanted = [d for d in dict.fromkeys(digests) if not d.is_empty]
    batches, large = plan_batches(wanted, instance_name=instance_name, byte_limit=byte_limit)
    failures: list[MissingBlob] = []

    for batch in batches:
        failures.extend(await _upload_batch(backend, instance_name, batch, read, read_limiter))

    for digest in large:
        try:
            async with read_limiter:
                data = await read(digest)
            await write_blob(backend, instance_name, digest, data)
        except GomaProxyError as exc:
            failures.append(MissingBlob(digest, str(exc)))
    return failures


async def _upload_batch(
    backend: Backend,
    instance_name: str,
    batch: list[DigestKey],
    read: BlobReader,
    read_limiter: anyio.CapacityLimiter,
) -> list[MissingBlob]:
    contents: list[bytes | None] = [None] * len(batch)
    failures: list[MissingBlob] = []

    async def load(index: int, digest: DigestKey) -> None:
        try:
            async with read_limiter:
                contents[index] = await read(digest)
        except GomaProxyError as exc:
            failures.append(MissingBlob(digest, str(exc)))

    async with anyio.create_task_group() as group:
        for index, digest in enumerate(batch):
            group.start_soon(load, index, digest)

    loaded = [(d, data) for d, data in zip(batch, contents, strict=True) if data is not None]
    if loaded:
        failures.extend(await _send_batch(backend, instance_name, loaded))
    return failures


async def _send_batch(
    backend: Backend, instance_name: str, blobs: list[tuple[DigestKey, bytes]]
) -> list[MissingBlob]:
    """Send one BatchUpdateBlobs, splitting it when the server rejects it as too large.

    Servers may count a batch differently or accept less than they advertise, so a
    RESOURCE_EXHAUSTED that names the message size is answered by sending the two
    halves, down to single blobs, which then go by ByteStream.
    """
    request = re_pb2.BatchUpdateBlobsRequest(instance_name=instance_name)
    for digest, data in blobs:
        request.requests.add(digest=digest.to_proto(), data=data)

    try:
        response = await backend.batch_update_blobs(request)
    except BackendError as exc:
        if not is_message_too_large(exc):
            raise
        return await _split_rejected_batch(backend, instance_name, blobs, exc)

    failures = []
    for entry in response.responses:
        if entry.status.code != Code.OK:
            reason = f"batch update blob: {Code(entry.status.code).name}: {entry.status.message}"
            failures.append(MissingBlob(DigestKey.of(entry.digest), reason))
    return failures


async def _split_rejected_batch(
    backend: Backend,
    instance_name: str,
    blobs: list[tuple[DigestKey, bytes]],
    error: BackendError,
) -> list[MissingBlob]:
    log.info(
        "batch_rejected_as_too_large",
        blobs=len(blobs),
        serialized_bytes=sum(batch_entry_bytes(digest) for digest, _ in blobs),
        error=error.message,
    )
    if len(blobs) == 1:
        digest, data = blobs[0]
        try:
            await write_blob(backend, instance_name, digest, data)
        except GomaProxyError as exc:
            return [MissingBlob(digest, str(exc))]
        return []

    middle = halving_index([digest.size_bytes for digest, _ in blobs])
    first = await _send_batch(backend, instance_name, blobs[:middle])
    second = await _send_batch(backend, instance_name, blobs[middle:])
    return first + second


def halving_index(sizes: Sequence[int]) -> int:
    """Return where to cut a batch of at least two blobs into halves of similar bytes.

    Both halves get at least one blob.
    """
    half = sum(sizes) / 2
    total = 0
    for index, size in enumerate(sizes[:-1]):
        total += size
        if total >= half:
            return index + 1
    return len(sizes) - 1


def upload_resource_name(instance_name: str, digest: DigestKey) -> str:
    """Return a ByteStream write resource with a fresh upload id."""
    name = f"uploads/{uuid.uuid4()}/blobs/{digest.hash}/{digest.size_bytes}"
    return f"{instance_name}/{name}" if instance_name else name


def read_resource_name(instance_name: str, digest: DigestKey) -> str:
    name = f"blobs/{digest.hash}/{digest.size_bytes}"
    return f"{instance_name}/{name}" if instance_name else name


async def write_blob(backend: Backend, instance_name: str, digest: DigestKey, data: bytes) -> None:
    """Upload one blob by ByteStream Write in 2 MiB chunks.

    Raises:
        BackendError: the write failed or committed a size other than the blob's.
    """
    resource = upload_resource_name(instance_name, digest)

    async def requests() -> AsyncIterator[bs_pb2.WriteRequest]:
        offset = 0
        while True:
            piece = data[offset : offset + BYTESTREAM_CHUNK_BYTES]
            last = offset + len(piece) >= len(data)
            yield bs_pb2.WriteRequest(
                resource_name=resource, write_offset=offset, data=piece, finish_write=last
            )
            offset += len(piece)
            if last:
                return

    response = await backend.write(requests())
    if response.committed_size not in (digest.size_bytes, -1):
        raise BackendError(
            Code.DATA_LOSS,
            f"write of {digest} committed {response.committed_size} bytes, "
            f"expected {digest.size_bytes}",
        )


async def read_blob(backend: Backend, instance_name: str, digest: DigestKey) -> bytes:
    """Download one blob by ByteStream Read and verify its size and sha256.

    Raises:
        BackendError: the read failed, or the bytes do not match the digest (DATA_LOSS).
    """
    if digest.is_empty:
        return b""

    request = bs_pb2.ReadRequest(resource_name=read_resource_name(instance_name, digest))
    pieces: list[bytes] = []
    async with aclosing(backend.read(request)) as stream:
        async for response in stream:
            pieces.append(response.data)
    data = b"".join(pieces)

    if len(data) != digest.size_bytes:
        raise BackendError(
            Code.DATA_LOSS,
            f"read of {digest} returned {len(data)} bytes, expected {digest.size_bytes}",
        )
    actual = hashlib.sha256(data).hexdigest()
    if actual != digest.hash:
        raise BackendError(
            Code.DATA_LOSS, f"read of {digest} returned content with sha256 {actual}"
        )
    return data
