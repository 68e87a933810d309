"""Automatic retention (zasync.retention): per-queue settings, the lease
that lets one dispatcher prune at a time, bounded batches, parts of
unfinished jobs kept. Real FileStorage, real dispatchers, injected clocks."""

import datetime

import pytest
import transaction
from zope.interface.verify import verifyObject

import jobfuncs
import zasync
from zasync import admin, clock, retention, transact
from zasync.interfaces import IChore, IRetentionSettings, IRetentionState
from zasync.testing import inline, wait_for, wait_for_result, wait_for_start

DAY = datetime.timedelta(days=1)


@pytest.fixture
def queues(queue):
    return zasync.get_queues(queue._p_jar)


@pytest.fixture
def quick(monkeypatch):
    """The registered chore looks every 50 ms (its interval), batches of 5."""
    monkeypatch.setattr(retention.CHORE, "interval", 0.05)
    monkeypatch.setattr(retention.CHORE, "batch", 5)
    return retention.CHORE


def completed(queue, count, fail=False):
    """``count`` jobs completed now (inline), committed."""
    with inline():
        made = [
            queue.put(
                zasync.Job(jobfuncs.fail, "x")
                if fail
                else zasync.Job(jobfuncs.add, i, i)
            )
            for i in range(count)
        ]
    transaction.commit()
    return made


def present(queues, jobs):
    transaction.begin()
    return [job for job in jobs if queues.find_job(job.id) is job]


def run_pass(queues, now, holder="d1", batch=retention.BATCH):
    """Steps of one holder until its pass is over; the number of steps."""
    steps = 0
    while True:
        transaction.begin()
        wait = retention.step(queues, holder, now, batch=batch)
        transaction.commit()
        steps += 1
        if wait:
            return steps


# -- settings -----------------------------------------------------------------


def test_implementations_provide_their_interfaces(queues):
    verifyObject(IRetentionSettings, retention.RetentionSettings())
    verifyObject(IRetentionState, retention.RetentionState())
    verifyObject(IChore, retention.CHORE)


def test_a_queue_without_settings_follows_the_built_in_defaults(queue):
    assert queue.retention is None or not queue.retention.values()
    rules = retention.policy(queue)
    assert rules["enabled"] == (True, retention.FROM_BUILT_IN)
    assert rules["succeeded_age"] == (7 * DAY, retention.FROM_BUILT_IN)
    assert rules["failed_age"] == (30 * DAY, retention.FROM_BUILT_IN)
    assert rules["succeeded_count"] == (retention.UNLIMITED, retention.FROM_BUILT_IN)


def test_bad_settings_are_refused_and_change_nothing(queue):
    settings = retention.retention_settings(queue)
    settings.update({"succeeded_age": 3600, "failed_count": 100})
    for changes, message in (
        ({"succeeded_age": -5}, "succeeded_age must be a positive duration"),
        ({"failed_count": 0}, "failed_count must be a whole number of at least 1"),
        ({"failed_count": 2.5}, "whole number"),
        ({"keep": 3}, "no retention setting 'keep'"),
        ({"failed_age": DAY, "succeeded_count": "many"}, "succeeded_count"),
    ):
        with pytest.raises(ValueError, match=message):
            settings.update(changes)
        assert settings.values() == {
            "succeeded_age": datetime.timedelta(hours=1),
            "failed_count": 100,
        }
    with pytest.raises(TypeError, match="enabled must be True or False"):
        settings.update({"enabled": "no"})
    settings.update({"failed_count": None, "failed_age": retention.UNLIMITED})
    assert settings.values() == {
        "succeeded_age": datetime.timedelta(hours=1),
        "failed_age": retention.UNLIMITED,
    }
    assert retention.policy(queue)["failed_age"] == (
        retention.UNLIMITED,
        retention.FROM_SETTING,
    )


# -- passes, counted and aged -------------------------------------------------


def test_old_succeeded_jobs_go_first_failed_ones_later(queue, queues):
    ok = completed(queue, 5)
    failed = completed(queue, 2, fail=True)
    now = clock.utcnow()
    run_pass(queues, now)
    assert present(queues, ok + failed) == ok + failed
    run_pass(queues, now + 8 * DAY)
    assert present(queues, ok + failed) == failed
    state = retention.retention_state(queues)
    assert state.last["removed"] == 5
    assert state.last["queues"][""] == {"succeeded": 5, "failed": 0, "kept": 0}
    assert state.holder is None and state.current is None
    # The next pass is not due before EVERY seconds: nothing happens.
    transaction.begin()
    assert (
        retention.step(queues, "d1", now + 31 * DAY - datetime.timedelta(seconds=1)) > 0
    )
    transaction.abort()
    run_pass(queues, now + 31 * DAY + datetime.timedelta(hours=1))
    assert present(queues, failed) == []
    assert queue.counts()["completed"] == 0


def test_a_count_limit_keeps_the_newest_per_queue(queue, queues):
    other = queues.create("other")
    transaction.commit()
    retention.retention_settings(queue).update({"succeeded_count": 3})
    retention.retention_settings(other).update({"enabled": False})
    transaction.commit()
    ok = completed(queue, 8)
    kept_elsewhere = completed(other, 4)
    run_pass(queues, clock.utcnow(), batch=2)
    # The newest three of the default queue; the other queue keeps all.
    assert present(queues, ok) == ok[-3:]
    assert present(queues, kept_elsewhere) == kept_elsewhere
    assert queue.counts()["succeeded"] == 3


def test_a_pass_goes_in_bounded_batches_showing_its_progress(queue, queues):
    jobs = completed(queue, 12)
    now = clock.utcnow() + 8 * DAY
    seen = []
    for _ in range(2):
        transaction.begin()
        assert retention.step(queues, "d1", now, batch=5) == 0
        transaction.commit()
        current = retention.retention_state(queues).current
        seen.append(current["queues"][""]["succeeded"])
    assert seen == [5, 10]
    assert len(present(queues, jobs)) == 2
    transaction.begin()
    assert retention.step(queues, "d1", now, batch=5) > 0  # done
    transaction.commit()
    assert present(queues, jobs) == []
    assert retention.retention_state(queues).current is None
    assert retention.retention_state(queues).last["removed"] == 12


def test_parts_of_unfinished_jobs_are_kept(queue, queues, dispatcher):
    job = queue.put(
        zasync.serial(zasync.Job(jobfuncs.add, 1, 1), zasync.Job(jobfuncs.block, "ret"))
    )
    transaction.commit()
    wait_for_start(job)
    try:
        # The first part completed and indexed by its dispatcher.
        wait_for(
            lambda: list(queue.indexed_completed(False)),
            seconds=20,
            refresh=transaction.begin,
            describe=lambda: f"counts {queue.counts()}",
        )
        transaction.begin()
        wait = retention.step(queues, "someone", clock.utcnow() + 8 * DAY)
        transaction.commit()
        assert wait > 0
        last = retention.retention_state(queues).last
        assert last["queues"][""] == {"succeeded": 0, "failed": 0, "kept": 1}
    finally:
        jobfuncs.events["ret"].set()
    assert wait_for_result(job) is not None


# -- one dispatcher at a time -------------------------------------------------


def test_the_lease_lets_one_holder_prune_and_lapses_when_it_stops(queue, queues):
    jobs = completed(queue, 9)
    now = clock.utcnow() + 8 * DAY
    transaction.begin()
    assert retention.step(queues, "d1", now, batch=4) == 0
    transaction.commit()
    # d2 finds d1's fresh lease: it waits and removes nothing.
    transaction.begin()
    assert retention.step(queues, "d2", now, batch=4) > 0
    transaction.commit()
    assert len(present(queues, jobs)) == 5
    # d1 stops (its process died); past the lease, d2 goes on where it was.
    later = now + datetime.timedelta(seconds=retention.LEASE_SECONDS + 1)
    run_pass(queues, later, holder="d2", batch=4)
    assert present(queues, jobs) == []
    last = retention.retention_state(queues).last
    assert last["by"] == "d1"  # the pass d1 began, finished by d2
    assert last["removed"] == 9


def test_two_takers_at_once_conflict_and_nothing_is_removed_twice(db, queue, queues):
    jobs = completed(queue, 7)
    now = clock.utcnow() + 8 * DAY
    first, second = (jobfuncs.open_connection(db) for _ in range(2))
    try:
        results = []
        for conn in (first, second):
            conn.transaction_manager.begin()
            conn_queues = zasync.get_queues(conn)
            results.append(
                retention.step(conn_queues, f"d{len(results)}", now, batch=3)
            )
        first.transaction_manager.commit()
        errors = []

        def again():
            conn_queues = zasync.get_queues(second)
            return retention.step(conn_queues, "d1", now, batch=3)

        # The second taker conflicts; retried, it finds the first's lease.
        with pytest.raises(transact.TRANSIENT_ERRORS):
            second.transaction_manager.commit()
        second.transaction_manager.abort()
        wait = transact.run(
            second.transaction_manager,
            again,
            tries=3,
            on_error=lambda exc, n: errors.append(exc),
        )
        assert wait > 0
    finally:
        for conn in (first, second):
            conn.transaction_manager.abort()
            conn.close()
    run_pass(queues, now, holder="d0", batch=3)
    assert present(queues, jobs) == []
    assert retention.retention_state(queues).last["removed"] == 7


def test_dispatchers_prune_automatically_one_at_a_time(
    db, queue, queues, quick, start_dispatcher
):
    shift = [datetime.timedelta(0)]

    def shifted():
        return clock.utcnow() + shift[0]

    first = start_dispatcher(clock=shifted)
    second = start_dispatcher(clock=shifted)
    old = [queue.put(zasync.Job(jobfuncs.add, i, 1)) for i in range(30)]
    old_failed = [queue.put(zasync.Job(jobfuncs.fail, "x")) for _ in range(3)]
    transaction.commit()
    for job in old + old_failed:
        wait_for_result(job)
    # Indexed as completed by their dispatchers too, before time moves on.
    wait_for(
        lambda: queue.unsettled() == 0,
        seconds=30,
        refresh=transaction.begin,
        describe=lambda: f"counts {queue.counts()}",
    )
    shift[0] = 8 * DAY
    # Jobs completing while the dispatchers prune stay.
    new = [queue.put(zasync.Job(jobfuncs.add, i, 2)) for i in range(20)]
    transaction.commit()

    def last():
        transaction.begin()
        state = retention.retention_state(queues)
        return None if state is None else state.last

    wait_for(
        lambda: (last() or {}).get("removed"),
        seconds=30,
        refresh=lambda: None,
        describe=lambda: f"the last pass: {last()}",
    )
    for job in new:
        wait_for_result(job)
    assert present(queues, old) == []
    assert present(queues, old_failed) == old_failed
    assert present(queues, new) == new
    record = last()
    assert record["by"] in (first.uuid, second.uuid)
    assert record["removed"] == 30
    assert record["queues"][""] == {"succeeded": 30, "failed": 0, "kept": 0}
    first.stop(5)
    second.stop(5)
    transaction.begin()
    assert queue.counts()["succeeded"] == 20


def test_admin_prune_reports_progress_per_batch(db, queue, queues):
    completed(queue, 7)
    seen = []
    counts = admin.prune(
        db, DAY, now=clock.utcnow() + 2 * DAY, batch_size=3, progress=seen.append
    )
    assert counts[""]["succeeded"] == 7
    assert [(p["kind"], p["removed"], p["estimate"]) for p in seen] == [
        ("succeeded", 3, 7),
        ("succeeded", 6, 7),
        ("succeeded", 7, 7),
    ]


def test_a_batch_and_completions_at_the_same_time_lose_nothing(
    db, queue, queues, monkeypatch
):
    now = clock.utcnow()
    monkeypatch.setattr(clock, "utcnow", lambda: now - 8 * DAY)
    old = completed(queue, 6)
    monkeypatch.undo()
    pruner, worker = (jobfuncs.open_connection(db) for _ in range(2))
    tries = []
    try:
        tm = pruner.transaction_manager

        def prune_batch():
            tries.append(1)
            found = zasync.get_queues(pruner)
            if len(tries) == 1:
                # While this batch is under way, jobs complete elsewhere.
                with worker.transaction_manager, inline():
                    other = zasync.get_queues(worker)[""]
                    for i in range(3):
                        other.put(zasync.Job(jobfuncs.add, i, 0))
            return retention.step(found, "d1", now, batch=4)

        assert transact.run(tm, prune_batch, tries=5) == 0
    finally:
        for conn in (pruner, worker):
            conn.transaction_manager.abort()
            conn.close()
    run_pass(queues, now, batch=4)
    transaction.begin()
    # The old jobs are gone (the new ones ended after the pass's cutoff),
    # and the counters merged: the three new jobs are counted.
    assert present(queues, old) == []
    assert queue.counts()["succeeded"] == 3
    assert retention.retention_state(queues).last["removed"] == 6
