"""The typed configuration of gomaproxy.

One ``Config`` object is built from, in increasing precedence: the defaults below, a TOML
file, ``GOMAPROXY_<SECTION>_<KEY>`` environment variables, and command-line flags.  Every
phase deadline, limiter size and size limit is a field here.

Example TOML::

    [server]
    port = 8090

    [exec]
    action_timeout_s = 900
    file_lookup_concurrency = 20
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gomaproxy.errors import ConfigError

MiB = 1024 * 1024
GiB = 1024 * MiB


def _default_state_dir() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(Path.home(), ".local", "state")
    return Path(base) / "gomaproxy"


@dataclass
class ServerConfig:
    """The goma HTTP endpoint."""

    host: str = "127.0.0.1"
    port: int = 8090
    url_prefix: str = "/cxx-compiler-service"
    # The compressed request body as received, and the body after decompression.
    max_body_bytes: int = 64 * MiB
    max_decoded_bytes: int = 64 * MiB
    exec_timeout_s: float = 900.0
    file_timeout_s: float = 60.0
    graceful_timeout_s: float = 5.0


@dataclass
class StateConfig:
    """The directory of the file store, the local CAS and the action cache."""

    dir: Path = field(default_factory=_default_state_dir)


@dataclass
class FileStoreConfig:
    """The goma file store behind StoreFile and LookupFile."""

    max_bytes: int = 4 * GiB


@dataclass
class BackendConfig:
    """The REAPI backend that runs actions: ``local`` or a ``grpc://``/``grpcs://`` address."""

    address: str = "local"
    instance_name: str = ""
    # TLS for grpcs:// addresses: a PEM CA bundle to trust instead of the system's, and
    # a PEM client certificate and key for servers that require one.
    tls_ca_file: str = ""
    tls_client_cert_file: str = ""
    tls_client_key_file: str = ""
    # A file whose content is sent as "authorization: Bearer <token>"; read at start.
    bearer_token_file: str = ""
    # More headers for every call, each "name: value".
    extra_headers: list[str] = field(default_factory=list)
    # Maximum time in seconds of one call, where 0 means no limit.  rpc_timeout_s covers
    # the unary CAS, action cache and capabilities calls, bytestream_timeout_s one Read
    # or Write stream, and execute_timeout_s one Execute or WaitExecution stream, which
    # exec.execute_attempt_timeout_s usually ends first.
    rpc_timeout_s: float = 20.0
    bytestream_timeout_s: float = 120.0
    execute_timeout_s: float = 3600.0
    # Total time in seconds one call may spend on retries of transient errors; 0 turns
    # retries off.
    retry_budget_s: float = 30.0
    # Circuit breaker: this many transport failures (UNAVAILABLE, DEADLINE_EXCEEDED)
    # within breaker_window_s seconds, with no call reaching the server in between,
    # make every call fail at once with UNAVAILABLE, so goma clients compile locally.
    # One GetCapabilities probe every breaker_probe_interval_s seconds (jittered by 20%)
    # closes it again once the server responds.  A threshold of 0 disables the breaker.
    breaker_failure_threshold: int = 10
    breaker_window_s: float = 10.0
    breaker_probe_interval_s: float = 5.0
    # Seconds a gRPC backend has to return GetCapabilities when the proxy starts.  The
    # proxy does not start without that response.  0 skips the check.
    startup_check_timeout_s: float = 15.0
    # The backend runs actions with the input root as the filesystem root and the host's
    # toolchain directories mounted, as buildbox-casd's bubblewrap runner can.  Requests
    # whose inputs share no directory below the root then run at their client paths.
    absolute_root: bool = False
    # Send the InputRootAbsolutePath platform property.  Google's RBE honours it; most
    # other servers reject actions with a property that no worker declares.
    # NOTE: without it, a request that is not relocatable is rejected unless its inputs
    # already put its exec root at the filesystem root.
    input_root_absolute_path_property: bool = False


@dataclass
class LocalBackendConfig:
    """The embedded backend."""

    cas_max_bytes: int = 10 * GiB
    # 0 means one action per CPU.
    max_concurrent_actions: int = 0
    # "auto" uses bubblewrap when it is installed; "never" disables it.
    bubblewrap: str = "auto"
    host_toolchain_dirs: list[str] = field(
        default_factory=lambda: [
            "/usr",
            "/bin",
            "/sbin",
            "/lib",
            "/lib32",
            "/lib64",
            "/libx32",
            "/etc",
        ]
    )


@dataclass
class ExecConfig:
    """The adapter: deadlines per phase in seconds (0 means none), limiter sizes, limits."""

    action_timeout_s: float = 900.0
    inventory_timeout_s: float = 1.0
    input_tree_timeout_s: float = 60.0
    setup_timeout_s: float = 1.0
    check_cache_timeout_s: float = 3.0
    check_missing_timeout_s: float = 10.0
    upload_timeout_s: float = 60.0
    execute_timeout_s: float = 0.0
    response_timeout_s: float = 30.0
    execute_attempt_timeout_s: float = 60.0
    execute_max_attempts: int = 5
    file_lookup_concurrency: int = 20
    cas_blob_lookup_concurrency: int = 20
    output_file_concurrency: int = 20
    missing_input_limit: int = 100
    max_response_bytes: int = 6 * MiB
    digest_cache_entries: int = 2_000_000
    # A TOML toolchain inventory (see gomaproxy/exec/toml_inventory.py).  Empty means
    # the compiler at the client's local_compiler_path on this host, by binary hash.
    inventory_file: str = ""


@dataclass
class LogConfig:
    """Structured logging: ``json`` for machines, ``console`` for people."""

    format: str = "json"
    level: str = "info"


@dataclass
class Config:
    """Every setting of gomaproxy."""

    server: ServerConfig = field(default_factory=ServerConfig)
    state: StateConfig = field(default_factory=StateConfig)
    file_store: FileStoreConfig = field(default_factory=FileStoreConfig)
    backend: BackendConfig = field(default_factory=BackendConfig)
    local: LocalBackendConfig = field(default_factory=LocalBackendConfig)
    exec: ExecConfig = field(default_factory=ExecConfig)
    log: LogConfig = field(default_factory=LogConfig)


ENV_PREFIX = "GOMAPROXY_"


def load_config(
    path: Path | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Config:
    """Build a Config from a TOML file, the environment and flag overrides.

    Args:
        path: a TOML file, or None for defaults only.
        environ: the environment to read ``GOMAPROXY_<SECTION>_<KEY>`` from.
        overrides: ``"section.key": value`` pairs from command-line flags; None values
            are skipped.

    Raises:
        ConfigError: the file cannot be read or parsed, or a value has the wrong type
            or names an unknown section or key.
    """
    config = Config()

    if path is not None:
        _apply_mapping(config, _read_toml(path), source=str(path))

    env = os.environ if environ is None else environ
    _apply_mapping(config, _env_values(config, env), source="environment")

    if overrides:
        flags = _nest({k: v for k, v in overrides.items() if v is not None})
        _apply_mapping(config, flags, source="command line")

    _validate(config)
    return config


# GOMAPROXY_ variables that other parts of gomaproxy read, so they are not config typos.
OTHER_ENV_NAMES = frozenset(
    {"GOMAPROXY_SERVER", "GOMAPROXY_CLIENT_STATE_DIR", "GOMAPROXY_BACKEND_TESTS"}
)


def unknown_env_names(environ: Mapping[str, str]) -> list[str]:
    """Return the ``GOMAPROXY_`` variables in ``environ`` that name no setting.

    A typo such as ``GOMAPROXY_SERVER_PROT`` is otherwise ignored without a word.
    """
    config = Config()
    known = set(OTHER_ENV_NAMES)
    for section in dataclasses.fields(config):
        for key in dataclasses.fields(getattr(config, section.name)):
            known.add(f"{ENV_PREFIX}{section.name}_{key.name}".upper())
    return sorted(name for name in environ if name.startswith(ENV_PREFIX) and name not in known)


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as handle:
            return tomllib.load(handle)
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from exc


def _env_values(config: Config, environ: Mapping[str, str]) -> dict[str, dict[str, str]]:
    values: dict[str, dict[str, str]] = {}
    for section in dataclasses.fields(config):
        for key in dataclasses.fields(getattr(config, section.name)):
            name = f"{ENV_PREFIX}{section.name}_{key.name}".upper()
            if name in environ:
                values.setdefault(section.name, {})[key.name] = environ[name]
    return values


def _nest(flat: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    nested: dict[str, dict[str, Any]] = {}
    for dotted, value in flat.items():
        section, _, key = dotted.partition(".")
        nested.setdefault(section, {})[key] = value
    return nested


def _apply_mapping(config: Config, values: Mapping[str, Any], *, source: str) -> None:
    sections = {f.name: f for f in dataclasses.fields(config)}
    for section_name, section_values in values.items():
        if section_name not in sections:
            raise ConfigError(
                f"unknown config section [{section_name}] in {source}; "
                f"known sections: {', '.join(sorted(sections))}"
            )
        if not isinstance(section_values, Mapping):
            raise ConfigError(f"config section [{section_name}] in {source} must be a table")

        section = getattr(config, section_name)
        hints = typing.get_type_hints(type(section))
        known = {f.name for f in dataclasses.fields(section)}
        for key, raw in section_values.items():
            if key not in known:
                raise ConfigError(
                    f"unknown config key {section_name}.{key} in {source}; "
                    f"known keys: {', '.join(sorted(known))}"
                )
            setattr(section, key, _coerce(raw, hints[key], f"{section_name}.{key}", source))


def _coerce(raw: Any, hint: Any, name: str, source: str) -> Any:
    try:
        return _coerce_value(raw, hint)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"invalid value {raw!r} for {name} in {source}: {exc}") from exc


def _coerce_value(raw: Any, hint: Any) -> Any:
    if hint is bool:
        if isinstance(raw, bool):
            return raw
        text = str(raw).strip().lower()
        if text in {"1", "true", "yes", "on"}:
            return True
        if text in {"0", "false", "no", "off"}:
            return False
        raise ValueError("expected true or false")
    if hint is int:
        if isinstance(raw, bool):
            raise TypeError("expected an integer")
        return int(raw)
    if hint is float:
        return float(raw)
    if hint is str:
        return str(raw)
    if hint is Path:
        return Path(raw).expanduser()
    if typing.get_origin(hint) is list:
        if isinstance(raw, str):
            return [item for item in raw.split(",") if item]
        return [str(item) for item in raw]
    raise TypeError(f"unsupported setting type {hint}")


def _section_name(config: Config, section: object) -> str:
    for item in dataclasses.fields(config):
        if getattr(config, item.name) is section:
            return item.name
    return "?"


def _validate(config: Config) -> None:
    if config.log.format not in {"json", "console"}:
        raise ConfigError(f"log.format must be json or console, not {config.log.format!r}")
    if config.local.bubblewrap not in {"auto", "always", "never"}:
        raise ConfigError(
            f"local.bubblewrap must be auto, always or never, not {config.local.bubblewrap!r}"
        )
    if not config.server.url_prefix.startswith("/"):
        raise ConfigError(
            f"server.url_prefix must start with '/', not {config.server.url_prefix!r}"
        )

    timeouts = {
        "backend.rpc_timeout_s": config.backend.rpc_timeout_s,
        "backend.bytestream_timeout_s": config.backend.bytestream_timeout_s,
        "backend.execute_timeout_s": config.backend.execute_timeout_s,
        "backend.retry_budget_s": config.backend.retry_budget_s,
    }
    for name, value in timeouts.items():
        if value < 0:
            raise ConfigError(f"{name} must be 0 or more seconds, not {value}")

    if config.backend.breaker_failure_threshold < 0:
        raise ConfigError(
            "backend.breaker_failure_threshold must be 0 or more, not "
            f"{config.backend.breaker_failure_threshold}; use 0 to disable the circuit breaker"
        )

    if not 0 <= config.server.port <= 65535:
        raise ConfigError(f"server.port must be between 0 and 65535, not {config.server.port}")

    for section in (config.server, config.exec, config.backend):
        for item in dataclasses.fields(section):
            value = getattr(section, item.name)
            if item.name.endswith("_s") and isinstance(value, (int, float)) and value < 0:
                raise ConfigError(
                    f"{_section_name(config, section)}.{item.name} must not be "
                    f"negative, not {value}; use 0 for no limit"
                )

    positive = {
        "exec.file_lookup_concurrency": config.exec.file_lookup_concurrency,
        "exec.cas_blob_lookup_concurrency": config.exec.cas_blob_lookup_concurrency,
        "exec.output_file_concurrency": config.exec.output_file_concurrency,
        "exec.execute_max_attempts": config.exec.execute_max_attempts,
        "server.max_body_bytes": config.server.max_body_bytes,
        "file_store.max_bytes": config.file_store.max_bytes,
    }
    for name, value in positive.items():
        if value <= 0:
            raise ConfigError(f"{name} must be positive, not {value}")
