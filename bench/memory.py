"""Scenario 7: resident memory after a stream of distinct expressions vs the configured cache bound.

A fresh `chainrule serve --workers 1` receives `count` distinct Differentiate requests (a few in
flight). Its RSS (the server process; the symbolic worker processes apart) is sampled at the start,
halfway and at the end; the growth is compared with the byte bound of the caches Differentiate
fills (request, parse and derivative caches: 3 x CHAINRULE_CACHE_BYTES), and the second half's
growth shows whether memory is flat once the caches are full and evicting.
"""

from __future__ import annotations

import asyncio

import grpc
import harness
from common import Row, chainrule_command, descendants, rss_bytes, server_env

from chainrule.v1 import chainrule_pb2 as pb
from chainrule.v1 import chainrule_pb2_grpc as pb_grpc

IN_FLIGHT = 8
FILLED_CACHES = ("differentiate", "parse", "derivative")


async def send(port: int, first: int, last: int) -> None:
    """Distinct cheap expressions first..last-1, IN_FLIGHT at a time."""
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as opened:
        stub = pb_grpc.DifferentiationServiceStub(opened)
        queue = iter(range(first, last))

        async def lane() -> None:
            for k in queue:
                text = f"sin({k}*x) + x^2/{k + 1}"
                await stub.Differentiate(pb.DifferentiateRequest(expression=text), timeout=60)

        await asyncio.gather(*(lane() for _ in range(IN_FLIGHT)))


def cache_figures(http_port: int) -> tuple[float, float, float]:
    """Entries, estimated bytes and evictions of the caches Differentiate fills."""
    samples = harness.scrape(http_port)

    def total(metric: str) -> float:
        return sum(samples.get((metric, (("cache", name),)), 0.0) for name in FILLED_CACHES)

    return (
        total("chainrule_cache_entries"),
        total("chainrule_cache_bytes"),
        total("chainrule_cache_evictions_total"),
    )


def run(count: int, cache_entries: int, cache_bytes: int) -> tuple[list[Row], dict[str, object]]:
    """Rows of scenario 7."""
    env = server_env(cache_entries=str(cache_entries), cache_bytes=str(cache_bytes))
    with harness.running(chainrule_command(), env) as (process, ports):
        asyncio.run(send(ports["grpc_port"], 0, 50))  # imports and first-use allocations
        start = rss_bytes(process.pid)
        asyncio.run(send(ports["grpc_port"], 50, count // 2))
        half = rss_bytes(process.pid)
        asyncio.run(send(ports["grpc_port"], count // 2, count))
        end = rss_bytes(process.pid)
        workers = [rss_bytes(pid) for pid in descendants(process.pid)]
        entries, size, evicted = cache_figures(ports["http_port"])
    bound = len(FILLED_CACHES) * cache_bytes
    mb = 1 / 2**20
    note = (
        f"RSS {start * mb:.0f} → {half * mb:.0f} → {end * mb:.0f} MB; caches hold {entries:.0f} entries, "
        f"~{size * mb:.0f} MB by their estimate, {evicted:.0f} evicted; cache_entries={cache_entries}; "
        f"helper processes (forkserver, workers) {', '.join(f'{w * mb:.0f}' for w in workers)} MB"
    )
    rows = [
        Row("7 memory", f"server RSS growth after {count:,} distinct expressions vs cache byte bound",
            (end - start) * mb, bound * mb, "MB", 1.0, note=note),
        Row("7 memory", "RSS growth over the second half vs RSS at half (flat once caches are full)",
            (end - half) * mb, half * mb, "MB", 0.1),
    ]  # fmt: skip
    details = {"rss_start": start, "rss_half": half, "rss_end": end, "workers_rss": workers,
               "cache_entries": entries, "cache_bytes_estimate": size, "evictions": evicted}  # fmt: skip
    return rows, details
