"""Streaming uploads into the local CAS, checked against their digest on commit."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import IO, TYPE_CHECKING, final

import anyio
import anyio.to_thread

from gomaproxy.digest import DigestKey
from gomaproxy.errors import BackendError, Code
from gomaproxy.local.cas_files import (
    DELETE_TIMEOUT_S,
    create_exclusive,
    flush_and_close,
    remove_quietly,
    write_new_file,
)

if TYPE_CHECKING:
    from gomaproxy.local.cas import ContentAddressableStorage


def blob_mismatch_error(expected: DigestKey, actual: DigestKey) -> BackendError:
    """Build the error for content whose sha256 or size differs from its declared digest."""
    return BackendError(
        Code.INVALID_ARGUMENT,
        f"blob content does not match its digest: expected {expected}, got {actual}; "
        "send the content together with its own digest",
    )


@final
class BlobWriter:
    """One streaming upload: bytes are hashed while they go to a temporary file.

    The expected digest stays pinned from ``begin_write`` until ``commit`` or ``discard``.
    """

    def __init__(self, store: ContentAddressableStorage, key: DigestKey, tmp_path: Path) -> None:
        self.key = key
        self._store = store
        self._tmp_path = tmp_path
        self._hasher = hashlib.sha256()
        self._handle: IO[bytes] | None = None
        # Bytes received so far; the offset the next append must start at.
        self.committed_size = 0
        self._closed = False
        store.pin(key)

    async def append(self, data: bytes) -> None:
        """Add ``data`` at the end of the upload.

        Raises:
            BackendError: INVALID_ARGUMENT when the upload would exceed the declared size.
        """
        new_size = self.committed_size + len(data)
        if new_size > self.key.size_bytes:
            raise BackendError(
                Code.INVALID_ARGUMENT,
                f"upload of {self.key} received {new_size} bytes, more than the declared size; "
                "check the size in the resource name",
            )
        if self._handle is None:
            self._handle = await anyio.to_thread.run_sync(create_exclusive, self._tmp_path)

        await anyio.to_thread.run_sync(self._handle.write, data)
        self._hasher.update(data)
        self.committed_size = new_size

    async def commit(self) -> None:
        """Verify the received bytes against the digest and store the blob.

        Raises:
            BackendError: INVALID_ARGUMENT when sha256 or size differ from the digest.
        """
        try:
            actual = DigestKey(self._hasher.hexdigest(), self.committed_size)
            if actual != self.key:
                raise blob_mismatch_error(self.key, actual)

            handle = self._handle
            self._handle = None
            if handle is None:
                await anyio.to_thread.run_sync(write_new_file, self._tmp_path, b"")
            else:
                await anyio.to_thread.run_sync(flush_and_close, handle)

            if self.key.is_empty or self._store.contains(self.key):
                await remove_quietly(self._tmp_path)
            else:
                await self._store.commit(self.key, self._tmp_path)
        finally:
            await self.discard()

    async def discard(self) -> None:
        """Drop the upload and its temporary file; safe to call more than once."""
        if self._closed:
            return
        self._closed = True
        self._store.unpin(self.key)
        handle = self._handle
        self._handle = None
        with anyio.move_on_after(DELETE_TIMEOUT_S, shield=True):
            if handle is not None:
                await anyio.to_thread.run_sync(handle.close, abandon_on_cancel=True)
            await remove_quietly(self._tmp_path)
