"""Classifying one ExecResp the way goma's compiler_proxy reacts to it.

The checks run in compiler_proxy's order.  A BAD_REQUEST ends the compile, and a
missing-input list leads to another round that sends those files again.  An
``error_message`` with error OK leads to the same request again.  Otherwise the result
counts only if the server ran the requested compiler: in hermetic mode the echoed
CommandSpec must repeat the request's name, version, target and binary hash.
"""

from __future__ import annotations

from dataclasses import dataclass

from gomaproxy.protos import goma_data_pb2 as goma_pb2

ExecResp = goma_pb2.ExecResp

NO_MATCHING_COMPILER = "no matching compiler on the server"

# exit_status of an ExecResult whose compiler did not run.
DID_NOT_RUN_STATUS = -1

_ECHOED_FIELDS = ("name", "version", "target", "binary_hash")


@dataclass(frozen=True)
class Done:
    """The response carries the compile's result."""


@dataclass(frozen=True)
class MissingInputs:
    """The server lacks these inputs, named as in the request."""

    filenames: tuple[str, ...]


@dataclass(frozen=True)
class RetryExec:
    """The server reported a transient error; the same request may succeed."""

    reason: str


@dataclass(frozen=True)
class CompileFailed:
    """The remote compile cannot succeed; ``messages`` are shown to the user."""

    messages: tuple[str, ...]
    fallback_allowed: bool = True


Decision = Done | MissingInputs | RetryExec | CompileFailed


def classify_response(request: goma_pb2.ExecReq, response: goma_pb2.ExecResp) -> Decision:
    """Return what the launcher does next with ``response`` to ``request``."""
    if response.error == ExecResp.BAD_REQUEST:
        return _bad_request(request, response)
    if response.missing_input:
        return MissingInputs(tuple(response.missing_input))
    if response.error_message:
        return RetryExec("server error: " + "; ".join(response.error_message))
    if not response.HasField("result"):
        return CompileFailed(("the server returned neither a result nor missing inputs",))

    result = response.result
    if request.hermetic_mode and result.HasField("command_spec"):
        mismatch = command_spec_mismatch(request.command_spec, result.command_spec)
        if mismatch:
            return CompileFailed((mismatch,))
    if result.exit_status == DID_NOT_RUN_STATUS and not result.output:
        return CompileFailed(("the server did not run the compiler (exit_status -1)",))
    return Done()


def command_spec_mismatch(sent: goma_pb2.CommandSpec, echoed: goma_pb2.CommandSpec) -> str | None:
    """Describe how the server's compiler differs from the requested one, or return None."""
    if not echoed.binary_hash:
        return _no_matching_compiler(sent)

    for name in _ECHOED_FIELDS:
        expected = getattr(sent, name)
        actual = getattr(echoed, name)
        if actual != expected:
            return (
                f"the server used a different compiler: {name} is {_show(actual)}, "
                f"expected {_show(expected)}"
            )
    return None


def _bad_request(request: goma_pb2.ExecReq, response: goma_pb2.ExecResp) -> CompileFailed:
    """Return the failure of a BAD_REQUEST; unsupported flags also forbid a local run."""
    fallback_allowed = response.bad_request_reason_code != ExecResp.UNSUPPORTED_COMPILER_FLAGS

    if response.error_message:
        messages = tuple(response.error_message)
    elif response.result.HasField("command_spec") and not response.result.command_spec.binary_hash:
        messages = (_no_matching_compiler(request.command_spec),)
    else:
        messages = ("the server rejected the request as BAD_REQUEST without a reason",)
    return CompileFailed(messages, fallback_allowed=fallback_allowed)


def _no_matching_compiler(spec: goma_pb2.CommandSpec) -> str:
    return (
        f"{NO_MATCHING_COMPILER}: {spec.name} {spec.version} for {spec.target} with binary "
        f"hash {spec.binary_hash.decode('ascii', errors='replace')}; register this compiler "
        "with the server or use --local-fallback"
    )


def _show(value: str | bytes) -> str:
    if isinstance(value, bytes):
        return repr(value.decode("ascii", errors="replace"))
    return repr(value)
