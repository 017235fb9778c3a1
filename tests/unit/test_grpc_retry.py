"""Retry classification, backoff and budget of gRPC calls, and ByteStream resource names."""

from __future__ import annotations

import random
import re

import pytest
from google.protobuf import any_pb2, duration_pb2
from google.rpc import error_details_pb2

from gomaproxy.digest import DigestKey
from gomaproxy.errors import BackendError, Code
from gomaproxy.protos import bytestream_pb2 as bs_pb2
from gomaproxy.remote.cas import read_resource_name, upload_resource_name
from gomaproxy.remote.grpc_backend import fresh_upload_resource, resumed_read_request
from gomaproxy.remote.retry import (
    RetryPolicy,
    backoff_delay,
    is_message_too_large,
    is_retryable,
    next_delay,
    retry_info_delay,
    summarize_attempts,
)

DIGEST = DigestKey("a" * 64, 1234)
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def _retry_info(seconds: float) -> any_pb2.Any:
    whole = int(seconds)
    info = error_details_pb2.RetryInfo(
        retry_delay=duration_pb2.Duration(seconds=whole, nanos=int((seconds - whole) * 1e9))
    )
    packed = any_pb2.Any()
    packed.Pack(info)
    return packed


CLASSIFICATION = [
    (Code.UNAVAILABLE, "connection refused", True),
    (Code.DEADLINE_EXCEEDED, "deadline exceeded", True),
    (Code.RESOURCE_EXHAUSTED, "quota exceeded for instance main", True),
    (Code.RESOURCE_EXHAUSTED, "message too large", False),
    (Code.RESOURCE_EXHAUSTED, "gRPC message exceeds maximum size 4194304: 4235597", False),
    (Code.RESOURCE_EXHAUSTED, "Received message larger than max (5000000 vs. 4194304)", False),
    (Code.INTERNAL, "stream terminated by RST_STREAM with error code: INTERNAL_ERROR", True),
    (Code.INTERNAL, "unexpected EOF", True),
    (Code.INTERNAL, 'transport: received the unexpected content-type "text/html"', True),
    (Code.INTERNAL, "nil pointer dereference in scheduler", False),
    (Code.FAILED_PRECONDITION, "missing blobs", False),
    (Code.NOT_FOUND, "no cached result", False),
    (Code.INVALID_ARGUMENT, "bad digest", False),
    (Code.CANCELLED, "cancelled", False),
    (Code.PERMISSION_DENIED, "denied", False),
]


@pytest.mark.parametrize(
    ("code", "message", "expected"),
    CLASSIFICATION,
    ids=[f"{code.name}-{message[:24]}" for code, message, _ in CLASSIFICATION],
)
def test_is_retryable_classifies_codes(code: Code, message: str, expected: bool) -> None:
    """Transient codes are retried; setup errors and size rejections are not."""
    assert is_retryable(BackendError(code, message)) is expected


def test_is_message_too_large_needs_resource_exhausted() -> None:
    """Only a RESOURCE_EXHAUSTED with a size message calls for smaller requests."""
    assert is_message_too_large(BackendError(Code.RESOURCE_EXHAUSTED, "message too large"))
    assert not is_message_too_large(BackendError(Code.INVALID_ARGUMENT, "message too large"))
    assert not is_message_too_large(BackendError(Code.RESOURCE_EXHAUSTED, "quota exceeded"))


def test_backoff_delay_stays_within_jitter_bounds() -> None:
    """Every wait is the capped exponential delay times a factor within +-20%."""
    policy = RetryPolicy(base_delay_s=0.2, max_delay_s=10.0, factor=2.0, jitter=0.2)
    rng = random.Random(7)

    for attempt in range(12):
        capped = min(10.0, 0.2 * 2.0**attempt)
        for _ in range(50):
            delay = backoff_delay(attempt, policy, rng=rng)
            assert capped * 0.8 <= delay <= capped * 1.2


def test_backoff_delay_is_jittered() -> None:
    """Two waits for the same attempt differ, so clients do not retry in lockstep."""
    policy = RetryPolicy()
    rng = random.Random(1)

    delays = {backoff_delay(3, policy, rng=rng) for _ in range(20)}

    assert len(delays) > 1


def test_backoff_delay_never_exceeds_cap() -> None:
    """Late attempts wait at most the maximum delay plus jitter."""
    policy = RetryPolicy(max_delay_s=5.0, jitter=0.2)

    assert backoff_delay(40, policy, rng=random.Random(3)) <= 6.0


def test_next_delay_quota_error_starts_at_one_second() -> None:
    """A quota RESOURCE_EXHAUSTED waits about 1 s before the first retry, as goma-server does."""
    error = BackendError(Code.RESOURCE_EXHAUSTED, "quota exceeded")

    delay = next_delay(error, 0, 30.0, RetryPolicy(), rng=random.Random(5))

    assert delay is not None
    assert 0.8 <= delay <= 1.2


def test_next_delay_honours_retry_info() -> None:
    """A RetryInfo detail sets the minimum wait, even above the usual backoff."""
    error = BackendError(Code.UNAVAILABLE, "overloaded", details=(_retry_info(2.5),))

    delay = next_delay(error, 0, 30.0, RetryPolicy(), rng=random.Random(5))

    assert delay is not None
    assert delay >= 2.5


def test_next_delay_retry_info_over_budget() -> None:
    """A server asking for a wait longer than the time left ends the retries."""
    error = BackendError(Code.RESOURCE_EXHAUSTED, "quota", details=(_retry_info(10.0),))

    assert next_delay(error, 0, 4.0, RetryPolicy()) is None


def test_next_delay_never_retries_failed_precondition() -> None:
    """FAILED_PRECONDITION is permanent whatever the time left."""
    error = BackendError(Code.FAILED_PRECONDITION, "stat /usr/bin/gcc: no such file")

    assert next_delay(error, 0, 1000.0, RetryPolicy()) is None


def test_next_delay_never_retries_too_large() -> None:
    """A size rejection is not sent again unchanged."""
    error = BackendError(Code.RESOURCE_EXHAUSTED, "message too large")

    assert next_delay(error, 0, 1000.0, RetryPolicy()) is None


def test_next_delay_respects_total_budget() -> None:
    """Summed waits of an always-failing call stay within the budget."""
    policy = RetryPolicy(budget_s=5.0)
    error = BackendError(Code.UNAVAILABLE, "down")
    rng = random.Random(11)
    elapsed = 0.0
    attempts = 0

    while (
        delay := next_delay(error, attempts, policy.budget_s - elapsed, policy, rng=rng)
    ) is not None:
        elapsed += delay
        attempts += 1

    assert attempts >= 3
    assert elapsed < policy.budget_s


def test_next_delay_zero_budget_disables_retries() -> None:
    """With no time left, even a transient error is final."""
    error = BackendError(Code.UNAVAILABLE, "down")

    assert next_delay(error, 0, 0.0, RetryPolicy()) is None


def test_retry_info_delay_ignores_other_details() -> None:
    """Details without RetryInfo give no hint."""
    failure = any_pb2.Any()
    failure.Pack(error_details_pb2.PreconditionFailure())

    assert retry_info_delay((failure,)) is None
    assert retry_info_delay((failure, _retry_info(0.5))) == 0.5


def test_summarize_attempts_keeps_single_error() -> None:
    """One failed attempt is raised as it was."""
    error = BackendError(Code.UNAVAILABLE, "down")

    assert summarize_attempts([error], 0.1) is error


def test_summarize_attempts_keeps_last_code_and_details() -> None:
    """Several attempts give the last code and details and list the earlier errors."""
    detail = _retry_info(1.0)
    errors = [
        BackendError(Code.UNAVAILABLE, "first"),
        BackendError(Code.RESOURCE_EXHAUSTED, "second", details=(detail,)),
    ]

    summary = summarize_attempts(errors, 3.25)

    assert summary.code == Code.RESOURCE_EXHAUSTED
    assert summary.details == (detail,)
    assert "second" in summary.message
    assert "UNAVAILABLE: first" in summary.message
    assert "2 attempts" in summary.message


def test_summarize_attempts_lists_repeated_error_once() -> None:
    """Attempts that all failed the same way name the error once, not once per attempt."""
    errors = [BackendError(Code.UNAVAILABLE, "connection refused") for _ in range(4)]

    summary = summarize_attempts(errors, 2.0)

    assert summary.message == "connection refused (gave up after 4 attempts in 2.0 s)"


@pytest.mark.parametrize(
    ("instance", "expected"),
    [
        ("", f"blobs/{'a' * 64}/1234"),
        ("main", f"main/blobs/{'a' * 64}/1234"),
        ("projects/p/instances/default", f"projects/p/instances/default/blobs/{'a' * 64}/1234"),
    ],
    ids=["empty", "plain", "slashed"],
)
def test_read_resource_name_with_instance(instance: str, expected: str) -> None:
    """Read names start with the instance, or with "blobs" when it is empty."""
    assert read_resource_name(instance, DIGEST) == expected


@pytest.mark.parametrize(
    ("instance", "prefix"),
    [("", ""), ("main", "main/"), ("a/b/c", "a/b/c/")],
    ids=["empty", "plain", "slashed"],
)
def test_upload_resource_name_with_instance(instance: str, prefix: str) -> None:
    """Upload names are {instance}/uploads/{uuid}/blobs/{hash}/{size} with a new uuid each."""
    first = upload_resource_name(instance, DIGEST)
    second = upload_resource_name(instance, DIGEST)

    pattern = re.escape(prefix) + r"uploads/(" + UUID.pattern + r")/blobs/a{64}/1234"
    assert re.fullmatch(pattern, first)
    assert re.fullmatch(pattern, second)
    assert first != second
    assert not first.startswith("/")


def test_fresh_upload_resource_replaces_only_upload_id() -> None:
    """A retried write keeps the instance and digest and gets a new upload id."""
    name = f"a/uploads/b/uploads/11111111-1111-1111-1111-111111111111/blobs/{'c' * 64}/5"

    fresh = fresh_upload_resource(name)

    assert fresh.startswith("a/uploads/b/uploads/")
    assert fresh.endswith(f"/blobs/{'c' * 64}/5")
    assert "11111111-1111" not in fresh
    assert UUID.search(fresh)


def test_fresh_upload_resource_leaves_unknown_form() -> None:
    """A name without an uploads/{id}/blobs part is sent again as it is."""
    assert fresh_upload_resource("main/blobs/x/1") == "main/blobs/x/1"


def test_resumed_read_request_moves_offset_and_limit() -> None:
    """A resumed read starts after the received bytes and requests only the rest."""
    request = bs_pb2.ReadRequest(resource_name="r", read_offset=10, read_limit=100)

    resumed = resumed_read_request(request, 40)

    assert resumed.resource_name == "r"
    assert resumed.read_offset == 50
    assert resumed.read_limit == 60


def test_resumed_read_request_keeps_unlimited_read() -> None:
    """A read without a limit stays without one."""
    resumed = resumed_read_request(bs_pb2.ReadRequest(resource_name="r"), 7)

    assert resumed.read_offset == 7
    assert resumed.read_limit == 0
