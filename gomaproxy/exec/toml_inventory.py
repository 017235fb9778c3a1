"""A toolchain inventory read from a TOML file.

Two kinds of entries decide what runs a goma request.

``[[toolchain]]`` entries serve ordinary requests.  A request matches the entry whose
name, version, target and binary hash equal those of its command spec.  Targets are
compared after ``normalize_target`` on both sides, so ``x86_64-pc-linux-gnu`` in a
request matches ``x86_64-linux-gnu`` in the file.  Each subprogram of the request must
match an entry by its file name and binary hash (an entry without version and target).
The entry gives the platform properties, the command file and more toolchain files.
A command file with an absolute path is installed on the workers at that path.  A
command file with a relative path is relocatable: it goes into the input tree at the
client's ``local_compiler_path``, and each relative file of the entry goes next to it.

``[[platform]]`` entries serve arbitrary-toolchain requests (``toolchain_included``),
which bring their compiler as inputs.  The first entry whose dimensions include every
requested dimension gives the platform properties.

Example::

    [[toolchain]]
    name = "clang"
    version = "14.0.6[Debian clang version 14.0.6]"
    target = "x86_64-pc-linux-gnu"
    binary_hash = "<sha256 hex of the compiler binary>"
    properties = { OSFamily = "Linux", container-image = "docker://clang:14" }
    cmd_file = { path = "/usr/lib/llvm-14/bin/clang" }

    [[toolchain]]
    name = "clang++"
    version = "17[built here]"
    target = "x86_64-linux-gnu"
    binary_hash = "<sha256 hex>"
    cmd_file = { path = "bin/clang++", source = "toolchains/clang17/bin/clang++" }
    files = [
        { path = "../lib/libLLVM.so.17", source = "toolchains/clang17/lib/libLLVM.so.17" },
        { path = "clang", symlink = "clang++" },
    ]

    [[platform]]
    dimensions = ["os:linux"]
    properties = { OSFamily = "Linux" }

A file entry has either a ``symlink`` target or content, named by ``hash`` and ``size``
or read from ``source``, a file on this host (relative to the TOML file).  Content
without a ``source`` must already be in the backend's CAS.

The module is longer than most because the file format and the matching share their
rules: the checks of the parser are what the matching relies on.  It reads top down:
target normalization, the entry types, parsing, matching, the inventory, loading.
"""

from __future__ import annotations

import hashlib
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import structlog

from gomaproxy.digest import DigestKey, is_valid_hash
from gomaproxy.errors import ConfigError
from gomaproxy.exec.clientpath import ClientPathLib, PathStyle, path_lib
from gomaproxy.exec.inventory import CommandFile, Toolchain, bad_request, init_result
from gomaproxy.protos import goma_data_pb2 as goma_pb2

__all__ = [
    "FileEntry",
    "InvalidTarget",
    "InventoryFile",
    "PlatformEntry",
    "Selector",
    "TomlInventory",
    "ToolchainEntry",
    "arbitrary_toolchain",
    "load_toml_inventory",
    "match_platform",
    "normalize_target",
    "parse_inventory",
    "relocate_command",
]

log = structlog.get_logger(__name__)

# Last target tokens that name the environment (ABI) rather than the OS.
TARGET_ENVIRONMENTS = frozenset(
    {"eabi", "gnu", "gnueabi", "gnueabihf", "macho", "android", "androideabi", "uclibc", "msvc"}
)


class InvalidTarget(ValueError):
    """A compiler target that is not ``arch-[vendor-]os[-environment]``."""


def normalize_target(name: str, target: str) -> str:
    """Return the canonical form of a compiler target, the way goma servers compare them.

    The target splits at ``-`` into 2 to 4 tokens: the architecture, then the vendor
    and OS (or only the OS), then an environment if the last token is one.  The result
    keeps the architecture (``iN86`` becomes ``i686`` and ``amd64`` becomes
    ``x86_64``), the vendor only if it is ``cros``, the OS (``darwin`` for any Apple
    ``darwin*``), and the environment unless it is ``gnu``.  Empty and ``java``
    targets, and every target of ``cl.exe``, are returned unchanged.

    Raises:
        InvalidTarget: the target has too few or too many tokens.
    """
    if target in ("", "java") or name == "cl.exe":
        return target

    tokens = target.split("-")
    if not 2 <= len(tokens) <= 4:
        raise InvalidTarget(f"target {target!r} does not have 2 to 4 '-'-separated parts")

    arch, rest = _arch_type(tokens[0]), tokens[1:]
    environment = ""
    if rest[-1] in TARGET_ENVIRONMENTS:
        environment = rest.pop()
    if len(rest) > 2:
        raise InvalidTarget(f"target {target!r} has more than vendor and OS after {tokens[0]!r}")

    vendor, os_name = "", ""
    if len(rest) == 2:
        vendor, os_name = rest
    elif len(rest) == 1:
        os_name = rest[0]

    parts = [arch]
    if vendor == "cros":
        parts.append(vendor)
    if vendor == "apple" and os_name.startswith("darwin"):
        parts.append("darwin")
    elif os_name:
        parts.append(os_name)
    if environment and environment != "gnu":
        parts.append(environment)
    return "-".join(parts)


def _arch_type(arch: str) -> str:
    if len(arch) == 4 and arch[0] == "i" and arch[1].isdigit() and arch[2:] == "86":
        return "i686"
    if arch == "amd64":
        return "x86_64"
    return arch


@dataclass(frozen=True)
class Selector:
    """The identity of a compiler, as a request names it and an entry provides it."""

    name: str
    version: str
    target: str
    binary_hash: str

    @classmethod
    def normalized(cls, name: str, version: str, target: str, binary_hash: str) -> Selector:
        """Build a selector with its target normalized.

        Raises:
            InvalidTarget: the target cannot be normalized.
        """
        return cls(name, version, normalize_target(name, target), binary_hash)

    @classmethod
    def of_request(cls, spec: goma_pb2.CommandSpec) -> Selector:
        """Build the normalized selector of a request's command spec.

        Raises:
            InvalidTarget: the target cannot be normalized.
        """
        binary_hash = spec.binary_hash.decode("ascii", errors="replace")
        return cls.normalized(spec.name, spec.version, spec.target, binary_hash)

    def describe(self) -> str:
        return (
            f"name={self.name!r} version={self.version!r} target={self.target!r} "
            f"binary_hash={self.binary_hash!r}"
        )


@dataclass(frozen=True)
class FileEntry:
    """A file of a toolchain entry, with a path in the entry's path style."""

    path: str
    digest: DigestKey | None = None
    is_executable: bool = False
    symlink: str = ""
    source_path: str = ""

    def placed_at(self, path: str) -> CommandFile:
        return CommandFile(
            path=path,
            digest=self.digest,
            is_executable=self.is_executable,
            symlink=self.symlink,
            source_path=self.source_path,
        )


@dataclass(frozen=True)
class ToolchainEntry:
    """A ``[[toolchain]]`` entry: a compiler or subprogram and how to run it."""

    selector: Selector
    path_style: PathStyle
    cmd_file: FileEntry
    files: tuple[FileEntry, ...] = ()
    properties: Mapping[str, str] = field(default_factory=dict)
    clang_need_target: bool = False
    # None follows the backend, which may or may not run actions at the root ``/``.
    allow_chroot: bool | None = None

    @property
    def relocatable(self) -> bool:
        return not path_lib(self.path_style).is_abs(self.cmd_file.path)


@dataclass(frozen=True)
class PlatformEntry:
    """A ``[[platform]]`` entry for arbitrary-toolchain requests."""

    dimensions: frozenset[str]
    properties: Mapping[str, str] = field(default_factory=dict)
    allow_chroot: bool | None = None


@dataclass(frozen=True)
class InventoryFile:
    """The parsed content of an inventory file."""

    toolchains: Mapping[Selector, ToolchainEntry]
    platforms: tuple[PlatformEntry, ...]


# Parsing.  Pure: the content of ``source`` files is hashed later by the loader.

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


# Matching and relocation (pure).


def match_platform(
    platforms: Sequence[PlatformEntry], dimensions: Iterable[str]
) -> PlatformEntry | None:
    """Return the first platform whose dimensions include every requested one."""
    requested = set(dimensions)
    for platform in platforms:
        if requested <= platform.dimensions:
            return platform
    return None


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


def _unique_paths(files: Iterable[CommandFile]) -> tuple[CommandFile, ...]:
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


# The inventory.


class TomlInventory:
    """Picks toolchains from the entries of an inventory file."""

    def __init__(self, inventory: InventoryFile, *, absolute_roots: bool) -> None:
        """Args:
        inventory: the parsed file.
        absolute_roots: the backend can run actions at an absolute input root, which
            also allows the chroot root ``/`` unless an entry disables it.
        """
        self._inventory = inventory
        self._absolute_roots = absolute_roots

    @property
    def entries(self) -> InventoryFile:
        return self._inventory

    async def pick(
        self, request: goma_pb2.ExecReq, response: goma_pb2.ExecResp
    ) -> Toolchain | None:
        """Return the toolchain for ``request``, or fill ``response`` with BAD_REQUEST."""
        if request.toolchain_included:
            return self._pick_arbitrary(request, response)
        return self._pick_selected(request, response)

    def _pick_selected(
        self, request: goma_pb2.ExecReq, response: goma_pb2.ExecResp
    ) -> Toolchain | None:
        try:
            selector = Selector.of_request(request.command_spec)
        except InvalidTarget as exc:
            response.result.exit_status = -1
            bad_request(response, f"invalid command_spec target: {exc}")
            return None

        response.result.CopyFrom(init_result(request))
        entry = self._inventory.toolchains.get(selector)
        if entry is None:
            log.info("inventory_no_match", selector=selector.describe())
            bad_request(response, f"no compiler in the inventory matches {selector.describe()}")
            return None

        subprograms = self._match_subprograms(request, response)
        if subprograms is None:
            return None

        response.result.command_spec.binary_hash = entry.selector.binary_hash.encode()
        client_path = request.command_spec.local_compiler_path
        argv0, files = relocate_command(entry, client_path, path_lib(entry.path_style))
        for path, sub_entry in subprograms.items():
            files += _subprogram_files(sub_entry, path)

        if not argv0:
            bad_request(response, "command_spec.local_compiler_path is empty")
            return None
        return Toolchain(
            argv0=argv0,
            path_style=entry.path_style,
            platform=dict(entry.properties),
            allow_chroot=self._allow_chroot(entry.allow_chroot),
            absolute_root_supported=self._absolute_roots,
            command_files=_unique_paths(files),
            clang_need_target=entry.clang_need_target,
            argv0_on_workers=not entry.relocatable,
        )

    def _match_subprograms(
        self, request: goma_pb2.ExecReq, response: goma_pb2.ExecResp
    ) -> dict[str, ToolchainEntry] | None:
        matched: dict[str, ToolchainEntry] = {}
        for index, subprogram in enumerate(request.subprogram):
            entry = matched.get(subprogram.path)
            if entry is None:
                name = path_lib(PathStyle.POSIX).base(subprogram.path)
                entry = self._inventory.toolchains.get(
                    Selector(name, "", "", subprogram.binary_hash)
                )
            if entry is None:
                log.info(
                    "inventory_no_subprogram", path=subprogram.path, hash=subprogram.binary_hash
                )
                bad_request(
                    response,
                    f"no subprogram in the inventory matches {subprogram.path} with binary "
                    f"hash {subprogram.binary_hash!r}",
                )
                return None
            matched[subprogram.path] = entry
            response.result.subprogram[index].binary_hash = entry.selector.binary_hash
        return matched

    def _pick_arbitrary(
        self, request: goma_pb2.ExecReq, response: goma_pb2.ExecResp
    ) -> Toolchain | None:
        response.result.exit_status = -1
        dimensions = list(request.requester_info.dimensions)
        if not dimensions:
            bad_request(response, "No dimensions are specified")
            return None

        platform = match_platform(self._inventory.platforms, dimensions)
        if platform is None:
            log.info("inventory_no_platform", dimensions=dimensions)
            bad_request(
                response,
                f"no platform in the inventory has all the requested dimensions {dimensions}",
            )
            return None

        try:
            normalize_target(request.command_spec.name, request.command_spec.target)
        except InvalidTarget as exc:
            bad_request(response, f"unexpected CommandSpec: {exc}")
            return None

        style = _request_path_style(request)
        if style is None:
            name = goma_pb2.RequesterInfo.PathStyle.Name(request.requester_info.path_style)
            bad_request(response, f"bad compiler config: bad path type: {name}")
            return None

        argv0, files, executables = arbitrary_toolchain(request)
        if not argv0:
            bad_request(
                response,
                "unexpected CommandSpec: no toolchain_specs and no local_compiler_path",
            )
            return None
        return Toolchain(
            argv0=argv0,
            path_style=style,
            platform=dict(platform.properties),
            allow_chroot=self._allow_chroot(platform.allow_chroot),
            absolute_root_supported=self._absolute_roots,
            command_files=files,
            executable_inputs=executables,
        )

    def _allow_chroot(self, configured: bool | None) -> bool:
        if configured is None:
            return self._absolute_roots
        return configured and self._absolute_roots


def _subprogram_files(entry: ToolchainEntry, client_path: str) -> list[CommandFile]:
    """List the files of a subprogram entry; an installed one contributes only its files."""
    if entry.relocatable:
        return relocate_command(entry, client_path, path_lib(entry.path_style))[1]
    return [file.placed_at(file.path) for file in entry.files]


def _request_path_style(request: goma_pb2.ExecReq) -> PathStyle | None:
    style = request.requester_info.path_style
    if style == goma_pb2.RequesterInfo.POSIX_STYLE:
        return PathStyle.POSIX
    if style == goma_pb2.RequesterInfo.WINDOWS_STYLE:
        return PathStyle.WINDOWS
    return None


# Loading.


async def load_toml_inventory(path: Path, *, absolute_roots: bool) -> TomlInventory:
    """Read an inventory file and hash the ``source`` files it names.

    Raises:
        ConfigError: the file cannot be read or parsed, an entry is invalid, or a
            source file is missing or differs from its declared hash and size.
    """
    data = await anyio.to_thread.run_sync(_read_toml, path)
    parsed = parse_inventory(data, origin=str(path), base_dir=path.parent)
    resolved = await anyio.to_thread.run_sync(_resolve_sources, parsed, str(path))
    log.info(
        "inventory_loaded",
        path=str(path),
        toolchains=len(resolved.toolchains),
        platforms=len(resolved.platforms),
    )
    return TomlInventory(resolved, absolute_roots=absolute_roots)


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as handle:
            return tomllib.load(handle)
    except OSError as exc:
        raise ConfigError(f"cannot read inventory file {path}: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"inventory file {path} is not valid TOML: {exc}") from exc


def _resolve_sources(inventory: InventoryFile, origin: str) -> InventoryFile:
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
