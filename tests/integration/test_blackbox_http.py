"""Black-box tests: ExecReqs over HTTP to a running gomaproxy, actions read back from the CAS.

The proxy serves on 127.0.0.1 port 0 with a TOML inventory and the recording in-memory
backend.  Each test sends requests with the goma HTTP client and then reads the Action,
the Command and the input tree that reached the backend, as a REAPI server receives
them.  Nothing runs a compiler: the fake backend's runner writes the outputs.  The last
section posts the byte-exact fixtures of tests/fixtures as raw compressed bodies.
"""

from __future__ import annotations

import gzip
import json
import zlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import h11
import pytest
import trio
from prometheus_client import CollectorRegistry

from gomaproxy.client.http import GomaHttpClient, ServerAddress
from gomaproxy.config import Config
from gomaproxy.digest import DigestKey, digest_of_bytes, digest_of_message
from gomaproxy.exec.adapter import Adapter
from gomaproxy.exec.toml_inventory import load_toml_inventory
from gomaproxy.goma.blob import LARGE_FILE_THRESHOLD, file_blob, hash_key
from gomaproxy.goma.frontend import make_app
from gomaproxy.goma.httpserver import serve_http
from gomaproxy.protos import goma_data_pb2 as goma_pb2
from gomaproxy.protos import remote_execution_pb2 as re_pb2
from gomaproxy.proxy import open_proxy
from tests.fakes import FakeBackend
from tests.fixtures import make_fixtures

TIME_LIMIT_S = 30.0
GCC_HASH = "1" * 64
JAVAC_HASH = "2" * 64
CLANG_HASH = "3" * 64
CLANG_CL_HASH = "4" * 64
SHIPPED_HASH = "5" * 64
# Toolchain files that the inventory ships with each request, by source name.
SHIPPED_FILES = {"tc/clang++": b"\x7fELF clang 17", "tc/libLLVM.so": b"\x7fELF llvm"}
CWD = "/home/u/proj/out"
SOURCE = b"int a(void) { return 1; }\n"

INVENTORY = f"""
[[toolchain]]
name = "gcc"
version = "12[(Debian 12.2.0) 12.2.0]"
target = "x86_64-linux-gnu"
binary_hash = "{GCC_HASH}"
properties = {{ OSFamily = "Linux", container-image = "docker://gcc:12" }}
cmd_file = {{ path = "/usr/bin/gcc" }}

[[toolchain]]
name = "javac"
version = "17.0.9"
target = "java"
binary_hash = "{JAVAC_HASH}"
properties = {{ OSFamily = "Linux" }}
cmd_file = {{ path = "/usr/bin/javac" }}

[[toolchain]]
name = "clang"
version = "14.0.6[Debian clang version 14.0.6]"
target = "x86_64-pc-linux-gnu"
binary_hash = "{CLANG_HASH}"
clang_need_target = true
cmd_file = {{ path = "/usr/lib/llvm-14/bin/clang" }}

[[toolchain]]
name = "clang-cl"
version = "17[clang-cl]"
target = "x86_64-pc-windows-msvc"
binary_hash = "{CLANG_CL_HASH}"
path_type = "windows"
properties = {{ OSFamily = "Windows" }}
cmd_file = {{ path = 'C:\\Program Files\\LLVM\\bin\\clang-cl.exe' }}

[[toolchain]]
name = "clang++"
version = "17[shipped]"
target = "x86_64-linux-gnu"
binary_hash = "{SHIPPED_HASH}"
cmd_file = {{ path = "bin/clang++", source = "tc/clang++" }}
files = [
    {{ path = "../lib/libLLVM.so", source = "tc/libLLVM.so" }},
    {{ path = "clang", symlink = "clang++" }},
]

[[platform]]
dimensions = ["os:linux", "pool:default"]
properties = {{ OSFamily = "Linux", Pool = "default" }}
"""

Runner = Callable[[re_pb2.Command, dict[DigestKey, bytes]], re_pb2.ActionResult]


def object_runner(command: re_pb2.Command, cas: dict[DigestKey, bytes]) -> re_pb2.ActionResult:
    """Write one small object per output path and print the arguments to stdout."""
    result = re_pb2.ActionResult(exit_code=0, stdout_raw=" ".join(command.arguments).encode())
    for path in command.output_paths:
        content = b"object " + path.encode()
        digest = digest_of_bytes(content)
        cas[digest] = content
        result.output_files.add(path=path, digest=digest.to_proto())
    return result


@dataclass
class Served:
    """A proxy over the fake backend and a goma client connected to it."""

    backend: FakeBackend
    client: GomaHttpClient

    def action(self, index: int = -1) -> re_pb2.Action:
        execute = self.backend.execute_requests[index]
        return re_pb2.Action.FromString(self.backend.cas[DigestKey.of(execute.action_digest)])

    def command(self, index: int = -1) -> re_pb2.Command:
        digest = DigestKey.of(self.action(index).command_digest)
        return re_pb2.Command.FromString(self.backend.cas[digest])

    def input_tree(self, index: int = -1) -> dict[str, tuple[str, str, bool]]:
        """Return every entry of the input root as path -> (kind, digest or target, x bit)."""
        entries: dict[str, tuple[str, str, bool]] = {}
        self._walk(DigestKey.of(self.action(index).input_root_digest), "", entries)
        return entries

    def _walk(
        self, digest: DigestKey, prefix: str, entries: dict[str, tuple[str, str, bool]]
    ) -> None:
        # The empty Directory is the empty blob, which is never uploaded.
        data = b"" if digest.is_empty else self.backend.cas[digest]
        directory = re_pb2.Directory.FromString(data)
        for file in directory.files:
            entries[prefix + file.name] = ("file", file.digest.hash, file.is_executable)
        for link in directory.symlinks:
            entries[prefix + link.name] = ("symlink", link.target, False)
        for child in directory.directories:
            entries[prefix + child.name] = ("dir", "", False)
            self._walk(DigestKey.of(child.digest), f"{prefix}{child.name}/", entries)


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[Served]:
    inventory = tmp_path / "inventory.toml"
    inventory.write_text(INVENTORY)
    (tmp_path / "tc").mkdir()
    for name, content in SHIPPED_FILES.items():
        (tmp_path / name).write_bytes(content)
    config = Config()
    config.server.port = 0
    config.state.dir = tmp_path / "state"
    config.log.format = "console"
    config.exec.inventory_file = str(inventory)
    backend = FakeBackend(runner=object_runner)

    async with (
        open_proxy(config, backend=backend, registry=CollectorRegistry()) as proxy,
        trio.open_nursery() as nursery,
    ):
        port = await nursery.start(proxy.serve)
        async with GomaHttpClient(ServerAddress.from_url(f"http://127.0.0.1:{port}")) as client:
            yield Served(backend, client)
        nursery.cancel_scope.cancel()


def add_input(request: goma_pb2.ExecReq, filename: str, content: bytes) -> None:
    blob = file_blob(content)
    request.input.add(filename=filename, hash_key=hash_key(blob), content=blob)


def gcc_request(*extra_args: str) -> goma_pb2.ExecReq:
    request = goma_pb2.ExecReq(
        arg=["gcc", "-O2", "-c", "../src/a.c", "-o", "obj/a.o", *extra_args],
        env=[
            f"PWD={CWD}",
            "PATH=/usr/local/bin:/usr/bin",
            "HOME=/home/u",
            "LANG=C.UTF-8",
            "CPATH=../include",
        ],
        cwd=CWD,
        expected_output_files=["obj/a.o"],
    )
    spec = request.command_spec
    spec.name, spec.version, spec.target = (
        "gcc",
        "12[(Debian 12.2.0) 12.2.0]",
        "x86_64-pc-linux-gnu",
    )
    spec.binary_hash = GCC_HASH.encode()
    spec.local_compiler_path = "/usr/bin/gcc"
    spec.system_include_path.append("../sysinclude")
    request.requester_info.path_style = goma_pb2.RequesterInfo.POSIX_STYLE
    add_input(request, "../src/a.c", SOURCE)
    return request


# Selector toolchains.


async def test_relocatable_request_command_and_platform(served: Served) -> None:
    """A relocatable gcc request runs in cwd with allowlisted variables and no PWD."""
    with trio.fail_after(TIME_LIMIT_S):
        response = await served.client.exec(gcc_request())

    command = served.command()
    action = served.action()
    assert response.result.exit_status == 0
    assert response.result.command_spec.binary_hash == GCC_HASH.encode()
    assert response.result.command_spec.target == "x86_64-pc-linux-gnu"
    assert list(command.arguments) == ["/usr/bin/gcc", "-O2", "-c", "../src/a.c", "-o", "obj/a.o"]
    assert command.working_directory == "out"
    assert [(v.name, v.value) for v in command.environment_variables] == [("CPATH", "../include")]
    assert list(command.output_paths) == ["obj/a.o"]
    assert [(p.name, p.value) for p in command.platform.properties] == [
        ("OSFamily", "Linux"),
        ("container-image", "docker://gcc:12"),
    ]
    assert action.platform == command.platform
    assert not action.do_not_cache
    assert response.cache_key == str(DigestKey.of(served.backend.execute_requests[0].action_digest))
    tree = served.input_tree()
    assert tree["src/a.c"] == ("file", digest_of_bytes(SOURCE).hash, False)
    assert tree["sysinclude"] == ("dir", "", False)
    assert tree["out/obj"] == ("dir", "", False)
    assert [o.filename for o in response.result.output] == ["obj/a.o"]


async def test_non_relocatable_request_keeps_pwd(served: Served) -> None:
    """An absolute include dir makes the action run at its client root with PWD kept."""
    with trio.fail_after(TIME_LIMIT_S):
        response = await served.client.exec(gcc_request("-I/home/u/proj/include"))

    command = served.command()
    properties = {p.name: p.value for p in command.platform.properties}
    assert response.result.exit_status == 0
    assert properties["InputRootAbsolutePath"] == "/home/u/proj"
    assert properties["container-image"] == "docker://gcc:12"
    assert [(v.name, v.value) for v in command.environment_variables] == [
        ("CPATH", "../include"),
        ("PWD", CWD),
    ]
    assert served.action().platform == command.platform


async def test_relocatable_and_non_relocatable_differ(served: Served) -> None:
    """Two users' relocatable requests share an action; non-relocatable ones do not."""
    other = gcc_request()
    other.cwd = "/home/v/proj/out"
    other.env[0] = "PWD=/home/v/proj/out"
    other.env[2] = "HOME=/home/v"

    with trio.fail_after(TIME_LIMIT_S):
        first = await served.client.exec(gcc_request())
        second = await served.client.exec(other)
        absolute = await served.client.exec(gcc_request("-I/home/u/proj/include"))

    assert first.cache_key == second.cache_key
    assert second.cache_hit == goma_pb2.ExecResp.MEM_CACHE
    assert absolute.cache_key != first.cache_key
    assert served.backend.executions == 2


async def test_selector_miss_is_bad_request(served: Served) -> None:
    """An unknown compiler hash is BAD_REQUEST echoing the spec without binary_hash."""
    request = gcc_request()
    request.command_spec.binary_hash = b"9" * 64

    with trio.fail_after(TIME_LIMIT_S):
        response = await served.client.exec(request)

    assert response.error == goma_pb2.ExecResp.BAD_REQUEST
    assert response.result.command_spec.name == "gcc"
    assert response.result.command_spec.version == "12[(Debian 12.2.0) 12.2.0]"
    assert not response.result.command_spec.HasField("binary_hash")
    assert served.backend.calls["Execute"] == 0


@pytest.mark.parametrize(
    ("name", "value", "accepted"),
    [("container-image", "docker://mine", True), ("OSFamily", "Windows", False)],
    ids=["allowed", "unsafe"],
)
async def test_client_platform_property(
    served: Served, name: str, value: str, accepted: bool
) -> None:
    """An allowed client property overrides the inventory; an unsafe one is BAD_REQUEST."""
    request = gcc_request()
    request.requester_info.platform_properties.add(name=name, value=value)

    with trio.fail_after(TIME_LIMIT_S):
        response = await served.client.exec(request)

    if accepted:
        properties = {p.name: p.value for p in served.command().platform.properties}
        assert properties[name] == value
        assert response.result.exit_status == 0
    else:
        assert response.error == goma_pb2.ExecResp.BAD_REQUEST
        assert response.error_message[0].startswith("unsafe platform property: OSFamily")
        assert served.backend.calls["Execute"] == 0


async def test_javac_request_is_relocatable_with_output_dir(served: Served) -> None:
    """javac runs relocatably with its own variables and returns the -d directory's files."""
    classes = re_pb2.Directory()
    content = b"class bytes"
    digest = served.backend.put(content)
    classes.files.add(name="A.class", digest=digest.to_proto())
    tree = re_pb2.Tree(root=classes)
    tree_digest, tree_bytes = digest_of_message(tree)
    served.backend.cas[tree_digest] = tree_bytes

    def javac_runner(command: re_pb2.Command, cas: dict[DigestKey, bytes]) -> re_pb2.ActionResult:
        result = re_pb2.ActionResult(exit_code=0)
        result.output_directories.add(path="classes", tree_digest=tree_digest.to_proto())
        return result

    served.backend.runner = javac_runner
    request = goma_pb2.ExecReq(
        arg=["javac", "-d", "classes", "-s", "gen", "/home/u/proj/A.java"],
        env=[f"PWD={CWD}", "CLASSPATH=lib/x.jar", "PATH=/usr/bin", "CPATH=x"],
        cwd=CWD,
    )
    spec = request.command_spec
    spec.name, spec.version, spec.target = "javac", "17.0.9", "java"
    spec.binary_hash = JAVAC_HASH.encode()
    spec.local_compiler_path = "/usr/bin/javac"
    add_input(request, "/home/u/proj/A.java", b"class A {}\n")

    with trio.fail_after(TIME_LIMIT_S):
        response = await served.client.exec(request)

    command = served.command()
    assert response.result.exit_status == 0
    assert [(v.name, v.value) for v in command.environment_variables] == [
        ("CLASSPATH", "lib/x.jar")
    ]
    assert "InputRootAbsolutePath" not in {p.name for p in command.platform.properties}
    assert list(command.output_paths) == ["classes", "gen"]
    assert [o.filename for o in response.result.output] == ["classes/A.class"]
    assert response.result.output[0].blob.content == content


async def test_installed_compiler_keeps_project_root(served: Served) -> None:
    """An installed compiler outside /usr/bin neither widens the root nor is an input."""
    request = gcc_request()
    spec = request.command_spec
    spec.name, spec.version = "clang", "14.0.6[Debian clang version 14.0.6]"
    spec.binary_hash = CLANG_HASH.encode()
    spec.local_compiler_path = "/usr/bin/clang"

    with trio.fail_after(TIME_LIMIT_S):
        response = await served.client.exec(request)

    command = served.command()
    assert response.result.exit_status == 0
    assert list(command.arguments)[:2] == [
        "/usr/lib/llvm-14/bin/clang",
        "--target=x86_64-pc-linux-gnu",
    ]
    assert command.working_directory == "out"
    assert "InputRootAbsolutePath" not in {p.name for p in command.platform.properties}
    assert not any(path.startswith("usr") for path in served.input_tree())


async def test_shipped_toolchain_enters_input_tree(served: Served) -> None:
    """A relocatable entry's files go next to the client's compiler and are uploaded."""
    request = gcc_request()
    request.arg[0] = "../tc/bin/clang++"
    spec = request.command_spec
    spec.name, spec.version, spec.target = "clang++", "17[shipped]", "x86_64-linux-gnu"
    spec.binary_hash = SHIPPED_HASH.encode()
    spec.local_compiler_path = "/home/u/proj/tc/bin/clang++"

    with trio.fail_after(TIME_LIMIT_S):
        response = await served.client.exec(request)

    command = served.command()
    tree = served.input_tree()
    compiler = digest_of_bytes(SHIPPED_FILES["tc/clang++"])
    library = digest_of_bytes(SHIPPED_FILES["tc/libLLVM.so"])
    assert response.result.exit_status == 0
    assert response.result.command_spec.binary_hash == SHIPPED_HASH.encode()
    assert command.arguments[0] == "../tc/bin/clang++"
    assert command.working_directory == "out"
    assert tree["tc/bin/clang++"] == ("file", compiler.hash, True)
    assert tree["tc/lib/libLLVM.so"] == ("file", library.hash, False)
    assert tree["tc/bin/clang"] == ("symlink", "clang++", False)
    assert served.backend.cas[compiler] == SHIPPED_FILES["tc/clang++"]
    assert served.backend.cas[library] == SHIPPED_FILES["tc/libLLVM.so"]


def clang_cl_request(*extra_env: str) -> goma_pb2.ExecReq:
    request = goma_pb2.ExecReq(
        arg=["clang-cl.exe", "/c", "..\\src\\a.cc", "/Foobj\\a.obj"],
        env=["Path=C:\\Windows", *extra_env],
        cwd="C:\\src\\out",
        expected_output_files=["obj\\a.obj"],
    )
    spec = request.command_spec
    spec.name, spec.version, spec.target = "clang-cl", "17[clang-cl]", "x86_64-pc-windows-msvc"
    spec.binary_hash = CLANG_CL_HASH.encode()
    spec.local_compiler_path = "C:\\Program Files\\LLVM\\bin\\clang-cl.exe"
    request.requester_info.path_style = goma_pb2.RequesterInfo.WINDOWS_STYLE

    add_input(request, "..\\src\\a.cc", SOURCE)
    add_input(request, "..\\src\\foo.h", b"#pragma once\n")
    add_input(request, "..\\src\\Foo.h", b"#pragma once\n")
    return request


async def test_windows_request_dedupes_inputs(served: Served) -> None:
    """Windows inputs that differ only in case become one entry, spelled Foo.h."""
    with trio.fail_after(TIME_LIMIT_S):
        response = await served.client.exec(clang_cl_request())

    command = served.command()
    tree = served.input_tree()
    assert response.result.exit_status == 0
    assert command.arguments[0] == "C:\\Program Files\\LLVM\\bin\\clang-cl.exe"
    assert command.working_directory == "out"
    assert list(command.output_paths) == ["obj/a.obj"]
    assert [o.filename for o in response.result.output] == ["obj\\a.obj"]
    assert [v.name for v in command.environment_variables] == []
    assert "src/Foo.h" in tree
    assert "src/foo.h" not in tree
    assert "InputRootAbsolutePath" not in {p.name for p in command.platform.properties}


async def test_windows_include_variable_is_not_relocatable(served: Served) -> None:
    """clang-cl keeps INCLUDE, and its absolute value makes the request run at its root."""
    with trio.fail_after(TIME_LIMIT_S):
        await served.client.exec(clang_cl_request("INCLUDE=C:\\vs\\include"))

    command = served.command()
    properties = {p.name: p.value for p in command.platform.properties}
    assert [(v.name, v.value) for v in command.environment_variables] == [
        ("INCLUDE", "C:\\vs\\include")
    ]
    assert properties["InputRootAbsolutePath"] == "C:\\src"


# Arbitrary toolchains.


def ats_request(dimensions: list[str]) -> goma_pb2.ExecReq:
    request = goma_pb2.ExecReq(
        arg=["../tc/bin/clang", "-c", "../src/a.c", "-o", "a.o"],
        env=[f"PWD={CWD}"],
        cwd=CWD,
        expected_output_files=["a.o"],
        toolchain_included=True,
    )
    spec = request.command_spec
    spec.name, spec.version, spec.target = "clang", "17[custom]", "x86_64-unknown-linux-gnu"
    spec.binary_hash = b"7" * 64
    spec.local_compiler_path = "../tc/bin/clang"

    info = request.requester_info
    info.path_style = goma_pb2.RequesterInfo.POSIX_STYLE
    info.dimensions.extend(dimensions)
    request.toolchain_specs.extend(
        [
            goma_pb2.ToolchainSpec(path="../tc/bin/clang", symlink_path="clang-17"),
            goma_pb2.ToolchainSpec(
                path="../tc/bin/clang++", symlink_path="/home/u/proj/tc/bin/clang-17"
            ),
            goma_pb2.ToolchainSpec(
                path="../tc/bin/clang-17", hash="a" * 64, size=8, is_executable=True
            ),
            goma_pb2.ToolchainSpec(path="../tc/lib/libc++.so.1", hash="b" * 64, size=6),
        ]
    )

    add_input(request, "../src/a.c", SOURCE)
    add_input(request, "../tc/bin/clang-17", b"\x7fELF 17")
    add_input(request, "../tc/lib/libc++.so.1", b"\x7fELF1")
    return request


async def test_arbitrary_toolchain_request_tree(served: Served) -> None:
    """An ATS request gets the matched platform, its symlinks and executable bits."""
    with trio.fail_after(TIME_LIMIT_S):
        response = await served.client.exec(ats_request(["os:linux"]))

    command = served.command()
    tree = served.input_tree()
    assert response.result.exit_status == 0
    assert not response.result.HasField("command_spec")
    assert list(command.arguments) == ["../tc/bin/clang", "-c", "../src/a.c", "-o", "a.o"]
    assert command.working_directory == "out"
    assert [(p.name, p.value) for p in command.platform.properties] == [
        ("OSFamily", "Linux"),
        ("Pool", "default"),
    ]
    assert [v.name for v in command.environment_variables] == []
    assert tree["tc/bin/clang"] == ("symlink", "clang-17", False)
    assert tree["tc/bin/clang++"] == ("symlink", "clang-17", False)
    assert tree["tc/bin/clang-17"] == ("file", digest_of_bytes(b"\x7fELF 17").hash, True)
    assert tree["tc/lib/libc++.so.1"] == ("file", digest_of_bytes(b"\x7fELF1").hash, False)
    assert tree["src/a.c"][2] is False


async def test_arbitrary_toolchain_keeps_absolute_symlink_when_allowed(served: Served) -> None:
    """A backend that allows absolute symlink targets gets them unchanged."""
    served.backend.symlink_strategy = re_pb2.SymlinkAbsolutePathStrategy.ALLOWED

    with trio.fail_after(TIME_LIMIT_S):
        await served.client.exec(ats_request(["os:linux", "pool:default"]))

    tree = served.input_tree()
    assert tree["tc/bin/clang++"] == ("symlink", "/home/u/proj/tc/bin/clang-17", False)


@pytest.mark.parametrize(
    ("dimensions", "message"),
    [
        ([], "No dimensions are specified"),
        (["os:linux", "pool:gpu"], "no platform in the inventory has all the requested"),
    ],
    ids=["no-dimensions", "no-match"],
)
async def test_arbitrary_toolchain_miss(
    served: Served, dimensions: list[str], message: str
) -> None:
    """Without a matching platform the request is BAD_REQUEST and nothing runs."""
    with trio.fail_after(TIME_LIMIT_S):
        response = await served.client.exec(ats_request(dimensions))

    assert response.error == goma_pb2.ExecResp.BAD_REQUEST
    assert message in response.error_message[0]
    assert response.result.exit_status == -1
    assert not response.result.HasField("command_spec")
    assert served.backend.calls["Execute"] == 0


# Outputs.


async def test_large_response_uses_file_refs(served: Served) -> None:
    """Four 2 MiB outputs pass the 6 MiB limit and come back as FILE_REFs to stored files."""
    names = [f"obj/part{i}.o" for i in range(4)]

    def big_runner(command: re_pb2.Command, cas: dict[DigestKey, bytes]) -> re_pb2.ActionResult:
        result = re_pb2.ActionResult(exit_code=0)
        for index, path in enumerate(sorted(command.output_paths)):
            content = bytes([index]) * LARGE_FILE_THRESHOLD
            digest = digest_of_bytes(content)
            cas[digest] = content
            result.output_files.add(path=path, digest=digest.to_proto())
        return result

    served.backend.runner = big_runner
    request = gcc_request()
    del request.expected_output_files[:]
    request.expected_output_files.extend(names)

    with trio.fail_after(TIME_LIMIT_S):
        response = await served.client.exec(request)
        keys = [output.blob.hash_key[0] for output in response.result.output]
        lookup = await served.client.lookup_file(goma_pb2.LookupFileReq(hash_key=keys))

    assert response.result.exit_status == 0
    assert response.ByteSize() <= 6 * 1024 * 1024
    assert [o.filename for o in response.result.output] == names
    assert [o.blob.blob_type for o in response.result.output] == [goma_pb2.FileBlob.FILE_REF] * 4
    assert [o.blob.file_size for o in response.result.output] == [LARGE_FILE_THRESHOLD] * 4
    assert [blob.blob_type for blob in lookup.blob] == [goma_pb2.FileBlob.FILE] * 4
    assert [blob.content[:1] for blob in lookup.blob] == [b"\x00", b"\x01", b"\x02", b"\x03"]
    assert [hash_key(blob) for blob in lookup.blob] == keys


async def test_output_symlink_becomes_file(served: Served) -> None:
    """An output symlink to another output comes back as that output's content."""

    def symlink_runner(command: re_pb2.Command, cas: dict[DigestKey, bytes]) -> re_pb2.ActionResult:
        content = b"real object"
        digest = digest_of_bytes(content)
        cas[digest] = content
        result = re_pb2.ActionResult(exit_code=0)
        result.output_files.add(path="obj/a.o", digest=digest.to_proto())
        result.output_symlinks.add(path="obj/link.o", target="a.o")
        return result

    served.backend.runner = symlink_runner
    request = gcc_request()
    request.expected_output_files.append("obj/link.o")

    with trio.fail_after(TIME_LIMIT_S):
        response = await served.client.exec(request)

    outputs = {o.filename: o.blob.content for o in response.result.output}
    assert response.result.exit_status == 0
    assert outputs == {"obj/a.o": b"real object", "obj/link.o": b"real object"}


async def test_output_symlink_outside_result_is_error(served: Served) -> None:
    """An output symlink to an absolute path is an error_message and exit -1."""

    def symlink_runner(command: re_pb2.Command, cas: dict[DigestKey, bytes]) -> re_pb2.ActionResult:
        result = re_pb2.ActionResult(exit_code=0)
        result.output_file_symlinks.add(path="obj/a.o", target="/tmp/elsewhere.o")
        return result

    served.backend.runner = symlink_runner

    with trio.fail_after(TIME_LIMIT_S):
        response = await served.client.exec(gcc_request())

    assert response.result.exit_status == -1
    assert response.error_message[0].startswith("output symlink obj/a.o -> /tmp/elsewhere.o")
    assert list(response.result.output) == []


# Byte-exact request fixtures, written field by field by tests/fixtures/make_fixtures.py.

FIXTURES = Path(make_fixtures.__file__).parent
MANIFEST = json.loads((FIXTURES / "manifest.json").read_text())
ENCODINGS = ["gzip", "deflate"]
SUFFIXES = {"gzip": ".gz", "deflate": ".deflate"}
PROTOBUF = "binary/x-protocol-buffer"


def fixture_body(name: str, encoding: str) -> bytes:
    return (FIXTURES / f"{name}{SUFFIXES[encoding]}").read_bytes()


@dataclass
class RecordingExec:
    """Records each parsed ExecReq, then lets the real adapter run it."""

    adapter: Adapter
    requests: list[goma_pb2.ExecReq] = field(default_factory=list)

    async def exec(self, request: goma_pb2.ExecReq, *, request_id: str) -> goma_pb2.ExecResp:
        copy = goma_pb2.ExecReq()
        copy.CopyFrom(request)
        self.requests.append(copy)
        return await self.adapter.exec(request, request_id=request_id)


@dataclass
class RawServer:
    """The real frontend and adapter on 127.0.0.1, fed with raw request bodies."""

    port: int
    recorder: RecordingExec
    backend: FakeBackend

    async def post(self, verb: str, body: bytes, encoding: str | None) -> tuple[int, bytes]:
        """POST ``body`` as is and return the status and the decoded response body."""
        headers = [
            ("Host", "127.0.0.1"),
            ("Content-Type", PROTOBUF),
            ("Content-Length", str(len(body))),
            ("Accept-Encoding", "gzip"),
        ]
        if encoding is not None:
            headers.append(("Content-Encoding", encoding))
        connection = h11.Connection(h11.CLIENT)
        stream = await trio.open_tcp_stream("127.0.0.1", self.port)
        async with stream:
            target = f"/cxx-compiler-service/{verb}"
            request = h11.Request(method="POST", target=target, headers=headers)
            await stream.send_all(connection.send(request) + connection.send(h11.Data(data=body)))
            await stream.send_all(connection.send(h11.EndOfMessage()))
            return await _read_reply(stream, connection)


async def _read_reply(stream: trio.SocketStream, connection: h11.Connection) -> tuple[int, bytes]:
    status, encoding, body = 0, "", bytearray()
    while True:
        event = connection.next_event()
        if event is h11.NEED_DATA:
            connection.receive_data(await stream.receive_some(65536))
        elif isinstance(event, h11.Response):
            status = event.status_code
            encoding = dict(event.headers).get(b"content-encoding", b"").decode()
        elif isinstance(event, h11.Data):
            body += event.data
        elif isinstance(event, h11.EndOfMessage):
            break
    if encoding == "gzip":
        return status, gzip.decompress(bytes(body))
    return status, bytes(body)


@pytest.fixture
async def raw_server(tmp_path: Path) -> AsyncIterator[RawServer]:
    config = Config()
    config.state.dir = tmp_path / "state"
    config.log.format = "console"
    inventory_path = tmp_path / "inventory.toml"
    inventory_path.write_text(INVENTORY)
    (tmp_path / "tc").mkdir()
    for name, content in SHIPPED_FILES.items():
        (tmp_path / name).write_bytes(content)
    backend = FakeBackend(runner=object_runner)
    inventory = await load_toml_inventory(inventory_path, absolute_roots=True)
    async with (
        open_proxy(
            config, backend=backend, inventory=inventory, registry=CollectorRegistry()
        ) as proxy,
        trio.open_nursery() as nursery,
    ):
        recorder = RecordingExec(proxy.adapter)
        app = make_app(recorder, proxy.files, metrics_registry=CollectorRegistry())
        port = await nursery.start(partial(serve_http, app, host="127.0.0.1", port=0))
        yield RawServer(port, recorder, backend)
        nursery.cancel_scope.cancel()


def test_fixtures_match_generator() -> None:
    """The stored fixtures are what the generator writes, and each encoding decodes to them."""
    built = make_fixtures.build()

    assert json.loads(json.dumps(built["manifest"])) == MANIFEST
    for name in ["exec_req.bin", "store_chunks.bin"]:
        raw = (FIXTURES / name).read_bytes()
        assert raw == built[name]
        assert gzip.decompress(fixture_body(name, "gzip")) == raw
        deflated = fixture_body(name, "deflate")
        inflater = zlib.decompressobj(-zlib.MAX_WBITS)
        assert inflater.decompress(deflated) == raw
        assert inflater.unused_data == zlib.adler32(raw).to_bytes(4, "big")


@pytest.mark.parametrize("encoding", ENCODINGS)
async def test_fixture_exec_parsed_and_run(raw_server: RawServer, encoding: str) -> None:
    """Compressed fixtures parse to the hand-written values and run to a result."""
    with trio.fail_after(TIME_LIMIT_S):
        store_status, store_body = await raw_server.post(
            "s", fixture_body("store_chunks.bin", encoding), encoding
        )
        exec_status, exec_body = await raw_server.post(
            "e", fixture_body("exec_req.bin", encoding), encoding
        )

    assert store_status == 200
    assert list(goma_pb2.StoreFileResp.FromString(store_body).hash_key) == MANIFEST["chunk_keys"]
    assert exec_status == 200
    (received,) = raw_server.recorder.requests
    assert received.cwd == MANIFEST["cwd"]
    assert received.original_cwd == MANIFEST["original_cwd"]
    assert [[i.filename, i.hash_key] for i in received.input] == MANIFEST["inputs"]
    empty = received.input[2].content
    assert empty.HasField("content")
    assert empty.content == b""
    assert empty.SerializeToString().hex() == MANIFEST["empty_blob_hex"]
    assert received.input[1].content.blob_type == goma_pb2.FileBlob.FILE_META
    assert list(received.input[1].content.hash_key) == MANIFEST["chunk_keys"]
    assert received.requester_info.dimensions == ["os:linux"]

    response = goma_pb2.ExecResp.FromString(exec_body)
    assert response.result.exit_status == 0
    assert response.result.command_spec.binary_hash == MANIFEST["binary_hash"].encode()
    assert response.result.command_spec.target == "x86_64-pc-linux-gnu"
    assert [o.filename for o in response.result.output] == ["obj/a.o"]
    big = raw_server.backend.cas[
        DigestKey(MANIFEST["big_content_sha256"], sum(len(c) for c in make_fixtures.CHUNKS))
    ]
    assert big == b"".join(make_fixtures.CHUNKS)


@pytest.mark.parametrize("encoding", ENCODINGS)
async def test_fixture_keys_echoed_by_lookup(raw_server: RawServer, encoding: str) -> None:
    """Embedded inputs are stored under the client's keys and come back byte for byte."""
    with trio.fail_after(TIME_LIMIT_S):
        await raw_server.post("s", fixture_body("store_chunks.bin", encoding), encoding)
        await raw_server.post("e", fixture_body("exec_req.bin", encoding), encoding)
        keys = [key for _, key in MANIFEST["inputs"]] + MANIFEST["chunk_keys"]
        lookup = goma_pb2.LookupFileReq(hash_key=keys).SerializeToString()
        status, body = await raw_server.post("l", lookup, None)

    blobs = goma_pb2.LookupFileResp.FromString(body).blob
    assert status == 200
    assert [hash_key(blob) for blob in blobs] == keys
    assert blobs[2].SerializeToString().hex() == MANIFEST["empty_blob_hex"]
    assert [blob.offset for blob in blobs[3:]] == [0, len(make_fixtures.CHUNKS[0])]
    assert blobs[3].HasField("offset")


async def test_fixture_same_action_across_encodings(raw_server: RawServer) -> None:
    """The gzip and deflate bodies are one request: the second is an action-cache hit."""
    with trio.fail_after(TIME_LIMIT_S):
        await raw_server.post("s", fixture_body("store_chunks.bin", "gzip"), "gzip")
        _, first = await raw_server.post("e", fixture_body("exec_req.bin", "gzip"), "gzip")
        _, second = await raw_server.post("e", fixture_body("exec_req.bin", "deflate"), "deflate")

    first_response = goma_pb2.ExecResp.FromString(first)
    second_response = goma_pb2.ExecResp.FromString(second)
    assert second_response.cache_key == first_response.cache_key
    assert second_response.cache_hit == goma_pb2.ExecResp.MEM_CACHE
    assert raw_server.recorder.requests[0] == raw_server.recorder.requests[1]


@pytest.mark.parametrize(
    ("body_encoding", "header", "status"),
    [
        ("gzip", "br", 415),
        ("gzip", "x-unknown", 415),
        ("deflate", "gzip", 400),
        ("gzip", "deflate", 400),
        ("truncated", "deflate", 400),
        ("identity", "identity", 200),
        ("identity", None, 200),
    ],
    ids=[
        "brotli-unsupported",
        "unknown-encoding",
        "deflate-sent-as-gzip",
        "gzip-sent-as-deflate",
        "truncated-deflate",
        "identity",
        "no-header",
    ],
)
async def test_fixture_encoding_errors(
    raw_server: RawServer, body_encoding: str, header: str | None, status: int
) -> None:
    """A body that does not decode is 400, an unknown encoding 415, plain bodies work."""
    raw = (FIXTURES / "store_chunks.bin").read_bytes()
    bodies = {
        "gzip": fixture_body("store_chunks.bin", "gzip"),
        "deflate": fixture_body("store_chunks.bin", "deflate"),
        "truncated": fixture_body("store_chunks.bin", "deflate")[:20],
        "identity": raw,
    }

    with trio.fail_after(TIME_LIMIT_S):
        got, body = await raw_server.post("s", bodies[body_encoding], header)

    assert got == status
    if status == 200:
        assert list(goma_pb2.StoreFileResp.FromString(body).hash_key) == MANIFEST["chunk_keys"]
