"""Retry rules for REAPI calls: which errors are transient, how long to wait, when to stop.

Everything here is pure, so the rules are tested without an event loop; the gRPC backend
runs the loop.  A call is retried with jittered exponential backoff while its total time
budget lasts, never past the caller's own deadline.  The codes retried are the ones
goma-server retries: UNAVAILABLE, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED when it means
quota, and INTERNAL when its message shows a broken connection rather than a server
decision.  A ``google.rpc.RetryInfo`` detail sets the minimum wait.

A RESOURCE_EXHAUSTED whose message reports the request as too large is never retried
unchanged, because the caller must send smaller requests instead.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from google.protobuf import any_pb2
from google.rpc import error_details_pb2

from gomaproxy.errors import BackendError, Code

# Fragments of INTERNAL messages that gRPC stacks and HTTP proxies produce when a
# connection breaks; goma-server retries INTERNAL only for these.
_TRANSIENT_INTERNAL_MARKERS = (
    "unexpected eof",
    "rst_stream",
    "stream terminated",
    'content-type "text/html',
    "connection reset",
)

# Fragments of RESOURCE_EXHAUSTED messages that reject a request for its size, as gRPC
# servers word it ("gRPC message exceeds maximum size 4194304: 4235597", "Received
# message larger than max") and as plain descriptions do ("message too large").
_TOO_LARGE_MARKERS = (
    "too large",
    "exceeds maximum",
    "larger than max",
)


@dataclass(frozen=True)
class RetryPolicy:
    """Backoff and budget of one retried call, in seconds."""

    base_delay_s: float = 0.2
    max_delay_s: float = 10.0
    factor: float = 2.0
    # Each wait is multiplied by a random factor in [1 - jitter, 1 + jitter].
    jitter: float = 0.2
    # Total time from the first attempt after which no new attempt starts.
    budget_s: float = 30.0
    # First wait after a quota error; goma-server waits 1 s there and doubles it.
    quota_base_delay_s: float = 1.0


def is_message_too_large(error: BackendError) -> bool:
    """Tell whether ``error`` rejects a request for its size, so it must be split."""
    if error.code != Code.RESOURCE_EXHAUSTED:
        return False
    message = error.message.lower()
    return any(marker in message for marker in _TOO_LARGE_MARKERS)


def is_retryable(error: BackendError) -> bool:
    """Tell whether sending the same request again may succeed."""
    if error.code in (Code.UNAVAILABLE, Code.DEADLINE_EXCEEDED):
        return True
    if error.code == Code.RESOURCE_EXHAUSTED:
        return not is_message_too_large(error)
    if error.code == Code.INTERNAL:
        message = error.message.lower()
        return any(marker in message for marker in _TRANSIENT_INTERNAL_MARKERS)
    return False


def retry_info_delay(details: Sequence[object]) -> float | None:
    """Return the ``RetryInfo.retry_delay`` in seconds among packed status details, if any."""
    for detail in details:
        if not isinstance(detail, any_pb2.Any):
            continue
        info = error_details_pb2.RetryInfo()
        if detail.Unpack(info):
            return info.retry_delay.seconds + info.retry_delay.nanos / 1e9
    return None


def backoff_delay(
    attempt: int,
    policy: RetryPolicy,
    *,
    base_s: float | None = None,
    rng: random.Random | None = None,
) -> float:
    """Return the jittered wait after failed attempt ``attempt`` (0 for the first attempt)."""
    base = policy.base_delay_s if base_s is None else base_s
    capped = min(policy.max_delay_s, base * policy.factor**attempt)
    spread = (rng or random).uniform(1 - policy.jitter, 1 + policy.jitter)
    return capped * spread


def next_delay(
    error: BackendError,
    attempt: int,
    remaining_s: float,
    policy: RetryPolicy,
    *,
    rng: random.Random | None = None,
) -> float | None:
    """Return how long to wait before retrying after ``error``, or None to give up.

    Args:
        error: the error of the attempt that just failed.
        attempt: how many attempts failed before this one (0 after the first).
        remaining_s: time left of the budget and of the caller's deadline, whichever
            ends first.
        policy: backoff parameters.
        rng: random source for the jitter; tests pass a seeded one.

    Returns:
        None when the error is not transient, or when the wait would end after the
        remaining time, since an attempt that cannot start in time is pointless.
    """
    if not is_retryable(error):
        return None

    base = policy.quota_base_delay_s if error.code == Code.RESOURCE_EXHAUSTED else None
    delay = backoff_delay(attempt, policy, base_s=base, rng=rng)
    hinted = retry_info_delay(error.details)
    if hinted is not None:
        delay = max(delay, hinted)

    if delay >= remaining_s:
        return None
    return delay


def summarize_attempts(errors: Sequence[BackendError], elapsed_s: float) -> BackendError:
    """Return one error for a call whose attempts all failed, keeping the last code and details."""
    last = errors[-1]
    if len(errors) == 1:
        return last
    summary = f"{last.message} (gave up after {len(errors)} attempts in {elapsed_s:.1f} s"
    earlier = [f"{error.code.name}: {error.message}" for error in errors[:-1]]
    different = [
        text for text in dict.fromkeys(earlier) if text != f"{last.code.name}: {last.message}"
    ]
    if different:
        summary += f"; earlier errors: {'; '.join(different)}"
    return BackendError(last.code, summary + ")", details=last.details)
