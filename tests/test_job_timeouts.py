"""Per-job time limits: queue.put(..., timeout=), queue.default_timeout."""

import datetime
import json

import pytest
import transaction
import ZODB
import ZODB.FileStorage
from persistent.list import PersistentList

import stopfuncs
import zasync
from zasync import admin
from zasync.cli import main
from zasync.exceptions import JobTimedOut
from zasync.retry import RetryWithDelay
from zasync.testing import wait_for, wait_for_result, wait_for_start


def _put(conn, queue, func, *args, **options):
    job = queue.put(zasync.Job(func, *args), **options)
    transaction.commit()
    return job


@pytest.fixture
def box(conn):
    conn.root()["box"] = box = PersistentList()
    transaction.commit()
    return box


def _reread(conn, obj):
    transaction.begin()
    return list(obj)


def test_a_job_past_its_time_limit_is_failed_and_its_writes_never_commit(
    conn, queue, box, dispatcher
):
    name = "limit-writes"
    job = _put(conn, queue, stopfuncs.write_then_block, box, name, timeout=0.3)
    assert job.timeout == datetime.timedelta(seconds=0.3)
    result = wait_for_result(job, 10)
    assert isinstance(result, zasync.Failure)
    assert result.check(JobTimedOut)
    assert "ran longer than its time limit of 0:00:00.300000" in str(result.value)
    assert job.failed and job.attempts == 1
    assert stopfuncs.events[f"{name}.started"].is_set()
    assert _reread(conn, box) == []  # the job's write did not commit
    wait_for(
        lambda: dispatcher.pool.abandoned_threads == 1,
        10,
        lambda: None,
        lambda: "the timed-out job's thread was not abandoned",
    )
    # Its code returns only now; still nothing of it commits, and the job
    # keeps the one outcome it has.
    stopfuncs.events[name].set()
    wait_for(
        lambda: dispatcher.pool.abandoned_threads == 0,
        10,
        lambda: None,
        lambda: "the timed-out thread did not end",
    )
    assert _reread(conn, box) == []
    assert job.result.check(JobTimedOut)
    assert dispatcher.stats["timed_out"] == 1
    assert dispatcher.stats["failed"] == 1 and dispatcher.stats["completed"] == 0
    # Reconciled: indexed among the failed jobs, its slot released.
    wait_for(
        lambda: not list(queue.claimed_jobs()),
        10,
        transaction.begin,
        lambda: "the timed-out job was not reconciled",
    )
    counts = queue.counts()
    assert counts["failed"] == 1 and counts["active"] == 0


def test_the_slot_of_a_timed_out_job_is_freed_for_another_job(
    conn, queue, box, start_dispatcher
):
    dispatcher = start_dispatcher(agent_size=1)
    name = "limit-slot"
    stuck = _put(conn, queue, stopfuncs.write_then_block, box, name, timeout=0.3)
    wait_for_start(stuck)
    after = _put(conn, queue, stopfuncs.quick, "ran")
    # Only one thread may run jobs: the second one runs while the first
    # one's code is still blocked, because its slot was freed.
    assert wait_for_result(after, 10) == "ran"
    assert not stopfuncs.events[name].is_set()
    assert stuck.result.check(JobTimedOut)
    assert dispatcher.pool.abandoned_threads == 1
    stopfuncs.events[name].set()
    wait_for(
        lambda: dispatcher.pool.abandoned_threads == 0,
        10,
        lambda: None,
        lambda: "the timed-out thread did not end",
    )
    assert _reread(conn, box) == []
    # The pool keeps working with the one slot it has.
    again = _put(conn, queue, stopfuncs.quick, "again")
    assert wait_for_result(again, 10) == "again"


def test_the_queue_default_applies_to_jobs_without_their_own(
    conn, queue, box, dispatcher
):
    assert queue.default_timeout is None
    queue.default_timeout = 0.3
    transaction.commit()
    name = "limit-default"
    job = _put(conn, queue, stopfuncs.write_then_block, box, name)
    assert job.timeout is None
    assert job.time_limit == datetime.timedelta(seconds=0.3)
    assert wait_for_result(job, 10).check(JobTimedOut)
    stopfuncs.events[name].set()
    # A job's own limit wins over the queue's.
    long = _put(conn, queue, stopfuncs.quick, "in time", timeout=60)
    assert long.time_limit == datetime.timedelta(seconds=60)
    assert wait_for_result(long, 10) == "in time"


def test_a_job_that_ends_in_time_is_not_touched(conn, queue, box, dispatcher):
    job = _put(conn, queue, stopfuncs.quick, 42, timeout=datetime.timedelta(hours=1))
    assert wait_for_result(job, 10) == 42
    assert dispatcher.stats["timed_out"] == 0
    assert not dispatcher.pool.next_deadline()


def test_the_timeout_asks_the_job_to_stop_where_it_checks(conn, queue, box, dispatcher):
    name = "limit-check"
    job = _put(conn, queue, stopfuncs.check_until_stopped, box, name, timeout=0.3)
    assert wait_for_result(job, 10).check(JobTimedOut)
    wait_for(
        lambda: stopfuncs.seen.get(f"{name}.raised"),
        10,
        lambda: None,
        lambda: "check_cancelled did not raise in the job",
    )
    assert stopfuncs.seen[f"{name}.raised"] == "JobTimedOut"
    assert stopfuncs.seen[name] == "cancelled"
    assert _reread(conn, box) == []


def test_the_retry_policy_decides_about_a_timed_out_job(conn, queue, box, dispatcher):
    name = "limit-retry"
    job = queue.put(
        zasync.Job(stopfuncs.write_then_block, box, name),
        timeout=0.3,
        retry_policy=RetryWithDelay(
            delay=0, max_attempts=2, jitter=0, retry_on=(JobTimedOut,)
        ),
    )
    transaction.commit()
    # Retried once (a second attempt, timed out too), then failed.
    assert wait_for_result(job, 20).check(JobTimedOut)
    assert job.attempts == 2
    stopfuncs.events[name].set()
    assert dispatcher.stats["retried"] == 1


@pytest.mark.parametrize(
    "value, error, words",
    [
        (0, ValueError, "timeout (how long the job may run) must be a positive"),
        (-5, ValueError, "must be a positive duration"),
        ("10", TypeError, "must be a datetime.timedelta or a number of seconds"),
        (True, TypeError, "must be a datetime.timedelta or a number of seconds"),
    ],
)
def test_bad_timeouts_are_refused_and_nothing_is_queued(
    conn, queue, value, error, words
):
    with pytest.raises(error, match=words.replace("(", r"\(").replace(")", r"\)")):
        queue.put(zasync.Job(stopfuncs.quick, 1), timeout=value)
    with pytest.raises(error):
        queue.default_timeout = value
    with pytest.raises(error):
        zasync.Job(stopfuncs.quick, 1).timeout = value
    transaction.commit()
    transaction.begin()
    assert len(queue) == 0
    assert queue.default_timeout is None


def test_a_queue_stored_before_time_limits_has_no_default(conn, queue):
    # The class default stands in for what an older queue never stored.
    assert "_default_timeout" not in queue.__dict__
    assert queue.default_timeout is None
    queue.default_timeout = datetime.timedelta(minutes=5)
    transaction.commit()
    queue.default_timeout = None
    transaction.commit()
    assert queue.default_timeout is None


class _ShiftedClock:
    """The time now, plus a shift the test sets: the dispatcher's clock."""

    def __init__(self):
        self.shift = datetime.timedelta(0)

    def __call__(self):
        return zasync.clock.utcnow() + self.shift


def test_the_limit_is_judged_by_the_dispatchers_clock(
    conn, queue, box, start_dispatcher
):
    the_clock = _ShiftedClock()
    dispatcher = start_dispatcher(clock=the_clock)
    name = "limit-clock"
    job = _put(conn, queue, stopfuncs.write_then_block, box, name, timeout=60)
    wait_for_start(job)
    assert dispatcher.pool.next_deadline() == job.started + job.time_limit
    rounds = dispatcher.stats["rounds"]
    wait_for(
        lambda: dispatcher.stats["rounds"] >= rounds + 3,
        10,
        lambda: None,
        lambda: "the dispatcher ran no rounds",
    )
    transaction.begin()
    assert job.status == zasync.status.ACTIVE  # well within its minute
    the_clock.shift = datetime.timedelta(seconds=61)
    dispatcher.wake()
    result = wait_for_result(job, 10)
    assert result.check(JobTimedOut)
    assert "time limit of 0:01:00 (it had run 61." in str(result.value)
    stopfuncs.events[name].set()


def test_a_commit_of_the_jobs_own_after_its_limit_is_refused(
    conn, queue, box, dispatcher
):
    name = "limit-own-commit"
    job = _put(conn, queue, stopfuncs.block_then_commit, box, name, timeout=0.3)
    assert wait_for_result(job, 10).check(JobTimedOut)
    stopfuncs.events[name].set()
    wait_for(
        lambda: stopfuncs.seen.get(name),
        10,
        lambda: None,
        lambda: "the job did not try to commit",
    )
    assert stopfuncs.seen[name] == "DoomedTransaction"
    assert _reread(conn, box) == []
    assert job.result.check(JobTimedOut)


# -- admin and zasync timeout -------------------------------------------------


def test_admin_sets_and_clears_a_queue_default(conn, queue):
    queues = zasync.get_queues(conn)
    done = admin.set_default_timeout(queues, 90)
    assert done == {"queue": "default", "default_timeout": 90.0, "was": None}
    assert queue.default_timeout == datetime.timedelta(seconds=90)
    with pytest.raises(admin.AdminError, match="must be a positive duration"):
        admin.set_default_timeout(queues, -1)
    assert queue.default_timeout == datetime.timedelta(seconds=90)
    done = admin.set_default_timeout(queues, None)
    assert done == {"queue": "default", "default_timeout": None, "was": 90.0}


@pytest.fixture
def cli_conf(tmp_path):
    path = tmp_path / "zodb.conf"
    path.write_text(
        f"<zodb>\n  <filestorage>\n    path {tmp_path / 'cli.fs'}\n"
        f"  </filestorage>\n</zodb>\n"
    )
    return path


def _cli(capsys, conf, *args):
    try:
        code = main([*args, "--zodb-conf", str(conf)])
    except SystemExit as exc:
        code = exc.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _stored_default(tmp_path):
    db = ZODB.DB(ZODB.FileStorage.FileStorage(str(tmp_path / "cli.fs")))
    try:
        conn = db.open()
        value = zasync.get_queues(conn)[""].default_timeout
        transaction.commit()  # the queues, installed by the first call
        conn.close()
        return value
    finally:
        db.close()


def test_zasync_timeout_sets_the_default_of_a_queue(tmp_path, cli_conf, capsys):
    assert _stored_default(tmp_path) is None  # installs the queues
    code, out, err = _cli(capsys, cli_conf, "timeout", "300")
    assert (code, err) == (0, "")
    assert out == (
        "queue default: jobs without a time limit of their own are failed "
        "after running 300s (jobs running now keep theirs)\n"
    )
    assert _stored_default(tmp_path) == datetime.timedelta(seconds=300)
    code, out, err = _cli(capsys, cli_conf, "timeout", "none", "--json")
    assert code == 0
    assert json.loads(out) == {
        "queue": "default",
        "default_timeout": None,
        "was": 300.0,
    }
    assert _stored_default(tmp_path) is None


@pytest.mark.parametrize("bad", ["soon", "-3", "nan"])
def test_zasync_timeout_refuses_what_is_no_time_limit(tmp_path, cli_conf, capsys, bad):
    assert _stored_default(tmp_path) is None
    code, out, err = _cli(capsys, cli_conf, "timeout", bad)
    assert code == 2 and out == ""
    assert "'none' for no time limit" in err
    assert _stored_default(tmp_path) is None


def test_the_callbacks_of_a_timed_out_job_get_its_failure(conn, queue, box, dispatcher):
    name = "limit-callbacks"
    job = zasync.Job(stopfuncs.write_then_block, box, name)
    callback = job.add_callback(stopfuncs.describe)
    job = queue.put(job, timeout=0.3)
    transaction.commit()
    assert wait_for_result(job, 10).check(JobTimedOut)
    assert wait_for_result(callback, 10) == "failed: JobTimedOut"
    stopfuncs.events[name].set()
    wait_for(
        lambda: not list(queue.claimed_jobs()),
        10,
        transaction.begin,
        lambda: "the timed-out job kept its slot",
    )


def test_a_pending_job_may_be_given_a_limit_in_the_transaction_that_queued_it(
    conn, queue, box, dispatcher
):
    # As for a job queued through an API without the argument (Plone's).
    name = "limit-set-later"
    job = queue.put(zasync.Job(stopfuncs.write_then_block, box, name))
    job.timeout = datetime.timedelta(seconds=0.3)
    transaction.commit()
    assert wait_for_result(job, 10).check(JobTimedOut)
    stopfuncs.events[name].set()
