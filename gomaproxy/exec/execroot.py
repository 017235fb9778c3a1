"""The exec root of a goma request and the root-relative names of its paths.

The exec root is the client directory that becomes the root of the REAPI input tree.
It is the deepest directory that contains the cwd, every input, the compiler (unless
it comes from the worker image), a relative sysroot and the expected outputs.  When
that directory is the file system root, a POSIX request that may run in nsjail gets
``/`` with chroot, and any other request is rejected.  A POSIX root that contains the
worker's system library dirs is rejected too.

Error texts match goma-server's, because they reach the goma client in the response.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import NamedTuple, TypeVar

from gomaproxy.errors import BadRequest, GomaProxyError
from gomaproxy.exec.clientpath import ClientPathLib, PathStyle, path_lib

__all__ = [
    "ExecRoot",
    "ExecRootError",
    "InvalidCwd",
    "OutOfRoot",
    "Sysroot",
    "common_dir",
    "dedupe_windows_inputs",
    "derive_exec_root",
    "exec_paths",
    "root_rel",
    "sysroot_dir",
]

# Commands under these directories are taken from the worker's container image, so
# they do not pull the exec root up to ``/``.
_IMAGE_COMMAND_DIRS = ("/bin/", "/sbin/", "/usr/bin/", "/usr/sbin/")

# A POSIX root that contains one of these directories would hide the worker's shared
# libraries, so the compiler could not start.
_SYSTEM_LIBRARY_DIRS = ("/lib/x86_64-linux-gnu/", "/usr/lib/x86_64-linux-gnu/", "/lib64/")

T = TypeVar("T")


class InvalidCwd(BadRequest):
    """A request cwd that is not an absolute path."""


class ExecRootError(BadRequest):
    """A request whose paths have no usable common directory."""


class OutOfRoot(GomaProxyError):
    """A path that lies outside the exec root.

    Callers skip such inputs, command files and directories, but treat an output or
    the cwd outside the root as an error.
    """


@dataclass(frozen=True)
class ExecRoot:
    """The chosen exec root, in client spelling, and whether the action must run in chroot."""

    root: str
    need_chroot: bool


class Sysroot(NamedTuple):
    """The sysroot named by compiler flags, and whether the compiler requires it to exist."""

    dir: str
    required: bool


def sysroot_dir(args: Sequence[str]) -> Sysroot:
    """Find the sysroot in compiler arguments.

    ``-isysroot X``/``-isysrootX`` wins over ``--sysroot X``/``--sysroot=X``, and for
    each flag the last one wins.  The sysroot is required unless the last of
    ``-Wall``, ``-Wmissing-sysroot`` and ``-Wno-missing-sysroot`` is the ``-Wno`` one,
    because a missing sysroot is a compiler warning that is on by default.
    """
    sysroot = ""
    isysroot = ""
    required = True
    pending_flag = ""

    for arg in args:
        if pending_flag == "--sysroot":
            sysroot = arg
        elif pending_flag == "-isysroot":
            isysroot = arg
        elif arg in ("-Wall", "-Wmissing-sysroot"):
            required = True
        elif arg == "-Wno-missing-sysroot":
            required = False
        elif arg in ("-isysroot", "--sysroot"):
            pending_flag = arg
            continue
        elif arg.startswith("-isysroot"):
            isysroot = arg.removeprefix("-isysroot")
        elif arg.startswith("--sysroot="):
            sysroot = arg.removeprefix("--sysroot=")
        pending_flag = ""

    return Sysroot(isysroot or sysroot, required)


def exec_paths(
    style: PathStyle,
    *,
    cwd: str,
    input_filenames: Iterable[str],
    argv0: str,
    args: Sequence[str],
    expected_output_files: Iterable[str] = (),
    expected_output_dirs: Iterable[str] = (),
) -> list[str]:
    """List the cleaned absolute paths that the exec root must contain.

    The list starts with the cleaned cwd, then the inputs, ``argv0`` (unless it is
    under ``/bin/``, ``/sbin/``, ``/usr/bin/`` or ``/usr/sbin/``), a relative sysroot
    that the compiler requires, and the expected output files and dirs.  Relative
    paths are joined to the cwd.  An absolute sysroot is left out.

    Raises:
        InvalidCwd: the cleaned cwd is not absolute.
    """
    lib = path_lib(style)
    clean_cwd = lib.clean(cwd)
    if not lib.is_abs(clean_cwd):
        raise InvalidCwd(f"cwd is not abs path: {clean_cwd}")

    def absolute(name: str) -> str:
        if not lib.is_abs(name):
            name = lib.join(clean_cwd, name)
        return lib.clean(name)

    paths = [clean_cwd]
    paths.extend(absolute(name) for name in input_filenames)
    if not argv0.startswith(_IMAGE_COMMAND_DIRS):
        paths.append(absolute(argv0))

    sysroot = sysroot_dir(args)
    if sysroot.required and sysroot.dir and not lib.is_abs(sysroot.dir):
        paths.append(absolute(sysroot.dir))

    paths.extend(absolute(name) for name in expected_output_files)
    paths.extend(absolute(name) for name in expected_output_dirs)
    return paths


def _same_elem(style: PathStyle, left: str, right: str) -> bool:
    if style is PathStyle.WINDOWS:
        return left.lower() == right.lower()
    return left == right


def _common_elems(style: PathStyle, elems: list[str], other: list[str]) -> list[str]:
    """Return the longest prefix of ``elems`` that matches ``other`` element by element."""
    for index, (elem, other_elem) in enumerate(zip(elems, other, strict=False)):
        if not _same_elem(style, elem, other_elem):
            return elems[:index]
    return elems[: len(other)]


def common_dir(style: PathStyle, paths: Sequence[str]) -> str:
    """Return the longest common directory of ``paths``, spelled as in the first path.

    Elements compare case-insensitively for Windows and case-sensitively for POSIX.
    Returns ``""`` when ``paths`` is empty or shares no element.
    """
    if not paths:
        return ""

    lib = path_lib(style)
    elems = lib.split_elem(paths[0])
    for path in paths[1:]:
        elems = _common_elems(style, elems, lib.split_elem(path))
    return lib.join(*elems)


def _is_valid_root(style: PathStyle, root: str) -> bool:
    """Tell whether ``root`` is below the file system root (``/`` or ``X:\\``)."""
    if not root:
        return False
    if style is PathStyle.POSIX:
        return root != "/"
    return not (len(root) == 3 and root[1:] == ":\\")


def _pair_without_common_dir(style: PathStyle, paths: Sequence[str]) -> list[str]:
    """Return the first ``[paths[0], path]`` without a valid common dir, or ``[]``."""
    for path in paths[1:]:
        pair = [paths[0], path]
        if not _is_valid_root(style, common_dir(style, pair)):
            return pair
    return []


def _check_posix_root(root: str) -> None:
    for library_dir in _SYSTEM_LIBRARY_DIRS:
        if library_dir.startswith(root + "/"):
            raise ExecRootError(f"bad input root: {root}")


def derive_exec_root(
    style: PathStyle,
    paths: Sequence[str],
    allow_chroot: bool,
    exec_root_dir: str,
) -> ExecRoot:
    """Choose the exec root for ``paths``, the output of ``exec_paths``.

    A non-empty ``exec_root_dir`` from the client is used as given, without cleaning
    or checks, and needs chroot only when it is ``/`` and ``allow_chroot`` is set.
    Otherwise the root is the common dir of ``paths``.  When that is ``""``, ``/`` or
    a bare drive root, a POSIX request with ``allow_chroot`` gets ``/`` with chroot.

    Raises:
        ExecRootError: the paths have no common dir below the file system root, or a
            POSIX root contains ``/lib/x86_64-linux-gnu/``,
            ``/usr/lib/x86_64-linux-gnu/`` or ``/lib64/``.
    """
    if exec_root_dir:
        return ExecRoot(exec_root_dir, need_chroot=exec_root_dir == "/" and allow_chroot)

    root = common_dir(style, paths)
    if _is_valid_root(style, root):
        if style is PathStyle.POSIX:
            _check_posix_root(root)
        return ExecRoot(root, need_chroot=False)

    if allow_chroot and style is PathStyle.POSIX:
        return ExecRoot("/", need_chroot=True)

    pair = _pair_without_common_dir(style, paths)
    raise ExecRootError(f"no common paths in inputs: [{' '.join(pair)}]")


def root_rel(style: PathStyle, fname: str, clean_cwd: str, clean_root: str) -> str:
    """Return ``fname`` relative to the exec root, keeping its ``..`` elements and case.

    A relative ``fname`` is first joined to ``clean_cwd`` without cleaning, so
    ``../../base/foo.cc`` from cwd ``/src/out/Release`` under root ``/src`` gives
    ``out/Release/../../base/foo.cc``.  The input tree resolves the ``..`` later.
    Returns ``""`` when ``fname`` is the root itself.

    Raises:
        OutOfRoot: ``fname`` does not start with the root's elements (compared
            case-insensitively for Windows), or its remainder climbs above the root.
        UnsupportedPathStyle: ``style`` is not a ``PathStyle`` member.
    """
    lib = path_lib(style)
    if not lib.is_abs(fname):
        fname = lib.join(clean_cwd, fname)

    root_elems = lib.split_elem(clean_root)
    file_elems = lib.split_elem(fname)
    if len(_common_elems(style, root_elems, file_elems)) != len(root_elems):
        raise OutOfRoot(f"{fname} is out of exec root {clean_root}")

    relative = lib.join(*file_elems[len(root_elems) :])
    if _climbs_above_start(lib, relative):
        raise OutOfRoot(f"{fname} is out of exec root {clean_root}")
    return relative


def _climbs_above_start(lib: ClientPathLib, relative: str) -> bool:
    cleaned = lib.split_elem(lib.clean(relative))
    return bool(cleaned) and cleaned[0] == ".."


def dedupe_windows_inputs(
    inputs: Sequence[T], clean_cwd: str, filename: Callable[[T], str]
) -> list[T]:
    """Drop inputs whose paths differ from an earlier input only in letter case.

    Windows file systems ignore case, so ``Foo`` and ``foo`` are one file.  The key of
    an input is its lower-cased path, joined to ``clean_cwd`` when relative.  Each key
    keeps the position of its first input but the spelling with the shortest filename,
    and among equally long ones the smallest in byte order (upper case first).
    """
    lib = path_lib(PathStyle.WINDOWS)
    deduped: list[T] = []
    index_by_key: dict[str, int] = {}

    for item in inputs:
        name = filename(item)
        path = name if lib.is_abs(name) else lib.join(clean_cwd, name)
        key = path.lower()

        index = index_by_key.get(key)
        if index is None:
            index_by_key[key] = len(deduped)
            deduped.append(item)
            continue
        if _sorts_before(name, filename(deduped[index])):
            deduped[index] = item
    return deduped


def _sorts_before(name: str, other: str) -> bool:
    """Order filenames by UTF-8 length, then by their UTF-8 bytes."""
    name_bytes = name.encode("utf-8", "surrogateescape")
    other_bytes = other.encode("utf-8", "surrogateescape")
    return (len(name_bytes), name_bytes) < (len(other_bytes), other_bytes)
