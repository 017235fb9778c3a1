"""A circuit breaker that makes calls to an unreachable REAPI server fail at once.

Theory of operation.  The breaker is closed while the server responds.  Each call that
ends with a transport failure (``is_transport_failure``) is recorded with its time, and
any call that reaches the server clears the record, because the server is evidently up.
When ``failure_threshold`` failures lie within the last ``window_s`` seconds, the breaker
opens.  While it is open, ``before_call`` rejects every call, except that one probe is
due every ``probe_interval_s`` (jittered).  A probe that reaches the server closes the
breaker, and a failed one schedules the next.  A call that started before the breaker
opened and then reaches the server closes it too.

Everything here is synchronous and takes the time as an argument, so a fake clock tests
it.  The gRPC backend supplies the time, makes the probe call and raises
``CircuitOpenError`` for rejected calls.
"""

from __future__ import annotations

import enum
import random
from collections import deque
from typing import final

from gomaproxy.errors import BackendError, Code

# Codes of calls that did not reach a working server: the bridge maps refused and reset
# connections to UNAVAILABLE, and a call that outlived its deadline to DEADLINE_EXCEEDED.
TRANSPORT_FAILURE_CODES = frozenset({Code.UNAVAILABLE, Code.DEADLINE_EXCEEDED})


class Decision(enum.Enum):
    """The verdict of ``CircuitBreaker.before_call`` on one call."""

    # The breaker is closed: make the call.
    CALL = "call"
    # The breaker is open and a probe is due: probe, and make the call only if it succeeds.
    PROBE = "probe"
    # The breaker is open: fail the call without contacting the server.
    REJECT = "reject"


class Transition(enum.Enum):
    """A change of state that ``CircuitBreaker.record`` reports."""

    OPENED = "opened"
    CLOSED = "closed"


class CircuitOpenError(BackendError):
    """A call rejected by the open breaker, which callers do not retry before the next probe."""

    def __init__(self, message: str) -> None:
        super().__init__(Code.UNAVAILABLE, message)


def is_transport_failure(error: BackendError) -> bool:
    """Tell whether ``error`` shows that the server was not reached or did not respond.

    Errors the server chose to return, such as NOT_FOUND or FAILED_PRECONDITION, show
    that it works, so they do not count.
    """
    return error.code in TRANSPORT_FAILURE_CODES


@final
class CircuitBreaker:
    """The state of one backend: closed, or open with a schedule of probes.

    Args:
        failure_threshold: transport failures within ``window_s`` that open the breaker;
            0 disables it, so every call is allowed.
        window_s: length of the sliding window in seconds.
        probe_interval_s: mean time in seconds between probes while open.
        jitter: each probe interval is multiplied by a random factor in
            [1 - jitter, 1 + jitter], so that several proxies do not probe in step.
        rng: random source for the jitter; tests pass a seeded one.
    """

    def __init__(
        self,
        *,
        failure_threshold: int,
        window_s: float,
        probe_interval_s: float,
        jitter: float = 0.2,
        rng: random.Random | None = None,
    ) -> None:
        if failure_threshold < 0 or window_s < 0 or probe_interval_s < 0:
            raise ValueError(
                "failure_threshold, window_s and probe_interval_s must not be negative, not "
                f"{failure_threshold}, {window_s} and {probe_interval_s}"
            )
        if not 0 <= jitter < 1:
            raise ValueError(f"jitter must be in [0, 1), not {jitter}")
        self.failure_threshold = failure_threshold
        self.window_s = window_s
        self.probe_interval_s = probe_interval_s
        self._jitter = jitter
        self._rng = rng or random.Random()
        # Times of transport failures since the last call that reached the server, oldest
        # first.  It is empty while the breaker is open.
        self._failures: deque[float] = deque()
        # Time the breaker opened, or None while it is closed.
        self._opened_at: float | None = None
        # Earliest time of the next probe, meaningful only while the breaker is open.
        self._next_probe_at = 0.0
        # Whether a probe was allowed and has not been recorded or abandoned yet.
        self._probe_in_flight = False

    @property
    def enabled(self) -> bool:
        return self.failure_threshold > 0

    @property
    def is_open(self) -> bool:
        return self._opened_at is not None

    @property
    def opened_at(self) -> float | None:
        """Time the breaker opened, or None while it is closed."""
        return self._opened_at

    @property
    def probe_in_flight(self) -> bool:
        return self._probe_in_flight

    def next_probe_in(self, now: float) -> float:
        """Return the seconds until the next probe is due, 0 when it is due already."""
        return max(0.0, self._next_probe_at - now)

    def before_call(self, now: float) -> Decision:
        """Decide whether a call starting at ``now`` goes to the server.

        A PROBE decision marks the probe as in flight, so the caller must report its end
        with ``record(..., probe=True)`` or ``abandon_probe``.
        """
        if not self.is_open:
            return Decision.CALL
        if self._probe_in_flight or now < self._next_probe_at:
            return Decision.REJECT
        self._probe_in_flight = True
        return Decision.PROBE

    def record(self, now: float, ok: bool, *, probe: bool = False) -> Transition | None:
        """Record the end of a call at ``now`` and return the transition it caused, if any.

        Args:
            now: the time the call ended.
            ok: whether the call reached the server: False only for a transport failure.
            probe: whether the call was the probe that ``before_call`` allowed.
        """
        if probe:
            self._probe_in_flight = False

        if ok:
            self._failures.clear()
            if self.is_open:
                self._opened_at = None
                return Transition.CLOSED
            return None

        if self.is_open:
            if probe:
                self._schedule_probe(now)
            return None
        if not self.enabled:
            return None

        self._failures.append(now)
        while self._failures and self._failures[0] < now - self.window_s:
            self._failures.popleft()
        if len(self._failures) < self.failure_threshold:
            return None

        self._failures.clear()
        self._opened_at = now
        self._schedule_probe(now)
        return Transition.OPENED

    def abandon_probe(self) -> None:
        """Release a probe that ended without a result, as a cancelled one, so another may start."""
        self._probe_in_flight = False

    def _schedule_probe(self, now: float) -> None:
        spread = self._rng.uniform(1 - self._jitter, 1 + self._jitter)
        self._next_probe_at = now + self.probe_interval_s * spread
