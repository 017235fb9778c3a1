"""Unit tests of the bubblewrap planner, with both file systems described by dictionaries."""

from __future__ import annotations

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
    "/usr/include": {"stdio.h": FILE, "features.h": FILE, "sys": DIR, "linux": DIR},
    "/usr/include/sys": {"cdefs.h": FILE, "types.h": FILE},
    "/etc": {"passwd": FILE, "alternatives": DIR},
}


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
    toolchain: tuple[str, ...] = ("/usr", "/bin", "/lib", "/lib64", "/lib32", "/etc"),
) -> list[str]:
    listing = fake_listing(tree)
    request = SandboxRequest(
        input_root=ROOT,
        mount_path=mount_path,
        working_directory=working_directory,
        arguments=["/usr/bin/gcc", "-c", "a.c"],
        environment=[("PATH", "/usr/bin"), ("LANG", "C")],
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


TREE_WITH_HEADERS: dict[str, dict[str, DirEntry]] = {
    "": {"home": DIR, "usr": DIR},
    "home": {"me": DIR},
    "home/me": {"a.c": FILE},
    "usr": {"include": DIR},
    "usr/include": {"stdio.h": FILE, "sys": DIR},
    "usr/include/sys": {"cdefs.h": FILE},
}


def test_plan_root_binds_input_root_writable_at_slash() -> None:
    """With mount path / the input root is the first mount, bound writable at /."""
    mounts = mounts_of(plan(TREE_WITH_HEADERS))

    assert mounts[0] == ("--bind", ROOT, "/")


def test_plan_root_merges_host_entries_missing_from_tree() -> None:
    """Host entries the tree lacks are bound read-only, recursing into shared directories."""
    mounts = mounts_of(plan(TREE_WITH_HEADERS))

    assert ("--ro-bind", "/usr/bin", "/usr/bin") in mounts
    assert ("--ro-bind", "/usr/lib", "/usr/lib") in mounts
    assert ("--ro-bind", "/usr/share", "/usr/share") in mounts
    assert ("--ro-bind", "/usr/include/features.h", "/usr/include/features.h") in mounts
    assert ("--ro-bind", "/usr/include/linux", "/usr/include/linux") in mounts
    assert ("--ro-bind", "/usr/include/sys/types.h", "/usr/include/sys/types.h") in mounts


def test_plan_root_never_mounts_over_tree_entries() -> None:
    """Files and directories of the input tree are never covered by a host mount."""
    mounts = mounts_of(plan(TREE_WITH_HEADERS))
    targets = [mount[-1] for mount in mounts[1:]]

    assert "/usr" not in targets
    assert "/usr/include" not in targets
    assert "/usr/include/stdio.h" not in targets
    assert "/usr/include/sys" not in targets
    assert "/usr/include/sys/cdefs.h" not in targets
    assert "/home" not in targets


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

    assert tail[:4] == ["--unshare-all", "--die-with-parent", "--new-session", "--clearenv"]
    assert tail[4:10] == ["--setenv", "PATH", "/usr/bin", "--setenv", "LANG", "C"]
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
