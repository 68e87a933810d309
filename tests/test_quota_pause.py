"""Pausing a quota, cluster-wide: jobs naming it are not claimed until it
is resumed, running ones finish, other jobs go on (real FileStorage, real
dispatchers); the pause merges with concurrent claims."""

import uuid

import pytest
import transaction
from ZODB.POSException import ConflictError

import jobfuncs
import zasync
from zasync import admin, clock
from zasync.queue import get_queues
from zasync.quota import Quota
from zasync.registry import Agent, DispatcherRecord
from zasync.status import ACTIVE, COMPLETED, PENDING
from zasync.testing import wait_for, wait_for_result

NOW = jobfuncs.NOW


def rounds_pass(dispatcher, count=3):
    start = dispatcher.stats.get("rounds", 0)
    wait_for(
        lambda: dispatcher.stats.get("rounds", 0) >= start + count,
        10,
        lambda: None,
        lambda: f"{count} rounds of {dispatcher}",
    )


def test_a_paused_quota_has_its_jobs_wait_until_resumed(
    db, conn, queue, start_dispatcher
):
    queue.quotas.create("mail", size=5)
    transaction.commit()
    dispatcher = start_dispatcher(uuid=str(uuid.uuid4()))
    name = uuid.uuid4().hex
    running = queue.put(zasync.Job(jobfuncs.block, name, "sent"), quota_names="mail")
    transaction.commit()
    wait_for(
        lambda: running.status == ACTIVE,
        10,
        transaction.begin,
        lambda: f"the first job to start: {running.status}",
    )

    done = admin.in_transaction(db, lambda q: admin.pause_quota(q, "mail", by="ops"))
    assert done["was_paused"] is False and done["paused"]["by"] == "ops"
    assert done["quota"] == "mail" and done["queue"] == "default"
    waiting = queue.put(zasync.Job(jobfuncs.add, 1, 2), quota_names="mail")
    other = queue.put(zasync.Job(jobfuncs.add, 2, 2))  # other lanes go on
    transaction.commit()
    assert wait_for_result(other) == 4
    rounds_pass(dispatcher)
    transaction.begin()
    assert waiting.status == PENDING
    # The running job finishes while its quota is paused.
    jobfuncs.events[name].set()
    assert wait_for_result(running) == "sent"
    rounds_pass(dispatcher)
    transaction.begin()
    assert waiting.status == PENDING

    report = admin.in_transaction(db, admin.status_report)
    (shown,) = report["queues"][0]["quotas"]
    assert shown["paused"]["by"] == "ops"
    assert shown["active"] == 0

    assert admin.in_transaction(db, lambda q: admin.resume_quota(q, "mail")) == {
        "queue": "default",
        "quota": "mail",
        "was_paused": True,
    }
    assert wait_for_result(waiting) == 3
    again = admin.in_transaction(db, lambda q: admin.resume_quota(q, "mail"))
    assert again["was_paused"] is False


def test_a_resume_elsewhere_wakes_the_dispatcher_at_once(
    db, conn, queue, start_dispatcher
):
    """The quota is watched: a dispatcher with a long poll interval takes
    up a resume committed by another connection without waiting for it."""
    queue.quotas.create("mail", size=1)
    transaction.commit()
    admin.in_transaction(db, lambda q: admin.pause_quota(q, "mail"))
    dispatcher = start_dispatcher(uuid=str(uuid.uuid4()), poll_interval=60)
    job = queue.put(zasync.Job(jobfuncs.add, 2, 2), quota_names="mail")
    transaction.commit()
    rounds_pass(dispatcher, 1)
    transaction.begin()
    assert job.status == PENDING
    started = clock.utcnow()
    admin.in_transaction(db, lambda q: admin.resume_quota(q, "mail"))
    assert wait_for_result(job, seconds=10) == 4
    assert job.status == COMPLETED
    assert (job.started - started).total_seconds() < 5


def labels(jobs):
    return [j.args[0] for j in jobs]


def test_claims_skip_a_paused_quota(queue):
    quota = queue.quotas.create("mail", size=5)
    uid = str(uuid.uuid4())
    record = queue.dispatchers[uid] = DispatcherRecord(uid, NOW)
    agent = record.agents["main"] = Agent("main", size=10)
    queue.put(zasync.Job(jobfuncs.tag, "m"), quota_names="mail", now=NOW)
    queue.put(zasync.Job(jobfuncs.tag, "x"), now=NOW)
    assert quota.pause(NOW, "me") == (NOW, "me")
    assert quota.pause(NOW.replace(year=2031), "you") == (NOW, "me")  # kept
    assert not quota.may_start(NOW) and quota.has_room()
    assert labels(queue.claim(agent, uid, 10, NOW)) == ["x"]
    assert quota.resume() is True
    assert labels(queue.claim(agent, uid, 10, NOW)) == ["m"]
    assert quota.resume() is False


def test_pause_needs_an_aware_time(queue):
    quota = queue.quotas.create("mail")
    with pytest.raises(TypeError, match="now must be a datetime"):
        quota.pause("now")
    assert quota.paused is None


def test_pausing_an_unknown_quota_says_which_there_are(db, queue):
    queue.quotas.create("mail")
    transaction.commit()
    with pytest.raises(admin.AdminError, match=r"no quota 'nope' \(its quotas: mail\)"):
        admin.in_transaction(db, lambda q: admin.pause_quota(q, "nope"))


def test_a_pause_merges_with_concurrent_claims(db, conn):
    """An operator pausing a quota while a dispatcher's claim holds a slot
    of it: both commit, and the quota is paused with the slot held."""
    queue = get_queues(conn)[""]
    queue.quotas.create("mail", size=2)
    conn.transaction_manager.commit()
    one, two = jobfuncs.open_connection(db), jobfuncs.open_connection(db)
    try:
        get_queues(one)[""].quotas["mail"].pause(NOW, "ops")
        get_queues(two)[""].quotas["mail"].hold(7)
        one.transaction_manager.commit()
        two.transaction_manager.commit()
    finally:
        one.close()
        two.close()
    conn.transaction_manager.begin()
    quota = get_queues(conn)[""].quotas["mail"]
    assert quota.paused == (NOW, "ops")
    assert quota.active == (7,)


def test_a_resume_merges_and_two_different_pauses_conflict():
    def state(paused=None):
        values = {"name": "m", "_size": 1, "_active": ()}
        if paused is not None:
            values["_paused"] = paused
        return values

    quota = Quota("m")
    paused = (NOW, "ops")
    merged = quota._p_resolveConflict(state(paused), state(), state(paused))
    assert "_paused" not in merged  # resumed: the class default
    with pytest.raises(ConflictError, match="_paused changed concurrently"):
        quota._p_resolveConflict(state(), state(paused), state((NOW, "other")))


def test_dispatchers_watch_each_quota(queue):
    quota = queue.quotas.create("mail")
    assert quota in queue.watched_objects()
