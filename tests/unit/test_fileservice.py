"""Tests for goma's StoreFile and LookupFile semantics."""

from __future__ import annotations

import hashlib

import anyio
import pytest

from gomaproxy.errors import BadRequest
from gomaproxy.goma.blob import chunk_blob, chunked_file, file_blob, hash_key
from gomaproxy.goma.fileservice import FileService
from gomaproxy.goma.filestore import MemoryFileStore
from gomaproxy.protos import goma_data_pb2 as goma_pb2

FileBlob = goma_pb2.FileBlob

STORE_BYTES = 64 * 1024 * 1024
UNKNOWN_KEY = "0" * 64


def make_service() -> tuple[FileService, MemoryFileStore]:
    """Return a service over a fresh in-memory store, and that store."""
    store = MemoryFileStore(STORE_BYTES)
    return FileService(store), store


def unspecified_blob() -> goma_pb2.FileBlob:
    """Build a blob whose only field is an explicit FILE_UNSPECIFIED type."""
    blob = FileBlob()
    blob.blob_type = FileBlob.FILE_UNSPECIFIED
    return blob


def bad_size_blob() -> goma_pb2.FileBlob:
    """Build a FILE blob whose file_size does not match its content."""
    blob = file_blob(b"abc")
    blob.file_size = 4
    return blob


class DelayingStore(MemoryFileStore):
    """A memory store whose puts take longer for earlier blobs and that records overlap."""

    def __init__(self, delays: dict[str, float]) -> None:
        super().__init__(STORE_BYTES)
        self._delays = delays
        self.in_flight = 0
        self.max_in_flight = 0

    async def put(self, key: str, data: bytes) -> None:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        await anyio.sleep(self._delays.get(key, 0.0))
        self.in_flight -= 1
        await super().put(key, data)


async def test_fileservice_store_keys_are_index_aligned() -> None:
    """Valid blobs get their keys and invalid ones get "" at their own index."""
    service, store = make_service()
    chunked = chunked_file(b"m" * (2 * 1024 * 1024 + 5))
    blobs = [
        file_blob(b"first"),
        unspecified_blob(),
        chunked.chunks[1],
        bad_size_blob(),
        chunked.meta,
        file_blob(b""),
    ]
    request = goma_pb2.StoreFileReq(blob=blobs)

    response = await service.store_file(request)

    assert list(response.hash_key) == [
        hash_key(blobs[0]),
        "",
        hash_key(blobs[2]),
        "",
        hash_key(blobs[4]),
        hash_key(blobs[5]),
    ]
    assert store.statistics().entries == 4


async def test_fileservice_store_is_concurrent_and_aligned(autojump_clock: object) -> None:
    """Stores overlap in time, and finishing out of order keeps the keys aligned."""
    blobs = [file_blob(f"blob {index}".encode()) for index in range(8)]
    keys = [hash_key(blob) for blob in blobs]
    delays = {key: float(len(keys) - index) for index, key in enumerate(keys)}
    store = DelayingStore(delays)
    service = FileService(store)

    response = await service.store_file(goma_pb2.StoreFileReq(blob=blobs))

    assert list(response.hash_key) == keys
    assert store.max_in_flight == len(blobs)


async def test_fileservice_store_computes_key_from_reserialized_blob() -> None:
    """The key is the sha256 of the re-serialized blob, not of the client's bytes."""
    service, _ = make_service()
    # A FILE blob for b"abc" with file_size written before content: valid protobuf, but
    # not the canonical field order, so its bytes differ from the re-serialized form.
    client_blob_bytes = bytes.fromhex("0801 a00103 5a03616263")
    request_bytes = b"\x0a" + bytes([len(client_blob_bytes)]) + client_blob_bytes
    request = goma_pb2.StoreFileReq.FromString(request_bytes)

    response = await service.store_file(request)

    canonical = file_blob(b"abc")
    assert response.hash_key[0] == hash_key(canonical)
    assert response.hash_key[0] != hashlib.sha256(client_blob_bytes).hexdigest()


async def test_fileservice_client_wrong_key_is_ignored() -> None:
    """A key the client computed the wrong way finds nothing, the returned key finds the blob."""
    service, _ = make_service()
    blob = file_blob(b"int main(){}\n")
    client_key = hashlib.sha256(blob.content).hexdigest()

    stored = await service.store_file(goma_pb2.StoreFileReq(blob=[blob]))
    looked_up = await service.lookup_file(
        goma_pb2.LookupFileReq(hash_key=[client_key, stored.hash_key[0]])
    )

    assert stored.hash_key[0] != client_key
    assert looked_up.blob[0].blob_type == FileBlob.FILE_UNSPECIFIED
    assert looked_up.blob[1] == blob


async def test_fileservice_meta_chunk_keys_are_not_checked() -> None:
    """A FILE_META is stored as given even when the chunks it names were never stored."""
    service, _ = make_service()
    meta = FileBlob(blob_type=FileBlob.FILE_META, file_size=10)
    meta.hash_key.extend(["1" * 64, "2" * 64])

    response = await service.store_file(goma_pb2.StoreFileReq(blob=[meta]))

    assert response.hash_key[0] == hash_key(meta)


@pytest.mark.parametrize(
    "blob",
    [unspecified_blob(), FileBlob(), bad_size_blob()],
    ids=["unspecified", "type_unset", "size_mismatch"],
)
async def test_fileservice_single_invalid_blob_is_bad_request(
    blob: goma_pb2.FileBlob,
) -> None:
    """A request whose only blob is invalid raises BadRequest, which the frontend sends as 400."""
    service, store = make_service()
    request = goma_pb2.StoreFileReq()
    request.blob.append(blob)

    with pytest.raises(BadRequest):
        await service.store_file(request)

    assert store.statistics().entries == 0


async def test_fileservice_all_invalid_blobs_give_empty_keys() -> None:
    """With several blobs, invalid ones never fail the whole request."""
    service, _ = make_service()
    request = goma_pb2.StoreFileReq(blob=[unspecified_blob(), bad_size_blob()])

    response = await service.store_file(request)

    assert list(response.hash_key) == ["", ""]


async def test_fileservice_empty_store_request() -> None:
    """A StoreFile request without blobs returns no keys."""
    service, _ = make_service()

    response = await service.store_file(goma_pb2.StoreFileReq())

    assert list(response.hash_key) == []


async def test_fileservice_oversized_blob_gets_empty_key() -> None:
    """A blob larger than the whole store gets "" while the others are stored."""
    store = MemoryFileStore(1024)
    service = FileService(store)
    small = file_blob(b"small")
    large = file_blob(b"L" * 4096)

    response = await service.store_file(goma_pb2.StoreFileReq(blob=[small, large]))

    assert list(response.hash_key) == [hash_key(small), ""]


async def test_fileservice_lookup_round_trip() -> None:
    """Stored blobs come back from LookupFile equal to what was stored, in request order."""
    service, _ = make_service()
    first = file_blob(b"one")
    second = chunk_blob(b"two", 0, 3)
    stored = await service.store_file(goma_pb2.StoreFileReq(blob=[first, second]))

    response = await service.lookup_file(
        goma_pb2.LookupFileReq(hash_key=[stored.hash_key[1], stored.hash_key[0]])
    )

    assert list(response.blob) == [second, first]


async def test_fileservice_lookup_unknown_key_is_unspecified_on_wire() -> None:
    """An unknown key gives a blob whose only field, FILE_UNSPECIFIED, is serialized."""
    service, _ = make_service()

    response = await service.lookup_file(goma_pb2.LookupFileReq(hash_key=[UNKNOWN_KEY]))

    assert len(response.blob) == 1
    assert response.blob[0].HasField("blob_type")
    assert response.blob[0].blob_type == FileBlob.FILE_UNSPECIFIED
    assert [field.name for field, _ in response.blob[0].ListFields()] == ["blob_type"]
    assert response.SerializeToString() == b"\x12\x02\x08\x00"


@pytest.mark.parametrize(
    "key",
    ["../x", "", "A" * 64, "a" * 63, "not a key"],
    ids=["parent_dir", "empty", "upper_case", "short", "words"],
)
async def test_fileservice_lookup_invalid_key_is_unspecified(key: str) -> None:
    """An invalid key gives a FILE_UNSPECIFIED blob instead of an error."""
    service, _ = make_service()

    response = await service.lookup_file(goma_pb2.LookupFileReq(hash_key=[key]))

    assert response.blob[0].HasField("blob_type")
    assert response.blob[0].blob_type == FileBlob.FILE_UNSPECIFIED


async def test_fileservice_lookup_mixed_keys_keep_order() -> None:
    """Known, unknown and invalid keys each get their own entry at their own index."""
    service, _ = make_service()
    blob = file_blob(b"known")
    key = await service.store_blob(blob)

    response = await service.lookup_file(
        goma_pb2.LookupFileReq(hash_key=[UNKNOWN_KEY, key, "../x", key])
    )

    assert [entry.blob_type for entry in response.blob] == [
        FileBlob.FILE_UNSPECIFIED,
        FileBlob.FILE,
        FileBlob.FILE_UNSPECIFIED,
        FileBlob.FILE,
    ]
    assert response.blob[1] == blob


async def test_fileservice_store_blob_returns_computed_key() -> None:
    """store_blob returns the blob's hash key and lookup_blob finds it under that key."""
    service, _ = make_service()
    blob = file_blob(b"")

    key = await service.store_blob(blob)

    assert key == "6ed756eacff27326411ce890c828745034b70725d434d0fe940561f39f712bfd"
    assert await service.lookup_blob(key) == blob


async def test_fileservice_store_blob_rejects_invalid() -> None:
    """store_blob raises BadRequest for a blob that breaks the validity rules."""
    service, _ = make_service()

    with pytest.raises(BadRequest):
        await service.store_blob(unspecified_blob())


async def test_fileservice_lookup_blob_unknown_is_none() -> None:
    """lookup_blob returns None for an unknown or invalid key."""
    service, _ = make_service()

    assert await service.lookup_blob(UNKNOWN_KEY) is None
    assert await service.lookup_blob("../x") is None
