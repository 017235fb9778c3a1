"""Input roots of local actions: fetching the Directory tree and materialising it on disk.

``fetch_input_tree`` reads the Directory messages from the CAS and flattens them into an
``InputTree`` of relative paths.  ``materialise_input_tree`` then builds that tree in an
action directory from copies of the CAS files, never hard links.  A hard link would share
the blob's inode, and mode 0444 does not stop an action that runs as root, or as the
blob's owner after a chmod, from writing to it.  Such a write would change the blob for
every later action.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import shutil
import stat
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from google.protobuf import any_pb2
from google.rpc import error_details_pb2

from gomaproxy.digest import DigestKey
from gomaproxy.errors import BackendError, Code
from gomaproxy.local.cas import ContentAddressableStorage
from gomaproxy.protos import remote_execution_pb2 as re_pb2

DIRECTORY_MODE = 0o755
COPIED_FILE_MODE = 0o644
EXECUTABLE_MODE = 0o755


@dataclass(frozen=True)
class InputFile:
    """A file of the input tree, at a path relative to the input root."""

    path: str
    digest: DigestKey
    is_executable: bool


@dataclass(frozen=True)
class InputSymlink:
    """A symlink of the input tree; the target is stored as given, never resolved."""

    path: str
    target: str


@dataclass
class InputTree:
    """A flattened input root: directories parents first, then files and symlinks."""

    directories: list[str] = field(default_factory=list)
    files: list[InputFile] = field(default_factory=list)
    symlinks: list[InputSymlink] = field(default_factory=list)

    def file_digests(self) -> set[DigestKey]:
        return {input_file.digest for input_file in self.files}


def missing_blobs_error(keys: Iterable[DigestKey], what: str) -> BackendError:
    """Build the FAILED_PRECONDITION error that lists ``keys`` as MISSING violations.

    ``what`` names the blobs in the message, such as "input files".
    """
    failure = error_details_pb2.PreconditionFailure()
    for key in keys:
        failure.violations.add(type="MISSING", subject=f"blobs/{key.hash}/{key.size_bytes}")

    packed = any_pb2.Any()
    packed.Pack(failure)
    subjects = ", ".join(violation.subject for violation in failure.violations[:5])
    more = len(failure.violations) - 5
    suffix = f" and {more} more" if more > 0 else ""
    return BackendError(
        Code.FAILED_PRECONDITION,
        f"{what} missing from the local CAS: {subjects}{suffix}; upload them and execute again",
        details=(packed,),
    )


def validate_entry_name(name: str, parent: str) -> None:
    """Raise INVALID_ARGUMENT unless ``name`` is a single, plain path component."""
    if name and "/" not in name and "\0" not in name and name not in (".", ".."):
        return
    raise BackendError(
        Code.INVALID_ARGUMENT,
        f"input tree entry {name!r} in directory {parent or '/'!r} is not a valid file name; "
        "names must be non-empty and contain no '/', and '.' and '..' are not allowed",
    )


async def fetch_input_tree(cas: ContentAddressableStorage, root_digest: DigestKey) -> InputTree:
    """Read every Directory of the input root from ``cas`` and flatten it.

    Raises:
        BackendError: FAILED_PRECONDITION listing every Directory blob found missing,
            INVALID_ARGUMENT for an invalid name or a duplicate entry.
    """
    directories: dict[DigestKey, re_pb2.Directory] = {}
    pending = [root_digest]
    missing: list[DigestKey] = []
    while pending:
        next_level: list[DigestKey] = []
        for key in pending:
            if key in directories or key in missing:
                continue
            if not cas.contains(key):
                missing.append(key)
                continue
            directory = await cas.read_message(key, re_pb2.Directory)
            directories[key] = directory
            next_level += [DigestKey.of(node.digest) for node in directory.directories]
        pending = next_level

    if missing:
        raise missing_blobs_error(missing, "input directories")
    return flatten_input_tree(root_digest, directories)


def flatten_input_tree(
    root_digest: DigestKey, directories: Mapping[DigestKey, re_pb2.Directory]
) -> InputTree:
    """List every entry below the root Directory by relative path, validating names."""
    tree = InputTree()
    stack: list[tuple[str, DigestKey]] = [("", root_digest)]
    while stack:
        prefix, key = stack.pop()
        directory = directories[key]
        _check_unique_names(directory, prefix)

        for file_node in directory.files:
            path = posixpath.join(prefix, file_node.name)
            tree.files.append(
                InputFile(path, DigestKey.of(file_node.digest), file_node.is_executable)
            )
        for symlink_node in directory.symlinks:
            path = posixpath.join(prefix, symlink_node.name)
            tree.symlinks.append(InputSymlink(path, symlink_node.target))
        for directory_node in directory.directories:
            path = posixpath.join(prefix, directory_node.name)
            tree.directories.append(path)
            stack.append((path, DigestKey.of(directory_node.digest)))
    return tree


def _check_unique_names(directory: re_pb2.Directory, prefix: str) -> None:
    seen: set[str] = set()
    names = [node.name for node in directory.files]
    names += [node.name for node in directory.directories]
    names += [node.name for node in directory.symlinks]
    for name in names:
        validate_entry_name(name, prefix)
        if name in seen:
            raise BackendError(
                Code.INVALID_ARGUMENT,
                f"input tree directory {prefix or '/'!r} has two entries named {name!r}; "
                "each name may appear once per directory",
            )
        seen.add(name)
    for symlink_node in directory.symlinks:
        if not symlink_node.target:
            raise BackendError(
                Code.INVALID_ARGUMENT,
                f"input symlink {posixpath.join(prefix, symlink_node.name)!r} has an empty "
                "target; give every symlink a target",
            )


def materialise_input_tree(
    root: Path, tree: InputTree, blob_paths: Mapping[DigestKey, Path]
) -> None:
    """Build ``tree`` under the existing directory ``root``; blocking, so run it in a thread.

    ``blob_paths`` maps every non-empty file digest to its CAS file, which must stay
    pinned until this returns.
    """
    for directory in tree.directories:
        os.mkdir(root / directory, DIRECTORY_MODE)

    for input_file in tree.files:
        target = root / input_file.path
        mode = EXECUTABLE_MODE if input_file.is_executable else COPIED_FILE_MODE
        source = None if input_file.digest.is_empty else blob_paths[input_file.digest]
        _copy_blob(source, input_file.digest, target, mode)

    for symlink in tree.symlinks:
        os.symlink(symlink.target, root / symlink.path)


def make_real_directories(root: Path, relative_paths: Sequence[str]) -> None:
    """Create each relative directory path under ``root`` without following any symlink.

    Blocking, so run it in a worker thread.

    Raises:
        BackendError: INVALID_ARGUMENT when a component exists as a symlink or a file.
    """
    for relative in relative_paths:
        current = root
        for component in Path(relative).parts:
            current = current / component
            _ensure_real_directory(current, root, relative)


def _ensure_real_directory(path: Path, root: Path, relative: str) -> None:
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        os.mkdir(path, DIRECTORY_MODE)
        return

    if stat.S_ISDIR(mode):
        return
    raise BackendError(
        Code.INVALID_ARGUMENT,
        f"cannot create directory {relative!r} in the input root because "
        f"{str(path.relative_to(root))!r} is a symlink or a file; "
        "change the input tree or the declared outputs and working directory",
    )


def _copy_blob(source: Path | None, digest: DigestKey, target: Path, mode: int) -> None:
    """Create ``target`` with ``mode`` and the content of the blob file ``source``.

    ``source`` is None for the empty blob, which has no file.

    Raises:
        BackendError: DATA_LOSS when the blob file is shorter than its digest states.
    """
    target_fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        # fchmod, because the umask may have cleared bits of the mode given to open.
        os.fchmod(target_fd, mode)
        if source is not None:
            _send_blob(source, digest, target_fd)
    finally:
        os.close(target_fd)


def _send_blob(source: Path, digest: DigestKey, target_fd: int) -> None:
    source_fd = os.open(source, os.O_RDONLY)
    try:
        copied = 0
        while copied < digest.size_bytes:
            sent = os.sendfile(target_fd, source_fd, copied, digest.size_bytes - copied)
            if sent == 0:
                raise BackendError(
                    Code.DATA_LOSS,
                    f"blob {digest} ended at byte {copied}, before its declared size; "
                    "upload it again",
                )
            copied += sent
    finally:
        os.close(source_fd)


def remove_tree(path: Path) -> None:
    """Delete ``path`` recursively, making read-only directories writable where needed."""

    def make_writable_and_retry(
        function: Callable[[str], object], failed_path: str, _error: object
    ) -> None:
        with contextlib.suppress(OSError):
            os.chmod(os.path.dirname(failed_path), DIRECTORY_MODE)
        function(failed_path)

    if sys.version_info >= (3, 12):
        shutil.rmtree(path, onexc=make_writable_and_retry)
    else:
        shutil.rmtree(path, onerror=make_writable_and_retry)
