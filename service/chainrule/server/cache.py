"""Bounded LRU caches with single flight: repeated work (parse, derive, print, compile) is done once.

Two levels of keys. The first-level caches (`differentiate`, `evaluate`, `gradient`, `jacobian`,
`series`, `parse_reply`) are keyed by the raw request text plus the options that change the answer,
so a repeated request costs a dictionary lookup and touches neither the parser nor sympy (over gRPC,
where a short request's serialised reply is kept by the request's bytes too, as an entry of its own
in the same cache: `grpc_server._REQUEST_BYTES`, no parse and no serialisation). Below them,
the `parse` cache maps text to a parsed expression and its canonical key (a digest of
`engine.canonical_key`, an srepr), and the `derivative`, `latex` and `compiled` caches are keyed by
that canonical key, so `x^2`, `x**2` and `x ^ 2` share one derivative and one compiled function.

Every cache is bounded by entries and by approximate bytes (sizes are estimates the caller gives;
they bound memory to within a small factor, not exactly), evicting the least recently used entry.
The caches are used from the event loop only: no locks, and single flight is an asyncio future.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import sys
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable, Iterator
from typing import Any, Generic, TypeVar

from chainrule.engine.errors import DeadlineExceeded
from chainrule.server.config import Settings

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

# What an entry costs beyond its own payload: the dict slot, the key tuple, the entry tuple.
ENTRY_OVERHEAD = 200
# How many times a caller joins computations that other callers' deadlines end before it computes
# for itself (each rejoin needs another caller whose deadline ends first: bounded anyway).
_REJOINS = 3


class CacheStats:
    """Counts a cache's lookups; `metrics.py` installs a subclass that also reports to Prometheus."""

    def __init__(self) -> None:
        self.hits = 0
        self.misses = 0
        self.evictions = 0

    def hit(self) -> None:
        self.hits += 1

    def miss(self) -> None:
        self.misses += 1

    def evicted(self) -> None:
        self.evictions += 1

    def resized(self, entries: int, size: int) -> None:
        """The cache now holds `entries` entries of about `size` bytes."""


class LruCache(Generic[K, V]):
    """A least-recently-used map bounded by `max_entries` and by `max_bytes` of estimated size.

    `max_entries=0` turns storing off (single flight still coalesces concurrent misses). A value
    estimated larger than `max_bytes` is returned to its caller but not kept.
    """

    def __init__(self, name: str, max_entries: int, max_bytes: int) -> None:
        self.name = name
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.stats = CacheStats()
        self.bytes = 0
        self._data: OrderedDict[K, tuple[V, int]] = OrderedDict()
        self._pending: dict[K, asyncio.Future[V]] = {}
        self._waiting: dict[asyncio.Future[V], int] = {}  # callers awaiting each pending computation

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def lookup(self, key: K) -> V | None:
        """The cached value (counted as a hit, marked recently used), or None without counting."""
        entry = self._data.get(key)
        if entry is None:
            return None
        self._data.move_to_end(key)
        self.stats.hit()
        return entry[0]

    def put(self, key: K, value: V, size: int) -> None:
        """Store `value` with its estimated `size` in bytes (the key's are added), evicting the oldest
        entries to fit."""
        size += ENTRY_OVERHEAD + key_bytes(key)
        if self.max_entries <= 0 or size > self.max_bytes:
            return
        old = self._data.pop(key, None)
        if old is not None:
            self.bytes -= old[1]
        self._data[key] = (value, size)
        self.bytes += size
        while len(self._data) > self.max_entries or self.bytes > self.max_bytes:
            _, (_, evicted) = self._data.popitem(last=False)
            self.bytes -= evicted
            self.stats.evicted()
        self.stats.resized(len(self._data), self.bytes)

    async def get_or_compute(self, key: K, compute: Callable[[], Awaitable[tuple[V, int]]]) -> V:
        """The cached value, or `compute()`'s (value, size), computed once for concurrent callers.

        A caller that joins a computation already running counts as a hit. Exceptions reach every
        caller waiting on that computation and are not stored, except the deadline of the caller
        that started it (the computation runs under that caller's budget): a caller that joined
        starts its own then, under its own, rather than fail for another's deadline. A cancelled
        caller does not cancel the computation the others wait for; when the last caller waiting is
        cancelled, the computation is cancelled too (so a symbolic worker computing it is freed).
        """
        for joins in itertools.count(1):
            found = self.lookup(key)
            if found is not None:
                return found
            pending = self._pending.get(key)
            joined = pending is not None
            if pending is not None:
                self.stats.hit()
            else:
                self.stats.miss()
                pending = asyncio.ensure_future(self._fill(key, compute))
                self._pending[key] = pending
                pending.add_done_callback(lambda _: self._pending.pop(key, None))
            self._waiting[pending] = self._waiting.get(pending, 0) + 1
            try:
                return await asyncio.shield(pending)
            except DeadlineExceeded:
                if not joined or joins > _REJOINS:
                    raise
            except asyncio.CancelledError:
                if self._waiting[pending] == 1:
                    pending.cancel()
                raise
            finally:
                self._waiting[pending] -= 1
                if not self._waiting[pending]:
                    del self._waiting[pending]
                # The computation's error, raised here, holds this frame in its traceback: with the
                # computation in a local, that was a cycle keeping every waiter's frames (their
                # requests) until the cyclic collector ran.
                pending = None
        raise AssertionError("unreachable")  # pragma: no cover

    async def _fill(self, key: K, compute: Callable[[], Awaitable[tuple[V, int]]]) -> V:
        value, size = await compute()
        self.put(key, value, size)
        return value

    def clear(self) -> None:
        self._data.clear()
        self.bytes = 0
        self.stats.resized(0, 0)


class Caches:
    """The caches one server process shares between its transports.

    First level, keyed by raw request fields: `differentiate`, `evaluate`, `gradient`, `jacobian`,
    `series`, `parse_reply`. Second level, keyed by text or canonical key: `parse`, `derivative`,
    `latex`, `compiled`.
    """

    def __init__(self, settings: Settings) -> None:
        entries, size = settings.cache_entries, settings.cache_bytes
        self.differentiate: LruCache[Hashable, Any] = LruCache("differentiate", entries, size)
        self.evaluate: LruCache[Hashable, Any] = LruCache("evaluate", entries, size)
        self.gradient: LruCache[Hashable, Any] = LruCache("gradient", entries, size)
        self.parse_reply: LruCache[Hashable, Any] = LruCache("parse_reply", entries, size)
        self.jacobian: LruCache[Hashable, Any] = LruCache("jacobian", entries, size)
        self.series: LruCache[Hashable, Any] = LruCache("series", entries, size)
        self.parse: LruCache[str | bytes, Any] = LruCache("parse", entries, size)
        self.derivative: LruCache[Hashable, Any] = LruCache("derivative", entries, size)
        self.latex: LruCache[Hashable, str] = LruCache("latex", entries, size)
        self.compiled: LruCache[Hashable, Any] = LruCache(
            "compiled", settings.cache_compiled_entries, settings.cache_compiled_bytes
        )

    def __iter__(self) -> Iterator[LruCache[Any, Any]]:
        return iter(
            (self.differentiate, self.evaluate, self.gradient, self.jacobian, self.series, self.parse_reply,
             self.parse, self.derivative, self.latex, self.compiled)
        )  # fmt: skip


def text_size(*texts: str) -> int:
    """Approximate bytes held by some strings."""
    return sum(sys.getsizeof(text) for text in texts)


# --- keys -----------------------------------------------------------------------------------------
# A key holds what changes an answer, in a few hundred bytes at most: the API layer bounds list
# fields (`field_entries`) and texts (`expression_length`) before it builds one, deduplicates
# repeated enums, and a long text or list enters as its SHA-256 digest.

KEY_BYTES = 256


def text_key(text: str) -> str | bytes:
    """`text` itself when short, else its digest (a str and a bytes key never compare equal)."""
    if len(text) <= KEY_BYTES // 2:
        return text
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()


def bounded(parts: tuple[Any, ...]) -> tuple[Any, ...] | bytes:
    """A tuple of strings, numbers and such tuples as a key: itself when small, else its digest
    (`repr` is exact for these types, so equal digests mean equal parts)."""
    if not parts or _size(parts) <= KEY_BYTES:
        return parts
    return hashlib.sha256(repr(parts).encode("utf-8", "surrogatepass")).digest()


def key_bytes(key: object) -> int:
    """Approximate bytes a key holds (a tuple's items counted, shared small objects too)."""
    if isinstance(key, tuple):
        return sys.getsizeof(key) + sum(key_bytes(item) for item in key)
    return sys.getsizeof(key)


def _size(parts: object) -> int:
    if isinstance(parts, tuple):
        return 8 * len(parts) + sum(_size(part) for part in parts)
    if isinstance(parts, str | bytes):
        return len(parts)
    return 8
