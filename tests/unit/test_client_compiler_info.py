"""Tests of the local compiler probe, against the real gcc of the test machine."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
from pathlib import Path

import pytest
import trio

from gomaproxy.client.compiler_info import (
    CompilerInfo,
    CompilerProbeError,
    compiler_name,
    fill_command_spec,
    format_version,
    parse_include_search_list,
    probe_compiler,
    strip_gcc_program_name,
)
from gomaproxy.protos import goma_data_pb2 as goma_pb2

GCC = shutil.which("gcc")

needs_gcc = pytest.mark.skipif(GCC is None, reason="gcc is not installed")


def _real_file_facts(path: str) -> tuple[str, str, int]:
    """Return the real path, sha256 and size of the file ``path`` resolves to."""
    real = os.path.realpath(path)
    return real, hashlib.sha256(Path(real).read_bytes()).hexdigest(), os.path.getsize(real)


def _all_directories(paths: tuple[str, ...]) -> bool:
    return all(os.path.isdir(path) for path in paths)


@needs_gcc
async def test_probe_compiler_hashes_real_binary(tmp_path: Path) -> None:
    """binary_hash is the sha256 of the file gcc resolves to, and size is its size."""
    assert GCC is not None
    real, sha256, size = _real_file_facts(GCC)

    with trio.fail_after(60):
        info = await probe_compiler("gcc", cwd=str(tmp_path))

    assert info.binary_hash == sha256
    assert info.size == size
    assert info.local_compiler_path == GCC
    assert info.real_compiler_path == real
    assert info.name == "gcc"


@needs_gcc
async def test_probe_compiler_version_format(tmp_path: Path) -> None:
    """version is the -dumpversion line, then the --version line without 'gcc ' in []."""
    with trio.fail_after(60):
        info = await probe_compiler("gcc", cwd=str(tmp_path))
    dumpversion = (await trio.run_process(["gcc", "-dumpversion"], capture_stdout=True)).stdout
    version_line = (
        (await trio.run_process(["gcc", "--version"], capture_stdout=True))
        .stdout.decode()
        .splitlines()[0]
    )

    assert re.fullmatch(r"[0-9][^\[\]]*\[\(.*\) [0-9.]+\]", info.version)
    assert info.version.startswith(dumpversion.decode().strip() + "[")
    assert info.version.endswith(version_line.removeprefix("gcc ") + "]")
    assert "gcc" not in info.version.split("[", 1)[1].split("(", 1)[0]


@needs_gcc
async def test_probe_compiler_target_and_include_dirs(tmp_path: Path) -> None:
    """target is the -dumpmachine line, and both include lists name existing dirs."""
    with trio.fail_after(60):
        info = await probe_compiler("gcc", cwd=str(tmp_path))
    machine = (await trio.run_process(["gcc", "-dumpmachine"], capture_stdout=True)).stdout

    assert info.target == machine.decode().strip()
    assert "/usr/include" in info.system_include_paths
    assert _all_directories(info.system_include_paths)
    assert len(info.cxx_system_include_paths) >= len(info.system_include_paths)


@needs_gcc
async def test_probe_compiler_reuses_cache(tmp_path: Path) -> None:
    """A second probe with the same cache dir returns the stored result unchanged."""
    cache_dir = tmp_path / "state"

    with trio.fail_after(60):
        first = await probe_compiler("gcc", cwd=str(tmp_path), cache_dir=cache_dir)
        cache_files = list((cache_dir / "compilers").glob("*.json"))
        second = await probe_compiler("gcc", cwd=str(tmp_path), cache_dir=cache_dir)

    assert len(cache_files) == 1
    assert second == first


async def test_probe_compiler_missing_compiler(tmp_path: Path) -> None:
    """A compiler that is not in PATH fails with a message naming it."""
    with trio.fail_after(10), pytest.raises(CompilerProbeError, match="no-such-cc"):
        await probe_compiler("no-such-cc", cwd=str(tmp_path), environ={"PATH": str(tmp_path)})


@pytest.mark.parametrize(
    ("invoked", "real", "expected"),
    [
        ("/usr/bin/gcc", "/usr/bin/x86_64-linux-gnu-gcc-12", "gcc"),
        ("/usr/bin/g++", "/usr/bin/x86_64-linux-gnu-g++-12", "g++"),
        ("/usr/bin/cc", "/usr/bin/x86_64-linux-gnu-gcc-12", "gcc"),
        ("/usr/bin/c++", "/usr/bin/x86_64-linux-gnu-g++-12", "g++"),
        ("/usr/bin/cc", "/usr/lib/llvm-14/bin/clang", "clang"),
        ("/usr/bin/c++", "/usr/lib/llvm-14/bin/clang", "clang++"),
        ("/usr/bin/clang++-14", "/usr/lib/llvm-14/bin/clang", "clang++"),
        ("/opt/x/bin/x86_64-linux-gnu-gcc-12", "/opt/x/bin/x86_64-linux-gnu-gcc-12", "gcc"),
    ],
    ids=["gcc", "g++", "cc-gcc", "c++-gcc", "cc-clang", "c++-clang", "clang++-14",
         "triplet-gcc"],
)  # fmt: skip
def test_compiler_name_rules(invoked: str, real: str, expected: str) -> None:
    """The key comes from the invoked name, or from the real binary for cc and c++."""
    assert compiler_name(invoked, real) == expected


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("gcc (Debian 12.2.0-14+deb12u1) 12.2.0", "(Debian 12.2.0-14+deb12u1) 12.2.0"),
        ("x86_64-linux-gnu-g++-12 (Debian 12.2.0) 12.2.0", "(Debian 12.2.0) 12.2.0"),
        ("cc (GCC) 13.1.0", "(GCC) 13.1.0"),
        ("Debian clang version 14.0.6", "Debian clang version 14.0.6"),
        ("clang version 17.0.0 (https://github.com/llvm/llvm-project abc)",
         "clang version 17.0.0 (https://github.com/llvm/llvm-project abc)"),
    ],
    ids=["gcc", "triplet-g++", "cc", "debian-clang", "clang-with-paren"],
)  # fmt: skip
def test_strip_gcc_program_name_rules(line: str, expected: str) -> None:
    """Only a gcc-family program name before the first '(' is removed."""
    assert strip_gcc_program_name(line) == expected


def test_format_version_uses_first_lines() -> None:
    """Only the first line of each output is used."""
    version = format_version("12\n", "gcc (Debian 12.2.0-14+deb12u1) 12.2.0\nCopyright\n")

    assert version == "12[(Debian 12.2.0-14+deb12u1) 12.2.0]"


def test_parse_include_search_list_reads_angle_section() -> None:
    """Only the <...> search list is returned, in order, without framework markers."""
    output = (
        'ignoring nonexistent directory "/x"\n'
        '#include "..." search starts here:\n'
        " quoted/dir\n"
        "#include <...> search starts here:\n"
        " /usr/lib/gcc/x86_64-linux-gnu/12/include\n"
        " /usr/include\n"
        " /Library/Frameworks (framework directory)\n"
        "End of search list.\n"
        " /after/end\n"
    )

    directories = parse_include_search_list(output)

    assert directories == (
        "/usr/lib/gcc/x86_64-linux-gnu/12/include",
        "/usr/include",
        "/Library/Frameworks",
    )


def test_fill_command_spec_picks_language_list() -> None:
    """A C compile fills system_include_path and a C++ compile cxx_system_include_path."""
    info = CompilerInfo(
        local_compiler_path="/usr/bin/gcc",
        real_compiler_path="/usr/bin/x86_64-linux-gnu-gcc-12",
        name="gcc",
        version="12[(Debian) 12.2.0]",
        target="x86_64-linux-gnu",
        binary_hash="ab" * 32,
        size=1234,
        system_include_paths=("/usr/include",),
        cxx_system_include_paths=("/usr/include/c++/12", "/usr/include"),
    )
    c_spec = goma_pb2.CommandSpec()
    cxx_spec = goma_pb2.CommandSpec()

    fill_command_spec(c_spec, info, cplusplus=False)
    fill_command_spec(cxx_spec, info, cplusplus=True)

    assert c_spec.binary_hash == b"ab" * 32
    assert c_spec.size == 1234
    assert c_spec.local_compiler_path == "/usr/bin/gcc"
    assert list(c_spec.system_include_path) == ["/usr/include"]
    assert list(c_spec.cxx_system_include_path) == []
    assert list(cxx_spec.system_include_path) == []
    assert list(cxx_spec.cxx_system_include_path) == ["/usr/include/c++/12", "/usr/include"]


async def test_probe_rejects_program_that_is_not_a_compiler(tmp_path: Path) -> None:
    """A program that prints nothing for -dumpversion is named as not gcc or clang."""
    with pytest.raises(CompilerProbeError) as caught:
        await probe_compiler("/bin/true", cwd=str(tmp_path), cache_dir=tmp_path / "cache")

    assert "does not look like gcc or clang" in str(caught.value)


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("http://127.0.0.1:8090/foo", "pass a path prefix with --url-prefix"),
        ("https://127.0.0.1:8090", "only http:// is supported"),
        ("http://:8090", "the host is missing"),
    ],
    ids=["path", "https", "no-host"],
)
def test_server_url_rejects_what_it_cannot_use(url: str, fragment: str) -> None:
    """A server URL with a path, another scheme or no host is an error naming the fix."""
    from gomaproxy.client.http import ServerAddress
    from gomaproxy.errors import GomaProxyError

    with pytest.raises(GomaProxyError) as caught:
        ServerAddress.from_url(url)

    assert fragment in caught.value.message
