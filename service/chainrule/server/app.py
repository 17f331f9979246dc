"""Wiring: settings -> executors -> API -> servers; start, serve until a signal, drain, stop."""

from __future__ import annotations

import asyncio
import faulthandler
import json
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import NoReturn

import grpc
from prometheus_client import CollectorRegistry
from starlette.middleware import Middleware

from chainrule.server import heartbeat
from chainrule.server.api import PARSE_HOLD_SECONDS, ChainruleApi
from chainrule.server.cache import Caches
from chainrule.server.compute import allocator
from chainrule.server.compute.executors import (
    CALLER_SHARE,
    Admission,
    BoundedExecutor,
    Executor,
    ThreadExecutor,
)
from chainrule.server.compute.pool import ProcessExecutor
from chainrule.server.config import PARSE_SPARES, PARSE_WORKERS, Settings
from chainrule.server.logs import banner, set_trace_source
from chainrule.server.metrics import HttpMetrics, Metrics, exposition_registry
from chainrule.server.tracing import Tracing, configure_tracing
from chainrule.server.transport import access, connections
from chainrule.server.transport.auth import (
    AuthMiddleware,
    Callers,
    TokenChecker,
    load_tokens,
    uvicorn_ssl_options,
)
from chainrule.server.transport.drain import Drain
from chainrule.server.transport.grpc_server import (
    DESCRIPTOR_RESERVE,
    HEALTH_SERVICES,
    ONE_ADDRESS_CONNECTIONS,
    create_server,
    grpc_connection_cap,
    listen_on_port,
)
from chainrule.server.transport.health import SERVING, Health
from chainrule.server.transport.http_server import (
    SERVER_PROCESS_HEADER,
    HttpServer,
    ServerProcessMiddleware,
    bind_socket,
    create_http_app,
)
from chainrule.server.transport.instrumentation import Instrumentation
from chainrule.server.transport.pages import Site
from chainrule.server.transport.receiving import ReceiveSlots
from chainrule.server.transport.streams import OpenStreams
from chainrule.server.version import VERSION

log = logging.getLogger(__name__)

# What closing takes once the drain is over (uvicorn's last second for replies on their way, the
# executors, the process's exit): the drain ends that much before the grace does.
_CLOSING_SECONDS = 1.5
# How long grpc's stop may take once no call is left (it takes milliseconds unless a client keeps its
# transport busy).
_GRPC_STOP_SECONDS = 0.5


class Application:
    """One chainrule server process: the gRPC server and everything it shares."""

    def __init__(
        self,
        settings: Settings,
        registry: CollectorRegistry | None = None,
        *,
        announce: bool = True,
        tracing: Tracing | None = None,
    ) -> None:
        """`announce`: log the start-up banner (a supervisor's workers leave it to the supervisor);
        `tracing`: spans to record (default: what OTEL_TRACES_EXPORTER asks for, usually none)."""
        self.settings = settings
        self._announce = announce
        self.tracing = tracing if tracing is not None else configure_tracing(settings)
        set_trace_source(self.tracing.current_ids if self.tracing is not None else None)
        self.registry = registry or CollectorRegistry()
        self.ready = False
        self.pool, self.symbolic, self.numeric, admissions = _executors(settings)
        self.parsing = _parse_executor(settings)
        # The worker processes to start, watch and count: the symbolic pool's and Parse's.
        self.process_pools = [p for p in (self.pool, self.parsing) if isinstance(p, ProcessExecutor)]
        self.caches = Caches(settings)
        self.metrics = Metrics(self.registry, VERSION, self.caches)
        tokens = TokenChecker(load_tokens(settings))
        callers = Callers(tokens)
        self.api = ChainruleApi(
            settings,
            self.symbolic,
            self.numeric,
            caches=self.caches,
            metrics=self.metrics,
            parsing=self.parsing,
            tracing=self.tracing,
        )
        self.metrics.watch_admission(self.api.calls)
        receiving = ReceiveSlots(
            settings.grpc_receiving_calls,
            settings.calls_in_flight,  # calls that may wait to read (sizing.memory_bound: `receiving`)
            settings.header_timeout_seconds,
            settings.retry_after_seconds,
            callers.of_grpc,
        )
        for admission in (*admissions, self.parsing.admission, receiving.admission):
            self.metrics.watch_admission(admission)
        for pool in self.process_pools:
            self.metrics.watch_pool(pool)
        self.health = Health(HEALTH_SERVICES)
        self.streams = OpenStreams(settings.max_streams, settings.retry_after_seconds, callers.of_grpc)
        self.grpc_server: grpc.aio.Server
        # The server process id travels in the trailers with the request id: initial metadata would
        # cost a batch of its own per call (bench/README.md).
        instrumentation = Instrumentation(
            self.metrics,
            response_metadata=((SERVER_PROCESS_HEADER, str(os.getpid())),),
            tokens=tokens,
            access_log=settings.access_log,
            tracing=self.tracing,
            receiving=receiving,
            streams=self.streams,
        )
        _size_descriptors(settings)
        # On ports shared with other server processes (the supervisor's), listen only once this
        # one can serve: the kernel hands a listening socket its share of new connections at once,
        # and a replacement's share would wait out its start-up (seconds: the workers warm up).
        self._listen_late = late = settings.reuse_port and settings.grpc_port != 0
        self.grpc_server, self.grpc_port = create_server(
            settings, self.api, self.health, instrumentation, callers, listen=not late
        )
        http_metrics = HttpMetrics(self.registry, connections.CLOSE_REASONS)
        self.drain = Drain(settings.retry_after_seconds)
        http_app = create_http_app(
            exposition_registry(self.metrics, settings.metrics_dir),
            lambda: self.ready,
            api=self.api,
            http_metrics=http_metrics,
            callers=callers,
            drain=self.drain,
            site=Site(playground=settings.playground, token_auth=tokens.enabled, grpc_port=self.grpc_port),
        )
        http_app.add_middleware(ServerProcessMiddleware)
        if self.tracing is not None:
            # Outermost, so the access line and everything below run inside the request's span.
            http_app.user_middleware.insert(0, self.tracing.http_middleware())
        if tokens.enabled:
            # Innermost: inside the HTTP metrics (401s are counted) and CORS (401s carry its headers).
            http_app.user_middleware.append(
                Middleware(AuthMiddleware, checker=tokens, metrics_open=not settings.metrics_auth)
            )
        self.http_server = HttpServer(
            http_app,
            bind_socket(settings.host, settings.http_port, reuse_port=settings.reuse_port, listen=not late),
            settings,
            uvicorn_ssl_options(settings),
            closed_by_bound=http_metrics.closed_by_bound,
            on_queued=http_metrics.requests_queued.inc,
            on_turn_refused=self.metrics.overload_rejections.labels("http", CALLER_SHARE).inc,
        )
        self.http_port = self.http_server.port
        self._stopping = asyncio.Event()

    async def start(self) -> None:
        if self.process_pools:
            started = time.perf_counter()
            await asyncio.gather(*(pool.start() for pool in self.process_pools))
            workers = sum(pool.size for pool in self.process_pools)
            log.info("%d symbolic workers warm in %.2f s", workers, time.perf_counter() - started)
        if self._listen_late:
            listen_on_port(self.grpc_server, self.settings)
        await self.grpc_server.start()
        await self.http_server.start()
        for service in HEALTH_SERVICES:
            self.health.set(service, SERVING)
        self.ready = True
        if self._announce:
            log.info("%s", banner(self.settings, self.grpc_port, self.http_port))
        else:
            log.info("server process %d ready", os.getpid())

    async def stop(self) -> None:
        """Drain: report NOT_SERVING, refuse new calls, let calls in flight finish within the grace.

        The HTTP port stays open through the grace period (`/readyz` answers 503, new API calls get
        UNAVAILABLE); at its end, calls still running are cancelled and answered UNAVAILABLE.
        """
        self.ready = False
        self.drain.begin()
        # NOT_SERVING for every service, and later `set` calls are ignored: health stays down.
        self.health.enter_graceful_shutdown()
        grace = self.settings.grace_seconds
        loop = asyncio.get_running_loop()
        drained_by = loop.time() + max(grace / 2, grace - _CLOSING_SECONDS)
        grpc_stopped = asyncio.create_task(self.grpc_server.stop(grace))  # refuses new calls from now
        # Until the calls in flight are done, not the grace: grpc waits out the whole grace while any
        # client keeps a connection open, calls or none (an idle HTTP/2 connection made the process
        # exit 1.2 s past a 3 s grace: an independent tester), so it is stopped again, at once.
        while (self.api.calls.active or self.drain.in_flight) and loop.time() < drained_by:
            await asyncio.sleep(0.05)
        stopped_now = asyncio.ensure_future(self.grpc_server.stop(0))
        # grpc's stop returns once its transports have shut down, which a connection sending an
        # endless header block (CONTINUATION frames) delays for as long as it sends: the drain took
        # the whole grace and ended in the backstop's exit 1 (an attack hunt, 2026-12-07). With no
        # call left, nothing is lost by exiting without it.
        _, pending = await asyncio.wait({stopped_now, grpc_stopped}, timeout=_GRPC_STOP_SECONDS)
        if pending:
            log.warning(
                "grpc had not stopped %.1f s after its last call; exiting without it", _GRPC_STOP_SECONDS
            )
        await self.http_server.stop()
        await self.symbolic.close()
        await self.numeric.close()
        await self.parsing.close()
        if self.tracing is not None:
            self.tracing.shutdown()
        log.info("stopped")

    def request_stop(self) -> None:
        self._stopping.set()

    async def run(self, ready_file: Path | None = None, heartbeat_file: Path | None = None) -> None:
        """Serve until SIGTERM or SIGINT, then drain and return; beat into `heartbeat_file` if given."""
        connections.install_accept_error_filter()
        access.limit_failure_lines(self.settings.access_log_failures_per_second)
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self.request_stop)
        beating = None
        if heartbeat_file is not None and self.settings.heartbeat_seconds > 0:
            interval = heartbeat.beat_interval(self.settings.heartbeat_seconds)
            beating = asyncio.create_task(heartbeat.beat(heartbeat_file, interval))
        await self.start()
        publishing = asyncio.create_task(self.metrics.publish_every())
        if ready_file is not None:
            write_ready_file(ready_file, {"grpc_port": self.grpc_port, "http_port": self.http_port})
        await self._stopping.wait()
        log.info("signal received, draining for up to %.1f s", self.settings.grace_seconds)
        # The grace bounds the exit whatever the loop is doing: a C thread, which needs no GIL,
        # prints every thread's stack and ends the process (status 1) at the end of it. Under
        # numeric threads holding the GIL, uvicorn's cancelled tasks, each logged with a traceback,
        # kept the loop 9 to 20 s past a grace of 10 s (an attack hunt).
        faulthandler.dump_traceback_later(self.settings.grace_seconds, exit=True)
        await self.stop()
        faulthandler.cancel_dump_traceback_later()  # `serve` bounds the rest (0.5 s)
        publishing.cancel()
        self.metrics.publish()
        if beating is not None:
            beating.cancel()


def _size_descriptors(settings: Settings) -> None:
    """Raise the descriptor limit for the connection caps; warn if it still lowers the gRPC cap to
    what one address can fill."""
    descriptors = connections.raise_descriptor_limit()
    cap = grpc_connection_cap(settings, descriptors)
    if cap < min(settings.max_grpc_connections, ONE_ADDRESS_CONNECTIONS + 1):
        wanted = settings.max_grpc_connections + settings.max_connections + DESCRIPTOR_RESERVE
        log.warning(
            "the open file limit (%d) lowers the gRPC connection cap to %d: one address can hold every "
            "gRPC connection; raise the limit to %d (ulimit -n, LimitNOFILE)",
            descriptors, cap, wanted,
        )  # fmt: skip


def _executors(
    settings: Settings,
) -> tuple[ProcessExecutor | None, Executor, BoundedExecutor, list[Admission]]:
    """(the process pool if any, the symbolic executor, the numeric executor, their admissions)."""
    numeric_admission = Admission(
        "numeric",
        settings.compute_threads,
        settings.numeric_queue,
        settings.retry_after_seconds,
        settings.slots_per_caller,
    )
    numeric = BoundedExecutor(ThreadExecutor(settings.compute_threads, "numeric"), numeric_admission)
    if settings.symbolic_workers == 0:
        symbolic_admission = Admission(
            "symbolic",
            settings.compute_threads,
            settings.symbolic_queue,
            settings.retry_after_seconds,
            settings.slots_per_caller,
        )
        symbolic = BoundedExecutor(ThreadExecutor(settings.compute_threads, "symbolic"), symbolic_admission)
        return None, symbolic, numeric, [symbolic_admission, numeric_admission]
    pool = ProcessExecutor(
        settings.symbolic_workers,
        spares=settings.symbolic_spares,
        budget_seconds=settings.symbolic_budget_seconds,
        memory_bytes=settings.worker_memory_bytes,
        queue=settings.symbolic_queue,
        retry_after_seconds=settings.retry_after_seconds,
        per_caller=settings.slots_per_caller,
    )
    return pool, pool, numeric, [pool.admission, numeric_admission]


def serve(
    settings: Settings,
    ready_file: Path | None = None,
    heartbeat_file: Path | None = None,
    *,
    announce: bool = True,
) -> NoReturn:
    """Run one server process until SIGTERM/SIGINT and its drain, then exit it (status 0) within the
    grace period: this never returns.
    `announce`: log the start-up banner (a supervisor's server processes leave it to the supervisor).

    A numeric thread cannot be interrupted, and the interpreter would wait for it at exit: a call
    still computing when the grace ends (its caller already answered) is abandoned instead.
    """

    # Before any thread starts: a thread keeps the malloc arena it got, and grpc's own threads (started
    # as the server is built) had an arena each, in which big blocks were mapped and faulted in afresh
    # for every call (10,000 page faults a 10^6-point Evaluate of six columns; bench/PROFILE.md).
    allocator.keep_freed_memory(settings.malloc_keep_bytes)

    async def main() -> None:
        # Built inside the loop: grpc.aio binds its server to the loop running at construction.
        await Application(settings, announce=announce).run(ready_file, heartbeat_file)

    asyncio.run(main())
    deadline = time.monotonic() + 0.5
    for thread in threading.enumerate():
        if thread is not threading.main_thread() and not thread.daemon:
            thread.join(max(0.0, deadline - time.monotonic()))
    running = [
        t.name for t in threading.enumerate() if t.is_alive() and not t.daemon and t.name != "MainThread"
    ]
    if running:
        log.warning("exiting past the grace period with work still running on %s", ", ".join(running))
    # Out now, not through the interpreter's finalization: its last garbage collection, over what 16
    # connections streaming bodies had left, took 4.4 s after the drain (exit 13.2 s after SIGTERM
    # with a grace of 10 s; an attack hunt). The drain has closed what needs closing.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def _parse_executor(settings: Settings) -> BoundedExecutor | ProcessExecutor:
    """Parse's own symbolic worker and queue, so checks as a person types never wait behind cold
    derivations, and a parse costs nobody else anything.

    A process of its own, not a thread of the server: nothing stops a thread, and a single sympy
    step can run long (evaluating a constant) and take memory as it goes. The worker has the
    symbolic workers' memory limit; a parse holds it `PARSE_HOLD_SECONDS` at most (gives up at its
    allowance, or is killed) and then runs again in the symbolic workers, under the full budget
    (api._on_parse_worker). `PARSE_WORKERS` and `PARSE_SPARES` say why they are what they are. A
    flood of checks is turned away by this queue's own bound (shared fairly between callers, as
    every admission is), never by filling the symbolic one. Without symbolic workers (tests,
    `symbolic_workers` 0), a thread.
    """
    if settings.symbolic_workers == 0:
        return BoundedExecutor(
            ThreadExecutor(1, "parse"),
            Admission("parse", 1, settings.parse_queue, settings.retry_after_seconds),
        )
    return ProcessExecutor(
        PARSE_WORKERS,
        spares=PARSE_SPARES,
        budget_seconds=settings.symbolic_budget_seconds,
        memory_bytes=settings.worker_memory_bytes,
        queue=settings.parse_queue,
        retry_after_seconds=settings.retry_after_seconds,
        name="parse",
        hold_seconds=PARSE_HOLD_SECONDS,
    )


def write_ready_file(path: Path, ports: dict[str, int]) -> None:
    """Tell a supervisor or test which ports we bound: written atomically once we accept calls."""
    partial = path.with_suffix(path.suffix + ".partial")
    partial.write_text(json.dumps(ports))
    partial.replace(path)
