"""Command and Action construction, environment parsing and missing-input reports."""

from __future__ import annotations

import random

import pytest

from gomaproxy.errors import BadRequest
from gomaproxy.exec import command
from gomaproxy.exec.missing import fill_missing_inputs
from gomaproxy.protos import goma_data_pb2 as goma_pb2
from gomaproxy.protos import remote_execution_pb2 as re_pb2


def test_parse_environment_later_entry_wins() -> None:
    """A variable given twice keeps its last value; values may contain '='."""
    parsed = command.parse_environment(["A=1", "B=x=y", "A=2"])

    assert parsed == {"A": "2", "B": "x=y"}


@pytest.mark.parametrize("entry", ["NOEQUALS", "=value"], ids=["no-equals", "empty-name"])
def test_parse_environment_rejects_malformed_entry(entry: str) -> None:
    """An entry that is not NAME=value is a bad request naming the entry."""
    with pytest.raises(BadRequest, match=entry):
        command.parse_environment([entry])


def test_sorted_platform_orders_by_bytes() -> None:
    """Upper-case names sort before lower-case ones, as byte order puts them."""
    platform = command.sorted_platform(
        {"container-image": "x", "InputRootAbsolutePath": "/", "OSFamily": "Linux"}
    )

    assert [p.name for p in platform.properties] == [
        "InputRootAbsolutePath",
        "OSFamily",
        "container-image",
    ]


def _command(use_output_paths: bool) -> re_pb2.Command:
    return command.build_command(
        arguments=["/usr/bin/gcc", "-c", "a.c"],
        environment={"PWD": "/src", "LANG": "C"},
        output_files=["out/b.o", "out/a.o", "out/a.o"],
        output_directories=["gen"],
        platform=command.sorted_platform({}),
        working_directory="src",
        use_output_paths=use_output_paths,
    )


def test_build_command_uses_output_paths_for_new_servers() -> None:
    """REAPI 2.1 servers get one sorted, de-duplicated output_paths list."""
    built = _command(use_output_paths=True)

    assert list(built.output_paths) == ["gen", "out/a.o", "out/b.o"]
    assert list(built.output_files) == []
    assert list(built.output_directories) == []


def test_build_command_uses_split_outputs_for_old_servers() -> None:
    """REAPI 2.0 servers get sorted output_files and output_directories."""
    built = _command(use_output_paths=False)

    assert list(built.output_files) == ["out/a.o", "out/b.o"]
    assert list(built.output_directories) == ["gen"]
    assert list(built.output_paths) == []


def test_build_command_sorts_environment() -> None:
    """Environment variables are sorted by name and keep their values."""
    built = _command(use_output_paths=True)

    assert [(v.name, v.value) for v in built.environment_variables] == [
        ("LANG", "C"),
        ("PWD", "/src"),
    ]
    assert built.working_directory == "src"


def test_build_action_puts_platform_and_timeout() -> None:
    """The Action carries the timeout, do_not_cache and the same platform as the Command."""
    platform = command.sorted_platform({"OSFamily": "Linux"})
    digest = re_pb2.Digest(hash="a" * 64, size_bytes=1)

    action = command.build_action(
        command_digest=digest,
        input_root_digest=digest,
        timeout_s=900.5,
        do_not_cache=True,
        platform=platform,
    )

    assert action.timeout.seconds == 900
    assert action.timeout.nanos == 500_000_000
    assert action.do_not_cache is True
    assert action.platform == platform


def _request(names: list[str]) -> goma_pb2.ExecReq:
    request = goma_pb2.ExecReq()
    for name in names:
        request.input.add(filename=name, hash_key="0" * 64)
    return request


def test_fill_missing_inputs_follows_request_order() -> None:
    """Missing inputs are listed in request order with their own reasons."""
    request = _request(["a.h", "b.h", "c.h"])
    response = goma_pb2.ExecResp()

    fill_missing_inputs(response, request, [("c.h", "reason c"), ("a.h", "reason a")], limit=100)

    assert list(response.missing_input) == ["a.h", "c.h"]
    assert list(response.missing_reason) == ["reason a", "reason c"]


def test_fill_missing_inputs_thins_and_keeps_pairs_aligned() -> None:
    """Above the limit a random subset is kept and each reason stays with its file."""
    names = [f"f{i:03}.h" for i in range(250)]
    request = _request(names)
    response = goma_pb2.ExecResp()

    fill_missing_inputs(
        response, request, [(n, f"why {n}") for n in names], limit=100, rng=random.Random(7)
    )

    assert len(response.missing_input) == 100
    assert len(response.missing_reason) == 100
    for name, reason in zip(response.missing_input, response.missing_reason, strict=True):
        assert reason == f"why {name}"
    assert list(response.missing_input) == sorted(response.missing_input)


@pytest.mark.parametrize(
    ("compiler", "kept", "dropped"),
    [
        ("gcc", ["CPATH", "PWD", "SDKROOT"], ["HOME", "INCLUDE", "PATH", "USER"]),
        ("clang++", ["CPATH", "PWD", "SDKROOT"], ["HOME", "INCLUDE", "PATH", "USER"]),
        ("clang-cl", ["CPATH", "INCLUDE", "PWD", "SDKROOT"], ["HOME", "PATH", "USER"]),
        ("javac", ["PWD"], ["CPATH", "HOME", "INCLUDE", "PATH", "SDKROOT", "USER"]),
        ("clang-tidy", ["CPATH", "PWD", "SDKROOT"], ["HOME", "INCLUDE", "PATH", "USER"]),
    ],
    ids=["gcc", "clang++", "clang-cl", "javac", "other-uses-gcc-list"],
)
def test_allowed_environment_per_compiler(
    compiler: str, kept: list[str], dropped: list[str]
) -> None:
    """Each compiler keeps only its allowlisted variables; the rest are named as dropped."""
    environment = {
        name: "x" for name in ["PWD", "PATH", "HOME", "USER", "CPATH", "SDKROOT", "INCLUDE"]
    }

    keep, removed = command.allowed_environment(compiler, environment)

    assert sorted(keep) == kept
    assert removed == dropped


def test_allowed_environment_clang_cl_ignores_case() -> None:
    """clang-cl matches Windows variable names without regard to case."""
    keep, removed = command.allowed_environment(
        "clang-cl", {"Include": "a", "lib": "b", "Path": "c"}
    )

    assert keep == {"Include": "a", "lib": "b"}
    assert removed == ["Path"]


@pytest.mark.parametrize(
    ("client_args", "target", "expected"),
    [
        (["gcc", "-c", "a.c"], None, ["/tc/cc", "-c", "a.c"]),
        (
            ["clang", "-c", "a.c"],
            "x86_64-linux-gnu",
            ["/tc/cc", "--target=x86_64-linux-gnu", "-c", "a.c"],
        ),
        (["clang", "-target", "arm", "-c"], "x86_64-linux-gnu", ["/tc/cc", "-target", "arm", "-c"]),
        (["clang", "--target=arm", "-c"], "x86_64-linux-gnu", ["/tc/cc", "--target=arm", "-c"]),
        (["clang"], "x86_64-linux-gnu", ["/tc/cc", "--target=x86_64-linux-gnu"]),
    ],
    ids=[
        "argv0-replaced",
        "target-inserted",
        "separate-target-kept",
        "joined-target-kept",
        "only-argv0",
    ],
)
def test_command_arguments_replaces_argv0(
    client_args: list[str], target: str | None, expected: list[str]
) -> None:
    """argv[0] becomes the toolchain path and --target is added only when none is given."""
    assert command.command_arguments("/tc/cc", client_args, target=target) == expected
