"""Input and output files of a gcc or clang compile, taken from its arguments and ``-M``.

The goma client finds inputs with its own include processor.  This launcher runs the
compiler instead: it reruns the compile's arguments without output and dependency
flags, adds ``-M -MF <temporary file>``, and reads the make rule the compiler writes.
That lists the source and every header the preprocessor opened, system headers
included, with paths spelled as the compiler printed them.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import anyio

from gomaproxy.errors import Code, GomaProxyError

# Flags dropped from the dependency run, each alone.
_DROPPED_FLAGS = frozenset({"-c", "-M", "-MM", "-MD", "-MMD", "-MP"})

# Flags dropped together with their value, given as the next argument or joined.
_DROPPED_FLAGS_WITH_VALUE = ("-o", "-MF", "-MT", "-MQ")

# Preprocessor pass-through forms that write a dependency file, as used by kbuild.
_WP_DEPENDENCY_PREFIXES = ("-Wp,-MD,", "-Wp,-MMD,")

# Flags whose value is the next argument when written alone.  Knowing them keeps flag
# values apart from source file names.
_FLAGS_WITH_SEPARATE_VALUE = frozenset(
    {
        "-o", "-MF", "-MT", "-MQ", "-I", "-D", "-U", "-x", "-L", "-T",
        "-include", "-imacros", "-isystem", "-idirafter", "-iquote", "-iprefix",
        "-iwithprefix", "-iwithprefixbefore", "-isysroot", "-imultilib",
        "-Xpreprocessor", "-Xassembler", "-Xlinker", "-Xclang", "-aux-info",
        "-arch", "-target", "--param", "-MJ",
    }
)  # fmt: skip

SOURCE_SUFFIXES = frozenset(
    {
        ".c", ".i", ".cc", ".cp", ".cxx", ".cpp", ".CPP", ".c++", ".C", ".ii",
        ".m", ".mi", ".mm", ".M", ".mii", ".s", ".S", ".sx",
    }
)  # fmt: skip

CXX_SOURCE_SUFFIXES = frozenset(
    {".cc", ".cp", ".cxx", ".cpp", ".CPP", ".c++", ".C", ".ii", ".mm", ".M", ".mii"}
)


class DependencyScanError(GomaProxyError):
    """The compiler's dependency run failed, usually because the source does not compile.

    ``exit_status`` and ``stderr`` are those of the compiler, so that the launcher can
    show the compiler's own diagnostics.
    """

    code = Code.FAILED_PRECONDITION

    def __init__(self, message: str, *, exit_status: int, stderr: bytes) -> None:
        super().__init__(message)
        self.exit_status = exit_status
        self.stderr = stderr


# ---------------------------------------------------------------------------------------
# Argument rules.


def dependency_scan_args(args: Sequence[str]) -> list[str]:
    """Return ``args`` (argv[0] first) without output and dependency flags.

    Dropped: ``-c``, ``-M``, ``-MM``, ``-MD``, ``-MMD``, ``-MP``, ``-Wp,-MD,<file>``,
    ``-Wp,-MMD,<file>``, and ``-o``, ``-MF``, ``-MT``, ``-MQ`` with their value, given
    either as the next argument or joined (``-oa.o``).
    """
    kept: list[str] = list(args[:1])
    skip_value = False

    for arg in args[1:]:
        if skip_value:
            skip_value = False
            continue
        if arg in _DROPPED_FLAGS or arg.startswith(_WP_DEPENDENCY_PREFIXES):
            continue
        if arg in _DROPPED_FLAGS_WITH_VALUE:
            skip_value = True
            continue
        if arg.startswith(_DROPPED_FLAGS_WITH_VALUE):
            continue
        kept.append(arg)

    return kept


def source_files(args: Sequence[str]) -> list[str]:
    """Return the arguments after argv[0] that name source files, in order."""
    sources: list[str] = []
    skip_value = False

    for arg in args[1:]:
        if skip_value:
            skip_value = False
            continue
        if arg in _FLAGS_WITH_SEPARATE_VALUE:
            skip_value = True
            continue
        if arg.startswith("-"):
            continue
        if os.path.splitext(arg)[1] in SOURCE_SUFFIXES:
            sources.append(arg)

    return sources


def expected_output_files(args: Sequence[str]) -> list[str]:
    """Return the files a compile with ``args`` writes, as spelled in the arguments.

    The object file is the ``-o`` value, or ``<source stem>.o`` in the cwd for ``-c``
    without ``-o``.  The dependency file is the ``-MF`` value, the file of
    ``-Wp,-MD,<file>``, or ``<object without suffix>.d`` for ``-MD`` and ``-MMD`` without
    ``-MF``.  With ``-gsplit-dwarf`` the compile also writes ``<object without .o>.dwo``.
    """
    flags = _OutputFlags.parse(args)
    outputs: list[str] = []

    objects = [flags.output] if flags.output else _default_objects(args, flags)
    outputs.extend(objects)

    if flags.dependency_file:
        outputs.append(flags.dependency_file)
    elif flags.writes_dependency_file and objects:
        outputs.append(_replace_suffix(objects[0], ".d"))

    if flags.split_dwarf:
        outputs.extend(_replace_suffix(obj, ".dwo") for obj in objects)

    return list(dict.fromkeys(outputs))


@dataclass
class _OutputFlags:
    output: str | None = None
    dependency_file: str | None = None
    writes_dependency_file: bool = False
    split_dwarf: bool = False
    compile_only: bool = False
    assemble_only: bool = False

    @classmethod
    def parse(cls, args: Sequence[str]) -> _OutputFlags:
        flags = cls()
        index = 1
        while index < len(args):
            arg = args[index]
            following = args[index + 1] if index + 1 < len(args) else None
            index += 1 + flags._apply(arg, following)
        return flags

    def _apply(self, arg: str, following: str | None) -> int:
        """Record one argument and return how many following arguments it consumed."""
        if arg in ("-o", "-MF"):
            self._set_value(arg, following)
            return 1
        if arg.startswith("-o") or arg.startswith("-MF"):
            flag = arg[:2] if arg.startswith("-o") else arg[:3]
            self._set_value(flag, arg[len(flag) :])
            return 0
        if arg.startswith(_WP_DEPENDENCY_PREFIXES):
            self.dependency_file = arg.split(",", 2)[2]
            return 0

        if arg in _FLAGS_WITH_SEPARATE_VALUE:
            return 1

        self.writes_dependency_file |= arg in ("-MD", "-MMD")
        self.split_dwarf |= arg == "-gsplit-dwarf"
        self.compile_only |= arg == "-c"
        self.assemble_only |= arg == "-S"
        return 0

    def _set_value(self, flag: str, value: str | None) -> None:
        if flag == "-o":
            self.output = value
        else:
            self.dependency_file = value


def _default_objects(args: Sequence[str], flags: _OutputFlags) -> list[str]:
    """Return the object files gcc names itself when ``-o`` is absent."""
    if flags.assemble_only:
        suffix = ".s"
    elif flags.compile_only:
        suffix = ".o"
    else:
        return []
    return [_replace_suffix(os.path.basename(source), suffix) for source in source_files(args)]


def _replace_suffix(path: str, suffix: str) -> str:
    stem, _ = os.path.splitext(path)
    return stem + suffix


# ---------------------------------------------------------------------------------------
# Make rule parsing.


def parse_make_rule(text: str) -> list[str]:
    """Return the prerequisites of the make rules in ``text``, de-duplicated and sorted.

    Handles backslash-newline continuations, ``\\ `` for a space and ``\\#`` for a hash
    inside a path, and ``$$`` for a dollar sign.  Targets are dropped.
    """
    joined = text.replace("\\\r\n", " ").replace("\\\n", " ")
    prerequisites: set[str] = set()

    for line in joined.splitlines():
        separator = _rule_separator(line)
        if separator < 0:
            continue
        prerequisites.update(_split_make_words(line[separator + 1 :]))

    return sorted(prerequisites)


def _rule_separator(line: str) -> int:
    """Return the index of the ``:`` that ends the targets, or -1 if there is none."""
    index = 0
    while index < len(line):
        char = line[index]
        if char == "\\":
            index += 2
            continue
        if char == ":" and (index + 1 == len(line) or line[index + 1] in " \t"):
            return index
        index += 1
    return -1


def _split_make_words(text: str) -> list[str]:
    words: list[str] = []
    current: list[str] = []
    index = 0

    while index < len(text):
        char = text[index]
        following = text[index + 1] if index + 1 < len(text) else ""

        if char == "\\" and following in (" ", "\t", "#"):
            current.append(following)
            index += 2
        elif char == "$" and following == "$":
            current.append("$")
            index += 2
        elif char in " \t":
            if current:
                words.append("".join(current))
                current = []
            index += 1
        else:
            current.append(char)
            index += 1

    if current:
        words.append("".join(current))
    return words


# ---------------------------------------------------------------------------------------
# Running the compiler.


async def scan_dependencies(
    args: Sequence[str],
    *,
    cwd: str,
    environ: Mapping[str, str] | None = None,
    compiler_path: str | None = None,
) -> list[str]:
    """Run the compiler's dependency mode and return the input files of the compile.

    Args:
        args: the compile's argv, compiler first.
        cwd: the compile's working directory; the run happens there, so relative paths
            in the result are relative to it.
        environ: the environment to run with; defaults to ``os.environ``.
        compiler_path: the program to execute in place of ``args[0]``, such as the
            absolute path found by the compiler probe.

    Raises:
        DependencyScanError: if the compiler exits with a non-zero status.
    """
    with tempfile.TemporaryDirectory(prefix="gomaproxy-deps-") as scratch:
        rule_file = os.path.join(scratch, "deps.mk")
        command = dependency_scan_args(args)
        if compiler_path:
            command[0] = compiler_path
        command += ["-M", "-MF", rule_file]

        result = await anyio.run_process(
            command,
            stdout=subprocess.DEVNULL,
            check=False,
            cwd=cwd,
            env=dict(os.environ if environ is None else environ),
        )
        if result.returncode != 0:
            raise DependencyScanError(
                f"dependency scan ({' '.join(command)}) exited with status "
                f"{result.returncode}; fix the compile errors shown above",
                exit_status=result.returncode,
                stderr=result.stderr,
            )

        rule_text = await anyio.Path(rule_file).read_text(
            encoding="utf-8", errors="surrogateescape"
        )
        return parse_make_rule(rule_text)
