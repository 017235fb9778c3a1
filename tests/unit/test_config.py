"""Configuration precedence and validation."""

from __future__ import annotations

from pathlib import Path

import pytest

from gomaproxy.config import load_config
from gomaproxy.errors import ConfigError


def test_load_config_defaults_match_goma_server() -> None:
    """Defaults carry the goma-server phase deadlines and limits."""
    config = load_config(environ={})

    assert config.server.port == 8090
    assert config.exec.inventory_timeout_s == 1.0
    assert config.exec.input_tree_timeout_s == 60.0
    assert config.exec.check_cache_timeout_s == 3.0
    assert config.exec.missing_input_limit == 100
    assert config.exec.max_response_bytes == 6 * 1024 * 1024


def test_load_config_flags_beat_env_beat_file(tmp_path: Path) -> None:
    """A flag overrides the environment, which overrides the TOML file."""
    path = tmp_path / "gomaproxy.toml"
    path.write_text("[server]\nport = 1000\nhost = '::1'\n[exec]\nmissing_input_limit = 7\n")

    config = load_config(
        path,
        environ={"GOMAPROXY_SERVER_PORT": "2000", "GOMAPROXY_EXEC_MISSING_INPUT_LIMIT": "9"},
        overrides={"server.port": 3000, "server.host": None},
    )

    assert config.server.port == 3000
    assert config.server.host == "::1"
    assert config.exec.missing_input_limit == 9


def test_load_config_list_from_environment() -> None:
    """A list setting takes a comma-separated environment value."""
    config = load_config(environ={"GOMAPROXY_LOCAL_HOST_TOOLCHAIN_DIRS": "/usr,/opt/cc"})

    assert config.local.host_toolchain_dirs == ["/usr", "/opt/cc"]


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("[nonsense]\nx = 1\n", "unknown config section [nonsense]"),
        ("[server]\nprot = 1\n", "unknown config key server.prot"),
        ("[server]\nport = 'eighty'\n", "invalid value 'eighty' for server.port"),
        ("[log]\nformat = 'xml'\n", "log.format must be json or console"),
        ("[exec]\nfile_lookup_concurrency = 0\n", "exec.file_lookup_concurrency must be positive"),
        ("[server\n", "is not valid TOML"),
    ],
    ids=["section", "key", "type", "choice", "positive", "syntax"],
)
def test_load_config_rejects_bad_file(tmp_path: Path, text: str, fragment: str) -> None:
    """Each invalid file gives a ConfigError naming the setting."""
    path = tmp_path / "bad.toml"
    path.write_text(text)

    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={})

    assert fragment in caught.value.message


def test_load_config_missing_file_names_path(tmp_path: Path) -> None:
    """A config file that does not exist is named in the error."""
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(tmp_path / "absent.toml", environ={})


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("[server]\nport = 70000\n", "server.port must be between 0 and 65535, not 70000"),
        ("[exec]\naction_timeout_s = -5\n", "exec.action_timeout_s must not be negative"),
        ("[backend]\nrpc_timeout_s = -1\n", "backend.rpc_timeout_s must be 0 or more seconds"),
    ],
    ids=["port-range", "negative-exec-timeout", "negative-backend-timeout"],
)
def test_load_config_rejects_out_of_range_values(tmp_path: Path, text: str, fragment: str) -> None:
    """Ports outside 0-65535 and negative timeouts are errors naming the key."""
    path = tmp_path / "range.toml"
    path.write_text(text)

    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={})

    assert fragment in caught.value.message


def test_unknown_env_names_lists_typos_only() -> None:
    """A GOMAPROXY_ variable that names no setting is listed; known ones are not."""
    from gomaproxy.config import unknown_env_names

    environ = {
        "GOMAPROXY_SERVER_PROT": "1",
        "GOMAPROXY_SERVER_PORT": "1",
        "GOMAPROXY_SERVER": "http://127.0.0.1:8090",
        "PATH": "/usr/bin",
    }

    assert unknown_env_names(environ) == ["GOMAPROXY_SERVER_PROT"]
