"""Prometheus metrics of zasync: what the queues hold, read when scraped,
and what this process's dispatchers did, counted as they do it.

Two parts, joined in one exposition by :func:`make_registry`:

* :class:`QueuesCollector` reads the queues of a database at each scrape
  (:func:`zasync.admin.status_report`), through a connection of its own
  opened for the scrape, in a fresh transaction that is aborted after:
  it never writes. Every process that scrapes a database sees the same
  numbers (they are the cluster's).
* :class:`ProcessMetrics` counts what the dispatchers of *this* process
  do (attempts and their outcomes, their durations and pickup latency,
  postponements, conflicts, storage errors): it is an
  IDispatcherObserver (see :func:`zasync.dispatcher.add_observer`),
  installed once per process by :func:`process_metrics`. A process
  without a dispatcher (a web instance that only queues) reports zeros.

Each metric's name, type, labels and meaning are listed in
docs/metrics.md. This module knows nothing of Zope: the ``zasync
worker --metrics-port`` command serves it over HTTP, the Plone add-on's
``@@zasync-metrics`` view through Zope. It lives in zasync.admin, not in
the engine, because it reads the queues through the admin library (and
the engine imports no third-party package beyond ZODB's family).
"""

import logging
import threading
import time

import transaction
from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Histogram,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import choose_encoder
from zope.interface import implementer

from zasync import dispatcher
from zasync.admin.reports import read_queues, status_report
from zasync.interfaces import IDispatcherObserver
from zasync.logonce import LogOnce

log = logging.getLogger("zasync.metrics")
# A scrape that cannot read the queues is logged once per kind of error
# per LogOnce interval, not at every scrape.
scrape_log = LogOnce(log)

#: The statuses zasync_queue_jobs reports, as queue.counts() names them
#: ('completed' is left out: it is succeeded + failed).
JOB_STATUSES = ("pending", "assigned", "active", "callbacks", "succeeded", "failed")
#: The outcomes of an attempt (IDispatcherObserver.attempt_ended).
OUTCOMES = ("succeeded", "failed", "retried")
#: Why a job was postponed, as its dispatcher counts it (postponed_<reason>).
POSTPONE_REASONS = ("conflict", "disconnect", "storage_error")

#: Buckets (seconds) of zasync_job_duration_seconds: from short jobs that
#: share a commit to jobs of an hour.
DURATION_BUCKETS = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0, 300.0, 900.0, 3600.0,
)  # fmt: skip
#: Buckets (seconds) of zasync_job_pickup_seconds: a woken dispatcher picks
#: a job up in milliseconds; a busy cluster in seconds or minutes.
PICKUP_BUCKETS = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0, 300.0, 900.0,
)  # fmt: skip


@implementer(IDispatcherObserver)
class ProcessMetrics:
    """The metrics of this process's dispatchers, updated as they run
    (an IDispatcherObserver) and collected as they stand (a
    prometheus_client collector).

    Updating one costs a dict look-up and prometheus_client's short
    per-metric lock: nothing is held across a job.
    """

    def __init__(self):
        # registry=None: the metrics join the registries of make_registry,
        # not prometheus_client's global one.
        self.attempts = Counter(
            "zasync_job_attempts",
            "Attempts of jobs claimed from a queue that ended in this process, "
            "by outcome: succeeded, failed (for good) or retried (to be tried "
            "again later).",
            ["outcome"],
            registry=None,
        )
        self.duration = Histogram(
            "zasync_job_duration_seconds",
            "Seconds from the start of a job's attempt to its end, for the "
            "attempts that ended in this process, by outcome.",
            ["outcome"],
            buckets=DURATION_BUCKETS,
            registry=None,
        )
        self.pickup = Histogram(
            "zasync_job_pickup_seconds",
            "Seconds from when a job could start (queued, or its begin_after "
            "if later) to when this process started it.",
            buckets=PICKUP_BUCKETS,
            registry=None,
        )
        self.postponements = Counter(
            "zasync_job_postponements",
            "Jobs put back for later by this process without counting their "
            "attempt, by reason: conflict, disconnect (storage server lost), "
            "storage_error (a full disk, an unreadable record).",
            ["reason"],
            registry=None,
        )
        self.transient_errors = Counter(
            "zasync_transient_errors",
            "Transactions of this process's dispatchers lost to a conflict or "
            "to a lost storage server, and tried again, by kind: conflict, "
            "disconnect.",
            ["kind"],
            registry=None,
        )
        self.storage_errors = Counter(
            "zasync_storage_errors",
            "Storage errors met by this process's worker threads (a full disk, "
            "an unreadable record); the jobs were postponed.",
            registry=None,
        )
        self.rounds = Counter(
            "zasync_dispatcher_rounds",
            "Loop rounds (transactions) committed by this process's dispatchers.",
            registry=None,
        )
        self.peers_declared_dead = Counter(
            "zasync_peers_declared_dead",
            "Dispatchers this process's dispatchers found dead (their jobs "
            "were recovered).",
            registry=None,
        )
        # Every label value shows from the start, at 0; the children are
        # kept, since looking them up costs more than updating them.
        self._ended = {
            outcome: (self.attempts.labels(outcome), self.duration.labels(outcome))
            for outcome in OUTCOMES
        }
        for reason in POSTPONE_REASONS:
            self.postponements.labels(reason)
        for kind in ("conflict", "disconnect"):
            self.transient_errors.labels(kind)
        # {dispatcher counter name: the metric child it adds to}.
        self._counters = {
            "conflicts": self.transient_errors.labels("conflict"),
            "disconnects": self.transient_errors.labels("disconnect"),
            "storage_errors": self.storage_errors,
            "rounds": self.rounds,
            "peers declared dead": self.peers_declared_dead,
            **{
                f"postponed_{reason}": self.postponements.labels(reason)
                for reason in POSTPONE_REASONS
            },
        }

    def _metrics(self):
        return (
            self.attempts,
            self.duration,
            self.pickup,
            self.postponements,
            self.transient_errors,
            self.storage_errors,
            self.rounds,
            self.peers_declared_dead,
        )

    # -- IDispatcherObserver --------------------------------------------------

    def counted(self, what, n):
        counter = self._counters.get(what)
        if counter is not None:
            counter.inc(n)

    def attempt_ended(self, outcome, pickup, duration):
        ended = self._ended.get(outcome)
        if ended is None:  # an outcome this version does not know
            ended = self._ended[outcome] = (
                self.attempts.labels(outcome),
                self.duration.labels(outcome),
            )
        attempts, durations = ended
        attempts.inc()
        durations.observe(duration)
        self.pickup.observe(pickup)

    # -- Collector ------------------------------------------------------------

    def collect(self):
        for metric in self._metrics():
            yield from metric.collect()


_process_metrics = None
_process_lock = threading.Lock()


def process_metrics():
    """This process's ProcessMetrics: made and added as an observer of its
    dispatchers on the first call (the same one after). Call it before the
    dispatcher starts to count from its start."""
    global _process_metrics
    with _process_lock:
        if _process_metrics is None:
            _process_metrics = ProcessMetrics()
            dispatcher.add_observer(_process_metrics)
        return _process_metrics


class QueuesCollector:
    """The gauges of the queues in ``db`` (its sibling database called
    ``database`` in multi-database mode), read at each scrape through a
    connection opened for it, in a transaction aborted after (nothing is
    ever written). ``now()`` gives the time for the liveness of
    dispatchers (default: zasync.clock.utcnow, through status_report).

    If the queues cannot be read (none yet, the storage server is gone),
    ``zasync_queues_up`` is 0, the queue gauges are missing, and the
    reason is logged (once per kind of error for a while)."""

    def __init__(self, db, database=None, now=None):
        self.db = db
        self.database = database
        self.now = now

    def read(self):
        """The status_report of the queues (plain data), or raise."""
        tm = transaction.TransactionManager(explicit=True)
        conn = self.db.open(transaction_manager=tm)
        try:
            tm.begin()
            queues = read_queues(conn, self.database)
            return status_report(queues, None if self.now is None else self.now())
        finally:
            tm.abort()
            conn.close()

    def collect(self):
        started = time.perf_counter()
        up = GaugeMetricFamily(
            "zasync_queues_up",
            "1 if this scrape could read the queues, else 0 (the reason is "
            "in the log).",
        )
        try:
            report = self.read()
        except Exception as exc:
            scrape_log.warning(
                type(exc).__name__,
                "zasync metrics: could not read the queues: %s: %s",
                type(exc).__name__,
                exc,
            )
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from _queue_families(report)
        took = GaugeMetricFamily(
            "zasync_queues_scrape_seconds",
            "Seconds this scrape took to read the queues.",
        )
        took.add_metric([], time.perf_counter() - started)
        yield took


def _queue_families(report):
    """The gauge families of a status_report."""
    jobs = GaugeMetricFamily(
        "zasync_queue_jobs",
        "Jobs in the queue by status: pending, assigned, active, callbacks, "
        "succeeded, failed (completed jobs kept until pruned).",
        labels=["queue", "status"],
    )
    set_aside = GaugeMetricFamily(
        "zasync_queue_set_aside_jobs",
        "Jobs set aside in the queue (they could not be run or loaded; see "
        "'zasync set-aside').",
        labels=["queue"],
    )
    alive = GaugeMetricFamily(
        "zasync_queue_dispatchers_alive",
        "Dispatchers serving the queue whose heartbeat is fresh.",
        labels=["queue"],
    )
    registered = GaugeMetricFamily(
        "zasync_queue_dispatchers",
        "Dispatchers registered with the queue, alive or dead.",
        labels=["queue"],
    )
    dispatcher_alive = GaugeMetricFamily(
        "zasync_dispatcher_alive",
        "1 if the dispatcher's heartbeat is fresh, 0 if it is dead.",
        labels=["queue", "dispatcher", "host"],
    )
    heartbeat = GaugeMetricFamily(
        "zasync_dispatcher_heartbeat_age_seconds",
        "Seconds since the dispatcher's last heartbeat, by the storage's time "
        "(what its peers judge it by).",
        labels=["queue", "dispatcher", "host"],
    )
    quota_size = GaugeMetricFamily(
        "zasync_quota_size",
        "Jobs naming the quota that may run at once in the cluster.",
        labels=["queue", "quota"],
    )
    quota_active = GaugeMetricFamily(
        "zasync_quota_active",
        "Jobs naming the quota that run now.",
        labels=["queue", "quota"],
    )
    for queue in report["queues"]:
        name = queue["label"]
        counts = queue["counts"]
        for status in JOB_STATUSES:
            jobs.add_metric([name, status], counts.get(status, 0))
        set_aside.add_metric([name], queue["set_aside"])
        dispatchers = queue["dispatchers"]
        alive.add_metric([name], sum(1 for d in dispatchers if d["alive"]))
        registered.add_metric([name], len(dispatchers))
        for each in dispatchers:
            labels = [name, each["uuid"], each["host"] or ""]
            dispatcher_alive.add_metric(labels, 1 if each["alive"] else 0)
            heartbeat.add_metric(labels, max(each["heartbeat_age"], 0.0))
        for quota in queue["quotas"]:
            quota_size.add_metric([name, quota["name"]], quota["size"])
            quota_active.add_metric([name, quota["name"]], quota["active"])
    yield from (
        jobs,
        set_aside,
        alive,
        registered,
        dispatcher_alive,
        heartbeat,
        quota_size,
        quota_active,
    )


def make_registry(db, database=None, process=True, now=None):
    """A CollectorRegistry of zasync's metrics for a scrape: the queues of
    ``db`` (QueuesCollector), this process's ProcessMetrics (installed if
    they were not), and, with ``process``, prometheus_client's collectors
    of the process (memory, CPU, open files), the platform and the garbage
    collector. It is not prometheus_client's global registry: nothing is
    registered there."""
    registry = CollectorRegistry()
    registry.register(process_metrics())
    if db is not None:  # None: the caller adds a QueuesCollector later
        registry.register(QueuesCollector(db, database, now=now))
    if process:
        for collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
            registry.register(collector)
    return registry


def exposition(registry, accept=None):
    """(body bytes, Content-Type) of ``registry`` for a scrape whose Accept
    header is ``accept``: Prometheus's text format 0.0.4 by default, or
    what the header asks for (OpenMetrics), as prometheus_client's own
    HTTP server answers."""
    encoder, content_type = choose_encoder(accept or "")
    return encoder(registry), content_type
