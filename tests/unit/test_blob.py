"""Tests for goma FileBlob hash keys, chunking and validity rules."""

from __future__ import annotations

import hashlib

import pytest

from gomaproxy.goma import blob as blobs
from gomaproxy.goma.blob import ChunkSize, InvalidFileBlob
from gomaproxy.protos import goma_data_pb2 as goma_pb2

FileBlob = goma_pb2.FileBlob

MIB = 1024 * 1024
KEY_A = "a" * 64
KEY_B = "b" * 64


def test_hash_key_of_small_file() -> None:
    """The FILE blob of ``int main(){}\\n`` has the key the goma client computes."""
    blob = blobs.file_blob(b"int main(){}\n")

    assert blob.SerializeToString() == bytes.fromhex(
        "08 01 5a 0d 69 6e 74 20 6d 61 69 6e 28 29 7b 7d 0a a0 01 0d"
    )
    assert (
        blobs.hash_key(blob)
        == "f8ca55b6031759c54e342702604eb0d6d3d7ac33df9bb6598be0769bb84eb4bc"
    )


def test_hash_key_is_not_content_sha256() -> None:
    """The key hashes the serialized blob, so it differs from the content's sha256."""
    content = b"int main(){}\n"

    assert blobs.hash_key(blobs.file_blob(content)) != hashlib.sha256(content).hexdigest()


def test_hash_key_of_empty_file() -> None:
    """The empty FILE blob serializes with content present and has the known key."""
    blob = blobs.file_blob(b"")

    assert blob.SerializeToString() == bytes.fromhex("08 01 5a 00 a0 01 00")
    assert (
        blobs.hash_key(blob)
        == "6ed756eacff27326411ce890c828745034b70725d434d0fe940561f39f712bfd"
    )


def test_hash_key_of_first_chunk() -> None:
    """A FILE_CHUNK at offset 0 serializes the offset and has the known key."""
    blob = blobs.chunk_blob(b"abc", 0, 3)

    assert blob.SerializeToString() == bytes.fromhex("08 03 50 00 5a 03 61 62 63 a0 01 03")
    assert (
        blobs.hash_key(blob)
        == "5bf713cf4e1d32477f3114854c068ffb9a81b2f97ee40a32e8552a7a8d1e3c76"
    )


def test_hash_key_of_serialized_matches_hash_key() -> None:
    """Hashing the serialized bytes gives the same key as hashing the message."""
    blob = blobs.file_blob(b"data")

    assert blobs.hash_key_of_serialized(blob.SerializeToString()) == blobs.hash_key(blob)


def test_blob_for_content_at_threshold_is_file() -> None:
    """Content of exactly 2 MiB stays one FILE blob with no chunks."""
    content = b"x" * (2 * MIB)

    blob, chunks = blobs.blob_for_content(content)

    assert blob.blob_type == FileBlob.FILE
    assert blob.file_size == 2 * MIB
    assert blob.content == content
    assert chunks == ()


def test_blob_for_content_above_threshold_is_meta() -> None:
    """Content of 2 MiB + 1 becomes a FILE_META with two chunks, the second of 1 byte."""
    content = b"x" * (2 * MIB) + b"y"

    meta, chunks = blobs.blob_for_content(content)

    assert meta.blob_type == FileBlob.FILE_META
    assert meta.file_size == 2 * MIB + 1
    assert not meta.HasField("content")
    assert len(chunks) == 2
    assert list(meta.hash_key) == [blobs.hash_key(chunk) for chunk in chunks]
    assert chunks[0].offset == 0
    assert chunks[0].HasField("offset")
    assert chunks[0].content == b"x" * (2 * MIB)
    assert chunks[1].offset == 2 * MIB
    assert chunks[1].content == b"y"


@pytest.mark.parametrize(
    ("mode", "expected_sizes"),
    [
        (ChunkSize.CHUNK, [2 * MIB, 1]),
        (ChunkSize.TOTAL, [2 * MIB + 1, 2 * MIB + 1]),
    ],
    ids=["chunk_length", "total_length"],
)
def test_chunked_file_chunk_file_size(mode: ChunkSize, expected_sizes: list[int]) -> None:
    """A chunk's file_size is its own length or the whole file's length, by mode."""
    content = b"z" * (2 * MIB + 1)

    chunked = blobs.chunked_file(content, mode)

    assert [chunk.file_size for chunk in chunked.chunks] == expected_sizes


@pytest.mark.parametrize("mode", list(ChunkSize), ids=[mode.value for mode in ChunkSize])
def test_chunked_file_blobs_are_valid(mode: ChunkSize) -> None:
    """Every blob of a chunked file passes the validity check in both size modes."""
    chunked = blobs.chunked_file(b"q" * (2 * MIB + 1), mode)

    blobs.check_file_blob(chunked.meta)
    for chunk in chunked.chunks:
        blobs.check_file_blob(chunk)


def test_chunked_file_chunks_reassemble_content() -> None:
    """Concatenating the chunks at their offsets gives back the original content."""
    content = bytes(range(256)) * (5 * MIB // 256) + b"tail"

    chunked = blobs.chunked_file(content)

    assert len(chunked.chunks) == 3
    assert b"".join(chunk.content for chunk in chunked.chunks) == content
    assert [chunk.offset for chunk in chunked.chunks] == [0, 2 * MIB, 4 * MIB]


def _blob(**fields: object) -> goma_pb2.FileBlob:
    """Build a FileBlob with exactly the given fields present."""
    blob = FileBlob()
    for name, value in fields.items():
        if name == "hash_key":
            blob.hash_key.extend(value)  # type: ignore[call-overload]
        else:
            setattr(blob, name, value)
    return blob


VALID_BLOBS = {
    "file": _blob(blob_type=FileBlob.FILE, content=b"abc", file_size=3),
    "empty_file": _blob(blob_type=FileBlob.FILE, content=b"", file_size=0),
    "meta": _blob(blob_type=FileBlob.FILE_META, file_size=5 * MIB, hash_key=[KEY_A, KEY_B]),
    "chunk": _blob(blob_type=FileBlob.FILE_CHUNK, offset=0, content=b"abc", file_size=3),
    "chunk_total_size": _blob(
        blob_type=FileBlob.FILE_CHUNK, offset=2 * MIB, content=b"abc", file_size=2 * MIB + 3
    ),
    "ref": _blob(blob_type=FileBlob.FILE_REF, file_size=10, hash_key=[KEY_A]),
}


@pytest.mark.parametrize("blob", VALID_BLOBS.values(), ids=VALID_BLOBS.keys())
def test_check_file_blob_accepts_valid(blob: goma_pb2.FileBlob) -> None:
    """Blobs that follow the rules of their type pass the check."""
    blobs.check_file_blob(blob)


INVALID_BLOBS = {
    "unset_type": _blob(content=b"abc", file_size=3),
    "unspecified": _blob(blob_type=FileBlob.FILE_UNSPECIFIED, file_size=0),
    "file_missing_size": _blob(blob_type=FileBlob.FILE, content=b"abc"),
    "file_negative_size": _blob(blob_type=FileBlob.FILE, content=b"", file_size=-1),
    "file_missing_content": _blob(blob_type=FileBlob.FILE, file_size=0),
    "file_size_mismatch": _blob(blob_type=FileBlob.FILE, content=b"abc", file_size=4),
    "file_with_offset": _blob(blob_type=FileBlob.FILE, offset=0, content=b"abc", file_size=3),
    "file_with_hash_key": _blob(
        blob_type=FileBlob.FILE, content=b"abc", file_size=3, hash_key=[KEY_A]
    ),
    "meta_missing_size": _blob(blob_type=FileBlob.FILE_META, hash_key=[KEY_A, KEY_B]),
    "meta_one_key": _blob(blob_type=FileBlob.FILE_META, file_size=5, hash_key=[KEY_A]),
    "meta_no_keys": _blob(blob_type=FileBlob.FILE_META, file_size=5),
    "meta_with_offset": _blob(
        blob_type=FileBlob.FILE_META, offset=0, file_size=5, hash_key=[KEY_A, KEY_B]
    ),
    "meta_with_content": _blob(
        blob_type=FileBlob.FILE_META, content=b"", file_size=5, hash_key=[KEY_A, KEY_B]
    ),
    "chunk_missing_size": _blob(blob_type=FileBlob.FILE_CHUNK, offset=0, content=b"abc"),
    "chunk_negative_size": _blob(
        blob_type=FileBlob.FILE_CHUNK, offset=0, content=b"abc", file_size=-3
    ),
    "chunk_missing_offset": _blob(blob_type=FileBlob.FILE_CHUNK, content=b"abc", file_size=3),
    "chunk_missing_content": _blob(blob_type=FileBlob.FILE_CHUNK, offset=0, file_size=3),
    "chunk_with_hash_key": _blob(
        blob_type=FileBlob.FILE_CHUNK, offset=0, content=b"abc", file_size=3, hash_key=[KEY_A]
    ),
    "ref_missing_size": _blob(blob_type=FileBlob.FILE_REF, hash_key=[KEY_A]),
    "ref_no_keys": _blob(blob_type=FileBlob.FILE_REF, file_size=10),
    "ref_two_keys": _blob(blob_type=FileBlob.FILE_REF, file_size=10, hash_key=[KEY_A, KEY_B]),
    "ref_with_offset": _blob(blob_type=FileBlob.FILE_REF, offset=0, file_size=10, hash_key=[KEY_A]),
    "ref_with_content": _blob(
        blob_type=FileBlob.FILE_REF, content=b"x", file_size=10, hash_key=[KEY_A]
    ),
}


@pytest.mark.parametrize("blob", INVALID_BLOBS.values(), ids=INVALID_BLOBS.keys())
def test_check_file_blob_rejects_invalid(blob: goma_pb2.FileBlob) -> None:
    """Each broken rule makes the check raise InvalidFileBlob."""
    with pytest.raises(InvalidFileBlob):
        blobs.check_file_blob(blob)


def test_check_file_blob_message_names_type_and_problem() -> None:
    """The error message names the blob type and the size mismatch."""
    blob = INVALID_BLOBS["file_size_mismatch"]

    with pytest.raises(InvalidFileBlob) as caught:
        blobs.check_file_blob(blob)

    assert "FILE" in caught.value.message
    assert "file_size is 4" in caught.value.message
