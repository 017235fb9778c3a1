"""Batch planning of CAS uploads: serialized sizes, entry caps and the ByteStream split."""

from __future__ import annotations

import pytest

from gomaproxy.digest import DigestKey, digest_of_bytes
from gomaproxy.protos import remote_execution_pb2 as re_pb2
from gomaproxy.remote import cas

MiB = 1024 * 1024


def _digest(size: int, fill: str = "a") -> DigestKey:
    return DigestKey(fill * 64, size)


def _serialized_size(instance: str, digests: list[DigestKey]) -> int:
    request = re_pb2.BatchUpdateBlobsRequest(instance_name=instance)
    for digest in digests:
        request.requests.add(digest=digest.to_proto(), data=b"x" * digest.size_bytes)
    return len(request.SerializeToString())


@pytest.mark.parametrize("size", [1, 100, 127, 128, 4000, 300_000, 2 * MiB], ids=str)
def test_batch_entry_bytes_matches_protobuf(size: int) -> None:
    """The computed entry size equals what protobuf serializes for one blob."""
    digest = _digest(size)
    assert cas.batch_entry_bytes(digest) == _serialized_size("", [digest])


def test_plan_batches_stays_under_byte_limit() -> None:
    """Every planned batch serializes to at most the byte limit, instance name included."""
    digests = [_digest(4100, fill=f"{i % 16:x}") for i in range(1000)]
    limit = cas.batch_byte_limit(4 * MiB)

    batches, large = cas.plan_batches(digests, instance_name="main/goma", byte_limit=limit)

    assert large == []
    assert sum(len(b) for b in batches) == 1000
    for batch in batches:
        assert _serialized_size("main/goma", batch) <= limit


def test_plan_batches_caps_entries_at_1000() -> None:
    """Tiny blobs are still split into batches of at most 1000 entries."""
    digests = [_digest(1) for _ in range(2500)]

    batches, _ = cas.plan_batches(digests, instance_name="", byte_limit=cas.batch_byte_limit(0))

    assert [len(b) for b in batches] == [1000, 1000, 500]


def test_plan_batches_sends_large_blobs_by_bytestream() -> None:
    """A blob that cannot fit a batch on its own goes to the ByteStream list."""
    small, big = _digest(10), _digest(3 * MiB + 1)

    batches, large = cas.plan_batches([big, small], instance_name="", byte_limit=3 * MiB)

    assert batches == [[small]]
    assert large == [big]


@pytest.mark.parametrize(
    ("advertised", "expected"),
    [(0, 3 * MiB), (4 * MiB, 3 * MiB), (1 * MiB, 768 * 1024), (64 * MiB, 3 * MiB)],
    ids=["none-advertised", "4MiB", "1MiB", "above-grpc-default"],
)
def test_batch_byte_limit_keeps_headroom(advertised: int, expected: int) -> None:
    """The budget is three quarters of the smaller of the advertised and gRPC limits."""
    assert cas.batch_byte_limit(advertised) == expected


def test_resource_names_with_and_without_instance() -> None:
    """An empty instance name has no leading slash; upload names carry a fresh id."""
    digest = digest_of_bytes(b"abc")

    assert cas.read_resource_name("", digest) == f"blobs/{digest.hash}/3"
    assert cas.read_resource_name("a/b", digest) == f"a/b/blobs/{digest.hash}/3"
    first = cas.upload_resource_name("inst", digest)
    second = cas.upload_resource_name("inst", digest)
    assert first.startswith("inst/uploads/")
    assert first.endswith(f"/blobs/{digest.hash}/3")
    assert first != second
