"""The one error taxonomy of gomaproxy.

Expected outcomes carry a gRPC status code (``Code``), which the HTTP frontend maps to an
HTTP status in ``http_status_for``.  Anything that is not a ``GomaProxyError`` is a bug
and gets a generic 500 response after being logged with the request id.
"""

from __future__ import annotations

import enum


class Code(enum.IntEnum):
    """gRPC status codes, numbered as in google.rpc.Code."""

    OK = 0
    CANCELLED = 1
    UNKNOWN = 2
    INVALID_ARGUMENT = 3
    DEADLINE_EXCEEDED = 4
    NOT_FOUND = 5
    ALREADY_EXISTS = 6
    PERMISSION_DENIED = 7
    RESOURCE_EXHAUSTED = 8
    FAILED_PRECONDITION = 9
    ABORTED = 10
    OUT_OF_RANGE = 11
    UNIMPLEMENTED = 12
    INTERNAL = 13
    UNAVAILABLE = 14
    DATA_LOSS = 15
    UNAUTHENTICATED = 16


# HTTP status per gRPC code, as goma-server's HTTP frontend maps them.  UNAUTHENTICATED
# maps to 500 on purpose: a 401 makes goma clients switch remote compiles off for
# 10 to 20 minutes, while a 5xx makes them retry.
_HTTP_STATUS: dict[Code, int] = {
    Code.OK: 200,
    Code.CANCELLED: 499,
    Code.INVALID_ARGUMENT: 400,
    Code.DEADLINE_EXCEEDED: 504,
    Code.NOT_FOUND: 404,
    Code.ALREADY_EXISTS: 409,
    Code.PERMISSION_DENIED: 403,
    Code.UNAUTHENTICATED: 500,
    Code.RESOURCE_EXHAUSTED: 429,
    Code.FAILED_PRECONDITION: 400,
    Code.ABORTED: 409,
    Code.OUT_OF_RANGE: 400,
    Code.UNIMPLEMENTED: 501,
    Code.UNAVAILABLE: 503,
}


def http_status_for(code: Code) -> int:
    """Return the HTTP status of the response to a request that ended with ``code``."""
    return _HTTP_STATUS.get(code, 500)


class GomaProxyError(Exception):
    """An expected failure with a gRPC status code and a message for the client."""

    code: Code = Code.INTERNAL

    def __init__(self, message: str, *, code: Code | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else ""


class BadRequest(GomaProxyError):
    """The request can never succeed as sent; its goma response is ExecResp BAD_REQUEST."""

    code = Code.INVALID_ARGUMENT


class RequestBodyError(GomaProxyError):
    """An HTTP request body that cannot be decoded: bad compression, bad protobuf, too large.

    ``http_status`` overrides the code's mapping, for 413 and 415.
    """

    code = Code.INVALID_ARGUMENT

    def __init__(self, message: str, *, http_status: int = 400) -> None:
        super().__init__(message)
        self.http_status = http_status


class BackendError(GomaProxyError):
    """A REAPI backend call that ended with a non-OK status.

    ``details`` contains the packed ``google.protobuf.Any`` details of the status, such as
    ``RetryInfo`` or ``PreconditionFailure``.
    """

    def __init__(self, code: Code, message: str, *, details: tuple[object, ...] = ()) -> None:
        super().__init__(message, code=code)
        self.details = details

    def __str__(self) -> str:
        return f"{self.code.name}: {self.message}"


class ConfigError(GomaProxyError):
    """A configuration file, variable or flag with an invalid value."""

    code = Code.INVALID_ARGUMENT
