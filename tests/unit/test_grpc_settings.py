"""gRPC backend settings: addresses, headers, deadlines, request metadata, batch halving."""

from __future__ import annotations

from pathlib import Path

import pytest

from gomaproxy.config import BackendConfig, load_config
from gomaproxy.errors import ConfigError
from gomaproxy.protos import goma_data_pb2 as goma_pb2
from gomaproxy.remote import methods as m
from gomaproxy.remote.cas import halving_index
from gomaproxy.remote.grpc_backend import (
    GrpcTarget,
    load_credentials,
    parse_extra_headers,
    parse_target,
    rpc_timeouts,
)
from gomaproxy.remote.requester import (
    RequesterIds,
    bound_requester,
    current_requester,
    request_metadata,
    requester_ids,
)


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("grpc://127.0.0.1:8980", GrpcTarget("127.0.0.1", 8980, tls=False)),
        ("grpcs://rbe.example.com", GrpcTarget("rbe.example.com", 443, tls=True)),
        ("grpcs://rbe.example.com:8443", GrpcTarget("rbe.example.com", 8443, tls=True)),
        ("grpc://[::1]:50061", GrpcTarget("::1", 50061, tls=False)),
        ("grpc://localhost:1/", GrpcTarget("localhost", 1, tls=False)),
    ],
    ids=["ipv4", "grpcs-default-port", "grpcs-port", "ipv6", "trailing-slash"],
)
def test_parse_target_accepts_addresses(address: str, expected: GrpcTarget) -> None:
    """grpc:// and grpcs:// addresses give host, port and TLS."""
    assert parse_target(address) == expected


@pytest.mark.parametrize(
    "address",
    ["http://127.0.0.1:80", "grpc://127.0.0.1", "grpc://:80", "grpc://h:99999", "grpc://h:1/main"],
    ids=["scheme", "no-port", "no-host", "bad-port", "path"],
)
def test_parse_target_rejects_invalid_addresses(address: str) -> None:
    """Other schemes, missing parts and paths are configuration errors."""
    with pytest.raises(ConfigError):
        parse_target(address)


def test_parse_extra_headers_lowercases_names() -> None:
    """'Name: value' entries become lower-case header pairs with trimmed values."""
    headers = parse_extra_headers(["X-Goog-User-Project: my-project", "x-team:  infra "])

    assert headers == [("x-goog-user-project", "my-project"), ("x-team", "infra")]


@pytest.mark.parametrize(
    "entry",
    ["no colon", ": empty-name", "bad name: x", "x-data-bin: AAAA", "grpc-timeout: 1S", "te: x"],
    ids=["no-colon", "empty-name", "space", "binary", "grpc-reserved", "te"],
)
def test_parse_extra_headers_rejects_invalid(entry: str) -> None:
    """Malformed, binary and reserved headers are configuration errors."""
    with pytest.raises(ConfigError):
        parse_extra_headers([entry])


def test_load_credentials_reads_bearer_token(tmp_path: Path) -> None:
    """The token file becomes one authorization header, after the extra headers."""
    token = tmp_path / "token"
    token.write_text("secret-token\n")
    config = BackendConfig(bearer_token_file=str(token), extra_headers=["x-a: 1"])

    credentials = load_credentials(config, tls=False)

    assert credentials.ssl_context is None
    assert credentials.headers == (("x-a", "1"), ("authorization", "Bearer secret-token"))


def test_load_credentials_rejects_missing_ca_file(tmp_path: Path) -> None:
    """A CA file that does not exist stops the start with a configuration error."""
    config = BackendConfig(tls_ca_file=str(tmp_path / "missing.pem"))

    with pytest.raises(ConfigError, match="missing.pem"):
        load_credentials(config, tls=True)


def test_load_credentials_needs_cert_and_key_together() -> None:
    """A client certificate without its key is a configuration error."""
    config = BackendConfig(tls_client_cert_file="/etc/client.pem")

    with pytest.raises(ConfigError, match="together"):
        load_credentials(config, tls=True)


def test_rpc_timeouts_cover_every_called_method() -> None:
    """Unary, ByteStream and Execute methods take their deadlines from their own keys."""
    config = BackendConfig(rpc_timeout_s=7.0, bytestream_timeout_s=70.0, execute_timeout_s=700.0)

    table = rpc_timeouts(config)

    assert table[m.FIND_MISSING_BLOBS.path] == 7.0
    assert table[m.GET_CAPABILITIES.path] == 7.0
    assert table[m.READ.path] == 70.0
    assert table[m.WRITE.path] == 70.0
    assert table[m.EXECUTE.path] == 700.0
    assert table[m.WAIT_EXECUTION.path] == 700.0


def test_backend_config_reads_grpc_keys_from_environment() -> None:
    """The gRPC keys load from GOMAPROXY_BACKEND_* variables like every other key."""
    config = load_config(
        environ={
            "GOMAPROXY_BACKEND_ADDRESS": "grpcs://rbe.example.com",
            "GOMAPROXY_BACKEND_RETRY_BUDGET_S": "12.5",
            "GOMAPROXY_BACKEND_ABSOLUTE_ROOT": "true",
            "GOMAPROXY_BACKEND_EXTRA_HEADERS": "x-a: 1,x-b: 2",
        }
    )

    assert config.backend.address == "grpcs://rbe.example.com"
    assert config.backend.retry_budget_s == 12.5
    assert config.backend.absolute_root is True
    assert config.backend.input_root_absolute_path_property is False
    assert config.backend.extra_headers == ["x-a: 1", "x-b: 2"]


def test_backend_config_rejects_negative_timeout() -> None:
    """A negative deadline is a configuration error."""
    with pytest.raises(ConfigError, match="rpc_timeout_s"):
        load_config(environ={"GOMAPROXY_BACKEND_RPC_TIMEOUT_S": "-1"})


def test_requester_ids_from_requester_info() -> None:
    """The action id is the proxy's task id and the invocation id is the build id."""
    info = goma_pb2.RequesterInfo(compiler_proxy_id="u@h:8088/t/42", build_id="build-7")

    assert requester_ids(info) == RequesterIds("u@h:8088/t/42", "build-7")


def test_requester_ids_chrome_bot_without_build_id() -> None:
    """A chrome-bot proxy id without build id gives its prefix as invocation id."""
    info = goma_pb2.RequesterInfo(compiler_proxy_id="chrome-bot@bot1:8088/2020/17")

    ids = requester_ids(info)

    assert ids.tool_invocation_id == "chrome-bot@bot1:8088/2020"


def test_bound_requester_is_scoped() -> None:
    """The ids are current inside the block only."""
    info = goma_pb2.RequesterInfo(compiler_proxy_id="p/1", build_id="b")

    with bound_requester(info):
        inside = current_requester()
    outside = current_requester()

    assert inside == RequesterIds("p/1", "b")
    assert outside == RequesterIds()


def test_request_metadata_names_gomaproxy() -> None:
    """RequestMetadata carries the tool name and version and both ids."""
    metadata = request_metadata(RequesterIds("act", "inv"), "1.2.3")

    assert metadata.tool_details.tool_name == "gomaproxy"
    assert metadata.tool_details.tool_version == "1.2.3"
    assert metadata.action_id == "act"
    assert metadata.tool_invocation_id == "inv"


@pytest.mark.parametrize(
    ("sizes", "expected"),
    [([1, 1], 1), ([1, 1, 1, 1], 2), ([1, 2, 3, 100], 3), ([100, 1, 1], 1), ([0, 0, 0], 1)],
    ids=["two", "even", "large-last", "large-first", "empty-blobs"],
)
def test_halving_index_splits_by_bytes(sizes: list[int], expected: int) -> None:
    """A rejected batch is cut where half its bytes are reached, never leaving a side empty."""
    assert halving_index(sizes) == expected
