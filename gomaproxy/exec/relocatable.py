"""Decide whether a compile's outputs can depend on the client's absolute working directory.

A relocatable request runs remotely in a directory whose absolute path differs from the
client's.  That is only safe when nothing in the command line or the environment makes
the compiler write the client's path into an output, such as the object file, the debug
info, a dependency file or a diagnostic.  The checks here are deliberately conservative.
Every flag that is not known to be harmless makes the request non-relocatable, and the
caller then runs it with the client's absolute input root instead.

The gcc/clang and clang-cl checks scan the arguments once, from argv[0] on, with a small
state machine:

* a separate path flag (``-I dir``) marks the next argument as a path that must be
  relative;
* ``-Xclang`` and ``-mllvm`` mark the next argument as belonging to a sub-command, and
  those sub-arguments are checked after the scan by their own, stricter rules;
* joined path flags (``-Idir``, ``--sysroot=dir``) are matched against a prefix table
  ordered longest first.  That order matters because ``-include`` is also a prefix of
  ``-include=``, and only the longer match splits off the real path.

``UnknownFlag`` is the subclass for arguments the checks do not recognise, which callers
count per compiler to see which flags are worth supporting.

The module is longer than most because it keeps the flag tables of gcc, clang, clang-cl,
MSVC, LLVM and the assembler next to the scans that read them.
"""

from __future__ import annotations

import string
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol


class NotRelocatable(Exception):
    """A request whose outputs may contain the client's working directory.

    The message names the offending argument or environment variable.
    """


class UnknownFlag(NotRelocatable):
    """A request rejected only because it contains a flag that the checks do not know."""


# Joined path flags of gcc and clang, longest first so that the longest matching
# prefix splits the flag from its path.
GCC_PATH_FLAG_PREFIXES: tuple[str, ...] = (
    "-fcoverage-compilation-dir=",
    "-fcrash-diagnostics-dir=",
    "-fdebug-compilation-dir=",
    "-ffile-compilation-dir=",
    "-fprofile-sample-use=",
    "-fsanitize-blacklist=",
    "-fprofile-instr-use=",
    "-fprofile-list=",
    "-resource-dir=",
    "--include=",
    "--sysroot=",
    "--include",
    "-include=",
    "-include",
    "-isystem",
    "-o",
    "-B",
    "-F",
    "-I",
)

# Joined flags that set the directory recorded in debug info, which makes -g safe.
GCC_COMPILATION_DIR_PREFIXES: tuple[str, ...] = (
    "-fdebug-compilation-dir=",
    "-ffile-compilation-dir=",
)

# Flags accepted without looking at them or at the next argument.
GCC_ACCEPTED_PREFIXES: tuple[str, ...] = tuple(
    "-w -W -D -U -O -f -m -no -std --param= --rtlib= --unwindlib= --target=".split()
)
GCC_ACCEPTED_FLAGS: frozenset[str] = frozenset(
    (
        "-arch -target -integrated-as -pedantic -pipe -pie -pthread -c -MMD -MD -M "
        "-Qunused-arguments -static-libgcc"
    ).split()
)

# Flags whose value is the next argument, which must then be a relative path.
GCC_SEPARATE_PATH_FLAGS: frozenset[str] = frozenset(
    "-o -I -B -F -isystem -include -iframework -MF -isysroot --sysroot -idirafter".split()
)

# Joined path flags of clang-cl, longest first for the same reason as the gcc table.
CLANGCL_PATH_FLAG_PREFIXES: tuple[str, ...] = (
    "-fcoverage-compilation-dir=",
    "-fcrash-diagnostics-dir=",
    "-fdebug-compilation-dir=",
    "-ffile-compilation-dir=",
    "-fprofile-sample-use=",
    "-fsanitize-blacklist=",
    "-fprofile-instr-use=",
    "-fprofile-list=",
    "-resource-dir=",
    "/vctoolsdir",
    "/winsysroot",
    "/winsdkdir",
    "--sysroot=",
    "-include=",
    "-isystem",
    "-imsvc",
    "/FA",
    "/FI",
    "/FR",
    "/FU",
    "/Fa",
    "/Fd",
    "/Fe",
    "/Fl",
    "/Fm",
    "/Fo",
    "/Fp",
    "/Fr",
    "/Fx",
    "-B",
    "-I",
    "-o",
)

# Flags that point clang-cl at a whole SDK tree.  Their presence skips the environment
# check, because INCLUDE then normally contains absolute directories.
CLANGCL_SYSROOT_PREFIXES: tuple[str, ...] = ("/winsysroot", "-imsvc")

CLANGCL_ACCEPTED_PREFIXES: tuple[str, ...] = tuple(
    "-w -W -D -U -O -f -m -no -std --param= --target=".split()
)
CLANGCL_ACCEPTED_FLAGS: frozenset[str] = frozenset(
    "-arch -integrated-as -pedantic -pipe -pthread -c -MMD -MD -M -Qunused-arguments".split()
)
CLANGCL_SEPARATE_PATH_FLAGS: frozenset[str] = frozenset(
    "-o -I -B -isystem -include -MF -isysroot".split()
)

# MSVC-style options that clang-cl accepts without further checks.
MSVC_ACCEPTED_FLAGS: frozenset[str] = frozenset(
    (
        "/nologo /Brepro /Brepro- /FS /Gy /Gy- /bigobj /utf-8 /X /Z7 /Zi /ZI /MD /MT "
        "/LD /MDd /MTd /LDd /Tc /Tp /TC /TP /Gd /Gr /Gv /Gz /GR /GR- /GS /GS- /Gr- "
        "/Gw /Gw- /GF /c /showIncludes"
    ).split()
)
MSVC_ACCEPTED_PREFIXES: tuple[str, ...] = tuple(
    "/D /EH /Zc: /arch: /clang: /guard:cf /showIncludes: /std:c".split()
)
MSVC_OPTIMIZATION_FLAGS: frozenset[str] = frozenset(
    "/O1 /O2 /Ob0 /Ob1 /Ob2 /Ob3 /Od /Og /Oi /Oi- /Os /Ot /Ox /Oy /Oy-".split()
)
MSVC_WARNING_FLAGS: frozenset[str] = frozenset("/w /W0 /W1 /W2 /W3 /W4 /Wall /WX /Wv".split())

# /w<kind><number> sets the level of one warning, and the number must lie in this
# half-open range.
MSVC_WARNING_NUMBER_KINDS = "1234deo"
MSVC_WARNING_NUMBER_MIN = 4000
MSVC_WARNING_NUMBER_END = 6000

# Values of -Xclang on gcc-style command lines.
CLANG_SKIP_NEXT_FLAGS: frozenset[str] = frozenset(
    "-mllvm -add-plugin -fdebug-compilation-dir -target-feature".split()
)
CLANG_ACCEPTED_PREFIXES: tuple[str, ...] = ("-f", "-debug-info-kind=")

# Values of -Xclang on clang-cl command lines.
CLANGCL_SKIP_NEXT_FLAGS: frozenset[str] = frozenset({"-add-plugin", "-mllvm"})

# Values of -mllvm.
LLVM_ACCEPTED_PREFIXES: tuple[str, ...] = tuple(
    (
        "-asan- -regalloc= -pbqp- -instcombine- -basic-aa -sanitizer-coverage- "
        "-enable-dse-memoryssa= -enable-ml-inliner= -limited-coverage-experimental="
    ).split()
)
LLVM_PATH_PREFIXES: tuple[str, ...] = (
    "-training-log=",
    "-ml-inliner-model-under-training=",
)

# Values of -Wa on gcc-style command lines.
ASSEMBLER_ACCEPTED_FLAGS: frozenset[str] = frozenset({"--fatal-warnings"})

# -W<x>,a,b forwards a and b to a sub-tool, keyed here by the name used in messages.
SUB_TOOL_PREFIXES: tuple[tuple[str, str], ...] = (
    ("-Wa,", "as"),
    ("-Wl,", "ld"),
    ("-Wp,", "cpp"),
)

GCC_COMPILER_NAMES: frozenset[str] = frozenset({"gcc", "g++", "clang", "clang++"})


def check_relocatable(
    name: str, args: Sequence[str], env: Sequence[str], *, windows: bool = False
) -> None:
    """Check that a compile does not depend on the client's absolute working directory.

    Args:
        name: the compiler selector name, such as ``clang++`` or ``clang-cl``.
        args: the client's argument list, argv[0] included.  An absolute argv[0] makes
            the request non-relocatable.
        env: the client's environment as ``KEY=VALUE`` entries.
        windows: detect absolute paths by drive letter and separator (``C:\\``)
            instead of by a leading ``/``.

    Raises:
        UnknownFlag: an argument is not known to the checks.
        NotRelocatable: an argument or variable can put the working directory into an
            output, or no check exists for ``name``.  javac is always relocatable.
    """
    if name in GCC_COMPILER_NAMES:
        gcc_relocatable(args, env, windows=windows)
        return

    if name == "clang-cl":
        clangcl_relocatable(args, env, windows=windows)
        return

    if name == "javac":
        return

    raise NotRelocatable(f"no relocatable check for {name}")


def is_absolute(path: str, *, windows: bool = False) -> bool:
    """Tell whether ``path`` is absolute in the client's path style.

    A Windows path is absolute only with a drive letter, a colon and a separator, so
    ``\\dir`` and ``C:dir`` are relative.
    """
    if not windows:
        return path.startswith("/")

    return (
        len(path) >= 3 and path[0] in string.ascii_letters and path[1] == ":" and path[2] in "/\\"
    )


def check_environment(env: Sequence[str], *, windows: bool = False) -> None:
    """Reject environment entries whose value is an absolute path, ignoring ``PWD``.

    Raises:
        NotRelocatable: an entry has no ``=`` or has an absolute value.
    """
    for entry in env:
        key, separator, value = entry.partition("=")
        if not separator:
            raise NotRelocatable(f"bad environment variable: {entry}")

        if key == "PWD":
            continue

        if is_absolute(value, windows=windows):
            raise NotRelocatable(f"abs path in env {key}={value}")


def gcc_relocatable(args: Sequence[str], env: Sequence[str], *, windows: bool = False) -> None:
    """Check a gcc or clang command line and its environment for cwd-dependent outputs.

    A debug build (any ``-g`` flag not cancelled by a later ``-g0``) is accepted only
    with ``-fdebug-compilation-dir`` or ``-ffile-compilation-dir``, because otherwise
    the debug info records the absolute working directory.

    Raises:
        UnknownFlag: an argument or a -Xclang, -mllvm or -Wa value is not known, or
            -Wl or -Wp is used.
        NotRelocatable: an absolute path, a header map, a debug build without a
            compilation directory, ``--pnacl-allow-translate`` or an absolute
            environment value.
    """
    scan = _GccScan(windows=windows)
    for arg in args:
        scan.feed(arg)

    if scan.debug_flags and not scan.has_compilation_dir:
        raise NotRelocatable(f"debug build: {scan.debug_flags}")

    for tool, tool_args in scan.sub_args.items():
        _check_gcc_sub_args(tool, tool_args, windows=windows)

    check_environment(env, windows=windows)


def clangcl_relocatable(args: Sequence[str], env: Sequence[str], *, windows: bool = False) -> None:
    """Check a clang-cl command line and its environment for cwd-dependent outputs.

    clang-cl has no debug-build rule, so ``-g`` flags are always accepted.
    When a ``/winsysroot`` or ``-imsvc`` flag is present the environment is not
    checked, since INCLUDE then normally contains absolute paths.

    Raises:
        UnknownFlag: an argument or a -Xclang or -mllvm value is not known.
        NotRelocatable: an absolute path, ``/FC``, a -Wa, -Wl or -Wp flag, or an
            absolute environment value.
    """
    scan = _ClangClScan(windows=windows)
    for arg in args:
        scan.feed(arg)

    for tool, tool_args in scan.sub_args.items():
        _check_clangcl_sub_args(tool, tool_args, windows=windows)

    if scan.has_sysroot:
        return

    check_environment(env, windows=windows)


def _split_joined_path(arg: str, prefixes: Sequence[str]) -> tuple[str, str] | None:
    """Return (flag, path) for the first prefix that ``arg`` extends, else None."""
    for prefix in prefixes:
        if arg != prefix and arg.startswith(prefix):
            return prefix, arg[len(prefix) :]
    return None


def _split_sub_tool_args(arg: str) -> tuple[str, list[str]] | None:
    """Return (tool, values) for ``-Wa,``, ``-Wl,`` or ``-Wp,``, else None."""
    for prefix, tool in SUB_TOOL_PREFIXES:
        if arg.startswith(prefix):
            return tool, arg[len(prefix) :].split(",")
    return None


class _SubToolState(Protocol):
    sub_command: str
    sub_args: dict[str, list[str]]


def _route_sub_tool_arg(scan: _SubToolState, arg: str) -> bool:
    """Record ``-Wa,``/``-Wl,``/``-Wp,`` values, or note that -Xclang or -mllvm passes the
    next argument on; return whether ``arg`` was one of these."""
    sub_tool = _split_sub_tool_args(arg)
    if sub_tool is not None:
        tool, values = sub_tool
        scan.sub_args.setdefault(tool, []).extend(values)
        return True

    if arg == "-Xclang":
        scan.sub_command = "clang"
        return True

    if arg == "-mllvm":
        scan.sub_command = "llvm"
        return True
    return False


@dataclass
class _GccScan:
    """Scan state for one gcc or clang argument list.

    ``sub_command`` is "clang" after -Xclang and "llvm" after -mllvm.  A joined path
    flag or a separate -fdebug-compilation-dir does not clear it, so after
    ``-Xclang -fdebug-compilation-dir=.`` the next argument still goes to clang.
    """

    windows: bool
    expects_path: bool = False
    sub_command: str = ""
    debug_flags: list[str] = field(default_factory=list)
    has_compilation_dir: bool = False
    sub_args: dict[str, list[str]] = field(default_factory=dict)

    def feed(self, arg: str) -> None:
        """Check one argument and update the state for the next one."""
        if self.expects_path:
            self._check_path_value(arg)
            return

        if arg.startswith("-I") and arg.endswith(".hmap"):
            raise NotRelocatable(f"hmap file: {arg}")

        joined = _split_joined_path(arg, GCC_PATH_FLAG_PREFIXES)
        if joined is not None:
            self._check_joined_path(arg, *joined)
            return

        if arg == "-fdebug-compilation-dir":
            self._note_compilation_dir(arg)
            return

        if self.sub_command:
            self.sub_args.setdefault(self.sub_command, []).append(arg)
            self.sub_command = ""
            return

        self._check_flag_or_input(arg)

    def _check_path_value(self, arg: str) -> None:
        if is_absolute(arg, windows=self.windows):
            raise NotRelocatable(f"abs path: {arg}")

        # A header map can list absolute header paths, and its content is not read here.
        if arg.endswith(".hmap"):
            raise NotRelocatable(f"hmap file: {arg}")

        self.expects_path = False

    def _check_joined_path(self, arg: str, flag: str, path: str) -> None:
        if is_absolute(path, windows=self.windows):
            raise NotRelocatable(f"abs path: {arg}")

        if flag in GCC_COMPILATION_DIR_PREFIXES:
            self._note_compilation_dir(arg)

    def _note_compilation_dir(self, arg: str) -> None:
        """Record a flag that fixes the debug-info directory, directly or via -Xclang."""
        if self.sub_command == "clang":
            self.sub_args.setdefault("clang", []).append(arg)
        elif self.sub_command:
            raise NotRelocatable(f"{arg} not supported for {self.sub_command}")

        self.has_compilation_dir = True

    def _check_flag_or_input(self, arg: str) -> None:
        if arg.startswith("-g"):
            self._note_debug_flag(arg)
            return

        if arg == "--pnacl-allow-translate":
            raise NotRelocatable(f"never relocatable: {arg}")

        if _route_sub_tool_arg(self, arg):
            return

        self._check_plain_arg(arg)

    def _note_debug_flag(self, arg: str) -> None:
        if arg == "-g0":
            self.debug_flags.clear()
            return

        self.debug_flags.append(arg)

    def _check_plain_arg(self, arg: str) -> None:
        # The values of -arch and -target reach here too, as relative "inputs".
        if arg.startswith(GCC_ACCEPTED_PREFIXES) or arg in GCC_ACCEPTED_FLAGS:
            return

        if arg in GCC_SEPARATE_PATH_FLAGS:
            self.expects_path = True
            return

        if arg.startswith("-"):
            raise UnknownFlag(f"unknown flag: {arg}")

        if is_absolute(arg, windows=self.windows):
            raise NotRelocatable(f"abs path: {arg}")


@dataclass
class _ClangClScan:
    """Scan state for one clang-cl argument list.

    Unlike the gcc scan, a separate -fdebug-compilation-dir gets no special handling
    here: it is an ordinary ``-f`` flag and its value is checked as an input.
    """

    windows: bool
    expects_path: bool = False
    sub_command: str = ""
    has_sysroot: bool = False
    sub_args: dict[str, list[str]] = field(default_factory=dict)

    def feed(self, arg: str) -> None:
        """Check one argument and update the state for the next one."""
        if self.expects_path:
            if is_absolute(arg, windows=self.windows):
                raise NotRelocatable(f"abs path: {arg}")
            self.expects_path = False
            return

        if arg.startswith(CLANGCL_SYSROOT_PREFIXES):
            self.has_sysroot = True

        joined = _split_joined_path(arg, CLANGCL_PATH_FLAG_PREFIXES)
        if joined is not None:
            if is_absolute(joined[1], windows=self.windows):
                raise NotRelocatable(f"abs path: {arg}")
            return

        if self.sub_command:
            self.sub_args.setdefault(self.sub_command, []).append(arg)
            self.sub_command = ""
            return

        self._check_clang_flag(arg)

    def _check_clang_flag(self, arg: str) -> None:
        # clang-cl has no debug-build rule, so every -g flag is accepted.
        if arg.startswith("-g"):
            return

        if _route_sub_tool_arg(self, arg):
            return

        if arg.startswith(CLANGCL_ACCEPTED_PREFIXES) or arg in CLANGCL_ACCEPTED_FLAGS:
            return

        if arg in CLANGCL_SEPARATE_PATH_FLAGS:
            self.expects_path = True
            return

        self._check_msvc_flag_or_input(arg)

    def _check_msvc_flag_or_input(self, arg: str) -> None:
        if _is_msvc_accepted_flag(arg):
            return

        # /FC makes diagnostics print full source paths.
        if arg == "/FC":
            raise NotRelocatable(f"full source paths in diagnostics: {arg}")

        # A POSIX absolute path lands here too and counts as an unknown flag.
        if arg.startswith(("-", "/")):
            raise UnknownFlag(f"unknown flag: {arg}")

        if is_absolute(arg, windows=self.windows):
            raise NotRelocatable(f"abs path: {arg}")


def _is_msvc_accepted_flag(arg: str) -> bool:
    """Tell whether ``arg`` is an MSVC-style option that clang-cl may run anywhere."""
    if arg in MSVC_ACCEPTED_FLAGS or arg in MSVC_OPTIMIZATION_FLAGS:
        return True

    if arg.startswith(MSVC_ACCEPTED_PREFIXES):
        return True

    return is_msvc_warning_flag(arg)


def is_msvc_warning_flag(arg: str) -> bool:
    """Tell whether ``arg`` is a warning option such as ``/W4``, ``/Wv:18`` or ``/wd4996``.

    The per-warning form is exactly ``/w``, one of ``1 2 3 4 d e o`` and four digits
    from 4000 to 5999.
    """
    if arg in MSVC_WARNING_FLAGS or arg.startswith("/Wv:"):
        return True

    if len(arg) != 7 or not arg.startswith("/w"):
        return False

    if arg[2] not in MSVC_WARNING_NUMBER_KINDS:
        return False

    number = arg[3:]
    if not (number.isascii() and number.isdigit()):
        return False

    return MSVC_WARNING_NUMBER_MIN <= int(number) < MSVC_WARNING_NUMBER_END


def _check_gcc_sub_args(tool: str, args: Sequence[str], *, windows: bool) -> None:
    if tool == "clang":
        _check_clang_args(args, windows=windows)
        return

    if tool == "llvm":
        _check_llvm_args(args, windows=windows)
        return

    if tool == "as":
        _check_assembler_args(args)
        return

    raise UnknownFlag(f"unsupported subcommand args {tool}: {list(args)}")


def _check_clangcl_sub_args(tool: str, args: Sequence[str], *, windows: bool) -> None:
    if tool == "clang":
        _check_clangcl_clang_args(args, windows=windows)
        return

    if tool == "llvm":
        _check_llvm_args(args, windows=windows)
        return

    raise NotRelocatable(f"unsupported subcommand args {tool}: {list(args)}")


def _check_clang_args(args: Sequence[str], *, windows: bool = False) -> None:
    """Check the values passed with -Xclang on a gcc-style command line.

    Raises:
        UnknownFlag: a value is not known.
        NotRelocatable: the plugin path after ``-load`` is absolute.
    """
    expects_path = False
    skip_next = False
    for arg in args:
        if expects_path:
            if is_absolute(arg, windows=windows):
                raise NotRelocatable(f"clang abs path: {arg}")
            expects_path = False
            continue

        if skip_next:
            skip_next = False
            continue

        if arg in CLANG_SKIP_NEXT_FLAGS or arg.startswith("-plugin-arg-"):
            skip_next = True
        elif arg == "-load":
            expects_path = True
        elif arg.startswith(CLANG_ACCEPTED_PREFIXES) or arg == "-no-opaque-pointers":
            pass
        else:
            raise UnknownFlag(f"unknown clang flag: {arg}")


def _check_clangcl_clang_args(args: Sequence[str], *, windows: bool = False) -> None:
    """Check the values passed with -Xclang on a clang-cl command line.

    Raises:
        UnknownFlag: a value is not known.
        NotRelocatable: the directory after ``-fdebug-compilation-dir`` is absolute.
    """
    expects_path = False
    skip_next = False
    for arg in args:
        if expects_path:
            if is_absolute(arg, windows=windows):
                raise NotRelocatable(f"clang-cl abs path: {arg}")
            expects_path = False
            continue

        if skip_next:
            skip_next = False
            continue

        if arg == "-fdebug-compilation-dir":
            expects_path = True
        elif arg.startswith("-debug-info-kind"):
            pass
        elif arg in CLANGCL_SKIP_NEXT_FLAGS or arg.startswith("-plugin-arg-"):
            skip_next = True
        elif arg.startswith("-f") or arg == "-no-opaque-pointers":
            pass
        else:
            raise UnknownFlag(f"unknown clang-cl flag: {arg}")


def _check_llvm_args(args: Sequence[str], *, windows: bool = False) -> None:
    """Check the values passed with -mllvm.

    Raises:
        UnknownFlag: a value is not known.
        NotRelocatable: a training log or model path is absolute.
    """
    for arg in args:
        if arg.startswith(LLVM_ACCEPTED_PREFIXES):
            continue

        path_prefix = next((p for p in LLVM_PATH_PREFIXES if arg.startswith(p)), None)
        if path_prefix is None:
            raise UnknownFlag(f"unknown llvm flag: {arg}")

        if is_absolute(arg[len(path_prefix) :], windows=windows):
            raise NotRelocatable(f"llvm abs path: {arg}")


def _check_assembler_args(args: Sequence[str]) -> None:
    """Check the values passed with -Wa on a gcc-style command line.

    Raises:
        UnknownFlag: a value other than ``--fatal-warnings``.
    """
    for arg in args:
        if arg not in ASSEMBLER_ACCEPTED_FLAGS:
            raise UnknownFlag(f"unknown as flag: {arg}")
