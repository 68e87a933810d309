"""Pausing a queue, cluster-wide: nothing is claimed from it until it is
resumed, running jobs finish, jobs can still be queued (real FileStorage,
real dispatchers)."""

import uuid

import pytest
import transaction

import jobfuncs
import zasync
from zasync import admin, clock
from zasync.status import ACTIVE, COMPLETED, PENDING
from zasync.testing import wait_for, wait_for_result


def rounds_pass(dispatcher, count=3):
    """Wait until ``dispatcher`` has run ``count`` more rounds."""
    start = dispatcher.stats.get("rounds", 0)
    wait_for(
        lambda: dispatcher.stats.get("rounds", 0) >= start + count,
        10,
        lambda: None,
        lambda: f"{count} rounds of {dispatcher}",
    )


def test_a_paused_queue_has_nothing_claimed_until_resumed(
    db, conn, queue, start_dispatcher
):
    dispatcher = start_dispatcher(uuid=str(uuid.uuid4()))
    name = uuid.uuid4().hex
    running = queue.put(zasync.Job(jobfuncs.block, name, "finished"))
    transaction.commit()
    wait_for(
        lambda: running.status == ACTIVE,
        10,
        transaction.begin,
        lambda: f"the first job to start: {running.status}",
    )

    done = admin.in_transaction(db, lambda q: admin.pause_queue(q, by="a test"))
    assert done["was_paused"] is False and done["paused"]["by"] == "a test"
    waiting = queue.put(zasync.Job(jobfuncs.add, 1, 2))  # queuing still works
    transaction.commit()
    rounds_pass(dispatcher)
    transaction.begin()
    assert waiting.status == PENDING
    # A running job finishes while its queue is paused.
    jobfuncs.events[name].set()
    assert wait_for_result(running) == "finished"
    rounds_pass(dispatcher)
    transaction.begin()
    assert waiting.status == PENDING

    report = admin.in_transaction(db, admin.status_report)
    (shown,) = [q for q in report["queues"] if q["label"] == "default"]
    assert shown["paused"]["by"] == "a test"
    assert shown["counts"]["pending"] == 1

    assert admin.in_transaction(db, admin.resume_queue) == {
        "queue": "default",
        "was_paused": True,
    }
    assert wait_for_result(waiting) == 3
    assert admin.in_transaction(db, admin.resume_queue)["was_paused"] is False


def test_pausing_twice_keeps_the_first_pause(db, conn, queue):
    first = admin.in_transaction(db, lambda q: admin.pause_queue(q, by="one"))
    second = admin.in_transaction(db, lambda q: admin.pause_queue(q, by="two"))
    assert second["was_paused"] is True
    assert second["paused"] == first["paused"]


def test_a_resume_in_another_process_wakes_the_dispatcher_at_once(
    db, conn, queue, start_dispatcher
):
    """The queue itself is watched: a dispatcher with a long poll interval
    takes up a resume committed elsewhere without waiting for its poll."""
    admin.in_transaction(db, admin.pause_queue)
    dispatcher = start_dispatcher(uuid=str(uuid.uuid4()), poll_interval=60)
    job = queue.put(zasync.Job(jobfuncs.add, 2, 2))
    transaction.commit()
    rounds_pass(dispatcher, 1)
    transaction.begin()
    assert job.status == PENDING
    started = clock.utcnow()
    admin.in_transaction(db, admin.resume_queue)
    assert wait_for_result(job, seconds=10) == 4
    assert job.status == COMPLETED
    assert (job.started - started).total_seconds() < 5


def test_pausing_an_unknown_queue_says_which_there_are(db, queue):
    with pytest.raises(admin.AdminError, match="no queue 'nope'"):
        admin.in_transaction(db, lambda q: admin.pause_queue(q, "nope"))


def test_other_processes_dispatchers_watch_the_queue_itself(queue):
    # A resume rewrites the queue: its invalidation wakes them (ZEO, PG).
    assert queue in queue.watched_objects()
    assert queue in queue.watched_objects(parts={0})
