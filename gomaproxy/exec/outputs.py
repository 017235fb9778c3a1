"""Output files and directories of a compile, read from its command line.

The REAPI Command must list every output, but goma clients only sometimes send
``expected_output_files`` and ``expected_output_dirs``.  Without them the outputs
come from the compiler flags.  Only explicit flags count: ``-c`` without ``-o`` and
``-MD`` without ``-MF`` name no output, so such files are not fetched from the worker.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = [
    "CLANG_CL_COMPILERS",
    "GCC_COMPILERS",
    "JAVAC_COMPILERS",
    "clangcl_outputs",
    "command_output_dirs",
    "command_output_files",
    "gcc_outputs",
    "javac_output_dirs",
]

# Compiler names as in the command selector of the request's command_spec.
GCC_COMPILERS = frozenset({"gcc", "g++", "clang", "clang++"})
CLANG_CL_COMPILERS = frozenset({"clang-cl"})
JAVAC_COMPILERS = frozenset({"javac"})

# The letters after /F that name an output file in clang-cl: /Fo object, /Fi
# preprocessed source, /Fa assembly, /Fe executable, /Fp precompiled header.
# /Fd (the PDB) is left out, as in goma-server, because clang-cl writes no PDB
# when it compiles.
_CLANG_CL_F_OUTPUT_LETTERS = frozenset("oiaep")


def gcc_outputs(args: Sequence[str]) -> list[str]:
    """Return the outputs named by gcc or clang arguments.

    ``-o X`` and ``-oX`` name the object (the last one wins), and ``-MF X`` and
    ``-MFX`` each name a dependency file.  With ``-gsplit-dwarf`` the object's name
    without a trailing ``.o``, plus ``.dwo``, is an output too.  The order is the
    dependency files, then the object, then the ``.dwo`` file.

    Each argument is checked in this order, as goma-server does: ``-o``, the value
    of a pending ``-o``, ``-o`` prefix, ``-gsplit-dwarf``, ``-MF``, the value of a
    pending ``-MF``, ``-MF`` prefix.  So the value of ``-o`` is taken even when it
    looks like a flag, and a pending ``-MF`` waits past an ``-o`` and its value.
    """
    dep_files: list[str] = []
    object_file = ""
    object_pending = False
    dep_file_pending = False
    split_dwarf = False

    for arg in args:
        if arg == "-o":
            object_pending = True
        elif object_pending:
            object_file = arg
            object_pending = False
        elif arg.startswith("-o"):
            object_file = arg[2:]
        elif arg == "-gsplit-dwarf":
            split_dwarf = True
        elif arg == "-MF":
            dep_file_pending = True
        elif dep_file_pending:
            dep_files.append(arg)
            dep_file_pending = False
        elif arg.startswith("-MF"):
            dep_files.append(arg[3:])

    if not object_file:
        return dep_files

    outputs = [*dep_files, object_file]
    if split_dwarf:
        outputs.append(object_file.removesuffix(".o") + ".dwo")
    return outputs


def _is_flag_with_letter(arg: str, letter: str) -> bool:
    return arg[0] in "-/" and arg[1] == letter


def clangcl_outputs(args: Sequence[str]) -> list[str]:
    """Return the outputs named by clang-cl arguments, in argument order.

    ``/o X`` and ``-o X`` name an output, and so do ``/oX``, ``-oX`` and the
    ``/F`` forms ``/FoX``, ``/FiX``, ``/FaX``, ``/FeX`` and ``/FpX`` (also with
    ``-``).  A flag without a value names nothing, and ``/FdX`` is not an output.
    """
    outputs: list[str] = []
    output_pending = False

    for arg in args:
        if output_pending:
            outputs.append(arg)
            output_pending = False
        elif arg in ("/o", "-o"):
            output_pending = True
        elif len(arg) > 2 and _is_flag_with_letter(arg, "o"):
            outputs.append(arg[2:])
        elif (
            len(arg) > 3
            and _is_flag_with_letter(arg, "F")
            and arg[2] in _CLANG_CL_F_OUTPUT_LETTERS
        ):
            outputs.append(arg[3:])
    return outputs


def javac_output_dirs(args: Sequence[str]) -> list[str]:
    """Return the directories after each ``-d`` (classes) and ``-s`` (sources) of javac."""
    dirs: list[str] = []
    dir_pending = False

    for arg in args:
        if dir_pending:
            dirs.append(arg)
            dir_pending = False
        elif arg in ("-d", "-s"):
            dir_pending = True
    return dirs


def command_output_files(
    compiler: str,
    args: Sequence[str],
    expected_output_files: Sequence[str],
    expected_output_dirs: Sequence[str],
) -> list[str]:
    """Return the output files of a request, in client spelling.

    When the client sent either expected list, ``expected_output_files`` is
    returned, even if empty.  Otherwise gcc-like and clang-cl compilers have their
    arguments parsed, and other compilers have no output files.
    """
    if expected_output_files or expected_output_dirs:
        return list(expected_output_files)
    if compiler in GCC_COMPILERS:
        return gcc_outputs(args)
    if compiler in CLANG_CL_COMPILERS:
        return clangcl_outputs(args)
    return []


def command_output_dirs(
    compiler: str,
    args: Sequence[str],
    expected_output_files: Sequence[str],
    expected_output_dirs: Sequence[str],
) -> list[str]:
    """Return the output directories of a request, in client spelling.

    When the client sent either expected list, ``expected_output_dirs`` is
    returned, even if empty.  Otherwise javac has its arguments parsed, and other
    compilers have no output directories.
    """
    if expected_output_files or expected_output_dirs:
        return list(expected_output_dirs)
    if compiler in JAVAC_COMPILERS:
        return javac_output_dirs(args)
    return []
