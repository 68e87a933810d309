"""Dispatchers claiming at the same time take different jobs: the run order
is kept in parts (zasync.queue.RUN_PARTS), each dispatcher prefers its
turn of them, and takes from the others when its own have nothing ready,
when a job there has a higher priority, or when one there has been due
much longer. Real connections with their own transaction managers commit
in the order each test chooses; then real dispatchers on one database."""

import datetime
import uuid

import pytest
import transaction

import jobfuncs
import zasync
from racing import NOW, claim, commit_all, file_everything, put, queue_of, setup_queue
from zasync import queue as queue_module
from zasync.dispatcher import Dispatcher
from zasync.queue import RUN_PARTS, SPREAD_SLACK_US
from zasync.registry import Agent, DispatcherRecord
from zasync.status import ACTIVE, COMPLETED
from zasync.testing import wait_for_all_jobs

EVEN, ODD = frozenset({0, 2}), frozenset({1, 3})
SLACK = datetime.timedelta(microseconds=SPREAD_SLACK_US)


def put_in_parts(conn, count, prefix="job"):
    """Put ``count`` jobs; {part: [labels in run order]}."""
    queue = queue_of(conn)
    by_part = {part: [] for part in range(RUN_PARTS)}
    for number in range(count):
        job = put(conn, f"{prefix}-{number}")
        by_part[queue._part_of(job.id)].append(job.args[0])
    conn.transaction_manager.commit()
    return by_part


def in_run_order(labels):
    """Labels of put_in_parts in the order they were put."""
    return sorted(labels, key=lambda label: int(label.rsplit("-", 1)[1]))


def put_until_in(conn, parts, label, **options):
    """Put a job labelled ``label`` in one of ``parts`` (a transaction that
    put it elsewhere is aborted, and the put made again) and commit it."""
    while True:
        job = put(conn, label, **options)
        if queue_of(conn)._part_of(job.id) in parts:
            conn.transaction_manager.commit()
            return job
        conn.transaction_manager.abort()


# -- claims of dispatchers preferring different parts ----------------------------


@pytest.mark.parametrize("filed", [True, False], ids=["in-lanes", "in-inbox"])
def test_claims_preferring_different_parts_take_different_jobs_and_merge(
    conn, connections, monkeypatch, filed
):
    """Two dispatchers claim at once, round after round, until the queue is
    empty: no conflict, no job claimed twice, each got its own parts'."""
    one_uid, two_uid = setup_queue(conn, dispatchers=2)
    by_part = put_in_parts(conn, 160)
    if filed:
        file_everything(conn, monkeypatch)
    one, two = connections(2)
    mine = {
        one_uid: in_run_order(by_part[0] + by_part[2]),
        two_uid: in_run_order(by_part[1] + by_part[3]),
    }
    taken = {one_uid: [], two_uid: []}
    conflicts = []
    while all(len(taken[uid]) < len(mine[uid]) for uid in mine):
        for conn_, uid, parts in ((one, one_uid, EVEN), (two, two_uid, ODD)):
            left = len(mine[uid]) - len(taken[uid])
            taken[uid] += claim(conn_, uid, limit=min(4, left), prefer=parts)
        conflicts += commit_all([one, two])
    assert conflicts == []
    for uid in mine:
        assert taken[uid] == [label for label in mine[uid] if label in taken[uid]]
    # The one whose parts are empty now takes the other's too.
    one.transaction_manager.begin()
    rest = claim(one, one_uid, limit=160, prefer=EVEN, now=NOW + SLACK)
    assert commit_all([one]) == []
    everything = taken[one_uid] + taken[two_uid] + rest
    assert len(everything) == len(set(everything)) == 160


def test_without_preference_two_claims_of_the_lane_head_conflict(
    conn, connections, monkeypatch
):
    """What the parts avoid: two dispatchers claiming without preferring
    parts take the same first jobs, and one of them must try again."""
    one_uid, two_uid = setup_queue(conn, dispatchers=2)
    put_in_parts(conn, 40)
    file_everything(conn, monkeypatch)
    one, two = connections(2)
    assert claim(one, one_uid, limit=4) == claim(two, two_uid, limit=4)
    assert len(commit_all([one, two])) == 1


def test_a_dispatcher_leaves_fresh_jobs_of_other_parts_to_their_peer(conn):
    """Its own parts first; the others' jobs only once they have been due
    a moment (their peer, if idle, has taken them by then)."""
    (uid,) = setup_queue(conn, dispatchers=1)
    by_part = put_in_parts(conn, 40)
    mine = in_run_order(by_part[0] + by_part[2])
    theirs = in_run_order(by_part[1] + by_part[3])
    assert claim(conn, uid, limit=40, prefer=EVEN) == mine
    queue = queue_of(conn)
    agent = queue.dispatchers[uid].agents["main"]
    left = queue.peek(agent, NOW)
    assert left.args[0] == theirs[0]
    assert queue.takeable_at(left) == NOW + SLACK
    assert claim(conn, uid, limit=40, prefer=EVEN, now=NOW + SLACK / 2) == []
    assert claim(conn, uid, limit=40, prefer=EVEN, now=NOW + SLACK) == theirs


def test_a_dispatcher_takes_other_parts_jobs_when_its_own_have_none(conn):
    (uid,) = setup_queue(conn, dispatchers=1)
    by_part = put_in_parts(conn, 40)
    mine = in_run_order(by_part[0] + by_part[2])
    theirs = in_run_order(by_part[1] + by_part[3])
    # Its own first (the jobs were put within the slack of each other),
    # then the others', each in run order.
    later = NOW + SLACK
    assert claim(conn, uid, limit=40, prefer=EVEN, now=later) == mine + theirs
    assert claim(conn, uid, limit=40, prefer=EVEN) == []


def test_a_higher_priority_job_in_another_part_is_claimed_first(conn):
    (uid,) = setup_queue(conn, dispatchers=1)
    put_in_parts(conn, 20)
    put_until_in(conn, ODD, "urgent", priority=5)
    assert claim(conn, uid, limit=1, prefer=EVEN) == ["urgent"]


def test_a_job_due_much_longer_in_another_part_is_claimed_first(conn):
    """A busy peer's jobs do not wait behind the free dispatcher's newer
    ones: past the slack, the one due first wins; within it, its own."""
    (uid,) = setup_queue(conn, dispatchers=1)
    put_until_in(conn, ODD, "waiting long", begin_after=NOW - 3 * SLACK)
    put_until_in(conn, ODD, "waiting a little", begin_after=NOW - SLACK / 2)
    put_until_in(conn, EVEN, "mine")
    assert claim(conn, uid, limit=3, prefer=EVEN) == ["waiting long", "mine"]
    later = NOW + SLACK / 2
    assert claim(conn, uid, limit=3, prefer=EVEN, now=later) == ["waiting a little"]


def test_filing_leaves_the_other_dispatchers_parts_alone(conn, connections):
    """A round files only the shards of its own parts: filing takes the
    whole shard, which would conflict with a peer claiming from it."""
    one_uid, two_uid = setup_queue(conn, dispatchers=2)
    by_part = put_in_parts(conn, 200)
    one, two = connections(2)
    original = queue_module.INBOX_DRAIN
    try:
        queue_module.INBOX_DRAIN = 1
        queue_of(one).next_due(NOW, EVEN)
    finally:
        queue_module.INBOX_DRAIN = original
    theirs = by_part[1] + by_part[3]
    claimed = claim(two, two_uid, limit=len(theirs), prefer=ODD)
    assert commit_all([one, two]) == []
    assert set(claimed) == set(theirs)


# -- which parts a dispatcher prefers ------------------------------------------------


def record(queue, uid, size=3, alive=True):
    when = NOW if alive else NOW - datetime.timedelta(days=1)
    queue.dispatchers[uid] = DispatcherRecord(uid, when)
    queue.dispatchers[uid].agents["main"] = Agent("main", size=size)


@pytest.mark.parametrize("peers", [2, 3, 4, 6])
def test_live_claiming_peers_split_the_parts_among_them(conn, peers):
    queue = queue_of(conn)
    uids = [str(uuid.UUID(int=number)) for number in range(peers)]
    for uid in uids:
        record(queue, uid)
    record(queue, str(uuid.uuid4()), alive=False)
    record(queue, str(uuid.uuid4()), size=0)
    preferred = [
        Dispatcher(conn.db(), uuid=uid)._preferred_parts(queue, NOW) for uid in uids
    ]
    assert all(preferred)
    assert set().union(*preferred) == set(range(RUN_PARTS))
    if peers <= RUN_PARTS:  # each part is one dispatcher's
        assert sum(len(parts) for parts in preferred) == RUN_PARTS


def test_a_dispatcher_alone_prefers_no_part(conn):
    queue = queue_of(conn)
    alone = str(uuid.uuid4())
    record(queue, alone)
    record(queue, str(uuid.uuid4()), alive=False)
    record(queue, str(uuid.uuid4()), size=0)
    assert Dispatcher(conn.db(), uuid=alone)._preferred_parts(queue, NOW) is None


# -- real dispatchers ------------------------------------------------------------------


def test_two_dispatchers_on_one_database_rarely_conflict(db, conn, start_dispatcher):
    """Two dispatchers with three threads each run 600 jobs put in one
    transaction: every job runs once, and their rounds conflict in few of
    them (without parts, about four rounds in five conflicted here)."""
    one = start_dispatcher(agent_size=3, group_commit=1)
    two = start_dispatcher(agent_size=3, group_commit=1)
    wait_for_all_jobs(conn, seconds=30)  # both registered
    queue = queue_of(conn)
    jobs = [queue.put(zasync.Job(jobfuncs.tag, number)) for number in range(600)]
    transaction.commit()
    wait_for_all_jobs(conn, seconds=120)
    assert all(
        job.status == COMPLETED and job.result == n for n, job in enumerate(jobs)
    )
    assert queue.counts()["succeeded"] == 600
    assert not queue.jobs(status=ACTIVE)
    by = {job.assignee[0] for job in jobs}
    assert by == {one.uuid, two.uuid}
    rounds = one.stats["rounds"] + two.stats["rounds"]
    conflicts = one.stats["conflicts"] + two.stats["conflicts"]
    assert conflicts <= 0.2 * rounds, (conflicts, rounds)


def test_with_parts_only_a_put_in_those_parts_changes_what_is_watched(conn):
    """A dispatcher with peers listens for changes to its own parts' inbox
    shards (and the quotas), not to the pending count, so that a put in a
    peer's part does not wake it for a round that finds nothing."""
    setup_queue(conn, quotas=["exports"])
    queue = queue_of(conn)
    watched = {obj._p_oid for obj in queue.watched_objects(EVEN)}
    assert queue._pending_count._p_oid not in watched
    assert queue.quotas["exports"]._p_oid in watched
    assert queue._pending_count._p_oid in {
        obj._p_oid for obj in queue.watched_objects()
    }
    changed = {}
    for parts, label in ((ODD, "theirs"), (EVEN, "mine")):
        put_until_in(conn, parts, label)
        last = conn.db().storage.lastTransaction()
        changed[label] = {
            record.oid
            for txn in conn.db().storage.iterator(last, last)
            for record in txn
        }
    assert not changed["theirs"] & watched
    assert changed["mine"] & watched
