"""Planning of the bubblewrap (``bwrap``) command line that runs one action.

The action's input root is materialised on the host and appears inside the sandbox at its
mount path, which is the ``InputRootAbsolutePath`` platform property or else the
materialised directory's own path.  When the mount path is ``/``, the inputs appear at
their original absolute paths, and the host's toolchain directories (``/usr``, ``/etc``
and so on) must appear as well.  bubblewrap 0.8 has no overlay mounts, so the two are
merged directory by directory.  The input root is bound writable at ``/``, and every host
entry that the input tree lacks is bound read-only into it.  Directories present on both
sides are merged recursively, and entries of the input tree always win over host entries
of the same name.

Planning is pure: it sees the file system only through a ``ListDir`` callable, so the tests
can describe both sides with dictionaries.
"""

from __future__ import annotations

import enum
import os
import posixpath
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

DEFAULT_HOST_TOOLCHAIN_DIRS: tuple[str, ...] = (
    "/usr",
    "/bin",
    "/sbin",
    "/lib",
    "/lib32",
    "/lib64",
    "/libx32",
    "/etc",
)

INPUT_ROOT_ABSOLUTE_PATH = "InputRootAbsolutePath"


class EntryKind(enum.Enum):
    """The type of a directory entry, as far as mounting cares."""

    DIRECTORY = "directory"
    FILE = "file"
    SYMLINK = "symlink"
    OTHER = "other"


@dataclass(frozen=True)
class DirEntry:
    """One entry of a directory listing. ``symlink_target`` is set for symlinks only."""

    kind: EntryKind
    symlink_target: str = ""


# Lists the directory at an absolute host path: entries by name, or None when the path
# does not exist or is not a directory.  Symlinks are reported, never followed.
ListDir = Callable[[str], Mapping[str, DirEntry] | None]


@dataclass(frozen=True)
class SandboxRequest:
    """Everything the planner needs to know about one action run."""

    # Host path of the materialised input root.
    input_root: str
    # Absolute path of the input root inside the sandbox.
    mount_path: str
    # Working directory relative to the input root, or "" for the input root itself.
    working_directory: str
    arguments: Sequence[str]
    environment: Sequence[tuple[str, str]]
    host_toolchain_dirs: Sequence[str] = DEFAULT_HOST_TOOLCHAIN_DIRS
    bwrap_path: str = "bwrap"


def plan_bwrap_command(request: SandboxRequest, list_dir: ListDir) -> list[str]:
    """Build the full ``bwrap`` argument vector that runs ``request.arguments``.

    The environment is exactly ``request.environment``.  The network, PID, IPC and UTS
    namespaces are private, and ``/proc``, ``/dev`` and ``/tmp`` are fresh mounts, except
    that an input tree at ``/`` with its own ``tmp`` keeps it.
    """
    if request.mount_path == "/":
        mounts = _plan_root_mounts(request, list_dir)
    else:
        mounts = _plan_mounted_root(request, list_dir)

    command = [request.bwrap_path, *mounts]
    command += ["--unshare-all", "--die-with-parent", "--new-session", "--clearenv"]
    for name, value in request.environment:
        command += ["--setenv", name, value]
    command += ["--chdir", sandbox_working_directory(request.mount_path, request.working_directory)]
    command += ["--", *request.arguments]
    return command


def sandbox_working_directory(mount_path: str, working_directory: str) -> str:
    """Return the absolute path of the working directory inside the sandbox."""
    if not working_directory:
        return mount_path
    return posixpath.join(mount_path, working_directory)


def _plan_root_mounts(request: SandboxRequest, list_dir: ListDir) -> list[str]:
    """Mount the input root at ``/`` and merge the host toolchain directories into it."""
    mounts = ["--bind", request.input_root, "/"]
    for host_path in request.host_toolchain_dirs:
        mounts += _merge_host_path(request.input_root, host_path, list_dir)

    mounts += ["--proc", "/proc", "--dev", "/dev"]
    tree_top = list_dir(request.input_root) or {}
    if "tmp" not in tree_top:
        mounts += ["--tmpfs", "/tmp"]
    return mounts


def _plan_mounted_root(request: SandboxRequest, list_dir: ListDir) -> list[str]:
    """Expose the host toolchain read-only and the input root at its mount path.

    NOTE: a mount path inside one of the host toolchain directories fails in bwrap,
    because the mount point cannot be created in a read-only bind.
    """
    mounts = ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"]
    for host_path in request.host_toolchain_dirs:
        host_entry = _host_entry(host_path, list_dir)
        if host_entry is not None:
            mounts += _expose_host_entry(host_path, host_entry)

    mounts += ["--bind", request.input_root, request.mount_path]
    return mounts


def _merge_host_path(input_root: str, host_path: str, list_dir: ListDir) -> list[str]:
    """Plan the mounts that make ``host_path`` visible without hiding any input."""
    host_entry = _host_entry(host_path, list_dir)
    if host_entry is None:
        return []

    tree_entry, shadowed = _tree_entry(input_root, host_path, list_dir)
    if shadowed:
        return []
    if tree_entry is None:
        return _expose_host_entry(host_path, host_entry)
    if tree_entry.kind is EntryKind.DIRECTORY and host_entry.kind is EntryKind.DIRECTORY:
        return _merge_directory(input_root, host_path, list_dir)
    # The input tree has its own entry of this name, which wins.
    return []


def _merge_directory(input_root: str, path: str, list_dir: ListDir) -> list[str]:
    """Bind every host entry of ``path`` that the input tree's copy lacks into it."""
    tree_entries = list_dir(_tree_path(input_root, path)) or {}
    host_entries = list_dir(path) or {}

    mounts: list[str] = []
    for name in sorted(host_entries):
        child_path = posixpath.join(path, name)
        host_child = host_entries[name]
        tree_child = tree_entries.get(name)
        if tree_child is None:
            mounts += _expose_host_entry(child_path, host_child)
        elif tree_child.kind is EntryKind.DIRECTORY and host_child.kind is EntryKind.DIRECTORY:
            mounts += _merge_directory(input_root, child_path, list_dir)
    return mounts


def _expose_host_entry(path: str, entry: DirEntry) -> list[str]:
    """Recreate a host symlink as a symlink, and bind anything else read-only."""
    if entry.kind is EntryKind.SYMLINK:
        return ["--symlink", entry.symlink_target, path]
    return ["--ro-bind", path, path]


def _host_entry(host_path: str, list_dir: ListDir) -> DirEntry | None:
    parent, name = posixpath.split(host_path.rstrip("/"))
    entries = list_dir(parent or "/")
    if entries is None:
        return None
    return entries.get(name)


def _tree_entry(input_root: str, path: str, list_dir: ListDir) -> tuple[DirEntry | None, bool]:
    """Look ``path`` up in the input tree, without following symlinks.

    Returns the entry (None when absent) and whether a non-directory on the way shadows
    the whole path, in which case nothing may be mounted below it.
    """
    components = [part for part in path.split("/") if part]
    current = input_root
    for index, name in enumerate(components):
        entries = list_dir(current)
        entry = None if entries is None else entries.get(name)
        if entry is None:
            return None, False
        is_last = index == len(components) - 1
        if is_last:
            return entry, False
        if entry.kind is not EntryKind.DIRECTORY:
            return None, True
        current = posixpath.join(current, name)
    return None, False


def _tree_path(input_root: str, path: str) -> str:
    return posixpath.join(input_root, path.lstrip("/"))


def list_host_dir(path: str) -> dict[str, DirEntry] | None:
    """List a real directory for the planner.  It blocks, so run it in a worker thread."""
    try:
        with os.scandir(path) as scan:
            return {entry.name: _entry_of(entry) for entry in scan}
    except (FileNotFoundError, NotADirectoryError):
        return None


def _entry_of(entry: os.DirEntry[str]) -> DirEntry:
    if entry.is_symlink():
        return DirEntry(EntryKind.SYMLINK, os.readlink(entry.path))
    if entry.is_dir(follow_symlinks=False):
        return DirEntry(EntryKind.DIRECTORY)
    if entry.is_file(follow_symlinks=False):
        return DirEntry(EntryKind.FILE)
    return DirEntry(EntryKind.OTHER)


def validate_mount_path(value: str) -> str | None:
    """Return an error message if ``value`` is not a usable ``InputRootAbsolutePath``, else None."""
    if not value.startswith("/"):
        return f"{INPUT_ROOT_ABSOLUTE_PATH} {value!r} is not an absolute path"
    if posixpath.normpath(value) != value or value.startswith("//"):
        return (
            f"{INPUT_ROOT_ABSOLUTE_PATH} {value!r} is not in normal form; "
            "remove '.', '..' and repeated or trailing slashes"
        )
    return None
