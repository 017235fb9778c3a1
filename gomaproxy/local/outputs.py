"""Declared outputs of local actions: path checks before the run, collection after it.

Output paths are relative to the working directory, as in the Command.  A path that is
absolute or has an empty, '.' or '..' component is rejected before the action runs.  After
the run, a path whose parent directory resolves outside the input root through a symlink
is rejected, and an output that is itself a symlink is reported as an OutputSymlink and
never followed.  Declared outputs that the action did not create are left out of the
result, without an error.
"""

from __future__ import annotations

import enum
import os
import posixpath
import stat
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import anyio.to_thread
import structlog

from gomaproxy.digest import DigestKey, digest_of_message
from gomaproxy.errors import BackendError, Code
from gomaproxy.local.cas import ContentAddressableStorage, PinSet
from gomaproxy.protos import remote_execution_pb2 as re_pb2

log = structlog.get_logger(__name__)

_DirectoryFormat = re_pb2.Command.OutputDirectoryFormat


class OutputKind(enum.Enum):
    """The Command field that declared an output, which decides the types it may have."""

    ANY = "output_paths"
    FILE = "output_files"
    DIRECTORY = "output_directories"


@dataclass(frozen=True)
class DeclaredOutput:
    """One declared output path, relative to the working directory."""

    path: str
    kind: OutputKind


def declared_outputs(command: re_pb2.Command) -> list[DeclaredOutput]:
    """List the outputs of ``command``: ``output_paths`` if set, else files and directories."""
    if command.output_paths:
        return [DeclaredOutput(path, OutputKind.ANY) for path in command.output_paths]

    outputs = [DeclaredOutput(path, OutputKind.FILE) for path in command.output_files]
    outputs += [DeclaredOutput(path, OutputKind.DIRECTORY) for path in command.output_directories]
    return outputs


def validate_relative_path(value: str, what: str, *, allow_empty: bool = False) -> None:
    """Raise INVALID_ARGUMENT unless ``value`` is a plain relative path that stays below its base.

    ``what`` names the value in the message, such as "output path".
    """
    if value == "" and allow_empty:
        return

    components = value.split("/")
    if value.startswith("/") or any(part in ("", ".", "..") for part in components):
        raise BackendError(
            Code.INVALID_ARGUMENT,
            f"{what} {value!r} is invalid: it must be relative and must not contain empty, "
            "'.' or '..' components; declare it inside the input root",
        )
    if "\0" in value:
        raise BackendError(
            Code.INVALID_ARGUMENT, f"{what} {value!r} contains a NUL byte; remove it"
        )


def directories_to_create(working_directory: str, outputs: Sequence[DeclaredOutput]) -> list[str]:
    """Return the directories to create before the run, relative to the input root.

    These are the working directory and the parents of each output, but not the outputs.
    """
    directories: list[str] = []
    if working_directory:
        directories.append(working_directory)
    for output in outputs:
        parent = posixpath.dirname(output.path)
        if parent:
            directories.append(posixpath.join(working_directory, parent))
    return list(dict.fromkeys(directories))


@dataclass
class _ScannedDirectory:
    """A directory of an output, read from disk without following symlinks."""

    files: list[tuple[str, Path, bool]] = field(default_factory=list)
    directories: list[tuple[str, _ScannedDirectory]] = field(default_factory=list)
    symlinks: list[tuple[str, str]] = field(default_factory=list)


class _Found(enum.Enum):
    MISSING = "missing"
    FILE = "file"
    DIRECTORY = "directory"
    SYMLINK = "symlink"
    OTHER = "other"


@dataclass(frozen=True)
class _Inspection:
    """The entry the action left at a declared output path."""

    found: _Found
    symlink_target: str = ""
    is_executable: bool = False


async def collect_outputs(
    cas: ContentAddressableStorage,
    pins: PinSet,
    input_root: Path,
    command: re_pb2.Command,
    result: re_pb2.ActionResult,
) -> None:
    """Store each declared output of ``command`` in ``cas`` and record it in ``result``.

    Every stored blob is added to ``pins``, so it survives until the caller releases them.

    Raises:
        BackendError: INVALID_ARGUMENT for an output that resolves outside the input root
            or whose type does not match the field that declared it.
    """
    working_directory = command.working_directory
    for output in declared_outputs(command):
        relative = posixpath.join(working_directory, output.path)
        host_path = input_root / relative
        inspection = await anyio.to_thread.run_sync(_inspect_output, input_root, host_path)
        found = inspection.found
        _check_output_type(output, found)

        if found is _Found.FILE:
            key = await cas.ingest_file(host_path)
            pins.add(key)
            result.output_files.add(
                path=output.path, digest=key.to_proto(), is_executable=inspection.is_executable
            )
        elif found is _Found.DIRECTORY:
            await _collect_directory(cas, pins, output.path, host_path, command, result)
        elif found is _Found.SYMLINK:
            _record_symlink(output, inspection.symlink_target, result)
        elif found is _Found.OTHER:
            log.warning("local_output_skipped", path=output.path, reason="not a file or directory")


def _check_output_type(output: DeclaredOutput, found: _Found) -> None:
    if output.kind is OutputKind.FILE and found is _Found.DIRECTORY:
        raise BackendError(
            Code.INVALID_ARGUMENT,
            f"output file {output.path!r} is a directory; declare it in output_directories",
        )
    if output.kind is OutputKind.DIRECTORY and found is _Found.FILE:
        raise BackendError(
            Code.INVALID_ARGUMENT,
            f"output directory {output.path!r} is a file; declare it in output_files",
        )


async def _collect_directory(
    cas: ContentAddressableStorage,
    pins: PinSet,
    path: str,
    host_path: Path,
    command: re_pb2.Command,
    result: re_pb2.ActionResult,
) -> None:
    scanned = await anyio.to_thread.run_sync(_scan_directory, host_path)
    root, descendants = await _store_files_and_build(cas, pins, scanned)
    output = result.output_directories.add(path=path)

    directory_format = command.output_directory_format
    if directory_format != _DirectoryFormat.DIRECTORY_ONLY:
        tree = re_pb2.Tree(root=root, children=_unique_in_order(descendants))
        tree_key = await cas.write_message(tree)
        pins.add(tree_key)
        output.tree_digest.CopyFrom(tree_key.to_proto())
        output.is_topologically_sorted = True

    if directory_format != _DirectoryFormat.TREE_ONLY:
        for directory in (root, *descendants):
            pins.add(await cas.write_message(directory))
        root_key, _ = digest_of_message(root)
        output.root_directory_digest.CopyFrom(root_key.to_proto())


def _record_symlink(output: DeclaredOutput, target: str, result: re_pb2.ActionResult) -> None:
    # Which ActionResult field gets a symlink depends on the Command field that declared it.
    if output.kind is OutputKind.FILE:
        result.output_file_symlinks.add(path=output.path, target=target)
    elif output.kind is OutputKind.DIRECTORY:
        result.output_directory_symlinks.add(path=output.path, target=target)
    else:
        result.output_symlinks.add(path=output.path, target=target)


async def _store_files_and_build(
    cas: ContentAddressableStorage, pins: PinSet, scanned: _ScannedDirectory
) -> tuple[re_pb2.Directory, list[re_pb2.Directory]]:
    """Store the files below ``scanned`` and return its Directory and all descendants.

    Descendants come in pre-order, so every directory precedes its children.
    """
    directory = re_pb2.Directory()
    descendants: list[re_pb2.Directory] = []

    for name, file_path, is_executable in sorted(scanned.files):
        key = await cas.ingest_file(file_path)
        pins.add(key)
        directory.files.add(name=name, digest=key.to_proto(), is_executable=is_executable)

    for name, child in sorted(scanned.directories, key=lambda item: item[0]):
        child_directory, child_descendants = await _store_files_and_build(cas, pins, child)
        child_key, _ = digest_of_message(child_directory)
        directory.directories.add(name=name, digest=child_key.to_proto())
        descendants += [child_directory, *child_descendants]

    for name, target in sorted(scanned.symlinks):
        directory.symlinks.add(name=name, target=target)
    return directory, descendants


def _unique_in_order(directories: list[re_pb2.Directory]) -> list[re_pb2.Directory]:
    seen: set[DigestKey] = set()
    unique: list[re_pb2.Directory] = []
    for directory in directories:
        key, _ = digest_of_message(directory)
        if key in seen:
            continue
        seen.add(key)
        unique.append(directory)
    return unique


# Blocking helpers, run in worker threads.


def _inspect_output(input_root: Path, host_path: Path) -> _Inspection:
    """Look at ``host_path`` without following a symlink in its last component.

    Raises:
        BackendError: INVALID_ARGUMENT when the parent directory resolves outside the root.
    """
    real_root = os.path.realpath(input_root)
    real_parent = os.path.realpath(host_path.parent)
    if os.path.commonpath([real_root, real_parent]) != real_root:
        relative = host_path.relative_to(input_root)
        raise BackendError(
            Code.INVALID_ARGUMENT,
            f"output {str(relative)!r} is below a symlink that leads outside the input root "
            f"(to {real_parent!r}); outputs are never read through such symlinks",
        )

    try:
        info = os.lstat(host_path)
    except (FileNotFoundError, NotADirectoryError):
        return _Inspection(_Found.MISSING)

    if stat.S_ISLNK(info.st_mode):
        return _Inspection(_Found.SYMLINK, symlink_target=os.readlink(host_path))
    if stat.S_ISREG(info.st_mode):
        return _Inspection(_Found.FILE, is_executable=bool(info.st_mode & stat.S_IXUSR))
    if stat.S_ISDIR(info.st_mode):
        return _Inspection(_Found.DIRECTORY)
    return _Inspection(_Found.OTHER)


def _scan_directory(path: Path) -> _ScannedDirectory:
    scanned = _ScannedDirectory()
    with os.scandir(path) as entries:
        for entry in entries:
            entry_path = Path(entry.path)
            if entry.is_symlink():
                scanned.symlinks.append((entry.name, os.readlink(entry_path)))
            elif entry.is_dir(follow_symlinks=False):
                scanned.directories.append((entry.name, _scan_directory(entry_path)))
            elif entry.is_file(follow_symlinks=False):
                mode = entry.stat(follow_symlinks=False).st_mode
                scanned.files.append((entry.name, entry_path, bool(mode & stat.S_IXUSR)))
            else:
                log.warning(
                    "local_output_skipped", path=entry.path, reason="not a file or directory"
                )
    return scanned
