"""What the server measures: Prometheus metrics, and one log line per request."""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Iterator, Sequence

import prometheus_client as prom
from prometheus_client.core import CounterMetricFamily
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .._lifecycles import LIFECYCLES, WEBHOOK_TYPES, Outcome
from .._records import FeedResult, Overdue, Reconciled
from ._protocol import CLOSED

__all__ = ["AccessLog", "Metrics"]

log = logging.getLogger("lifecycle.http")


_METHODS = frozenset(
    ("GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH")
)


class Metrics:
    """The server's metrics, in a registry of its own (one per app)."""

    def __init__(self) -> None:
        self.registry = prom.CollectorRegistry()
        self.webhooks = prom.Counter(
            "lifecycle_webhooks",
            "Webhooks fed, by type and outcome.",
            ["webhook_type", "outcome"],
            registry=self.registry,
        )
        self.refused = prom.Counter(
            "lifecycle_webhooks_refused",
            "Webhooks answered without being fed, by reason.",
            ["reason"],
            registry=self.registry,
        )
        self.resources = prom.Gauge(
            "lifecycle_resources",
            "Tracked resources, by lifecycle and state.",
            ["lifecycle", "state"],
            registry=self.registry,
        )
        self.client_aborts = prom.Counter(
            "lifecycle_client_aborts",
            "Requests whose client went away before the request was read.",
            registry=self.registry,
        )
        self.overdue = prom.Gauge(
            "lifecycle_overdue_resources",
            "Resources past their deadline now, by lifecycle and state.",
            ["lifecycle", "state"],
            registry=self.registry,
        )
        self.flagged_total = prom.Counter(
            "lifecycle_overdue_flagged",
            "Visits to a state that a sweep flagged overdue, by lifecycle and state.",
            ["lifecycle", "state"],
            registry=self.registry,
        )
        self.reconciled_total = prom.Counter(
            "lifecycle_reconciled",
            "Overdue resources the provider's API was asked about, by lifecycle and "
            "whether the answer implied a webhook.",
            ["lifecycle", "implied"],
            registry=self.registry,
        )
        self.deliveries = prom.Counter(
            "lifecycle_forward_deliveries",
            "Attempts to forward a change, by endpoint and result: delivered, error (to be "
            "retried), failed (given up on).",
            ["endpoint", "result"],
            registry=self.registry,
        )
        self.lag = prom.Gauge(
            "lifecycle_forward_lag_seconds",
            "How long the oldest change not yet forwarded to an endpoint has waited (0: "
            "none waits).",
            ["endpoint"],
            registry=self.registry,
        )
        self.registry.register(_Shed())
        self.latency = prom.Histogram(
            "lifecycle_request_duration_seconds",
            "Time to answer a request, by route.",
            ["method", "route", "status"],
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
        )
        for name, lc in LIFECYCLES.items():  # every series exists from the start
            for state in lc.states:
                self.resources.labels(name, state)
        self._fed: dict[tuple[str, Outcome], prom.Counter] = {}
        self._took: dict[tuple[str, str, int], prom.Histogram] = {}

    def delivery(self, endpoint: str, result: str) -> None:
        """Count one attempt to forward a change."""
        self.deliveries.labels(endpoint, result).inc()

    def forward_lag(self, endpoint: str, oldest: float | None) -> None:
        """Set an endpoint's lag from the time of its oldest change not yet sent."""
        self.lag.labels(endpoint).set(0.0 if oldest is None else max(0.0, time.time() - oldest))

    def flagged(self, entry: FeedResult) -> None:
        """Count one ``overdue`` entry of a sweep."""
        self.flagged_total.labels(entry.lifecycle, entry.before).inc()

    def reconciled(self, item: Reconciled) -> None:
        """Count one answer of the provider's API."""
        implied = "true" if item.answer.webhook is not None else "false"
        self.reconciled_total.labels(item.overdue.status.lifecycle, implied).inc()

    def fed(self, result: FeedResult) -> None:
        """Count one fed webhook (``other`` for a type that is not known)."""
        labels = (
            result.webhook_type if result.webhook_type in WEBHOOK_TYPES else "other",
            result.outcome,
        )
        counter = self._fed.get(labels)
        if counter is None:  # labels() costs more than the count: keep each series
            counter = self._fed[labels] = self.webhooks.labels(labels[0], labels[1].value)
        counter.inc()

    def took(self, method: str, route: str, status: int, seconds: float) -> None:
        """Record how long a request took (``other`` for a method HTTP does not define)."""
        labels = (method if method in _METHODS else "other", route, status)
        histogram = self._took.get(labels)
        if histogram is None:
            histogram = self._took[labels] = self.latency.labels(labels[0], route, str(status))
        histogram.observe(seconds)

    def set_resources(self, counts: dict[str, dict[str, int]]) -> None:
        """Set the resource gauges from ``Engine.state_counts()`` (absent states are 0)."""
        for name, lc in LIFECYCLES.items():
            for state in lc.states:
                self.resources.labels(name, state).set(counts.get(name, {}).get(state, 0))

    def set_overdue(self, overdue: Sequence[Overdue]) -> None:
        """Set the overdue gauges from ``Engine.overdue()`` (every other series 0)."""
        counts = Counter((o.status.lifecycle, o.status.state) for o in overdue)
        for name, lc in LIFECYCLES.items():
            for state in lc.states:
                if state not in lc.final_states:
                    self.overdue.labels(name, state).set(counts.get((name, state), 0))

    def text(self) -> bytes:
        """The metrics in the Prometheus text format."""
        return prom.generate_latest(self.registry)


class _Shed(prom.registry.Collector):
    """What ``lifecycle serve``'s limits answered, counted by its protocol."""

    def collect(self) -> Iterator[prom.Metric]:
        family = CounterMetricFamily(
            "lifecycle_shed",
            "Requests and connections answered by lifecycle serve's limits, without the app.",
            labels=["reason"],
        )
        for reason, count in sorted(CLOSED.items()):
            family.add_metric([reason], count)
        yield family


class AccessLog:
    """ASGI middleware: one structured log line and one latency sample per request."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            elapsed = time.perf_counter() - start
            path = getattr(scope.get("route"), "path", "unmatched")
            self.metrics.took(scope["method"], path, status, elapsed)
            if log.isEnabledFor(logging.INFO):
                extra = {
                    "method": scope["method"],
                    "path": scope["path"],
                    "status": status,
                    "ms": round(elapsed * 1000, 2),
                }
                outcome = scope.get("state", {}).get("outcome")
                if outcome is not None:
                    extra["outcome"] = outcome
                log.info("request", extra={"fields": extra})
