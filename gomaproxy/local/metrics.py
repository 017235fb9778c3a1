"""Prometheus metrics of the local backend, one set per registry."""

from __future__ import annotations

import weakref

from prometheus_client import CollectorRegistry, Counter, Gauge


class LocalBackendMetrics:
    """Prometheus metrics of the local backend, registered on one registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.actions_executed = Counter(
            "gomaproxy_local_actions_executed_total",
            "Actions run by the local backend, by exit: 0, nonzero or timeout.",
            ["exit"],
            registry=registry,
        )
        self.action_cache_hits = Counter(
            "gomaproxy_local_action_cache_hits_total",
            "Action cache lookups of the local backend that returned a result, counting "
            "GetActionResult calls and the lookup Execute makes unless told to skip it.",
            registry=registry,
        )
        self.action_cache_misses = Counter(
            "gomaproxy_local_action_cache_misses_total",
            "Action cache lookups of the local backend that found no usable result, counting "
            "GetActionResult calls and the lookup Execute makes unless told to skip it, so "
            "one executed compile usually counts two misses.",
            registry=registry,
        )
        self.cas_bytes = Gauge(
            "gomaproxy_local_cas_bytes",
            "Bytes of blobs held by the local CAS.",
            registry=registry,
        )


_metrics_by_registry: weakref.WeakKeyDictionary[CollectorRegistry, LocalBackendMetrics] = (
    weakref.WeakKeyDictionary()
)


def metrics_for(registry: CollectorRegistry) -> LocalBackendMetrics:
    """Return the local backend metrics of ``registry``, registering them on first use."""
    metrics = _metrics_by_registry.get(registry)
    if metrics is None:
        metrics = LocalBackendMetrics(registry)
        _metrics_by_registry[registry] = metrics
    return metrics
