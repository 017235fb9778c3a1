"""Resolve goma inputs to REAPI digests.

An input either embeds its FileBlob or names it by hash key only.  Embedded blobs are
re-hashed (the client's key is never trusted) and written to the goma file store, so a
later request that sends only the key is served.  The store is only a cache here, so a
failure to write an embedded blob is logged and the input is still used.  Hash-only
inputs are found through the digest cache when possible, else read from the file store.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import anyio
import structlog

from gomaproxy.digest import DigestKey, digest_of_bytes, is_valid_hash
from gomaproxy.errors import GomaProxyError
from gomaproxy.exec.blobs import (
    BlobNotFound,
    BlobSource,
    BytesSource,
    DigestCache,
    EmbeddedFileSource,
    GomaInputSource,
    read_file_blob,
)
from gomaproxy.goma.blob import check_file_blob, hash_key
from gomaproxy.protos import goma_data_pb2 as goma_pb2

log = structlog.get_logger(__name__)


class GomaFiles(Protocol):
    async def store_blob(self, blob: goma_pb2.FileBlob) -> str: ...

    async def lookup_blob(self, key: str) -> goma_pb2.FileBlob | None: ...


class InputError(GomaProxyError):
    """An input the server cannot use, listed as missing so the client sends it again."""


@dataclass(frozen=True)
class ResolvedInput:
    digest: DigestKey
    source: BlobSource


@dataclass
class InputResolver:
    """Turns one goma input into a digest and a source of its bytes."""

    files: GomaFiles
    digest_cache: DigestCache
    lookup_limiter: anyio.CapacityLimiter

    async def resolve(self, entry: goma_pb2.ExecReq.Input) -> ResolvedInput:
        """Return the digest and source of ``entry``.

        Raises:
            GomaProxyError: the content cannot be obtained; the message is the reason
                reported with the missing input.
        """
        if entry.HasField("content"):
            return await self._resolve_embedded(entry)
        return await self._resolve_by_key(entry)

    async def _resolve_embedded(self, entry: goma_pb2.ExecReq.Input) -> ResolvedInput:
        blob = entry.content
        if blob.blob_type not in (goma_pb2.FileBlob.FILE, goma_pb2.FileBlob.FILE_META):
            raise InputError(f"embedded blob of {entry.filename} is not FILE or FILE_META")
        check_file_blob(blob)

        key = await self._store_embedded(entry)
        if entry.hash_key and entry.hash_key != key:
            log.warning(
                "input_hash_key_mismatch",
                filename=entry.filename,
                client_key=entry.hash_key,
                computed_key=key,
            )

        if blob.blob_type == goma_pb2.FileBlob.FILE:
            # The source reads the request's blob again at upload time, so the request does
            # not keep a second copy of every embedded file until it ends.
            digest = digest_of_bytes(blob.content)
            self.digest_cache.put(key, digest)
            return ResolvedInput(digest, EmbeddedFileSource(blob, entry.filename))

        content = await read_file_blob(blob, self._lookup, key=key)
        return self._remember(key, content, entry.filename)

    async def _store_embedded(self, entry: goma_pb2.ExecReq.Input) -> str:
        """Store an embedded blob in the goma file store and return its computed hash key."""
        try:
            return await self.files.store_blob(entry.content)
        except (GomaProxyError, OSError) as exc:
            key = hash_key(entry.content)
            log.warning(
                "embedded_input_store_failed", filename=entry.filename, key=key, error=str(exc)
            )
            return key

    def resolve_cached(self, entry: goma_pb2.ExecReq.Input) -> ResolvedInput | None:
        """Return the digest of a hash-only input that is in the digest cache, without I/O.

        Returns None for embedded inputs, invalid keys and cache misses; ``resolve`` then
        does the work and reports any error.
        """
        if entry.HasField("content") or not is_valid_hash(entry.hash_key):
            return None
        cached = self.digest_cache.get(entry.hash_key)
        if cached is None:
            return None
        source = GomaInputSource(entry.hash_key, entry.filename, self.files, self.lookup_limiter)
        return ResolvedInput(cached, source)

    async def _resolve_by_key(self, entry: goma_pb2.ExecReq.Input) -> ResolvedInput:
        key = entry.hash_key
        if not is_valid_hash(key):
            raise InputError(f"hash key {key!r} of {entry.filename} is not 64 lowercase hex digits")

        cached = self.digest_cache.get(key)
        if cached is not None:
            source = GomaInputSource(key, entry.filename, self.files, self.lookup_limiter)
            return ResolvedInput(cached, source)

        blob = await self._lookup(key)
        if blob is None:
            raise BlobNotFound(f"missing blob for hash key {key}")
        content = await read_file_blob(blob, self._lookup, key=key)
        return self._remember(key, content, entry.filename)

    def _remember(self, key: str, content: bytes, filename: str) -> ResolvedInput:
        digest = digest_of_bytes(content)
        self.digest_cache.put(key, digest)
        return ResolvedInput(digest, BytesSource(content, filename))

    async def _lookup(self, key: str) -> goma_pb2.FileBlob | None:
        async with self.lookup_limiter:
            return await self.files.lookup_blob(key)
