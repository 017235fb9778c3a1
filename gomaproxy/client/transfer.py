"""Blob transfers of the cc launcher: FILE_CHUNK uploads and output file downloads.

Uploads store the chunks of large missing inputs with ``/s``, at most five per request,
and every returned key must be non-empty.  Downloads write each ExecResult output
next to its final path and rename it into place.  A FILE is written directly, a
FILE_META's chunks are fetched with ``/l`` five keys per request and written at their
offsets, and a FILE_REF is resolved with ``/l`` first.  Every blob received must pass
the goma client's validity rules.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass

import anyio
import structlog

from gomaproxy.client.http import FILE_TIMEOUT_SECONDS, GomaHttpClient, GomaRpcError
from gomaproxy.client.inputs import FileIdentity, PlannedInput, chunk_batches
from gomaproxy.errors import Code, GomaProxyError
from gomaproxy.goma.blob import InvalidFileBlob, check_file_blob, hash_key
from gomaproxy.protos import goma_data_pb2 as goma_pb2

log = structlog.get_logger(__name__)

KEYS_PER_LOOKUP_REQUEST = 5

FileBlob = goma_pb2.FileBlob


class InputUploadError(GomaProxyError):
    """A ``/s`` request did not store every chunk; compiler_proxy retries the Exec."""

    code = Code.UNAVAILABLE


class OutputDownloadError(GomaProxyError):
    """An output blob was invalid or could not be fetched.

    compiler_proxy then sends the Exec again with cache_policy STORE_ONLY, so that a
    broken cache entry is replaced.
    """

    code = Code.UNAVAILABLE


class OutputWriteError(GomaProxyError):
    """An output could not be written locally; another Exec would not help."""

    code = Code.FAILED_PRECONDITION


# ---------------------------------------------------------------------------------------
# Uploads.


async def upload_chunks(
    client: GomaHttpClient,
    planned: Sequence[PlannedInput],
    requester_info: goma_pb2.RequesterInfo,
) -> int:
    """Store the FILE_CHUNKs of every input that needs them and return how many were sent.

    Raises:
        InputUploadError: if a response lacks a key for a chunk.
        GomaRpcError: if a ``/s`` call fails.
    """
    chunks = [chunk for item in planned for chunk in item.chunks]

    for batch in chunk_batches(chunks):
        request = goma_pb2.StoreFileReq(blob=batch, requester_info=requester_info)
        with anyio.fail_after(FILE_TIMEOUT_SECONDS):
            response = await client.store_file(request)
        check_store_response(batch, response)
        log.debug("chunks_stored", count=len(batch))

    return len(chunks)


def check_store_response(batch: Sequence[FileBlob], response: goma_pb2.StoreFileResp) -> None:
    """Raise InputUploadError unless the response returns a non-empty key per blob."""
    keys = list(response.hash_key)
    if len(keys) != len(batch):
        raise InputUploadError(
            f"/s returned {len(keys)} hash keys for {len(batch)} chunks; the server is faulty"
        )

    failed = [index for index, key in enumerate(keys) if not key]
    if failed:
        raise InputUploadError(f"/s failed to store chunks at positions {failed}")


# ---------------------------------------------------------------------------------------
# Downloads.


@dataclass(frozen=True)
class WrittenOutput:
    """An output file written locally, with the key the server named it by."""

    filename: str
    identity: FileIdentity
    hash_key: str


async def write_outputs(
    client: GomaHttpClient,
    result: goma_pb2.ExecResult,
    *,
    cwd: str,
    requester_info: goma_pb2.RequesterInfo,
    umask: int,
) -> list[WrittenOutput]:
    """Write every output of ``result`` below ``cwd`` and return what was written.

    Files get mode 0o777 when the server marks them executable and 0o666 otherwise,
    minus ``umask``.  Each file appears at its path only when complete.

    Raises:
        OutputDownloadError: for an invalid blob or a failed ``/l`` call.
        OutputWriteError: when a local file cannot be written.
    """
    written = []
    for output in result.output:
        written.append(await _write_output(client, output, cwd, requester_info, umask))
    return written


async def _write_output(
    client: GomaHttpClient,
    output: goma_pb2.ExecResult.Output,
    cwd: str,
    requester_info: goma_pb2.RequesterInfo,
    umask: int,
) -> WrittenOutput:
    blob = output.blob
    _check_blob(blob, output.filename)

    key = blob.hash_key[0] if blob.blob_type == FileBlob.FILE_REF else hash_key(blob)
    if blob.blob_type == FileBlob.FILE_REF:
        blob = await _resolve_file_ref(client, blob, output.filename, requester_info)

    path = os.path.join(cwd, output.filename)
    mode = (0o777 if output.is_executable else 0o666) & ~umask
    target = _PendingFile.create(path)
    try:
        if blob.blob_type == FileBlob.FILE:
            target.write_at(0, blob.content)
        else:
            await _write_chunks(client, blob, target, output.filename, requester_info)
        target.commit(blob.file_size, mode)
    except BaseException:
        target.discard()
        raise

    log.debug("output_written", filename=output.filename, size=blob.file_size)
    return WrittenOutput(output.filename, FileIdentity.of(path), key)


async def _resolve_file_ref(
    client: GomaHttpClient,
    reference: FileBlob,
    filename: str,
    requester_info: goma_pb2.RequesterInfo,
) -> FileBlob:
    """Fetch the FILE (or FILE_META) a FILE_REF names."""
    (blob,) = await _lookup(client, list(reference.hash_key), filename, requester_info)
    _check_blob(blob, filename)
    if blob.blob_type not in (FileBlob.FILE, FileBlob.FILE_META):
        raise OutputDownloadError(
            f"output {filename}: FILE_REF {reference.hash_key[0]} names a "
            f"{FileBlob.BlobType.Name(blob.blob_type)} blob, expected FILE or FILE_META"
        )
    return blob


async def _write_chunks(
    client: GomaHttpClient,
    meta: FileBlob,
    target: _PendingFile,
    filename: str,
    requester_info: goma_pb2.RequesterInfo,
) -> None:
    """Fetch a FILE_META's chunks five keys at a time and write each at its offset."""
    keys = list(meta.hash_key)
    spans: list[tuple[int, int]] = []

    for start in range(0, len(keys), KEYS_PER_LOOKUP_REQUEST):
        batch = keys[start : start + KEYS_PER_LOOKUP_REQUEST]
        chunks = await _lookup(client, batch, filename, requester_info)
        for key, chunk in zip(batch, chunks, strict=True):
            _check_chunk(chunk, key, meta.file_size, filename)
            target.write_at(chunk.offset, chunk.content)
            spans.append((chunk.offset, len(chunk.content)))

    _check_coverage(spans, meta.file_size, filename)


def _check_coverage(spans: list[tuple[int, int]], file_size: int, filename: str) -> None:
    """Require the chunks to cover the file exactly once, without gaps or overlaps."""
    position = 0
    for offset, length in sorted(spans):
        if offset != position:
            raise OutputDownloadError(
                f"output {filename}: chunks leave a gap or overlap at byte {position}"
            )
        position += length

    if position != file_size:
        raise OutputDownloadError(
            f"output {filename}: chunks cover {position} bytes but the FILE_META file_size is "
            f"{file_size}"
        )


async def _lookup(
    client: GomaHttpClient,
    keys: list[str],
    filename: str,
    requester_info: goma_pb2.RequesterInfo,
) -> list[FileBlob]:
    request = goma_pb2.LookupFileReq(hash_key=keys, requester_info=requester_info)
    try:
        with anyio.fail_after(FILE_TIMEOUT_SECONDS):
            response = await client.lookup_file(request)
    except TimeoutError as exc:
        raise OutputDownloadError(f"output {filename}: /l timed out") from exc
    except GomaRpcError as exc:
        raise OutputDownloadError(f"output {filename}: /l failed: {exc}") from exc

    if len(response.blob) != len(keys):
        raise OutputDownloadError(
            f"output {filename}: /l returned {len(response.blob)} blobs for {len(keys)} keys"
        )
    return list(response.blob)


def _check_blob(blob: FileBlob, filename: str) -> None:
    try:
        check_file_blob(blob)
    except InvalidFileBlob as exc:
        raise OutputDownloadError(f"output {filename}: {exc.message}") from exc


def _check_chunk(chunk: FileBlob, key: str, file_size: int, filename: str) -> None:
    """Require a valid FILE_CHUNK that lies inside the file."""
    if chunk.blob_type != FileBlob.FILE_CHUNK:
        raise OutputDownloadError(
            f"output {filename}: /l returned a {FileBlob.BlobType.Name(chunk.blob_type)} "
            f"blob for chunk {key}, expected FILE_CHUNK"
        )
    _check_blob(chunk, filename)
    if chunk.offset < 0 or chunk.offset + len(chunk.content) > file_size:
        raise OutputDownloadError(
            f"output {filename}: chunk {key} at offset {chunk.offset} with "
            f"{len(chunk.content)} bytes lies outside the {file_size}-byte file"
        )


# ---------------------------------------------------------------------------------------
# Atomic file writes.


class _PendingFile:
    """A temporary file in the target's directory, renamed over the target when done."""

    def __init__(self, path: str, temporary: str, descriptor: int) -> None:
        self.path = path
        self.temporary = temporary
        self.descriptor = descriptor

    @classmethod
    def create(cls, path: str) -> _PendingFile:
        directory, name = os.path.split(path)
        try:
            descriptor, temporary = tempfile.mkstemp(
                dir=directory or ".", prefix=f".{name}.", suffix=".tmp"
            )
        except OSError as exc:
            raise OutputWriteError(
                f"cannot create output {path}: {exc}; check that its directory exists "
                "and is writable"
            ) from exc
        return cls(path, temporary, descriptor)

    def write_at(self, offset: int, data: bytes) -> None:
        view = memoryview(data)
        try:
            while view:
                count = os.pwrite(self.descriptor, view, offset)
                view = view[count:]
                offset += count
        except OSError as exc:
            raise OutputWriteError(f"writing output {self.path} failed: {exc}") from exc

    def commit(self, size: int, mode: int) -> None:
        """Set the final size and mode, then rename the file into place."""
        try:
            os.ftruncate(self.descriptor, size)
            os.fchmod(self.descriptor, mode)
            os.close(self.descriptor)
            self.descriptor = -1
            os.replace(self.temporary, self.path)
        except OSError as exc:
            raise OutputWriteError(f"writing output {self.path} failed: {exc}") from exc

    def discard(self) -> None:
        if self.descriptor >= 0:
            os.close(self.descriptor)
            self.descriptor = -1
        try:
            os.unlink(self.temporary)
        except FileNotFoundError:
            pass
