"""The command files that a toolchain puts into the input tree of an action."""

from __future__ import annotations

from collections.abc import Iterable

from gomaproxy.digest import DigestKey, is_valid_hash
from gomaproxy.exec.clientpath import ClientPathLib, path_lib
from gomaproxy.exec.inventory import CommandFile
from gomaproxy.exec.inventory_entries import ToolchainEntry
from gomaproxy.protos import goma_data_pb2 as goma_pb2


def relocate_command(
    entry: ToolchainEntry, client_path: str, lib: ClientPathLib
) -> tuple[str, list[CommandFile]]:
    """Return argv[0] and the command files of ``entry`` for a compiler at ``client_path``.

    A relocatable entry puts its command file at ``client_path`` and each relative file
    in the directory of ``client_path``.  Otherwise the command file is already on the
    workers, so argv[0] is its configured path and only the other files are listed.
    """
    if not entry.relocatable:
        return entry.cmd_file.path, [file.placed_at(file.path) for file in entry.files]

    base = lib.dir(client_path)
    files = [entry.cmd_file.placed_at(client_path)]
    for file in entry.files:
        path = file.path if lib.is_abs(file.path) else lib.join(base, file.path)
        files.append(file.placed_at(path))
    return client_path, files


def unique_paths(files: Iterable[CommandFile]) -> tuple[CommandFile, ...]:
    """Keep the first command file of each path."""
    seen: dict[str, CommandFile] = {}
    for file in files:
        seen.setdefault(file.path, file)
    return tuple(seen.values())


def arbitrary_toolchain(
    request: goma_pb2.ExecReq,
) -> tuple[str, tuple[CommandFile, ...], frozenset[str]]:
    """Return argv[0], the command files and the executable inputs of an arbitrary-toolchain
    request.

    The compiler is the first toolchain spec.  Specs that are symlinks become symlink
    command files; the others are inputs of the request, marked executable when their
    spec says so.  A request without toolchain specs names only its compiler, through
    ``local_compiler_path`` and the binary hash and size of its command spec.
    """
    specs = request.toolchain_specs
    if not specs:
        spec = request.command_spec
        path = spec.local_compiler_path
        binary_hash = spec.binary_hash.decode("ascii", errors="replace")
        digest = DigestKey(binary_hash, spec.size) if is_valid_hash(binary_hash) else None
        return path, (CommandFile(path, digest, is_executable=True),), frozenset({path})

    symlinks = tuple(
        CommandFile(item.path, symlink=item.symlink_path) for item in specs if item.symlink_path
    )
    executables = frozenset(
        item.path for item in specs if not item.symlink_path and item.is_executable
    )
    return specs[0].path, symlinks, executables


def subprogram_files(entry: ToolchainEntry, client_path: str) -> list[CommandFile]:
    """List the files of a subprogram entry; an installed one contributes only its files."""
    if entry.relocatable:
        return relocate_command(entry, client_path, path_lib(entry.path_style))[1]
    return [file.placed_at(file.path) for file in entry.files]
