"""The circuit breaker's state machine, driven with explicit times instead of a clock."""

from __future__ import annotations

import random

import pytest

from gomaproxy.errors import BackendError, Code
from gomaproxy.remote.breaker import (
    CircuitBreaker,
    Decision,
    Transition,
    is_transport_failure,
)


def _breaker(threshold: int = 3, window_s: float = 10.0, probe_s: float = 5.0) -> CircuitBreaker:
    return CircuitBreaker(
        failure_threshold=threshold, window_s=window_s, probe_interval_s=probe_s, jitter=0.0
    )


def _fail(breaker: CircuitBreaker, *times: float) -> list[Transition | None]:
    return [breaker.record(now, ok=False) for now in times]


def test_breaker_opens_after_threshold_in_window() -> None:
    """The Nth transport failure within the window opens the breaker, and only it."""
    breaker = _breaker(threshold=3)

    transitions = _fail(breaker, 1.0, 2.0, 3.0)

    assert transitions == [None, None, Transition.OPENED]
    assert breaker.is_open
    assert breaker.opened_at == 3.0
    assert breaker.before_call(3.1) is Decision.REJECT


def test_breaker_closed_allows_calls() -> None:
    """Fewer failures than the threshold leave every call allowed."""
    breaker = _breaker(threshold=3)

    _fail(breaker, 1.0, 2.0)

    assert not breaker.is_open
    assert breaker.before_call(2.5) is Decision.CALL


def test_breaker_ignores_failures_outside_window() -> None:
    """Failures older than the window do not count towards the threshold."""
    breaker = _breaker(threshold=3, window_s=10.0)

    transitions = _fail(breaker, 0.0, 1.0, 11.5, 12.0)

    assert transitions == [None, None, None, None]
    assert not breaker.is_open
    assert _fail(breaker, 13.0) == [Transition.OPENED]


def test_breaker_success_clears_failures() -> None:
    """A call that reaches the server clears the failures recorded before it."""
    breaker = _breaker(threshold=3)

    _fail(breaker, 1.0, 2.0)
    assert breaker.record(2.5, ok=True) is None
    transitions = _fail(breaker, 3.0, 4.0)

    assert transitions == [None, None]
    assert not breaker.is_open


def test_breaker_respects_probe_interval() -> None:
    """While open, no probe is allowed before the interval has passed, then exactly one."""
    breaker = _breaker(threshold=1, probe_s=5.0)
    _fail(breaker, 10.0)

    assert breaker.next_probe_in(12.0) == pytest.approx(3.0)
    assert breaker.before_call(14.9) is Decision.REJECT
    assert breaker.before_call(15.0) is Decision.PROBE
    assert breaker.probe_in_flight
    assert breaker.before_call(15.1) is Decision.REJECT


def test_breaker_failed_probe_schedules_next() -> None:
    """A failed probe keeps the breaker open and allows the next probe one interval later."""
    breaker = _breaker(threshold=1, probe_s=5.0)
    _fail(breaker, 10.0)
    assert breaker.before_call(15.0) is Decision.PROBE

    transition = breaker.record(15.5, ok=False, probe=True)

    assert transition is None
    assert breaker.is_open
    assert not breaker.probe_in_flight
    assert breaker.before_call(20.4) is Decision.REJECT
    assert breaker.before_call(20.5) is Decision.PROBE


def test_breaker_successful_probe_closes() -> None:
    """A probe that reaches the server closes the breaker and allows calls again."""
    breaker = _breaker(threshold=1, probe_s=5.0)
    _fail(breaker, 10.0)
    assert breaker.before_call(15.0) is Decision.PROBE

    transition = breaker.record(15.2, ok=True, probe=True)

    assert transition is Transition.CLOSED
    assert not breaker.is_open
    assert breaker.opened_at is None
    assert breaker.before_call(15.3) is Decision.CALL


def test_breaker_closes_on_late_success() -> None:
    """A call that started before the breaker opened and then succeeds closes it."""
    breaker = _breaker(threshold=1)
    _fail(breaker, 10.0)

    assert breaker.record(11.0, ok=True) is Transition.CLOSED
    assert not breaker.is_open


def test_breaker_reports_each_transition_once() -> None:
    """Failures after the breaker opened report no further transition."""
    breaker = _breaker(threshold=2)

    transitions = _fail(breaker, 1.0, 2.0, 3.0, 4.0, 5.0)

    assert transitions.count(Transition.OPENED) == 1
    assert breaker.opened_at == 2.0


def test_breaker_abandoned_probe_frees_slot() -> None:
    """A probe that ends without a result lets the next call probe at once."""
    breaker = _breaker(threshold=1, probe_s=5.0)
    _fail(breaker, 10.0)
    assert breaker.before_call(15.0) is Decision.PROBE

    breaker.abandon_probe()

    assert breaker.is_open
    assert breaker.before_call(15.1) is Decision.PROBE


def test_breaker_reopens_after_closing() -> None:
    """After closing, a new run of failures opens the breaker again."""
    breaker = _breaker(threshold=2, probe_s=5.0)
    _fail(breaker, 1.0, 2.0)
    breaker.before_call(7.0)
    breaker.record(7.0, ok=True, probe=True)

    transitions = _fail(breaker, 8.0, 9.0)

    assert transitions == [None, Transition.OPENED]
    assert breaker.opened_at == 9.0


def test_breaker_disabled_with_zero_threshold() -> None:
    """A threshold of 0 never opens the breaker, however many calls fail."""
    breaker = _breaker(threshold=0)

    transitions = _fail(breaker, *[float(i) / 10 for i in range(100)])

    assert set(transitions) == {None}
    assert not breaker.enabled
    assert not breaker.is_open
    assert breaker.before_call(10.0) is Decision.CALL


def test_breaker_probe_interval_jittered() -> None:
    """Probe intervals vary within the jitter bounds, so proxies do not probe in step."""
    breaker = CircuitBreaker(
        failure_threshold=1,
        window_s=10.0,
        probe_interval_s=5.0,
        jitter=0.2,
        rng=random.Random(7),
    )
    waits = []
    for start in range(0, 1000, 100):
        breaker.record(float(start), ok=False)
        waits.append(breaker.next_probe_in(float(start)))
        breaker.record(float(start), ok=True)

    assert all(4.0 <= wait <= 6.0 for wait in waits)
    assert len(set(waits)) > 1


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        (Code.UNAVAILABLE, True),
        (Code.DEADLINE_EXCEEDED, True),
        (Code.FAILED_PRECONDITION, False),
        (Code.NOT_FOUND, False),
        (Code.INVALID_ARGUMENT, False),
        (Code.RESOURCE_EXHAUSTED, False),
        (Code.PERMISSION_DENIED, False),
        (Code.INTERNAL, False),
    ],
    ids=lambda value: value.name if isinstance(value, Code) else str(value),
)
def test_is_transport_failure_by_code(code: Code, expected: bool) -> None:
    assert is_transport_failure(BackendError(code, "message")) is expected


def test_breaker_ignores_non_transport_errors() -> None:
    """Errors the server chose to return count as calls that reached it, not failures."""
    breaker = _breaker(threshold=2)
    errors = [
        BackendError(Code.FAILED_PRECONDITION, "missing blobs"),
        BackendError(Code.NOT_FOUND, "action cache miss"),
        BackendError(Code.INVALID_ARGUMENT, "bad digest"),
    ]

    transitions = [
        breaker.record(float(i), ok=not is_transport_failure(error))
        for i, error in enumerate(errors * 3)
    ]

    assert set(transitions) == {None}
    assert not breaker.is_open


def test_breaker_rejects_negative_settings() -> None:
    with pytest.raises(ValueError, match="must not be negative"):
        CircuitBreaker(failure_threshold=-1, window_s=10.0, probe_interval_s=5.0)
