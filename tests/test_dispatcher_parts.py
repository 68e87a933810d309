"""The dispatcher's parts: a round (and undoing one that did not commit),
the runner's narrow context, the worker pool."""

import dataclasses
import logging
import uuid

import transaction
from ZODB.POSException import ConflictError

import jobfuncs
import zasync
from zasync import clock, config
from zasync.dispatcher import Round
from zasync.queue import Queue
from zasync.registry import Agent, DispatcherRecord
from zasync.runner import JobRunner, RunnerContext
from zasync.status import ACTIVE, COMPLETED
from zasync.testing import wait_for, wait_for_all_jobs, wait_for_result


def test_a_conflict_while_reconciling_is_a_conflict(
    queue, start_dispatcher, monkeypatch, caplog
):
    """A round that conflicts in its first step (reconciling finished jobs)
    is counted and tried again, its finished jobs kept for the next round;
    it is not a failed round."""
    reconcile = Queue.reconcile
    conflicts = []

    def conflict_once(self, job, now):
        if not conflicts:
            conflicts.append(job.id)
            raise ConflictError("in the test")
        return reconcile(self, job, now)

    monkeypatch.setattr(Queue, "reconcile", conflict_once)
    dispatcher = start_dispatcher()
    with caplog.at_level(logging.ERROR, "zasync.dispatcher"):
        job = queue.put(zasync.Job(jobfuncs.add, 2, 3))
        transaction.commit()
        assert wait_for_result(job) == 5
        wait_for_all_jobs(queue._p_jar)
    assert conflicts == [job.id]
    assert dispatcher.stats["conflicts"] >= 1
    assert queue.counts()["completed"] == 1  # reconciled in a later round
    assert "round failed" not in caplog.text


def test_round_notes_the_first_due_time():
    now = clock.utcnow()
    later = now.replace(year=now.year + 1)
    made = Round(now=now, finished=[])
    made.note_due(None)
    made.note_due(later)
    made.note_due(now)
    made.note_due(later)
    assert made.due == now
    made.to_start.extend([(("", "main"), b"1"), (("x", "main"), b"2")])
    assert made.starting(("", "main")) == 1


def test_a_round_that_fails_gives_back_what_it_took(db):
    """_undo: finished jobs go back first in line, jobs taken from the
    held ones go back in their order, and an audit is still due."""
    dispatcher = zasync.Dispatcher(db, uuid=str(uuid.uuid4()))
    pool = dispatcher.pool
    key = ("", config.MAIN_AGENT)
    pool.hold(key, b"c")
    pool.restore_finished([b"f3"])
    made = Round(now=clock.utcnow(), finished=pool.take_finished(), audit=True)
    made.taken.extend([(key, pool.pop_held(key))])
    pool.restore_finished([b"f4"])  # finished while the round ran
    assert pool.known_oids() == {b"f4"}
    dispatcher._undo(made)
    assert pool.take_finished() == [b"f3", b"f4"]
    assert pool.pop_held(key) == b"c"
    assert dispatcher._audit_due is True


def run_claimed(db, conn, job, abandoned=False):
    """Claim ``job`` for a dispatcher record of its own and run it with a
    JobRunner given a hand-made RunnerContext (no Dispatcher at all).
    Returns the job, what run() returned and what the context counted."""
    me = str(uuid.uuid4())
    queue = zasync.get_queues(conn)[""]
    record = queue.dispatchers[me] = DispatcherRecord(me, clock.utcnow(), 30, 300)
    agent = record.agents[config.MAIN_AGENT] = Agent(size=1)
    queue.put(job)
    (claimed,) = queue.claim(agent, me, 1, clock.utcnow(), start=1)
    assert claimed is job and job.status == ACTIVE
    transaction.commit()
    counted = []
    context = RunnerContext(
        db=db,
        database=None,
        uuid=me,
        clock=clock.utcnow,
        abandoned=lambda: abandoned,
        count=counted.append,
        transient_error=counted.append,
    )
    runner = JobRunner(context)
    try:
        outcome = runner.run(job._p_oid)
    finally:
        runner.close()
    transaction.abort()
    return job, outcome, counted


def test_the_runner_needs_only_its_context(db, conn):
    """A JobRunner runs a claimed job with a hand-made RunnerContext: no
    dispatcher at all."""
    assert [f.name for f in dataclasses.fields(RunnerContext)] == [
        "db",
        "database",
        "uuid",
        "clock",
        "abandoned",
        "count",
        "transient_error",
        "storage",  # has a default: one StorageTrouble per context
        "attempt_ended",  # has a default: no one is told
        "watch",  # has a default: time limits are not enforced
        "unwatch",
    ]
    job, outcome, counted = run_claimed(db, conn, zasync.Job(jobfuncs.add, 20, 22))
    assert outcome == (None, False)
    assert job.status == COMPLETED and job.result == 42
    assert counted == ["completed"]


def test_an_abandoned_context_commits_nothing(db, conn):
    """Once the context says the dispatcher abandoned its jobs, the runner
    records no outcome (the job was put back for another)."""
    job, _, counted = run_claimed(
        db, conn, zasync.Job(jobfuncs.fail, "no"), abandoned=True
    )
    assert job.status == ACTIVE and counted == []


def test_the_pool_reuses_its_threads(queue, start_dispatcher):
    """Jobs one after the other run in the one thread the pool made."""
    dispatcher = start_dispatcher(agent_size=2)
    for n in range(3):
        job = queue.put(zasync.Job(jobfuncs.add, n, n))
        transaction.commit()
        assert wait_for_result(job) == 2 * n
        # Its thread is idle again (counted so before the job is out of flight).
        wait_for(
            lambda: dispatcher.pool.in_flight == 0,
            5,
            lambda: None,
            lambda: f"{dispatcher.pool.in_flight} jobs in flight",
        )
    assert len(dispatcher.pool._threads) == 1
