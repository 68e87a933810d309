"""Prometheus metrics (zasync.admin.metrics): the queues' gauges read at
each scrape of a real FileStorage, and the process's counters and
histograms moved by a real dispatcher running real jobs; the output is
read back with prometheus_client's own parser."""

import datetime
import types
import uuid

import pytest
import transaction
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from zope.interface.verify import verifyObject

import jobfuncs
import zasync
from zasync import clock
from zasync import dispatcher as dispatcher_module
from zasync.admin import metrics
from zasync.interfaces import IDispatcherObserver
from zasync.retry import RetryWithDelay
from zasync.runner import attempt_times
from zasync.testing import parse_metrics, wait_for, wait_for_result

parse = parse_metrics


def scrape(db, database=None, now=None):
    body, content_type = metrics.exposition(
        metrics.make_registry(db, database, process=False, now=now)
    )
    assert content_type == CONTENT_TYPE_PLAIN_0_0_4
    return parse(body.decode("utf-8"))


def value(samples, name, **labels):
    """The value of one sample; KeyError (naming what there is) if none."""
    key = (name, tuple(sorted(labels.items())))
    if key not in samples:
        known = sorted(k for k in samples if k[0] == name)
        raise KeyError(f"no sample {key}; there are {known}")
    return samples[key]


def jobs(samples, status, queue="default"):
    return value(samples, "zasync_queue_jobs", queue=queue, status=status)


class Moves:
    """The process's counters and histograms, before and since."""

    NAMES = (
        ("zasync_job_attempts_total", "outcome", metrics.OUTCOMES),
        ("zasync_job_duration_seconds_count", "outcome", metrics.OUTCOMES),
        ("zasync_job_postponements_total", "reason", metrics.POSTPONE_REASONS),
        ("zasync_transient_errors_total", "kind", ("conflict", "disconnect")),
    )

    def __init__(self, db):
        self.db = db
        self.before = self.read()

    def read(self):
        samples = scrape(self.db)
        read = {
            ("pickup", None): value(samples, "zasync_job_pickup_seconds_count"),
            ("rounds", None): value(samples, "zasync_dispatcher_rounds_total"),
        }
        for name, label, values in self.NAMES:
            for each in values:
                read[name, each] = value(samples, name, **{label: each})
        return read

    def since(self):
        now = self.read()
        return {key: now[key] - self.before[key] for key in now}

    def wait(self, expected, seconds=20):
        """Wait until the moves since are ``expected`` ({key: at least n})
        and return them. Observers are told just after a job's commit, so
        a job's result may be seen a moment before its count."""
        moved = {}

        def reached():
            moved.update(self.since())
            return all(moved[key] >= n for key, n in expected.items())

        wait_for(reached, seconds, lambda: None, lambda: f"moves {moved}")
        return moved


# -- the queues, read per scrape ------------------------------------------------


def test_jobs_by_status_after_jobs_succeed_and_fail(db, queue, dispatcher):
    later = clock.utcnow() + datetime.timedelta(days=1)
    done = [queue.put(zasync.Job(jobfuncs.add, n, n)) for n in range(3)]
    failed = [queue.put(zasync.Job(jobfuncs.fail, "no")) for _ in range(2)]
    queue.put(zasync.Job(jobfuncs.add, 1, 2), begin_after=later)
    aside = queue.put(zasync.Job(jobfuncs.add, 2, 3), begin_after=later)
    queue.set_aside(aside, "PicklingError: for the metrics")
    transaction.commit()
    for job in done + failed:
        wait_for_result(job)
    wait_for(
        lambda: jobs(scrape(db), "succeeded") == 3,
        20,
        lambda: None,
        lambda: f"3 succeeded jobs in {scrape(db)}",
    )
    samples = scrape(db)
    assert value(samples, "zasync_queues_up") == 1
    assert jobs(samples, "succeeded") == 3
    assert jobs(samples, "failed") == 2
    assert jobs(samples, "pending") == 1  # the one due tomorrow
    assert jobs(samples, "assigned") == jobs(samples, "active") == 0
    assert jobs(samples, "callbacks") == 0
    assert value(samples, "zasync_queue_set_aside_jobs", queue="default") == 1


def test_dispatchers_alive_and_their_heartbeat_age(db, queue, start_dispatcher):
    running = start_dispatcher(ping_interval=1, death_interval=30)
    samples = scrape(db)
    labels = {"queue": "default", "dispatcher": running.uuid, "host": _host(db)}
    assert value(samples, "zasync_queue_dispatchers_alive", queue="default") == 1
    assert value(samples, "zasync_queue_dispatchers", queue="default") == 1
    assert value(samples, "zasync_dispatcher_alive", **labels) == 1
    age = value(samples, "zasync_dispatcher_heartbeat_age_seconds", **labels)
    assert 0 <= age < 30

    # Seen from a day later, it is dead: still registered, not alive.
    tomorrow = clock.utcnow() + datetime.timedelta(days=1)
    samples = scrape(db, now=lambda: tomorrow)
    assert value(samples, "zasync_queue_dispatchers_alive", queue="default") == 0
    assert value(samples, "zasync_queue_dispatchers", queue="default") == 1
    assert value(samples, "zasync_dispatcher_alive", **labels) == 0

    running.stop(5)  # it deregisters
    samples = scrape(db)
    assert value(samples, "zasync_queue_dispatchers", queue="default") == 0
    assert not [k for k in samples if k[0] == "zasync_dispatcher_alive"]


def _host(db):
    conn = db.open()
    try:
        (record,) = zasync.get_queues(conn)[""].dispatchers.values()
        return record.host
    finally:
        conn.close()


def test_quotas_and_every_queue_are_reported(db, conn):
    queues = zasync.get_queues(conn)
    queues.create('odd "name"\nwith a newline')
    queues[""].quotas.create("mail", size=2)
    transaction.commit()
    samples = scrape(db)
    odd = 'odd "name"\nwith a newline'  # escaped and parsed back intact
    assert jobs(samples, "pending", queue=odd) == 0
    assert value(samples, "zasync_quota_size", queue="default", quota="mail") == 2
    assert value(samples, "zasync_quota_active", queue="default", quota="mail") == 0


def test_a_scrape_writes_nothing(db, queue):
    queue.put(zasync.Job(jobfuncs.add, 1, 1))
    transaction.commit()
    before = db.lastTransaction()
    assert jobs(scrape(db), "pending") == 1
    assert db.lastTransaction() == before


def test_a_database_without_queues_is_down_not_an_error(db):
    samples = scrape(db)
    assert value(samples, "zasync_queues_up") == 0
    assert not [k for k in samples if k[0] == "zasync_queue_jobs"]
    # The process's metrics are there all the same.
    assert value(samples, "zasync_job_attempts_total", outcome="succeeded") >= 0


# -- the process, counted as its dispatchers run --------------------------------


def test_histograms_count_the_jobs_run(db, queue, dispatcher):
    moves = Moves(db)
    done = [queue.put(zasync.Job(jobfuncs.add, n, 1)) for n in range(4)]
    failed = [queue.put(zasync.Job(jobfuncs.fail, "no")) for _ in range(2)]
    transaction.commit()
    for job in done + failed:
        wait_for_result(job)
    moved = moves.wait(
        {
            ("zasync_job_attempts_total", "succeeded"): 4,
            ("zasync_job_attempts_total", "failed"): 2,
        }
    )
    assert moved[("zasync_job_attempts_total", "succeeded")] == 4
    assert moved[("zasync_job_attempts_total", "failed")] == 2
    assert moved[("zasync_job_attempts_total", "retried")] == 0
    assert moved[("zasync_job_duration_seconds_count", "succeeded")] == 4
    assert moved[("zasync_job_duration_seconds_count", "failed")] == 2
    assert moved[("pickup", None)] == 6
    assert moved[("rounds", None)] > 0


def test_retries_and_failures_move_their_counters(db, queue, dispatcher):
    moves = Moves(db)
    policy = RetryWithDelay(delay=datetime.timedelta(0), max_attempts=5, jitter=0)
    job = queue.put(
        zasync.Job(jobfuncs.fail_first, str(uuid.uuid4()), 2, "ok"),
        retry_policy=policy,
    )
    transaction.commit()
    assert wait_for_result(job) == "ok"
    moved = moves.wait(
        {
            ("zasync_job_attempts_total", "retried"): 2,
            ("zasync_job_attempts_total", "succeeded"): 1,
        }
    )
    assert moved[("zasync_job_attempts_total", "retried")] == 2
    assert moved[("zasync_job_duration_seconds_count", "retried")] == 2
    assert moved[("zasync_job_attempts_total", "succeeded")] == 1
    assert moved[("zasync_job_attempts_total", "failed")] == 0
    assert moved[("pickup", None)] == 3  # one per attempt


def test_conflicts_postpone_and_are_counted_by_reason(db, queue, dispatcher):
    moves = Moves(db)
    # More conflicts in a row than a thread retries at once: put back once.
    job = queue.put(zasync.Job(jobfuncs.conflict_first, str(uuid.uuid4()), 8, "late"))
    transaction.commit()
    assert wait_for_result(job, seconds=20) == "late"
    assert job.postponements == 1
    moved = moves.wait(
        {
            ("zasync_job_postponements_total", "conflict"): 1,
            ("zasync_transient_errors_total", "conflict"): 8,
            ("zasync_job_attempts_total", "succeeded"): 1,
        }
    )
    assert moved[("zasync_job_postponements_total", "conflict")] == 1
    assert moved[("zasync_job_postponements_total", "storage_error")] == 0
    assert moved[("zasync_job_attempts_total", "retried")] == 0  # not a retry
    assert dispatcher.stats["postponed_conflict"] == 1


def test_the_process_metrics_are_an_observer_installed_once():
    observer = metrics.process_metrics()
    assert verifyObject(IDispatcherObserver, observer)
    assert metrics.process_metrics() is observer
    assert dispatcher_module._observers.count(observer) == 1


def test_an_observer_that_raises_does_not_hurt_the_jobs(queue, dispatcher):
    class Raising:
        calls = 0

        def counted(self, what, n):
            raise RuntimeError("a broken observer")

        def attempt_ended(self, outcome, pickup, duration):
            Raising.calls += 1
            raise RuntimeError("a broken observer")

    broken = Raising()
    dispatcher_module.add_observer(broken)
    try:
        job = queue.put(zasync.Job(jobfuncs.add, 20, 22))
        transaction.commit()
        assert wait_for_result(job) == 42
        wait_for(lambda: Raising.calls, 10, lambda: None, lambda: "no call")
    finally:
        dispatcher_module.remove_observer(broken)
    assert broken not in dispatcher_module._observers


@pytest.mark.parametrize(
    ("queued", "begin_after", "started", "ended", "expected"),
    [
        # From queued: begin_after was earlier (the default: the queue time).
        (0, 0, 3, 10, (3.0, 7.0)),
        # From begin_after when it is later: a delayed job or a retry.
        (0, 5, 6, 8, (1.0, 2.0)),
        # Another machine's clock ahead of ours: never negative.
        (9, 9, 3, 4, (0.0, 1.0)),
    ],
)
def test_pickup_and_duration_of_an_attempt(
    queued, begin_after, started, ended, expected
):
    def at(seconds):
        return jobfuncs.NOW + datetime.timedelta(seconds=seconds)

    job = types.SimpleNamespace(
        queued=at(queued), begin_after=at(begin_after), started=at(started), ended=None
    )
    assert attempt_times(job, at(ended)) == expected
    job.ended = at(ended)
    assert attempt_times(job) == expected
    job.started = None
    assert attempt_times(job) == (0.0, 0.0)
