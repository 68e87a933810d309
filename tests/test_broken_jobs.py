"""One bad object must not stall the cluster (issue 14): a job whose class,
or whose retry policy's class, cannot be imported any more is set aside
with its reason, once, and every other job and every peer goes on. Each
test stores the object for real, removes its module and opens a fresh
database on the same FileStorage (see vanishing.py), then runs a real
dispatcher with 50 healthy jobs queued after the bad one."""

import datetime
import logging
import uuid

import transaction
from ZODB.broken import Broken

import jobfuncs
import zasync
from vanishing import JOB_SUBCLASS, RETRY_POLICY, Vanishing, opened
from zasync import admin, clock
from zasync.registry import Agent, DispatcherRecord
from zasync.status import ACTIVE, PENDING
from zasync.testing import wait_for_all_jobs, wait_for_result

HEALTHY = 50
DAY = datetime.timedelta(days=1)


def _put_healthy(queue):
    return [queue.put(zasync.Job(jobfuncs.add, n, 1)).id for n in range(HEALTHY)]


def _check_healthy_ran(queue, ids):
    results = [queue.get(job_id).result for job_id in ids]
    assert results == [n + 1 for n in range(HEALTHY)]


def _set_aside_lines(caplog, job_id):
    return [
        record
        for record in caplog.records
        if "set aside" in record.getMessage() and str(job_id) in record.getMessage()
    ]


def _claim_for(queue, uuid_, job, last_ping):
    """Make ``job`` ACTIVE, claimed by dispatcher ``uuid_`` whose last
    heartbeat was at ``last_ping`` (a worker killed while running it), with
    a death interval of half a second."""
    # Found dead by storage time (see DispatcherRecord.looks_dead): half a
    # second after the judge began watching it.
    record = queue.dispatchers[uuid_] = DispatcherRecord(uuid_, last_ping, 0.1, 0.5)
    agent = record.agents["main"] = Agent("main", size=1)
    assert queue.claim(agent, uuid_, 1, clock.utcnow(), start=1) == [job]
    assert job.status == ACTIVE


def test_removed_job_subclass_is_set_aside_once_and_the_rest_runs(
    tmp_path, monkeypatch, caplog
):
    gone = Vanishing(tmp_path, monkeypatch, JOB_SUBCLASS)
    module = gone.load()
    path = tmp_path / "Data.fs"
    with opened(path) as conn:
        queue = zasync.get_queues(conn)[""]
        # First in run order: the old loop died claiming it, every round.
        bad_id = queue.put(module.CustomJob(jobfuncs.add, 1, 1), priority=5).id
        healthy = _put_healthy(queue)
        transaction.commit()
    gone.remove()
    caplog.set_level(logging.ERROR, logger="zasync.dispatcher")
    with opened(path) as conn:
        queue = zasync.get_queues(conn)[""]
        assert isinstance(queue.get(bad_id), Broken)
        dispatcher = zasync.start(conn.db(), poll_interval=0.05, ping_interval=0.1)
        try:
            wait_for_all_jobs(conn, seconds=10)
            assert dispatcher._loop_thread.is_alive()
            _check_healthy_ran(queue, healthy)
            aside = queue.set_aside_jobs
            assert list(aside) == [bad_id]
            assert f"{gone.name}.CustomJob cannot be imported" in aside[bad_id][1]
            assert len(queue) == 0
            counts = queue.counts()
            assert counts["succeeded"] == HEALTHY
        finally:
            dispatcher.stop(5)
    assert len(_set_aside_lines(caplog, bad_id)) == 1

    # The code is back: the job is put back and runs, as what it is.
    gone.restore()
    with opened(path) as conn:
        queue = zasync.get_queues(conn)[""]
        job = queue.put_back_set_aside(bad_id)
        assert type(job).__name__ == "CustomJob"
        transaction.commit()
        assert queue.set_aside_jobs == {}
        dispatcher = zasync.start(conn.db(), poll_interval=0.05, ping_interval=0.1)
        try:
            assert wait_for_result(job, seconds=10) == 2
        finally:
            dispatcher.stop(5)


def test_removed_retry_policy_on_a_dead_peer_does_not_stall_the_others(
    tmp_path, monkeypatch, caplog
):
    """A healthy dispatcher recovering a dead peer's job whose retry policy
    cannot be loaded sets that job aside; its rounds go on."""
    gone = Vanishing(tmp_path, monkeypatch, RETRY_POLICY)
    module = gone.load()
    path = tmp_path / "Data.fs"
    with opened(path) as conn:
        queue = zasync.get_queues(conn)[""]
        bad = queue.put(
            zasync.Job(jobfuncs.add, 1, 1), retry_policy=module.CustomPolicy()
        )
        _claim_for(queue, "dead-peer", bad, clock.utcnow() - DAY)
        bad_id = bad.id
        healthy = _put_healthy(queue)
        transaction.commit()
    gone.remove()
    caplog.set_level(logging.ERROR, logger="zasync.dispatcher")
    with opened(path) as conn:
        queue = zasync.get_queues(conn)[""]
        dispatcher = zasync.start(conn.db(), poll_interval=0.05, ping_interval=0.1)
        try:
            wait_for_all_jobs(conn, seconds=10)
            assert dispatcher._loop_thread.is_alive()
            _check_healthy_ran(queue, healthy)
            reason = queue.set_aside_jobs[bad_id][1]
            assert "retry policy" in reason and gone.name in reason
            job = queue.get(bad_id)
            # Put back unrun (its attempt not counted), out of the run order.
            assert (job.status, job.attempts, job.pending_key) == (PENDING, 0, None)
            assert len(queue.dispatchers["dead-peer"].agents["main"].jobs) == 0
        finally:
            dispatcher.stop(5)
    assert len(_set_aside_lines(caplog, bad_id)) == 1

    gone.restore()
    with opened(path) as conn:
        queue = zasync.get_queues(conn)[""]
        job = queue.put_back_set_aside(bad_id)
        transaction.commit()
        dispatcher = zasync.start(conn.db(), poll_interval=0.05, ping_interval=0.1)
        try:
            assert wait_for_result(job, seconds=10) == 2
        finally:
            dispatcher.stop(5)


def test_worker_holding_a_job_with_a_removed_policy_starts_again(tmp_path, monkeypatch):
    """The worker that was running such a job recovers it at its restart
    (same UUID): it starts, sets the job aside, and runs the others."""
    gone = Vanishing(tmp_path, monkeypatch, RETRY_POLICY)
    module = gone.load()
    path = tmp_path / "Data.fs"
    own = str(uuid.uuid4())
    with opened(path) as conn:
        queue = zasync.get_queues(conn)[""]
        bad = queue.put(
            zasync.Job(jobfuncs.add, 1, 1), retry_policy=module.CustomPolicy()
        )
        _claim_for(queue, own, bad, clock.utcnow())
        bad_id = bad.id
        healthy = _put_healthy(queue)
        transaction.commit()
    gone.remove()
    with opened(path) as conn:
        queue = zasync.get_queues(conn)[""]
        dispatcher = zasync.start(conn.db(), uuid=own, poll_interval=0.05)
        try:
            wait_for_all_jobs(conn, seconds=10)
            _check_healthy_ran(queue, healthy)
            assert list(queue.set_aside_jobs) == [bad_id]
        finally:
            dispatcher.stop(5)


def test_claimed_job_of_a_removed_class_is_shown_then_set_aside(
    tmp_path, monkeypatch, caplog
):
    """A job claimed (ACTIVE) by a dead peer whose class is then removed:
    the status report and listings show it, and the live dispatcher that
    recovers the peer sets it aside and goes on."""
    gone = Vanishing(tmp_path, monkeypatch, JOB_SUBCLASS)
    module = gone.load()
    path = tmp_path / "Data.fs"
    with opened(path) as conn:
        queue = zasync.get_queues(conn)[""]
        bad = queue.put(module.CustomJob(jobfuncs.add, 1, 1))
        _claim_for(queue, "dead-peer", bad, clock.utcnow() - DAY)
        bad_id = bad.id
        healthy = _put_healthy(queue)
        transaction.commit()
    gone.remove()
    caplog.set_level(logging.ERROR, logger="zasync.dispatcher")
    with opened(path) as conn:
        queues = zasync.get_queues(conn)
        queue = queues[""]
        report = admin.status_report(queues)
        assert report["queues"][0]["counts"]["active"] == 1
        jobs, _ = admin.find_jobs(queues, status="active")
        assert [job.id for job in jobs] == [bad_id]
        summary = admin.job_summary(jobs[0])
        assert summary["status"] == "active"
        assert f"{gone.name}.CustomJob cannot be imported" in summary["problem"]
        info = admin.describe_job(admin.get_job(queues, bad_id))
        assert info["class"] == f"{gone.name}.CustomJob"
        assert info["callable"] == "jobfuncs.add"
        dispatcher = zasync.start(conn.db(), poll_interval=0.05, ping_interval=0.1)
        try:
            wait_for_all_jobs(conn, seconds=10)
            _check_healthy_ran(queue, healthy)
            assert list(queue.set_aside_jobs) == [bad_id]
            assert len(queue.dispatchers["dead-peer"].agents["main"].jobs) == 0
            stored = queue.get(bad_id).__Broken_state__
            assert stored["_status"] == ACTIVE.value  # as stored
            assert queue.counts()["active"] == 0
        finally:
            dispatcher.stop(5)
    assert len(_set_aside_lines(caplog, bad_id)) == 1


def test_claim_sets_aside_a_broken_job_in_a_lane(tmp_path, monkeypatch):
    """Filed in a lane (not the inbox) when its class went away, the job
    is set aside by the claim just the same; unit level, no dispatcher."""
    gone = Vanishing(tmp_path, monkeypatch, JOB_SUBCLASS)
    module = gone.load()
    path = tmp_path / "Data.fs"
    with opened(path) as conn:
        queue = zasync.get_queues(conn)[""]
        bad_id = queue.put(module.CustomJob(jobfuncs.add, 1, 1), priority=5).id
        fine = queue.put(zasync.Job(jobfuncs.add, 2, 2))
        queue._file_inbox()
        record = queue.dispatchers["me"] = DispatcherRecord("me", clock.utcnow())
        record.agents["main"] = Agent("main", size=1)
        transaction.commit()
    gone.remove()
    with opened(path) as conn:
        queue = zasync.get_queues(conn)[""]
        agent = queue.dispatchers["me"].agents["main"]
        claimed = queue.claim(agent, "me", 1, clock.utcnow(), start=1)
        assert [job.id for job in claimed] == [fine.id]
        assert list(queue.set_aside_jobs) == [bad_id]
        transaction.commit()  # what was set aside can be stored
        assert len(queue) == 0
        assert claimed[0].status == ACTIVE
        with_aside = admin.find_jobs(zasync.get_queues(conn), status="set-aside")[0]
        assert admin.job_summary(with_aside[0])["status"] == "set-aside"


def test_careful_claims_never_raise_and_log_once(db, caplog):
    """The loop's fallback after failed rounds must not itself kill the
    loop: an error before any job is peeked (or while setting one aside) is
    logged once, with a count afterwards, and the next round goes on."""
    from zasync.dispatcher import Dispatcher

    conn = db.open()
    zasync.get_queues(conn)
    transaction.commit()
    conn.close()
    dispatcher = Dispatcher(db, poll_interval=0.05)
    dispatcher._conn = db.open(transaction_manager=dispatcher._tm)
    dispatcher._retry_transaction(dispatcher._register)
    calls = []

    def broken_claim(queue_name, peeked):
        calls.append(queue_name)
        raise RuntimeError("the storage is in a bad mood")

    dispatcher._claim_one = broken_claim
    caplog.set_level(logging.ERROR, logger="zasync.dispatcher")
    try:
        for _ in range(3):
            dispatcher._claim_carefully()  # used to re-raise
    finally:
        dispatcher._conn.close()
    assert calls == ["", "", ""]
    lines = [r for r in caplog.records if "bad mood" in r.getMessage()]
    assert len(lines) == 1
