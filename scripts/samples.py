"""Real C compiles used by the acceptance scripts: two PyPI sdists and their flags.

zstandard 0.23.0 contributes ``zstd/zstd.c`` (2,178,295 bytes, so it is larger than
the 2 MiB goma file-chunk threshold) and the 17 ``c-ext/*.c`` files. lz4 4.4.5
contributes the 4 ``lz4libs/*.c`` files, the 3 ``lz4/*/*.c`` bindings and
``lz4/_version.c``. That is 26 compiles in all.

Every compile runs ``gcc`` with ``-O2 -fPIC`` and only the ``-I`` paths that the file
needs, with the sdist root as the working directory and a relative source path. No
``-D`` define is needed: without ``ZSTD_SINGLE_FILE`` the ``c-ext`` files include
``zstd.h`` and ``zdict.h`` and compile to objects that reference zstd symbols.
"""

from __future__ import annotations

import sysconfig
from dataclasses import dataclass
from pathlib import Path

BASE_FLAGS: tuple[str, ...] = ("-O2", "-fPIC")


@dataclass(frozen=True)
class Sdist:
    """A pinned PyPI source distribution."""

    name: str
    version: str

    @property
    def requirement(self) -> str:
        return f"{self.name}=={self.version}"

    @property
    def archive_name(self) -> str:
        return f"{self.name}-{self.version}.tar.gz"

    @property
    def root_name(self) -> str:
        """Name of the top-level directory inside the archive."""
        return f"{self.name}-{self.version}"


ZSTANDARD = Sdist("zstandard", "0.23.0")
LZ4 = Sdist("lz4", "4.4.5")
SDISTS: tuple[Sdist, ...] = (ZSTANDARD, LZ4)


@dataclass(frozen=True)
class SourceGroup:
    """Sources of one sdist that share a flag set.

    ``pattern`` is a glob relative to the sdist root. ``include_dirs`` are relative to
    the sdist root as well, and ``needs_python`` adds the Python include directory.
    ``expected_count`` guards against an sdist whose layout differs from the one that
    the flags were worked out for.
    """

    sdist: Sdist
    pattern: str
    include_dirs: tuple[str, ...]
    needs_python: bool
    expected_count: int


SOURCE_GROUPS: tuple[SourceGroup, ...] = (
    # The amalgamated zstd library includes only its own headers, by relative path.
    SourceGroup(ZSTANDARD, "zstd/zstd.c", (), needs_python=False, expected_count=1),
    # python-zstandard.h includes <zstd.h>, <zdict.h> and <pythoncapi_compat.h> with
    # angle brackets, so both directories must be on the include path.
    SourceGroup(ZSTANDARD, "c-ext/*.c", ("zstd", "c-ext"), needs_python=True, expected_count=17),
    SourceGroup(LZ4, "lz4libs/*.c", (), needs_python=False, expected_count=4),
    # The bindings include <lz4.h>, <lz4hc.h> and <lz4frame.h> from lz4libs.
    SourceGroup(LZ4, "lz4/*/*.c", ("lz4libs",), needs_python=True, expected_count=3),
    SourceGroup(LZ4, "lz4/_version.c", ("lz4libs",), needs_python=True, expected_count=1),
)

EXPECTED_COMPILE_COUNT = sum(group.expected_count for group in SOURCE_GROUPS)


class SampleListError(Exception):
    """The extracted sdists do not contain the expected source files."""


@dataclass(frozen=True)
class SampleCompile:
    """One ``gcc -c`` run: the sdist root as cwd, a relative source path and flags."""

    sdist_root: Path
    source: str
    flags: tuple[str, ...]

    @property
    def name(self) -> str:
        """Object file stem. ``build_sample_compiles`` checks that stems are unique."""
        return Path(self.source).stem

    def gcc_args(self, output: Path | str, compiler: str = "gcc") -> list[str]:
        """Return the compiler command line that writes the object to ``output``."""
        return [compiler, *self.flags, "-c", self.source, "-o", str(output)]


def python_include_dir() -> str:
    """Return the directory with Python.h for the running interpreter."""
    include_dir = sysconfig.get_paths()["include"]
    if not (Path(include_dir) / "Python.h").is_file():
        raise SampleListError(
            f"Python.h not found in {include_dir} (sysconfig's include path). "
            "Install the Python development headers for this interpreter."
        )
    return include_dir


def group_flags(group: SourceGroup, python_include: str) -> tuple[str, ...]:
    include_flags = [f"-I{directory}" for directory in group.include_dirs]
    if group.needs_python:
        include_flags.append(f"-I{python_include}")
    return (*BASE_FLAGS, *include_flags)


def find_group_sources(group: SourceGroup, sdist_root: Path) -> list[str]:
    """Return the group's sources as sorted POSIX paths relative to ``sdist_root``."""
    sources = sorted(
        path.relative_to(sdist_root).as_posix() for path in sdist_root.glob(group.pattern)
    )
    if len(sources) != group.expected_count:
        raise SampleListError(
            f"{group.sdist.root_name}: expected {group.expected_count} files matching "
            f"{group.pattern!r} under {sdist_root}, found {len(sources)}: {sources}. "
            "Delete the extracted sources and fetch them again, or update SOURCE_GROUPS "
            "if the sdist layout changed."
        )
    return sources


def build_sample_compiles(
    source_roots: dict[str, Path], python_include: str | None = None
) -> list[SampleCompile]:
    """Build the compile list from the extracted sdists.

    ``source_roots`` maps each sdist name (as in ``SDISTS``) to its extracted root.
    Raises SampleListError when a root is missing, a file count differs from the
    expected one or two sources share an object file name.
    """
    include = python_include if python_include is not None else python_include_dir()
    compiles: list[SampleCompile] = []
    for group in SOURCE_GROUPS:
        sdist_root = source_roots.get(group.sdist.name)
        if sdist_root is None:
            raise SampleListError(
                f"source root of {group.sdist.requirement} is missing. Run fetch_samples first."
            )
        flags = group_flags(group, include)
        for source in find_group_sources(group, sdist_root):
            compiles.append(SampleCompile(sdist_root, source, flags))

    check_unique_names(compiles)
    return compiles


def check_unique_names(compiles: list[SampleCompile]) -> None:
    sources_by_name: dict[str, str] = {}
    for compile_ in compiles:
        previous = sources_by_name.setdefault(compile_.name, compile_.source)
        if previous != compile_.source:
            raise SampleListError(
                f"{previous} and {compile_.source} both map to object name "
                f"{compile_.name!r}; object names must be unique"
            )
