"""Merging of identical Exec requests that are in flight at the same time.

Theory of operation.  Two Exec requests are identical when their action digests are
equal.  The first request for a digest becomes the leader of a ``Flight``: it runs the
cache check, the upload and Execute, then settles the flight with one ``Ending``.
Later requests for the same digest join the flight as waiters and wait for that ending:

- ``RESULT`` and ``ERROR`` are shared, so each waiter converts the ActionResult for its
  own cwd or raises the same error.
- ``HANDOVER`` means the leader stopped without an outcome (its client went away).  The
  waiters join again, so the first of them to do so becomes the new leader.
- ``RUN_ALONE`` means the leader's own inputs were missing.  The waiters embedded their
  own copies of the inputs, so each of them runs the action without merging.

Settling removes the flight from the map before it wakes the waiters, so a request that
arrives later starts a new flight.  Every method is synchronous: no await falls between
reading and writing the map, so no lock is needed.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import final

import anyio

from gomaproxy.digest import DigestKey
from gomaproxy.errors import GomaProxyError
from gomaproxy.protos import remote_execution_pb2 as re_pb2


@dataclass(frozen=True)
class SharedResult:
    """The ActionResult of an action and where it came from."""

    result: re_pb2.ActionResult
    # A goma ExecResp.CacheSource value.
    source: int
    # The ``cache`` field of the exec_finished log line.
    cache: str


class Ending(enum.Enum):
    """The end state of a flight's leader, which tells the waiters what to do next."""

    RESULT = "result"
    ERROR = "error"
    HANDOVER = "handover"
    RUN_ALONE = "run_alone"


@dataclass(eq=False)
class Flight:
    """One action digest that a leader request is running for its waiters."""

    digest: DigestKey
    leader_request_id: str
    settled: anyio.Event = field(default_factory=anyio.Event)
    # Set once, by InflightActions.settle, before ``settled`` is set.
    ending: Ending | None = None
    result: SharedResult | None = None
    error: GomaProxyError | None = None
    waiters: int = 0


@final
class InflightActions:
    """The flights of the action digests that requests are running now."""

    def __init__(self) -> None:
        # Invariant: every flight in the map is unsettled.
        self._flights: dict[DigestKey, Flight] = {}

    def __len__(self) -> int:
        return len(self._flights)

    def get(self, digest: DigestKey) -> Flight | None:
        """Return the unsettled flight of ``digest``, if a request is running it."""
        return self._flights.get(digest)

    def join(self, digest: DigestKey, request_id: str) -> tuple[Flight, bool]:
        """Join the flight of ``digest``, starting one when there is none.

        Returns the flight and True when the caller is its leader.  The leader must call
        ``settle`` on every path, including cancellation.
        """
        flight = self._flights.get(digest)
        if flight is None:
            flight = Flight(digest=digest, leader_request_id=request_id)
            self._flights[digest] = flight
            return flight, True

        flight.waiters += 1
        return flight, False

    def settle(
        self,
        flight: Flight,
        ending: Ending,
        *,
        result: SharedResult | None = None,
        error: GomaProxyError | None = None,
    ) -> None:
        """Record how the leader of ``flight`` ended and wake its waiters.

        Raises:
            ValueError: ``result`` or ``error`` does not match ``ending``, or the flight
                is settled already.
        """
        if flight.ending is not None:
            raise ValueError(f"flight of action {flight.digest} is settled already")
        if (ending is Ending.RESULT) != (result is not None):
            raise ValueError(f"ending {ending.name} needs a result exactly when it is RESULT")
        if (ending is Ending.ERROR) != (error is not None):
            raise ValueError(f"ending {ending.name} needs an error exactly when it is ERROR")

        if self._flights.get(flight.digest) is flight:
            del self._flights[flight.digest]
        flight.ending, flight.result, flight.error = ending, result, error
        flight.settled.set()
