"""Checking of a TOML inventory document and its conversion into entries.

Parsing does no I/O, because the loader hashes the content of ``source`` files later.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from gomaproxy.digest import DigestKey, is_valid_hash
from gomaproxy.errors import ConfigError
from gomaproxy.exec.clientpath import PathStyle, path_lib
from gomaproxy.exec.compiler_target import InvalidTarget
from gomaproxy.exec.inventory_entries import (
    FileEntry,
    InventoryFile,
    PlatformEntry,
    Selector,
    ToolchainEntry,
)

_TOOLCHAIN_KEYS = frozenset(
    {
        "name",
        "version",
        "target",
        "binary_hash",
        "path_type",
        "properties",
        "cmd_file",
        "files",
        "clang_need_target",
        "allow_chroot",
    }
)
_PLATFORM_KEYS = frozenset({"dimensions", "properties", "allow_chroot"})
_FILE_KEYS = frozenset({"path", "hash", "size", "source", "is_executable", "symlink"})
_PATH_TYPES = {"posix": PathStyle.POSIX, "windows": PathStyle.WINDOWS}


def parse_inventory(data: Mapping[str, Any], *, origin: str, base_dir: Path) -> InventoryFile:
    """Check and convert the content of an inventory file.

    Args:
        data: the parsed TOML document.
        origin: the file name, for error messages.
        base_dir: the directory that relative ``source`` paths are relative to.

    Raises:
        ConfigError: a key is unknown, a value has the wrong type, a target cannot be
            normalized, two toolchains have one selector, or a file entry is incomplete.
    """
    unknown = set(data) - {"toolchain", "platform"}
    if unknown:
        raise ConfigError(
            f"inventory file {origin}: unknown top-level keys {sorted(unknown)}; "
            "use [[toolchain]] and [[platform]] tables"
        )

    toolchains: dict[Selector, ToolchainEntry] = {}
    for index, raw in enumerate(_table_list(data, "toolchain", origin)):
        where = f"inventory file {origin}: [[toolchain]] #{index + 1}"
        entry = _parse_toolchain(raw, where, base_dir)
        if entry.selector in toolchains:
            raise ConfigError(
                f"{where}: another toolchain has the same selector {entry.selector.describe()}"
            )
        toolchains[entry.selector] = entry

    platforms = tuple(
        _parse_platform(raw, f"inventory file {origin}: [[platform]] #{index + 1}")
        for index, raw in enumerate(_table_list(data, "platform", origin))
    )
    return InventoryFile(toolchains=toolchains, platforms=platforms)


def _table_list(data: Mapping[str, Any], key: str, origin: str) -> list[Mapping[str, Any]]:
    value = data.get(key, [])
    if not isinstance(value, list) or not all(isinstance(item, Mapping) for item in value):
        raise ConfigError(f"inventory file {origin}: {key} must be an array of tables [[{key}]]")
    return value


def _parse_toolchain(raw: Mapping[str, Any], where: str, base_dir: Path) -> ToolchainEntry:
    if "windows_cross" in raw:
        raise ConfigError(
            f"{where}: windows_cross is not supported; Windows clients need a toolchain "
            'with path_type = "windows" that runs on Windows workers'
        )
    _check_keys(raw, _TOOLCHAIN_KEYS, where)

    name = _string(raw, "name", where, required=True)
    where = f"{where} ({name})"
    binary_hash = _string(raw, "binary_hash", where, required=True)
    if not is_valid_hash(binary_hash):
        raise ConfigError(f"{where}: binary_hash must be 64 lowercase hex digits")
    try:
        selector = Selector.normalized(
            name, _string(raw, "version", where), _string(raw, "target", where), binary_hash
        )
    except InvalidTarget as exc:
        raise ConfigError(f"{where}: {exc}") from None

    path_type = _string(raw, "path_type", where) or "posix"
    if path_type not in _PATH_TYPES:
        raise ConfigError(f"{where}: path_type must be posix or windows, not {path_type!r}")
    style = _PATH_TYPES[path_type]

    cmd_file = _parse_cmd_file(raw.get("cmd_file"), style, where, base_dir)
    files_raw = raw.get("files", [])
    if not isinstance(files_raw, list):
        raise ConfigError(f"{where}: files must be an array of tables")
    files = tuple(
        _parse_file(item, f"{where} files #{i + 1}", base_dir) for i, item in enumerate(files_raw)
    )
    return ToolchainEntry(
        selector=selector,
        path_style=style,
        cmd_file=cmd_file,
        files=files,
        properties=_properties(raw, where),
        clang_need_target=_bool(raw, "clang_need_target", where) or False,
        allow_chroot=_bool(raw, "allow_chroot", where),
    )


def _parse_cmd_file(raw: Any, style: PathStyle, where: str, base_dir: Path) -> FileEntry:
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: cmd_file must be a table with at least a path")
    entry = _parse_file(
        raw, f"{where} cmd_file", base_dir, executable_default=True, content_required=False
    )

    if entry.symlink:
        raise ConfigError(f"{where}: cmd_file must be a file, not a symlink")
    relocatable = not path_lib(style).is_abs(entry.path)
    has_content = entry.digest is not None or bool(entry.source_path)
    if relocatable and not has_content:
        raise ConfigError(
            f"{where}: the relative cmd_file {entry.path} is sent with each request, so it "
            "needs hash and size, or a source file"
        )
    if not relocatable and has_content:
        raise ConfigError(
            f"{where}: the absolute cmd_file {entry.path} is taken to be installed on the "
            "workers; remove its hash, size and source, or make its path relative"
        )
    return entry


def _parse_file(
    raw: Any,
    where: str,
    base_dir: Path,
    *,
    executable_default: bool = False,
    content_required: bool = True,
) -> FileEntry:
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: must be a table")
    _check_keys(raw, _FILE_KEYS, where)

    path = _string(raw, "path", where, required=True)
    symlink = _string(raw, "symlink", where)
    content_keys = {"hash", "size", "source", "is_executable"} & set(raw)
    if symlink:
        if content_keys:
            raise ConfigError(f"{where}: a symlink takes no {', '.join(sorted(content_keys))}")
        return FileEntry(path=path, symlink=symlink)

    source = _string(raw, "source", where)
    digest = _declared_digest(raw, where)
    if content_required and digest is None and not source:
        raise ConfigError(f"{where}: set symlink, hash and size, or source")

    executable = _bool(raw, "is_executable", where)
    return FileEntry(
        path=path,
        digest=digest,
        is_executable=executable_default if executable is None else executable,
        source_path=str(base_dir / source) if source else "",
    )


def _declared_digest(raw: Mapping[str, Any], where: str) -> DigestKey | None:
    if "hash" not in raw and "size" not in raw:
        return None
    content_hash = _string(raw, "hash", where)
    size = raw.get("size")
    if not is_valid_hash(content_hash):
        raise ConfigError(f"{where}: hash must be 64 lowercase hex digits")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise ConfigError(f"{where}: size must be a non-negative integer next to hash")
    return DigestKey(content_hash, size)


def _parse_platform(raw: Mapping[str, Any], where: str) -> PlatformEntry:
    _check_keys(raw, _PLATFORM_KEYS, where)
    dimensions = raw.get("dimensions")
    if (
        not isinstance(dimensions, list)
        or not dimensions
        or not all(isinstance(item, str) and item for item in dimensions)
    ):
        raise ConfigError(f"{where}: dimensions must be a non-empty array of strings")
    return PlatformEntry(
        dimensions=frozenset(dimensions),
        properties=_properties(raw, where),
        allow_chroot=_bool(raw, "allow_chroot", where),
    )


def _check_keys(raw: Mapping[str, Any], known: frozenset[str], where: str) -> None:
    unknown = set(raw) - known
    if unknown:
        raise ConfigError(
            f"{where}: unknown keys {sorted(unknown)}; known keys: {', '.join(sorted(known))}"
        )


def _string(raw: Mapping[str, Any], key: str, where: str, *, required: bool = False) -> str:
    value = raw.get(key, "")
    if not isinstance(value, str):
        raise ConfigError(f"{where}: {key} must be a string")
    if required and not value:
        raise ConfigError(f"{where}: {key} is missing")
    return value


def _bool(raw: Mapping[str, Any], key: str, where: str) -> bool | None:
    value = raw.get(key)
    if value is not None and not isinstance(value, bool):
        raise ConfigError(f"{where}: {key} must be true or false")
    return value


def _properties(raw: Mapping[str, Any], where: str) -> dict[str, str]:
    value = raw.get("properties", {})
    if not isinstance(value, Mapping) or not all(isinstance(v, str) for v in value.values()):
        raise ConfigError(f"{where}: properties must be a table of strings")
    return dict(value)
