"""The REAPI input tree: root-relative file, symlink and directory entries to Directory messages.

Entries are added with root-relative names that may be unclean.  Walking a name, each
``.`` is skipped and each ``..`` returns to the parent directory, and every directory
that the walk enters is created, even when a later ``..`` leaves it.  So
``base/test/../macros.h`` adds ``base/macros.h`` and also an empty ``base/test``.

Adding never checks for duplicates, because goma clients often send one file under two
spellings.  ``build`` drops a duplicate that is identical to the first entry of its
name and raises when two entries of one name differ.  Every Directory message,
including empty ones and the root, is serialized deterministically with its children
sorted by name, as REAPI requires.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple, final

from gomaproxy.digest import DigestKey, digest_of_message
from gomaproxy.errors import GomaProxyError
from gomaproxy.exec.clientpath import ClientPathLib, PathStyle, path_lib
from gomaproxy.protos import remote_execution_pb2 as re_pb2

__all__ = [
    "AbsolutePathError",
    "BadPathError",
    "BuiltTree",
    "DuplicateEntryError",
    "MerkleTree",
    "MerkleTreeError",
]


class MerkleTreeError(GomaProxyError):
    """An input tree entry or a tree that cannot become REAPI Directory messages."""


class AbsolutePathError(MerkleTreeError):
    """An entry name that is absolute where a root-relative name is required."""


class BadPathError(MerkleTreeError):
    """An entry name that climbs above the root, or a file name that is empty, ``.`` or ``..``."""


class DuplicateEntryError(MerkleTreeError):
    """Two different entries with the same name in one directory."""


@dataclass(frozen=True)
class BuiltTree:
    """The digest of the root Directory and every serialized Directory of the tree.

    ``directories`` maps each digest to its serialized Directory, so identical
    subdirectories share one item.  It contains the root and every empty directory.
    """

    root_digest: re_pb2.Digest
    directories: dict[DigestKey, bytes]


class _Node(NamedTuple):
    """The identity of a node, which build() compares to tell a repeat from a conflict."""

    kind: str  # "file", "symlink" or "directory"
    detail: str  # the digest for files and directories, the target for symlinks
    is_executable: bool = False

    def describe(self) -> str:
        executable = " (executable)" if self.is_executable else ""
        if self.kind == "symlink":
            return f"symlink to {self.detail}"
        return f"{self.kind} {self.detail}{executable}"


@final
class _DirectoryEntry:
    """One directory of the tree while entries are added.

    ``files`` and ``symlinks`` keep every addition in order, duplicates included.
    ``children`` has one item per subdirectory name.
    """

    __slots__ = ("children", "digest", "files", "key", "symlinks")

    def __init__(self, key: str) -> None:
        self.key = key
        self.files: list[tuple[str, DigestKey, bool]] = []
        self.symlinks: list[tuple[str, str]] = []
        self.children: dict[str, _DirectoryEntry] = {}
        self.digest: re_pb2.Digest | None = None


def _child_key(parent_key: str, name: str) -> str:
    """Key a directory by its ``/``-joined path from the root, whatever the client style."""
    if parent_key == ".":
        return name
    return parent_key + "/" + name


@final
class MerkleTree:
    """A builder of the REAPI input root from root-relative entries in one client style."""

    def __init__(self, style: PathStyle) -> None:
        self._lib: ClientPathLib = path_lib(style)
        self._root = _DirectoryEntry(".")
        # Every directory below the root by its _child_key, so that a repeated
        # add_directory costs one lookup.
        self._directories: dict[str, _DirectoryEntry] = {}

    def add_file(self, name: str, digest: re_pb2.Digest, *, is_executable: bool = False) -> None:
        """Add a file with content ``digest``, creating the directories on its way.

        Raises:
            AbsolutePathError: ``name`` is absolute.
            BadPathError: ``name`` is empty, ends in ``.`` or ``..``, or climbs above
                the root.
        """
        elems = self._split_relative(name)
        if not elems:
            raise BadPathError(f"add file {name!r} to input tree: the name is empty")

        directory, _depth = self._walk(name, elems[:-1])
        leaf = elems[-1]
        if leaf in (".", ".."):
            raise BadPathError(f"add file {name} to input tree: the name ends in {leaf}")
        directory.files.append((leaf, DigestKey.of(digest), is_executable))

    def add_symlink(self, name: str, target: str) -> None:
        """Add a symlink to ``target``, creating the directories on its way.

        As with directories, a name that ends in ``.`` or ``..`` adds only the
        directories that its walk enters.  An empty target is rejected because
        goma-server would take such an entry for a directory.

        Raises:
            AbsolutePathError: ``name`` is absolute.
            BadPathError: ``name`` is empty or climbs above the root, or ``target`` is
                empty.
        """
        elems = self._split_relative(name)
        if not elems:
            raise BadPathError(f"add symlink {name!r} to input tree: the name is empty")
        if not target:
            raise BadPathError(f"add symlink {name} to input tree: the target is empty")

        directory, depth = self._walk(name, elems[:-1])
        leaf = elems[-1]
        if not _is_walk_end(name, leaf, depth):
            directory.symlinks.append((leaf, target))

    def add_directory(self, name: str) -> None:
        """Add a directory and the directories on its way.  ``""`` and ``.`` add nothing.

        Raises:
            AbsolutePathError: ``name`` is absolute.
            BadPathError: ``name`` climbs above the root.
        """
        if self._lib.is_abs(name):
            raise AbsolutePathError(f"add directory {name} to input tree: the name is absolute")
        if name in self._directories:
            return

        elems = self._lib.split_elem(name)
        if not elems:
            return

        directory, depth = self._walk(name, elems[:-1])
        leaf = elems[-1]
        if not _is_walk_end(name, leaf, depth):
            self._child(directory, leaf)

    def build(self) -> BuiltTree:
        """Serialize every directory bottom-up and return the root digest with all of them.

        Raises:
            DuplicateEntryError: one directory has two entries of one name that differ:
                two files with other digests or executable bits, two symlinks with
                other targets, or a directory and a file or symlink.
        """
        directories: dict[DigestKey, bytes] = {}

        # Children come after their parent in this list, so walking it backwards
        # serializes every child before its parent without recursion.
        order = [self._root]
        for entry in order:
            order.extend(entry.children.values())

        for entry in reversed(order):
            message = _directory_message(entry)
            key, data = digest_of_message(message)
            directories[key] = data
            entry.digest = re_pb2.Digest(hash=key.hash, size_bytes=key.size_bytes)

        assert self._root.digest is not None
        return BuiltTree(root_digest=self._root.digest, directories=directories)

    def _split_relative(self, name: str) -> list[str]:
        if self._lib.is_abs(name):
            raise AbsolutePathError(f"add {name} to input tree: the name is absolute")
        return self._lib.split_elem(name)

    def _walk(self, name: str, elems: list[str]) -> tuple[_DirectoryEntry, int]:
        """Follow the directory elements of ``name`` from the root, creating directories.

        Returns the directory reached and its depth below the root.
        """
        stack: list[_DirectoryEntry] = []
        current = self._root

        for elem in elems:
            if elem == ".":
                continue
            if elem == "..":
                if not stack:
                    raise _climbs_above_root(name)
                current = stack.pop()
                continue
            stack.append(current)
            current = self._child(current, elem)

        return current, len(stack)

    def _child(self, parent: _DirectoryEntry, name: str) -> _DirectoryEntry:
        child = parent.children.get(name)
        if child is not None:
            return child

        child = _DirectoryEntry(_child_key(parent.key, name))
        parent.children[name] = child
        self._directories[child.key] = child
        return child


def _climbs_above_root(name: str) -> BadPathError:
    return BadPathError(f"add {name} to input tree: '..' climbs above the root")


def _is_walk_end(name: str, leaf: str, depth: int) -> bool:
    """Tell whether ``leaf`` is ``.`` or ``..``, which end a directory or symlink name.

    Raises:
        BadPathError: ``leaf`` is ``..`` at the root.
    """
    if leaf == ".":
        return True
    if leaf != "..":
        return False
    if depth == 0:
        raise _climbs_above_root(name)
    return True


def _directory_message(entry: _DirectoryEntry) -> re_pb2.Directory:
    """Build the Directory of ``entry``, whose children must already have digests."""
    seen: dict[str, _Node] = {}

    files: list[tuple[str, DigestKey, bool]] = []
    for name, digest, is_executable in entry.files:
        if _is_new(entry, seen, name, _Node("file", str(digest), is_executable)):
            files.append((name, digest, is_executable))

    symlinks: list[tuple[str, str]] = []
    for name, target in entry.symlinks:
        if _is_new(entry, seen, name, _Node("symlink", target)):
            symlinks.append((name, target))

    children: list[tuple[str, re_pb2.Digest]] = []
    for name, child in entry.children.items():
        assert child.digest is not None
        child_digest = f"{child.digest.hash}/{child.digest.size_bytes}"
        if _is_new(entry, seen, name, _Node("directory", child_digest)):
            children.append((name, child.digest))

    # Python compares str by code point, which is the UTF-8 byte order that REAPI requires.
    files.sort()
    symlinks.sort()
    children.sort(key=lambda item: item[0])
    return re_pb2.Directory(
        files=[
            re_pb2.FileNode(
                name=name,
                digest=re_pb2.Digest(hash=digest.hash, size_bytes=digest.size_bytes),
                is_executable=is_executable,
            )
            for name, digest, is_executable in files
        ],
        directories=[re_pb2.DirectoryNode(name=name, digest=digest) for name, digest in children],
        symlinks=[re_pb2.SymlinkNode(name=name, target=target) for name, target in symlinks],
    )


def _is_new(entry: _DirectoryEntry, seen: dict[str, _Node], name: str, node: _Node) -> bool:
    """Record ``node`` under ``name`` and tell whether it is the first of that name.

    Raises:
        DuplicateEntryError: an earlier node of the same name differs from ``node``.
    """
    previous = seen.get(name)
    if previous is None:
        seen[name] = node
        return True
    if previous == node:
        return False

    raise DuplicateEntryError(
        f"duplicate {node.kind} {name} in {entry.key}: "
        f"{node.describe()} conflicts with {previous.describe()}"
    )
