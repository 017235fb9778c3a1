"""Unit tests of the bubblewrap planner, with both file systems described by dictionaries."""

from __future__ import annotations

import posixpath
from collections.abc import Mapping

import pytest

from gomaproxy.local.sandbox import (
    DirEntry,
    EntryKind,
    SandboxRequest,
    plan_bwrap_command,
    sandbox_working_directory,
    validate_mount_path,
)

DIR = DirEntry(EntryKind.DIRECTORY)
FILE = DirEntry(EntryKind.FILE)


def link(target: str) -> DirEntry:
    return DirEntry(EntryKind.SYMLINK, target)


ROOT = "/state/actions/a1/root"

# A Debian host with a merged /usr: /bin, /lib and /lib64 are symlinks into /usr.
HOST: dict[str, dict[str, DirEntry]] = {
    "/": {
        "usr": DIR,
        "bin": link("usr/bin"),
        "lib": link("usr/lib"),
        "lib64": link("usr/lib64"),
        "etc": DIR,
        "home": DIR,
        "state": DIR,
    },
    "/usr": {"bin": DIR, "include": DIR, "lib": DIR, "share": DIR},
    "/usr/bin": {"gcc": FILE, "cc": link("gcc")},
    "/usr/include": {
        "stdio.h": FILE,
        "stdlib.h": FILE,
        "string.h": FILE,
        "errno.h": FILE,
        "features.h": FILE,
        "sys": DIR,
        "linux": DIR,
        "asm": link("asm-generic"),
    },
    "/usr/include/sys": {"cdefs.h": FILE, "types.h": FILE},
    "/usr/include/linux": {"types.h": FILE},
    "/etc": {"passwd": FILE, "alternatives": DIR},
}

TOOLCHAIN = ("/usr", "/bin", "/lib", "/lib64", "/lib32", "/etc")


def fake_listing(tree: Mapping[str, Mapping[str, DirEntry]]) -> dict[str, Mapping[str, DirEntry]]:
    """Combine the host listing with an input tree whose paths are relative to ROOT."""
    listing: dict[str, Mapping[str, DirEntry]] = dict(HOST)
    for relative, entries in tree.items():
        listing[f"{ROOT}/{relative}".rstrip("/")] = entries
    return listing


def plan(
    tree: Mapping[str, Mapping[str, DirEntry]],
    *,
    mount_path: str = "/",
    working_directory: str = "",
    writable_directories: tuple[str, ...] = (),
    toolchain: tuple[str, ...] = TOOLCHAIN,
) -> list[str]:
    listing = fake_listing(tree)
    request = SandboxRequest(
        input_root=ROOT,
        mount_path=mount_path,
        working_directory=working_directory,
        arguments=["/usr/bin/gcc", "-c", "a.c"],
        environment=[("PATH", "/usr/bin"), ("LANG", "C")],
        writable_directories=writable_directories,
        host_toolchain_dirs=toolchain,
        bwrap_path="/usr/bin/bwrap",
    )
    return plan_bwrap_command(request, listing.get)


def mounts_of(command: list[str]) -> list[tuple[str, ...]]:
    """Split the mount options of a planned command into (option, arguments...) tuples."""
    arity = {"--bind": 2, "--ro-bind": 2, "--symlink": 2, "--proc": 1, "--dev": 1, "--tmpfs": 1}
    mounts: list[tuple[str, ...]] = []
    index = 1
    while index < len(command) and command[index] in arity:
        option = command[index]
        count = arity[option]
        mounts.append((option, *command[index + 1 : index + 1 + count]))
        index += 1 + count
    return mounts


def is_below(path: str, ancestor: str) -> bool:
    return path == ancestor or ancestor == "/" or path.startswith(f"{ancestor}/")


class SandboxView:
    """A model of the sandbox's file system after applying planned mounts in order.

    A later mount hides everything an earlier one showed at or below its target, as in
    the kernel.  Applying a mount fails the test when its mount point neither exists
    nor can be created in a writable parent.
    """

    def __init__(self, listing: Mapping[str, Mapping[str, DirEntry]]) -> None:
        self.listing = listing
        self.mounts: list[tuple[str, ...]] = []

    def apply(self, mount: tuple[str, ...]) -> None:
        target = mount[-1]
        if target != "/" and self.entry(target) is None:
            parent = posixpath.dirname(target)
            assert self.is_writable(parent), f"cannot create mount point {target} for {mount}"
        self.mounts.append(mount)

    def resolve(self, path: str) -> tuple[str, str] | None:
        """Return the option and source that show ``path``, or None when nothing does."""
        for mount in reversed(self.mounts):
            option, target = mount[0], mount[-1]
            if not is_below(path, target):
                continue
            if option in ("--bind", "--ro-bind"):
                rest = path[len(target) :].lstrip("/") if target != "/" else path.lstrip("/")
                return option, posixpath.join(mount[1], rest) if rest else mount[1]
            if option == "--symlink":
                return (option, mount[1]) if path == target else None
            return option, ""
        return None

    def entry(self, path: str) -> DirEntry | None:
        resolved = self.resolve(path)
        if resolved is None:
            return None
        option, source = resolved
        if option == "--symlink":
            return link(source)
        if option in ("--tmpfs", "--proc", "--dev"):
            return DIR
        if source in self.listing:
            return DIR
        parent, name = posixpath.split(source)
        return self.listing.get(parent, {}).get(name)

    def is_writable(self, path: str) -> bool:
        resolved = self.resolve(path)
        return resolved is not None and resolved[0] in ("--bind", "--tmpfs")


def view_of(tree: Mapping[str, Mapping[str, DirEntry]], command: list[str]) -> SandboxView:
    view = SandboxView(fake_listing(tree))
    for mount in mounts_of(command):
        view.apply(mount)
    return view


def walk(listing: Mapping[str, Mapping[str, DirEntry]], top: str) -> list[tuple[str, DirEntry]]:
    """List every entry below ``top`` in a fake listing, parents first."""
    found: list[tuple[str, DirEntry]] = []
    for name, entry in sorted(listing.get(top, {}).items()):
        path = posixpath.join(top, name)
        found.append((path, entry))
        if entry.kind is EntryKind.DIRECTORY:
            found += walk(listing, path)
    return found


def assert_merged(tree: Mapping[str, Mapping[str, DirEntry]], command: list[str]) -> None:
    """Check that the sandbox shows every tree entry, and every host toolchain entry the
    tree does not replace, each from its own side."""
    view = view_of(tree, command)
    listing = fake_listing(tree)

    tree_paths: dict[str, DirEntry] = {}
    for path, entry in walk(listing, ROOT):
        sandbox_path = "/" + path[len(ROOT) + 1 :]
        tree_paths[sandbox_path] = entry
        if entry.kind is EntryKind.DIRECTORY:
            assert view.entry(sandbox_path) == DIR, f"tree directory {sandbox_path} is hidden"
        else:
            assert view.resolve(sandbox_path) == ("--bind", path), (
                f"tree entry {sandbox_path} is hidden"
            )

    for top in TOOLCHAIN:
        host_top = HOST["/"].get(top.lstrip("/"))
        if host_top is None:
            continue
        for path, entry in [(top, host_top), *walk(HOST, top)]:
            if shadowed_by_tree(path, tree_paths):
                continue
            assert view.entry(path) == entry, f"host entry {path} shows {view.entry(path)}"
            if entry.kind is not EntryKind.SYMLINK:
                assert view.resolve(path) == ("--ro-bind", path), (
                    f"host entry {path} is not read-only"
                )


def shadowed_by_tree(path: str, tree_paths: Mapping[str, DirEntry]) -> bool:
    """Tell whether the tree has ``path`` itself or a non-directory above it."""
    if path in tree_paths:
        return True
    ancestor = posixpath.dirname(path)
    while ancestor != "/":
        tree_ancestor = tree_paths.get(ancestor)
        if tree_ancestor is not None and tree_ancestor.kind is not EntryKind.DIRECTORY:
            return True
        ancestor = posixpath.dirname(ancestor)
    return False


TREE_WITH_HEADERS: dict[str, dict[str, DirEntry]] = {
    "": {"home": DIR, "usr": DIR},
    "home": {"me": DIR},
    "home/me": {"a.c": FILE},
    "usr": {"include": DIR},
    "usr/include": {"stdio.h": FILE, "sys": DIR},
    "usr/include/sys": {"cdefs.h": FILE},
}

# An input tree that replaces most of /usr/include and adds a header the host lacks.
TREE_WITH_OWN_HEADERS: dict[str, dict[str, DirEntry]] = {
    "": {"usr": DIR},
    "usr": {"include": DIR},
    "usr/include": {
        "stdio.h": FILE,
        "stdlib.h": FILE,
        "string.h": FILE,
        "errno.h": FILE,
        "features.h": FILE,
        "extra.h": FILE,
    },
}


def test_plan_root_binds_input_root_writable_at_slash() -> None:
    """With mount path / the input root is the first mount, bound writable at /."""
    mounts = mounts_of(plan(TREE_WITH_HEADERS))

    assert mounts[0] == ("--bind", ROOT, "/")


@pytest.mark.parametrize(
    "tree",
    [TREE_WITH_HEADERS, TREE_WITH_OWN_HEADERS, {"": {"home": DIR}, "home": {"a.c": FILE}}],
    ids=["sparse-headers", "own-headers", "no-toolchain-overlap"],
)
def test_plan_root_shows_tree_and_host_entries(tree: dict[str, dict[str, DirEntry]]) -> None:
    """Every tree entry and every host toolchain entry the tree does not replace is visible."""
    assert_merged(tree, plan(tree))


def test_plan_root_host_form_for_sparse_tree() -> None:
    """A tree with few entries in a large host directory is bound file by file over the host."""
    mounts = mounts_of(plan(TREE_WITH_HEADERS))

    assert ("--ro-bind", "/usr", "/usr") in mounts
    assert ("--bind", f"{ROOT}/usr/include/stdio.h", "/usr/include/stdio.h") in mounts
    assert ("--bind", f"{ROOT}/usr/include/sys/cdefs.h", "/usr/include/sys/cdefs.h") in mounts
    usr_mounts = [mount for mount in mounts if mount[-1].startswith("/usr")]
    assert len(usr_mounts) == 3


def test_plan_root_tree_form_for_new_entries() -> None:
    """A tree directory with an entry the host lacks keeps the tree form with host entries added."""
    mounts = mounts_of(plan(TREE_WITH_OWN_HEADERS))

    assert ("--ro-bind", "/usr/include/sys", "/usr/include/sys") in mounts
    assert ("--ro-bind", "/usr/include/linux", "/usr/include/linux") in mounts
    assert ("--symlink", "asm-generic", "/usr/include/asm") in mounts
    assert not any(mount[-1] == "/usr/include/extra.h" for mount in mounts)


def test_plan_root_keeps_working_directory_writable() -> None:
    """The working directory and its ancestors keep the writable tree form."""
    tree = {**TREE_WITH_HEADERS, "usr/include/sys": {"cdefs.h": FILE}}

    command = plan(tree, working_directory="usr/include/sys")
    view = view_of(tree, command)

    assert view.is_writable("/usr/include/sys")
    assert view.is_writable("/usr/include")
    assert view.is_writable("/usr")
    assert_merged(tree, command)


def test_plan_root_keeps_output_parents_writable() -> None:
    """Directories named as writable, such as output parents, keep the writable tree form."""
    command = plan(TREE_WITH_HEADERS, writable_directories=("usr/include",))
    view = view_of(TREE_WITH_HEADERS, command)

    assert view.is_writable("/usr/include")
    assert_merged(TREE_WITH_HEADERS, command)


def test_plan_root_never_mounts_over_tree_entries() -> None:
    """No host mount targets a tree entry that the host does not also have as a directory."""
    mounts = mounts_of(plan(TREE_WITH_HEADERS))
    host_targets = [mount[-1] for mount in mounts[1:] if mount[0] in ("--ro-bind", "--symlink")]

    assert "/usr/include/stdio.h" not in host_targets
    assert "/usr/include/sys/cdefs.h" not in host_targets
    assert "/home" not in host_targets


def test_plan_root_binds_absent_toolchain_dir() -> None:
    """A toolchain directory the tree does not have is bound read-only as a whole."""
    mounts = mounts_of(plan(TREE_WITH_HEADERS))

    assert ("--ro-bind", "/etc", "/etc") in mounts
    assert not any(mount[-1].startswith("/etc/") for mount in mounts)


def test_plan_root_recreates_host_symlinks() -> None:
    """Top-level host symlinks such as /bin -> usr/bin become --symlink entries."""
    mounts = mounts_of(plan(TREE_WITH_HEADERS))

    assert ("--symlink", "usr/bin", "/bin") in mounts
    assert ("--symlink", "usr/lib", "/lib") in mounts
    assert ("--symlink", "usr/lib64", "/lib64") in mounts


def test_plan_root_tree_name_shadows_host_symlink() -> None:
    """A tree entry named like a host symlink wins, and no host mount goes below it."""
    tree = {"": {"lib": DIR}, "lib": {"libfoo.so": FILE}}

    mounts = mounts_of(plan(tree))

    assert not any(mount[-1] == "/lib" or mount[-1].startswith("/lib/") for mount in mounts)
    assert ("--symlink", "usr/bin", "/bin") in mounts


def test_plan_root_tree_file_shadows_host_directory() -> None:
    """A tree file named like a host directory wins over the whole host directory."""
    tree = {"": {"etc": FILE}}

    mounts = mounts_of(plan(tree))

    assert not any(mount[-1] == "/etc" or mount[-1].startswith("/etc/") for mount in mounts)


def test_plan_root_tree_symlink_blocks_nesting() -> None:
    """A nested toolchain path below a tree symlink is not mounted through the symlink."""
    tree = {"": {"usr": link("/elsewhere")}}

    mounts = mounts_of(plan(tree, toolchain=("/usr/include",)))

    assert not any(mount[-1].startswith("/usr") for mount in mounts)


def test_plan_root_skips_toolchain_dirs_missing_on_host() -> None:
    """Toolchain directories that the host lacks, such as /lib32 here, are left out."""
    mounts = mounts_of(plan(TREE_WITH_HEADERS))

    assert not any("/lib32" in mount for mount in mounts)


def test_plan_root_adds_tmpfs_unless_tree_has_tmp() -> None:
    """/tmp is a fresh tmpfs unless the input tree provides its own /tmp."""
    without_tmp = mounts_of(plan(TREE_WITH_HEADERS))
    with_tmp = mounts_of(plan({**TREE_WITH_HEADERS, "": {"home": DIR, "usr": DIR, "tmp": DIR}}))

    assert ("--tmpfs", "/tmp") in without_tmp
    assert ("--tmpfs", "/tmp") not in with_tmp


def test_plan_root_mounts_proc_and_dev() -> None:
    """/proc and /dev are always fresh mounts."""
    mounts = mounts_of(plan(TREE_WITH_HEADERS))

    assert ("--proc", "/proc") in mounts
    assert ("--dev", "/dev") in mounts


def test_plan_mount_path_binds_root_there_after_toolchain() -> None:
    """A non-root mount path gets the input root bound there, after the host toolchain."""
    mounts = mounts_of(plan(TREE_WITH_HEADERS, mount_path="/build/root"))

    assert mounts[-1] == ("--bind", ROOT, "/build/root")
    assert ("--ro-bind", "/usr", "/usr") in mounts
    assert ("--ro-bind", "/etc", "/etc") in mounts
    assert ("--symlink", "usr/bin", "/bin") in mounts
    assert ("--tmpfs", "/tmp") in mounts
    assert not any(mount[-1].startswith("/usr/") for mount in mounts)


def test_plan_mount_path_under_tmp_follows_tmpfs() -> None:
    """A mount path under /tmp is bound after the /tmp tmpfs, so the tmpfs does not hide it."""
    mounts = mounts_of(plan(TREE_WITH_HEADERS, mount_path="/tmp/build"))

    assert mounts.index(("--tmpfs", "/tmp")) < mounts.index(("--bind", ROOT, "/tmp/build"))


def test_plan_sets_exact_environment_and_isolation() -> None:
    """The command clears the environment, sets each variable, and unshares namespaces."""
    command = plan(TREE_WITH_HEADERS)
    tail = command[command.index("--unshare-all") :]

    assert tail[:6] == [
        "--unshare-all",
        "--die-with-parent",
        "--new-session",
        "--cap-drop",
        "ALL",
        "--clearenv",
    ]
    assert tail[6:12] == ["--setenv", "PATH", "/usr/bin", "--setenv", "LANG", "C"]
    assert command.count("--setenv") == 2


def test_plan_ends_with_chdir_and_arguments() -> None:
    """The command ends with --chdir to the working directory, --, and the arguments."""
    command = plan(TREE_WITH_HEADERS, working_directory="home/me")

    assert command[0] == "/usr/bin/bwrap"
    assert command[-6:] == ["--chdir", "/home/me", "--", "/usr/bin/gcc", "-c", "a.c"]


@pytest.mark.parametrize(
    ("mount_path", "working_directory", "expected"),
    [
        ("/", "", "/"),
        ("/", "out/Release", "/out/Release"),
        ("/build", "", "/build"),
        ("/build", "src", "/build/src"),
    ],
    ids=["root", "root-subdir", "mount", "mount-subdir"],
)
def test_sandbox_working_directory_joins_mount_path(
    mount_path: str, working_directory: str, expected: str
) -> None:
    """The sandbox working directory is the mount path joined with the relative directory."""
    assert sandbox_working_directory(mount_path, working_directory) == expected


@pytest.mark.parametrize(
    ("value", "valid"),
    [
        ("/", True),
        ("/b/root", True),
        ("b", False),
        ("/b/../c", False),
        ("/b/", False),
        ("//b", False),
    ],
    ids=["root", "nested", "relative", "dotdot", "trailing-slash", "double-slash"],
)
def test_validate_mount_path_accepts_normal_absolute_paths(value: str, valid: bool) -> None:
    """Only absolute paths in normal form are accepted as InputRootAbsolutePath."""
    assert (validate_mount_path(value) is None) is valid
