"""Tests for the input tree builder that produces REAPI Directory messages."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gomaproxy.digest import EMPTY_DIGEST_KEY, DigestKey, digest_of_bytes
from gomaproxy.exec.clientpath import PathStyle
from gomaproxy.exec.merkle import (
    AbsolutePathError,
    BadPathError,
    BuiltTree,
    DuplicateEntryError,
    MerkleTree,
)
from gomaproxy.protos import remote_execution_pb2 as re_pb2

DIGEST_A = digest_of_bytes(b"content a").to_proto()
DIGEST_B = digest_of_bytes(b"content b").to_proto()


def posix_tree() -> MerkleTree:
    return MerkleTree(PathStyle.POSIX)


def directory_at(built: BuiltTree, path: str = "") -> re_pb2.Directory:
    """Parse the Directory at the ``/``-separated ``path`` below the root."""
    digest = built.root_digest
    for name in filter(None, path.split("/")):
        parent = re_pb2.Directory.FromString(built.directories[DigestKey.of(digest)])
        digest = next(node.digest for node in parent.directories if node.name == name)
    return re_pb2.Directory.FromString(built.directories[DigestKey.of(digest)])


def all_paths(built: BuiltTree, path: str = "") -> list[str]:
    """List every directory (with a trailing slash), file and symlink below ``path``."""
    directory = directory_at(built, path)
    prefix = path + "/" if path else ""
    paths = [prefix + node.name for node in directory.files]
    paths += [prefix + node.name + "@" for node in directory.symlinks]
    for node in directory.directories:
        paths.append(prefix + node.name + "/")
        paths += all_paths(built, prefix + node.name)
    return sorted(paths)


# Structure


def test_merkle_empty_tree_has_empty_digest() -> None:
    """An empty tree builds to the sha256 of no bytes, with the empty Directory stored."""
    built = posix_tree().build()

    assert DigestKey.of(built.root_digest) == EMPTY_DIGEST_KEY
    assert str(DigestKey.of(built.root_digest)) == (
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855/0"
    )
    assert built.directories == {EMPTY_DIGEST_KEY: b""}


def test_merkle_single_file_serialization() -> None:
    """A root with one file serializes to exactly the deterministic Directory bytes."""
    tree = posix_tree()
    tree.add_file("a.h", DIGEST_A, is_executable=True)

    built = tree.build()

    expected = re_pb2.Directory(
        files=[re_pb2.FileNode(name="a.h", digest=DIGEST_A, is_executable=True)]
    ).SerializeToString(deterministic=True)
    assert built.directories[DigestKey.of(built.root_digest)] == expected
    assert built.root_digest.hash == hashlib.sha256(expected).hexdigest()
    assert built.root_digest.size_bytes == len(expected)


@pytest.mark.parametrize(
    ("kind", "name", "expected"),
    [
        ("dir", "path/../name", ["name/", "path/"]),
        ("dir", "path/name/..", ["path/", "path/name/"]),
        ("dir", "path/name/../../foo", ["foo/", "path/", "path/name/"]),
        ("file", "path/name/../../foo", ["foo", "path/", "path/name/"]),
        ("file", "base/test/../macros.h", ["base/", "base/macros.h", "base/test/"]),
        (
            "file",
            "out/Release/../../base/foo.cc",
            ["base/", "base/foo.cc", "out/", "out/Release/"],
        ),
        ("file", "./a/./b.h", ["a/", "a/b.h"]),
        ("dir", "a//b/", ["a/", "a/b/"]),
        ("dir", "a/.", ["a/"]),
        ("dir", "", []),
        ("dir", ".", []),
        ("symlink", "a/..", ["a/"]),
        ("symlink", "a/.", ["a/"]),
        ("symlink", "x/../link", ["link@", "x/"]),
    ],
    ids=[
        "dir-dotdot-middle",
        "dir-dotdot-last",
        "dir-two-dotdots",
        "file-two-dotdots",
        "file-leaves-empty-dir",
        "file-from-out-dir",
        "file-dots",
        "dir-slashes",
        "dir-trailing-dot",
        "dir-empty-name",
        "dir-dot",
        "symlink-dotdot-last",
        "symlink-dot-last",
        "symlink-after-dotdot",
    ],
)
def test_merkle_unclean_names_create_walked_dirs(kind: str, name: str, expected: list[str]) -> None:
    """Every directory that a name walks through is created, even when ".." leaves it."""
    tree = posix_tree()
    if kind == "file":
        tree.add_file(name, DIGEST_A)
    elif kind == "symlink":
        tree.add_symlink(name, "target")
    else:
        tree.add_directory(name)

    assert all_paths(tree.build()) == expected


def test_merkle_windows_names_use_backslashes() -> None:
    """A Windows tree splits names at backslashes and slashes alike."""
    tree = MerkleTree(PathStyle.WINDOWS)
    tree.add_file("a\\b\\c.h", DIGEST_A)
    tree.add_file("a/b/d.h", DIGEST_B)
    tree.add_directory("out\\gen\\..\\obj")

    paths = all_paths(tree.build())

    assert paths == ["a/", "a/b/", "a/b/c.h", "a/b/d.h", "out/", "out/gen/", "out/obj/"]


def test_merkle_file_node_fields() -> None:
    """A FileNode carries the name, digest and executable bit it was added with."""
    tree = posix_tree()
    tree.add_file("bin/run.sh", DIGEST_A, is_executable=True)
    tree.add_file("bin/data", DIGEST_B)

    files = directory_at(tree.build(), "bin").files

    assert [(node.name, node.digest, node.is_executable) for node in files] == [
        ("data", DIGEST_B, False),
        ("run.sh", DIGEST_A, True),
    ]


def test_merkle_symlink_node_fields() -> None:
    """A SymlinkNode carries its name and target verbatim."""
    tree = posix_tree()
    tree.add_symlink("lib/libc.so", "../../x/libc.so.6")

    symlinks = directory_at(tree.build(), "lib").symlinks

    assert [(node.name, node.target) for node in symlinks] == [("libc.so", "../../x/libc.so.6")]


def test_merkle_children_sorted_by_bytes() -> None:
    """Files, directories and symlinks are each sorted by name in UTF-8 byte order."""
    names = ["b", "é", "a.h", "B", "a"]
    tree = posix_tree()
    for name in names:
        tree.add_file(f"files/{name}", DIGEST_A)
        tree.add_directory(f"dirs/{name}")
        tree.add_symlink(f"links/{name}", "t")

    built = tree.build()

    expected = sorted(names, key=lambda name: name.encode())
    assert expected == ["B", "a", "a.h", "b", "é"]
    assert [node.name for node in directory_at(built, "files").files] == expected
    assert [node.name for node in directory_at(built, "dirs").directories] == expected
    assert [node.name for node in directory_at(built, "links").symlinks] == expected


def test_merkle_root_lists_all_node_kinds() -> None:
    """The root Directory contains its files, directories and symlinks in their own fields."""
    tree = posix_tree()
    tree.add_file("f", DIGEST_A)
    tree.add_directory("d")
    tree.add_symlink("s", "f")

    root = directory_at(tree.build())

    assert [node.name for node in root.files] == ["f"]
    assert [node.name for node in root.directories] == ["d"]
    assert [node.name for node in root.symlinks] == ["s"]
    assert root.directories[0].digest == EMPTY_DIGEST_KEY.to_proto()


def test_merkle_directories_hold_every_level() -> None:
    """Every Directory, including the root and empty ones, is stored under its own digest."""
    tree = posix_tree()
    tree.add_file("a/b/c.h", DIGEST_A)
    tree.add_directory("a/empty")
    tree.add_directory("x/y")

    built = tree.build()

    for key, data in built.directories.items():
        assert digest_of_bytes(data) == key
    assert DigestKey.of(built.root_digest) in built.directories
    assert EMPTY_DIGEST_KEY in built.directories
    # root, a, a/b, x, and one empty Directory shared by a/empty and x/y.
    assert len(built.directories) == 5


def test_merkle_identical_subtrees_share_digest() -> None:
    """Two directories with equal contents have one digest and one stored Directory."""
    tree = posix_tree()
    tree.add_file("one/x.h", DIGEST_A)
    tree.add_file("two/x.h", DIGEST_A)

    built = tree.build()

    root = directory_at(built)
    assert root.directories[0].digest == root.directories[1].digest
    assert len(built.directories) == 2


def test_merkle_build_is_repeatable() -> None:
    """Building the same tree twice gives the same result."""
    tree = posix_tree()
    tree.add_file("a/b.h", DIGEST_A)

    assert tree.build() == tree.build()


# Duplicates


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("a/b.h", "a/b.h"),
        ("a/b.h", "x/../a/b.h"),
        ("a/b.h", "a/./b.h"),
    ],
    ids=["same-spelling", "dotdot-spelling", "dot-spelling"],
)
def test_merkle_identical_files_dropped(first: str, second: str) -> None:
    """The same file added twice, under any spelling, appears once."""
    tree = posix_tree()
    tree.add_file(first, DIGEST_A)
    tree.add_file(second, DIGEST_A)

    assert [node.name for node in directory_at(tree.build(), "a").files] == ["b.h"]


def test_merkle_identical_symlinks_dropped() -> None:
    """The same symlink added twice appears once."""
    tree = posix_tree()
    tree.add_symlink("l", "t")
    tree.add_symlink("l", "t")

    assert len(directory_at(tree.build()).symlinks) == 1


def test_merkle_repeated_directory_added_once() -> None:
    """Adding a directory again, under any spelling, keeps one DirectoryNode."""
    tree = posix_tree()
    tree.add_directory("a/b")
    tree.add_directory("a/b")
    tree.add_directory("a/x/../b/")

    assert all_paths(tree.build()) == ["a/", "a/b/", "a/x/"]


def _add_file_a(tree: MerkleTree, name: str) -> None:
    tree.add_file(name, DIGEST_A)


def _add_file_b(tree: MerkleTree, name: str) -> None:
    tree.add_file(name, DIGEST_B)


def _add_executable_a(tree: MerkleTree, name: str) -> None:
    tree.add_file(name, DIGEST_A, is_executable=True)


def _add_symlink_t(tree: MerkleTree, name: str) -> None:
    tree.add_symlink(name, "t")


def _add_symlink_u(tree: MerkleTree, name: str) -> None:
    tree.add_symlink(name, "u")


def _add_directory(tree: MerkleTree, name: str) -> None:
    tree.add_directory(name)


def _add_file_below(tree: MerkleTree, name: str) -> None:
    tree.add_file(name + "/inner.h", DIGEST_A)


@pytest.mark.parametrize(
    ("add_first", "add_second", "kind"),
    [
        (_add_file_a, _add_file_b, "file"),
        (_add_file_a, _add_executable_a, "file"),
        (_add_symlink_t, _add_symlink_u, "symlink"),
        (_add_file_a, _add_symlink_t, "symlink"),
        (_add_symlink_t, _add_file_a, "symlink"),
        (_add_file_a, _add_directory, "directory"),
        (_add_directory, _add_file_a, "directory"),
        (_add_symlink_t, _add_directory, "directory"),
        (_add_file_a, _add_file_below, "directory"),
    ],
    ids=[
        "file-other-digest",
        "file-other-executable-bit",
        "symlink-other-target",
        "file-then-symlink",
        "symlink-then-file",
        "file-then-dir",
        "dir-then-file",
        "symlink-then-dir",
        "file-then-file-below",
    ],
)
def test_merkle_conflicting_duplicates_raise(
    add_first: Callable[[MerkleTree, str], None],
    add_second: Callable[[MerkleTree, str], None],
    kind: str,
) -> None:
    """Two different entries of one name raise at build time, named by the later kind."""
    tree = posix_tree()
    add_first(tree, "a/n")
    add_second(tree, "a/n")

    with pytest.raises(DuplicateEntryError, match=f"^duplicate {kind} n in a: "):
        tree.build()


def test_merkle_conflict_message_names_both_entries() -> None:
    """The conflict message names the directory, the entry and both digests."""
    tree = posix_tree()
    tree.add_file("a/n", DIGEST_A)
    tree.add_file("a/n", DIGEST_B, is_executable=True)

    with pytest.raises(DuplicateEntryError) as caught:
        tree.build()

    assert str(caught.value) == (
        f"duplicate file n in a: file {DigestKey.of(DIGEST_B)} (executable) "
        f"conflicts with file {DigestKey.of(DIGEST_A)}"
    )


def test_merkle_conflict_in_root_names_dot() -> None:
    """A conflict in the root names the root as "."."""
    tree = posix_tree()
    tree.add_symlink("n", "t")
    tree.add_symlink("n", "u")

    with pytest.raises(DuplicateEntryError, match=r"^duplicate symlink n in \.: "):
        tree.build()


# Invalid names


@pytest.mark.parametrize(
    ("style", "kind", "name"),
    [
        (PathStyle.POSIX, "file", "/a.h"),
        (PathStyle.POSIX, "dir", "/a"),
        (PathStyle.POSIX, "symlink", "/l"),
        (PathStyle.WINDOWS, "file", "c:\\a.h"),
        (PathStyle.WINDOWS, "dir", "C:/a"),
    ],
    ids=["posix-file", "posix-dir", "posix-symlink", "windows-file", "windows-dir"],
)
def test_merkle_rejects_absolute_names(style: PathStyle, kind: str, name: str) -> None:
    """An absolute name raises AbsolutePathError for every entry kind."""
    tree = MerkleTree(style)

    with pytest.raises(AbsolutePathError):
        if kind == "file":
            tree.add_file(name, DIGEST_A)
        elif kind == "symlink":
            tree.add_symlink(name, "t")
        else:
            tree.add_directory(name)


@pytest.mark.parametrize(
    ("kind", "name"),
    [
        ("file", "../a.h"),
        ("file", "a/../../b.h"),
        ("file", ""),
        ("file", "."),
        ("file", "a/."),
        ("file", "a/.."),
        ("file", "a/"),
        ("dir", ".."),
        ("dir", "a/../.."),
        ("dir", "../a"),
        ("symlink", "../l"),
        ("symlink", ".."),
        ("symlink", ""),
    ],
    ids=[
        "file-climbs",
        "file-climbs-later",
        "file-empty",
        "file-dot",
        "file-trailing-dot",
        "file-trailing-dotdot",
        "file-trailing-slash",
        "dir-dotdot",
        "dir-climbs-last",
        "dir-climbs-first",
        "symlink-climbs",
        "symlink-dotdot",
        "symlink-empty",
    ],
)
def test_merkle_rejects_bad_names(kind: str, name: str) -> None:
    """Names that climb above the root, and file names without a last name, raise."""
    tree = posix_tree()

    with pytest.raises(BadPathError):
        if kind == "file":
            tree.add_file(name, DIGEST_A)
        elif kind == "symlink":
            tree.add_symlink(name, "t")
        else:
            tree.add_directory(name)


def test_merkle_rejects_empty_symlink_target() -> None:
    """A symlink with an empty target raises BadPathError."""
    tree = posix_tree()

    with pytest.raises(BadPathError, match="target is empty"):
        tree.add_symlink("l", "")


def test_merkle_climb_error_names_entry() -> None:
    """The error for a name that climbs above the root names the entry."""
    tree = posix_tree()

    with pytest.raises(BadPathError) as caught:
        tree.add_file("a/../../b.h", DIGEST_A)

    assert str(caught.value) == "add a/../../b.h to input tree: '..' climbs above the root"


# Properties

_FILE_PATHS = st.lists(
    st.builds(
        lambda dirs, leaf: "/".join([*dirs, leaf]),
        st.lists(st.sampled_from(["d1", "d2", "d3"]), max_size=3),
        st.sampled_from(["f1", "f2.h", "F3"]),
    ),
    min_size=1,
    max_size=12,
    unique=True,
)


@given(_FILE_PATHS, st.randoms(use_true_random=False))
def test_merkle_digest_ignores_insertion_order(paths: list[str], rng: random.Random) -> None:
    """The root digest ignores the order of additions and identical repeats."""
    digests = {path: digest_of_bytes(path.encode()).to_proto() for path in paths}
    shuffled = list(paths)
    rng.shuffle(shuffled)

    in_order = posix_tree()
    for path in paths:
        in_order.add_file(path, digests[path])
    reordered = posix_tree()
    for path in shuffled:
        reordered.add_file(path, digests[path])
        reordered.add_file("./" + path, digests[path])

    assert in_order.build().root_digest == reordered.build().root_digest
