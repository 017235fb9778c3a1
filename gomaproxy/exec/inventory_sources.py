"""Hashing of the ``source`` files that the entries of an inventory name."""

from __future__ import annotations

import hashlib

from gomaproxy.digest import DigestKey
from gomaproxy.errors import ConfigError
from gomaproxy.exec.inventory_entries import FileEntry, InventoryFile, ToolchainEntry


def resolve_sources(inventory: InventoryFile, origin: str) -> InventoryFile:
    toolchains = {
        selector: _resolve_entry(entry, origin) for selector, entry in inventory.toolchains.items()
    }
    return InventoryFile(toolchains=toolchains, platforms=inventory.platforms)


def _resolve_entry(entry: ToolchainEntry, origin: str) -> ToolchainEntry:
    return ToolchainEntry(
        selector=entry.selector,
        path_style=entry.path_style,
        cmd_file=_resolve_file(entry.cmd_file, origin),
        files=tuple(_resolve_file(file, origin) for file in entry.files),
        properties=entry.properties,
        clang_need_target=entry.clang_need_target,
        allow_chroot=entry.allow_chroot,
    )


def _resolve_file(file: FileEntry, origin: str) -> FileEntry:
    if not file.source_path:
        return file

    try:
        digest = _digest_of_file(file.source_path)
    except OSError as exc:
        raise ConfigError(
            f"inventory file {origin}: cannot read source {file.source_path} of "
            f"{file.path}: {exc.strerror}"
        ) from exc
    if file.digest is not None and file.digest != digest:
        raise ConfigError(
            f"inventory file {origin}: source {file.source_path} of {file.path} has digest "
            f"{digest}, but the entry declares {file.digest}"
        )
    return FileEntry(
        path=file.path,
        digest=digest,
        is_executable=file.is_executable,
        source_path=file.source_path,
    )


def _digest_of_file(path: str) -> DigestKey:
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
            size += len(block)
    return DigestKey(digest.hexdigest(), size)
