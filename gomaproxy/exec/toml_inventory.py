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

This module matches requests to entries and loads the file.  The matching relies on the
checks of the parser, which lives in ``inventory_parser`` with the entry types in
``inventory_entries``.  Target normalization is in ``compiler_target``, the command files
of a matched entry come from ``toolchain_files``, and ``inventory_sources`` hashes the
``source`` files.  The public names of those modules are re-exported here.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import anyio
import structlog

from gomaproxy.errors import ConfigError
from gomaproxy.exec.clientpath import PathStyle, path_lib
from gomaproxy.exec.compiler_target import InvalidTarget, normalize_target
from gomaproxy.exec.inventory import Toolchain, bad_request, init_result
from gomaproxy.exec.inventory_entries import (
    FileEntry,
    InventoryFile,
    PlatformEntry,
    Selector,
    ToolchainEntry,
)
from gomaproxy.exec.inventory_parser import parse_inventory
from gomaproxy.exec.inventory_sources import resolve_sources
from gomaproxy.exec.toolchain_files import (
    arbitrary_toolchain,
    relocate_command,
    subprogram_files,
    unique_paths,
)
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


def match_platform(
    platforms: Sequence[PlatformEntry], dimensions: Iterable[str]
) -> PlatformEntry | None:
    """Return the first platform whose dimensions include every requested one."""
    requested = set(dimensions)
    for platform in platforms:
        if requested <= platform.dimensions:
            return platform
    return None


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
            files += subprogram_files(sub_entry, path)

        if not argv0:
            bad_request(response, "command_spec.local_compiler_path is empty")
            return None
        return Toolchain(
            argv0=argv0,
            path_style=entry.path_style,
            platform=dict(entry.properties),
            allow_chroot=self._allow_chroot(entry.allow_chroot),
            absolute_root_supported=self._absolute_roots,
            command_files=unique_paths(files),
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
    resolved = await anyio.to_thread.run_sync(resolve_sources, parsed, str(path))
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
