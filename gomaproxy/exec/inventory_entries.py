"""The entry types of a TOML toolchain inventory, as the parser returns them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from gomaproxy.digest import DigestKey
from gomaproxy.exec.clientpath import PathStyle, path_lib
from gomaproxy.exec.compiler_target import normalize_target
from gomaproxy.exec.inventory import CommandFile
from gomaproxy.protos import goma_data_pb2 as goma_pb2


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
