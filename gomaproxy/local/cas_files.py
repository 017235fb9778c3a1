"""File operations of the local CAS that run in worker threads."""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import anyio
import anyio.to_thread

from gomaproxy.digest import DigestKey

# Bytes per read or write call of the streaming paths; also the ByteStream chunk size.
CHUNK_BYTES = 1024 * 1024

BLOB_MODE = 0o444

# Upper bound for file deletions during cleanup, which run shielded from cancellation.
DELETE_TIMEOUT_S = 30.0


async def remove_quietly(path: Path) -> None:
    with anyio.move_on_after(DELETE_TIMEOUT_S, shield=True):
        await anyio.to_thread.run_sync(_unlink_if_present, path, abandon_on_cancel=True)


def _unlink_if_present(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def delete_files(paths: list[Path]) -> None:
    for path in paths:
        _unlink_if_present(path)


def open_at(path: Path, offset: int) -> IO[bytes]:
    handle = open(path, "rb")  # closed by the caller
    handle.seek(offset)
    return handle


def create_exclusive(path: Path) -> IO[bytes]:
    return open(path, "xb")  # closed by BlobWriter


def flush_and_close(handle: IO[bytes]) -> None:
    handle.flush()
    handle.close()


def write_new_file(path: Path, data: bytes) -> None:
    with open(path, "xb") as handle:
        handle.write(data)


def move_into_place(tmp_path: Path, final_path: Path) -> None:
    # NOTE: there is no fsync before the rename, so after an operating-system crash a blob
    # file can be shorter than its digest states, and nothing re-hashes blobs at start-up.
    os.chmod(tmp_path, BLOB_MODE)
    final_path.parent.mkdir(exist_ok=True)
    os.replace(tmp_path, final_path)


@dataclass(frozen=True)
class PendingBlob:
    """One blob of a batch write, with where to store it if its content matches ``key``."""

    key: DigestKey
    data: bytes
    # None when the blob only needs verifying because the store contains it, it is empty
    # or it is larger than the store's cap.
    tmp_path: Path | None
    final_path: Path | None


@dataclass(frozen=True)
class BlobWriteResult:
    """The outcome of ``hash_and_store`` for one blob."""

    actual: DigestKey
    stored: bool
    error: OSError | None = None


def hash_and_store(blobs: Sequence[PendingBlob]) -> list[BlobWriteResult]:
    """Hash every blob, and write and rename into place each one whose content matches.

    A path listed twice is written once.  A write that fails removes its temporary file
    and is reported in that blob's result, and the other blobs are still written.
    """
    results: list[BlobWriteResult] = []
    written: set[Path] = set()
    for blob in blobs:
        actual = DigestKey(hashlib.sha256(blob.data).hexdigest(), len(blob.data))
        if actual != blob.key or blob.tmp_path is None or blob.final_path is None:
            results.append(BlobWriteResult(actual, stored=False))
            continue
        if blob.final_path in written:
            results.append(BlobWriteResult(actual, stored=False))
            continue

        try:
            write_new_file(blob.tmp_path, blob.data)
            move_into_place(blob.tmp_path, blob.final_path)
        except OSError as exc:
            with contextlib.suppress(OSError):
                _unlink_if_present(blob.tmp_path)
            results.append(BlobWriteResult(actual, stored=False, error=exc))
            continue
        written.add(blob.final_path)
        results.append(BlobWriteResult(actual, stored=True))
    return results


def copy_and_hash(source: Path, target: Path) -> DigestKey:
    hasher = hashlib.sha256()
    size = 0
    fd = os.open(source, os.O_RDONLY | os.O_NOFOLLOW)
    with open(fd, "rb") as reader, open(target, "xb") as writer:
        while chunk := reader.read(CHUNK_BYTES):
            hasher.update(chunk)
            writer.write(chunk)
            size += len(chunk)
    return DigestKey(hasher.hexdigest(), size)
