"""goma FileBlobs: hash keys, whole-file and chunked forms, and validity rules.

A goma hash key is the lowercase hex sha256 of the *serialized FileBlob*, not of the file
content.  proto2 presence changes those bytes, so ``content`` is always set on FILE and
FILE_CHUNK blobs (even when empty) and ``offset`` is always set on chunks (even 0).
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass

from gomaproxy.errors import BadRequest
from gomaproxy.protos import goma_data_pb2 as goma_pb2

# Files larger than this travel as FILE_META plus FILE_CHUNKs; the client rule is
# "size > threshold", which guarantees that a FILE_META has at least two chunks.
LARGE_FILE_THRESHOLD = 2 * 1024 * 1024
CHUNK_SIZE = 2 * 1024 * 1024

FileBlob = goma_pb2.FileBlob


class ChunkSize(enum.Enum):
    """The meaning of a FILE_CHUNK's ``file_size``.

    The goma client writes the chunk length and goma-server the whole file's length.
    Readers accept both.
    """

    CHUNK = "chunk"
    TOTAL = "total"


def hash_key(blob: goma_pb2.FileBlob) -> str:
    """Return the goma hash key of ``blob``."""
    return hashlib.sha256(blob.SerializeToString()).hexdigest()


def hash_key_of_serialized(data: bytes) -> str:
    """Return the goma hash key of an already serialized FileBlob."""
    return hashlib.sha256(data).hexdigest()


def file_blob(content: bytes) -> goma_pb2.FileBlob:
    """Build the FILE blob that embeds ``content`` whole."""
    blob = goma_pb2.FileBlob(blob_type=goma_pb2.FileBlob.FILE, file_size=len(content))
    blob.content = content
    return blob


def chunk_blob(content: bytes, offset: int, file_size: int) -> goma_pb2.FileBlob:
    """Build one FILE_CHUNK blob; ``offset`` is set even when it is 0."""
    blob = goma_pb2.FileBlob(blob_type=goma_pb2.FileBlob.FILE_CHUNK, file_size=file_size)
    blob.offset = offset
    blob.content = content
    return blob


@dataclass(frozen=True)
class ChunkedFile:
    """A large file split for transfer: the FILE_META and its FILE_CHUNKs in order."""

    meta: goma_pb2.FileBlob
    chunks: tuple[goma_pb2.FileBlob, ...]


def iter_chunks(
    content: bytes, chunk_size_field: ChunkSize = ChunkSize.CHUNK
) -> Iterator[goma_pb2.FileBlob]:
    """Yield the FILE_CHUNK blobs of ``content`` in order."""
    total = len(content)
    for offset in range(0, total, CHUNK_SIZE):
        piece = content[offset : offset + CHUNK_SIZE]
        size = len(piece) if chunk_size_field is ChunkSize.CHUNK else total
        yield chunk_blob(piece, offset, size)


def chunked_file(content: bytes, chunk_size_field: ChunkSize = ChunkSize.CHUNK) -> ChunkedFile:
    """Split ``content`` into FILE_CHUNKs and the FILE_META that lists their hash keys."""
    chunks = tuple(iter_chunks(content, chunk_size_field))
    meta = goma_pb2.FileBlob(blob_type=goma_pb2.FileBlob.FILE_META, file_size=len(content))
    meta.hash_key.extend(hash_key(chunk) for chunk in chunks)
    return ChunkedFile(meta=meta, chunks=chunks)


def blob_for_content(
    content: bytes, chunk_size_field: ChunkSize = ChunkSize.CHUNK
) -> tuple[goma_pb2.FileBlob, tuple[goma_pb2.FileBlob, ...]]:
    """Return the blob that names ``content`` (FILE or FILE_META) and the chunks it needs."""
    if len(content) <= LARGE_FILE_THRESHOLD:
        return file_blob(content), ()
    chunked = chunked_file(content, chunk_size_field)
    return chunked.meta, chunked.chunks


class InvalidFileBlob(BadRequest):
    """A FileBlob that breaks the goma validity rules."""


def check_file_blob(blob: goma_pb2.FileBlob) -> None:
    """Raise ``InvalidFileBlob`` unless ``blob`` satisfies the goma client's validity rules.

    The rules are those the goma client applies to every blob it receives: file_size
    present and non-negative; FILE has content of exactly file_size bytes and no offset or
    hash keys; FILE_META has at least two hash keys and no offset or content; FILE_CHUNK
    has an offset and content and no hash keys; FILE_REF has exactly one hash key.
    """
    kind = (
        goma_pb2.FileBlob.BlobType.Name(blob.blob_type) if blob.HasField("blob_type") else "unset"
    )
    problem = _file_blob_problem(blob)
    if problem:
        raise InvalidFileBlob(f"invalid {kind} blob: {problem}")


def _file_blob_problem(blob: goma_pb2.FileBlob) -> str:
    if not blob.HasField("file_size") or blob.file_size < 0:
        return "file_size is missing or negative"

    kind = blob.blob_type
    has_offset = blob.HasField("offset")
    has_content = blob.HasField("content")
    keys = len(blob.hash_key)

    if kind == goma_pb2.FileBlob.FILE:
        if has_offset or keys or not has_content:
            return "a FILE needs content and no offset or hash_key"
        if len(blob.content) != blob.file_size:
            return f"content is {len(blob.content)} bytes but file_size is {blob.file_size}"
        return ""
    if kind == goma_pb2.FileBlob.FILE_META:
        if has_offset or has_content or keys < 2:
            return f"a FILE_META needs at least 2 hash keys and no offset or content, has {keys}"
        return ""
    if kind == goma_pb2.FileBlob.FILE_CHUNK:
        if not has_offset or not has_content or keys:
            return "a FILE_CHUNK needs offset and content and no hash_key"
        return ""
    if kind == goma_pb2.FileBlob.FILE_REF:
        if has_offset or has_content or keys != 1:
            return f"a FILE_REF needs exactly 1 hash key and no offset or content, has {keys}"
        return ""
    return f"blob_type {kind} is not a stored kind"
