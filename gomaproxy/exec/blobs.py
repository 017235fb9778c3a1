"""Blob sources and the per-request digest store.

Every digest an Exec may need to upload (input files, Directory messages, the Command and
the Action) is recorded in the request's ``BlobStore`` together with a source that can
produce its bytes.  Goma inputs are read lazily from the goma file store, so an input that
the CAS already has is never read at all.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

import anyio

from gomaproxy.digest import DigestKey
from gomaproxy.errors import Code, GomaProxyError
from gomaproxy.protos import goma_data_pb2 as goma_pb2

# FILE_META chunks are looked up this many keys per LookupFile call.
CHUNK_LOOKUP_BATCH = 5


class BlobNotFound(GomaProxyError):
    """A blob's content is gone from every store that could provide it."""

    code = Code.NOT_FOUND


class BlobSource(Protocol):
    """Something that can produce the bytes of one digest."""

    @property
    def filename(self) -> str | None:
        """The goma input filename this blob came from, if it is a goma input."""
        ...

    async def read(self) -> bytes: ...


@dataclass(frozen=True)
class BytesSource:
    """In-memory bytes: serialized protos, the wrapper script, inputs read from the file store."""

    data: bytes
    filename: str | None = None

    async def read(self) -> bytes:
        return self.data


@dataclass(frozen=True)
class EmbeddedFileSource:
    """A goma input whose FILE blob is embedded in the request message.

    ``read`` copies the content out of the request message on each call, so no second
    copy of the input stays in memory while the request runs.
    """

    blob: goma_pb2.FileBlob
    filename: str | None = None

    async def read(self) -> bytes:
        return self.blob.content


class FileBlobLookup(Protocol):
    async def lookup_blob(self, key: str) -> goma_pb2.FileBlob | None: ...


@dataclass(frozen=True)
class GomaInputSource:
    """A goma input read from the file store by hash key, under the file lookup limiter."""

    key: str
    filename: str | None
    files: FileBlobLookup
    limiter: anyio.CapacityLimiter

    async def read(self) -> bytes:
        blob = await self._lookup(self.key)
        return await read_file_blob(blob, self._lookup, key=self.key)

    async def _lookup(self, key: str) -> goma_pb2.FileBlob | None:
        async with self.limiter:
            return await self.files.lookup_blob(key)


class Lookup(Protocol):
    async def __call__(self, key: str) -> goma_pb2.FileBlob | None: ...


async def read_file_blob(blob: goma_pb2.FileBlob | None, lookup: Lookup, *, key: str) -> bytes:
    """Return the file content that ``blob`` names, fetching FILE_META chunks with ``lookup``.

    Raises:
        BlobNotFound: the blob or one of its chunks is not stored.
        GomaProxyError: a chunk has the wrong type or the sizes do not add up.
    """
    if blob is None or blob.blob_type == goma_pb2.FileBlob.FILE_UNSPECIFIED:
        raise BlobNotFound(f"missing blob for hash key {key}")
    if blob.blob_type == goma_pb2.FileBlob.FILE:
        return blob.content
    if blob.blob_type != goma_pb2.FileBlob.FILE_META:
        kind = goma_pb2.FileBlob.BlobType.Name(blob.blob_type)
        raise GomaProxyError(f"hash key {key} names a {kind} blob, expected FILE or FILE_META")

    pieces = await _read_chunks(list(blob.hash_key), lookup)
    content = b"".join(pieces)
    if len(content) != blob.file_size:
        raise GomaProxyError(
            f"chunks of {key} add up to {len(content)} bytes, FILE_META says {blob.file_size}"
        )
    return content


async def _read_chunks(keys: list[str], lookup: Lookup) -> list[bytes]:
    pieces: list[bytes] = [b""] * len(keys)
    # Failures are kept out of the task group, which would raise them wrapped in an
    # exception group that callers catching GomaProxyError do not see.
    failures: dict[int, GomaProxyError] = {}

    async def fetch(index: int, chunk_key: str) -> None:
        try:
            pieces[index] = await _read_chunk(chunk_key, lookup)
        except GomaProxyError as exc:
            failures[index] = exc

    for start in range(0, len(keys), CHUNK_LOOKUP_BATCH):
        async with anyio.create_task_group() as group:
            for index in range(start, min(start + CHUNK_LOOKUP_BATCH, len(keys))):
                group.start_soon(fetch, index, keys[index])
        if failures:
            raise failures[min(failures)]
    return pieces


async def _read_chunk(chunk_key: str, lookup: Lookup) -> bytes:
    chunk = await lookup(chunk_key)
    if chunk is None or chunk.blob_type == goma_pb2.FileBlob.FILE_UNSPECIFIED:
        raise BlobNotFound(f"missing chunk {chunk_key}")
    if chunk.blob_type != goma_pb2.FileBlob.FILE_CHUNK:
        raise GomaProxyError(f"chunk {chunk_key} is not a FILE_CHUNK blob")
    return chunk.content


class BlobStore:
    """The digests of one Exec request, each with a source for its bytes.

    A digest added twice keeps the later source, so the filename reported for a failed
    upload is the one of the last input with that content.
    """

    def __init__(self) -> None:
        self._sources: dict[DigestKey, BlobSource] = {}

    def add(self, digest: DigestKey, source: BlobSource) -> None:
        self._sources[digest] = source

    def add_bytes(self, digest: DigestKey, data: bytes) -> None:
        self._sources[digest] = BytesSource(data)

    def get(self, digest: DigestKey) -> BlobSource | None:
        return self._sources.get(digest)

    def __contains__(self, digest: object) -> bool:
        return digest in self._sources

    def __iter__(self) -> Iterator[DigestKey]:
        return iter(self._sources)

    def __len__(self) -> int:
        return len(self._sources)


class DigestCache:
    """A process-wide LRU map from goma hash key to the REAPI digest of the file content.

    It lets a hash-only input whose content is already in the CAS skip reading the content
    from the file store.  Entries are never validated here: a stale entry surfaces as a
    failed upload, which is reported as a missing input.
    """

    def __init__(self, max_entries: int) -> None:
        self._entries: OrderedDict[str, DigestKey] = OrderedDict()
        self._max_entries = max_entries
        self.hits = 0
        self.misses = 0

    def get(self, key: str) -> DigestKey | None:
        digest = self._entries.get(key)
        if digest is None:
            self.misses += 1
            return None
        self._entries.move_to_end(key)
        self.hits += 1
        return digest

    def put(self, key: str, digest: DigestKey) -> None:
        self._entries[key] = digest
        self._entries.move_to_end(key)
        while self._max_entries and len(self._entries) > self._max_entries:
            self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)
