"""Cancelling a running job: zasync.admin.cancel_job / ``zasync cancel``
record a request that the job's code sees at zasync.local.check_cancelled(),
on whichever dispatcher runs it."""

import uuid

import pytest
import transaction
import ZODB
from persistent.list import PersistentList

import stopfuncs
import zasync
from zasync import admin, local
from zasync.cli import main
from zasync.exceptions import JobCancelled, NotInJobError
from zasync.retry import RetryWithDelay
from zasync.status import ACTIVE
from zasync.testing import wait_for_result, wait_for_start


@pytest.fixture
def box(conn):
    conn.root()["box"] = box = PersistentList()
    transaction.commit()
    return box


def _started(name, job=None):
    assert stopfuncs.events[f"{name}.started"].wait(10), f"{name} did not start"
    if job is not None:
        wait_for_start(job)  # and seen so by the test's connection


def _reread(obj):
    transaction.begin()
    return list(obj)


def test_a_running_job_stops_at_its_check_and_fails_cancelled(
    conn, queue, box, dispatcher
):
    name = "cancel-admin"
    # A policy that retries everything: a cancel is never retried all the same.
    job = queue.put(
        zasync.Job(stopfuncs.check_until_stopped, box, name),
        retry_policy=RetryWithDelay(delay=0, jitter=0, retry_on=(Exception,)),
    )
    transaction.commit()
    _started(name, job)
    queues = zasync.get_queues(conn)
    assert queues.find_job(job.id).status == ACTIVE
    cancelled = admin.cancel_job(queues, job.id, by="tester", reason="wrong input")
    assert cancelled is job and job.status == ACTIVE
    state = admin.cancel_state(job)
    assert state["by"] == "tester" and state["reason"] == "wrong input"
    assert "stops at its next check" in state["stops"]
    transaction.commit()
    result = wait_for_result(job, 10)
    assert result.check(JobCancelled)
    assert result.getErrorMessage() == (
        f"Job {job.id} (stopfuncs.check_until_stopped) was cancelled by tester "
        f"while it ran: wrong input"
    )
    assert job.attempts == 1 and dispatcher.stats["retried"] == 0
    assert stopfuncs.seen[name] == "cancelled"
    assert stopfuncs.seen[f"{name}.raised"] == "JobCancelled"
    assert _reread(box) == []  # nothing of the cancelled attempt committed
    assert admin.cancel_state(job)["stops"] == "the job has ended"


def test_a_second_request_keeps_the_first(conn, queue, box, dispatcher):
    name = "cancel-twice"
    job = queue.put(zasync.Job(stopfuncs.never_checks, box, name))
    transaction.commit()
    _started(name, job)
    queues = zasync.get_queues(conn)
    try:
        admin.cancel_job(queues, job.id, by="first")
        transaction.commit()
        admin.cancel_job(queues, job.id, by="second")
        transaction.commit()
        assert admin.cancel_state(job)["by"] == "first"
    finally:
        stopfuncs.events[name].set()
    # It never checked: it ran to its end, and its work is kept.
    assert wait_for_result(job, 10) == "ran to its end"
    assert _reread(box) == ["written"]


def test_a_job_that_never_checks_runs_on_until_its_time_limit(
    conn, queue, box, dispatcher
):
    name = "cancel-limit"
    job = queue.put(zasync.Job(stopfuncs.never_checks, box, name), timeout=0.5)
    transaction.commit()
    _started(name, job)
    admin.cancel_job(zasync.get_queues(conn), job.id, by="tester")
    assert admin.cancel_state(job)["stops"].endswith(
        "runs on until it ends, or until its time limit of 0:00:00.500000"
    )
    transaction.commit()
    assert wait_for_result(job, 10).check(zasync.exceptions.JobTimedOut)
    stopfuncs.events[name].set()
    assert _reread(box) == []


def test_a_job_asked_to_stop_before_it_starts_does_not_run(conn, queue, box, db):
    job = queue.put(zasync.Job(stopfuncs.must_not_run, box))
    transaction.commit()
    # As if a cancel reached it while claimed (or between two attempts).
    admin.request_cancel(job, "tester", "not wanted")
    transaction.commit()
    dispatcher = zasync.start(db, poll_interval=0.05)
    try:
        result = wait_for_result(job, 10)
    finally:
        dispatcher.stop(5)
    assert result.check(JobCancelled)
    assert result.getErrorMessage().endswith(
        "was cancelled by tester before it started: not wanted"
    )
    assert _reread(box) == []


def test_the_local_functions_need_a_job():
    with pytest.raises(NotInJobError):
        local.cancelled()
    with pytest.raises(NotInJobError):
        local.check_cancelled()


def test_a_job_called_directly_sees_a_request_in_its_annotations(conn, queue):
    job = zasync.Job(stopfuncs.quick, 1)
    admin.request_cancel(job, "tester")

    with local.running(job):
        assert local.cancelled()
        with pytest.raises(JobCancelled, match="cancelled by tester while it ran"):
            local.check_cancelled()


# -- the cancel reaches the job on another dispatcher -------------------------


def _box_and_worker(web, worker):
    """A connection of ``web`` with the queues and a box committed, then a
    dispatcher on ``worker``: both creating the queues at once would
    conflict on the root."""
    conn = web.open()
    queues = zasync.get_queues(conn)
    conn.root()["box"] = box = PersistentList()
    transaction.commit()
    dispatcher = zasync.start(worker, uuid=str(uuid.uuid4()), poll_interval=0.05)
    return conn, queues, box, dispatcher


def test_a_cancel_reaches_a_job_on_a_peer_dispatcher(zeo):
    web = ZODB.DB(zeo.client_storage())
    worker = ZODB.DB(zeo.client_storage())
    name = "cancel-peer"
    conn, queues, box, dispatcher = _box_and_worker(web, worker)
    try:
        job = queues[""].put(zasync.Job(stopfuncs.check_until_stopped, box, name))
        transaction.commit()
        _started(name, job)
        # Written by another client of the server than the worker's.
        admin.cancel_job(queues, job.id, by="the web")
        transaction.commit()
        result = wait_for_result(job, 15)
        assert result.check(JobCancelled)
        assert "was cancelled by the web while it ran" in result.getErrorMessage()
        assert _reread(box) == []
        conn.close()
    finally:
        stopfuncs.events[name].set()
        dispatcher.stop(5)
        web.close()
        worker.close()


def test_zasync_cancel_of_a_running_job_says_what_it_did(tmp_path, zeo, capsys):
    conf = zeo.client_conf(str(tmp_path / "zodb.conf"))
    db = ZODB.DB(zeo.client_storage())
    name = "cancel-cli"
    conn, queues, box, dispatcher = _box_and_worker(db, db)
    try:
        job = queues[""].put(zasync.Job(stopfuncs.check_until_stopped, box, name))
        transaction.commit()
        _started(name, job)
        code = main(
            ["cancel", str(job.id), "--reason", "too slow", "--zodb-conf", conf]
        )
        out = capsys.readouterr().out
        assert code == 0
        assert out == (
            f"cancel requested for running job {job.id} "
            f"(stopfuncs.check_until_stopped) in queue default; the job stops "
            f"at its next check (zasync.local.check_cancelled); if its code "
            f"never checks, it runs on until it ends\n"
        )
        result = wait_for_result(job, 15)
        assert result.check(JobCancelled)
        assert "was cancelled by zasync cancel (user " in result.getErrorMessage()
        assert result.getErrorMessage().endswith("while it ran: too slow")
        conn.close()
    finally:
        stopfuncs.events[name].set()
        dispatcher.stop(5)
        db.close()
