"""HTTP body compression for the goma wire protocol, in both directions.

goma clients compress request bodies with ``gzip`` (one gzip member) or with what they call
``deflate``: a zlib stream whose 2-byte header was cut off, so it is raw DEFLATE data
followed by the 4-byte big-endian Adler-32 checksum of the uncompressed bytes.  The server
compresses responses with ``gzip`` or with raw DEFLATE without header or trailer.  It lists
the encodings it accepts in a response ``Accept-Encoding`` header, and goma clients pick
their next request encoding from that list.

Everything here is pure: bytes in, bytes out.  Decoding inflates in steps of at most
``_INFLATE_STEP`` bytes, so a small body that inflates to gigabytes never allocates more
than the caller's limit plus one step before it is rejected.
"""

from __future__ import annotations

import enum
import gzip
import zlib
from dataclasses import dataclass

from gomaproxy.errors import Code, GomaProxyError, RequestBodyError

ADVERTISED_ACCEPT_ENCODING = "gzip, deflate"

GZIP = "gzip"
DEFLATE = "deflate"
IDENTITY = "identity"

SUPPORTED_ENCODINGS = (GZIP, DEFLATE, IDENTITY)

# Max output bytes of one decompress call while inflating.
_INFLATE_STEP = 64 * 1024

_GZIP_WBITS = 16 + zlib.MAX_WBITS
_RAW_DEFLATE_WBITS = -zlib.MAX_WBITS
_ZLIB_WBITS = zlib.MAX_WBITS

_ADLER32_TRAILER_SIZE = 4

# zlib level of response bodies.  It is the fastest level, which goma-server also uses
# (Go's BestSpeed).
_RESPONSE_GZIP_LEVEL = 1


class ResponseBodyError(GomaProxyError):
    """A response body from a goma server that cannot be decoded."""

    code = Code.UNAVAILABLE


class _Failure(enum.Enum):
    UNSUPPORTED = "unsupported"
    CORRUPT = "corrupt"
    TOO_LARGE = "too_large"


class _DecodeFailure(Exception):
    """A decoding failure, before it is mapped to the error type of one direction."""

    def __init__(self, kind: _Failure, message: str, detail: str = "") -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.detail = detail


_REQUEST_HTTP_STATUS: dict[_Failure, int] = {
    _Failure.UNSUPPORTED: 415,
    _Failure.CORRUPT: 400,
    _Failure.TOO_LARGE: 413,
}

_RESPONSE_CODE: dict[_Failure, Code] = {
    _Failure.UNSUPPORTED: Code.UNIMPLEMENTED,
    _Failure.CORRUPT: Code.UNAVAILABLE,
    _Failure.TOO_LARGE: Code.RESOURCE_EXHAUSTED,
}


def decode_request_body(
    body: bytes, content_encoding: str | None, *, max_decoded_bytes: int
) -> bytes:
    """Decode a goma request body according to its ``Content-Encoding`` header.

    Args:
        body: the request body as received.
        content_encoding: the header value, or None when the header is absent.
        max_decoded_bytes: the largest decoded body accepted.

    Raises:
        RequestBodyError: with HTTP status 415 for an unsupported encoding, 400 for data
            that does not decode, and 413 when the decoded body exceeds the limit.

    Returns:
        The decoded body.
    """
    try:
        return _decode_body(body, content_encoding, max_decoded_bytes, "request")
    except _DecodeFailure as failure:
        raise RequestBodyError(
            failure.message, http_status=_REQUEST_HTTP_STATUS[failure.kind]
        ) from None


def choose_response_encoding(accept_encoding: str | None) -> str:
    """Pick the response encoding for a request's ``Accept-Encoding`` header value.

    gzip wins whenever the client accepts it, then deflate, then identity, whatever the
    relative q values are.  An encoding listed with ``q=0`` is not accepted, and ``*``
    accepts every encoding that is not listed on its own.
    """
    if not accept_encoding:
        return IDENTITY

    weights = _parse_accept_encoding(accept_encoding)
    for encoding in (GZIP, DEFLATE):
        weight = weights.get(encoding, weights.get("*", 0.0))
        if weight > 0.0:
            return encoding
    return IDENTITY


def encode_response_body(data: bytes, encoding: str) -> bytes:
    """Compress a response body: gzip at level 1, raw DEFLATE, or identity.

    Raises:
        GomaProxyError: if ``encoding`` is not one of ``SUPPORTED_ENCODINGS``.
    """
    if encoding == GZIP:
        return gzip.compress(data, compresslevel=_RESPONSE_GZIP_LEVEL, mtime=0)
    if encoding == DEFLATE:
        return _compress_raw_deflate(data, _RESPONSE_GZIP_LEVEL)
    if encoding == IDENTITY:
        return data
    raise GomaProxyError(_unsupported_message("response", encoding))


def encode_request_body(data: bytes, encoding: str, *, level: int = 3) -> bytes:
    """Compress a request body the way the goma client does.

    ``gzip`` produces one gzip member.  ``deflate`` produces a zlib stream without its
    2-byte header, so the Adler-32 trailer stays at the end.  ``level`` is the zlib
    compression level, 0 to 9.  The goma client uses 3.

    Raises:
        GomaProxyError: if ``encoding`` is not one of ``SUPPORTED_ENCODINGS``.
    """
    if encoding == GZIP:
        return gzip.compress(data, compresslevel=level, mtime=0)
    if encoding == DEFLATE:
        return zlib.compress(data, level)[2:]
    if encoding == IDENTITY:
        return data
    raise GomaProxyError(_unsupported_message("request", encoding))


def decode_response_body(
    body: bytes, content_encoding: str | None, *, max_decoded_bytes: int
) -> bytes:
    """Decode a goma response body according to its ``Content-Encoding`` header.

    ``deflate`` is read as raw DEFLATE, with or without an Adler-32 trailer.

    Raises:
        ResponseBodyError: code UNIMPLEMENTED for an unsupported encoding, UNAVAILABLE for
            data that does not decode (goma clients retry such responses), and
            RESOURCE_EXHAUSTED when the decoded body exceeds ``max_decoded_bytes``.
    """
    try:
        return _decode_body(body, content_encoding, max_decoded_bytes, "response")
    except _DecodeFailure as failure:
        raise ResponseBodyError(
            failure.message, code=_RESPONSE_CODE[failure.kind]
        ) from None


def _decode_body(
    body: bytes, content_encoding: str | None, limit: int, direction: str
) -> bytes:
    encoding = _normalize_encoding(content_encoding)

    if encoding == IDENTITY:
        _check_size(len(body), limit, encoding, direction)
        return body
    if encoding == GZIP:
        return _decode_gzip(body, limit, direction)
    if encoding == DEFLATE:
        return _decode_deflate(body, limit, direction)
    raise _DecodeFailure(_Failure.UNSUPPORTED, _unsupported_message(direction, encoding))


def _normalize_encoding(content_encoding: str | None) -> str:
    if content_encoding is None:
        return IDENTITY
    encoding = content_encoding.strip().lower()
    return encoding or IDENTITY


def _unsupported_message(direction: str, encoding: str) -> str:
    return (
        f"unsupported {direction} Content-Encoding {encoding!r}; "
        f"use one of {', '.join(SUPPORTED_ENCODINGS)}"
    )


def _check_size(size: int, limit: int, encoding: str, direction: str) -> None:
    if size <= limit:
        return
    raise _DecodeFailure(
        _Failure.TOO_LARGE,
        f"decoded {direction} body ({encoding}) exceeds the limit of {limit} bytes; "
        f"send a smaller {direction} or raise the limit",
    )


def _decode_gzip(body: bytes, limit: int, direction: str) -> bytes:
    """Inflate one or more concatenated gzip members."""
    pieces: list[bytes] = []
    remaining = body
    produced = 0

    while True:
        result = _inflate(remaining, _GZIP_WBITS, limit, GZIP, direction, produced)
        pieces.append(result.data)
        produced += len(result.data)

        if not result.complete:
            raise _corrupt(GZIP, direction, "the stream is truncated before its end")
        if not result.unused:
            return b"".join(pieces)
        remaining = result.unused


def _decode_deflate(body: bytes, limit: int, direction: str) -> bytes:
    """Inflate goma's deflate: raw DEFLATE, then an optional Adler-32 trailer.

    A full zlib stream, header included, is accepted as well when the data does not
    decode as raw DEFLATE and starts with a valid zlib header.
    """
    try:
        return _decode_raw_deflate(body, limit, direction)
    except _DecodeFailure as failure:
        if failure.kind is not _Failure.CORRUPT or not _has_zlib_header(body):
            raise
        raw_detail = failure.detail

    try:
        return _decode_zlib(body, limit, direction)
    except _DecodeFailure as failure:
        if failure.kind is not _Failure.CORRUPT:
            raise
        zlib_detail = failure.detail

    raise _corrupt(
        DEFLATE,
        direction,
        f"it is neither raw DEFLATE ({raw_detail}) nor a zlib stream ({zlib_detail})",
    )


def _decode_zlib(body: bytes, limit: int, direction: str) -> bytes:
    result = _inflate(body, _ZLIB_WBITS, limit, DEFLATE, direction)
    if not result.complete:
        raise _corrupt(DEFLATE, direction, "the stream is truncated before its checksum")
    if result.unused:
        detail = f"found {len(result.unused)} trailing byte(s) after the stream"
        raise _corrupt(DEFLATE, direction, detail)
    return result.data


def _decode_raw_deflate(body: bytes, limit: int, direction: str) -> bytes:
    result = _inflate(body, _RAW_DEFLATE_WBITS, limit, DEFLATE, direction)
    if not result.complete:
        raise _corrupt(DEFLATE, direction, "the stream is truncated before its final block")

    trailer = result.unused
    if not trailer:
        return result.data
    if len(trailer) != _ADLER32_TRAILER_SIZE:
        raise _corrupt(
            DEFLATE,
            direction,
            f"found {len(trailer)} trailing byte(s), expected none or a 4-byte Adler-32",
        )
    if int.from_bytes(trailer, "big") != zlib.adler32(result.data):
        raise _corrupt(DEFLATE, direction, "the Adler-32 trailer does not match the data")
    return result.data


def _has_zlib_header(body: bytes) -> bool:
    """Tell whether ``body`` starts with a zlib header (method 8, window at most 32 KiB)."""
    if len(body) < 2:
        return False
    method_and_window, flags = body[0], body[1]
    if method_and_window & 0x0F != 8 or method_and_window >> 4 > 7:
        return False
    return (method_and_window * 256 + flags) % 31 == 0


@dataclass(frozen=True)
class _InflateResult:
    data: bytes
    complete: bool
    unused: bytes


def _inflate(
    body: bytes,
    wbits: int,
    limit: int,
    encoding: str,
    direction: str,
    produced_before: int = 0,
) -> _InflateResult:
    """Inflate one stream, raising once ``produced_before`` plus its output passes ``limit``.

    ``complete`` is true when the stream's end marker was reached, and ``unused`` contains
    the bytes after that marker.
    """
    decompressor = zlib.decompressobj(wbits)
    pieces: list[bytes] = []
    produced = produced_before
    pending = body

    while not decompressor.eof:
        try:
            piece = decompressor.decompress(pending, _INFLATE_STEP)
        except zlib.error as exc:
            raise _corrupt(encoding, direction, str(exc)) from None

        pieces.append(piece)
        produced += len(piece)
        _check_size(produced, limit, encoding, direction)

        pending = decompressor.unconsumed_tail
        if not piece and not pending:
            break

    return _InflateResult(
        data=b"".join(pieces), complete=decompressor.eof, unused=decompressor.unused_data
    )


def _corrupt(encoding: str, direction: str, detail: str) -> _DecodeFailure:
    return _DecodeFailure(
        _Failure.CORRUPT,
        f"invalid {encoding} {direction} body: {detail}; "
        f"send the body uncompressed or as a valid {encoding} stream",
        detail,
    )


def _parse_accept_encoding(value: str) -> dict[str, float]:
    """Map each listed coding to its q value.  A malformed q value counts as 0."""
    weights: dict[str, float] = {}
    for element in value.split(","):
        coding, _, parameters = element.partition(";")
        name = coding.strip().lower()
        if not name:
            continue
        weights[name] = _quality(parameters)
    return weights


def _quality(parameters: str) -> float:
    for parameter in parameters.split(";"):
        key, _, raw_value = parameter.partition("=")
        if key.strip().lower() != "q":
            continue
        try:
            quality = float(raw_value.strip())
        except ValueError:
            return 0.0
        return quality if 0.0 <= quality <= 1.0 else 0.0
    return 1.0


def _compress_raw_deflate(data: bytes, level: int) -> bytes:
    compressor = zlib.compressobj(level, zlib.DEFLATED, _RAW_DEFLATE_WBITS)
    return compressor.compress(data) + compressor.flush()
