"""Prometheus metrics for the core, served at ``http://HOST:PORT/metrics``.

One `CollectorRegistry` per process (not the library's global one), so
several cores in one test process never share counters. Counters are
updated by the runtime's `RuntimeObserver` hooks; the session gauges are
read from the session registry at scrape time, so nothing is stale.

| metric | type | meaning |
| --- | --- | --- |
| `arcp_jobs_submitted_total` | counter | new jobs: submits and delegated children (no replays) |
| `arcp_jobs_running` | gauge | jobs started and not yet terminal (delegated children included) |
| `arcp_jobs_finished_total{status}` | counter | terminal jobs by final status |
| `arcp_submit_latency_seconds` | histogram | submit → `JobAccepted` for new jobs |
| `arcp_replay_latency_seconds` | histogram | submit → stored `JobAccepted` for replays (§7.2) |
| `arcp_idempotency_hits_total` | counter | submits answered from the idempotency cache |
| `arcp_events_total` | counter | job events written; `rate()` gives events/s |
| `arcp_sessions_open` | gauge | ARCP sessions held by the core (attached or resumable) |
| `arcp_sessions_attached` | gauge | sessions with a live transport |
| `arcp_sessions_unsent_bytes` | gauge | frames queued for attached clients, not yet sent |
| `arcp_credentials_unrevoked` | gauge | values due for revocation, live after the last sweep |
| `arcp_credential_revocation_failures_total` | counter | revocations that failed every try |
| `arcp_store_bytes{part}` | gauge | on disk: SQLite `database`, `wal`; PostgreSQL `database` |

`arcp_store_bytes` is read at scrape time too (PostgreSQL: this schema's
tables with their indexes and TOAST), from the scrape's own thread:
the store answers on the event loop (a `stat` of each SQLite file; one size
query on a PostgreSQL pool connection, awaited), and the scrape waits at most
`STORE_SCRAPE_TIMEOUT` for it, leaving the gauge out of that scrape rather
than hold the event loop or hang the scraper.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from arcp_grpc.runtime import RuntimeObserver
from arcp_grpc.service.registry import SessionRegistry
from arcp_grpc.store import Store
from arcp_grpc.v1 import jobs_pb2

__all__ = ["STORE_SCRAPE_TIMEOUT", "Metrics", "MetricsServer", "serve_metrics"]

log = logging.getLogger("arcp_grpc.metrics")

STORE_SCRAPE_TIMEOUT = 2.0  # seconds a scrape waits for the store's sizes

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class Metrics(RuntimeObserver):
    """The runtime observer that feeds Prometheus; pass it to ``start_core(…, observer=m)``."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self._submitted = Counter(
            "arcp_jobs_submitted",
            "New jobs: accepted submits and delegated children.",
            registry=r,
        )
        self._running = Gauge("arcp_jobs_running", "Jobs running now.", registry=r)
        self._finished = Counter(
            "arcp_jobs_finished", "Terminal jobs by final status.", ["status"], registry=r
        )
        self._submit_latency = Histogram(
            "arcp_submit_latency_seconds",
            "Time to accept a new job.",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self._replay_latency = Histogram(
            "arcp_replay_latency_seconds",
            "Time to answer an idempotent resubmit with the stored acceptance.",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self._hits = Counter(
            "arcp_idempotency_hits", "Submits answered from the idempotency cache.", registry=r
        )
        self._events = Counter("arcp_events", "Job events written to the store.", registry=r)
        self._sessions_open = Gauge("arcp_sessions_open", "ARCP sessions held.", registry=r)
        self._sessions_attached = Gauge(
            "arcp_sessions_attached", "ARCP sessions with a live transport.", registry=r
        )
        self._sessions_unsent = Gauge(
            "arcp_sessions_unsent_bytes",
            "Frames queued for attached ARCP clients, not yet sent.",
            registry=r,
        )
        self._unrevoked = Gauge(
            "arcp_credentials_unrevoked",
            "Credential values due for revocation and still live after the last sweep.",
            registry=r,
        )
        self._revocation_failures = Counter(
            "arcp_credential_revocation_failures",
            "Credential revocations that failed every attempt (retried later).",
            registry=r,
        )

    def watch_sessions(self, sessions: SessionRegistry) -> None:
        """Read the session gauges from `sessions` at scrape time."""
        self._sessions_open.set_function(lambda: float(len(sessions)))
        self._sessions_attached.set_function(lambda: float(sessions.attached_count()))
        self._sessions_unsent.set_function(lambda: float(sessions.unsent_bytes()))

    def watch_store(self, store: Store) -> None:
        """Read `arcp_store_bytes` from `store` at scrape time; call on the event loop
        the store runs on."""
        self.registry.register(_StoreBytes(store, asyncio.get_running_loop()))

    # -- RuntimeObserver ---------------------------------------------------------

    def submitted(self, seconds: float, *, replay: bool) -> None:
        if replay:
            self._hits.inc()
            self._replay_latency.observe(seconds)
        else:
            self._submitted.inc()
            self._submit_latency.observe(seconds)

    def delegated(self) -> None:
        # Counted like a submit, so submitted and finished add up (a delegated child
        # finishes like any job; issue 24).
        self._submitted.inc()

    def launched(self) -> None:
        self._running.inc()

    def finished(self, status: int) -> None:
        self._running.dec()
        name = jobs_pb2.JobStatus.Name(jobs_pb2.JobStatus.ValueType(status))
        self._finished.labels(status=name.removeprefix("JOB_STATUS_").lower()).inc()

    def events_committed(self, count: int) -> None:
        self._events.inc(count)

    def revocation_failed(self) -> None:
        self._revocation_failures.inc()

    def credentials_unrevoked(self, count: int) -> None:
        self._unrevoked.set(count)


class _StoreBytes(Collector):
    """`arcp_store_bytes{part}`, asked of the store on its loop from the scrape thread."""

    def __init__(self, store: Store, loop: asyncio.AbstractEventLoop) -> None:
        self._store = store
        self._loop = loop

    def describe(self) -> Iterator[GaugeMetricFamily]:
        yield self._family()

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = self._family()
        try:
            sizes = asyncio.run_coroutine_threadsafe(self._store.disk_usage(), self._loop).result(
                STORE_SCRAPE_TIMEOUT
            )
        except Exception:  # a store closing, a slow database: this scrape goes without
            log.debug("store sizes unavailable for this scrape", exc_info=True)
            return
        for part, size in sizes.items():
            family.add_metric([part], float(size))
        yield family

    @staticmethod
    def _family() -> GaugeMetricFamily:
        return GaugeMetricFamily(
            "arcp_store_bytes", "Bytes the store takes on disk, by part.", labels=["part"]
        )


@dataclass
class MetricsServer:
    """The scrape endpoint's HTTP server (a daemon thread); `url` ends in /metrics."""

    server: WSGIServer
    thread: threading.Thread
    host: str

    @property
    def port(self) -> int:
        return self.server.server_port

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/metrics"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5.0)


def serve_metrics(metrics: Metrics, host: str, port: int) -> MetricsServer:
    """Serve `metrics` over HTTP on `host:port` (0 picks a free port)."""
    server, thread = start_http_server(port, addr=host, registry=metrics.registry)
    return MetricsServer(server, thread, host)
