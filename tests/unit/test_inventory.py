"""The local compiler inventory: binary-hash matching and the echoed command spec."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from gomaproxy.exec.inventory import LocalCompilerInventory, apply_client_platform
from gomaproxy.protos import goma_data_pb2 as goma_pb2


def _request(path: str, binary_hash: str) -> goma_pb2.ExecReq:
    request = goma_pb2.ExecReq()
    spec = request.command_spec
    spec.name, spec.version, spec.target = "gcc", "12[test]", "x86_64-linux-gnu"
    spec.local_compiler_path = path
    spec.binary_hash = binary_hash.encode()
    request.requester_info.path_style = goma_pb2.RequesterInfo.POSIX_STYLE
    return request


def _fake_compiler(tmp_path: Path) -> tuple[str, str]:
    real = tmp_path / "gcc-12"
    real.write_bytes(b"\x7fELF fake compiler")
    link = tmp_path / "gcc"
    os.symlink(real, link)
    return str(link), hashlib.sha256(real.read_bytes()).hexdigest()


async def test_inventory_accepts_matching_hash_through_symlink(tmp_path: Path) -> None:
    """The hash of the symlink's target matches, and binary_hash is echoed."""
    path, digest = _fake_compiler(tmp_path)
    response = goma_pb2.ExecResp()

    toolchain = await LocalCompilerInventory(allow_chroot=True).pick(
        _request(path, digest), response
    )

    assert toolchain is not None
    assert toolchain.argv0 == path
    assert toolchain.allow_chroot is True
    assert response.result.command_spec.binary_hash == digest.encode()
    assert response.result.command_spec.version == "12[test]"
    assert response.result.exit_status == -1


async def test_inventory_rejects_other_hash_without_echoing_it(tmp_path: Path) -> None:
    """Another hash is BAD_REQUEST with an explanation and no binary_hash echo."""
    path, digest = _fake_compiler(tmp_path)
    response = goma_pb2.ExecResp()

    toolchain = await LocalCompilerInventory(allow_chroot=True).pick(
        _request(path, "0" * 64), response
    )

    assert toolchain is None
    assert response.error == goma_pb2.ExecResp.BAD_REQUEST
    assert not response.result.command_spec.HasField("binary_hash")
    assert f"has binary hash {digest}" in response.error_message[0]


async def test_inventory_rejects_missing_compiler(tmp_path: Path) -> None:
    """A compiler path that does not exist on the server is BAD_REQUEST."""
    response = goma_pb2.ExecResp()

    toolchain = await LocalCompilerInventory(allow_chroot=False).pick(
        _request(str(tmp_path / "nope"), "0" * 64), response
    )

    assert toolchain is None
    assert "does not exist" in response.error_message[0]


async def test_inventory_rejects_relative_compiler_path() -> None:
    """A relative local_compiler_path is BAD_REQUEST naming the path."""
    response = goma_pb2.ExecResp()

    toolchain = await LocalCompilerInventory(allow_chroot=False).pick(
        _request("gcc", "0" * 64), response
    )

    assert toolchain is None
    assert "'gcc' is not an absolute path" in response.error_message[0]


def test_client_platform_rejects_unsafe_names() -> None:
    """Only allowlisted platform properties may be set by a client."""
    request = goma_pb2.ExecReq()
    request.requester_info.platform_properties.add(name="cache-silo", value="ci")
    request.requester_info.platform_properties.add(name="dockerPrivileged", value="true")
    response = goma_pb2.ExecResp()
    platform = {"OSFamily": "Linux"}

    ok = apply_client_platform(request, response, platform)

    assert ok is False
    assert platform == {"OSFamily": "Linux", "cache-silo": "ci"}
    assert "unsafe platform property: dockerPrivileged=true" in response.error_message[0]
