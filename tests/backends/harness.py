"""Shared pieces of the backend tests: the backend scripts, the enable switch, the server record."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent.parent
SCRIPTS_DIR = REPO_ROOT / "scripts"
BACKEND_SCRIPTS_DIR = SCRIPTS_DIR / "backends"
# The backend scripts and scripts/accept_main.py import their neighbours as top-level
# modules, the way they do when run as programs.
for _path in (str(BACKEND_SCRIPTS_DIR), str(SCRIPTS_DIR)):
    if _path not in sys.path:
        sys.path.insert(0, _path)

from _common import (  # noqa: E402
    BackendError,
    free_port,
    load_script,
    make_state_dir,
)

casd = load_script("casd")
buildgrid = load_script("buildgrid")

__all__ = [
    "BackendError",
    "RunningBackend",
    "backend_tests_enabled",
    "buildgrid",
    "casd",
    "free_port",
    "make_state_dir",
]

ENABLE_VARIABLE = "GOMAPROXY_BACKEND_TESTS"


def backend_tests_enabled() -> bool:
    flag = os.environ.get(ENABLE_VARIABLE, "").strip().lower()
    if flag in ("0", "false", "no"):
        return False
    return flag in ("1", "true", "yes") or os.environ.get("CI", "").lower() == "true"


SKIP_REASON = (
    f"backend tests install and start buildbox-casd and BuildGrid; set {ENABLE_VARIABLE}=1 "
    "to run them (CI=true runs them too)"
)


@dataclass(frozen=True)
class RunningBackend:
    """A started REAPI server: its name, ``host:port`` and state directory."""

    name: str
    address: str
    state_dir: Path

    @property
    def url(self) -> str:
        return f"grpc://{self.address}"
