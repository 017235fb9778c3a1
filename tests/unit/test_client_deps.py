"""Tests of the launcher's dependency rules: make-rule parsing, flag stripping, outputs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import trio

from gomaproxy.client.deps import (
    DependencyScanError,
    dependency_scan_args,
    expected_output_files,
    parse_make_rule,
    scan_dependencies,
    source_files,
)


def test_parse_make_rule_joins_continuations() -> None:
    """Prerequisites split over backslash-newline lines come back as one sorted list."""
    text = (
        "a.o: a.c /usr/include/stdio.h \\\n /usr/include/x86_64-linux-gnu/bits/types.h \\\n b.h\n"
    )

    prerequisites = parse_make_rule(text)

    assert prerequisites == [
        "/usr/include/stdio.h",
        "/usr/include/x86_64-linux-gnu/bits/types.h",
        "a.c",
        "b.h",
    ]


def test_parse_make_rule_unescapes_spaces_and_dollars() -> None:
    """An escaped space stays inside the path and ``$$`` becomes a single dollar sign."""
    text = "out/a.o: src/my\\ file.c inc/cost$$.h inc/hash\\#.h\n"

    prerequisites = parse_make_rule(text)

    assert prerequisites == ["inc/cost$.h", "inc/hash#.h", "src/my file.c"]


def test_parse_make_rule_deduplicates_across_rules() -> None:
    """A path listed twice, in one rule or in two, appears once."""
    text = "a.o: a.c common.h\nb.o: b.c common.h \\\r\n a.c\n"

    prerequisites = parse_make_rule(text)

    assert prerequisites == ["a.c", "b.c", "common.h"]


def test_parse_make_rule_escaped_space_target() -> None:
    """A target with an escaped space is not mistaken for a prerequisite."""
    text = "my\\ obj.o: x.c\n"

    prerequisites = parse_make_rule(text)

    assert prerequisites == ["x.c"]


def test_parse_make_rule_ignores_lines_without_rule() -> None:
    """Blank lines and text without a rule separator add nothing."""
    assert parse_make_rule("\n\n   \n") == []
    assert parse_make_rule("no rule here\n") == []


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["gcc", "-c", "a.c", "-o", "a.o"], ["gcc", "a.c"]),
        (["gcc", "-c", "a.c", "-oa.o"], ["gcc", "a.c"]),
        (
            ["gcc", "-MD", "-MF", "a.d", "-MT", "a.o", "-MQ", "q", "-MP", "-c", "a.c"],
            ["gcc", "a.c"],
        ),
        (["gcc", "-MMD", "-MFa.d", "-MTa.o", "-MQq", "-c", "a.c"], ["gcc", "a.c"]),
        (["gcc", "-M", "-MM", "-Ifoo", "a.c"], ["gcc", "-Ifoo", "a.c"]),
        (["gcc", "-Wp,-MD,.a.o.d", "-O2", "-c", "a.c"], ["gcc", "-O2", "a.c"]),
        (["gcc", "-MG", "-DX=1", "a.c"], ["gcc", "-MG", "-DX=1", "a.c"]),
    ],
    ids=["separate-o", "joined-o", "separate-dep-flags", "joined-dep-flags", "M-MM",
         "wp-md", "keeps-others"],
)  # fmt: skip
def test_dependency_scan_args_strips_output_flags(args: list[str], expected: list[str]) -> None:
    """Output and dependency flags go with their values, and other args keep their order."""
    assert dependency_scan_args(args) == expected


def test_source_files_skips_flag_values() -> None:
    """A file name that is the value of -include or -o is not a source file."""
    args = ["gcc", "-include", "pre.h", "-o", "x.o", "-x", "c", "-c", "main.c", "lib.cc"]

    assert source_files(args) == ["main.c", "lib.cc"]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["gcc", "-c", "a.c", "-o", "obj/a.o"], ["obj/a.o"]),
        (["gcc", "-c", "a.c", "-oobj/a.o", "-MFobj/a.d"], ["obj/a.o", "obj/a.d"]),
        (["gcc", "-c", "a.c", "-o", "obj/a.o", "-MMD"], ["obj/a.o", "obj/a.d"]),
        (
            ["gcc", "-c", "a.c", "-o", "obj/a.o", "-MD", "-MF", "deps/a.d"],
            ["obj/a.o", "deps/a.d"],
        ),
        (["gcc", "-c", "a.c", "-o", "obj/a.o", "-gsplit-dwarf"], ["obj/a.o", "obj/a.dwo"]),
        (["gcc", "-c", "src/a.c"], ["a.o"]),
        (["gcc", "-S", "src/a.c"], ["a.s"]),
        (["gcc", "-c", "a.c", "-o", "a.o", "-Wp,-MD,.a.o.d"], ["a.o", ".a.o.d"]),
        (["gcc", "-E", "a.c"], []),
    ],
    ids=["o", "joined", "mmd", "md-mf", "split-dwarf", "default-object", "assembler",
         "wp-md", "preprocess-only"],
)  # fmt: skip
def test_expected_output_files_from_args(args: list[str], expected: list[str]) -> None:
    """Outputs come from -o, -MF, -MD/-MMD and -gsplit-dwarf, spelled as in the args."""
    assert expected_output_files(args) == expected


async def test_scan_dependencies_lists_headers(tmp_path: Path) -> None:
    """A real gcc run lists the source, a local header with a space and system headers."""
    (tmp_path / "my dir").mkdir()
    (tmp_path / "my dir" / "local.h").write_text("#define LOCAL 1\n")
    (tmp_path / "a.c").write_text('#include <stddef.h>\n#include "my dir/local.h"\nint x;\n')
    args = ["gcc", "-c", "a.c", "-o", "out/a.o", "-MD", "-MF", "out/a.d"]

    with trio.fail_after(30):
        inputs = await scan_dependencies(args, cwd=str(tmp_path))

    assert "a.c" in inputs
    assert "my dir/local.h" in inputs
    assert any(os.path.isabs(path) and path.endswith("stddef.h") for path in inputs)
    assert inputs == sorted(set(inputs))
    assert not (tmp_path / "out").exists()


async def test_scan_dependencies_reports_compile_error(tmp_path: Path) -> None:
    """A missing header fails the scan with the compiler's status and stderr."""
    (tmp_path / "a.c").write_text('#include "missing.h"\n')

    with trio.fail_after(30), pytest.raises(DependencyScanError) as caught:
        await scan_dependencies(["gcc", "-c", "a.c"], cwd=str(tmp_path))

    assert caught.value.exit_status != 0
    assert b"missing.h" in caught.value.stderr
