"""Probes of a local gcc or clang that produce the compiler facts of a goma CommandSpec.

The probe runs the compiler the way the goma client does, with ``LC_ALL=C`` and stdout
and stderr merged: ``-dumpversion`` and ``--version`` give ``version``, ``-dumpmachine``
gives ``target``, and ``-E -v`` on an empty C and C++ input gives the system include
directories.  ``binary_hash`` is the sha256 of the real binary after all symlinks are
resolved.  Both the launcher and the server can call ``probe_compiler``; the launcher
also passes a cache directory so that repeated compiles skip the probe.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

import anyio
import anyio.to_thread
import structlog

from gomaproxy.errors import Code, GomaProxyError
from gomaproxy.protos import goma_data_pb2 as goma_pb2

log = structlog.get_logger(__name__)

# Bumped whenever the cached JSON layout or the probe rules change.
_CACHE_FORMAT = 1

_INCLUDE_LIST_START = "#include <...> search starts here:"
_INCLUDE_LIST_END = "End of search list."
_FRAMEWORK_SUFFIX = " (framework directory)"

_HASH_READ_SIZE = 1024 * 1024


class CompilerProbeError(GomaProxyError):
    """The local compiler could not be found or one of its probes failed."""

    code = Code.FAILED_PRECONDITION


@dataclass(frozen=True)
class CompilerInfo:
    """The CommandSpec facts of one local compiler.

    ``version`` is ``<-dumpversion>[<--version first line>]`` with gcc's program name
    removed from the second part, for example ``12[(Debian 12.2.0-14+deb12u1) 12.2.0]``.
    ``binary_hash`` is the hex sha256 of the bytes of ``real_compiler_path`` and ``size``
    is that file's size.
    """

    local_compiler_path: str
    real_compiler_path: str
    name: str
    version: str
    target: str
    binary_hash: str
    size: int
    system_include_paths: tuple[str, ...]
    cxx_system_include_paths: tuple[str, ...]

    def to_json(self) -> dict[str, object]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> CompilerInfo:
        values = dict(data)
        values["system_include_paths"] = tuple(_string_list(data["system_include_paths"]))
        values["cxx_system_include_paths"] = tuple(_string_list(data["cxx_system_include_paths"]))
        return cls(**values)  # type: ignore[arg-type]  # remaining fields are plain JSON scalars


def _string_list(value: object) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ValueError(f"expected a list of strings, got {value!r}")
    return value


# ---------------------------------------------------------------------------------------
# Pure rules.


def compiler_name(invoked_path: str, real_path: str) -> str:
    """Return the goma compiler key (gcc, g++, clang or clang++) of a compiler.

    The key comes from the basename of the path as invoked.  ``cc`` and ``c++`` do not
    name the compiler family, so for them the real binary's basename decides between gcc
    and clang, while the invoked name still decides between C and C++.
    """
    invoked = os.path.basename(invoked_path)
    real = os.path.basename(real_path)

    if invoked == "cc":
        return "clang" if "clang" in real else "gcc"
    if invoked == "c++":
        return "clang++" if "clang" in real else "g++"
    if "clang++" in invoked:
        return "clang++"
    if "clang" in invoked:
        return "clang"
    if "g++" in invoked:
        return "g++"
    return "gcc"


def first_line(text: str) -> str:
    """Return ``text`` up to its first CR or LF."""
    for index, char in enumerate(text):
        if char in "\r\n":
            return text[:index]
    return text


def strip_gcc_program_name(version_line: str) -> str:
    """Remove the program name from the first line of gcc's ``--version`` output.

    gcc prints ``<program> (<package version>) <version>``, and the program name changes
    with the name the driver was invoked by.  The text before the first ``(`` is
    removed when it names gcc, g++, cc or c++; clang lines and lines without ``(`` are
    returned unchanged.
    """
    paren = version_line.find("(")
    if paren < 0:
        return version_line

    program = version_line[:paren]
    if "clang" in program:
        return version_line
    if "gcc" in program or "g++" in program or program in ("cc ", "c++ "):
        return version_line[paren:]
    return version_line


def format_version(dumpversion_output: str, version_output: str) -> str:
    """Build the CommandSpec ``version`` from the outputs of -dumpversion and --version."""
    dumpversion = first_line(dumpversion_output)
    version = strip_gcc_program_name(first_line(version_output))
    return f"{dumpversion}[{version}]"


def parse_include_search_list(verbose_output: str) -> tuple[str, ...]:
    """Return the ``#include <...>`` search directories listed by ``-E -v`` output.

    Directories keep the spelling the compiler printed.  A trailing
    ``(framework directory)`` marker is dropped.
    """
    directories: list[str] = []
    inside = False

    for line in verbose_output.splitlines():
        if line.startswith(_INCLUDE_LIST_START):
            inside = True
            continue
        if line.startswith(_INCLUDE_LIST_END):
            break
        if not inside or not line.startswith(" "):
            continue

        directory = line.strip()
        if directory.endswith(_FRAMEWORK_SUFFIX):
            directory = directory[: -len(_FRAMEWORK_SUFFIX)]
        directories.append(directory)

    return tuple(directories)


def fill_command_spec(spec: goma_pb2.CommandSpec, info: CompilerInfo, *, cplusplus: bool) -> None:
    """Copy ``info`` into ``spec``.

    A C compile sends its include directories in ``system_include_path`` and a C++
    compile in ``cxx_system_include_path``.  The other list stays empty.
    """
    spec.name = info.name
    spec.version = info.version
    spec.target = info.target
    spec.binary_hash = info.binary_hash.encode("ascii")
    spec.size = info.size
    spec.local_compiler_path = info.local_compiler_path

    if cplusplus:
        spec.cxx_system_include_path.extend(info.cxx_system_include_paths)
    else:
        spec.system_include_path.extend(info.system_include_paths)


# ---------------------------------------------------------------------------------------
# Local files.


def find_compiler(argv0: str, *, cwd: str, path_env: str | None) -> str:
    """Return the absolute path of the compiler named by ``argv0``.

    A name with a slash is taken relative to ``cwd``, and a bare name is looked up in
    ``path_env``, the value of PATH.  Symlinks are not resolved.

    Raises:
        CompilerProbeError: if no executable file matches.
    """
    if "/" in argv0:
        candidate = os.path.normpath(os.path.join(cwd, argv0))
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
        raise CompilerProbeError(
            f"compiler {argv0!r} is not an executable file (resolved to {candidate}); "
            "check the path"
        )

    found = shutil.which(argv0, path=path_env)
    if found is None:
        raise CompilerProbeError(
            f"compiler {argv0!r} was not found in PATH; install it or pass its full path"
        )
    return os.path.normpath(os.path.join(cwd, found))


def sha256_of_file(path: str) -> str:
    """Return the hex sha256 of the bytes of ``path``."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        while block := stream.read(_HASH_READ_SIZE):
            digest.update(block)
    return digest.hexdigest()


# ---------------------------------------------------------------------------------------
# Probing.


async def probe_compiler(
    argv0: str,
    *,
    cwd: str | None = None,
    environ: Mapping[str, str] | None = None,
    cache_dir: Path | None = None,
) -> CompilerInfo:
    """Probe the compiler named by ``argv0`` and return its CommandSpec facts.

    Args:
        argv0: the compiler as typed: a bare name searched in PATH, or a path.
        cwd: the directory relative paths are resolved in; defaults to the process cwd.
        environ: the environment whose PATH is searched and which the probes run with;
            defaults to ``os.environ``.
        cache_dir: when given, a probe result is stored there and reused while the
            compiler's path, mtime and size stay the same.

    Raises:
        CompilerProbeError: if the compiler is missing or a probe fails.
    """
    work_dir = cwd or os.getcwd()
    env = dict(os.environ if environ is None else environ)

    local_path, real_path, stat = await anyio.to_thread.run_sync(
        _locate_compiler, argv0, work_dir, env.get("PATH")
    )

    cache_file = _cache_file(cache_dir, local_path) if cache_dir is not None else None
    cache_key = {"path": local_path, "mtime_ns": stat.st_mtime_ns, "size": stat.st_size}
    if cache_file is not None:
        cached = await anyio.to_thread.run_sync(_read_cache, cache_file, cache_key)
        if cached is not None:
            return cached

    info = await _run_probes(local_path, real_path, stat.st_size, work_dir, env)

    if cache_file is not None:
        await anyio.to_thread.run_sync(_write_cache, cache_file, cache_key, info)
    return info


def _locate_compiler(argv0: str, cwd: str, path_env: str | None) -> tuple[str, str, os.stat_result]:
    """Return the compiler's PATH-resolved path, its real path and the real file's stat."""
    local_path = find_compiler(argv0, cwd=cwd, path_env=path_env)
    real_path = os.path.realpath(local_path)
    return local_path, real_path, os.stat(real_path)


async def _run_probes(
    local_path: str, real_path: str, size: int, cwd: str, env: dict[str, str]
) -> CompilerInfo:
    probe_env = {**env, "LC_ALL": "C"}

    dumpversion = await _probe_output(local_path, ["-dumpversion"], cwd, probe_env)
    version = await _probe_output(local_path, ["--version"], cwd, probe_env)
    target = first_line(await _probe_output(local_path, ["-dumpmachine"], cwd, probe_env))
    if not target:
        raise CompilerProbeError(f"{local_path} -dumpmachine printed nothing")

    c_dirs = await _include_search_list(local_path, "c", cwd, probe_env)
    cxx_dirs = await _include_search_list(local_path, "c++", cwd, probe_env)
    binary_hash = await anyio.to_thread.run_sync(sha256_of_file, real_path)

    info = CompilerInfo(
        local_compiler_path=local_path,
        real_compiler_path=real_path,
        name=compiler_name(local_path, real_path),
        version=format_version(dumpversion, version),
        target=target,
        binary_hash=binary_hash,
        size=size,
        system_include_paths=c_dirs,
        cxx_system_include_paths=cxx_dirs,
    )
    log.debug("compiler_probed", path=local_path, name=info.name, version=info.version)
    return info


async def _probe_output(compiler: str, args: list[str], cwd: str, env: dict[str, str]) -> str:
    command = [compiler, *args]
    try:
        result = await anyio.run_process(
            command, stderr=subprocess.STDOUT, check=False, cwd=cwd, env=env
        )
    except OSError as exc:
        raise CompilerProbeError(f"could not run {' '.join(command)}: {exc}") from exc

    output = result.stdout.decode("utf-8", errors="replace")
    if result.returncode != 0:
        raise CompilerProbeError(
            f"{' '.join(command)} exited with status {result.returncode}: "
            f"{first_line(output)!r}; gomaproxy cc runs gcc and clang only, check that "
            f"{compiler} is one of them and runs"
        )
    if not output.strip():
        raise CompilerProbeError(
            f"{' '.join(command)} printed nothing, so {compiler} does not look like gcc or "
            "clang; gomaproxy cc runs gcc and clang only"
        )
    return output


async def _include_search_list(
    compiler: str, language: str, cwd: str, env: dict[str, str]
) -> tuple[str, ...]:
    """Return the include directories for ``language``, or () when the compiler lacks it.

    A gcc installed without its C++ front end fails on ``-x c++``.  Such a compiler can
    still build C, so the failure only leaves the C++ list empty.
    """
    command = [compiler, "-E", "-v", "-x", language, "/dev/null"]
    try:
        result = await anyio.run_process(
            command, stdout=subprocess.DEVNULL, check=False, cwd=cwd, env=env
        )
    except OSError as exc:
        raise CompilerProbeError(f"could not run {' '.join(command)}: {exc}") from exc

    output = result.stderr.decode("utf-8", errors="replace")
    if result.returncode != 0:
        log.debug("include_probe_failed", command=command, status=result.returncode)
        return ()
    return parse_include_search_list(output)


# ---------------------------------------------------------------------------------------
# Probe cache: one JSON file per local compiler path.


def _cache_file(cache_dir: Path, local_path: str) -> Path:
    name = hashlib.sha256(local_path.encode("utf-8", errors="surrogateescape")).hexdigest()
    return cache_dir / "compilers" / f"{name[:32]}.json"


def _read_cache(cache_file: Path, key: dict[str, object]) -> CompilerInfo | None:
    try:
        data = json.loads(cache_file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        log.debug("compiler_cache_unreadable", file=str(cache_file), error=str(exc))
        return None

    if data.get("format") != _CACHE_FORMAT or data.get("key") != key:
        return None
    try:
        return CompilerInfo.from_json(data["info"])
    except (KeyError, TypeError, ValueError) as exc:
        log.debug("compiler_cache_invalid", file=str(cache_file), error=str(exc))
        return None


def _write_cache(cache_file: Path, key: dict[str, object], info: CompilerInfo) -> None:
    """Store a probe result.  A failed write only costs a new probe, so it is only logged."""
    payload = json.dumps({"format": _CACHE_FORMAT, "key": key, "info": info.to_json()})
    try:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        temporary = cache_file.with_name(f".{cache_file.name}.{os.getpid()}.tmp")
        temporary.write_text(payload, encoding="utf-8")
        os.replace(temporary, cache_file)
    except OSError as exc:
        log.warning("compiler_cache_write_failed", file=str(cache_file), error=str(exc))
