"""Path arithmetic for paths as the goma client spells them, in POSIX or Windows style.

These rules follow goma-server's ``posixpath`` and ``winpath`` packages and differ from
``posixpath`` and ``ntpath`` on purpose:

* ``join`` and ``dir`` never resolve ``..``: ``join("a", "../b")`` is ``a/../b``, so the
  input tree can later create the directories that a ``..`` walks through.
* ``split_elem`` marks an absolute path with a first element ``/`` (or ``<drive>\\`` on
  Windows) and a path that ends in ``/`` or ``/.`` with a last element ``.``.
  No other element is empty, ``/`` or ``.``.
* Windows paths accept both ``\\`` and ``/`` as separators and produce ``\\``.  A path
  is absolute only with a drive letter and a separator (``c:\\a``), so ``\\a`` and
  ``c:a`` are relative.  Drive letters compare case-sensitively in ``rel``.
"""

from __future__ import annotations

import enum
import string
from typing import Protocol, final

from gomaproxy.errors import GomaProxyError

__all__ = [
    "ClientPathLib",
    "PathStyle",
    "PosixPathLib",
    "RelPathError",
    "UnsupportedPathStyle",
    "WindowsPathLib",
    "path_lib",
]


class PathStyle(enum.Enum):
    """The path convention of a client: ``/`` only, or Windows drives and separators."""

    POSIX = "posix"
    WINDOWS = "windows"


class RelPathError(GomaProxyError):
    """A target path that cannot be expressed relative to a base path."""


class UnsupportedPathStyle(GomaProxyError):
    """A path style value that is not a member of ``PathStyle``."""


class ClientPathLib(Protocol):
    """The path functions of one client path style."""

    style: PathStyle
    separator: str

    def is_abs(self, path: str) -> bool: ...

    def split_elem(self, path: str) -> list[str]: ...

    def join(self, *elems: str) -> str: ...

    def clean(self, path: str) -> str: ...

    def dir(self, path: str) -> str: ...

    def base(self, path: str) -> str: ...

    def rel(self, base: str, target: str) -> str: ...

    def to_posix(self, path: str) -> str: ...


def _join_elems(elems: list[str]) -> str:
    """Join split elements with ``/``, turning a leading ``/`` element into the root."""
    if not elems:
        return "."
    if len(elems) == 1:
        return elems[0]
    if elems[0] == "/":
        return "/" + "/".join(elems[1:])
    return "/".join(elems)


def _clean_elems(elems: list[str]) -> list[str]:
    """Drop a trailing ``.`` marker and resolve ``..`` against the elements before it.

    A ``..`` right after the root is dropped, a ``..`` after a normal element removes
    that element, and a ``..`` at the start of a relative path is kept.
    """
    if elems and elems[-1] == ".":
        elems = elems[:-1]

    cleaned: list[str] = []
    for elem in elems:
        if elem == "..":
            if cleaned == ["/"]:
                continue
            if cleaned and cleaned[-1] != "..":
                cleaned.pop()
                continue
        cleaned.append(elem)
    return cleaned


def _rel_error(base: str, target: str, reason: str) -> RelPathError:
    return RelPathError(f"make {target} relative to {base}: {reason}")


@final
class PosixPathLib:
    """Path functions for ``/``-separated client paths."""

    style = PathStyle.POSIX
    separator = "/"

    def is_abs(self, path: str) -> bool:
        """Tell whether ``path`` starts with ``/``."""
        return path.startswith("/")

    def split_elem(self, path: str) -> list[str]:
        """Split ``path`` into elements, with ``/`` and ``.`` markers as the module describes.

        ``a/./b`` gives ``["a", "b"]``, ``/a/`` gives ``["/", "a", "."]`` and ``..``
        elements are kept as they are.
        """
        if not path:
            return []
        if path == ".":
            return ["."]
        if not path.strip("/"):
            return ["/"]

        elems = ["/"] if path.startswith("/") else []
        elems.extend(elem for elem in path.split("/") if elem not in ("", "."))
        if path.endswith("/") or path.endswith("/."):
            elems.append(".")
        return elems

    def join(self, *elems: str) -> str:
        """Join path parts with ``/``, skipping empty parts and never resolving ``..``.

        Returns ``""`` when no part names anything, for example ``join()`` or ``join(".")``.
        """
        parts = [elem for elem in elems if elem]
        split = self.split_elem("/".join(parts))
        if split and split[-1] == ".":
            split.pop()
        if not split:
            return ""
        return _join_elems(split)

    def clean(self, path: str) -> str:
        """Return the shortest spelling of ``path`` after resolving ``.`` and ``..`` lexically."""
        return _join_elems(_clean_elems(self.split_elem(path)))

    def dir(self, path: str) -> str:
        """Return all but the last element of ``path``, without resolving ``..``."""
        elems = self.split_elem(path)
        if not elems:
            return "."
        if len(elems) == 1:
            return "/" if elems[0] == "/" else "."
        return _join_elems(elems[:-1])

    def base(self, path: str) -> str:
        """Return the last element of ``path``: ``.`` for ``""`` or a trailing ``/``."""
        elems = self.split_elem(path)
        if not elems:
            return "."
        return elems[-1]

    def rel(self, base: str, target: str) -> str:
        """Return a path that reaches ``target`` when joined to ``base``.

        Both paths are cleaned first.

        Raises:
            RelPathError: one path is absolute and the other is relative, or the part of
                ``base`` left after the common prefix is only ``..`` elements, whose
                names cannot be known.
        """
        if self.is_abs(base) != self.is_abs(target):
            raise _rel_error(base, target, "one path is absolute and the other is relative")

        base_elems = _clean_elems(self.split_elem(base))
        target_elems = _clean_elems(self.split_elem(target))
        common = _common_prefix_len(base_elems, target_elems)

        base_rest = base_elems[common:]
        if base_rest and all(elem == ".." for elem in base_rest):
            raise _rel_error(
                base, target, "the base has only '..' elements after the common prefix"
            )
        return _join_elems([".."] * len(base_rest) + target_elems[common:])

    def to_posix(self, path: str) -> str:
        """Return ``path`` unchanged, because it is already in POSIX style."""
        return path


def _common_prefix_len(left: list[str], right: list[str]) -> int:
    count = 0
    for left_elem, right_elem in zip(left, right, strict=False):
        if left_elem != right_elem:
            break
        count += 1
    return count


_POSIX = PosixPathLib()


def _split_drive(path: str) -> tuple[str, str]:
    """Split a leading ``X:`` drive (ASCII letter, then colon) from ``path``."""
    if len(path) >= 2 and path[1] == ":" and path[0] in string.ascii_letters:
        return path[:2], path[2:]
    return "", path


def _to_slashes(path: str) -> str:
    return path.replace("\\", "/")


def _to_backslashes(path: str) -> str:
    return path.replace("/", "\\")


@final
class WindowsPathLib:
    """Path functions for Windows client paths, which accept ``\\`` and ``/`` as separators."""

    style = PathStyle.WINDOWS
    separator = "\\"

    def is_abs(self, path: str) -> bool:
        """Tell whether ``path`` starts with a drive letter, a colon and a separator."""
        drive, rest = _split_drive(path)
        return bool(drive) and rest[:1] in ("/", "\\")

    def split_elem(self, path: str) -> list[str]:
        """Split ``path`` into elements, keeping the drive with the first one.

        ``c:\\a\\b`` gives ``["c:\\", "a", "b"]``, ``c:a`` gives ``["c:", "a"]`` and
        ``\\a`` gives ``["\\", "a"]``.
        """
        drive, rest = _split_drive(path)
        elems = _POSIX.split_elem(_to_slashes(rest))
        if elems and elems[0] == "/":
            elems[0] = drive + "\\"
        elif drive:
            elems.insert(0, drive)
        return elems

    def join(self, *elems: str) -> str:
        """Join path parts like the POSIX join, keeping the drive of the first part only."""
        if not elems:
            return ""

        parts = [_to_slashes(elem) for elem in elems]
        drive, parts[0] = _split_drive(parts[0])
        return drive + _to_backslashes(_POSIX.join(*parts))

    def clean(self, path: str) -> str:
        """Clean the part after the drive like the POSIX clean: ``c:`` becomes ``c:.``."""
        drive, rest = _split_drive(path)
        return drive + _to_backslashes(_POSIX.clean(_to_slashes(rest)))

    def dir(self, path: str) -> str:
        """Return all but the last element of ``path``, keeping its drive.

        A bare drive such as ``c:`` is its own dir.
        """
        if not path:
            return "."

        drive, rest = _split_drive(_to_slashes(path))
        if not rest:
            return drive
        return drive + _to_backslashes(_POSIX.dir(rest))

    def base(self, path: str) -> str:
        """Return the last element of ``path`` without its drive: ``c:\\`` gives ``\\``."""
        _drive, rest = _split_drive(_to_slashes(path))
        if not rest:
            return "."
        return _to_backslashes(_POSIX.base(rest))

    def rel(self, base: str, target: str) -> str:
        """Return a path that reaches ``target`` when joined to ``base``.

        A ``target`` without a drive takes the drive of ``base``.

        Raises:
            RelPathError: one path is absolute and the other is relative, the drives
                differ (compared case-sensitively, so ``C:`` and ``c:`` differ), or
                the POSIX rule for the parts after the drives fails.
        """
        base_drive, base_rest = _split_drive(base)
        target_drive, target_rest = _split_drive(target)
        if not target_drive:
            target_drive = base_drive

        if self.is_abs(base) != self.is_abs(target_drive + target_rest):
            raise _rel_error(base, target, "one path is absolute and the other is relative")
        if base_drive != target_drive:
            raise _rel_error(base, target, f"drive {target_drive} differs from {base_drive}")

        relative = _POSIX.rel(_to_slashes(base_rest), _to_slashes(target_rest))
        return _to_backslashes(relative)

    def to_posix(self, path: str) -> str:
        """Drop the drive of ``path`` and turn every ``\\`` into ``/``."""
        _drive, rest = _split_drive(path)
        return _to_slashes(rest)


_WINDOWS = WindowsPathLib()

_LIBS: dict[PathStyle, ClientPathLib] = {
    PathStyle.POSIX: _POSIX,
    PathStyle.WINDOWS: _WINDOWS,
}


def path_lib(style: PathStyle) -> ClientPathLib:
    """Return the path functions for ``style``.

    Raises:
        UnsupportedPathStyle: ``style`` is not a ``PathStyle`` member.
    """
    if not isinstance(style, PathStyle):
        raise UnsupportedPathStyle(f"client path style {style!r} is not supported")
    return _LIBS[style]
