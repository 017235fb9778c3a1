#!/usr/bin/env python3
"""Download and extract the sdists whose C files the acceptance run compiles.

Downloads zstandard 0.23.0 and lz4 4.4.5 with ``pip download --no-binary :all:
--no-deps`` into ``<cache>/sdists`` and extracts each one into ``<cache>/src``. An
archive that is already present is not downloaded again, and a source tree that is
already extracted is not extracted again, so reruns work offline. The cache
directory defaults to ``.cache/samples`` in the repository, which .gitignore excludes.

Usage: python scripts/fetch_samples.py [--cache-dir DIR]
"""

# ruff: noqa: T201 (a command-line script reports to the user with print)

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from samples import SDISTS, Sdist

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CACHE_DIR = REPO_ROOT / ".cache" / "samples"
PIP_OUTPUT_TAIL_LINES = 15


class FetchError(Exception):
    """An sdist could not be downloaded or extracted."""


def output_tail(text: str, line_count: int = PIP_OUTPUT_TAIL_LINES) -> str:
    lines = text.strip().splitlines()
    return "\n".join(lines[-line_count:])


def download_sdist(sdist: Sdist, sdists_dir: Path) -> Path:
    """Download ``sdist`` into ``sdists_dir`` unless it is already there.

    Returns the archive path. Raises FetchError when pip fails or saves no archive.
    """
    archive = sdists_dir / sdist.archive_name
    if archive.is_file():
        return archive

    sdists_dir.mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable, "-m", "pip", "download",
        "--no-binary", ":all:", "--no-deps",
        "-d", str(sdists_dir),
        sdist.requirement,
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise FetchError(
            f"pip could not download {sdist.requirement} (exit status {result.returncode}). "
            "The network or the package index (PyPI, or the index set by PIP_INDEX_URL) "
            "is probably unreachable. Check the connection and rerun.\n"
            f"pip output (last lines):\n{output_tail(result.stdout + result.stderr)}"
        )
    if not archive.is_file():
        saved = sorted(path.name for path in sdists_dir.iterdir())
        raise FetchError(
            f"pip reported success for {sdist.requirement} but {archive} does not exist "
            f"(files in {sdists_dir}: {saved}). Delete {sdists_dir} and rerun."
        )
    return archive


def extract_sdist(sdist: Sdist, archive: Path, src_dir: Path) -> Path:
    """Extract ``archive`` into ``src_dir`` unless it is already extracted.

    Extraction goes to a temporary directory first and is renamed into place, so an
    interrupted run leaves no half-extracted tree that a later run would trust.
    Returns the sdist root.
    """
    root = src_dir / sdist.root_name
    if root.is_dir():
        return root

    if not hasattr(tarfile, "data_filter"):
        raise FetchError(
            f"Python {sys.version.split()[0]} has no tarfile extraction filters, which "
            "safe extraction needs. Run this script with Python 3.11.4 or newer."
        )
    src_dir.mkdir(parents=True, exist_ok=True)
    staging_dir = Path(tempfile.mkdtemp(prefix=f".{sdist.root_name}-", dir=src_dir))
    try:
        try:
            with tarfile.open(archive) as tar:
                # The "data" filter rejects absolute paths, links out of the
                # destination and device files.
                tar.extractall(staging_dir, filter="data")
        except (tarfile.TarError, OSError) as error:
            raise FetchError(
                f"could not extract {archive}: {error}. Delete the archive and rerun "
                "to download it again."
            ) from error

        extracted_root = staging_dir / sdist.root_name
        if not extracted_root.is_dir():
            raise FetchError(
                f"{archive} has no top-level directory {sdist.root_name}/. Delete the "
                "archive and rerun to download it again."
            )
        extracted_root.rename(root)
    finally:
        shutil.rmtree(staging_dir, ignore_errors=True)
    return root


def fetch_samples(cache_dir: Path = DEFAULT_CACHE_DIR) -> dict[str, Path]:
    """Download and extract every sdist and return their roots by sdist name."""
    sdists_dir = cache_dir / "sdists"
    src_dir = cache_dir / "src"
    roots: dict[str, Path] = {}
    for sdist in SDISTS:
        archive = download_sdist(sdist, sdists_dir)
        roots[sdist.name] = extract_sdist(sdist, archive, src_dir)
    return roots


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=DEFAULT_CACHE_DIR,
        help="directory for downloaded archives and extracted sources "
        f"(default: {DEFAULT_CACHE_DIR})",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        roots = fetch_samples(args.cache_dir.resolve())
    except FetchError as error:
        print(f"fetch_samples: error: {error}", file=sys.stderr)
        return 1
    for name, root in roots.items():
        print(f"{name}: {root}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
