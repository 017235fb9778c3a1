"""Tests for the POSIX and Windows client path functions."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gomaproxy.exec.clientpath import (
    PathStyle,
    PosixPathLib,
    RelPathError,
    UnsupportedPathStyle,
    WindowsPathLib,
    path_lib,
)

POSIX = path_lib(PathStyle.POSIX)
WINDOWS = path_lib(PathStyle.WINDOWS)


# POSIX style


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/a", True),
        ("/", True),
        ("a", False),
        ("./a", False),
        ("", False),
    ],
    ids=["absolute", "root", "relative", "dot-relative", "empty"],
)
def test_posix_is_abs_requires_leading_slash(path: str, expected: bool) -> None:
    """A POSIX path is absolute exactly when it starts with a slash."""
    assert POSIX.is_abs(path) is expected


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("", []),
        (".", ["."]),
        ("/", ["/"]),
        ("///", ["/"]),
        ("/.", ["/", "."]),
        ("////.", ["/", "."]),
        (".////", ["."]),
        ("a/b/", ["a", "b", "."]),
        ("a//", ["a", "."]),
        ("a/./b", ["a", "b"]),
        ("a/../b", ["a", "..", "b"]),
        ("/a/b", ["/", "a", "b"]),
        ("./a", ["a"]),
        ("a/.", ["a", "."]),
    ],
    ids=[
        "empty",
        "dot",
        "root",
        "only-slashes",
        "root-dot",
        "slashes-dot",
        "dot-slashes",
        "trailing-slash",
        "double-trailing-slash",
        "inner-dot",
        "inner-dotdot",
        "absolute",
        "leading-dot",
        "trailing-dot",
    ],
)
def test_posix_split_elem_marks_root_and_trailing_dot(path: str, expected: list[str]) -> None:
    """split_elem returns a leading "/" for the root and a final "." for a trailing slash."""
    assert POSIX.split_elem(path) == expected


@pytest.mark.parametrize(
    ("elems", "expected"),
    [
        ((), ""),
        (("a", "../b"), "a/../b"),
        (("//", "a"), "/a"),
        (("a/", ""), "a"),
        (("", ""), ""),
        ((".",), ""),
        (("/",), "/"),
        (("a", "b"), "a/b"),
        (("/a", "b/"), "/a/b"),
        (("/home/foo", "../bar/./x.h"), "/home/foo/../bar/x.h"),
    ],
    ids=[
        "no-args",
        "keeps-dotdot",
        "collapses-slashes",
        "drops-empty-and-trailing-slash",
        "only-empty",
        "only-dot",
        "root",
        "two-names",
        "absolute-trailing-slash",
        "drops-dot-keeps-dotdot",
    ],
)
def test_posix_join_never_cleans_dotdot(elems: tuple[str, ...], expected: str) -> None:
    """join skips empty parts and "." elements but keeps every "..", unlike posixpath."""
    assert POSIX.join(*elems) == expected


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("", "."),
        ("/../abc", "/abc"),
        ("abc/def/../../..", ".."),
        ("abc/../../././../def", "../../def"),
        ("/", "/"),
        ("/.", "/"),
        ("a/b/", "a/b"),
        ("a//b/./c", "a/b/c"),
        ("/a/b/../../..", "/"),
    ],
    ids=[
        "empty",
        "dotdot-after-root",
        "dotdot-beyond-relative-start",
        "mixed-dots",
        "root",
        "root-dot",
        "trailing-slash",
        "slashes-and-dot",
        "absolute-past-root",
    ],
)
def test_posix_clean_resolves_dots(path: str, expected: str) -> None:
    """clean resolves "." and ".." lexically and keeps a leading ".." of a relative path."""
    assert POSIX.clean(path) == expected


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("x/", "x"),
        ("/.", "/"),
        ("/foo", "/"),
        ("", "."),
        ("a", "."),
        ("/", "/"),
        ("a/b/../c", "a/b/.."),
        ("/a/b", "/a"),
    ],
    ids=[
        "trailing-slash",
        "root-dot",
        "file-in-root",
        "empty",
        "single-name",
        "root",
        "keeps-dotdot",
        "absolute",
    ],
)
def test_posix_dir_drops_last_element(path: str, expected: str) -> None:
    """dir returns everything but the last element and never resolves ".."."""
    assert POSIX.dir(path) == expected


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("x/", "."),
        ("/", "/"),
        ("", "."),
        ("a/b", "b"),
        ("a/..", ".."),
    ],
    ids=["trailing-slash", "root", "empty", "nested", "dotdot"],
)
def test_posix_base_returns_last_element(path: str, expected: str) -> None:
    """base returns the last split element, "." for a trailing slash and "/" for the root."""
    assert POSIX.base(path) == expected


@pytest.mark.parametrize(
    ("base", "target", "expected"),
    [
        ("a/b", "a/b/../c", "../c"),
        ("a/b/c/d/", "a/b", "../.."),
        (".", "..", ".."),
        ("/a/b", "/a/c/d", "../c/d"),
        ("a", "a", "."),
        ("/", "/usr/lib", "usr/lib"),
        ("../x", "y", "../../y"),
    ],
    ids=[
        "target-with-dotdot",
        "target-is-ancestor",
        "dot-to-parent",
        "absolute-siblings",
        "same-path",
        "from-root",
        "base-mixes-dotdot-and-name",
    ],
)
def test_posix_rel_computes_relative_path(base: str, target: str, expected: str) -> None:
    """rel returns one ".." per remaining base element followed by the remaining target."""
    assert POSIX.rel(base, target) == expected


@pytest.mark.parametrize(
    ("base", "target"),
    [
        ("..", "."),
        ("../..", "a"),
        ("a", "/a"),
        ("/a", "a"),
    ],
    ids=["base-only-dotdot", "base-two-dotdots", "relative-to-absolute", "absolute-to-relative"],
)
def test_posix_rel_rejects_impossible_pairs(base: str, target: str) -> None:
    """rel raises when absoluteness differs or the base remainder is only ".."."""
    with pytest.raises(RelPathError):
        POSIX.rel(base, target)


def test_posix_rel_error_names_both_paths() -> None:
    """The rel error message names the target and the base."""
    with pytest.raises(RelPathError, match=r"make /a relative to a"):
        POSIX.rel("a", "/a")


def test_posix_to_posix_returns_path_unchanged() -> None:
    """to_posix leaves a POSIX path as it is."""
    assert POSIX.to_posix("/a/b\\c") == "/a/b\\c"


# Windows style


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("c:\\a", True),
        ("C:/a", True),
        ("Z:\\", True),
        ("\\Windows", False),
        ("c:", False),
        ("c:a\\b", False),
        ("1:\\a", False),
        ("", False),
    ],
    ids=[
        "drive-backslash",
        "drive-slash",
        "drive-root",
        "no-drive",
        "bare-drive",
        "drive-relative",
        "digit-drive",
        "empty",
    ],
)
def test_windows_is_abs_requires_drive_and_separator(path: str, expected: bool) -> None:
    """A Windows path is absolute only with a drive letter, a colon and a separator."""
    assert WINDOWS.is_abs(path) is expected


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("c:/a/b", ["c:\\", "a", "b"]),
        ("c:a/b", ["c:", "a", "b"]),
        ("c:\\\\", ["c:\\"]),
        ("c:\\\\\\\\", ["c:\\"]),
        ("\\a\\b", ["\\", "a", "b"]),
        ("c:", ["c:"]),
        ("", []),
        ("a\\b\\", ["a", "b", "."]),
        ("c:\\a\\..\\b", ["c:\\", "a", "..", "b"]),
    ],
    ids=[
        "absolute-slashes",
        "drive-relative",
        "drive-two-backslashes",
        "drive-four-backslashes",
        "rooted-no-drive",
        "bare-drive",
        "empty",
        "trailing-backslash",
        "keeps-dotdot",
    ],
)
def test_windows_split_elem_keeps_drive_first(path: str, expected: list[str]) -> None:
    """split_elem puts "<drive>\\" or "<drive>" as the first element."""
    assert WINDOWS.split_elem(path) == expected


@pytest.mark.parametrize(
    ("elems", "expected"),
    [
        (("C:\\Windows\\", "System32"), "C:\\Windows\\System32"),
        (("C:", "a"), "C:a"),
        (("C:.", "a"), "C:a"),
        (("\\a", "b", "c"), "\\a\\b\\c"),
        (("\\\\a", "b", "c"), "\\a\\b\\c"),
        (("a", "..\\b"), "a\\..\\b"),
        (("c:\\", "a", "b"), "c:\\a\\b"),
        ((), ""),
    ],
    ids=[
        "drive-dir-and-name",
        "bare-drive",
        "drive-dot",
        "rooted",
        "double-backslash",
        "keeps-dotdot",
        "split-elements",
        "no-args",
    ],
)
def test_windows_join_keeps_drive_and_dotdot(elems: tuple[str, ...], expected: str) -> None:
    """join keeps the first part's drive, writes backslashes and never resolves ".."."""
    assert WINDOWS.join(*elems) == expected


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("c:", "c:."),
        ("c:\\abc\\def\\..\\..", "c:\\"),
        ("c:abc\\..\\..\\.\\.\\..\\def", "c:..\\..\\def"),
        ("c:/a/./b", "c:\\a\\b"),
        ("", "."),
    ],
    ids=["bare-drive", "back-to-drive-root", "drive-relative-dotdots", "slashes", "empty"],
)
def test_windows_clean_resolves_dots_after_drive(path: str, expected: str) -> None:
    """clean keeps the drive and cleans the rest with the POSIX rule."""
    assert WINDOWS.clean(path) == expected


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("c:\\", "c:\\"),
        ("c:a\\b", "c:a"),
        ("c:\\a\\b", "c:\\a"),
        ("c:", "c:"),
        ("c:a", "c:."),
        ("", "."),
        ("\\a\\b", "\\a"),
    ],
    ids=[
        "drive-root",
        "drive-relative",
        "absolute",
        "bare-drive",
        "drive-relative-name",
        "empty",
        "rooted-no-drive",
    ],
)
def test_windows_dir_keeps_drive(path: str, expected: str) -> None:
    """dir drops the last element and keeps the drive."""
    assert WINDOWS.dir(path) == expected


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("c:\\", "\\"),
        ("c:\\a\\b", "b"),
        ("c:", "."),
        ("", "."),
        ("a\\b\\", "."),
    ],
    ids=["drive-root", "absolute", "bare-drive", "empty", "trailing-backslash"],
)
def test_windows_base_drops_drive(path: str, expected: str) -> None:
    """base returns the last element without the drive, and "\\" for a drive root."""
    assert WINDOWS.base(path) == expected


@pytest.mark.parametrize(
    ("base", "target", "expected"),
    [
        ("C:\\a\\b\\c", "\\a\\b\\d", "..\\d"),
        ("c:\\a", "c:\\a\\b\\c", "b\\c"),
        ("c:/a/b", "c:\\a\\b\\..\\c", "..\\c"),
        ("a\\b", "a\\c", "..\\c"),
    ],
    ids=["target-inherits-drive", "descendant", "mixed-separators", "relative"],
)
def test_windows_rel_computes_relative_path(base: str, target: str, expected: str) -> None:
    """rel lends the base drive to a drive-less target and returns backslashes."""
    assert WINDOWS.rel(base, target) == expected


@pytest.mark.parametrize(
    ("base", "target"),
    [
        ("C:\\Projects", "c:\\projects"),
        ("c:\\a", "d:\\a"),
        ("c:\\a", "b"),
        ("a", "c:\\a"),
        ("..", "."),
    ],
    ids=[
        "drive-case-differs",
        "drive-differs",
        "absolute-to-relative",
        "relative-to-absolute",
        "base-only-dotdot",
    ],
)
def test_windows_rel_rejects_impossible_pairs(base: str, target: str) -> None:
    """rel raises on different drives (case-sensitive) or different absoluteness."""
    with pytest.raises(RelPathError):
        WINDOWS.rel(base, target)


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("c:\\a\\b\\c", "/a/b/c"),
        ("c:a\\b\\c", "a/b/c"),
        ("a\\b", "a/b"),
    ],
    ids=["absolute", "drive-relative", "no-drive"],
)
def test_windows_to_posix_drops_drive(path: str, expected: str) -> None:
    """to_posix drops the drive and turns backslashes into slashes."""
    assert WINDOWS.to_posix(path) == expected


# Style selection


@pytest.mark.parametrize(
    ("style", "expected_type", "separator"),
    [
        (PathStyle.POSIX, PosixPathLib, "/"),
        (PathStyle.WINDOWS, WindowsPathLib, "\\"),
    ],
    ids=["posix", "windows"],
)
def test_path_lib_returns_style_functions(
    style: PathStyle, expected_type: type, separator: str
) -> None:
    """path_lib returns the functions of the requested style."""
    lib = path_lib(style)

    assert isinstance(lib, expected_type)
    assert lib.style is style
    assert lib.separator == separator


def test_path_lib_rejects_unknown_style() -> None:
    """path_lib raises for a value that is not a PathStyle."""
    with pytest.raises(UnsupportedPathStyle, match="'mac'"):
        path_lib("mac")  # type: ignore[arg-type]  # a wrong value on purpose


# Properties

_POSIX_NAME = st.sampled_from(["a", "b", "c.h", ".", "..", ""])
_POSIX_PATH = st.builds(
    lambda leading, names: leading + "/".join(names),
    st.sampled_from(["", "/", "//"]),
    st.lists(_POSIX_NAME, max_size=6),
)
_WINDOWS_PATH = st.builds(
    lambda drive, leading, names: drive + leading + "\\".join(names),
    st.sampled_from(["", "c:", "D:"]),
    st.sampled_from(["", "\\", "/"]),
    st.lists(_POSIX_NAME, max_size=6),
)


@given(_POSIX_PATH)
def test_posix_clean_is_idempotent(path: str) -> None:
    """Cleaning a cleaned POSIX path changes nothing."""
    assert POSIX.clean(POSIX.clean(path)) == POSIX.clean(path)


@given(_WINDOWS_PATH)
def test_windows_clean_is_idempotent(path: str) -> None:
    """Cleaning a cleaned Windows path changes nothing."""
    assert WINDOWS.clean(WINDOWS.clean(path)) == WINDOWS.clean(path)


@given(_POSIX_PATH, _POSIX_PATH)
def test_posix_join_keeps_every_dotdot(left: str, right: str) -> None:
    """join keeps the ".." elements of both parts."""
    joined = POSIX.join(left, right)
    expected = POSIX.split_elem(left).count("..") + POSIX.split_elem(right).count("..")

    assert POSIX.split_elem(joined).count("..") == expected


@given(_POSIX_PATH, _POSIX_PATH)
def test_posix_rel_joined_to_base_reaches_target(base: str, target: str) -> None:
    """For absolute paths, base joined with rel(base, target) cleans to the cleaned target."""
    base = "/" + base
    target = "/" + target

    relative = POSIX.rel(base, target)

    assert POSIX.clean(POSIX.join(base, relative)) == POSIX.clean(target)
