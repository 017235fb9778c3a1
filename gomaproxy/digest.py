"""REAPI digests: sha256 of content plus its size."""

from __future__ import annotations

import hashlib
import re
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from google.protobuf.message import Message

    from gomaproxy.protos import remote_execution_pb2 as re_pb2

EMPTY_HASH = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


class DigestKey(NamedTuple):
    """A hashable digest, used as a dict key where protobuf messages cannot be."""

    hash: str
    size_bytes: int

    def __str__(self) -> str:
        return f"{self.hash}/{self.size_bytes}"

    def to_proto(self) -> re_pb2.Digest:
        from gomaproxy.protos import remote_execution_pb2 as re_pb2

        return re_pb2.Digest(hash=self.hash, size_bytes=self.size_bytes)

    @classmethod
    def of(cls, digest: re_pb2.Digest) -> DigestKey:
        return cls(digest.hash, digest.size_bytes)

    @property
    def is_empty(self) -> bool:
        return self.size_bytes == 0


EMPTY_DIGEST_KEY = DigestKey(EMPTY_HASH, 0)


def digest_of_bytes(data: bytes) -> DigestKey:
    """Return the sha256 digest of ``data``."""
    return DigestKey(hashlib.sha256(data).hexdigest(), len(data))


def digest_of_message(message: Message) -> tuple[DigestKey, bytes]:
    """Serialize ``message`` deterministically and return its digest and its bytes."""
    data = message.SerializeToString(deterministic=True)
    return digest_of_bytes(data), data


_SHA256_HEX = re.compile(r"[0-9a-f]{64}")


def is_valid_hash(value: str) -> bool:
    """Tell whether ``value`` is 64 lowercase hex digits, the form of a sha256 hash."""
    return _SHA256_HEX.fullmatch(value) is not None
