"""Tests for goma HTTP body compression in both directions."""

from __future__ import annotations

import gzip
import zlib

import pytest

from gomaproxy.errors import Code, GomaProxyError, RequestBodyError
from gomaproxy.goma import codec

PAYLOAD = b"#include <stdio.h>\nint main(void) { return 0; }\n" * 200
LIMIT = 1024 * 1024

ENCODINGS = ["gzip", "deflate", "identity"]


def goma_client_deflate(data: bytes, level: int = 3) -> bytes:
    """Compress like the goma client: a zlib stream with its 2-byte header removed."""
    compressor = zlib.compressobj(level, zlib.DEFLATED, zlib.MAX_WBITS)
    stream = compressor.compress(data) + compressor.flush()
    return stream[2:]


def raw_deflate(data: bytes) -> bytes:
    """Compress to raw DEFLATE with neither header nor trailer."""
    compressor = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
    return compressor.compress(data) + compressor.flush()


@pytest.mark.parametrize("encoding", ENCODINGS, ids=ENCODINGS)
def test_codec_request_round_trip(encoding: str) -> None:
    """A request body encoded by the client side decodes to the same bytes on the server side."""
    body = codec.encode_request_body(PAYLOAD, encoding)

    decoded = codec.decode_request_body(body, encoding, max_decoded_bytes=LIMIT)

    assert decoded == PAYLOAD


@pytest.mark.parametrize("encoding", ENCODINGS, ids=ENCODINGS)
def test_codec_response_round_trip(encoding: str) -> None:
    """A response body encoded by the server side decodes to the same bytes on the client side."""
    body = codec.encode_response_body(PAYLOAD, encoding)

    decoded = codec.decode_response_body(body, encoding, max_decoded_bytes=LIMIT)

    assert decoded == PAYLOAD


@pytest.mark.parametrize("encoding", ["gzip", "deflate"], ids=["gzip", "deflate"])
def test_codec_compressed_bodies_are_smaller(encoding: str) -> None:
    """Both compressing encodings shrink a repetitive body in both directions."""
    request = codec.encode_request_body(PAYLOAD, encoding)
    response = codec.encode_response_body(PAYLOAD, encoding)

    assert len(request) < len(PAYLOAD)
    assert len(response) < len(PAYLOAD)


def test_codec_request_deflate_matches_goma_client() -> None:
    """encode_request_body's deflate is a zlib stream minus its header, trailer kept."""
    body = codec.encode_request_body(PAYLOAD, "deflate", level=3)

    assert body == zlib.compress(PAYLOAD, 3)[2:]
    assert body[-4:] == zlib.adler32(PAYLOAD).to_bytes(4, "big")


def test_codec_response_deflate_has_no_header_or_trailer() -> None:
    """The response deflate body is raw DEFLATE that a raw inflater consumes completely."""
    body = codec.encode_response_body(PAYLOAD, "deflate")
    decompressor = zlib.decompressobj(-zlib.MAX_WBITS)

    decoded = decompressor.decompress(body)

    assert decoded == PAYLOAD
    assert decompressor.eof
    assert decompressor.unused_data == b""


def test_codec_response_gzip_is_a_gzip_member() -> None:
    """The response gzip body is readable by the standard gzip module."""
    body = codec.encode_response_body(PAYLOAD, "gzip")

    assert gzip.decompress(body) == PAYLOAD


def test_codec_request_gzip_is_a_gzip_member() -> None:
    """The request gzip body is readable by the standard gzip module."""
    body = codec.encode_request_body(PAYLOAD, "gzip")

    assert gzip.decompress(body) == PAYLOAD


@pytest.mark.parametrize("level", [1, 3, 9], ids=["level1", "level3", "level9"])
def test_codec_decodes_goma_client_deflate(level: int) -> None:
    """A zlib stream with the header stripped and the Adler-32 trailer kept decodes."""
    body = goma_client_deflate(PAYLOAD, level)

    decoded = codec.decode_request_body(body, "deflate", max_decoded_bytes=LIMIT)

    assert decoded == PAYLOAD


def test_codec_decodes_raw_deflate_without_trailer() -> None:
    """Raw DEFLATE without the Adler-32 trailer decodes as deflate."""
    decoded = codec.decode_request_body(raw_deflate(PAYLOAD), "deflate", max_decoded_bytes=LIMIT)

    assert decoded == PAYLOAD


def test_codec_decodes_full_zlib_stream_as_deflate() -> None:
    """A complete zlib stream, header included, is accepted as deflate."""
    decoded = codec.decode_request_body(zlib.compress(PAYLOAD), "deflate", max_decoded_bytes=LIMIT)

    assert decoded == PAYLOAD


def test_codec_decodes_empty_goma_client_deflate() -> None:
    """The goma client's deflate form of an empty body decodes to nothing."""
    body = goma_client_deflate(b"")

    decoded = codec.decode_request_body(body, "deflate", max_decoded_bytes=LIMIT)

    assert decoded == b""


def test_codec_decodes_concatenated_gzip_members() -> None:
    """Two gzip members in one body decode to the concatenation of their contents."""
    body = gzip.compress(b"first ") + gzip.compress(b"second")

    decoded = codec.decode_request_body(body, "gzip", max_decoded_bytes=LIMIT)

    assert decoded == b"first second"


@pytest.mark.parametrize(
    "content_encoding",
    [None, "", "identity", " Identity "],
    ids=["absent", "empty", "identity", "identity_spaced_mixed_case"],
)
def test_codec_identity_passes_body_through(content_encoding: str | None) -> None:
    """An absent, empty or identity Content-Encoding leaves the body unchanged."""
    decoded = codec.decode_request_body(PAYLOAD, content_encoding, max_decoded_bytes=LIMIT)

    assert decoded == PAYLOAD


def test_codec_encoding_name_is_case_insensitive() -> None:
    """A Content-Encoding of GZIP is read as gzip."""
    body = gzip.compress(PAYLOAD)

    decoded = codec.decode_request_body(body, "GZIP", max_decoded_bytes=LIMIT)

    assert decoded == PAYLOAD


def test_codec_truncated_gzip_is_rejected_with_400() -> None:
    """A gzip body cut short is rejected with HTTP 400 naming gzip."""
    body = gzip.compress(PAYLOAD)[:-10]

    with pytest.raises(RequestBodyError) as caught:
        codec.decode_request_body(body, "gzip", max_decoded_bytes=LIMIT)

    assert caught.value.http_status == 400
    assert "gzip" in caught.value.message
    assert "truncated" in caught.value.message


def test_codec_garbage_gzip_reports_zlib_error() -> None:
    """A body that is not gzip at all is rejected with 400 and the zlib error text."""
    with pytest.raises(RequestBodyError) as caught:
        codec.decode_request_body(b"this is not gzip data", "gzip", max_decoded_bytes=LIMIT)

    assert caught.value.http_status == 400
    assert "incorrect header check" in caught.value.message


@pytest.mark.parametrize(
    "body",
    [
        goma_client_deflate(PAYLOAD)[:-20],
        b"",
        b"\xff\xff\xff\xff",
        goma_client_deflate(PAYLOAD)[:-4] + b"\x00\x00\x00\x00",
        goma_client_deflate(PAYLOAD) + b"extra",
        zlib.compress(PAYLOAD)[:-8],
    ],
    ids=[
        "truncated",
        "empty",
        "garbage",
        "wrong_adler32",
        "trailing_bytes",
        "truncated_zlib",
    ],
)
def test_codec_corrupt_deflate_is_rejected_with_400(body: bytes) -> None:
    """A deflate body that does not decode cleanly is rejected with HTTP 400 naming deflate."""
    with pytest.raises(RequestBodyError) as caught:
        codec.decode_request_body(body, "deflate", max_decoded_bytes=LIMIT)

    assert caught.value.http_status == 400
    assert "deflate" in caught.value.message


@pytest.mark.parametrize(
    "content_encoding", ["br", "zstd", "gzip, deflate"], ids=["br", "zstd", "list"]
)
def test_codec_unknown_encoding_is_rejected_with_415(content_encoding: str) -> None:
    """An unsupported Content-Encoding is rejected with 415 naming it and the supported ones."""
    with pytest.raises(RequestBodyError) as caught:
        codec.decode_request_body(PAYLOAD, content_encoding, max_decoded_bytes=LIMIT)

    assert caught.value.http_status == 415
    assert repr(content_encoding) in caught.value.message
    assert "gzip, deflate, identity" in caught.value.message


def test_codec_gzip_bomb_is_rejected_with_413() -> None:
    """A 10 MiB zero-filled gzip body against a 1 MiB limit is rejected with 413."""
    body = gzip.compress(bytes(10 * 1024 * 1024))

    with pytest.raises(RequestBodyError) as caught:
        codec.decode_request_body(body, "gzip", max_decoded_bytes=1024 * 1024)

    assert caught.value.http_status == 413
    assert str(1024 * 1024) in caught.value.message


def test_codec_deflate_bomb_is_rejected_with_413() -> None:
    """A deflate body that inflates past the limit is rejected with 413."""
    body = goma_client_deflate(bytes(4 * 1024 * 1024))

    with pytest.raises(RequestBodyError) as caught:
        codec.decode_request_body(body, "deflate", max_decoded_bytes=1024 * 1024)

    assert caught.value.http_status == 413


def test_codec_concatenated_gzip_members_count_toward_one_limit() -> None:
    """The limit applies to the sum of all gzip members, not to each one."""
    body = gzip.compress(bytes(600)) + gzip.compress(bytes(600))

    with pytest.raises(RequestBodyError) as caught:
        codec.decode_request_body(body, "gzip", max_decoded_bytes=1000)

    assert caught.value.http_status == 413
    assert "1000 bytes" in caught.value.message


def test_codec_identity_body_over_limit_is_rejected_with_413() -> None:
    """An uncompressed body larger than the limit is rejected with 413."""
    with pytest.raises(RequestBodyError) as caught:
        codec.decode_request_body(bytes(2000), None, max_decoded_bytes=1000)

    assert caught.value.http_status == 413


def test_codec_body_exactly_at_limit_is_accepted() -> None:
    """A body that decodes to exactly the limit is accepted."""
    body = gzip.compress(bytes(1000))

    decoded = codec.decode_request_body(body, "gzip", max_decoded_bytes=1000)

    assert len(decoded) == 1000


@pytest.mark.parametrize(
    ("accept_encoding", "expected"),
    [
        (None, "identity"),
        ("", "identity"),
        ("gzip", "gzip"),
        ("deflate", "deflate"),
        ("identity", "identity"),
        ("gzip, deflate", "gzip"),
        ("deflate, gzip", "gzip"),
        ("DEFLATE", "deflate"),
        (" gzip ;q=0.5 , deflate", "gzip"),
        ("gzip;q=0, deflate", "deflate"),
        ("gzip;q=0.0, deflate;q=0", "identity"),
        ("gzip; Q=0", "identity"),
        ("gzip;q=0.001", "gzip"),
        ("gzip;q=bogus, deflate", "deflate"),
        ("gzip;q=2", "identity"),
        ("*", "gzip"),
        ("*;q=0", "identity"),
        ("gzip;q=0, *", "deflate"),
        ("br, zstd", "identity"),
        ("lzma2, deflate", "deflate"),
        (",,gzip,,", "gzip"),
    ],
    ids=[
        "absent",
        "empty",
        "gzip",
        "deflate",
        "identity",
        "both",
        "both_reversed",
        "upper_case",
        "spaces_and_q",
        "gzip_refused",
        "both_refused",
        "upper_case_q",
        "tiny_q",
        "malformed_q",
        "q_out_of_range",
        "wildcard",
        "wildcard_refused",
        "wildcard_without_gzip",
        "unsupported_only",
        "goma_lzma2",
        "empty_elements",
    ],
)
def test_codec_choose_response_encoding(accept_encoding: str | None, expected: str) -> None:
    """The response encoding is gzip if accepted, then deflate, then identity."""
    assert codec.choose_response_encoding(accept_encoding) == expected


def test_codec_advertised_accept_encoding() -> None:
    """The server advertises gzip first, which keeps goma clients on gzip."""
    assert codec.ADVERTISED_ACCEPT_ENCODING == "gzip, deflate"


@pytest.mark.parametrize("direction", ["request", "response"], ids=["request", "response"])
def test_codec_encode_rejects_unknown_encoding(direction: str) -> None:
    """Encoding with an unsupported name raises an error that names it."""
    encode = (
        codec.encode_request_body if direction == "request" else codec.encode_response_body
    )

    with pytest.raises(GomaProxyError) as caught:
        encode(PAYLOAD, "br")

    assert "'br'" in caught.value.message


def test_codec_response_decode_accepts_deflate_with_trailer() -> None:
    """The client side also reads deflate responses that carry an Adler-32 trailer."""
    body = goma_client_deflate(PAYLOAD)

    decoded = codec.decode_response_body(body, "deflate", max_decoded_bytes=LIMIT)

    assert decoded == PAYLOAD


@pytest.mark.parametrize(
    ("body", "content_encoding", "limit", "expected_code"),
    [
        (PAYLOAD, "br", LIMIT, Code.UNIMPLEMENTED),
        (gzip.compress(PAYLOAD)[:-10], "gzip", LIMIT, Code.UNAVAILABLE),
        (gzip.compress(bytes(4096)), "gzip", 1024, Code.RESOURCE_EXHAUSTED),
    ],
    ids=["unsupported", "truncated", "too_large"],
)
def test_codec_response_decode_errors(
    body: bytes, content_encoding: str, limit: int, expected_code: Code
) -> None:
    """Undecodable responses raise ResponseBodyError with a code per failure kind."""
    with pytest.raises(codec.ResponseBodyError) as caught:
        codec.decode_response_body(body, content_encoding, max_decoded_bytes=limit)

    assert caught.value.code == expected_code
