"""The blob store behind goma's StoreFile and LookupFile calls.

A store maps a goma hash key (the sha256 of a serialized FileBlob, 64 lowercase hex
digits) to those serialized bytes.  Both implementations cap their total size and evict
the least recently used blobs first, where storing or reading a blob counts as a use.

``DiskFileStore`` keeps one file per blob at ``<directory>/<key[:2]>/<key>`` and checks
every blob it reads against its key, so a file damaged on disk reads as missing rather
than as wrong content.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import anyio
import anyio.to_thread
import structlog

from gomaproxy.digest import is_valid_hash
from gomaproxy.errors import BadRequest, Code, ConfigError, GomaProxyError

logger = structlog.get_logger(__name__)

# Prefix of the temporary files that writes rename into place.  Leftovers from a crash
# are deleted when the store opens.
_TEMP_PREFIX = ".tmp-"

# Max number of characters of an invalid key quoted in an error message.
_MAX_QUOTED_KEY = 80


class FileStore(Protocol):
    """A size-capped map from goma hash key to serialized FileBlob."""

    async def get(self, key: str) -> bytes | None:
        """Return the blob stored under ``key``, or None when there is none."""
        ...

    async def put(self, key: str, data: bytes) -> None:
        """Store ``data``, which must hash to ``key``, evicting old blobs to make room."""
        ...

    async def contains(self, key: str) -> bool:
        """Tell whether a blob is stored under ``key``, without counting it as a use."""
        ...


class BlobTooLargeError(GomaProxyError):
    """A blob larger than the whole store, which no eviction can make room for."""

    code = Code.RESOURCE_EXHAUSTED


@dataclass(frozen=True)
class FileStoreStatistics:
    """Counters of a file store, for metrics and tests."""

    entries: int
    bytes: int
    max_bytes: int
    evictions: int


def check_key(key: str) -> None:
    """Raise ``BadRequest`` unless ``key`` is a goma hash key: 64 lowercase hex digits.

    Only such keys reach the file system, so a key can never name a path outside the store.
    """
    if is_valid_hash(key):
        return
    quoted = key if len(key) <= _MAX_QUOTED_KEY else key[:_MAX_QUOTED_KEY] + "..."
    raise BadRequest(
        f"invalid file hash key {quoted!r}: expected 64 lowercase hex digits "
        "(the sha256 of a serialized FileBlob)"
    )


def _check_data_matches_key(key: str, data: bytes) -> None:
    actual = hashlib.sha256(data).hexdigest()
    if actual == key:
        return
    raise BadRequest(
        f"blob data hashes to {actual}, not to its key {key}; "
        "store a serialized FileBlob under the sha256 of its bytes"
    )


def _check_max_bytes(max_bytes: int) -> None:
    if max_bytes > 0:
        return
    raise ConfigError(f"file store max_bytes is {max_bytes}; set it to a positive byte count")


class _LruIndex:
    """Blob sizes in least-recently-used-first order, kept at or under a byte cap.

    Pure bookkeeping: ``add`` decides which keys to evict and the caller deletes them.
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        # Invariant: total_bytes == sum(_sizes.values()) <= max_bytes after every call.
        self._sizes: OrderedDict[str, int] = OrderedDict()
        self.total_bytes = 0
        self.evictions = 0

    def __contains__(self, key: str) -> bool:
        return key in self._sizes

    def __len__(self) -> int:
        return len(self._sizes)

    def check_fits(self, key: str, size: int) -> None:
        if size <= self.max_bytes:
            return
        raise BlobTooLargeError(
            f"blob {key} is {size} bytes, more than the file store's max_bytes of "
            f"{self.max_bytes}; raise the file store size"
        )

    def touch(self, key: str) -> None:
        if key in self._sizes:
            self._sizes.move_to_end(key)

    def add(self, key: str, size: int) -> list[str]:
        """Record ``key`` as the most recent blob and return the keys evicted for it."""
        if key in self._sizes:
            self.touch(key)
            return []

        self.check_fits(key, size)
        self._sizes[key] = size
        self.total_bytes += size
        return self._evict_over_cap()

    def remove(self, key: str) -> None:
        size = self._sizes.pop(key, None)
        if size is not None:
            self.total_bytes -= size

    def statistics(self) -> FileStoreStatistics:
        return FileStoreStatistics(
            entries=len(self._sizes),
            bytes=self.total_bytes,
            max_bytes=self.max_bytes,
            evictions=self.evictions,
        )

    def _evict_over_cap(self) -> list[str]:
        evicted: list[str] = []
        while self.total_bytes > self.max_bytes:
            key, size = self._sizes.popitem(last=False)
            self.total_bytes -= size
            self.evictions += 1
            evicted.append(key)
        return evicted


class MemoryFileStore:
    """A file store in process memory, for tests and embedding."""

    def __init__(self, max_bytes: int) -> None:
        _check_max_bytes(max_bytes)
        self._index = _LruIndex(max_bytes)
        self._blobs: dict[str, bytes] = {}

    async def get(self, key: str) -> bytes | None:
        """Return the blob stored under ``key`` and mark it as recently used, or None."""
        check_key(key)
        data = self._blobs.get(key)
        if data is not None:
            self._index.touch(key)
        return data

    async def put(self, key: str, data: bytes) -> None:
        """Store ``data`` under ``key``, evicting least recently used blobs past the cap.

        Raises:
            BadRequest: if ``key`` is not a hash key or ``data`` does not hash to it.
            BlobTooLargeError: if ``data`` alone is larger than the store's max_bytes.
        """
        check_key(key)
        _check_data_matches_key(key, data)

        evicted = self._index.add(key, len(data))
        self._blobs[key] = data
        for old_key in evicted:
            del self._blobs[old_key]

    async def contains(self, key: str) -> bool:
        """Tell whether a blob is stored under ``key``."""
        check_key(key)
        return key in self._blobs

    def statistics(self) -> FileStoreStatistics:
        """Return the entry count, stored bytes, byte cap and evictions so far."""
        return self._index.statistics()


@dataclass(frozen=True)
class _ScannedFile:
    key: str
    size: int
    last_used_ns: int


class DiskFileStore:
    """A file store with one file per blob under a directory, the default store.

    Blobs live at ``<directory>/<key[:2]>/<key>``.  Writes go to a temporary file in the
    same directory and are renamed into place, so a reader never sees a partial blob.
    Reading a blob sets the file's access and modify times to now, which lets ``open``
    restore the least-recently-used order after a restart.

    Create it with ``await DiskFileStore.open(directory, max_bytes)``.
    """

    def __init__(self, directory: Path, index: _LruIndex) -> None:
        self._directory = directory
        self._index = index

    @classmethod
    async def open(cls, directory: Path, max_bytes: int) -> DiskFileStore:
        """Open or create the store at ``directory``, indexing the blobs already there.

        Existing blobs are ordered by the later of their access and modify times.  If they
        exceed ``max_bytes``, the oldest are deleted.  Temporary files left by an
        interrupted write are deleted too.

        Raises:
            ConfigError: if ``max_bytes`` is not positive.
            OSError: if the directory cannot be created or listed.
        """
        _check_max_bytes(max_bytes)
        scanned = await anyio.to_thread.run_sync(_scan_directory, directory)

        index = _LruIndex(max_bytes)
        evicted: list[str] = []
        for entry in sorted(scanned, key=lambda found: found.last_used_ns):
            if entry.size > max_bytes:
                evicted.append(entry.key)
                continue
            evicted.extend(index.add(entry.key, entry.size))

        store = cls(directory, index)
        await store._delete_files(evicted)
        logger.info(
            "file_store_opened",
            directory=str(directory),
            entries=len(index),
            bytes=index.total_bytes,
            max_bytes=max_bytes,
            evicted=len(evicted),
        )
        return store

    async def get(self, key: str) -> bytes | None:
        """Return the blob stored under ``key`` and mark it as recently used, or None.

        A file whose bytes no longer hash to ``key`` is deleted, logged as
        ``file_store_corrupt_blob`` and reported as missing.
        """
        check_key(key)
        if key not in self._index:
            return None

        path = self._path(key)
        try:
            data = await anyio.to_thread.run_sync(_read_and_verify, path, key)
        except FileNotFoundError:
            logger.warning("file_store_file_vanished", key=key, path=str(path))
            self._index.remove(key)
            return None

        if data is None:
            self._index.remove(key)
            return None
        self._index.touch(key)
        return data

    async def put(self, key: str, data: bytes) -> None:
        """Write ``data`` to ``key``'s file, evicting least recently used blobs past the cap.

        Raises:
            BadRequest: if ``key`` is not a hash key or ``data`` does not hash to it.
            BlobTooLargeError: if ``data`` alone is larger than the store's max_bytes.
            OSError: if the file cannot be written.
        """
        check_key(key)
        self._index.check_fits(key, len(data))
        if key in self._index:
            self._index.touch(key)
            return

        # The shield keeps the file, the index and the evictions consistent, because a
        # cancel between these steps would leave an unindexed file or an evicted file that
        # was never deleted.  Local file writes are short, so the shield is brief.
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(_verify_and_write, self._path(key), key, data)

            # The file exists before the index lists it, so a concurrent get never finds an
            # indexed key without its file.
            evicted = self._index.add(key, len(data))
            await self._delete_files(evicted)

    async def contains(self, key: str) -> bool:
        """Tell whether a blob is stored under ``key``."""
        check_key(key)
        return key in self._index

    def statistics(self) -> FileStoreStatistics:
        """Return the entry count, stored bytes, byte cap and evictions so far."""
        return self._index.statistics()

    def _path(self, key: str) -> Path:
        return self._directory / key[:2] / key

    async def _delete_files(self, keys: list[str]) -> None:
        if not keys:
            return
        # NOTE: a put of the same key that lands between the eviction decision and this
        # unlink loses its file.  The index then lists a missing file, which the next get
        # reports as missing and drops, so the client uploads the blob again.
        paths = [self._path(key) for key in keys]
        await anyio.to_thread.run_sync(_unlink_all, paths)
        logger.debug("file_store_evicted", count=len(keys))


def _scan_directory(directory: Path) -> list[_ScannedFile]:
    """List the blobs under ``directory``, creating it and deleting stale temp files."""
    directory.mkdir(parents=True, exist_ok=True)
    found: list[_ScannedFile] = []

    for shard in os.scandir(directory):
        if not shard.is_dir(follow_symlinks=False):
            continue
        for entry in os.scandir(shard.path):
            scanned = _scan_entry(shard.name, entry)
            if scanned is not None:
                found.append(scanned)
    return found


def _scan_entry(shard_name: str, entry: os.DirEntry[str]) -> _ScannedFile | None:
    if entry.name.startswith(_TEMP_PREFIX):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(entry.path)
        return None

    if not is_valid_hash(entry.name) or entry.name[:2] != shard_name:
        logger.warning("file_store_unknown_file_skipped", path=entry.path)
        return None
    if not entry.is_file(follow_symlinks=False):
        return None

    stat = entry.stat(follow_symlinks=False)
    last_used_ns = max(stat.st_atime_ns, stat.st_mtime_ns)
    return _ScannedFile(key=entry.name, size=stat.st_size, last_used_ns=last_used_ns)


def _read_and_verify(path: Path, key: str) -> bytes | None:
    """Read a blob file and refresh its times, or delete it when it does not match ``key``."""
    data = path.read_bytes()
    actual = hashlib.sha256(data).hexdigest()

    if actual != key:
        logger.warning(
            "file_store_corrupt_blob", key=key, actual_hash=actual, size=len(data), path=str(path)
        )
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        return None

    with contextlib.suppress(FileNotFoundError):
        os.utime(path)
    return data


def _verify_and_write(path: Path, key: str, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically, after checking that it hashes to ``key``."""
    _check_data_matches_key(key, data)
    path.parent.mkdir(exist_ok=True)

    descriptor, temp_name = tempfile.mkstemp(prefix=_TEMP_PREFIX, dir=path.parent)
    try:
        with os.fdopen(descriptor, "wb") as temp_file:
            temp_file.write(data)
        os.replace(temp_name, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp_name)
        raise


def _unlink_all(paths: list[Path]) -> None:
    for path in paths:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
