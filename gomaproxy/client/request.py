"""Building the ExecReq of one compile the way goma's compiler_proxy fills it."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from gomaproxy.client.compiler_info import CompilerInfo, fill_command_spec
from gomaproxy.client.deps import CXX_SOURCE_SUFFIXES, source_files
from gomaproxy.goma.environment import GCC_SERVER_IMPORTANT_ENV
from gomaproxy.protos import goma_data_pb2 as goma_pb2

# Environment variables the goma client sends; it drops the rest of the environment.
SERVER_IMPORTANT_ENV = GCC_SERVER_IMPORTANT_ENV

API_VERSION = 2

# goma clients put their HTTP port in compiler_proxy_id; 8088 is compiler_proxy's
# default, and the anonymous id format always uses it.
_ANONYMOUS_ID_PORT = 8088

_CXX_LANGUAGES = frozenset({"c++", "c++-header", "c++-cpp-output", "objective-c++"})


@dataclass(frozen=True)
class RequesterIdentity:
    """The sender of a request: the launcher's pid and its goma compiler_proxy_id."""

    pid: int
    compiler_proxy_id: str


def compiler_proxy_id(user: str, host: str, start_time: int, task_number: int) -> str:
    """Return the anonymous goma id ``anonymous@<sha256 of user@host>:8088/<start>/<task>``.

    The goma client uses this form unless GOMA_SEND_USER_INFO is set, so the user and
    host names never appear in clear.
    """
    digest = hashlib.sha256(f"{user}@{host}".encode()).hexdigest()
    return f"anonymous@{digest}:{_ANONYMOUS_ID_PORT}/{start_time}/{task_number}"


def filter_env(environ: Mapping[str, str], cwd: str) -> list[str]:
    """Return the ``NAME=value`` entries the server needs, PWD always set to ``cwd``."""
    entries = [f"PWD={cwd}"]
    for name in SERVER_IMPORTANT_ENV:
        if name == "PWD" or name not in environ:
            continue
        entries.append(f"{name}={environ[name]}")
    return entries


def is_cplusplus_compile(args: Sequence[str], name: str) -> bool:
    """Tell whether a compile builds C++, from ``-x``, the compiler name or the sources.

    The last ``-x`` language wins.  Without ``-x``, g++ and clang++ compile C++, and
    gcc or clang compile C++ when a source has a C++ suffix.
    """
    language = _last_language(args)
    if language is not None:
        return language in _CXX_LANGUAGES
    if name in ("g++", "clang++"):
        return True
    return any(os.path.splitext(source)[1] in CXX_SOURCE_SUFFIXES for source in source_files(args))


def _last_language(args: Sequence[str]) -> str | None:
    language = None
    for index, arg in enumerate(args):
        if arg == "-x" and index + 1 < len(args):
            language = args[index + 1]
        elif arg.startswith("-x") and len(arg) > 2:
            language = arg[2:]
    return language


def build_exec_request(
    *,
    info: CompilerInfo,
    args: Sequence[str],
    environ: Mapping[str, str],
    cwd: str,
    inputs: Sequence[goma_pb2.ExecReq.Input],
    expected_outputs: Sequence[str],
    requester: RequesterIdentity,
    retry: int,
    cache_policy: goma_pb2.ExecReq.CachePolicy.ValueType | None = None,
) -> goma_pb2.ExecReq:
    """Build an ExecReq as compiler_proxy sends it to the server.

    ``args`` go out exactly as typed, argv[0] included.  The request is hermetic, so
    the server must run the same compiler, and carries no tracing and no
    requester_env, which compiler_proxy clears before sending.
    """
    request = goma_pb2.ExecReq(
        arg=list(args),
        env=filter_env(environ, cwd),
        cwd=cwd,
        expected_output_files=list(expected_outputs),
        hermetic_mode=True,
        trace=False,
    )
    fill_command_spec(request.command_spec, info, cplusplus=is_cplusplus_compile(args, info.name))
    request.input.extend(inputs)
    request.requester_info.CopyFrom(requester_info(requester, retry))
    if cache_policy is not None:
        request.cache_policy = cache_policy
    return request


def requester_info(requester: RequesterIdentity, retry: int) -> goma_pb2.RequesterInfo:
    """Return the RequesterInfo of one call; ``/s`` and ``/l`` calls carry it too."""
    return goma_pb2.RequesterInfo(
        api_version=API_VERSION,
        pid=requester.pid,
        retry=retry,
        compiler_proxy_id=requester.compiler_proxy_id,
        dimensions=["os:linux"],
        path_style=goma_pb2.RequesterInfo.POSIX_STYLE,
    )
