"""Toolchain selection: which compiler and platform run a goma request.

The default inventory trusts nothing but the compiler binary itself: a request is accepted
only when the file at ``command_spec.local_compiler_path`` on this host has exactly the
requested ``binary_hash``.  That is the right rule for the embedded backend, which runs
actions with this host's toolchain directories.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from typing import Protocol

import anyio
import structlog

from gomaproxy.digest import DigestKey
from gomaproxy.exec.clientpath import PathStyle
from gomaproxy.protos import goma_data_pb2 as goma_pb2

log = structlog.get_logger(__name__)

# Client platform properties that may override the inventory's; every other name is
# rejected, because platform properties select worker images and sandboxes.
SAFE_PLATFORM_PROPERTIES = frozenset({"container-image", "InputRootAbsolutePath", "cache-silo"})


@dataclass(frozen=True)
class Toolchain:
    """The toolchain and platform picked for one request."""

    # Path of the compiler as argv[0] of the remote command.
    argv0: str
    path_style: PathStyle
    # Sorted later; a name given twice keeps the last value.
    platform: dict[str, str] = field(default_factory=dict)
    # The backend can run an action whose input root is the filesystem root.
    allow_chroot: bool = False
    # The backend honours the InputRootAbsolutePath platform property.
    absolute_root_supported: bool = True
    # Toolchain files that the input tree must contain besides the goma inputs.
    command_files: tuple[CommandFile, ...] = ()
    # Input filenames whose FileNode gets the executable bit.  They come from the
    # toolchain specs of the request, never from a stat on this host, so two requests
    # for the same files give the same input root.
    executable_inputs: frozenset[str] = frozenset()
    # Insert --target=<command_spec.target> after argv[0] unless the arguments already
    # name a target (the toolchain's clang needs it to pick its target).
    clang_need_target: bool = False
    # argv[0] is installed on the workers, so it is not an input and does not widen the
    # exec root, like commands under /usr/bin.
    argv0_on_workers: bool = False


@dataclass(frozen=True)
class CommandFile:
    """A toolchain file placed in the input tree at a client path.

    A file has a ``digest``; its bytes come from ``source_path`` on this host when set,
    else the CAS must already hold them.  A symlink has a ``symlink`` target and no
    digest.
    """

    path: str
    digest: DigestKey | None = None
    is_executable: bool = False
    symlink: str = ""
    source_path: str = ""


@dataclass(frozen=True)
class ServerFileSource:
    """A blob read from a file on this host, such as a toolchain file of the inventory."""

    path: str
    filename: str | None = None

    async def read(self) -> bytes:
        return await anyio.to_thread.run_sync(_read_file, self.path)


class Inventory(Protocol):
    async def pick(
        self, request: goma_pb2.ExecReq, response: goma_pb2.ExecResp
    ) -> Toolchain | None:
        """Return the toolchain for ``request``, or fill ``response`` with BAD_REQUEST and
        return None."""
        ...


def init_result(request: goma_pb2.ExecReq) -> goma_pb2.ExecResult:
    """Return the ExecResult echo a goma client expects before a toolchain is picked:
    exit status -1, name/version/target of the request, subprogram paths."""
    spec = request.command_spec
    result = goma_pb2.ExecResult(exit_status=-1)
    result.command_spec.name = spec.name
    result.command_spec.version = spec.version
    result.command_spec.target = spec.target
    for subprogram in request.subprogram:
        result.subprogram.add(path=subprogram.path)
    return result


def bad_request(response: goma_pb2.ExecResp, message: str) -> None:
    """Mark ``response`` as a permanent failure with ``message`` for the client's log."""
    response.error = goma_pb2.ExecResp.BAD_REQUEST
    response.error_message.append(message)


def path_style_of(request: goma_pb2.ExecReq) -> PathStyle | None:
    style = request.requester_info.path_style
    if style == goma_pb2.RequesterInfo.WINDOWS_STYLE:
        return PathStyle.WINDOWS
    if style in (goma_pb2.RequesterInfo.POSIX_STYLE, goma_pb2.RequesterInfo.UNKNOWN_STYLE):
        return PathStyle.POSIX
    return None


def apply_client_platform(
    request: goma_pb2.ExecReq, response: goma_pb2.ExecResp, platform: dict[str, str]
) -> bool:
    """Merge the client's platform properties into ``platform``.

    Returns False after marking ``response`` BAD_REQUEST when a property is not one a
    client may set.  Every property is checked, so the client gets all offenders at once.
    """
    ok = True
    for prop in request.requester_info.platform_properties:
        safe = prop.name in SAFE_PLATFORM_PROPERTIES or (
            prop.name == "dockerRuntime" and prop.value == "runsc"
        )
        if not safe:
            bad_request(
                response,
                f"unsafe platform property: {prop.name}={prop.value}; clients may set only "
                f"{', '.join(sorted(SAFE_PLATFORM_PROPERTIES))} and dockerRuntime=runsc",
            )
            ok = False
            continue
        platform[prop.name] = prop.value
    return ok


class LocalCompilerInventory:
    """Accept a request when this host's compiler at the requested path has its hash."""

    def __init__(self, *, allow_chroot: bool, platform: dict[str, str] | None = None) -> None:
        self._allow_chroot = allow_chroot
        self._platform = dict(platform or {})
        # (real path, mtime_ns, size) -> sha256 hex; a changed file gets a new entry.
        self._hashes: dict[tuple[str, int, int], str] = {}

    async def pick(
        self, request: goma_pb2.ExecReq, response: goma_pb2.ExecResp
    ) -> Toolchain | None:
        response.result.CopyFrom(init_result(request))
        spec = request.command_spec

        style = path_style_of(request)
        if style is not PathStyle.POSIX:
            bad_request(
                response,
                "this server runs POSIX compilers only; Windows clients need a "
                "windows-cross toolchain entry in the inventory",
            )
            return None

        path = spec.local_compiler_path
        if not path or not path.startswith("/"):
            bad_request(
                response,
                f"command_spec.local_compiler_path {path!r} is not an absolute "
                "path; the client must send the compiler's absolute path",
            )
            return None

        wanted = spec.binary_hash.decode("ascii", errors="replace")
        found = await self._binary_hash(path)
        if found != wanted:
            log.info("inventory_no_match", compiler=path, requested_hash=wanted, local_hash=found)
            reason = "does not exist" if found is None else f"has binary hash {found}"
            bad_request(
                response,
                f"no matching compiler: {path} on this server {reason}, the "
                f"request asks for {wanted}; install the same compiler build on the server",
            )
            return None

        if not await self._subprograms_match(request, response):
            return None

        response.result.command_spec.binary_hash = spec.binary_hash
        return Toolchain(
            argv0=path,
            path_style=style,
            platform=dict(self._platform),
            allow_chroot=self._allow_chroot,
            absolute_root_supported=self._allow_chroot,
        )

    async def _subprograms_match(
        self, request: goma_pb2.ExecReq, response: goma_pb2.ExecResp
    ) -> bool:
        for index, subprogram in enumerate(request.subprogram):
            found = await self._binary_hash(subprogram.path)
            if found != subprogram.binary_hash:
                bad_request(
                    response,
                    f"no matching subprogram: {subprogram.path} on this server "
                    f"has hash {found}, the request asks for {subprogram.binary_hash}",
                )
                return False
            response.result.subprogram[index].binary_hash = subprogram.binary_hash
        return True

    async def _binary_hash(self, path: str) -> str | None:
        try:
            real, stat = await anyio.to_thread.run_sync(_resolve_and_stat, path)
        except OSError:
            return None

        key = (real, stat.st_mtime_ns, stat.st_size)
        cached = self._hashes.get(key)
        if cached is None:
            cached = await anyio.to_thread.run_sync(_sha256_file, real)
            self._hashes[key] = cached
        return cached


def _resolve_and_stat(path: str) -> tuple[str, os.stat_result]:
    real = os.path.realpath(path)
    return real, os.stat(real)


def _read_file(path: str) -> bytes:
    with open(path, "rb") as handle:
        return handle.read()


def _sha256_file(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
