#!/usr/bin/env python3
"""Regenerate the Python modules in gomaproxy/protos/ from proto/gomaproxy/protos/*.proto.

Writes *_pb2.py, *_pb2.pyi and (for files with services) grpclib *_grpc.py
modules. Needs the dev extra (grpcio-tools); grpclib and
googleapis-common-protos are runtime dependencies. Running it twice gives the
same files, so it is safe to rerun after every .proto change.

Usage: python scripts/gen_protos.py
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = REPO_ROOT / "proto"
PROTO_PACKAGE_DIR = PROTO_ROOT / "gomaproxy" / "protos"
OUTPUT_DIR = REPO_ROOT / "gomaproxy" / "protos"
GRPCLIB_PLUGIN_NAME = "protoc-gen-grpclib_python"


def fail(message: str) -> None:
    print(f"gen_protos: error: {message}", file=sys.stderr)
    sys.exit(1)


def find_grpc_tools_include() -> Path:
    """Return grpc_tools' bundled include directory with google/protobuf/*.proto."""
    spec = importlib.util.find_spec("grpc_tools")
    if spec is None or spec.origin is None:
        fail(
            "grpcio-tools is not installed. Install the dev extra with "
            "`pip install -e '.[dev]'` or `pip install grpcio-tools`."
        )
    include_dir = Path(spec.origin).parent / "_proto"
    if not (include_dir / "google" / "protobuf" / "any.proto").is_file():
        fail(f"grpcio-tools has no google/protobuf/*.proto under {include_dir}; reinstall it.")
    return include_dir


def find_googleapis_include() -> Path:
    """Return the site-packages directory that contains google/rpc/status.proto."""
    spec = importlib.util.find_spec("google.rpc")
    if spec is not None and spec.submodule_search_locations:
        for location in spec.submodule_search_locations:
            status_proto = Path(location) / "status.proto"
            if status_proto.is_file():
                return status_proto.parent.parent.parent
    fail(
        "google/rpc/status.proto was not found. Install googleapis-common-protos "
        "(a runtime dependency of this package)."
    )
    raise AssertionError("unreachable")


def find_grpclib_plugin() -> Path:
    """Return an executable protoc plugin that runs grpclib.plugin.main."""
    on_path = shutil.which(GRPCLIB_PLUGIN_NAME)
    if on_path is not None:
        return Path(on_path)
    script_dir_plugin = Path(sys.executable).parent / GRPCLIB_PLUGIN_NAME
    if script_dir_plugin.is_file() and os.access(script_dir_plugin, os.X_OK):
        return script_dir_plugin
    fail(
        f"{GRPCLIB_PLUGIN_NAME} was not found on PATH or next to {sys.executable}. "
        "Install grpclib (a runtime dependency of this package)."
    )
    raise AssertionError("unreachable")


def is_generated_module(path: Path) -> bool:
    return path.name.endswith(("_pb2.py", "_pb2.pyi", "_grpc.py"))


def has_service_stubs(grpc_module: Path) -> bool:
    """Return True if a grpclib module defines classes, i.e. its .proto has services."""
    return any(line.startswith("class ") for line in grpc_module.read_text().splitlines())


def main() -> int:
    proto_files = sorted(PROTO_PACKAGE_DIR.glob("*.proto"))
    if not proto_files:
        fail(f"no .proto files found in {PROTO_PACKAGE_DIR}")

    include_dirs = [PROTO_ROOT, find_grpc_tools_include(), find_googleapis_include()]
    plugin = find_grpclib_plugin()

    with tempfile.TemporaryDirectory(prefix="gen_protos-") as temp_name:
        temp_root = Path(temp_name)
        command = [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            *(f"--proto_path={directory}" for directory in include_dirs),
            f"--plugin={GRPCLIB_PLUGIN_NAME}={plugin}",
            f"--python_out={temp_root}",
            f"--pyi_out={temp_root}",
            f"--grpclib_python_out={temp_root}",
            # Paths relative to PROTO_ROOT make protoc emit
            # `from gomaproxy.protos import x_pb2` imports.
            *(str(path.relative_to(PROTO_ROOT)) for path in proto_files),
        ]
        result = subprocess.run(command, cwd=REPO_ROOT, check=False)
        if result.returncode != 0:
            fail(f"protoc failed with exit code {result.returncode}")

        temp_output_dir = temp_root / OUTPUT_DIR.relative_to(REPO_ROOT)
        new_modules = [path for path in temp_output_dir.iterdir() if is_generated_module(path)]
        # The grpclib plugin writes a comment-only *_grpc.py for files without
        # services. Dropping those keeps the package free of empty modules.
        new_modules = [
            path
            for path in new_modules
            if not path.name.endswith("_grpc.py") or has_service_stubs(path)
        ]

        # Replace the whole generated set so that outputs of deleted or renamed
        # .proto files do not linger.
        for old_module in OUTPUT_DIR.iterdir():
            if is_generated_module(old_module):
                old_module.unlink()
        for new_module in new_modules:
            shutil.copyfile(new_module, OUTPUT_DIR / new_module.name)

    print(f"gen_protos: wrote {len(new_modules)} files to {OUTPUT_DIR.relative_to(REPO_ROOT)}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
