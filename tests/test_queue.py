"""Queues: run order, reading, removing, counts, paging, unique keys, and
transactional enqueue (including concurrent puts on one database)."""

import datetime
import uuid

import pytest
import transaction
from ZODB.POSException import ConflictError

import jobfuncs
import zasync
from zasync import Status
from zasync.queue import Queue, Queues, get_queues
from zasync.registry import Agent, DispatcherRecord
from zasync.testing import inline, wait_for_all_jobs, wait_for_result

UTC = datetime.UTC
NOW = jobfuncs.NOW
SECOND = datetime.timedelta(seconds=1)


def job(*args):
    return zasync.Job(jobfuncs.echo, *args)


def labels(jobs):
    return [j.args[0] for j in jobs]


def claim_one(queue, now=NOW):
    """Claim a job as a registered dispatcher's agent would."""
    uid = str(uuid.uuid4())
    record = queue.dispatchers[uid] = DispatcherRecord(uid, now)
    agent = record.agents["main"] = Agent("main", size=1)
    return queue.claim(agent, uid, 1, now)


# -- queues ------------------------------------------------------------------------


def test_default_queue_exists(conn):
    """get_queues installs the queues with the default queue ''."""
    queues = get_queues(conn)
    assert isinstance(queues, Queues)
    assert "" in queues
    assert isinstance(queues[""], Queue)
    assert queues[""].name == ""
    assert list(queues) == [""]
    assert get_queues(conn) is queues


def test_create_queue(conn):
    """create(name) makes a queue, or returns the existing one."""
    queues = get_queues(conn)
    other = queues.create("other")
    assert other.name == "other"
    assert queues["other"] is other
    assert queues.create("other") is other
    assert sorted(queues) == ["", "other"]
    assert len(queues) == 2


def test_missing_queue_says_how_to_create_it(conn):
    """queues[name] for a missing queue names create()."""
    with pytest.raises(KeyError, match="create"):
        get_queues(conn)["missing"]


def test_queues_are_stored_and_shared(db, conn):
    """Queues created and committed are seen by other connections."""
    get_queues(conn).create("reports")
    conn.transaction_manager.commit()
    other = jobfuncs.open_connection(db)
    try:
        assert "reports" in get_queues(other)
    finally:
        other.close()


# -- run order ---------------------------------------------------------------------


def test_fifo_within_a_priority(queue):
    """Jobs of the same priority run in order of arrival."""
    for label in "abcde":
        queue.put(job(label))
    assert labels(queue) == list("abcde")


def test_higher_priority_runs_first(queue):
    """A higher priority runs first, whatever the arrival order."""
    queue.put(job("low"), priority=-5, now=NOW)
    queue.put(job("normal"), now=NOW)
    queue.put(job("high"), priority=10, now=NOW)
    queue.put(job("normal2"), now=NOW)
    queue.put(job("highest"), priority=2**31 - 1, now=NOW)
    queue.put(job("lowest"), priority=-(2**31 - 1), now=NOW)
    assert labels(queue) == ["highest", "high", "normal", "normal2", "low", "lowest"]


def test_begin_after_orders_within_a_priority(queue):
    """Within a priority, an earlier begin_after runs first."""
    queue.put(job("later"), begin_after=NOW + 2 * SECOND, now=NOW)
    queue.put(job("sooner"), begin_after=NOW + SECOND, now=NOW)
    queue.put(job("urgent-later"), begin_after=NOW + 3 * SECOND, priority=1, now=NOW)
    assert labels(queue) == ["urgent-later", "sooner", "later"]


def test_same_begin_after_runs_in_arrival_order(queue):
    """With equal priority and begin_after, the job put first runs first,
    even when it was created after the other."""
    created_first = job("created-first")
    created_second = job("created-second")
    queue.put(created_second, begin_after=NOW, now=NOW)
    queue.put(created_first, begin_after=NOW, now=NOW)
    assert labels(queue) == ["created-second", "created-first"]


def test_order_spans_quota_lanes(queue):
    """Jobs naming different quotas still come in one run order."""
    queue.quotas.create("q", size=1)
    queue.put(job("a"), now=NOW)
    queue.put(job("b"), quota_names=("q",), now=NOW + SECOND)
    queue.put(job("c"), now=NOW + 2 * SECOND)
    queue.put(job("d"), quota_names=("q",), priority=1, now=NOW + 3 * SECOND)
    assert labels(queue) == ["d", "a", "b", "c"]


# -- reading -------------------------------------------------------------------------


def test_len_iter_and_index(queue):
    """len() counts pending jobs; iteration and [] follow run order."""
    assert len(queue) == 0
    assert list(queue) == []
    jobs = [queue.put(job(label)) for label in "xyz"]
    assert len(queue) == 3
    assert list(queue) == jobs
    assert queue[0] is jobs[0]
    assert queue[2] is jobs[2]
    assert queue[-1] is jobs[2]
    with pytest.raises(IndexError):
        queue[3]


def test_put_callable_wraps_it_in_a_job(queue):
    """put(callable) makes a Job of it."""
    put = queue.put(jobfuncs.which_job)
    assert isinstance(put, zasync.Job)
    assert put.callable is jobfuncs.which_job
    assert put.status == Status.PENDING
    assert put.queue is queue


def test_get_by_id(queue):
    """get(id) finds a job of this queue, any status; default otherwise."""
    pending = queue.put(job("p"))
    with inline():
        done = queue.put(job("d"))
    assert queue.get(pending.id) is pending
    assert queue.get(done.id) is done
    assert queue.get(12345) is None
    assert queue.get(12345, "nothing") == "nothing"


def test_pull_returns_first_as_new_and_it_can_be_put_again(queue):
    """pull(0) takes the first job out, NEW again, ready to be put."""
    first = queue.put(job("first"))
    second = queue.put(job("second"))
    pulled = queue.pull(0)
    assert pulled is first
    assert pulled.status == Status.NEW
    assert pulled.queue is None
    assert list(queue) == [second]
    assert queue.get(first.id) is None
    assert queue.counts()["pending"] == 1
    queue.put(pulled)
    assert pulled.status == Status.PENDING
    assert list(queue) == [second, pulled]


def test_pull_by_index(queue):
    """pull(i) takes the job at index i in run order."""
    jobs = [queue.put(job(label)) for label in "abc"]
    assert queue.pull(1) is jobs[1]
    assert list(queue) == [jobs[0], jobs[2]]
    with pytest.raises(IndexError):
        queue.pull(5)


def test_remove_pending_job(queue):
    """remove() of a pending job sets it back to NEW."""
    keep = queue.put(job("keep"))
    gone = queue.put(job("gone"), unique_key="gone")
    queue.remove(gone)
    assert gone.status == Status.NEW
    assert gone.queue is None
    assert list(queue) == [keep]
    assert queue.get(gone.id) is None
    # Its unique key is free again.
    again = queue.put(job("again"), unique_key="gone")
    assert again is not gone


def test_remove_completed_job(queue):
    """remove() of a completed job forgets it: counts and listings drop it."""
    with inline():
        ok = queue.put(job("ok"))
        bad = queue.put(zasync.Job(jobfuncs.fail, "bad"))
    assert queue.counts()["completed"] == 2
    queue.remove(ok)
    queue.remove(bad)
    counts = queue.counts()
    assert counts["completed"] == counts["succeeded"] == counts["failed"] == 0
    assert queue.jobs(status="completed") == []
    assert queue.get(ok.id) is None
    assert ok.status == Status.COMPLETED
    assert ok.result == (("ok",), {})


def test_remove_active_job_raises(queue):
    """A running job cannot be removed."""
    queue.put(job("run"))
    (active,) = claim_one(queue)
    assert active.status == Status.ACTIVE
    with pytest.raises(ValueError, match="only waiting, pending or completed"):
        queue.remove(active)
    assert queue.get(active.id) is active
    assert queue.counts()["active"] == 1


def test_remove_job_of_another_queue_raises(conn, queue):
    """remove() only removes this queue's jobs."""
    other = get_queues(conn).create("other")
    foreign = other.put(job("foreign"))
    with pytest.raises(ValueError, match="not in queue"):
        queue.remove(foreign)
    assert list(other) == [foreign]


# -- counts and paging --------------------------------------------------------------------


def test_counts_keys_and_values(queue):
    """counts() has every status but NEW, plus succeeded and failed."""
    empty = queue.counts()
    assert set(empty) == {
        "waiting",
        "pending",
        "assigned",
        "active",
        "callbacks",
        "completed",
        "succeeded",
        "failed",
    }
    assert set(empty.values()) == {0}

    for label in "abc":
        queue.put(job(label))
    claim_one(queue)
    with inline():
        queue.put(job("done"))
        queue.put(zasync.Job(jobfuncs.fail))
        queue.put(zasync.Job(jobfuncs.fail))
    assert queue.counts() == {
        "waiting": 0,
        "pending": 2,
        "assigned": 0,
        "active": 1,
        "callbacks": 0,
        "completed": 3,
        "succeeded": 1,
        "failed": 2,
    }


def test_jobs_by_status(queue):
    """jobs(status=...) lists the jobs with that status."""
    pending = [queue.put(job(label)) for label in "ab"]
    (active,) = claim_one(queue)
    with inline():
        done = queue.put(job("done"))
    assert queue.jobs(status="pending") == pending[1:]
    assert queue.jobs(status=Status.ACTIVE) == [active]
    assert queue.jobs(status="completed") == [done]
    assert queue.jobs(status="callbacks") == []
    assert set(queue.jobs()) == {active, pending[1], done}


def test_jobs_failed_filter_newest_first(queue):
    """For completed jobs, failed=True/False filters, newest first."""
    with inline():
        made = [
            queue.put(zasync.Job(jobfuncs.fail, str(i)) if i % 2 else job(i))
            for i in range(6)
        ]
    failed = [made[5], made[3], made[1]]
    succeeded = [made[4], made[2], made[0]]
    assert queue.jobs(status="completed", failed=True) == failed
    assert queue.jobs(status="completed", failed=False) == succeeded
    assert queue.jobs(status="completed") == list(reversed(made))


def test_jobs_paging(queue):
    """start and limit page through a listing."""
    pending = [queue.put(job(i)) for i in range(7)]
    assert queue.jobs(status="pending", start=0, limit=3) == pending[0:3]
    assert queue.jobs(status="pending", start=3, limit=3) == pending[3:6]
    assert queue.jobs(status="pending", start=6, limit=3) == pending[6:]
    assert queue.jobs(status="pending", start=9, limit=3) == []
    assert queue.jobs(status="pending", start=2) == pending[2:]
    with inline():
        failed = [queue.put(zasync.Job(jobfuncs.fail, str(i))) for i in range(5)]
    newest_first = list(reversed(failed))
    assert (
        queue.jobs(status="completed", failed=True, start=1, limit=2)
        == (newest_first[1:3])
    )
    assert queue.jobs(status="completed", failed=False, limit=2) == []


# -- begin_after and next_due ------------------------------------------------------------


def test_begin_after_as_timedelta(queue):
    """A timedelta begin_after is counted from now."""
    put = queue.put(job("x"), begin_after=datetime.timedelta(minutes=5), now=NOW)
    assert put.begin_after == NOW + datetime.timedelta(minutes=5)
    assert put.queued == NOW


def test_begin_after_as_aware_datetime(queue):
    """An aware datetime begin_after is kept (as UTC)."""
    when = NOW + datetime.timedelta(hours=2)
    put = queue.put(job("x"), begin_after=when, now=NOW)
    assert put.begin_after == when
    assert put.begin_after.tzinfo is not None


def test_job_not_due_is_not_claimed(queue):
    """A job whose begin_after is in the future is not claimed yet."""
    queue.put(job("later"), begin_after=datetime.timedelta(minutes=1), now=NOW)
    assert claim_one(queue, now=NOW) == []
    assert labels(claim_one(queue, now=NOW + datetime.timedelta(minutes=1))) == [
        "later"
    ]


def test_next_due_with_only_future_jobs(queue):
    """next_due(now) is when the earliest job that is not due yet is due."""
    assert queue.next_due(NOW) is None
    queue.put(job("b"), begin_after=NOW + 20 * SECOND, now=NOW)
    queue.put(job("a"), begin_after=NOW + 10 * SECOND, now=NOW)
    queue.put(job("c"), begin_after=NOW + 5 * SECOND, priority=3, now=NOW)
    assert queue.next_due(NOW) == NOW + 5 * SECOND
    assert queue.next_due(NOW + 6 * SECOND) == NOW + 10 * SECOND
    assert queue.next_due(NOW + 30 * SECOND) is None


def test_next_due_ignores_due_jobs_but_sees_later_ones(queue):
    """A job that is due already does not hide a later job of the same
    priority from next_due()."""
    queue.put(job("due"), begin_after=NOW - SECOND, now=NOW)
    queue.put(job("later"), begin_after=NOW + 10 * SECOND, now=NOW)
    assert queue.next_due(NOW) == NOW + 10 * SECOND


# -- unique keys ------------------------------------------------------------------------------


def test_unique_key_returns_existing_pending_job(queue):
    """A second put with the same unique_key returns the first job."""
    first = queue.put(job("first"), unique_key="report-42")
    second = queue.put(job("second"), unique_key="report-42")
    assert second is first
    assert len(queue) == 1
    assert first.unique_key == "report-42"
    other = queue.put(job("other"), unique_key="report-43")
    assert other is not first
    assert len(queue) == 2


def test_unique_key_of_running_job_is_still_taken(queue):
    """While the job with the key runs, put returns it."""
    first = queue.put(job("first"), unique_key="k")
    claim_one(queue)
    assert first.status == Status.ACTIVE
    assert queue.put(job("second"), unique_key="k") is first
    assert len(queue) == 0


def test_unique_key_of_completed_job_is_free(queue):
    """Once the job with the key completed, the key may be used again."""
    first = queue.put(job("first"), unique_key="k")
    (claimed,) = claim_one(queue)
    claimed()  # what a worker does with a claimed job
    queue.reconcile(claimed, NOW)  # what its dispatcher does afterwards
    assert first.status == Status.COMPLETED
    assert queue.counts()["succeeded"] == 1
    fresh = queue.put(job("fresh"), unique_key="k")
    assert fresh is not first
    assert fresh.status == Status.PENDING
    assert queue.put(job("third"), unique_key="k") is fresh


# -- transactions --------------------------------------------------------------------------------


def test_put_then_abort_leaves_no_job(db):
    """Enqueue is transactional: abort and no job exists."""
    conn = db.open()  # the thread's transaction manager
    try:
        queue = get_queues(conn)[""]
        transaction.commit()
        queue.put(job("aborted"))
        assert len(queue) == 1
        transaction.abort()
        assert len(queue) == 0
        assert list(queue) == []
        assert set(queue.counts().values()) == {0}
        kept = queue.put(job("kept"))
        transaction.commit()
    finally:
        transaction.abort()
        conn.close()

    other = jobfuncs.open_connection(db)
    try:
        again = get_queues(other)[""]
        assert labels(again) == ["kept"]
        assert again.get(kept.id) is not None
    finally:
        other.close()


def test_put_is_invisible_to_others_until_commit(db, conn, queue):
    """Another connection sees a put only after it committed."""
    other = jobfuncs.open_connection(db)
    try:
        seen = get_queues(other)[""]
        queue.put(job("x"))
        assert len(seen) == 0
        conn.transaction_manager.commit()
        other.transaction_manager.begin()
        assert labels(seen) == ["x"]
    finally:
        other.close()


def _two_connections(db):
    one = jobfuncs.open_connection(db)
    two = jobfuncs.open_connection(db)
    return one, two


def _prefill(conn):
    """Commit a few jobs (and a unique key), so that concurrent changes
    meet non-empty BTrees as in real life."""
    queue = get_queues(conn)[""]
    for i in range(3):
        queue.put(job(f"old{i}"))
    queue.put(job("old-unique"), unique_key="another-key")
    conn.transaction_manager.commit()


def test_concurrent_puts_both_commit(db, conn):
    """Two transactions putting different jobs at once both commit."""
    _prefill(conn)
    one, two = _two_connections(db)
    try:
        get_queues(one)[""].put(job("from-one"))
        get_queues(two)[""].put(job("from-two"))
        one.transaction_manager.commit()
        two.transaction_manager.commit()
        two.transaction_manager.begin()
        got = labels(get_queues(two)[""])
        assert sorted(got[-2:]) == ["from-one", "from-two"]
        assert len(got) == 6
    finally:
        one.close()
        two.close()


def test_concurrent_unique_puts_end_with_one_job(db, conn):
    """Two transactions putting the same unique key at once: the second
    commit raises ConflictError; its retry finds the first's job."""
    _prefill(conn)
    one, two = _two_connections(db)
    try:
        first = get_queues(one)[""].put(job("one"), unique_key="nightly")
        get_queues(two)[""].put(job("two"), unique_key="nightly")
        one.transaction_manager.commit()
        with pytest.raises(ConflictError):
            two.transaction_manager.commit()
        two.transaction_manager.abort()

        # The retry, as a request would do it: same code, fresh state.
        retried = get_queues(two)[""].put(job("two"), unique_key="nightly")
        assert retried.id == first.id
        assert retried.args == ("one",)
        two.transaction_manager.commit()

        conn.transaction_manager.begin()
        queue = get_queues(conn)[""]
        keyed = [j for j in queue.jobs() if j.unique_key == "nightly"]
        assert len(keyed) == 1
        assert keyed[0].id == first.id
        assert len(queue) == 5
        assert queue.counts()["pending"] == 5
    finally:
        one.close()
        two.close()


def test_jobs_lists_a_completed_but_unindexed_job_once(queue):
    """A job its worker completed, not yet reconciled by its dispatcher, is
    listed once, among the completed."""
    queue.put(job("a"))
    (claimed,) = claim_one(queue)
    claimed.result = 1
    claimed.status = Status.COMPLETED
    listed = queue.jobs()
    assert listed.count(claimed) == 1
    assert queue.jobs(status="completed") == [claimed]


def test_a_job_put_by_an_aborted_transaction_can_be_put_again(db, queue, dispatcher):
    """A job made outside a retry loop: its first put was aborted, so
    nothing was stored; the retry puts it again and it runs once."""
    token = f"retry-{uuid.uuid4()}"
    made_once = zasync.Job(jobfuncs.fail_first, token, 0, "ran")
    queue.put(made_once)
    transaction.abort()
    assert len(queue) == 0
    assert queue.put(made_once) is made_once  # the retry
    assert (made_once.status, len(queue)) == (Status.PENDING, 1)
    transaction.commit()
    assert wait_for_result(made_once) == "ran"
    wait_for_all_jobs(queue._p_jar)
    assert jobfuncs.counters[token] == 1
    assert queue.counts()["completed"] == 1


def test_a_job_put_again_after_its_connection_closed(db, conn, queue):
    """The aborted put's queue may belong to a connection closed since."""
    first = jobfuncs.open_connection(db)
    made_once = job("made once")
    get_queues(first)[""].put(made_once)
    first.transaction_manager.abort()
    first.close()
    queue.put(made_once)
    conn.transaction_manager.commit()
    assert labels(queue) == ["made once"]


def test_a_job_that_is_really_queued_cannot_be_put_again(queue):
    """Uncommitted or committed, a job its queue holds is queued."""
    pending = queue.put(job("once"))
    with pytest.raises(ValueError, match="already queued"):
        queue.put(pending)  # same transaction, not committed yet
    transaction.commit()
    with pytest.raises(ValueError, match="already queued"):
        queue.put(pending)
    other = queue.put(job("other"))
    transaction.abort()
    assert other.forget_aborted_put() is True
    assert other.forget_aborted_put() is False  # NEW now: nothing to forget
    assert labels(queue) == ["once"]
