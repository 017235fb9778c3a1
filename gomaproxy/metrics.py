"""Prometheus metrics of the adapter and its limiters.

Metric objects live on one ``ExecMetrics`` per registry, so tests can build their own
registry and read values without touching the process-wide default.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import anyio
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

# Seconds; spans a 1 ms cache check to a 15 min compile.
PHASE_BUCKETS = (
    0.001,
    0.002,
    0.005,
    0.01,
    0.02,
    0.05,
    0.1,
    0.2,
    0.5,
    1.0,
    2.0,
    5.0,
    10.0,
    20.0,
    50.0,
    100.0,
    200.0,
    500.0,
    1000.0,
)


class ExecMetrics:
    """Counters and histograms of Exec requests."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.phase_seconds = Histogram(
            "gomaproxy_exec_phase_seconds",
            "Duration of each Exec phase in seconds.",
            ["phase"],
            buckets=PHASE_BUCKETS,
            registry=registry,
        )
        self.requests = Counter(
            "gomaproxy_exec_requests_total",
            "Exec requests by outcome: ok, bad_request, missing_inputs, internal, error.",
            ["outcome"],
            registry=registry,
        )
        self.cache = Counter(
            "gomaproxy_exec_cache_total",
            "Exec requests that ran an action, by cache source of the result.",
            ["source"],
            registry=registry,
        )
        self.client_retry = Counter(
            "gomaproxy_exec_client_retry_total",
            "Exec requests by the goma client's retry counter.",
            ["retry"],
            registry=registry,
        )
        self.merged = Counter(
            "gomaproxy_exec_merged_total",
            "Exec requests that took the ActionResult or error of an identical request "
            "in flight instead of running the action.",
            registry=registry,
        )
        self.missing_inputs = Counter(
            "gomaproxy_exec_missing_inputs_total",
            "Inputs reported back to goma clients as missing.",
            registry=registry,
        )


class LimiterCollector(Collector):
    """Exports the borrowed and total tokens of named capacity limiters."""

    def __init__(self, limiters: Mapping[str, anyio.CapacityLimiter]) -> None:
        self._limiters = dict(limiters)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        borrowed = GaugeMetricFamily(
            "gomaproxy_limiter_borrowed_tokens", "Tokens in use per limiter.", labels=["limiter"]
        )
        total = GaugeMetricFamily(
            "gomaproxy_limiter_total_tokens", "Capacity per limiter.", labels=["limiter"]
        )
        waiting = GaugeMetricFamily(
            "gomaproxy_limiter_waiting_tasks", "Tasks waiting per limiter.", labels=["limiter"]
        )
        for name, limiter in self._limiters.items():
            stats = limiter.statistics()
            borrowed.add_metric([name], stats.borrowed_tokens)
            total.add_metric([name], stats.total_tokens)
            waiting.add_metric([name], stats.tasks_waiting)
        yield borrowed
        yield total
        yield waiting
