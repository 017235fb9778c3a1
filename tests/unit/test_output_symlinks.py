"""Output symlinks of an ActionResult become the files they point to."""

from __future__ import annotations

import pytest

from gomaproxy.digest import DigestKey
from gomaproxy.exec.response import MAX_SYMLINK_HOPS, OutputFile, resolve_output_symlinks

OBJ = DigestKey("a" * 64, 10)
DWO = DigestKey("b" * 64, 20)
TOOL = DigestKey("c" * 64, 30)
FILES: list[OutputFile] = [
    ("obj/a.o", OBJ, False),
    ("obj/a.dwo", DWO, False),
    ("gen/bin/tool", TOOL, True),
    ("gen/bin/sub/data", OBJ, False),
]


@pytest.mark.parametrize(
    ("symlinks", "expected"),
    [
        ([("a.o", "obj/a.o")], [("a.o", OBJ, False)]),
        ([("obj/b.o", "a.o")], [("obj/b.o", OBJ, False)]),
        ([("obj/x/y.o", "../a.o")], [("obj/x/y.o", OBJ, False)]),
        ([("obj/c.o", "./a.dwo")], [("obj/c.o", DWO, False)]),
        ([("run", "gen/bin/tool")], [("run", TOOL, True)]),
        ([("one", "two"), ("two", "obj/a.o")], [("one", OBJ, False), ("two", OBJ, False)]),
        (
            [("bin", "gen/bin")],
            [("bin/tool", TOOL, True), ("bin/sub/data", OBJ, False)],
        ),
        ([("gen/bin/again", "tool")], [("gen/bin/again", TOOL, True)]),
    ],
    ids=[
        "to-output-file",
        "sibling",
        "dotdot-inside-result",
        "dot-segment",
        "keeps-executable-bit",
        "chain",
        "directory-symlink",
        "inside-output-directory",
    ],
)
def test_resolve_output_symlinks_to_files(
    symlinks: list[tuple[str, str]], expected: list[OutputFile]
) -> None:
    """A symlink to a file or directory of the result is sent as that content."""
    resolved, errors = resolve_output_symlinks(FILES, symlinks)

    assert resolved == expected
    assert errors == []


@pytest.mark.parametrize(
    "symlinks",
    [
        [("a.o", "/usr/lib/a.o")],
        [("a.o", "missing.o")],
        [("a.o", "../outside/a.o")],
        [("loop1", "loop2"), ("loop2", "loop1")],
        [("obj/b.o", "obj/a.o")],
    ],
    ids=["absolute", "not-an-output", "leaves-working-dir", "loop", "relative-to-own-dir"],
)
def test_resolve_output_symlinks_reports_unresolvable(symlinks: list[tuple[str, str]]) -> None:
    """A symlink that leads nowhere in the result is an error naming path and target."""
    resolved, errors = resolve_output_symlinks(FILES, symlinks)

    assert resolved == []
    assert len(errors) == len(symlinks)
    path, target = symlinks[0]
    assert errors[0].startswith(f"output symlink {path} -> {target} does not point")


def test_resolve_output_symlinks_stops_long_chains() -> None:
    """A chain longer than MAX_SYMLINK_HOPS is unresolvable even if it ends at a file."""
    chain = [(f"l{i}", f"l{i + 1}") for i in range(MAX_SYMLINK_HOPS)]
    chain.append((f"l{MAX_SYMLINK_HOPS}", "obj/a.o"))

    resolved, errors = resolve_output_symlinks(FILES, chain)

    assert ("l0", OBJ, False) not in resolved
    assert ("l1", OBJ, False) in resolved
    assert len(errors) == 1
