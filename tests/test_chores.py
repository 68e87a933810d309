"""Cluster chores (zasync.chores): run by every dispatcher, each in a
transaction of its own, retried on conflicts, never stopping the loop.
Real FileStorage and real dispatchers."""

import logging

import pytest
import transaction
from BTrees.Length import Length
from persistent.mapping import PersistentMapping
from zope.interface import implementer
from zope.interface.verify import verifyObject

import jobfuncs
import zasync
from zasync import chores
from zasync.interfaces import IChore
from zasync.testing import wait_for, wait_for_result


@implementer(IChore)
class Counting:
    """Counts its runs in the database: in a plain persistent mapping, so
    that two dispatchers running it at once conflict. Only for dispatchers
    of the test's database: every dispatcher of the process runs the
    registered chores (a Plone layer's, in a whole test run, too)."""

    interval = 60.0

    def __init__(self, name="counting", wait=0, fail=0, db=None):
        self.name = name
        self.wait = wait
        self.fail = fail
        self.db = db
        self.calls = 0

    def run(self, dispatcher, queues, now):
        if self.db is not None and dispatcher.db is not self.db:
            return None
        self.calls += 1
        if self.fail:
            self.fail -= 1
            raise RuntimeError("the chore broke")
        root = queues._p_jar.root()
        counts = root.setdefault("chore-counts", PersistentMapping())
        counts[dispatcher.uuid] = counts.get(dispatcher.uuid, 0) + 1
        counts["all"] = counts.get("all", 0) + 1
        return self.wait


@pytest.fixture
def registering():
    added = []

    def register(chore):
        chores.register(chore)
        added.append(chore)
        return chore

    yield register
    for chore in added:
        chores.unregister(chore)


def stored_counts(conn):
    def read():
        transaction.begin()
        return dict(conn.root().get("chore-counts", {}))

    return read


def test_a_chore_provides_the_interface():
    verifyObject(IChore, Counting())


def test_a_registered_chore_runs_again_after_the_wait_it_returns(
    conn, registering, start_dispatcher
):
    chore = registering(Counting(wait=0, db=conn.db()))
    dispatcher = start_dispatcher()
    read = stored_counts(conn)
    wait_for(
        lambda: read().get(dispatcher.uuid, 0) >= 3,
        seconds=20,
        refresh=lambda: None,
        describe=lambda: f"the chore's committed runs: {read()}",
    )
    assert chore.calls >= 3


def test_a_chore_that_returns_none_waits_its_interval(
    conn, queue, registering, start_dispatcher
):
    chore = registering(Counting(wait=None, db=conn.db()))
    dispatcher = start_dispatcher()
    read = stored_counts(conn)
    wait_for(
        lambda: read().get(dispatcher.uuid) == 1,
        seconds=20,
        refresh=lambda: None,
        describe=lambda: f"the chore's committed runs: {read()}",
    )
    # Jobs go on meanwhile; the chore is not run again (60 s interval).
    job = queue.put(zasync.Job(jobfuncs.add, 1, 2))
    transaction.commit()
    assert wait_for_result(job) == 3
    assert chore.calls == 1


def test_two_dispatchers_running_a_conflicting_chore_lose_no_run(
    conn, registering, start_dispatcher
):
    chore = registering(Counting(name="conflicting", wait=0, db=conn.db()))
    first = start_dispatcher()
    second = start_dispatcher()
    read = stored_counts(conn)
    wait_for(
        lambda: read().get(first.uuid, 0) >= 5 and read().get(second.uuid, 0) >= 5,
        seconds=30,
        refresh=lambda: None,
        describe=lambda: f"the chore's committed runs: {read()}",
    )
    first.stop()
    second.stop()
    counts = read()
    # Every committed run counted once in the total: conflicts were
    # retried, none was lost or applied twice.
    assert counts["all"] == counts[first.uuid] + counts[second.uuid]
    assert chore.calls >= counts["all"]


def test_a_failing_chore_is_logged_once_retried_and_jobs_go_on(
    conn, queue, registering, start_dispatcher, monkeypatch, caplog
):
    caplog.set_level(logging.ERROR, logger="zasync.chores")
    monkeypatch.setattr(chores, "RETRY_FAILED_AFTER", 0.05)
    chore = registering(Counting(name="failing", wait=None, fail=3, db=conn.db()))
    dispatcher = start_dispatcher()
    job = queue.put(zasync.Job(jobfuncs.add, 2, 2))
    transaction.commit()
    assert wait_for_result(job) == 4
    read = stored_counts(conn)
    wait_for(
        lambda: read().get(dispatcher.uuid) == 1,
        seconds=20,
        refresh=lambda: None,
        describe=lambda: f"calls {chore.calls}, committed runs {read()}",
    )
    assert chore.calls == 4
    failures = [r for r in caplog.records if "failed" in r.getMessage()]
    assert len(failures) == 1
    assert "'failing'" in failures[0].getMessage()


def test_register_checks_the_chore_and_keeps_the_first_of_a_name(registering):
    with pytest.raises(TypeError, match="non-empty string name"):
        chores.register(object())

    class NoRun:
        name = "no-run"

    with pytest.raises(TypeError, match="run"):
        chores.register(NoRun())
    first = registering(Counting(name="same"))
    registering(Counting(name="same"))
    assert [c for c in chores.registered() if c.name == "same"] == [first]
    chores.unregister("same")
    assert all(c.name != "same" for c in chores.registered())


def test_a_chore_runs_in_its_own_transaction_not_the_rounds(
    conn, queue, registering, start_dispatcher
):
    # A chore that always conflicts with itself would cost claims if it
    # ran in the round's transaction: jobs still run while it fails.
    class Raising(Counting):
        def run(self, dispatcher, queues, now):
            if dispatcher.db is not self.db:
                return None
            self.calls += 1
            queues._p_jar.root()["scratch"] = Length(self.calls)
            raise RuntimeError("never commits")

    registering(Raising(name="raising", db=conn.db()))
    start_dispatcher()
    jobs = [queue.put(zasync.Job(jobfuncs.add, n, n)) for n in range(5)]
    transaction.commit()
    assert [wait_for_result(job) for job in jobs] == [0, 2, 4, 6, 8]
    transaction.begin()
    assert "scratch" not in conn.root()
