"""Quotas: creation and validation, and claims that respect them, also
across concurrent transactions (cluster-wide)."""

import contextlib
import uuid

import pytest
from ZODB.POSException import ConflictError

import jobfuncs
import zasync
from zasync import Status
from zasync.queue import get_queues
from zasync.quota import Quota
from zasync.registry import Agent, DispatcherRecord

NOW = jobfuncs.NOW


def register(queue, name="main", size=10, filter=None):
    """Register a dispatcher with one agent in ``queue``; (agent, uuid)."""
    uid = str(uuid.uuid4())
    record = queue.dispatchers[uid] = DispatcherRecord(uid, NOW)
    agent = record.agents[name] = Agent(name, size=size, filter=filter)
    return agent, uid


def put(queue, label, quotas=()):
    return queue.put(zasync.Job(jobfuncs.tag, label), quota_names=quotas)


def labels(jobs):
    return [j.args[0] for j in jobs]


# -- the quota objects ------------------------------------------------------------


def test_create_quota(queue):
    """create(name, size) makes a quota, found by name."""
    quota = queue.quotas.create("mail", size=2)
    assert isinstance(quota, Quota)
    assert quota.name == "mail"
    assert quota.size == 2
    assert quota.active == ()
    assert len(quota) == 0
    assert queue.quotas["mail"] is quota
    assert "mail" in queue.quotas
    assert "other" not in queue.quotas
    assert queue.quotas.create("single").size == 1


def test_duplicate_create_raises(queue):
    """Creating a quota twice is an error that says how to resize it."""
    first = queue.quotas.create("mail", size=2)
    with pytest.raises(ValueError, match="exists already") as info:
        queue.quotas.create("mail", size=5)
    assert "quotas['mail'].size = 5" in str(info.value)
    assert queue.quotas["mail"] is first
    assert first.size == 2


@pytest.mark.parametrize("size", [-1, 1.5, "2", None, True])
def test_size_validation(queue, size):
    """A size is a whole number of 0 or more, at creation and later."""
    with pytest.raises(ValueError, match="quota size"):
        queue.quotas.create("bad", size=size)
    assert "bad" not in queue.quotas
    quota = queue.quotas.create("good", size=3)
    with pytest.raises(ValueError, match="quota size"):
        quota.size = size
    assert quota.size == 3


@pytest.mark.parametrize("name", ["", None, 7])
def test_name_validation(queue, name):
    """A quota name is a non-empty string."""
    with pytest.raises(ValueError, match="non-empty string"):
        queue.quotas.create(name)


def test_missing_quota_says_how_to_create_it(queue):
    """quotas[name] for a missing quota names create()."""
    with pytest.raises(KeyError, match="quotas.create"):
        queue.quotas["missing"]


def test_has_room(queue):
    """has_room() is True while fewer than size slots are held."""
    quota = queue.quotas.create("q", size=2)
    assert quota.has_room()
    quota.hold(1)
    assert quota.has_room()
    quota.hold(2)
    assert not quota.has_room()
    assert len(quota) == 2
    assert quota.active == (1, 2)
    quota.release(1)
    assert quota.has_room()
    assert queue.quotas.create("paused", size=0).has_room() is False


def test_remove_quota(queue):
    """remove(name) deletes the quota."""
    queue.quotas.create("q")
    queue.quotas.remove("q")
    assert "q" not in queue.quotas
    with pytest.raises(KeyError):
        queue.quotas.remove("q")


# -- claims ---------------------------------------------------------------------------


def test_claim_respects_quota(queue):
    """With a quota of size 1, one job naming it is claimed; a job of
    another lane still is."""
    queue.quotas.create("q", size=1)
    put(queue, "q1", ("q",))
    put(queue, "q2", ("q",))
    put(queue, "free")
    agent, uid = register(queue)
    claimed = queue.claim(agent, uid, 10, NOW)
    assert labels(claimed) == ["q1", "free"]
    assert all(job.status == Status.ACTIVE for job in claimed)
    assert labels(queue) == ["q2"]
    assert queue.quotas["q"].active == (claimed[0].id,)
    assert not queue.quotas["q"].has_room()
    assert queue.claim(agent, uid, 10, NOW) == []


def test_job_naming_two_quotas_needs_room_in_both(queue):
    """A job counts against every quota it names."""
    queue.quotas.create("a", size=1)
    queue.quotas.create("b", size=5)
    put(queue, "a-only", ("a",))
    put(queue, "both", ("a", "b"))
    put(queue, "b-only", ("b",))
    agent, uid = register(queue)
    claimed = queue.claim(agent, uid, 10, NOW)
    assert labels(claimed) == ["a-only", "b-only"]
    assert labels(queue) == ["both"]


def test_resizing_takes_effect_at_next_claim(queue):
    """Raising the size lets the next claim take more jobs."""
    quota = queue.quotas.create("q", size=1)
    for label in ("1", "2", "3"):
        put(queue, label, ("q",))
    agent, uid = register(queue)
    assert labels(queue.claim(agent, uid, 10, NOW)) == ["1"]
    quota.size = 3
    assert labels(queue.claim(agent, uid, 10, NOW)) == ["2", "3"]
    assert len(quota) == 3


def test_size_zero_pauses_and_removing_quota_lifts_the_limit(queue):
    """Size 0 holds back the jobs naming the quota; once the quota is
    removed they are no longer limited by it."""
    queue.quotas.create("q", size=0)
    put(queue, "held", ("q",))
    agent, uid = register(queue)
    assert queue.claim(agent, uid, 10, NOW) == []
    queue.quotas.remove("q")
    assert labels(queue.claim(agent, uid, 10, NOW)) == ["held"]


def test_claim_respects_limit_and_agent_filter(queue):
    """claim() takes at most ``limit`` jobs, and only those the agent's
    filter accepts."""
    for label in ("a", "b", "a", "b", "a"):
        put(queue, label)
    agent, uid = register(queue, filter=jobfuncs.accepts_a)
    claimed = queue.claim(agent, uid, 2, NOW)
    assert labels(claimed) == ["a", "a"]
    assert dict(agent.jobs) == {job.id: job for job in claimed}
    assert labels(queue) == ["b", "b", "a"]


def test_quota_limit_in_committed_state(db, conn, queue):
    """Slots held by a committed claim are seen by other connections."""
    queue.quotas.create("q", size=1)
    put(queue, "1", ("q",))
    put(queue, "2", ("q",))
    agent, uid = register(queue)
    queue.claim(agent, uid, 10, NOW)
    conn.transaction_manager.commit()
    other = jobfuncs.open_connection(db)
    try:
        queue2 = get_queues(other)[""]
        agent2 = queue2.dispatchers[uid].agents["main"]
        assert queue2.claim(agent2, uid, 10, NOW) == []
        assert len(queue2.quotas["q"]) == 1
    finally:
        other.transaction_manager.abort()
        other.close()


# -- cluster-wide: concurrent claims ---------------------------------------------------


def _setup_two_dispatchers(conn, size):
    """A quota of ``size`` (None: no quota), jobs 'c', 'a' and 'b' naming it, and two
    dispatchers whose agents accept only 'a' and only 'b' jobs: so their
    claims touch different jobs and meet only at the quota. ('c', which
    neither takes, comes first: taking the first key of a small BTree at
    once in two transactions would conflict by itself.)"""
    queue = get_queues(conn)[""]
    quotas = ()
    if size is not None:
        queue.quotas.create("q", size=size)
        quotas = ("q",)
    for label in ("c", "a", "b"):
        put(queue, label, quotas)
    uuid_a = register(queue, filter=jobfuncs.accepts_a)[1]
    uuid_b = register(queue, filter=jobfuncs.accepts_b)[1]
    conn.transaction_manager.commit()
    return uuid_a, uuid_b


@contextlib.contextmanager
def two_connections(db):
    """Two connections with their own transaction managers, as two processes."""
    one, two = jobfuncs.open_connection(db), jobfuncs.open_connection(db)
    try:
        yield one, two
    finally:
        one.close()
        two.close()


def _claim(connection, uid):
    queue = get_queues(connection)[""]
    agent = queue.dispatchers[uid].agents["main"]
    return labels(queue.claim(agent, uid, 10, NOW))


def test_concurrent_claims_of_the_last_slot_conflict(db, conn):
    """Two dispatchers claiming the only slot at once: exactly one commit
    succeeds, the other gets a ConflictError; retried, it finds no room."""
    uuid_a, uuid_b = _setup_two_dispatchers(conn, size=1)
    with two_connections(db) as (one, two):
        assert _claim(one, uuid_a) == ["a"]
        assert _claim(two, uuid_b) == ["b"]
        one.transaction_manager.commit()
        with pytest.raises(ConflictError):
            two.transaction_manager.commit()
        two.transaction_manager.abort()
        assert _claim(two, uuid_b) == []
        two.transaction_manager.commit()

        conn.transaction_manager.begin()
        queue = get_queues(conn)[""]
        assert len(queue.quotas["q"]) == 1
        assert queue.counts()["active"] == 1
        assert labels(queue) == ["c", "b"]


def test_concurrent_claims_without_quota_both_commit(db, conn):
    """Without the quota, the same concurrent claims both commit: the
    conflict above comes from the quota, not from the claims' other
    writes."""
    uuid_a, uuid_b = _setup_two_dispatchers(conn, size=None)
    with two_connections(db) as (one, two):
        assert _claim(one, uuid_a) == ["a"]
        assert _claim(two, uuid_b) == ["b"]
        one.transaction_manager.commit()
        two.transaction_manager.commit()
        conn.transaction_manager.begin()
        queue = get_queues(conn)[""]
        assert labels(queue) == ["c"]
        assert queue.counts()["active"] == 2


def test_concurrent_claims_within_the_size_both_commit(db, conn):
    """With room for both, concurrent claims on one quota are merged: a
    quota is a hot spot only when it is full."""
    uuid_a, uuid_b = _setup_two_dispatchers(conn, size=2)
    with two_connections(db) as (one, two):
        assert _claim(one, uuid_a) == ["a"]
        assert _claim(two, uuid_b) == ["b"]
        one.transaction_manager.commit()
        two.transaction_manager.commit()
        conn.transaction_manager.begin()
        quota = get_queues(conn)[""].quotas["q"]
        assert len(quota) == 2
        assert not quota.has_room()


def test_concurrent_release_and_claim_merge(db, conn):
    """A slot released in one transaction and another claimed in a
    concurrent one: both commit, and the quota holds the new job only."""
    queue = get_queues(conn)[""]
    quota = queue.quotas.create("r", size=1)
    quota.hold(1)
    conn.transaction_manager.commit()
    with two_connections(db) as (one, two):
        get_queues(one)[""].quotas["r"].release(1)
        get_queues(two)[""].quotas["r"].size = 2
        get_queues(two)[""].quotas["r"].hold(2)
        one.transaction_manager.commit()
        two.transaction_manager.commit()
        conn.transaction_manager.begin()
        assert get_queues(conn)[""].quotas["r"].active == (2,)
        assert get_queues(conn)[""].quotas["r"].size == 2
