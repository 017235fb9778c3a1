"""Reading goma FileBlobs back into file content for the Exec path."""

from __future__ import annotations

import pytest

from gomaproxy.exec.blobs import BlobNotFound, read_file_blob
from gomaproxy.goma.blob import LARGE_FILE_THRESHOLD, chunked_file, hash_key
from gomaproxy.protos import goma_data_pb2 as goma_pb2


def _lookup_from(blobs: list[goma_pb2.FileBlob]):  # type: ignore[no-untyped-def]
    stored = {hash_key(blob): blob for blob in blobs}

    async def lookup(key: str) -> goma_pb2.FileBlob | None:
        return stored.get(key)

    return lookup


async def test_read_file_blob_joins_chunks() -> None:
    content = bytes(range(256)) * (LARGE_FILE_THRESHOLD // 256 + 3)
    chunked = chunked_file(content)
    lookup = _lookup_from(list(chunked.chunks))

    assert await read_file_blob(chunked.meta, lookup, key="meta") == content


async def test_read_file_blob_missing_chunk() -> None:
    """A missing chunk raises BlobNotFound itself, not an exception group around it."""
    chunked = chunked_file(b"c" * (LARGE_FILE_THRESHOLD + 1))
    lookup = _lookup_from([chunked.chunks[0]])

    with pytest.raises(BlobNotFound) as raised:
        await read_file_blob(chunked.meta, lookup, key="meta")

    assert str(raised.value) == f"missing chunk {hash_key(chunked.chunks[1])}"
