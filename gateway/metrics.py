"""Prometheus metrics of one gateway process, on its own registry (served at ``/metrics``).

    truce_requests_total{model,version,protocol,code}        every inference request's outcome
    truce_request_duration_seconds{model,protocol}           total time in the gateway
    truce_queue_duration_seconds{model,version}              waiting for a model instance
    truce_compute_duration_seconds{model,version}            one forward pass (per batch)
    truce_batch_size{model,version}                          rows per forward pass
    truce_queue_depth{model,version}                         requests waiting now
    truce_model_state{model,version,state}                   1 for the current state, else 0

The hot path uses pre-bound children (``VersionMetrics``) and a small cache of counter
children, so recording a request costs a few dictionary lookups and lock round trips.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

LATENCY_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
)  # fmt: skip
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)
STATES = ("LOADING", "READY", "FAILED", "UNLOADING")


@dataclass(frozen=True)
class VersionMetrics:
    """The metric children of one served version, bound once when it is loaded."""

    queue_seconds: Histogram
    compute_seconds: Histogram
    batch_size: Histogram
    queue_depth: Gauge


class Metrics:
    """Every metric of the gateway; one instance per process (tests make their own)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self._requests = Counter(
            "truce_requests",
            "Inference requests by model, version, protocol and outcome code",
            ["model", "version", "protocol", "code"],
            registry=r,
        )
        self._request_seconds = Histogram(
            "truce_request_duration_seconds",
            "Total time of an inference request inside the gateway",
            ["model", "protocol"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self._queue_seconds = Histogram(
            "truce_queue_duration_seconds",
            "Time a request waited for a model instance",
            ["model", "version"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self._compute_seconds = Histogram(
            "truce_compute_duration_seconds",
            "Time of one forward pass (one batch)",
            ["model", "version"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self._batch_size = Histogram(
            "truce_batch_size",
            "Rows per forward pass",
            ["model", "version"],
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self._queue_depth = Gauge(
            "truce_queue_depth", "Requests waiting for a model instance", ["model", "version"],
            registry=r,
        )  # fmt: skip
        self._state = Gauge(
            "truce_model_state",
            "1 for the current state of a model version, 0 for the others",
            ["model", "version", "state"],
            registry=r,
        )
        self._request_children: dict[tuple[str, str, str, str], Counter] = {}
        self._duration_children: dict[tuple[str, str], Histogram] = {}

    def version(self, model: str, version: int) -> VersionMetrics:
        """The pre-bound children for one version."""
        v = str(version)
        return VersionMetrics(
            self._queue_seconds.labels(model, v),
            self._compute_seconds.labels(model, v),
            self._batch_size.labels(model, v),
            self._queue_depth.labels(model, v),
        )

    def set_state(self, model: str, version: int, state: str) -> None:
        v = str(version)
        for s in STATES:
            self._state.labels(model, v, s).set(1.0 if s == state else 0.0)

    def forget_version(self, model: str, version: int) -> None:
        """Drop the per-version series of an unloaded version."""
        v = str(version)
        for metric in (self._queue_seconds, self._compute_seconds, self._batch_size):
            _remove(metric, model, v)
        _remove(self._queue_depth, model, v)
        for s in STATES:
            _remove(self._state, model, v, s)

    def request(self, model: str, version: str, protocol: str, code: str, seconds: float) -> None:
        """Record one finished inference request (``code`` is ``OK`` or an ErrorCode)."""
        key = (model, version, protocol, code)
        counter = self._request_children.get(key)
        if counter is None:
            if len(self._request_children) > 10_000:  # unknown names in URLs: bounded cache
                self._request_children.clear()
            counter = self._request_children[key] = self._requests.labels(*key)
        counter.inc()
        dkey = (model, protocol)
        hist = self._duration_children.get(dkey)
        if hist is None:
            hist = self._duration_children[dkey] = self._request_seconds.labels(*dkey)
        hist.observe(seconds)

    def render(self) -> tuple[bytes, str]:
        """The exposition text and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


def _remove(metric: Counter | Gauge | Histogram, *labels: str) -> None:
    with contextlib.suppress(KeyError):
        metric.remove(*labels)
