"""File operations of the local CAS that run in worker threads."""

from __future__ import annotations

import contextlib
import hashlib
import os
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
