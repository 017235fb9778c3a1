"""Tests for exec root selection, root-relative names and Windows input de-duplication."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gomaproxy.errors import BadRequest, Code
from gomaproxy.exec.clientpath import PathStyle, UnsupportedPathStyle, path_lib
from gomaproxy.exec.execroot import (
    ExecRoot,
    ExecRootError,
    InvalidCwd,
    OutOfRoot,
    Sysroot,
    common_dir,
    dedupe_windows_inputs,
    derive_exec_root,
    exec_paths,
    root_rel,
    sysroot_dir,
)

POSIX = PathStyle.POSIX
WINDOWS = PathStyle.WINDOWS
CWD = "/home/foo/src/out"


def posix_exec_paths(
    *,
    cwd: str = CWD,
    inputs: list[str] | None = None,
    argv0: str = "/usr/bin/clang",
    args: list[str] | None = None,
    output_files: list[str] | None = None,
    output_dirs: list[str] | None = None,
) -> list[str]:
    return exec_paths(
        POSIX,
        cwd=cwd,
        input_filenames=inputs or [],
        argv0=argv0,
        args=args or [],
        expected_output_files=output_files or [],
        expected_output_dirs=output_dirs or [],
    )


# sysroot_dir


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ([], Sysroot("", True)),
        (["--sysroot=sr"], Sysroot("sr", True)),
        (["--sysroot", "sr"], Sysroot("sr", True)),
        (["-isysroot", "sdk"], Sysroot("sdk", True)),
        (["-isysrootsdk"], Sysroot("sdk", True)),
        (["--sysroot=sr", "-isysroot", "sdk"], Sysroot("sdk", True)),
        (["-isysroot", "sdk", "--sysroot=sr"], Sysroot("sdk", True)),
        (["--sysroot=one", "--sysroot=two"], Sysroot("two", True)),
        (["-isysroot", "one", "-isysroottwo"], Sysroot("two", True)),
        (["-Wno-missing-sysroot", "--sysroot=sr"], Sysroot("sr", False)),
        (["-Wno-missing-sysroot", "-Wall"], Sysroot("", True)),
        (["-Wno-missing-sysroot", "-Wmissing-sysroot"], Sysroot("", True)),
        (["-Wall", "-Wno-missing-sysroot"], Sysroot("", False)),
        (["--sysroot", "-Wno-missing-sysroot"], Sysroot("-Wno-missing-sysroot", True)),
        (["--sysroot"], Sysroot("", True)),
        (["--sysrootsr"], Sysroot("", True)),
    ],
    ids=[
        "none",
        "sysroot-joined",
        "sysroot-separate",
        "isysroot-separate",
        "isysroot-joined",
        "isysroot-wins-after",
        "isysroot-wins-before",
        "last-sysroot-wins",
        "last-isysroot-wins",
        "wno-missing-sysroot",
        "wall-restores-required",
        "wmissing-sysroot-restores-required",
        "last-warning-flag-wins",
        "separate-value-is-taken-verbatim",
        "flag-without-value",
        "sysroot-without-equals-ignored",
    ],
)
def test_sysroot_dir_parses_flags(args: list[str], expected: Sysroot) -> None:
    """sysroot_dir prefers -isysroot, takes the last value and tracks -W[no-]missing-sysroot."""
    assert sysroot_dir(args) == expected


# exec_paths


def test_exec_paths_orders_and_cleans_every_kind() -> None:
    """exec_paths lists cwd, inputs, argv0, sysroot and outputs, each joined to cwd and cleaned."""
    paths = posix_exec_paths(
        cwd="/home/foo/src/out/",
        inputs=["../../base/foo.cc", "/usr/include/stdio.h", "./gen//a.h"],
        argv0="../../third_party/clang/bin/clang",
        args=["--sysroot=../../build/sysroot", "-c", "foo.cc"],
        output_files=["obj/foo.o"],
        output_dirs=["gen/out"],
    )

    assert paths == [
        "/home/foo/src/out",
        "/home/foo/base/foo.cc",
        "/usr/include/stdio.h",
        "/home/foo/src/out/gen/a.h",
        "/home/foo/third_party/clang/bin/clang",
        "/home/foo/build/sysroot",
        "/home/foo/src/out/obj/foo.o",
        "/home/foo/src/out/gen/out",
    ]


def test_exec_paths_cleans_cwd() -> None:
    """The cwd is cleaned before it is used."""
    paths = posix_exec_paths(cwd="/a/b/../c/./")

    assert paths == ["/a/c"]


@pytest.mark.parametrize(
    ("style", "cwd", "message"),
    [
        (POSIX, "home/foo", "cwd is not abs path: home/foo"),
        (POSIX, "", "cwd is not abs path: ."),
        (POSIX, "./a/../b", "cwd is not abs path: b"),
        (WINDOWS, "\\src", "cwd is not abs path: \\src"),
        (WINDOWS, "c:src", "cwd is not abs path: c:src"),
    ],
    ids=[
        "posix-relative",
        "posix-empty",
        "posix-shown-cleaned",
        "windows-no-drive",
        "windows-drive-relative",
    ],
)
def test_exec_paths_rejects_relative_cwd(style: PathStyle, cwd: str, message: str) -> None:
    """A cwd that is not absolute after cleaning raises InvalidCwd, which is a bad request."""
    with pytest.raises(InvalidCwd) as caught:
        exec_paths(style, cwd=cwd, input_filenames=[], argv0="", args=[])

    assert str(caught.value) == message
    assert isinstance(caught.value, BadRequest)


@pytest.mark.parametrize(
    ("argv0", "expected_extra"),
    [
        ("/bin/sh", []),
        ("/sbin/ldconfig", []),
        ("/usr/bin/gcc", []),
        ("/usr/sbin/foo", []),
        ("/usr/local/bin/clang", ["/usr/local/bin/clang"]),
        ("/usr/binx/clang", ["/usr/binx/clang"]),
        ("/opt/bin/../clang/clang", ["/opt/clang/clang"]),
        ("../clang/bin/clang", ["/home/foo/src/clang/bin/clang"]),
        ("", [CWD]),
    ],
    ids=[
        "bin",
        "sbin",
        "usr-bin",
        "usr-sbin",
        "usr-local-bin",
        "similar-prefix",
        "absolute-cleaned",
        "relative-joined",
        "empty-is-cwd",
    ],
)
def test_exec_paths_skips_image_commands(argv0: str, expected_extra: list[str]) -> None:
    """argv0 is left out under /bin/, /sbin/, /usr/bin/ and /usr/sbin/, else it is added."""
    assert posix_exec_paths(argv0=argv0) == [CWD, *expected_extra]


@pytest.mark.parametrize(
    ("args", "expected_extra"),
    [
        (["--sysroot=../sysroot"], ["/home/foo/src/sysroot"]),
        (["--sysroot", "sr"], ["/home/foo/src/out/sr"]),
        (["-isysroot", "sdk"], ["/home/foo/src/out/sdk"]),
        (["-isysrootsdk", "--sysroot=sr"], ["/home/foo/src/out/sdk"]),
        (["--sysroot=/opt/sysroot"], []),
        (["-Wno-missing-sysroot", "--sysroot=sr"], []),
        (["-Wno-missing-sysroot", "-Wall", "--sysroot=sr"], ["/home/foo/src/out/sr"]),
        (["--sysroot="], []),
    ],
    ids=[
        "relative-sysroot",
        "separate-value",
        "isysroot",
        "isysroot-wins",
        "absolute-not-added",
        "not-required",
        "required-again",
        "empty-value",
    ],
)
def test_exec_paths_adds_required_relative_sysroot(
    args: list[str], expected_extra: list[str]
) -> None:
    """A sysroot is added only when the compiler requires it and it is relative."""
    assert posix_exec_paths(args=args) == [CWD, *expected_extra]


def test_exec_paths_windows_joins_relative_names() -> None:
    """Windows relative names are joined to the cwd and cleaned with backslashes."""
    paths = exec_paths(
        WINDOWS,
        cwd="C:/src/out",
        input_filenames=["..\\base\\a.h", "c:\\vs\\include\\stdio.h"],
        argv0="..\\clang\\clang-cl.exe",
        args=["/c", "a.cc"],
        expected_output_files=["obj\\a.obj"],
    )

    assert paths == [
        "C:\\src\\out",
        "C:\\src\\base\\a.h",
        "c:\\vs\\include\\stdio.h",
        "C:\\src\\clang\\clang-cl.exe",
        "C:\\src\\out\\obj\\a.obj",
    ]


# common_dir


@pytest.mark.parametrize(
    ("style", "paths", "expected"),
    [
        (POSIX, [], ""),
        (POSIX, ["/a/b/c"], "/a/b/c"),
        (POSIX, ["/a/b/c", "/a/b/d"], "/a/b"),
        (POSIX, ["/a/b/c", "/a/b/c/d", "/a/b"], "/a/b"),
        (POSIX, ["/a/b", "/c"], "/"),
        (POSIX, ["a/b", "c/d"], ""),
        (POSIX, ["/Src/a", "/src/b"], "/"),
        (POSIX, ["/a/bc", "/a/bd"], "/a"),
        (WINDOWS, ["C:\\Src\\A", "c:\\src\\b"], "C:\\Src"),
        (WINDOWS, ["c:\\src\\a", "C:\\SRC\\a\\b"], "c:\\src\\a"),
        (WINDOWS, ["c:\\a", "d:\\a"], ""),
        (WINDOWS, ["c:\\a", "c:\\b"], "c:\\"),
    ],
    ids=[
        "no-paths",
        "one-path",
        "siblings",
        "nested",
        "only-root",
        "relative-disjoint",
        "posix-case-sensitive",
        "elements-not-characters",
        "windows-case-insensitive",
        "windows-keeps-first-spelling",
        "different-drives",
        "only-drive-root",
    ],
)
def test_common_dir_returns_longest_shared_prefix(
    style: PathStyle, paths: list[str], expected: str
) -> None:
    """common_dir keeps the elements shared by every path, spelled as in the first."""
    assert common_dir(style, paths) == expected


# derive_exec_root


@pytest.mark.parametrize(
    ("exec_root_dir", "allow_chroot", "expected"),
    [
        ("/home/foo/../bar/", False, ExecRoot("/home/foo/../bar/", need_chroot=False)),
        ("/usr", False, ExecRoot("/usr", need_chroot=False)),
        ("/", True, ExecRoot("/", need_chroot=True)),
        ("/", False, ExecRoot("/", need_chroot=False)),
        ("/home", True, ExecRoot("/home", need_chroot=False)),
    ],
    ids=[
        "kept-verbatim",
        "not-checked",
        "root-with-chroot",
        "root-without-chroot",
        "non-root-with-chroot",
    ],
)
def test_derive_exec_root_uses_client_exec_root(
    exec_root_dir: str, allow_chroot: bool, expected: ExecRoot
) -> None:
    """A client exec_root is returned as given and needs chroot only when it is "/"."""
    paths = ["/home/foo/src", "/opt/x"]

    assert derive_exec_root(POSIX, paths, allow_chroot, exec_root_dir) == expected


@pytest.mark.parametrize(
    ("style", "paths", "allow_chroot", "expected"),
    [
        (POSIX, ["/home/foo/src/out", "/home/foo/src/a.cc"], False, "/home/foo/src"),
        (POSIX, ["/home/foo/src/out", "/home/foo/src/a.cc"], True, "/home/foo/src"),
        (POSIX, ["/usr/local/foo", "/usr/local/bar"], False, "/usr/local"),
        (POSIX, ["/usr/lib64/a", "/usr/lib64/b"], False, "/usr/lib64"),
        (POSIX, ["/libx/a", "/libx/b"], False, "/libx"),
        (WINDOWS, ["C:\\Src\\out", "c:\\src\\a.cc"], False, "C:\\Src"),
        (WINDOWS, ["c:\\usr\\a", "c:\\usr\\b"], False, "c:\\usr"),
    ],
    ids=[
        "posix-common",
        "posix-common-chroot-allowed",
        "usr-local",
        "usr-lib64",
        "lib-like-prefix",
        "windows-case-insensitive",
        "windows-not-checked",
    ],
)
def test_derive_exec_root_picks_common_dir(
    style: PathStyle, paths: list[str], allow_chroot: bool, expected: str
) -> None:
    """Without a client exec_root the root is the common dir, without chroot."""
    result = derive_exec_root(style, paths, allow_chroot, "")

    assert result == ExecRoot(expected, need_chroot=False)


@pytest.mark.parametrize(
    "paths",
    [
        ["/home/foo", "/opt/bar"],
        ["/"],
        ["/home/foo", "relative"],
    ],
    ids=["disjoint", "only-root", "relative-path"],
)
def test_derive_exec_root_falls_back_to_chroot(paths: list[str]) -> None:
    """A POSIX request allowed to chroot gets "/" with chroot when the common dir is invalid."""
    assert derive_exec_root(POSIX, paths, True, "") == ExecRoot("/", need_chroot=True)


@pytest.mark.parametrize(
    ("style", "paths", "allow_chroot", "message"),
    [
        (
            POSIX,
            ["/home/a", "/home/a/b", "/opt/c", "/usr/d"],
            False,
            "no common paths in inputs: [/home/a /opt/c]",
        ),
        (POSIX, ["/"], False, "no common paths in inputs: []"),
        (POSIX, ["/", "/a"], False, "no common paths in inputs: [/ /a]"),
        (POSIX, [], False, "no common paths in inputs: []"),
        (POSIX, ["a", "b"], False, "no common paths in inputs: [a b]"),
        (WINDOWS, ["c:\\a", "c:\\b"], False, "no common paths in inputs: [c:\\a c:\\b]"),
        (WINDOWS, ["c:\\a", "d:\\a"], True, "no common paths in inputs: [c:\\a d:\\a]"),
    ],
    ids=[
        "first-failing-pair",
        "single-root-path",
        "cwd-is-root",
        "no-paths",
        "relative-disjoint",
        "windows-drive-root",
        "windows-never-chroots",
    ],
)
def test_derive_exec_root_rejects_missing_common_dir(
    style: PathStyle, paths: list[str], allow_chroot: bool, message: str
) -> None:
    """Without chroot an invalid common dir raises with the first pair that shares nothing."""
    with pytest.raises(ExecRootError) as caught:
        derive_exec_root(style, paths, allow_chroot, "")

    assert str(caught.value) == message
    assert caught.value.code is Code.INVALID_ARGUMENT


@pytest.mark.parametrize(
    "root",
    ["/usr", "/usr/lib", "/lib", "/lib64", "/usr/lib/x86_64-linux-gnu", "/lib/x86_64-linux-gnu"],
    ids=["usr", "usr-lib", "lib", "lib64", "usr-lib-multiarch", "lib-multiarch"],
)
def test_derive_exec_root_rejects_system_library_roots(root: str) -> None:
    """A POSIX root that contains a system library dir raises "bad input root"."""
    paths = [root + "/x/a", root + "/y/b"]

    with pytest.raises(ExecRootError) as caught:
        derive_exec_root(POSIX, paths, True, "")

    assert str(caught.value) == f"bad input root: {root}"


# root_rel

CHROMIUM_ROOT = "/home/foo/src/chromium/src"
CHROMIUM_CWD = "/home/foo/src/chromium/src/out/Release"


@pytest.mark.parametrize(
    ("fname", "expected"),
    [
        ("../../base/foo.cc", "out/Release/../../base/foo.cc"),
        ("gen/a.h", "out/Release/gen/a.h"),
        ("/home/foo/src/chromium/src/base/a.h", "base/a.h"),
        ("/home/foo/src/chromium/src", ""),
        ("/home/foo/src/chromium/src/", ""),
        ("../..", "out/Release/../.."),
        ("a/..", "out/Release/a/.."),
        ("/home/foo/src/chromium/src/..foo", "..foo"),
        ("./x//y.h", "out/Release/x/y.h"),
    ],
    ids=[
        "dotdot-kept",
        "relative",
        "absolute",
        "root-itself",
        "root-trailing-slash",
        "back-to-root",
        "dotdot-inside",
        "dotdot-prefixed-name",
        "dots-and-slashes",
    ],
)
def test_root_rel_keeps_dotdot(fname: str, expected: str) -> None:
    """root_rel joins relative names to cwd without cleaning and strips the root."""
    assert root_rel(POSIX, fname, CHROMIUM_CWD, CHROMIUM_ROOT) == expected


@pytest.mark.parametrize(
    "fname",
    [
        "/usr/include/stdio.h",
        "/home/foo/src/chromium/srcx/a.h",
        "/home/foo",
        "../../../x.h",
        "/home/foo/src/chromium/src/a/../../b.h",
        "/home/foo/src/Chromium/src/a.h",
    ],
    ids=[
        "other-tree",
        "name-prefix-not-dir",
        "fewer-elements",
        "climbs-from-cwd",
        "climbs-from-absolute",
        "posix-case-sensitive",
    ],
)
def test_root_rel_raises_out_of_root(fname: str) -> None:
    """Paths outside the root, or climbing above it with "..", raise OutOfRoot."""
    with pytest.raises(OutOfRoot):
        root_rel(POSIX, fname, CHROMIUM_CWD, CHROMIUM_ROOT)


def test_root_rel_error_names_path_and_root() -> None:
    """The OutOfRoot message names the joined path and the root."""
    with pytest.raises(OutOfRoot) as caught:
        root_rel(POSIX, "/opt/a.h", CHROMIUM_CWD, CHROMIUM_ROOT)

    assert str(caught.value) == "/opt/a.h is out of exec root /home/foo/src/chromium/src"


@pytest.mark.parametrize(
    ("fname", "expected"),
    [
        ("c:\\src\\Base\\A.h", "Base\\A.h"),
        ("..\\base\\a.h", "out\\..\\base\\a.h"),
        ("C:/SRC/out/x.obj", "out\\x.obj"),
    ],
    ids=["case-insensitive-root", "relative-keeps-dotdot", "slashes"],
)
def test_root_rel_windows_ignores_root_case(fname: str, expected: str) -> None:
    """Windows root elements match case-insensitively and the file keeps its spelling."""
    assert root_rel(WINDOWS, fname, "C:\\Src\\out", "C:\\Src") == expected


@pytest.mark.parametrize(
    "fname",
    ["d:\\src\\a.h", "..\\..\\a.h"],
    ids=["other-drive", "climbs"],
)
def test_root_rel_windows_raises_out_of_root(fname: str) -> None:
    """Windows paths on another drive or above the root raise OutOfRoot."""
    with pytest.raises(OutOfRoot):
        root_rel(WINDOWS, fname, "C:\\Src\\out", "C:\\Src")


def test_root_rel_under_chroot_root() -> None:
    """With root "/" every absolute path becomes relative to it."""
    assert root_rel(POSIX, "/usr/include/stdio.h", "/home/foo", "/") == "usr/include/stdio.h"


def test_root_rel_rejects_unknown_style() -> None:
    """An unknown style raises UnsupportedPathStyle, which callers must not skip."""
    with pytest.raises(UnsupportedPathStyle) as caught:
        root_rel("mac", "a", "/x", "/")  # type: ignore[arg-type]  # a wrong value on purpose

    assert not isinstance(caught.value, OutOfRoot)


_NAME = st.sampled_from(["a", "b", "..", ".", "c.h"])


@given(st.lists(_NAME, min_size=1, max_size=6))
def test_root_rel_result_resolves_to_same_file(names: list[str]) -> None:
    """Joining the root and the root_rel result names the same file as joining cwd and name."""
    lib = path_lib(POSIX)
    fname = "/".join(names)

    try:
        relative = root_rel(POSIX, fname, CHROMIUM_CWD, CHROMIUM_ROOT)
    except OutOfRoot:
        return

    assert lib.clean(lib.join(CHROMIUM_ROOT, relative)) == lib.clean(lib.join(CHROMIUM_CWD, fname))


# dedupe_windows_inputs


@pytest.mark.parametrize(
    ("names", "cwd", "expected"),
    [
        (["Foo", "foo"], "c:\\b\\w", ["Foo"]),
        (["foo", "Foo"], "c:\\b\\w", ["Foo"]),
        (["foo", "c:\\b\\w\\Foo"], "c:\\b\\w", ["foo"]),
        (["c:\\b\\w\\Foo", "foo"], "c:\\b\\w", ["foo"]),
        (["b", "A", "a", "B"], "c:\\w", ["B", "A"]),
        (["a.h", "b.h"], "c:\\w", ["a.h", "b.h"]),
        (["x\\..\\a.h", "a.h"], "c:\\w", ["x\\..\\a.h", "a.h"]),
        (["a\\b", "C:\\W\\A\\B"], "c:\\w", ["a\\b"]),
        ([], "c:\\w", []),
    ],
    ids=[
        "upper-first-kept",
        "later-upper-replaces",
        "shorter-relative-kept",
        "shorter-relative-replaces-absolute",
        "keeps-first-positions",
        "distinct-names",
        "unclean-spellings-differ",
        "cwd-case-ignored",
        "empty",
    ],
)
def test_dedupe_windows_inputs_keeps_shortest_spelling(
    names: list[str], cwd: str, expected: list[str]
) -> None:
    """Case-insensitive duplicates collapse into the shortest, then smallest, spelling."""
    assert dedupe_windows_inputs(names, cwd, str) == expected


def test_dedupe_windows_inputs_returns_original_items() -> None:
    """The function keeps whole input items, found through the filename callable."""
    inputs = [("Foo", 1), ("bar", 2), ("foo", 3)]

    deduped = dedupe_windows_inputs(inputs, "c:\\w", lambda item: item[0])

    assert deduped == [("Foo", 1), ("bar", 2)]


@pytest.mark.parametrize(
    ("paths", "allow_chroot", "exec_root_dir", "expected"),
    [
        (["c:\\a\\b", "d:\\x"], False, "C:\\b\\w", ExecRoot("C:\\b\\w", need_chroot=False)),
        (["c:\\a\\b", "d:\\x"], True, "/", ExecRoot("/", need_chroot=True)),
        (["c:\\lib\\a", "c:\\lib\\b"], False, "", ExecRoot("c:\\lib", need_chroot=False)),
        (["c:\\lib64\\a", "c:\\lib64\\b"], True, "", ExecRoot("c:\\lib64", need_chroot=False)),
    ],
    ids=[
        "client-root-kept",
        "client-root-slash-chroots-by-name",
        "lib-root-not-checked",
        "lib64-root-not-checked",
    ],
)
def test_derive_exec_root_windows_rules(
    paths: list[str], allow_chroot: bool, exec_root_dir: str, expected: ExecRoot
) -> None:
    """Windows requests take a client exec_root as given and skip the library-dir check."""
    assert derive_exec_root(WINDOWS, paths, allow_chroot, exec_root_dir) == expected
