"""Prometheus metrics: RPC metrics under the names gRPC dashboards use, and chainrule's own.

Every metric is created against the injected `CollectorRegistry`. RPC metrics follow
go-grpc-prometheus / py-grpc-prometheus (`grpc_server_started_total`, `grpc_server_handled_total`,
`grpc_server_handling_seconds`). Only prometheus-client's own metric types are used, so the
figures stay right in its multiprocess mode (`chainrule serve --workers N`), where gauges say how
they combine across server processes.

What every call counts (RPCs started, ended OK, in flight; cache hits and misses) the event loop
adds up in plain ints, and they are published into their series when the registry is collected
(a scrape, `get_sample_value`) and every `PUBLISH_SECONDS` (multiprocess mode collects the other
processes' files, which are at most that old): these were five Prometheus updates a call, each
behind a lock, and without the RPC metrics a cached Differentiate served 8% more calls a second
(bench/PROFILE.md, ninth profile).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, multiprocess, values
from prometheus_client.metrics_core import Metric

from chainrule.engine.errors import LimitExceeded
from chainrule.server.cache import Caches, CacheStats, LruCache
from chainrule.server.compute.executors import Admission, CallLimit
from chainrule.server.compute.pool import REPLACEMENT_REASONS, ProcessExecutor
from chainrule.server.config import limit_settings

RPC_LABELS = ("grpc_type", "grpc_service", "grpc_method")
STAGES = ("parse", "differentiate", "simplify", "compile", "evaluate")
# Sub-millisecond buckets too: a cached call takes tens of microseconds.
LATENCY_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
# How old the counts in multiprocess mode's files may be (see the module's docstring).
PUBLISH_SECONDS = 1.0


class Metrics:
    """chainrule's metrics, all registered on one registry."""

    def __init__(self, registry: CollectorRegistry, version: str, caches: Caches | None = None) -> None:
        self.registry = registry
        self._counts: list[Callable[[], None]] = []
        self._publishing = threading.Lock()
        # Before every metric: a registry collects in the order its collectors came.
        registry.register(_Publisher(self.publish))
        self.started = Counter(
            "grpc_server_started", "RPCs started on the server.", RPC_LABELS, registry=registry
        )
        self.handled = Counter(
            "grpc_server_handled",
            "RPCs completed on the server, regardless of success or failure.",
            (*RPC_LABELS, "grpc_code"),
            registry=registry,
        )
        self.handling_seconds = Histogram(
            "grpc_server_handling_seconds",
            "Response latency of RPCs handled by the server.",
            RPC_LABELS,
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.stage_seconds = Histogram(
            "chainrule_stage_seconds",
            "Time spent in each stage of engine work (cache misses only).",
            ("stage",),
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self._stages = {stage: self.stage_seconds.labels(stage) for stage in STAGES}
        self.in_flight = Gauge(
            "chainrule_requests_in_flight",
            "Requests being served right now.",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.points = Counter(
            "chainrule_points", "Points evaluated by Evaluate and GradientAtPoint.", registry=registry
        )
        self.verify_mismatches = Counter(
            "chainrule_verify_mismatches",
            "Differentiate self-checks (verify) whose numeric derivative disagreed with the symbolic one.",
            registry=registry,
        )
        self.explain_mismatches = Counter(
            "chainrule_explain_mismatches",
            "Explanations whose last step did not equal the returned derivative (answered INTERNAL).",
            registry=registry,
        )
        self.overload_rejections = Counter(
            "chainrule_overload_rejections",
            "Calls refused with RESOURCE_EXHAUSTED because the server was busy, by queue (symbolic, "
            "numeric, parse, calls, http: an HTTP request's turn among its address's) and cause "
            "(overloaded: it was full; caller_share: the caller held the largest share of it).",
            ("queue", "cause"),
            registry=registry,
        )
        self.limit_rejections = Counter(
            "chainrule_limit_rejections",
            "Requests refused with LIMIT_EXCEEDED, by limit.",
            ("limit",),
            registry=registry,
        )
        for _, declared in limit_settings():  # every declared limit, exported at 0 from start-up
            self.limit_rejections.labels(declared.name)
        self.worker_replacements = Counter(
            "chainrule_symbolic_worker_replacements",
            "Symbolic worker processes killed or lost and replaced, by pool (symbolic, parse) and reason "
            "(overrun: past the budget; abandoned: still computing past a grace after its caller "
            "stopped waiting; died: killed from outside or crashed; out_of_memory: past its limit).",
            ("pool", "reason"),
            registry=registry,
        )
        self.refused_reply_bytes = Counter(
            "chainrule_refused_reply_bytes",
            "Bytes of the replies refused before computing for exceeding response_bytes.",
            registry=registry,
        )
        build_info = Gauge(
            "chainrule_build_info",
            "The running chainrule version (always 1).",
            ("version",),
            registry=registry,
            multiprocess_mode="max",
        )
        build_info.labels(version).set(1)
        self._cache_metrics(registry)
        for cache in caches or ():
            self.watch(cache)

    def _cache_metrics(self, registry: CollectorRegistry) -> None:
        labels = ("cache",)
        self.cache_hits = Counter(
            "chainrule_cache_hits", "Cache lookups answered.", labels, registry=registry
        )
        self.cache_misses = Counter(
            "chainrule_cache_misses", "Cache lookups that computed.", labels, registry=registry
        )
        self.cache_evictions = Counter(
            "chainrule_cache_evictions", "Entries evicted to stay within bounds.", labels, registry=registry
        )
        # Summed over the live server processes in multiprocess mode (each has its own caches).
        self.cache_entries = Gauge(
            "chainrule_cache_entries", "Entries held.", labels, registry=registry, multiprocess_mode="livesum"
        )
        self.cache_bytes = Gauge(
            "chainrule_cache_bytes",
            "Approximate bytes held.",
            labels,
            registry=registry,
            multiprocess_mode="livesum",
        )

    def watch(self, cache: LruCache[Any, Any]) -> None:
        """Report `cache`'s hits, misses, evictions, entries and bytes from now on."""
        stats = _ReportedStats(self, cache.name)
        cache.stats = stats
        stats.resized(len(cache), cache.bytes)
        self.defer(stats.publish)

    def defer(self, publish: Callable[[], None]) -> None:
        """Call `publish` whenever counts are published: it adds to their series what the event loop
        counted since (it is called under a lock, from whichever thread collects)."""
        self._counts.append(publish)

    def publish(self) -> None:
        """Add every deferred count to its series (see the module's docstring)."""
        with self._publishing:
            for publish in self._counts:
                publish()

    async def publish_every(self, seconds: float = PUBLISH_SECONDS) -> None:
        """Publish every `seconds` until cancelled (multiprocess mode: the other processes' scrapes
        read this one's files)."""
        while True:
            await asyncio.sleep(seconds)
            self.publish()

    def watch_admission(self, admission: Admission | CallLimit) -> None:
        """Count `admission`'s refusals from now on, by cause (each exported at 0 from now on, so
        that a rate or an alert sees the first refusal)."""
        queue = admission.name
        for cause in admission.causes:
            self.overload_rejections.labels(queue, cause)
        admission.on_rejected = lambda cause: self.overload_rejections.labels(queue, cause).inc()

    def watch_pool(self, pool: ProcessExecutor) -> None:
        """Count `pool`'s worker replacements from now on, by reason (each exported at 0 from now on)."""
        for reason in REPLACEMENT_REASONS:
            self.worker_replacements.labels(pool.name, reason)
        pool.on_replaced = lambda reason: self.worker_replacements.labels(pool.name, reason).inc()

    def limit_exceeded(self, error: LimitExceeded) -> None:
        """Count a request refused for a limit (and the bytes of a reply refused for its size)."""
        limit = error.metadata.get("limit", "")
        self.limit_rejections.labels(limit).inc()
        if limit == "response_bytes":
            self.refused_reply_bytes.inc(int(error.metadata.get("value", "0")))

    def observe_stage(self, stage: str, seconds: float) -> None:
        """Record the duration of one stage of engine work."""
        self._stages[stage].observe(seconds)

    def add_points(self, count: int) -> None:
        self.points.inc(count)


class _ReportedStats(CacheStats):
    """Cache stats that also update the Prometheus series of one cache: its sizes at once, its counts
    when published (`Metrics.defer`)."""

    def __init__(self, metrics: Metrics, name: str) -> None:
        super().__init__()
        self._hits = metrics.cache_hits.labels(name)
        self._misses = metrics.cache_misses.labels(name)
        self._evictions = metrics.cache_evictions.labels(name)
        self._entries = metrics.cache_entries.labels(name)
        self._bytes = metrics.cache_bytes.labels(name)
        self._published: tuple[int, ...] = (0, 0, 0)

    def resized(self, entries: int, size: int) -> None:
        self._entries.set(entries)
        self._bytes.set(size)

    def publish(self) -> None:
        series = (self._hits, self._misses, self._evictions)
        self._published = _add_since(series, (self.hits, self.misses, self.evictions), self._published)


class CallCounts:
    """The calls of one RPC method that started, and that ended (OK, and in all), counted by the event
    loop; published into `started`, `ok` and the `in_flight` gauge (`Metrics.defer`)."""

    __slots__ = ("_in_flight", "_ok", "_published", "_started", "ended", "ok", "started")

    def __init__(self, metrics: Metrics, started: Any, ok: Any) -> None:
        self.started = self.ok = self.ended = 0
        self._started, self._ok, self._in_flight = started, ok, metrics.in_flight
        self._published: tuple[int, ...] = (0, 0, 0)
        metrics.defer(self.publish)

    def publish(self) -> None:
        # In flight is started less ended: its changes are published as the counters' are.
        series = (self._started, self._ok, self._in_flight)
        counts = (self.started, self.ok, self.started - self.ended)
        self._published = _add_since(series, counts, self._published)


def _add_since(
    series: tuple[Any, ...], counts: tuple[int, ...], published: tuple[int, ...]
) -> tuple[int, ...]:
    """Add to each series what its count gained since `published`; the counts, to publish from next."""
    for each, count, before in zip(series, counts, published, strict=True):
        if count != before:
            each.inc(count - before)
    return counts


class _Publisher:
    """A collector with no metrics of its own that publishes the deferred counts when collected."""

    def __init__(self, publish: Callable[[], None]) -> None:
        self._publish = publish

    def collect(self) -> Iterator[Metric]:
        self._publish()
        return iter(())


_HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class HttpMetrics:
    """HTTP request counts and latency by method, route template and status (REST middleware)."""

    def __init__(self, registry: CollectorRegistry, close_reasons: Iterable[str] = ()) -> None:
        """`close_reasons`: the connection bounds' reasons, exported at 0 from the start so that a
        rate or an alert sees the first connection a bound closes."""
        self.requests = Counter(
            "chainrule_http_requests",
            "HTTP requests answered, by method, route template and status.",
            ("method", "route", "status"),
            registry=registry,
        )
        self.seconds = Histogram(
            "chainrule_http_request_seconds",
            "HTTP request latency by method and route template.",
            ("method", "route"),
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.connections_closed = Counter(
            "chainrule_http_connections_closed",
            "HTTP connections closed by a bound: limit, evicted (idle, at the limit), head_timeout.",
            ("reason",),
            registry=registry,
        )
        for reason in close_reasons:
            self.connections_closed.labels(reason)
        self.requests_queued = Counter(
            "chainrule_http_requests_queued",
            "HTTP requests that waited, their connection unread, because their caller had "
            "MAX_HTTP_REQUESTS_PER_CALLER requests in progress.",
            registry=registry,
        )

    def closed_by_bound(self, reason: str) -> None:
        """Count one connection closed by a bound (see transport/connections.py)."""
        self.connections_closed.labels(reason).inc()

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        """Record one request; unknown methods count as OTHER so labels stay few."""
        method = method if method in _HTTP_METHODS else "OTHER"
        self.requests.labels(method, route, str(status)).inc()
        self.seconds.labels(method, route).observe(seconds)


def exposition_registry(metrics: Metrics, metrics_dir: str) -> CollectorRegistry:
    """The registry `/metrics` should serve: in multiprocess mode, one that sums every process's files
    (this process's counts published first).

    Metrics are still created against `metrics.registry`; in multiprocess mode their values live in
    `metrics_dir`, and collecting that registry itself would report only this server process.
    """
    if not metrics_dir or not getattr(values.ValueClass, "_multiprocess", False):
        return metrics.registry
    collected = CollectorRegistry()
    collected.register(_Publisher(metrics.publish))
    multiprocess.MultiProcessCollector(collected, path=metrics_dir)  # type: ignore[no-untyped-call]
    return collected
