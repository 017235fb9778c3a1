"""Build the REAPI Command and Action of a goma request (pure functions)."""

from __future__ import annotations

import posixpath
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from google.protobuf import duration_pb2

from gomaproxy.errors import BadRequest
from gomaproxy.goma.environment import GCC_SERVER_IMPORTANT_ENV
from gomaproxy.protos import remote_execution_pb2 as re_pb2

# Environment variables that compiles must not see because they name the client's
# absolute working directory; dropped for relocatable requests.
CWD_VARIABLES = ("PWD",)

# Environment variables that reach the action, by compiler.  Every other variable is
# dropped, so that PATH, HOME or USER of one developer never change the action digest.
# The gcc/clang list is what goma clients forward for these compilers, plus
# DEVELOPER_DIR, which selects the Xcode on macOS.
GCC_ENVIRONMENT = frozenset({*GCC_SERVER_IMPORTANT_ENV, "DEVELOPER_DIR"})
# clang-cl also reads the MSVC include and library search paths.  Windows compares
# variable names without regard to case, so these names are matched that way.
CLANG_CL_ENVIRONMENT = GCC_ENVIRONMENT | {"INCLUDE", "LIB"}
# goma clients send no variables for javac.  javac itself reads CLASSPATH when no
# -classpath is given, and extra options from JDK_JAVAC_OPTIONS (JDK 9 and later).
JAVAC_ENVIRONMENT = frozenset({"PWD", "CLASSPATH", "JDK_JAVAC_OPTIONS"})


def allowed_environment(
    compiler: str, environment: Mapping[str, str]
) -> tuple[dict[str, str], list[str]]:
    """Split ``environment`` into the variables ``compiler`` may see and the dropped names.

    Compilers other than clang-cl and javac get the gcc/clang list.
    """
    if compiler == "clang-cl":
        allowed = {name.upper() for name in CLANG_CL_ENVIRONMENT}
        keep = {name: value for name, value in environment.items() if name.upper() in allowed}
    else:
        allowed = JAVAC_ENVIRONMENT if compiler == "javac" else GCC_ENVIRONMENT
        keep = {name: value for name, value in environment.items() if name in allowed}

    dropped = sorted(name for name in environment if name not in keep)
    return keep, dropped


def command_arguments(argv0: str, client_args: Sequence[str], *, target: str | None) -> list[str]:
    """Return the arguments to run: ``argv0`` in place of the client's argv[0], then the rest.

    With a ``target``, ``--target=<target>`` goes right after argv[0] unless an argument
    is ``-target`` or starts with ``--target=``.
    """
    arguments = [argv0, *client_args[1:]]
    if target is None:
        return arguments

    names_target = any(arg == "-target" or arg.startswith("--target=") for arg in arguments)
    if not names_target:
        arguments.insert(1, f"--target={target}")
    return arguments


def parse_environment(entries: Iterable[str]) -> dict[str, str]:
    """Split ``NAME=value`` entries; a later entry for a name replaces an earlier one.

    Raises:
        BadRequest: an entry has no ``=``.
    """
    variables: dict[str, str] = {}
    for entry in entries:
        name, sep, value = entry.partition("=")
        if not sep or not name:
            raise BadRequest(f"environment entry {entry!r} is not NAME=value")
        variables[name] = value
    return variables


def sorted_platform(properties: Mapping[str, str]) -> re_pb2.Platform:
    """Return a Platform with properties sorted by name, then value, in byte order."""
    platform = re_pb2.Platform()
    for name, value in sorted(
        properties.items(), key=lambda item: (item[0].encode(), item[1].encode())
    ):
        platform.properties.add(name=name, value=value)
    return platform


def build_command(
    *,
    arguments: Sequence[str],
    environment: Mapping[str, str],
    output_files: Iterable[str],
    output_directories: Iterable[str],
    platform: re_pb2.Platform,
    working_directory: str,
    use_output_paths: bool,
) -> re_pb2.Command:
    """Return the Command; ``use_output_paths`` selects the REAPI 2.1 ``output_paths`` field
    over the older ``output_files`` and ``output_directories``."""
    if not arguments:
        raise BadRequest("the request has no arguments to run")

    command = re_pb2.Command(arguments=list(arguments), working_directory=working_directory)
    for name in sorted(environment, key=str.encode):
        command.environment_variables.add(name=name, value=environment[name])

    files = sorted(set(output_files), key=str.encode)
    directories = sorted(set(output_directories), key=str.encode)
    if use_output_paths:
        command.output_paths.extend(sorted(set(files) | set(directories), key=str.encode))
    else:
        command.output_files.extend(files)
        command.output_directories.extend(directories)

    command.platform.CopyFrom(platform)
    return command


def build_action(
    *,
    command_digest: re_pb2.Digest,
    input_root_digest: re_pb2.Digest,
    timeout_s: float,
    do_not_cache: bool,
    platform: re_pb2.Platform,
) -> re_pb2.Action:
    """Return the Action.  The platform is on the Action too, where REAPI 2.2 servers read it."""
    action = re_pb2.Action(do_not_cache=do_not_cache)
    action.command_digest.CopyFrom(command_digest)
    action.input_root_digest.CopyFrom(input_root_digest)
    if timeout_s > 0:
        action.timeout.CopyFrom(
            duration_pb2.Duration(seconds=int(timeout_s), nanos=int((timeout_s % 1) * 1e9))
        )
    if platform.properties:
        action.platform.CopyFrom(platform)
    return action


# The wrapper that runs a command in $WORK_DIR.  It is used when an output lies outside
# the client's working directory: REAPI output paths are relative to
# Command.working_directory and may not climb out of it, so such actions run at the
# input root and change directory themselves.
WRAPPER_NAME = "gomaproxy-run.sh"
WRAPPER_SCRIPT = b'#!/bin/sh\nset -e\nif [ -n "$WORK_DIR" ]; then cd "$WORK_DIR"; fi\nexec "$@"\n'


@dataclass(frozen=True)
class Layout:
    """The working directory of a Command and the names of its outputs."""

    working_directory: str
    use_wrapper: bool
    output_files: tuple[str, ...]
    output_directories: tuple[str, ...]


def plan_layout(
    work_dir: str, output_files: Sequence[str], output_directories: Sequence[str]
) -> Layout:
    """Choose between ``Command.working_directory`` and the wrapper.

    Args:
        work_dir: the client cwd relative to the input root ("" when they are equal).
        output_files, output_directories: outputs relative to the input root.

    Raises:
        BadRequest: an output lies outside the input root.
    """
    files = [_clean_output(path) for path in output_files]
    directories = [_clean_output(path) for path in output_directories]
    base = posixpath.normpath(work_dir) if work_dir else ""
    base = "" if base == "." else base

    inside = all(_is_below(path, base) for path in [*files, *directories])
    if inside:
        return Layout(
            working_directory=base,
            use_wrapper=False,
            output_files=tuple(_relative_to(path, base) for path in files),
            output_directories=tuple(_relative_to(path, base) for path in directories),
        )
    return Layout(
        working_directory="",
        use_wrapper=True,
        output_files=tuple(files),
        output_directories=tuple(directories),
    )


def _clean_output(path: str) -> str:
    cleaned = posixpath.normpath(path)
    if (
        cleaned in ("", ".")
        or cleaned.startswith("../")
        or cleaned == ".."
        or cleaned.startswith("/")
    ):
        raise BadRequest(f"output {path!r} is not below the input root")
    return cleaned


def _is_below(path: str, base: str) -> bool:
    return not base or path.startswith(base + "/")


def _relative_to(path: str, base: str) -> str:
    return path[len(base) + 1 :] if base else path
