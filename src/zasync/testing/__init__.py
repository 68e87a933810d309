"""Helpers for tests of code that queues jobs.

The ``wait_for_*`` functions start new transactions on the connection of the
object they watch (so commit what you queued first), and wait until a
condition holds or the time runs out, waking when a job transaction commits
in this process and at least every 50 ms otherwise. On time-out they raise
TimeoutError saying what was seen. ``inline()`` makes ``queue.put`` run jobs
at once, in the caller's transaction, for unit tests that need no
dispatcher.
"""

import contextlib
import time

from zasync import queue as queuemodule
from zasync import wakeup
from zasync.queue import get_queues
from zasync.status import ACTIVE, CALLBACKS, COMPLETED
from zasync.transact import abort

POLL = 0.05


def _new_transaction(obj):
    jar = obj._p_jar
    if jar is None:
        raise ValueError(
            f"{obj!r} is not stored yet: commit the transaction that queued it "
            f"before waiting for it"
        )
    tm = jar.transaction_manager
    if getattr(tm, "explicit", False):
        abort(tm)
    tm.begin()


def wait_for(condition, seconds, refresh, describe):
    """Call ``refresh()`` then ``condition()`` until it returns something
    true, which is returned; raise TimeoutError after ``seconds``."""
    deadline = time.monotonic() + seconds
    while True:
        generation = wakeup.generation()
        refresh()
        value = condition()
        if value:
            return value
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"waited {seconds}s: {describe()}")
        wakeup.wait_changed(generation, min(POLL, remaining))


def wait_for_result(job, seconds=10):
    """Wait until ``job`` has completed and return its result (a Failure
    is returned, not raised)."""
    wait_for(
        lambda: job.status == COMPLETED,
        seconds,
        lambda: _new_transaction(job),
        lambda: f"{job!r} did not complete (status {job.status})",
    )
    return job.result


def wait_for_start(job, seconds=10):
    """Wait until ``job`` has started (or got further)."""
    wait_for(
        lambda: job.status in (ACTIVE, CALLBACKS, COMPLETED),
        seconds,
        lambda: _new_transaction(job),
        lambda: f"{job!r} did not start (status {job.status})",
    )


_MISSING = object()


def wait_for_annotation(job, name, seconds=10):
    """Wait until ``job`` has a live annotation (or an ordinary one) called
    ``name``, and return its value."""

    def found():
        value = job.get_live_annotation(name, _MISSING)
        if value is _MISSING:
            value = job.own_annotations.get(name, _MISSING)
        return (value,) if value is not _MISSING else None

    return wait_for(
        found,
        seconds,
        lambda: _new_transaction(job),
        lambda: f"{job!r} has no annotation {name!r} (status {job.status})",
    )[0]


def wait_for_all_jobs(connection, seconds=30, queue_names=None):
    """Wait until no queue of the database behind ``connection`` has a job
    pending, assigned, active or in callbacks, and every completed job is
    indexed (see IQueue.unsettled)."""

    def busy():
        queues = get_queues(connection)
        names = queue_names if queue_names is not None else list(queues)
        open_jobs = {}
        for name in names:
            left = queues[name].unsettled()
            if left:
                open_jobs[name] = left
        return open_jobs

    def refresh():
        tm = connection.transaction_manager
        if getattr(tm, "explicit", False):
            abort(tm)
        tm.begin()

    wait_for(lambda: not busy(), seconds, refresh, lambda: f"jobs left: {busy()}")


@contextlib.contextmanager
def inline():
    """Within the block, ``queue.put`` runs each job at once in the caller's
    transaction (with its callbacks) instead of queuing it, and returns it
    completed. For unit tests of code that queues jobs. It applies to the
    thread that entered the block only: dispatchers' threads, and other
    threads putting jobs meanwhile, queue them as usual."""
    previous = queuemodule.inline.on
    queuemodule.inline.on = True
    try:
        yield
    finally:
        queuemodule.inline.on = previous


def parse_metrics(text):
    """``{(sample name, ((label, value), ...)): value}`` of a Prometheus
    text exposition (what ``@@zasync-metrics`` and ``zasync worker
    --metrics-port`` serve), read with prometheus_client's own parser."""
    from prometheus_client.parser import text_string_to_metric_families

    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[sample.name, tuple(sorted(sample.labels.items()))] = sample.value
    return found
