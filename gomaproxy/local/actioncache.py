"""The local action cache: serialized ActionResults on disk, keyed by action digest.

An entry lives at ``<root>/<hash[:2]>/<hash>-<size>``.  Only successful results of
cacheable actions are stored, and a hit is served only while every blob it refers to is
still in the CAS, because a result whose outputs were evicted cannot be used.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import final

import anyio
import anyio.to_thread
import structlog
from google.protobuf.message import DecodeError

from gomaproxy.digest import DigestKey
from gomaproxy.errors import BackendError, Code
from gomaproxy.local.cas import ContentAddressableStorage
from gomaproxy.protos import remote_execution_pb2 as re_pb2

log = structlog.get_logger(__name__)


def is_cacheable(action: re_pb2.Action, result: re_pb2.ActionResult) -> bool:
    """Tell whether ``result`` of ``action`` may be stored: exit code 0 and caching allowed."""
    return result.exit_code == 0 and not action.do_not_cache


def direct_blob_digests(result: re_pb2.ActionResult) -> Iterator[DigestKey]:
    """Yield the digests an ActionResult names itself: output files, output directory
    trees and root directories, stdout and stderr."""
    for output_file in result.output_files:
        yield DigestKey.of(output_file.digest)
    for output_directory in result.output_directories:
        for digest in (output_directory.tree_digest, output_directory.root_directory_digest):
            if digest.hash:
                yield DigestKey.of(digest)
    for stream_digest in (result.stdout_digest, result.stderr_digest):
        if stream_digest.hash:
            yield DigestKey.of(stream_digest)


def tree_file_digests(tree: re_pb2.Tree) -> Iterator[DigestKey]:
    """Yield the digest of every file in ``tree``."""
    for directory in (tree.root, *tree.children):
        for file_node in directory.files:
            yield DigestKey.of(file_node.digest)


@final
class ActionCache:
    """ActionResults by action digest, validated against the CAS on every hit.

    NOTE: entries are never evicted by size or age.  Each entry is small, and an entry
    whose outputs left the CAS is deleted on its next lookup.
    """

    def __init__(self, root: Path, cas: ContentAddressableStorage) -> None:
        self.root = root
        self._cas = cas

    @classmethod
    async def open(cls, root: Path, cas: ContentAddressableStorage) -> ActionCache:
        """Create the cache directory under ``root`` if needed."""
        await anyio.to_thread.run_sync(lambda: root.mkdir(parents=True, exist_ok=True))
        return cls(root, cas)

    async def get(self, action_digest: DigestKey) -> re_pb2.ActionResult:
        """Return the cached result of ``action_digest`` if all its outputs are in the CAS.

        An entry that refers to a blob missing from the CAS is deleted.

        Raises:
            BackendError: NOT_FOUND on a miss.
        """
        data = await anyio.to_thread.run_sync(_read_if_present, self._entry_path(action_digest))
        if data is None:
            raise _miss(action_digest)

        result = re_pb2.ActionResult()
        try:
            result.ParseFromString(data)
        except DecodeError:
            log.warning("local_action_cache_entry_corrupt", action_digest=str(action_digest))
            await self.remove(action_digest)
            raise _miss(action_digest) from None

        missing = await self._first_missing_blob(result)
        if missing is not None:
            log.info(
                "local_action_cache_entry_stale",
                action_digest=str(action_digest),
                missing_blob=str(missing),
            )
            await self.remove(action_digest)
            raise _miss(action_digest)
        return result

    async def put(
        self, action_digest: DigestKey, action: re_pb2.Action, result: re_pb2.ActionResult
    ) -> bool:
        """Store ``result`` unless it failed or ``action`` has ``do_not_cache``.

        Returns whether the result was stored.
        """
        if not is_cacheable(action, result):
            return False

        data = result.SerializeToString(deterministic=True)
        path = self._entry_path(action_digest)
        await anyio.to_thread.run_sync(_write_atomically, path, data)
        return True

    async def remove(self, action_digest: DigestKey) -> None:
        """Delete the entry of ``action_digest`` if there is one."""
        await anyio.to_thread.run_sync(_unlink_if_present, self._entry_path(action_digest))

    def _entry_path(self, action_digest: DigestKey) -> Path:
        name = f"{action_digest.hash}-{action_digest.size_bytes}"
        return self.root / action_digest.hash[:2] / name

    async def _first_missing_blob(self, result: re_pb2.ActionResult) -> DigestKey | None:
        """Return a blob that ``result`` needs and the CAS lacks, or None if all are present."""
        for key in direct_blob_digests(result):
            if not self._cas.contains(key):
                return key

        for output_directory in result.output_directories:
            if not output_directory.tree_digest.hash:
                continue
            try:
                tree = await self._cas.read_message(
                    DigestKey.of(output_directory.tree_digest), re_pb2.Tree
                )
            except BackendError:
                return DigestKey.of(output_directory.tree_digest)
            for key in tree_file_digests(tree):
                if not self._cas.contains(key):
                    return key
        return None


def _miss(action_digest: DigestKey) -> BackendError:
    return BackendError(
        Code.NOT_FOUND, f"no cached result for action {action_digest}; execute the action"
    )


def _read_if_present(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


def _write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(exist_ok=True)
    tmp_path = path.with_name(f".{path.name}.{uuid.uuid4().hex}")
    try:
        with open(tmp_path, "xb") as handle:
            handle.write(data)
        os.replace(tmp_path, path)
    except BaseException:
        _unlink_if_present(tmp_path)
        raise


def _unlink_if_present(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
