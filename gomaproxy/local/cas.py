"""The local content-addressed store: blobs on disk, named by their sha256 digest.

Each blob lives at ``<root>/<hash[:2]>/<hash>`` with mode 0444, and the executor copies
it into an action's input root.  Writes go to ``<root>/tmp`` first and are
renamed into place only after their sha256 and size match the digest, so a reader never
sees a partial blob.  The empty blob is always present and has no file.

Theory of operation: the in-memory index (``_sizes``, in least-recently-used order) is the
source of truth for what the store holds.  Only the event-loop thread changes it, and never
with an ``await`` between reading and writing it.  When the total size passes the cap, the
least recently used unpinned blobs are renamed into ``<root>/trash`` in the same
step that drops them from the index, and the files are deleted later in a worker thread.
A writer pins its digest for the whole write, so a blob being written is never picked.

The eviction plan and ``PinSet`` are in ``cas_eviction``, streaming uploads in
``cas_writer`` and the blocking file operations in ``cas_files``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import TypeVar, final

import anyio
import anyio.to_thread
import structlog
from google.protobuf.message import DecodeError, Message

from gomaproxy.digest import DigestKey, digest_of_message, is_valid_hash
from gomaproxy.errors import BackendError, Code
from gomaproxy.local.cas_eviction import PinSet, plan_eviction
from gomaproxy.local.cas_files import (
    CHUNK_BYTES,
    DELETE_TIMEOUT_S,
    BlobWriteResult,
    PendingBlob,
    copy_and_hash,
    delete_files,
    hash_and_store,
    move_into_place,
    open_at,
    remove_quietly,
)
from gomaproxy.local.cas_writer import BlobWriter, blob_mismatch_error

log = structlog.get_logger(__name__)

MessageT = TypeVar("MessageT", bound=Message)


@final
class ContentAddressableStorage:
    """A size-capped blob store on disk with least-recently-used eviction.

    Use ``open`` to build one from what is already on disk.  All methods must be called
    from the event-loop thread that owns the store.
    """

    def __init__(
        self,
        root: Path,
        *,
        max_bytes: int,
        on_size_change: Callable[[int], None] | None = None,
    ) -> None:
        if max_bytes <= 0:
            raise ValueError(f"max_bytes must be positive, not {max_bytes}")

        self.root = root
        self.max_bytes = max_bytes
        self._on_size_change = on_size_change
        self._tmp_dir = root / "tmp"
        self._trash_dir = root / "trash"
        # Blob sizes by digest, least recently used first.  Holds no entry for the empty blob.
        self._sizes: OrderedDict[DigestKey, int] = OrderedDict()
        # Sum of the values of _sizes.
        self._total_bytes = 0
        # Pin counts by digest; a digest with a count above zero is never evicted.
        self._pins: dict[DigestKey, int] = {}

    @classmethod
    async def open(
        cls,
        root: Path,
        *,
        max_bytes: int,
        on_size_change: Callable[[int], None] | None = None,
    ) -> ContentAddressableStorage:
        """Create the store's directories and index the blobs already under ``root``.

        Files left in the temporary and trash directories by an earlier process are
        deleted.  Blobs found on disk enter the LRU order oldest modification time first,
        so after a restart the order only approximates the real use.
        """
        store = cls(root, max_bytes=max_bytes, on_size_change=on_size_change)
        found = await anyio.to_thread.run_sync(store._prepare_and_scan)
        for key, size in found:
            store._add_to_index(key, size)

        await store._evict_over_cap()
        log.info(
            "local_cas_opened", root=str(root), blobs=len(store._sizes), bytes=store.total_bytes
        )
        return store

    @property
    def total_bytes(self) -> int:
        return self._total_bytes

    # Index and pins: synchronous, event-loop thread only.

    def contains(self, key: DigestKey) -> bool:
        """Tell whether the store contains ``key``, marking it as recently used if so."""
        if key.is_empty:
            return True
        if key not in self._sizes:
            return False
        self._sizes.move_to_end(key)
        return True

    def find_missing(self, keys: Iterable[DigestKey]) -> list[DigestKey]:
        """Return the keys the store does not hold, in request order and without repeats."""
        missing: list[DigestKey] = []
        seen: set[DigestKey] = set()
        for key in keys:
            if key in seen:
                continue
            seen.add(key)
            if not self.contains(key):
                missing.append(key)
        return missing

    def path_of(self, key: DigestKey) -> Path:
        """Return the file that contains ``key``, for copying.  Never modify that file.

        Pin the key first: an unpinned blob can be evicted as soon as another write lands.
        The empty blob has no file, so callers create empty files themselves.

        Raises:
            BackendError: NOT_FOUND when the blob is missing or empty.
        """
        if key.is_empty or not self.contains(key):
            raise _not_found(key)
        return self._blob_path(key)

    @contextlib.contextmanager
    def pinned(self, keys: Iterable[DigestKey] = ()) -> Iterator[PinSet]:
        """Protect ``keys`` and keys added to the yielded set from eviction within the block."""
        pins = PinSet(self)
        try:
            pins.update(keys)
            yield pins
        finally:
            for key in pins.keys:
                self.unpin(key)

    def is_pinned(self, key: DigestKey) -> bool:
        return self._pins.get(key, 0) > 0

    # Reads.

    async def read(self, key: DigestKey) -> bytes:
        """Return the whole content of ``key``.

        Raises:
            BackendError: NOT_FOUND when the blob is missing.
        """
        if key.is_empty:
            return b""
        with self.pinned([key]):
            path = self.path_of(key)
            try:
                return await anyio.to_thread.run_sync(path.read_bytes)
            except FileNotFoundError:
                self._forget_vanished(key)
                raise _not_found(key) from None

    async def read_message(self, key: DigestKey, message_type: type[MessageT]) -> MessageT:
        """Read ``key`` and parse it as ``message_type``.

        Raises:
            BackendError: NOT_FOUND when the blob is missing, INVALID_ARGUMENT when it does
                not parse as that message.
        """
        data = await self.read(key)
        message = message_type()
        try:
            message.ParseFromString(data)
        except DecodeError as exc:
            raise BackendError(
                Code.INVALID_ARGUMENT,
                f"blob {key} is not a valid {message_type.DESCRIPTOR.full_name}: {exc}; "
                "upload the serialized message under its own digest",
            ) from exc
        return message

    async def read_chunks(
        self, key: DigestKey, *, offset: int = 0, limit: int = 0
    ) -> AsyncIterator[bytes]:
        """Yield the content of ``key`` from ``offset``, at most ``limit`` bytes (0: no limit).

        The blob stays pinned while the iterator is open; close it with
        ``contextlib.aclosing``.

        Raises:
            BackendError: NOT_FOUND when the blob is missing, OUT_OF_RANGE when ``offset``
                is negative or past the end, INVALID_ARGUMENT when ``limit`` is negative.
        """
        _check_read_range(key, offset, limit)
        end = key.size_bytes if limit == 0 else min(key.size_bytes, offset + limit)
        if key.is_empty or offset == end:
            if not self.contains(key):
                raise _not_found(key)
            return

        with self.pinned([key]):
            path = self.path_of(key)
            try:
                handle = await anyio.to_thread.run_sync(open_at, path, offset)
            except FileNotFoundError:
                self._forget_vanished(key)
                raise _not_found(key) from None

            try:
                position = offset
                while position < end:
                    chunk = await anyio.to_thread.run_sync(
                        handle.read, min(CHUNK_BYTES, end - position)
                    )
                    if not chunk:
                        raise BackendError(
                            Code.DATA_LOSS,
                            f"blob {key} ended at byte {position}, before its declared size; "
                            "upload it again",
                        )
                    position += len(chunk)
                    yield chunk
            finally:
                handle.close()

    # Writes.

    async def write(self, key: DigestKey, data: bytes) -> None:
        """Store ``data`` under ``key`` after checking that its sha256 and size match.

        Raises:
            BackendError: INVALID_ARGUMENT when the content does not match ``key``,
                RESOURCE_EXHAUSTED when the blob is larger than the store's cap.
            OSError: when writing the blob file fails.
        """
        (error,) = await self.write_batch([(key, data)])
        if error is not None:
            raise error

    async def write_batch(
        self, blobs: Sequence[tuple[DigestKey, bytes]]
    ) -> list[BackendError | OSError | None]:
        """Store each blob whose sha256 and size match its key, in one worker-thread call.

        Returns one entry per blob, in order: None when the store contains the blob
        afterwards, or else the error for that blob.  The errors are as for ``write``:
        INVALID_ARGUMENT for content that does not match its key, RESOURCE_EXHAUSTED for
        a blob larger than the cap, and the OSError of a failed file write.
        """
        with self.pinned(key for key, _ in blobs):
            pending = [self._plan_blob_write(key, data) for key, data in blobs]
            results = await anyio.to_thread.run_sync(hash_and_store, pending)
            errors = [
                self._finish_blob_write(blob, result)
                for blob, result in zip(pending, results, strict=True)
            ]
        # Evict after the pins are gone, so that a batch larger than the cap still ends
        # within it.  The new blobs are the most recently used, so they go last.
        await self._evict_over_cap()
        return errors

    async def write_message(self, message: Message) -> DigestKey:
        """Store the deterministic serialization of ``message`` and return its digest."""
        key, data = digest_of_message(message)
        await self.write(key, data)
        return key

    async def ingest_file(self, source: Path) -> DigestKey:
        """Copy the regular file ``source`` into the store and return its digest.

        ``source`` is opened without following a symlink in its last component.

        Raises:
            BackendError: RESOURCE_EXHAUSTED when the file is larger than the store's cap.
            OSError: when ``source`` cannot be read.
        """
        tmp_path = self._new_tmp_path()
        try:
            key = await anyio.to_thread.run_sync(copy_and_hash, source, tmp_path)
        except BaseException:
            await remove_quietly(tmp_path)
            raise

        with self.pinned([key]):
            if key.is_empty or self.contains(key):
                await remove_quietly(tmp_path)
                return key
            try:
                self._check_fits(key)
            except BackendError:
                await remove_quietly(tmp_path)
                raise
            await self.commit(key, tmp_path)
        return key

    def begin_write(self, key: DigestKey) -> BlobWriter:
        """Start a streaming write of ``key``; the caller must ``commit`` or ``discard`` it.

        Raises:
            BackendError: RESOURCE_EXHAUSTED when the blob is larger than the store's cap.
        """
        self._check_fits(key)
        return BlobWriter(self, key, self._new_tmp_path())

    # Internals.

    def _blob_path(self, key: DigestKey) -> Path:
        return self.root / key.hash[:2] / key.hash

    def _new_tmp_path(self) -> Path:
        return self._tmp_dir / uuid.uuid4().hex

    def _plan_blob_write(self, key: DigestKey, data: bytes) -> PendingBlob:
        """Decide whether a blob of a batch needs a file; ``key`` must be pinned."""
        if key.is_empty or self.contains(key) or key.size_bytes > self.max_bytes:
            return PendingBlob(key, data, tmp_path=None, final_path=None)
        return PendingBlob(key, data, self._new_tmp_path(), self._blob_path(key))

    def _finish_blob_write(
        self, blob: PendingBlob, result: BlobWriteResult
    ) -> BackendError | OSError | None:
        """Index a blob written by ``hash_and_store``, or return its error."""
        if result.actual != blob.key:
            return blob_mismatch_error(blob.key, result.actual)
        if result.error is not None:
            return result.error
        if result.stored:
            self._add_to_index(blob.key, blob.key.size_bytes)
            return None
        if blob.final_path is None and not (blob.key.is_empty or self.contains(blob.key)):
            try:
                self._check_fits(blob.key)
            except BackendError as exc:
                return exc
        return None

    def _check_fits(self, key: DigestKey) -> None:
        if key.size_bytes <= self.max_bytes:
            return
        raise BackendError(
            Code.RESOURCE_EXHAUSTED,
            f"blob {key} is larger than the local CAS cap of {self.max_bytes} bytes; "
            "raise cas_max_bytes",
        )

    def pin(self, key: DigestKey) -> None:
        self._pins[key] = self._pins.get(key, 0) + 1

    def unpin(self, key: DigestKey) -> None:
        count = self._pins.get(key, 0) - 1
        if count > 0:
            self._pins[key] = count
        else:
            self._pins.pop(key, None)

    def _add_to_index(self, key: DigestKey, size: int) -> None:
        if key in self._sizes:
            self._sizes.move_to_end(key)
            return
        self._sizes[key] = size
        self._total_bytes += size
        self._report_size()

    def _drop_from_index(self, key: DigestKey) -> None:
        size = self._sizes.pop(key, None)
        if size is None:
            return
        self._total_bytes -= size
        self._report_size()

    def _forget_vanished(self, key: DigestKey) -> None:
        log.warning("local_cas_blob_vanished", digest=str(key))
        self._drop_from_index(key)

    def _report_size(self) -> None:
        if self._on_size_change is not None:
            self._on_size_change(self._total_bytes)

    async def commit(self, key: DigestKey, tmp_path: Path) -> None:
        """Move a verified temporary file into place, index it and evict if over the cap."""
        await anyio.to_thread.run_sync(move_into_place, tmp_path, self._blob_path(key))
        self._add_to_index(key, key.size_bytes)
        await self._evict_over_cap()

    async def _evict_over_cap(self) -> None:
        if self._total_bytes <= self.max_bytes:
            return

        victims = plan_eviction(
            self._sizes.items(), self._total_bytes, self.max_bytes, self.is_pinned
        )
        # Rename and drop from the index in one step with no await in between, so that no
        # writer can put a new file at a victim's path before it is moved away.
        trashed: list[Path] = []
        for key in victims:
            trashed.append(self._move_to_trash(key))
            self._drop_from_index(key)

        if self._total_bytes > self.max_bytes:
            log.warning(
                "local_cas_over_cap",
                bytes=self._total_bytes,
                max_bytes=self.max_bytes,
                pinned_blobs=len(self._pins),
            )
        if victims:
            log.debug("local_cas_evicted", blobs=len(victims), bytes=self._total_bytes)

        with anyio.move_on_after(DELETE_TIMEOUT_S, shield=True):
            await anyio.to_thread.run_sync(delete_files, trashed, abandon_on_cancel=True)

    def _move_to_trash(self, key: DigestKey) -> Path:
        target = self._trash_dir / uuid.uuid4().hex
        with contextlib.suppress(FileNotFoundError):
            os.rename(self._blob_path(key), target)
        return target

    def _prepare_and_scan(self) -> list[tuple[DigestKey, int]]:
        """Create the directories, empty tmp and trash, and list blobs oldest first."""
        self.root.mkdir(parents=True, exist_ok=True)
        for scratch in (self._tmp_dir, self._trash_dir):
            shutil.rmtree(scratch, ignore_errors=True)
            scratch.mkdir()

        found: list[tuple[float, DigestKey, int]] = []
        for shard in self.root.iterdir():
            if len(shard.name) != 2 or not shard.is_dir():
                continue
            for entry in os.scandir(shard):
                if not is_valid_hash(entry.name) or not entry.is_file(follow_symlinks=False):
                    log.warning("local_cas_unexpected_file", path=entry.path)
                    continue
                stat = entry.stat(follow_symlinks=False)
                found.append((stat.st_mtime, DigestKey(entry.name, stat.st_size), stat.st_size))

        found.sort(key=lambda item: item[0])
        return [(key, size) for _, key, size in found]


def _not_found(key: DigestKey) -> BackendError:
    return BackendError(
        Code.NOT_FOUND, f"blob {key} is not in the local CAS; upload it before using it"
    )


def _check_read_range(key: DigestKey, offset: int, limit: int) -> None:
    if offset < 0 or offset > key.size_bytes:
        raise BackendError(
            Code.OUT_OF_RANGE,
            f"read offset {offset} is outside blob {key}; use an offset from 0 to its size",
        )
    if limit < 0:
        raise BackendError(
            Code.INVALID_ARGUMENT,
            f"read limit {limit} of blob {key} is negative; use 0 for no limit",
        )
