"""The Exec adapter against a counting in-memory backend.

These tests check what the adapter sends (Command, Action, platform, uploads) and what it
returns (missing inputs, cache hits, outputs), without processes or sockets.
"""

from __future__ import annotations

import hashlib

import pytest
import trio
from prometheus_client import CollectorRegistry

from gomaproxy.config import ExecConfig
from gomaproxy.digest import DigestKey, digest_of_bytes
from gomaproxy.exec.adapter import Adapter, Limiters
from gomaproxy.exec.clientpath import PathStyle
from gomaproxy.exec.inventory import Toolchain, init_result
from gomaproxy.goma.blob import LARGE_FILE_THRESHOLD, chunked_file, file_blob, hash_key
from gomaproxy.goma.fileservice import FileService
from gomaproxy.goma.filestore import MemoryFileStore
from gomaproxy.metrics import ExecMetrics
from gomaproxy.protos import goma_data_pb2 as goma_pb2
from gomaproxy.protos import remote_execution_pb2 as re_pb2
from tests.fakes import FakeBackend

BINARY_HASH = "ab" * 32


class StaticInventory:
    """Accepts every request whose binary hash is BINARY_HASH; counts calls."""

    def __init__(self, toolchain: Toolchain) -> None:
        self.toolchain = toolchain
        self.calls = 0

    async def pick(
        self, request: goma_pb2.ExecReq, response: goma_pb2.ExecResp
    ) -> Toolchain | None:
        self.calls += 1
        response.result.CopyFrom(init_result(request))
        if request.command_spec.binary_hash.decode() != BINARY_HASH:
            response.error = goma_pb2.ExecResp.BAD_REQUEST
            return None
        response.result.command_spec.binary_hash = request.command_spec.binary_hash
        return Toolchain(
            argv0=self.toolchain.argv0,
            path_style=PathStyle.POSIX,
            platform=dict(self.toolchain.platform),
            allow_chroot=self.toolchain.allow_chroot,
        )


def compile_runner(output_size: int = 100):  # type: ignore[no-untyped-def]
    """Return a runner that 'compiles' by writing a deterministic object of output_size bytes."""

    def run(command: re_pb2.Command, cas: dict[DigestKey, bytes]) -> re_pb2.ActionResult:
        seed = hashlib.sha256("\0".join(command.arguments).encode()).digest()
        content = (seed * (output_size // len(seed) + 1))[:output_size]
        digest = digest_of_bytes(content)
        cas[digest] = content
        result = re_pb2.ActionResult(exit_code=0, stderr_raw=b"warning: fake\n")
        for path in command.output_paths:
            result.output_files.add(path=path, digest=digest.to_proto())
        return result

    return run


def make_adapter(backend: FakeBackend, *, allow_chroot: bool = True) -> tuple[Adapter, FileService]:
    files = FileService(MemoryFileStore(64 * 1024 * 1024))
    inventory = StaticInventory(
        Toolchain(
            argv0="/usr/bin/gcc",
            path_style=PathStyle.POSIX,
            platform={"OSFamily": "Linux"},
            allow_chroot=allow_chroot,
        )
    )
    config = ExecConfig()
    adapter = Adapter(
        backend=backend,
        files=files,
        inventory=inventory,
        config=config,
        limiters=Limiters.from_config(config),
        metrics=ExecMetrics(CollectorRegistry()),
    )
    return adapter, files


def make_request(
    *,
    embed: bool = True,
    cwd: str = "/home/u/proj/out",
    extra_inputs: dict[str, bytes] | None = None,
) -> goma_pb2.ExecReq:
    request = goma_pb2.ExecReq()
    spec = request.command_spec
    spec.name, spec.version, spec.target = "gcc", "12[(Debian 12.2.0) 12.2.0]", "x86_64-linux-gnu"
    spec.binary_hash = BINARY_HASH.encode()
    spec.local_compiler_path = "/usr/bin/gcc"
    request.arg.extend(["gcc", "-O2", "-c", "../src/a.c", "-o", "obj/a.o"])
    request.env.extend([f"PWD={cwd}"])
    request.cwd = cwd
    request.expected_output_files.append("obj/a.o")
    request.requester_info.path_style = goma_pb2.RequesterInfo.POSIX_STYLE
    files = {"../src/a.c": b"int a(void) { return 1; }\n", **(extra_inputs or {})}
    for name, content in sorted(files.items()):
        blob = file_blob(content)
        entry = request.input.add(filename=name, hash_key=hash_key(blob))
        if embed:
            entry.content.CopyFrom(blob)
    return request


def _command(backend: FakeBackend) -> re_pb2.Command:
    execute = backend.execute_requests[-1]
    action = re_pb2.Action.FromString(backend.cas[DigestKey.of(execute.action_digest)])
    return re_pb2.Command.FromString(backend.cas[DigestKey.of(action.command_digest)])


async def test_adapter_relocatable_request_runs_at_neutral_root() -> None:
    """A relocatable request gets a cwd-relative working directory and no PWD."""
    backend = FakeBackend(runner=compile_runner())
    adapter, _ = make_adapter(backend)

    with trio.fail_after(10):
        response = await adapter.exec(make_request(), request_id="r1")

    command = _command(backend)
    assert response.result.exit_status == 0
    assert list(command.arguments) == ["/usr/bin/gcc", "-O2", "-c", "../src/a.c", "-o", "obj/a.o"]
    assert command.working_directory == "out"
    assert [v.name for v in command.environment_variables] == []
    assert list(command.output_paths) == ["obj/a.o"]
    assert [(p.name, p.value) for p in command.platform.properties] == [("OSFamily", "Linux")]
    assert response.result.stderr_buffer == b"warning: fake\n"
    assert [o.filename for o in response.result.output] == ["obj/a.o"]
    assert response.cache_hit == goma_pb2.ExecResp.NO_CACHE


async def test_adapter_non_relocatable_request_keeps_pwd_and_sets_root() -> None:
    """An absolute include path makes the request run at its absolute root with PWD kept."""
    backend = FakeBackend(runner=compile_runner())
    adapter, _ = make_adapter(backend)
    request = make_request()
    request.arg.append("-I/home/u/proj/include")

    with trio.fail_after(10):
        await adapter.exec(request, request_id="r2")

    command = _command(backend)
    properties = {p.name: p.value for p in command.platform.properties}
    assert properties["InputRootAbsolutePath"] == "/home/u/proj"
    assert [(v.name, v.value) for v in command.environment_variables] == [
        ("PWD", "/home/u/proj/out")
    ]
    action = re_pb2.Action.FromString(
        backend.cas[DigestKey.of(backend.execute_requests[-1].action_digest)]
    )
    assert action.platform == command.platform


async def test_adapter_reports_missing_hash_only_inputs_then_succeeds() -> None:
    """Hash-only inputs unknown to the server come back as missing; the retry with content runs."""
    backend = FakeBackend(runner=compile_runner())
    adapter, _ = make_adapter(backend)

    with trio.fail_after(10):
        first = await adapter.exec(make_request(embed=False), request_id="r3")
        second = await adapter.exec(make_request(embed=True), request_id="r4")

    assert list(first.missing_input) == ["../src/a.c"]
    assert first.missing_reason[0].startswith("input: missing blob for hash key")
    assert first.result.exit_status == -1
    assert backend.calls["Execute"] == 1
    assert second.result.exit_status == 0


async def test_adapter_second_identical_request_is_cache_hit() -> None:
    """The same request twice runs once; the second response comes from the action cache."""
    backend = FakeBackend(runner=compile_runner())
    adapter, _ = make_adapter(backend)

    with trio.fail_after(10):
        first = await adapter.exec(make_request(), request_id="r5")
        second = await adapter.exec(make_request(embed=False), request_id="r6")

    assert backend.executions == 1
    assert second.cache_hit == goma_pb2.ExecResp.MEM_CACHE
    assert second.result.output[0].blob == first.result.output[0].blob
    assert second.cache_key == first.cache_key


async def test_adapter_large_output_becomes_file_meta() -> None:
    """An output over 2 MiB is returned as FILE_META whose chunks are in the file store."""
    backend = FakeBackend(runner=compile_runner(output_size=LARGE_FILE_THRESHOLD + 10))
    adapter, files = make_adapter(backend)

    with trio.fail_after(10):
        response = await adapter.exec(make_request(), request_id="r7")

    blob = response.result.output[0].blob
    assert blob.blob_type == goma_pb2.FileBlob.FILE_META
    assert blob.file_size == LARGE_FILE_THRESHOLD + 10
    assert len(blob.hash_key) == 2
    chunk = await files.lookup_blob(blob.hash_key[1])
    assert chunk is not None
    assert chunk.offset == LARGE_FILE_THRESHOLD
    assert len(chunk.content) == 10


async def test_adapter_exactly_2mib_output_stays_file() -> None:
    """An output of exactly 2 MiB is embedded as one FILE blob."""
    backend = FakeBackend(runner=compile_runner(output_size=LARGE_FILE_THRESHOLD))
    adapter, _ = make_adapter(backend)

    with trio.fail_after(10):
        response = await adapter.exec(make_request(), request_id="r8")

    assert response.result.output[0].blob.blob_type == goma_pb2.FileBlob.FILE


async def test_adapter_unknown_compiler_is_bad_request() -> None:
    """A binary hash the inventory does not know gives BAD_REQUEST without binary_hash."""
    backend = FakeBackend(runner=compile_runner())
    adapter, _ = make_adapter(backend)
    request = make_request()
    request.command_spec.binary_hash = b"cd" * 32

    with trio.fail_after(10):
        response = await adapter.exec(request, request_id="r9")

    assert response.error == goma_pb2.ExecResp.BAD_REQUEST
    assert response.result.command_spec.name == "gcc"
    assert not response.result.command_spec.HasField("binary_hash")
    assert backend.calls["Execute"] == 0


async def test_adapter_absolute_inputs_without_chroot_is_bad_request() -> None:
    """System headers with no chroot support give BAD_REQUEST naming bubblewrap."""
    backend = FakeBackend(runner=compile_runner())
    adapter, _ = make_adapter(backend, allow_chroot=False)
    request = make_request(extra_inputs={"/usr/include/stdio.h": b"/* stdio */\n"})

    with trio.fail_after(10):
        response = await adapter.exec(request, request_id="r10")

    assert response.error == goma_pb2.ExecResp.BAD_REQUEST
    assert "bubblewrap" in response.error_message[0]


async def test_adapter_absolute_inputs_with_chroot_run_at_root() -> None:
    """System headers with chroot support run at '/' with an absolute-root platform."""
    backend = FakeBackend(runner=compile_runner())
    adapter, _ = make_adapter(backend, allow_chroot=True)
    request = make_request(extra_inputs={"/usr/include/stdio.h": b"/* stdio */\n"})

    with trio.fail_after(10):
        response = await adapter.exec(request, request_id="r11")

    command = _command(backend)
    assert response.result.exit_status == 0
    assert command.working_directory == "home/u/proj/out"
    assert {p.name: p.value for p in command.platform.properties}["InputRootAbsolutePath"] == "/"
    assert list(command.output_paths) == ["obj/a.o"]
    assert [o.filename for o in response.result.output] == ["obj/a.o"]


async def test_adapter_output_outside_cwd_uses_wrapper() -> None:
    """An output above the cwd makes the action run at the root through the cd wrapper."""
    backend = FakeBackend(runner=compile_runner())
    adapter, _ = make_adapter(backend)
    request = make_request()
    del request.arg[-2:]
    request.arg.extend(["-o", "../obj/a.o"])
    request.expected_output_files[:] = ["../obj/a.o"]

    with trio.fail_after(10):
        response = await adapter.exec(request, request_id="r13")

    command = _command(backend)
    assert list(command.arguments[:2]) == ["./gomaproxy-run.sh", "/usr/bin/gcc"]
    assert command.working_directory == ""
    assert list(command.output_paths) == ["obj/a.o"]
    assert [(v.name, v.value) for v in command.environment_variables] == [("WORK_DIR", "out")]
    assert [o.filename for o in response.result.output] == ["../obj/a.o"]


@pytest.mark.parametrize("policy", [goma_pb2.ExecReq.STORE_ONLY], ids=["store-only"])
async def test_adapter_store_only_skips_cache_lookup(policy: int) -> None:
    """STORE_ONLY skips GetActionResult and sets skip_cache_lookup on Execute."""
    backend = FakeBackend(runner=compile_runner())
    adapter, _ = make_adapter(backend)
    request = make_request()
    request.cache_policy = policy

    with trio.fail_after(10):
        await adapter.exec(request, request_id="r12")

    assert backend.calls["GetActionResult"] == 0
    assert backend.execute_requests[-1].skip_cache_lookup is True


async def test_adapter_missing_chunk_is_missing_input() -> None:
    """A hash-only FILE_META input whose chunk is gone is reported missing, not raised."""
    backend = FakeBackend(runner=compile_runner())
    adapter, files = make_adapter(backend)
    chunked = chunked_file(b"h" * (LARGE_FILE_THRESHOLD + 10))
    await files.store_blob(chunked.chunks[0])
    await files.store_blob(chunked.meta)
    request = make_request()
    request.input.add(filename="../src/big.h", hash_key=hash_key(chunked.meta))

    with trio.fail_after(10):
        response = await adapter.exec(request, request_id="r14")

    assert list(response.missing_input) == ["../src/big.h"]
    assert response.missing_reason[0] == f"input: missing chunk {hash_key(chunked.chunks[1])}"
    assert backend.calls["Execute"] == 0


class StalledLookupFiles:
    """A goma file service whose lookups never finish, as with an overloaded store."""

    def __init__(self, files: FileService) -> None:
        self._files = files

    async def store_blob(self, blob: goma_pb2.FileBlob) -> str:
        return await self._files.store_blob(blob)

    async def lookup_blob(self, key: str) -> goma_pb2.FileBlob | None:
        await trio.sleep_forever()
        return None


async def test_adapter_input_tree_timeout_is_missing_input() -> None:
    """Inputs still unresolved at the input tree deadline are reported missing."""
    backend = FakeBackend(runner=compile_runner())
    default_adapter, files = make_adapter(backend)
    config = ExecConfig(input_tree_timeout_s=0.2)
    adapter = Adapter(
        backend=backend,
        files=StalledLookupFiles(files),
        inventory=default_adapter._inventory,
        config=config,
        limiters=Limiters.from_config(config),
        metrics=ExecMetrics(CollectorRegistry()),
    )
    request = make_request(extra_inputs={"../src/b.h": b"int b;\n"})
    request.input[1].ClearField("content")

    with trio.fail_after(10):
        response = await adapter.exec(request, request_id="r15")

    assert list(response.missing_input) == ["../src/b.h"]
    assert response.missing_reason[0].startswith("input: timed out")
    assert backend.calls["Execute"] == 0


async def test_adapter_logs_one_canonical_line() -> None:
    """Each Exec logs one exec_finished line with outcome, byte counts and phase timings."""
    from structlog.testing import capture_logs

    backend = FakeBackend(runner=compile_runner(output_size=100))
    adapter, _ = make_adapter(backend)

    with trio.fail_after(10), capture_logs() as logs:
        await adapter.exec(make_request(), request_id="r-log")

    finished = [entry for entry in logs if entry["event"] == "exec_finished"]
    assert len(finished) == 1
    line = finished[0]
    assert line["outcome"] == "ok"
    assert line["cache"] == "executed"
    assert line["exit_status"] == 0
    assert line["embedded_bytes"] == len(b"int a(void) { return 1; }\n")
    assert line["output_bytes"] == 100
    assert line["uploaded_bytes"] > 0
    assert line["outputs"] == ["obj/a.o"]
    for phase in (
        "inventory",
        "input_tree",
        "setup",
        "check_cache",
        "check_missing",
        "upload",
        "execute",
        "response",
    ):
        assert f"{phase}_ms" in line
