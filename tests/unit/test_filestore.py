"""Tests for the in-memory and on-disk goma file stores."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from gomaproxy.errors import BadRequest, ConfigError
from gomaproxy.goma.blob import file_blob
from gomaproxy.goma.filestore import (
    BlobTooLargeError,
    DiskFileStore,
    FileStore,
    MemoryFileStore,
)

StoreFactory = Callable[[int], Awaitable["MemoryFileStore | DiskFileStore"]]

# Every blob from make_blob serializes to the same length, so caps can be counted in blobs.
BLOB_SIZE = len(file_blob(bytes(100)).SerializeToString())


def make_blob(seed: int) -> tuple[str, bytes]:
    """Return the key and bytes of a serialized 100-byte FILE blob that differs per seed."""
    data = file_blob(bytes([seed % 256]) * 99 + bytes([seed // 256])).SerializeToString()
    return hashlib.sha256(data).hexdigest(), data


@pytest.fixture(params=["memory", "disk"])
def open_store(request: pytest.FixtureRequest, tmp_path: Path) -> StoreFactory:
    """Return a coroutine function that opens an empty store of either kind."""

    async def factory(max_bytes: int) -> MemoryFileStore | DiskFileStore:
        if request.param == "memory":
            return MemoryFileStore(max_bytes)
        return await DiskFileStore.open(tmp_path / "files", max_bytes)

    return factory


async def test_filestore_round_trip(open_store: StoreFactory) -> None:
    """A stored blob reads back unchanged and is reported as contained."""
    store = await open_store(10 * BLOB_SIZE)
    key, data = make_blob(1)

    await store.put(key, data)

    assert await store.get(key) == data
    assert await store.contains(key)


async def test_filestore_unknown_key_is_missing(open_store: StoreFactory) -> None:
    """A key that was never stored reads as None and is not contained."""
    store = await open_store(10 * BLOB_SIZE)
    key, _ = make_blob(1)

    assert await store.get(key) is None
    assert not await store.contains(key)


async def test_filestore_satisfies_protocol(open_store: StoreFactory) -> None:
    """Both stores can be used where a FileStore is expected."""
    store: FileStore = await open_store(BLOB_SIZE)
    key, data = make_blob(1)

    await store.put(key, data)

    assert await store.get(key) == data


async def test_filestore_evicts_least_recently_used(open_store: StoreFactory) -> None:
    """A get counts as a use, so the oldest untouched blob is evicted first."""
    store = await open_store(3 * BLOB_SIZE)
    blobs = [make_blob(seed) for seed in range(4)]
    for key, data in blobs[:3]:
        await store.put(key, data)

    await store.get(blobs[0][0])
    await store.put(*blobs[3])

    assert await store.contains(blobs[0][0])
    assert not await store.contains(blobs[1][0])
    assert await store.contains(blobs[2][0])
    assert await store.contains(blobs[3][0])


async def test_filestore_put_of_existing_key_counts_as_use(open_store: StoreFactory) -> None:
    """Storing a blob again refreshes it instead of adding its size twice."""
    store = await open_store(2 * BLOB_SIZE)
    first, second, third = (make_blob(seed) for seed in range(3))
    await store.put(*first)
    await store.put(*second)

    await store.put(*first)
    await store.put(*third)

    assert await store.contains(first[0])
    assert not await store.contains(second[0])
    assert store.statistics().bytes == 2 * BLOB_SIZE


async def test_filestore_keeps_total_under_cap(open_store: StoreFactory) -> None:
    """After many puts the stored bytes never exceed max_bytes."""
    store = await open_store(5 * BLOB_SIZE + BLOB_SIZE // 2)

    for seed in range(20):
        await store.put(*make_blob(seed))
        assert store.statistics().bytes <= store.statistics().max_bytes

    assert store.statistics().entries == 5


async def test_filestore_statistics_count_evictions(open_store: StoreFactory) -> None:
    """statistics() reports entries, bytes, the cap and how many blobs were evicted."""
    store = await open_store(4 * BLOB_SIZE)

    for seed in range(10):
        await store.put(*make_blob(seed))

    statistics = store.statistics()
    assert statistics.entries == 4
    assert statistics.bytes == 4 * BLOB_SIZE
    assert statistics.max_bytes == 4 * BLOB_SIZE
    assert statistics.evictions == 6


async def test_filestore_rejects_blob_larger_than_cap(open_store: StoreFactory) -> None:
    """A blob larger than the whole store is rejected with an error naming the sizes."""
    store = await open_store(BLOB_SIZE - 1)
    key, data = make_blob(1)

    with pytest.raises(BlobTooLargeError) as caught:
        await store.put(key, data)

    assert key in caught.value.message
    assert str(BLOB_SIZE - 1) in caught.value.message
    assert store.statistics().entries == 0


async def test_filestore_blob_equal_to_cap_fits(open_store: StoreFactory) -> None:
    """A blob exactly as large as max_bytes is stored."""
    store = await open_store(BLOB_SIZE)
    key, data = make_blob(1)

    await store.put(key, data)

    assert await store.get(key) == data


BAD_KEYS = [
    "../x",
    "",
    "A" * 64,
    "a" * 63,
    "a" * 65,
    "../" + "a" * 61,
    "a" * 62 + "/b",
    "g" * 64,
    " " + "a" * 63,
]
BAD_KEY_IDS = [
    "parent_dir",
    "empty",
    "upper_case",
    "short",
    "long",
    "parent_prefix",
    "slash",
    "non_hex",
    "leading_space",
]


@pytest.mark.parametrize("key", BAD_KEYS, ids=BAD_KEY_IDS)
async def test_filestore_rejects_bad_keys(open_store: StoreFactory, key: str) -> None:
    """Keys that are not 64 lowercase hex digits are rejected by get, put and contains."""
    store = await open_store(10 * BLOB_SIZE)
    _, data = make_blob(1)

    with pytest.raises(BadRequest, match="invalid file hash key"):
        await store.get(key)
    with pytest.raises(BadRequest, match="invalid file hash key"):
        await store.put(key, data)
    with pytest.raises(BadRequest, match="invalid file hash key"):
        await store.contains(key)


async def test_filestore_bad_key_message_is_shortened(open_store: StoreFactory) -> None:
    """A huge invalid key is quoted only in part in the error message."""
    store = await open_store(10 * BLOB_SIZE)

    with pytest.raises(BadRequest) as caught:
        await store.get("x" * 10_000)

    assert len(caught.value.message) < 300


async def test_filestore_rejects_data_not_matching_key(open_store: StoreFactory) -> None:
    """Data stored under another blob's key is rejected and nothing is stored."""
    store = await open_store(10 * BLOB_SIZE)
    key, _ = make_blob(1)
    _, other_data = make_blob(2)

    with pytest.raises(BadRequest, match="hashes to"):
        await store.put(key, other_data)

    assert not await store.contains(key)


@pytest.mark.parametrize("max_bytes", [0, -1], ids=["zero", "negative"])
async def test_filestore_rejects_non_positive_cap(
    open_store: StoreFactory, max_bytes: int
) -> None:
    """A store cannot be created with a cap of zero or less."""
    with pytest.raises(ConfigError, match="max_bytes"):
        await open_store(max_bytes)


async def test_disk_filestore_layout(tmp_path: Path) -> None:
    """A blob is written to <directory>/<key[:2]>/<key> and no temporary file remains."""
    directory = tmp_path / "files"
    store = await DiskFileStore.open(directory, 10 * BLOB_SIZE)
    key, data = make_blob(1)

    await store.put(key, data)

    path = directory / key[:2] / key
    assert path.read_bytes() == data
    assert sorted(os.listdir(directory / key[:2])) == [key]


async def test_disk_filestore_eviction_deletes_files(tmp_path: Path) -> None:
    """An evicted blob's file is removed from disk."""
    directory = tmp_path / "files"
    store = await DiskFileStore.open(directory, BLOB_SIZE)
    first_key, first_data = make_blob(1)
    await store.put(first_key, first_data)

    await store.put(*make_blob(2))

    assert not (directory / first_key[:2] / first_key).exists()


async def test_disk_filestore_reopen_keeps_content(tmp_path: Path) -> None:
    """Blobs written before a reopen are readable and counted afterwards."""
    directory = tmp_path / "files"
    store = await DiskFileStore.open(directory, 10 * BLOB_SIZE)
    blobs = [make_blob(seed) for seed in range(3)]
    for key, data in blobs:
        await store.put(key, data)

    reopened = await DiskFileStore.open(directory, 10 * BLOB_SIZE)

    for key, data in blobs:
        assert await reopened.get(key) == data
    assert reopened.statistics().entries == 3
    assert reopened.statistics().bytes == 3 * BLOB_SIZE


def _set_last_used(directory: Path, key: str, seconds: int) -> None:
    """Set both times of a blob file to ``seconds`` after the epoch."""
    os.utime(directory / key[:2] / key, ns=(seconds * 10**9, seconds * 10**9))


async def test_disk_filestore_reopen_restores_lru_order(tmp_path: Path) -> None:
    """After a reopen, eviction follows the files' access and modify times."""
    directory = tmp_path / "files"
    store = await DiskFileStore.open(directory, 3 * BLOB_SIZE)
    oldest, middle, newest = (make_blob(seed) for seed in range(3))
    for key, data in (newest, oldest, middle):
        await store.put(key, data)
    _set_last_used(directory, oldest[0], 1_000)
    _set_last_used(directory, middle[0], 2_000)
    _set_last_used(directory, newest[0], 3_000)

    reopened = await DiskFileStore.open(directory, 3 * BLOB_SIZE)
    await reopened.put(*make_blob(3))

    assert not await reopened.contains(oldest[0])
    assert await reopened.contains(middle[0])
    assert await reopened.contains(newest[0])


async def test_disk_filestore_get_refreshes_file_time(tmp_path: Path) -> None:
    """Reading a blob moves its file time forward, so a reopened store keeps it as recent."""
    directory = tmp_path / "files"
    store = await DiskFileStore.open(directory, 2 * BLOB_SIZE)
    first, second = make_blob(1), make_blob(2)
    await store.put(*first)
    await store.put(*second)
    _set_last_used(directory, first[0], 1_000)
    _set_last_used(directory, second[0], 2_000)

    await store.get(first[0])
    reopened = await DiskFileStore.open(directory, 2 * BLOB_SIZE)
    await reopened.put(*make_blob(3))

    assert await reopened.contains(first[0])
    assert not await reopened.contains(second[0])


async def test_disk_filestore_reopen_with_smaller_cap_evicts(tmp_path: Path) -> None:
    """Reopening with a smaller cap deletes the oldest blobs until the rest fit."""
    directory = tmp_path / "files"
    store = await DiskFileStore.open(directory, 4 * BLOB_SIZE)
    blobs = [make_blob(seed) for seed in range(4)]
    for seconds, (key, data) in enumerate(blobs, start=1):
        await store.put(key, data)
        _set_last_used(directory, key, seconds * 1_000)

    reopened = await DiskFileStore.open(directory, 2 * BLOB_SIZE)

    assert reopened.statistics().entries == 2
    assert not (directory / blobs[0][0][:2] / blobs[0][0]).exists()
    assert not (directory / blobs[1][0][:2] / blobs[1][0]).exists()
    assert await reopened.get(blobs[3][0]) == blobs[3][1]


async def test_disk_filestore_open_removes_temp_files(tmp_path: Path) -> None:
    """Temporary files left by an interrupted write are deleted when the store opens."""
    directory = tmp_path / "files"
    shard = directory / "ab"
    shard.mkdir(parents=True)
    leftover = shard / ".tmp-interrupted"
    leftover.write_bytes(b"partial")

    store = await DiskFileStore.open(directory, 10 * BLOB_SIZE)

    assert not leftover.exists()
    assert store.statistics().entries == 0


async def test_disk_filestore_open_skips_unknown_files(tmp_path: Path) -> None:
    """Files whose names are not hash keys in their shard are neither indexed nor deleted."""
    directory = tmp_path / "files"
    key, data = make_blob(1)
    misplaced = directory / "00" / key
    misplaced.parent.mkdir(parents=True)
    misplaced.write_bytes(data)
    stray = directory / "00" / "notes.txt"
    stray.write_bytes(b"hello")

    store = await DiskFileStore.open(directory, 10 * BLOB_SIZE)

    assert store.statistics().entries == 0
    assert misplaced.exists()
    assert stray.exists()


async def test_disk_filestore_detects_corrupt_file(tmp_path: Path) -> None:
    """A file whose bytes no longer match its key reads as None, is deleted and is logged."""
    directory = tmp_path / "files"
    store = await DiskFileStore.open(directory, 10 * BLOB_SIZE)
    key, data = make_blob(1)
    await store.put(key, data)
    path = directory / key[:2] / key
    path.write_bytes(data[:-1] + b"\xff")

    with capture_logs() as logs:
        result = await store.get(key)

    assert result is None
    assert not path.exists()
    assert not await store.contains(key)
    assert store.statistics().bytes == 0
    events = [entry for entry in logs if entry["event"] == "file_store_corrupt_blob"]
    assert len(events) == 1
    assert events[0]["log_level"] == "warning"
    assert events[0]["key"] == key


async def test_disk_filestore_vanished_file_reads_as_missing(tmp_path: Path) -> None:
    """A blob file deleted behind the store's back reads as None and leaves the index."""
    directory = tmp_path / "files"
    store = await DiskFileStore.open(directory, 10 * BLOB_SIZE)
    key, data = make_blob(1)
    await store.put(key, data)
    (directory / key[:2] / key).unlink()

    assert await store.get(key) is None
    assert not await store.contains(key)


async def test_disk_filestore_put_after_corruption_restores_blob(tmp_path: Path) -> None:
    """After a corrupt blob is dropped, storing it again makes it readable."""
    directory = tmp_path / "files"
    store = await DiskFileStore.open(directory, 10 * BLOB_SIZE)
    key, data = make_blob(1)
    await store.put(key, data)
    (directory / key[:2] / key).write_bytes(b"garbage")
    with capture_logs():
        await store.get(key)

    await store.put(key, data)

    assert await store.get(key) == data
