"""The TOML inventory: target normalization, file parsing and toolchain matching."""

from __future__ import annotations

import hashlib
import tomllib
from pathlib import Path
from typing import Any

import pytest

from gomaproxy.digest import DigestKey
from gomaproxy.errors import ConfigError
from gomaproxy.exec.clientpath import PathStyle, path_lib
from gomaproxy.exec.inventory import CommandFile, apply_client_platform
from gomaproxy.exec.toml_inventory import (
    FileEntry,
    InvalidTarget,
    PlatformEntry,
    Selector,
    TomlInventory,
    ToolchainEntry,
    arbitrary_toolchain,
    load_toml_inventory,
    match_platform,
    normalize_target,
    parse_inventory,
    relocate_command,
)
from gomaproxy.protos import goma_data_pb2 as goma_pb2

GCC_HASH = "1" * 64
CLANG_HASH = "2" * 64
PLUGIN_HASH = "3" * 64
LIB_HASH = "4" * 64
POSIX = path_lib(PathStyle.POSIX)

INVENTORY = f"""
[[toolchain]]
name = "gcc"
version = "12[(Debian 12.2.0) 12.2.0]"
target = "x86_64-linux-gnu"
binary_hash = "{GCC_HASH}"
properties = {{ OSFamily = "Linux", container-image = "docker://gcc:12" }}
cmd_file = {{ path = "/usr/bin/gcc" }}

[[toolchain]]
name = "clang++"
version = "17[built here]"
target = "x86_64-unknown-linux-gnu"
binary_hash = "{CLANG_HASH}"
clang_need_target = true
cmd_file = {{ path = "bin/clang++", hash = "{CLANG_HASH}", size = 100 }}
files = [
    {{ path = "../lib/libLLVM.so", hash = "{LIB_HASH}", size = 7 }},
    {{ path = "clang", symlink = "clang++" }},
    {{ path = "/opt/shared/data.bin", hash = "{LIB_HASH}", size = 7, is_executable = true }},
]

[[toolchain]]
name = "libplugin.so"
binary_hash = "{PLUGIN_HASH}"
cmd_file = {{ path = "libplugin.so", hash = "{PLUGIN_HASH}", size = 9, is_executable = false }}

[[platform]]
dimensions = ["os:linux", "pool:default"]
properties = {{ OSFamily = "Linux" }}

[[platform]]
dimensions = ["os:linux", "pool:big", "cpu:x86"]
properties = {{ OSFamily = "Linux", Pool = "big" }}
allow_chroot = false
"""


def make_inventory(text: str = INVENTORY, *, absolute_roots: bool = True) -> TomlInventory:
    parsed = parse_inventory(tomllib.loads(text), origin="test.toml", base_dir=Path("/srv"))
    return TomlInventory(parsed, absolute_roots=absolute_roots)


def make_request(
    name: str = "gcc",
    version: str = "12[(Debian 12.2.0) 12.2.0]",
    target: str = "x86_64-pc-linux-gnu",
    binary_hash: str = GCC_HASH,
    local_compiler_path: str = "/usr/bin/gcc",
) -> goma_pb2.ExecReq:
    request = goma_pb2.ExecReq()
    spec = request.command_spec
    spec.name, spec.version, spec.target = name, version, target
    spec.binary_hash = binary_hash.encode()
    spec.local_compiler_path = local_compiler_path
    request.requester_info.path_style = goma_pb2.RequesterInfo.POSIX_STYLE
    return request


def make_ats_request(
    dimensions: list[str], *, specs: list[goma_pb2.ToolchainSpec] | None = None
) -> goma_pb2.ExecReq:
    request = make_request(name="clang", binary_hash="9" * 64, local_compiler_path="/tc/clang")
    request.toolchain_included = True
    request.requester_info.dimensions.extend(dimensions)
    request.toolchain_specs.extend(specs or [])
    return request


# normalize_target


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("x86_64-unknown-linux-gnu", "x86_64-linux"),
        ("x86_64-pc-linux-gnu", "x86_64-linux"),
        ("x86_64-linux-gnu", "x86_64-linux"),
        ("x86_64-apple-darwin16.5.0", "x86_64-darwin"),
        ("x86_64-apple-darwin19.0.0", "x86_64-darwin"),
        ("x86_64--nacl", "x86_64-nacl"),
        ("x86_64--darwin", "x86_64-darwin"),
        ("le32-unknown-nacl", "le32-nacl"),
        ("i386-pc-windows-msvc", "i686-windows-msvc"),
        ("i586-pc-linux-gnu", "i686-linux"),
        ("amd64-unknown-freebsd", "x86_64-freebsd"),
        ("x86_64-cros-linux-gnu", "x86_64-cros-linux"),
        ("armv7a-cros-linux-gnueabihf", "armv7a-cros-linux-gnueabihf"),
        ("aarch64-linux-android", "aarch64-linux-android"),
        ("arm-none-eabi", "arm-none-eabi"),
        ("x86-64-linux-gnu", "x86-linux"),
        ("x86_64-gnu", "x86_64"),
        ("", ""),
        ("java", "java"),
    ],
    ids=[
        "unknown-vendor-gnu",
        "pc-vendor-gnu",
        "no-vendor-gnu",
        "apple-darwin-version",
        "apple-darwin-other-version",
        "empty-vendor-nacl",
        "empty-vendor-darwin",
        "le32-nacl",
        "i386-windows-msvc",
        "i586-becomes-i686",
        "amd64-becomes-x86_64",
        "cros-vendor-kept",
        "cros-gnueabihf-kept",
        "android-environment",
        "eabi-environment",
        "dash-in-arch-reads-64-as-vendor",
        "only-arch-and-gnu",
        "empty-kept",
        "java-kept",
    ],
)
def test_normalize_target_canonical_form(target: str, expected: str) -> None:
    """Targets normalize to arch, cros vendor, OS and non-gnu environment."""
    assert normalize_target("clang", target) == expected


@pytest.mark.parametrize(
    "target",
    [
        "x86_64",
        "x86_64-dummy-long-target",
        "x86_64-unknown-linux-gnu-should-parse-error",
        "x86_64-too-long-target-name-but-linux-msvc",
    ],
    ids=["one-part", "three-after-arch", "six-parts", "many-parts-ending-in-env"],
)
def test_normalize_target_rejects_malformed(target: str) -> None:
    """A target without 2 to 4 parts, or with 3 parts after arch and env, raises."""
    with pytest.raises(InvalidTarget, match="target"):
        normalize_target("clang", target)


def test_normalize_target_keeps_cl_exe_as_given() -> None:
    """cl.exe selectors are never normalized, not even malformed ones."""
    assert normalize_target("cl.exe", "x86_64") == "x86_64"


def test_normalize_target_idempotent_on_examples() -> None:
    """A normalized target normalizes to itself, so both sides of a match agree."""
    for target in ["x86_64-linux", "x86_64-darwin", "i686-windows-msvc", "x86_64-cros-linux"]:
        assert normalize_target("clang", target) == target


# parse_inventory


def test_parse_inventory_reads_every_kind_of_entry() -> None:
    """Selectors are normalized, relative cmd files are relocatable, platforms keep order."""
    parsed = make_inventory().entries

    gcc = parsed.toolchains[Selector("gcc", "12[(Debian 12.2.0) 12.2.0]", "x86_64-linux", GCC_HASH)]
    assert not gcc.relocatable
    assert gcc.properties == {"OSFamily": "Linux", "container-image": "docker://gcc:12"}
    clang = parsed.toolchains[Selector("clang++", "17[built here]", "x86_64-linux", CLANG_HASH)]
    assert clang.relocatable
    assert clang.clang_need_target
    assert clang.cmd_file == FileEntry(
        "bin/clang++", DigestKey(CLANG_HASH, 100), is_executable=True
    )
    assert clang.files[1] == FileEntry("clang", symlink="clang++")
    assert [p.dimensions for p in parsed.platforms] == [
        frozenset({"os:linux", "pool:default"}),
        frozenset({"os:linux", "pool:big", "cpu:x86"}),
    ]
    assert parsed.platforms[1].allow_chroot is False


BASE = f'name = "gcc"\nbinary_hash = "{GCC_HASH}"\ncmd_file = {{ path = "/usr/bin/gcc" }}\n'


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[other]\n", "unknown top-level keys"),
        ("toolchain = 1\n", "must be an array of tables"),
        (f"[[toolchain]]\n{BASE}colour = 1\n", "unknown keys \\['colour'\\]"),
        (f'[[toolchain]]\nbinary_hash = "{GCC_HASH}"\n', "name is missing"),
        ('[[toolchain]]\nname = "gcc"\nbinary_hash = "ABC"\n', "binary_hash must be 64"),
        (f'[[toolchain]]\n{BASE}target = "x86_64"\n', "does not have 2 to 4"),
        (f'[[toolchain]]\n{BASE}path_type = "mac"\n', "path_type must be posix or windows"),
        (f"[[toolchain]]\n{BASE}windows_cross = true\n", "windows_cross is not supported"),
        (
            f'[[toolchain]]\nname = "gcc"\nbinary_hash = "{GCC_HASH}"\n',
            "cmd_file must be a table",
        ),
        (
            f'[[toolchain]]\nname = "gcc"\nbinary_hash = "{GCC_HASH}"\n'
            'cmd_file = { path = "bin/gcc" }\n',
            "needs hash and size, or a source file",
        ),
        (
            f'[[toolchain]]\nname = "gcc"\nbinary_hash = "{GCC_HASH}"\n'
            f'cmd_file = {{ path = "/usr/bin/gcc", hash = "{GCC_HASH}", size = 1 }}\n',
            "taken to be installed on the workers",
        ),
        (
            f'[[toolchain]]\nname = "gcc"\nbinary_hash = "{GCC_HASH}"\n'
            'cmd_file = { path = "/usr/bin/gcc", symlink = "gcc-12" }\n',
            "cmd_file must be a file, not a symlink",
        ),
        (f'[[toolchain]]\n{BASE}files = [{{ path = "a" }}]\n', "set symlink, hash and size"),
        (
            f'[[toolchain]]\n{BASE}files = [{{ path = "a", symlink = "b", size = 1 }}]\n',
            "a symlink takes no size",
        ),
        (
            f'[[toolchain]]\n{BASE}files = [{{ path = "a", hash = "{LIB_HASH}" }}]\n',
            "size must be a non-negative integer",
        ),
        (f"[[toolchain]]\n{BASE}properties = {{ a = 1 }}\n", "properties must be a table"),
        (f"[[toolchain]]\n{BASE}allow_chroot = 1\n", "allow_chroot must be true or false"),
        (f"[[toolchain]]\n{BASE}[[toolchain]]\n{BASE}", "same selector"),
        ("[[platform]]\ndimensions = []\n", "dimensions must be a non-empty array"),
        ('[[platform]]\ndimensions = ["os:linux"]\npool = "x"\n', "unknown keys \\['pool'\\]"),
    ],
    ids=[
        "unknown-table",
        "toolchain-not-array",
        "unknown-toolchain-key",
        "missing-name",
        "bad-binary-hash",
        "bad-target",
        "bad-path-type",
        "windows-cross",
        "missing-cmd-file",
        "relocatable-without-content",
        "installed-with-content",
        "cmd-file-symlink",
        "file-without-content",
        "symlink-with-content",
        "hash-without-size",
        "non-string-property",
        "non-bool-flag",
        "duplicate-selector",
        "empty-dimensions",
        "unknown-platform-key",
    ],
)
def test_parse_inventory_rejects_invalid(text: str, message: str) -> None:
    """Every invalid entry raises ConfigError naming the file and the problem."""
    with pytest.raises(ConfigError, match=message) as caught:
        parse_inventory(tomllib.loads(text), origin="bad.toml", base_dir=Path("/srv"))

    assert "bad.toml" in str(caught.value)


def test_parse_inventory_source_relative_to_file() -> None:
    """A relative source path is taken relative to the inventory file's directory."""
    text = (
        f'[[toolchain]]\nname = "gcc"\nbinary_hash = "{GCC_HASH}"\n'
        'cmd_file = { path = "bin/gcc", source = "tc/gcc" }\n'
    )

    parsed = parse_inventory(tomllib.loads(text), origin="x.toml", base_dir=Path("/etc/goma"))

    (entry,) = parsed.toolchains.values()
    assert entry.cmd_file.source_path == "/etc/goma/tc/gcc"
    assert entry.cmd_file.digest is None


# load_toml_inventory


async def test_load_toml_inventory_hashes_sources(tmp_path: Path) -> None:
    """Loading computes the digest of every source file."""
    (tmp_path / "tc").mkdir()
    (tmp_path / "tc" / "gcc").write_bytes(b"compiler bytes")
    path = tmp_path / "inventory.toml"
    path.write_text(
        f'[[toolchain]]\nname = "gcc"\nbinary_hash = "{GCC_HASH}"\n'
        'cmd_file = { path = "bin/gcc", source = "tc/gcc" }\n'
    )

    inventory = await load_toml_inventory(path, absolute_roots=False)

    (entry,) = inventory.entries.toolchains.values()
    expected = DigestKey(hashlib.sha256(b"compiler bytes").hexdigest(), 14)
    assert entry.cmd_file.digest == expected
    assert entry.cmd_file.source_path == str(tmp_path / "tc" / "gcc")


@pytest.mark.parametrize(
    ("cmd_file", "message"),
    [
        ('{ path = "bin/gcc", source = "absent" }', "cannot read source"),
        (f'{{ path = "bin/gcc", source = "gcc", hash = "{GCC_HASH}", size = 3 }}', "declares"),
    ],
    ids=["missing-source", "digest-mismatch"],
)
async def test_load_toml_inventory_rejects_bad_source(
    tmp_path: Path, cmd_file: str, message: str
) -> None:
    """A missing source or one that differs from its declared digest is a ConfigError."""
    (tmp_path / "gcc").write_bytes(b"abc")
    path = tmp_path / "inventory.toml"
    path.write_text(
        f'[[toolchain]]\nname = "gcc"\nbinary_hash = "{GCC_HASH}"\ncmd_file = {cmd_file}\n'
    )

    with pytest.raises(ConfigError, match=message):
        await load_toml_inventory(path, absolute_roots=False)


async def test_load_toml_inventory_rejects_invalid_toml(tmp_path: Path) -> None:
    """A file that is not TOML is a ConfigError naming the file."""
    path = tmp_path / "inventory.toml"
    path.write_text("[[toolchain]\n")

    with pytest.raises(ConfigError, match="is not valid TOML"):
        await load_toml_inventory(path, absolute_roots=False)


# Selector entries


async def test_pick_selector_match_echoes_binary_hash() -> None:
    """A request matches after target normalization and gets the entry's hash and platform."""
    response = goma_pb2.ExecResp()

    toolchain = await make_inventory().pick(make_request(), response)

    assert toolchain is not None
    assert toolchain.argv0 == "/usr/bin/gcc"
    assert toolchain.platform == {"OSFamily": "Linux", "container-image": "docker://gcc:12"}
    assert toolchain.command_files == ()
    assert toolchain.argv0_on_workers
    assert toolchain.allow_chroot
    assert response.result.command_spec.binary_hash == GCC_HASH.encode()
    assert response.result.command_spec.target == "x86_64-pc-linux-gnu"
    assert response.result.exit_status == -1
    assert not response.HasField("error")


@pytest.mark.parametrize(
    "change",
    [
        {"binary_hash": "0" * 64},
        {"version": "12[other]"},
        {"target": "aarch64-linux-gnu"},
        {"name": "g++"},
    ],
    ids=["other-hash", "other-version", "other-target", "other-name"],
)
async def test_pick_selector_miss_echoes_spec_without_hash(change: dict[str, Any]) -> None:
    """A selector that differs in one field is BAD_REQUEST with the request spec echoed."""
    request = make_request(**change)
    response = goma_pb2.ExecResp()

    toolchain = await make_inventory().pick(request, response)

    assert toolchain is None
    assert response.error == goma_pb2.ExecResp.BAD_REQUEST
    echoed = response.result.command_spec
    assert (echoed.name, echoed.version, echoed.target) == (
        request.command_spec.name,
        request.command_spec.version,
        request.command_spec.target,
    )
    assert not echoed.HasField("binary_hash")
    assert response.result.exit_status == -1
    assert "no compiler in the inventory matches" in response.error_message[0]


async def test_pick_selector_invalid_target_has_no_echo() -> None:
    """A request target that cannot be normalized is BAD_REQUEST with exit -1 only."""
    response = goma_pb2.ExecResp()

    toolchain = await make_inventory().pick(make_request(target="x86_64"), response)

    assert toolchain is None
    assert response.error == goma_pb2.ExecResp.BAD_REQUEST
    assert response.result.exit_status == -1
    assert not response.result.HasField("command_spec")


async def test_pick_relocatable_entry_places_files_at_client_path() -> None:
    """A relative cmd_file goes to local_compiler_path and its files next to it."""
    request = make_request(
        name="clang++",
        version="17[built here]",
        target="x86_64-linux-gnu",
        binary_hash=CLANG_HASH,
        local_compiler_path="/home/u/tc/bin/clang++",
    )
    response = goma_pb2.ExecResp()

    toolchain = await make_inventory().pick(request, response)

    assert toolchain is not None
    assert toolchain.argv0 == "/home/u/tc/bin/clang++"
    assert not toolchain.argv0_on_workers
    assert toolchain.clang_need_target
    assert [(f.path, f.symlink, f.is_executable) for f in toolchain.command_files] == [
        ("/home/u/tc/bin/clang++", "", True),
        ("/home/u/tc/bin/../lib/libLLVM.so", "", False),
        ("/home/u/tc/bin/clang", "clang++", False),
        ("/opt/shared/data.bin", "", True),
    ]


async def test_pick_subprogram_match_and_miss() -> None:
    """Subprograms match by file name and hash; an unknown one is BAD_REQUEST."""
    request = make_request()
    request.subprogram.add(path="/home/u/plugins/libplugin.so", binary_hash=PLUGIN_HASH)
    request.subprogram.add(path="/home/u/plugins/libplugin.so", binary_hash=PLUGIN_HASH)
    response = goma_pb2.ExecResp()

    toolchain = await make_inventory().pick(request, response)

    assert toolchain is not None
    assert [s.binary_hash for s in response.result.subprogram] == [PLUGIN_HASH, PLUGIN_HASH]
    assert toolchain.command_files == (
        CommandFile("/home/u/plugins/libplugin.so", DigestKey(PLUGIN_HASH, 9)),
    )

    request.subprogram.add(path="/home/u/plugins/libother.so", binary_hash=PLUGIN_HASH)
    missed = goma_pb2.ExecResp()
    assert await make_inventory().pick(request, missed) is None
    assert missed.error == goma_pb2.ExecResp.BAD_REQUEST
    assert "libother.so" in missed.error_message[0]
    assert not missed.result.command_spec.HasField("binary_hash")


@pytest.mark.parametrize(
    ("entry_path", "client_path", "expected_argv0", "expected_paths"),
    [
        ("/opt/gcc/bin/gcc", "/usr/bin/gcc", "/opt/gcc/bin/gcc", ["/opt/gcc/lib/x.so"]),
        (
            "bin/gcc",
            "/home/u/gcc/bin/gcc",
            "/home/u/gcc/bin/gcc",
            ["/home/u/gcc/bin/gcc", "/opt/gcc/lib/x.so"],
        ),
        ("gcc", "gcc", "gcc", ["gcc", "/opt/gcc/lib/x.so"]),
    ],
    ids=["installed-keeps-its-path", "relocatable-takes-client-path", "relative-client-path"],
)
def test_relocate_command_table(
    entry_path: str, client_path: str, expected_argv0: str, expected_paths: list[str]
) -> None:
    """Installed commands run from their own path; relocatable ones from the client's."""
    digest = DigestKey(GCC_HASH, 1) if not entry_path.startswith("/") else None
    entry = ToolchainEntry(
        selector=Selector("gcc", "", "", GCC_HASH),
        path_style=PathStyle.POSIX,
        cmd_file=FileEntry(entry_path, digest, is_executable=True),
        files=(FileEntry("/opt/gcc/lib/x.so", DigestKey(LIB_HASH, 2)),),
    )

    argv0, files = relocate_command(entry, client_path, POSIX)

    assert argv0 == expected_argv0
    assert [f.path for f in files] == expected_paths


# Arbitrary toolchains


@pytest.mark.parametrize(
    ("dimensions", "expected_pool"),
    [
        (["os:linux"], None),
        (["os:linux", "pool:default"], None),
        (["pool:big"], "big"),
        (["cpu:x86", "os:linux"], "big"),
        (["os:linux", "pool:big", "cpu:x86"], "big"),
        (["os:linux", "pool:default", "pool:big"], "miss"),
        (["os:mac"], "miss"),
    ],
    ids=[
        "subset-first-entry",
        "exact-first-entry",
        "only-in-second",
        "order-ignored",
        "exact-second",
        "no-entry-has-all",
        "unknown-dimension",
    ],
)
def test_match_platform_first_superset_wins(
    dimensions: list[str], expected_pool: str | None
) -> None:
    """The first platform whose dimensions contain every requested one is picked."""
    platforms = make_inventory().entries.platforms

    picked = match_platform(platforms, dimensions)

    if expected_pool == "miss":
        assert picked is None
    else:
        assert picked is not None
        assert picked.properties.get("Pool") == expected_pool


def test_match_platform_without_platforms() -> None:
    """No configured platform matches nothing."""
    assert match_platform([], ["os:linux"]) is None
    assert match_platform([PlatformEntry(frozenset({"os:linux"}))], ["os:linux"]) is not None


async def test_pick_arbitrary_match_builds_toolchain() -> None:
    """A dimension match gives the platform, argv0 from the first spec and symlink files."""
    specs = [
        goma_pb2.ToolchainSpec(path="/tc/bin/clang", symlink_path="clang-17"),
        goma_pb2.ToolchainSpec(path="/tc/bin/clang-17", hash="a" * 64, size=5, is_executable=True),
        goma_pb2.ToolchainSpec(path="/tc/lib/libc++.so", hash="b" * 64, size=3),
    ]
    response = goma_pb2.ExecResp()

    toolchain = await make_inventory().pick(make_ats_request(["pool:big"], specs=specs), response)

    assert toolchain is not None
    assert toolchain.argv0 == "/tc/bin/clang"
    assert toolchain.platform == {"OSFamily": "Linux", "Pool": "big"}
    assert toolchain.allow_chroot is False
    assert toolchain.command_files == (CommandFile("/tc/bin/clang", symlink="clang-17"),)
    assert toolchain.executable_inputs == frozenset({"/tc/bin/clang-17"})
    assert not response.HasField("error")
    assert not response.result.HasField("command_spec")
    assert response.result.exit_status == -1


@pytest.mark.parametrize(
    ("dimensions", "path_style", "target", "message"),
    [
        ([], goma_pb2.RequesterInfo.POSIX_STYLE, "x86_64-linux-gnu", "No dimensions are specified"),
        (["os:win"], goma_pb2.RequesterInfo.POSIX_STYLE, "x86_64-linux-gnu", "no platform"),
        (["os:linux"], goma_pb2.RequesterInfo.POSIX_STYLE, "x86_64", "unexpected CommandSpec"),
        (
            ["os:linux"],
            goma_pb2.RequesterInfo.UNKNOWN_STYLE,
            "x86_64-linux-gnu",
            "bad path type: UNKNOWN_STYLE",
        ),
    ],
    ids=["no-dimensions", "no-platform", "bad-target", "unknown-path-style"],
)
async def test_pick_arbitrary_rejects(
    dimensions: list[str], path_style: int, target: str, message: str
) -> None:
    """ATS requests without a platform or with a bad spec are BAD_REQUEST without echo."""
    request = make_ats_request(dimensions)
    request.requester_info.path_style = path_style
    request.command_spec.target = target
    response = goma_pb2.ExecResp()

    toolchain = await make_inventory().pick(request, response)

    assert toolchain is None
    assert response.error == goma_pb2.ExecResp.BAD_REQUEST
    assert message in response.error_message[0]
    assert response.result.exit_status == -1
    assert not response.result.HasField("command_spec")


def test_arbitrary_toolchain_without_specs_uses_compiler_path() -> None:
    """Without toolchain specs the compiler is local_compiler_path, executable, by binary hash."""
    request = make_ats_request(["os:linux"])
    request.command_spec.size = 42

    argv0, files, executables = arbitrary_toolchain(request)

    assert argv0 == "/tc/clang"
    assert files == (CommandFile("/tc/clang", DigestKey("9" * 64, 42), is_executable=True),)
    assert executables == frozenset({"/tc/clang"})


# Client platform overrides


@pytest.mark.parametrize(
    ("name", "value", "accepted"),
    [
        ("container-image", "docker://mine", True),
        ("InputRootAbsolutePath", "/b/w", True),
        ("cache-silo", "team-a", True),
        ("dockerRuntime", "runsc", True),
        ("dockerRuntime", "runc", False),
        ("OSFamily", "Windows", False),
        ("dockerPrivileged", "true", False),
    ],
    ids=["image", "abs-root", "silo", "runsc", "other-runtime", "os-family", "privileged"],
)
async def test_client_platform_overrides_inventory(name: str, value: str, accepted: bool) -> None:
    """Only allowed client properties override the entry's; others are BAD_REQUEST."""
    request = make_request()
    request.requester_info.platform_properties.add(name=name, value=value)
    response = goma_pb2.ExecResp()
    toolchain = await make_inventory().pick(request, response)
    assert toolchain is not None
    platform = dict(toolchain.platform)

    ok = apply_client_platform(request, response, platform)

    assert ok is accepted
    if accepted:
        assert platform[name] == value
        assert platform["OSFamily"] == "Linux"
    else:
        assert response.error == goma_pb2.ExecResp.BAD_REQUEST
        assert response.error_message[0].startswith(f"unsafe platform property: {name}={value}")
