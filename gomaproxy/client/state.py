"""Location of the launcher's persistent state: probe results and the known-key cache."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

STATE_DIR_ENV = "GOMAPROXY_CLIENT_STATE_DIR"


def default_state_dir(environ: Mapping[str, str] | None = None) -> Path:
    """Return the client state directory without creating it.

    ``GOMAPROXY_CLIENT_STATE_DIR`` wins when set.  Otherwise the directory is
    ``$XDG_CACHE_HOME/gomaproxy/client``, or ``~/.cache/gomaproxy/client`` when
    ``XDG_CACHE_HOME`` is unset or empty.
    """
    env = os.environ if environ is None else environ

    override = env.get(STATE_DIR_ENV)
    if override:
        return Path(override)

    cache_home = env.get("XDG_CACHE_HOME")
    if cache_home:
        return Path(cache_home) / "gomaproxy" / "client"
    return Path.home() / ".cache" / "gomaproxy" / "client"
