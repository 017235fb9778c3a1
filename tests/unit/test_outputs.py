"""Tests for reading output files and directories from compiler command lines."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gomaproxy.exec.outputs import (
    clangcl_outputs,
    command_output_dirs,
    command_output_files,
    gcc_outputs,
    javac_output_dirs,
)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ([], []),
        (["-c", "a.cc", "-o", "a.o"], ["a.o"]),
        (["-c", "a.cc", "-oa.o"], ["a.o"]),
        (["-o", "a.o", "-o", "b.o"], ["b.o"]),
        (["-oa.o", "-o", "b.o"], ["b.o"]),
        (["-o", "a.o", "-ob.o"], ["b.o"]),
        (["-MF", "a.d", "-o", "a.o"], ["a.d", "a.o"]),
        (["-o", "a.o", "-MFa.d"], ["a.d", "a.o"]),
        (["-MF", "a.d", "-MFb.d", "-MF", "c.d"], ["a.d", "b.d", "c.d"]),
        (["-MF", "a.d"], ["a.d"]),
        (["-gsplit-dwarf", "-o", "obj/a.o"], ["obj/a.o", "obj/a.dwo"]),
        (["-o", "obj/a.o", "-gsplit-dwarf"], ["obj/a.o", "obj/a.dwo"]),
        (["-gsplit-dwarf", "-o", "a.obj"], ["a.obj", "a.obj.dwo"]),
        (["-MF", "a.d", "-gsplit-dwarf", "-o", "a.o"], ["a.d", "a.o", "a.dwo"]),
        (["-gsplit-dwarf", "-c", "a.cc"], []),
        (["-gsplit-dwarf=single", "-o", "a.o"], ["a.o"]),
        (["-c", "a.cc"], []),
        (["-MD", "-c", "a.cc"], []),
        (["-MMD", "-MF", "a.d", "-c", "a.cc"], ["a.d"]),
        (["-o"], []),
        (["-MF"], []),
        (["-o", ""], []),
        (["-o", "-o", "a.o"], ["a.o"]),
        (["-o", "-MF", "x.d"], ["-MF"]),
        (["-MF", "-o", "a.o", "b.d"], ["b.d", "a.o"]),
        (["-o", "a.o", "-objc-flag"], ["bjc-flag"]),
    ],
    ids=[
        "no-args",
        "separate-o",
        "joined-o",
        "last-o-wins",
        "joined-then-separate",
        "separate-then-joined",
        "dep-file-first",
        "dep-file-first-when-later",
        "several-dep-files",
        "dep-file-only",
        "split-dwarf",
        "split-dwarf-after-o",
        "split-dwarf-without-dot-o",
        "dep-object-dwo-order",
        "split-dwarf-without-object",
        "split-dwarf-variant-ignored",
        "no-implicit-object",
        "no-implicit-dep-file",
        "md-with-mf",
        "o-without-value",
        "mf-without-value",
        "empty-object",
        "pending-o-after-o",
        "pending-o-takes-flag",
        "pending-mf-waits-past-o",
        "o-prefix-takes-any-flag",
    ],
)
def test_gcc_outputs_reads_flags(args: list[str], expected: list[str]) -> None:
    """gcc_outputs returns dep files, then the last object, then its .dwo file."""
    assert gcc_outputs(args) == expected


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ([], []),
        (["/c", "a.cc", "/Foa.obj"], ["a.obj"]),
        (["-c", "a.cc", "-Foa.obj"], ["a.obj"]),
        (["/o", "a.exe"], ["a.exe"]),
        (["-o", "a.exe"], ["a.exe"]),
        (["/oa.exe"], ["a.exe"]),
        (["-oa.exe"], ["a.exe"]),
        (["/Fia.i", "/Faa.asm", "/Fea.exe", "/Fpa.pch"], ["a.i", "a.asm", "a.exe", "a.pch"]),
        (["/Foa.obj", "/Fob.obj"], ["a.obj", "b.obj"]),
        (["/Fda.pdb"], []),
        (["/FIforce.h"], []),
        (["/Fo"], []),
        (["/o"], []),
        (["/o", "/Foa.obj"], ["/Foa.obj"]),
        (["-ob"], ["b"]),
        (["/Fo:a.obj"], [":a.obj"]),
        (["a.cc", "/c"], []),
    ],
    ids=[
        "no-args",
        "slash-fo",
        "dash-fo",
        "slash-o-separate",
        "dash-o-separate",
        "slash-o-joined",
        "dash-o-joined",
        "other-f-outputs",
        "every-output-kept",
        "pdb-not-output",
        "force-include-not-output",
        "fo-without-value",
        "o-without-value",
        "pending-o-takes-flag",
        "one-letter-value",
        "colon-kept",
        "no-output-flags",
    ],
)
def test_clangcl_outputs_reads_flags(args: list[str], expected: list[str]) -> None:
    """clangcl_outputs returns every /o, -o, /Fo, /Fi, /Fa, /Fe and /Fp value in order."""
    assert clangcl_outputs(args) == expected


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ([], []),
        (["-d", "out", "-s", "gen", "A.java"], ["out", "gen"]),
        (["-s", "gen"], ["gen"]),
        (["-d"], []),
        (["-d", "-s", "x"], ["-s"]),
        (["-classpath", "a.jar", "A.java"], []),
        (["-dout"], []),
    ],
    ids=[
        "no-args",
        "classes-and-sources",
        "sources-only",
        "flag-without-value",
        "pending-takes-flag",
        "no-dir-flags",
        "joined-not-supported",
    ],
)
def test_javac_output_dirs_reads_flags(args: list[str], expected: list[str]) -> None:
    """javac_output_dirs returns the argument after each -d and -s."""
    assert javac_output_dirs(args) == expected


GCC_ARGS = ["-c", "a.cc", "-o", "a.o"]
CLANG_CL_ARGS = ["/c", "a.cc", "/Foa.obj"]
JAVAC_ARGS = ["-d", "classes", "A.java"]


@pytest.mark.parametrize(
    ("compiler", "args", "files", "dirs", "expected"),
    [
        ("gcc", GCC_ARGS, ["x.o"], [], ["x.o"]),
        ("gcc", GCC_ARGS, [], ["gen"], []),
        ("gcc", GCC_ARGS, [], [], ["a.o"]),
        ("g++", GCC_ARGS, [], [], ["a.o"]),
        ("clang", GCC_ARGS, [], [], ["a.o"]),
        ("clang++", GCC_ARGS, [], [], ["a.o"]),
        ("clang-cl", CLANG_CL_ARGS, [], [], ["a.obj"]),
        ("javac", JAVAC_ARGS, [], [], []),
        ("cl.exe", CLANG_CL_ARGS, [], [], []),
        ("x86_64-linux-gnu-gcc", GCC_ARGS, [], [], []),
    ],
    ids=[
        "expected-files-win",
        "expected-dirs-only-means-no-files",
        "gcc",
        "gxx",
        "clang",
        "clangxx",
        "clang-cl",
        "javac-has-no-files",
        "unknown-compiler",
        "prefixed-name-is-unknown",
    ],
)
def test_command_output_files_picks_source(
    compiler: str, args: list[str], files: list[str], dirs: list[str], expected: list[str]
) -> None:
    """Expected lists win over flags, and flags are read only for known compilers."""
    assert command_output_files(compiler, args, files, dirs) == expected


@pytest.mark.parametrize(
    ("compiler", "args", "files", "dirs", "expected"),
    [
        ("javac", JAVAC_ARGS, [], ["gen"], ["gen"]),
        ("javac", JAVAC_ARGS, ["A.class"], [], []),
        ("javac", JAVAC_ARGS, [], [], ["classes"]),
        ("gcc", GCC_ARGS, [], [], []),
        ("clang-cl", CLANG_CL_ARGS, [], [], []),
    ],
    ids=[
        "expected-dirs-win",
        "expected-files-only-means-no-dirs",
        "javac",
        "gcc-has-no-dirs",
        "clang-cl-has-no-dirs",
    ],
)
def test_command_output_dirs_picks_source(
    compiler: str, args: list[str], files: list[str], dirs: list[str], expected: list[str]
) -> None:
    """Expected lists win over flags, and only javac flags name output directories."""
    assert command_output_dirs(compiler, args, files, dirs) == expected


_ARG = st.sampled_from(["-c", "a.cc", "-o", "-MF", "x.d", "-gsplit-dwarf", "-ob.o", "-MFy.d"])


@given(st.lists(_ARG, max_size=10))
def test_gcc_outputs_trailing_object_ends_list(args: list[str]) -> None:
    """A final "-o z.o" always names the object, and only its .dwo may follow it."""
    outputs = gcc_outputs([*args, "-o", "z.o"])

    assert "z.o" in outputs
    assert outputs[outputs.index("z.o") + 1 :] in ([], ["z.dwo"])
