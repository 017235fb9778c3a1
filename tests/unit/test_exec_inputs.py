"""Resolving goma Exec inputs to REAPI digests and sources of their bytes."""

from __future__ import annotations

import tracemalloc

import pytest
import trio

from gomaproxy.digest import digest_of_bytes
from gomaproxy.exec import inputs as inputs_mod
from gomaproxy.exec.blobs import DigestCache
from gomaproxy.exec.inputs import InputResolver
from gomaproxy.goma.blob import file_blob, hash_key
from gomaproxy.goma.filestore import BlobTooLargeError
from gomaproxy.protos import goma_data_pb2 as goma_pb2


class RecordingFiles:
    """A goma file store stub that records stored keys and can fail every store."""

    def __init__(self, store_error: Exception | None = None) -> None:
        self.store_error = store_error
        self.stored: list[str] = []

    async def store_blob(self, blob: goma_pb2.FileBlob) -> str:
        if self.store_error is not None:
            raise self.store_error
        key = hash_key(blob)
        self.stored.append(key)
        return key

    async def lookup_blob(self, key: str) -> goma_pb2.FileBlob | None:
        return None


def _resolver(files: RecordingFiles) -> InputResolver:
    return InputResolver(files, DigestCache(100), trio.CapacityLimiter(2))


def _embedded(content: bytes) -> goma_pb2.ExecReq.Input:
    blob = file_blob(content)
    entry = goma_pb2.ExecReq.Input(filename="a.c", hash_key=hash_key(blob))
    entry.content.CopyFrom(blob)
    return entry


@pytest.mark.parametrize(
    "error",
    [OSError(28, "No space left on device"), BlobTooLargeError("blob is too large")],
    ids=["os-error", "too-large"],
)
async def test_embedded_input_survives_store_failure(error: Exception) -> None:
    """The file store is only a cache of embedded inputs, so failing to store one is logged."""
    content = b"int a;\n"
    resolver = _resolver(RecordingFiles(store_error=error))

    resolved = await resolver.resolve(_embedded(content))

    assert resolved.digest == digest_of_bytes(content)
    assert await resolved.source.read() == content
    assert resolver.digest_cache.get(hash_key(file_blob(content))) == resolved.digest


async def test_embedded_input_hashes_blob_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """The key that storing the blob computed is reused, not computed a second time."""
    calls: list[goma_pb2.FileBlob] = []

    def counting_hash_key(blob: goma_pb2.FileBlob) -> str:
        calls.append(blob)
        return hash_key(blob)

    monkeypatch.setattr(inputs_mod, "hash_key", counting_hash_key)
    files = RecordingFiles()
    entry = _embedded(b"int b;\n")

    await _resolver(files).resolve(entry)

    assert files.stored == [entry.hash_key]
    assert calls == []


async def test_embedded_input_keeps_no_content_copy() -> None:
    """The source of an embedded input reads the request's blob instead of a copy."""
    content = b"x" * (4 * 1024 * 1024)
    entry = _embedded(content)
    resolver = _resolver(RecordingFiles())

    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        resolved = await resolver.resolve(entry)
        retained = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()

    assert retained < len(content) // 4
    assert await resolved.source.read() == content
    assert resolved.source.filename == "a.c"


async def test_resolve_cached_uses_digest_cache_only() -> None:
    """A hash-only input whose key the digest cache has resolves without any lookup."""
    content = b"int cached;\n"
    resolver = _resolver(RecordingFiles())
    key = hash_key(file_blob(content))
    resolver.digest_cache.put(key, digest_of_bytes(content))
    entry = goma_pb2.ExecReq.Input(filename="cached.h", hash_key=key)

    found = resolver.resolve_cached(entry)

    assert found is not None
    assert found.digest == digest_of_bytes(content)
    assert found.source.filename == "cached.h"


@pytest.mark.parametrize(
    "case",
    ["embedded", "invalid-key", "unknown-key"],
)
def test_resolve_cached_declines_other_inputs(case: str) -> None:
    """Embedded inputs, invalid keys and cache misses are left to the full resolve."""
    resolver = _resolver(RecordingFiles())
    entries = {
        "embedded": _embedded(b"int e;\n"),
        "invalid-key": goma_pb2.ExecReq.Input(filename="x.h", hash_key="not-a-key"),
        "unknown-key": goma_pb2.ExecReq.Input(filename="y.h", hash_key="0" * 64),
    }

    assert resolver.resolve_cached(entries[case]) is None
