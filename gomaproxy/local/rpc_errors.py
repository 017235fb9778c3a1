"""BackendError helpers that the RPC methods of the local backend share.

A request check raises BackendError, which fails the whole call.  ``status_of`` converts a
BackendError to a google.rpc.Status, which reports the error of one blob or one execution.
"""

from __future__ import annotations

from google.protobuf import any_pb2
from google.rpc import status_pb2

from gomaproxy.digest import DigestKey, is_valid_hash
from gomaproxy.errors import BackendError, Code
from gomaproxy.protos import remote_execution_pb2 as re_pb2

# Total blob bytes per BatchUpdateBlobs or BatchReadBlobs request, the usual gRPC message cap.
MAX_BATCH_TOTAL_SIZE_BYTES = 4 * 1024 * 1024


def status_of(error: BackendError) -> status_pb2.Status:
    """Convert ``error`` to a google.rpc.Status, keeping its packed details."""
    status = status_pb2.Status(code=int(error.code), message=error.message)
    status.details.extend(detail for detail in error.details if isinstance(detail, any_pb2.Any))
    return status


def digest_key(digest: re_pb2.Digest, what: str) -> DigestKey:
    if is_valid_hash(digest.hash) and digest.size_bytes >= 0:
        return DigestKey.of(digest)
    raise BackendError(
        Code.INVALID_ARGUMENT,
        f"{what} {digest.hash!r}/{digest.size_bytes} is invalid; "
        "use a lowercase hex sha256 and a non-negative size",
    )


def check_digest_function(value: int) -> None:
    if value in (re_pb2.DigestFunction.UNKNOWN, re_pb2.DigestFunction.SHA256):
        return
    raise BackendError(
        Code.INVALID_ARGUMENT,
        f"digest function {re_pb2.DigestFunction.Name(value)} is not supported; use SHA256",
    )


def check_batch_size(total: int, call: str) -> None:
    if total <= MAX_BATCH_TOTAL_SIZE_BYTES:
        return
    raise BackendError(
        Code.INVALID_ARGUMENT,
        f"{call} request carries {total} blob bytes, more than the limit of "
        f"{MAX_BATCH_TOTAL_SIZE_BYTES}; send large blobs through ByteStream",
    )
