"""Rate limits: at most N starts per period of the jobs naming a quota,
cluster-wide (two real dispatchers on a real FileStorage), merged between
concurrent claims only while the merged starts stay within the rate; the
jobs held back stay pending and hold no thread."""

import datetime
import threading
import uuid

import pytest
import transaction
from ZODB.POSException import ConflictError
from zope.interface.verify import verifyObject

import jobfuncs
import zasync
from zasync import admin, clock, wakeup
from zasync.interfaces import IQuota
from zasync.queue import get_queues
from zasync.quota import Quota
from zasync.registry import Agent, DispatcherRecord
from zasync.status import COMPLETED, PENDING
from zasync.testing import wait_for, wait_for_result

NOW = jobfuncs.NOW
MINUTE = datetime.timedelta(minutes=1)
SECOND = datetime.timedelta(seconds=1)


def register(queue, size=10, filter=None):
    uid = str(uuid.uuid4())
    record = queue.dispatchers[uid] = DispatcherRecord(uid, NOW)
    agent = record.agents["main"] = Agent("main", size=size, filter=filter)
    return agent, uid


def put(queue, label, **options):
    return queue.put(zasync.Job(jobfuncs.tag, label), **options)


def labels(jobs):
    return [j.args[0] for j in jobs]


# -- the rate of a quota --------------------------------------------------------


def test_a_quota_with_a_rate(queue):
    quota = queue.quotas.create("api", size=2, rate=(10, MINUTE))
    verifyObject(IQuota, quota)
    assert quota.rate == (10, MINUTE)
    assert quota.starts_in_period(NOW) == 0
    assert quota.rate_opens_at(NOW) is None
    quota.set_rate(3, per=datetime.timedelta(seconds=30))
    assert quota.rate == (3, datetime.timedelta(seconds=30))
    quota.set_rate(None)
    assert quota.rate is None
    assert queue.quotas.create("plain").rate is None


@pytest.mark.parametrize(
    ("rate", "message"),
    [
        ((0, MINUTE), "whole number of 1 or more"),
        ((1.5, MINUTE), "whole number of 1 or more"),
        ((True, MINUTE), "whole number of 1 or more"),
        ((5, 60), "positive timedelta"),
        ((5, datetime.timedelta(0)), "positive timedelta"),
        (5, r"a rate is \(starts, per\)"),
        ((1, 2, 3), r"a rate is \(starts, per\)"),
    ],
)
def test_a_bad_rate_says_what_to_give_and_changes_nothing(queue, rate, message):
    with pytest.raises(ValueError, match=message):
        queue.quotas.create("bad", rate=rate)
    assert "bad" not in queue.quotas
    quota = queue.quotas.create("good", rate=(2, MINUTE))
    with pytest.raises(ValueError, match=message):
        quota.set_rate(rate)
    assert quota.rate == (2, MINUTE)


def test_quotas_stored_before_rates_work(queue):
    """A quota stored without the new attributes reads the class defaults."""
    quota = Quota("old", 1)
    for name in ("_rate", "_starts", "_paused"):
        quota.__dict__.pop(name, None)
    assert quota.rate is None and quota.paused is None
    assert quota.may_start(NOW)
    quota.record_start(1, NOW)  # nothing to count without a rate
    assert quota.starts_in_period(NOW) == 0


# -- put(rate_limit=...) ---------------------------------------------------------


def test_put_rate_limit_names_a_quota_with_a_rate(queue):
    queue.quotas.create("mail", size=100, rate=(2, MINUTE))
    queue.quotas.create("other", size=1)
    job = put(queue, "a", rate_limit="mail", quota_names=("other",), now=NOW)
    assert job.quota_names == ("mail", "other")


@pytest.mark.parametrize(
    ("key", "message"),
    [
        ("nope", r"no rate limit 'nope'; create it first with queue.quotas.create"),
        ("plain", r"no rate limit 'plain'.* or quota.set_rate"),
        ("", "must be the name of a quota with a rate"),
        (3, "must be the name of a quota with a rate"),
    ],
)
def test_put_with_an_unknown_rate_limit_says_how_to_create_it(queue, key, message):
    queue.quotas.create("plain", size=1)
    with pytest.raises(ValueError, match=message):
        put(queue, "a", rate_limit=key, now=NOW)
    assert len(queue) == 0


# -- claims ----------------------------------------------------------------------


def test_claims_start_at_most_the_rate_per_period(queue):
    queue.quotas.create("api", size=100, rate=(2, MINUTE))
    agent, uid = register(queue)
    for label in "abcde":
        put(queue, label, rate_limit="api", now=NOW)
    free = put(queue, "free", now=NOW)  # another lane goes on meanwhile
    assert labels(queue.claim(agent, uid, 10, NOW)) == ["a", "b", "free"]
    quota = queue.quotas["api"]
    assert quota.starts_in_period(NOW) == 2
    assert free.status != PENDING
    # The held-back jobs wait, pending, and the dispatcher waits until the
    # period of the oldest start is over.
    assert quota.rate_opens_at(NOW) == NOW + MINUTE
    assert queue.next_due(NOW) == NOW + MINUTE
    later = NOW + 30 * SECOND
    assert labels(queue.claim(agent, uid, 10, later)) == []
    # Both starts at NOW are a period old: two more may start.
    assert labels(queue.claim(agent, uid, 10, NOW + MINUTE)) == ["c", "d"]
    assert quota.starts_in_period(NOW + MINUTE) == 2
    assert queue.next_due(NOW + MINUTE) == NOW + 2 * MINUTE
    assert [j.status for j in queue] == [PENDING]


def test_a_start_counts_though_the_job_ended(queue):
    """The rate counts starts, not running jobs: a job that finished still
    counts until its period is over."""
    quota = queue.quotas.create("api", size=1, rate=(2, MINUTE))
    agent, uid = register(queue)
    for label in "abc":
        put(queue, label, rate_limit="api", now=NOW)
    (first,) = queue.claim(agent, uid, 10, NOW)
    assert labels(queue.claim(agent, uid, 10, NOW)) == []  # the size: 1
    queue._release(first)
    (second,) = queue.claim(agent, uid, 10, NOW)
    queue._release(second)
    assert quota.has_room() and not quota.may_start(NOW + SECOND)
    assert labels(queue.claim(agent, uid, 10, NOW + SECOND)) == []
    assert labels(queue.claim(agent, uid, 10, NOW + MINUTE)) == ["c"]


def test_without_waiting_jobs_the_rate_does_not_wake_the_dispatcher(queue):
    queue.quotas.create("api", size=10, rate=(1, MINUTE))
    agent, uid = register(queue)
    put(queue, "a", rate_limit="api", now=NOW)
    assert labels(queue.claim(agent, uid, 10, NOW)) == ["a"]
    assert queue.next_due(NOW) is None


def test_raising_the_rate_lets_waiting_jobs_start_at_the_next_claim(queue):
    quota = queue.quotas.create("api", size=10, rate=(1, MINUTE))
    agent, uid = register(queue)
    for label in "abc":
        put(queue, label, rate_limit="api", now=NOW)
    assert labels(queue.claim(agent, uid, 10, NOW)) == ["a"]
    quota.set_rate((3, MINUTE))
    assert labels(queue.claim(agent, uid, 10, NOW)) == ["b", "c"]


# -- conflicts ------------------------------------------------------------------


def state(starts=(), rate=(2, 60_000_000), **more):
    return {
        "name": "api",
        "_size": 10,
        "_active": (),
        "_rate": rate,
        "_starts": tuple(starts),
        **more,
    }


def resolve(old, committed, new):
    return Quota("api", 10)._p_resolveConflict(old, committed, new)


def test_concurrent_starts_within_the_rate_merge():
    old = state()
    merged = resolve(old, state([(10, 1)]), state([(20, 2)]))
    assert merged["_starts"] == ((10, 1), (20, 2))


def test_concurrent_starts_beyond_the_rate_conflict():
    old = state([(5, 0)])
    with pytest.raises(ConflictError, match="rate used up"):
        resolve(old, state([(5, 0), (10, 1)]), state([(5, 0), (20, 2)]))


def test_starts_a_period_apart_merge_and_dropped_starts_stay_dropped():
    """One side dropped an old start (its period is over) while adding
    one; the other added one a period after the first: within the rate."""
    old = state([(0, 0), (30_000_000, 1)])
    theirs = state([(30_000_000, 1), (60_000_000, 2)])
    mine = state([(0, 0), (30_000_000, 1), (90_000_001, 3)])
    merged = resolve(old, theirs, mine)
    assert merged["_starts"] == ((30_000_000, 1), (60_000_000, 2), (90_000_001, 3))


def test_a_rate_and_a_pause_changed_on_one_side_win():
    old = state()
    theirs = state([(10, 1)])
    mine = state(rate=(5, 60_000_000), _paused=(NOW, "me"))
    merged = resolve(old, theirs, mine)
    assert merged["_rate"] == (5, 60_000_000)
    assert merged["_paused"] == (NOW, "me")
    assert merged["_starts"] == ((10, 1),)


def test_rates_set_differently_at_once_conflict():
    with pytest.raises(ConflictError, match="_rate changed concurrently"):
        resolve(state(), state(rate=(3, 1)), state(rate=(4, 1)))


@pytest.fixture
def two_claimers(db, conn):
    queue = get_queues(conn)[""]
    queue.quotas.create("api", size=10, rate=(3, MINUTE))
    # Agents taking only 'a' and only 'b' jobs: their claims meet only at
    # the quota ('c', which neither takes, is first; see test_quota).
    _, uid_a = register(queue, filter=jobfuncs.accepts_a)
    _, uid_b = register(queue, filter=jobfuncs.accepts_b)
    for label in "caabb":
        put(queue, label, rate_limit="api", now=NOW)
    conn.transaction_manager.commit()
    one, two = jobfuncs.open_connection(db), jobfuncs.open_connection(db)
    yield (one, uid_a), (two, uid_b)
    one.close()
    two.close()


def _claim(connection, uid, limit):
    queue = get_queues(connection)[""]
    agent = queue.dispatchers[uid].agents["main"]
    return labels(queue.claim(agent, uid, limit, NOW))


def test_two_processes_claiming_past_the_rate_conflict(conn, two_claimers):
    """Each claim alone fits the rate of 3; both together (4) do not: one
    commit conflicts, and its retry takes only what is left."""
    (one, uid_a), (two, uid_b) = two_claimers
    assert len(_claim(one, uid_a, 2)) == 2
    assert len(_claim(two, uid_b, 2)) == 2
    one.transaction_manager.commit()
    with pytest.raises(ConflictError):
        two.transaction_manager.commit()
    two.transaction_manager.abort()
    assert len(_claim(two, uid_b, 2)) == 1
    two.transaction_manager.commit()
    conn.transaction_manager.begin()
    queue = get_queues(conn)[""]
    assert queue.quotas["api"].starts_in_period(NOW) == 3
    assert labels(queue) == ["c", "b"]


def test_two_processes_claiming_within_the_rate_merge(conn, two_claimers):
    (one, uid_a), (two, uid_b) = two_claimers
    assert len(_claim(one, uid_a, 1)) == 1
    assert len(_claim(two, uid_b, 2)) == 2
    one.transaction_manager.commit()
    two.transaction_manager.commit()
    conn.transaction_manager.begin()
    assert get_queues(conn)[""].quotas["api"].starts_in_period(NOW) == 3


# -- two real dispatchers ------------------------------------------------------


class Clock:
    """A clock the test moves; it starts at the real time, so that the
    dispatchers' clock check (against the storage's time) agrees."""

    def __init__(self):
        self.now = clock.utcnow()
        self.lock = threading.Lock()

    def __call__(self):
        with self.lock:
            return self.now

    def advance(self, delta):
        with self.lock:
            self.now += delta


def started(queue, names):
    return [j for j in queue.jobs() if j.args and j.args[0] in names and j.started]


def test_two_dispatchers_never_start_more_than_the_rate(db, conn, start_dispatcher):
    queue = get_queues(conn)[""]
    queue.quotas.create("api", size=10, rate=(3, MINUTE))
    transaction.commit()
    the_clock = Clock()
    names = [f"r{i}" for i in range(8)]
    for name in names:
        queue.put(zasync.Job(jobfuncs.tag, name), rate_limit="api", now=the_clock())
    transaction.commit()
    options = dict(clock=the_clock, ping_interval=60, death_interval=3600)
    start_dispatcher(uuid=str(uuid.uuid4()), agent_size=1, **options)
    start_dispatcher(uuid=str(uuid.uuid4()), agent_size=1, **options)

    def starts_reach(count):
        wait_for(
            lambda: (
                len([j for j in started(queue, names) if j.status == COMPLETED])
                >= count
            ),
            15,
            transaction.begin,
            lambda: (
                f"{count} rate-limited jobs done: {[j.status for j in queue.jobs()]}"
            ),
        )

    starts_reach(3)
    # Held back, the other jobs hold no thread: a job of another lane runs.
    other = queue.put(zasync.Job(jobfuncs.add, 1, 2), now=the_clock())
    transaction.commit()
    assert wait_for_result(other) == 3
    transaction.begin()
    assert len(started(queue, names)) == 3
    assert queue.quotas["api"].rate_opens_at(the_clock()) is not None

    for expected in (6, 8):
        the_clock.advance(MINUTE + SECOND)
        wakeup.wake()
        starts_reach(expected)
        transaction.begin()
        assert len(started(queue, names)) == expected
    times = sorted(j.started for j in started(queue, names))
    for first, fourth in zip(times, times[3:], strict=False):
        assert fourth - first >= MINUTE, times


def test_a_dispatcher_wakes_when_the_rate_lets_the_next_job_start(
    db, conn, start_dispatcher
):
    """With a long poll interval, the dispatcher waits for the moment the
    rate has room again (IQueue.next_due), not for its poll, and does not
    spin meanwhile."""
    queue = get_queues(conn)[""]
    period = datetime.timedelta(seconds=1.5)
    queue.quotas.create("api", size=10, rate=(1, period))
    transaction.commit()
    dispatcher = start_dispatcher(uuid=str(uuid.uuid4()), poll_interval=60)
    jobs = [
        queue.put(zasync.Job(jobfuncs.add, i, 0), rate_limit="api") for i in range(2)
    ]
    transaction.commit()
    assert wait_for_result(jobs[0], seconds=10) == 0
    rounds = dispatcher.stats.get("rounds", 0)
    assert wait_for_result(jobs[1], seconds=10) == 1
    transaction.begin()
    assert jobs[1].started - jobs[0].started >= period
    assert jobs[1].started - jobs[0].started < period + 5 * SECOND
    assert dispatcher.stats.get("rounds", 0) - rounds < 30


# -- admin --------------------------------------------------------------------


def test_admin_sets_shows_and_removes_a_rate(db, conn, queue):
    queue.quotas.create("api", size=2)
    transaction.commit()
    done = admin.in_transaction(db, lambda q: admin.set_quota_rate(q, "api", 10, "1m"))
    assert done == {
        "queue": "default",
        "quota": "api",
        "rate": {"limit": 10, "per_seconds": 60.0},
        "was": None,
    }
    report = admin.in_transaction(db, admin.settings_report)
    (api,) = report["queues"][0]["quotas"]
    assert api["rate"] == {
        "limit": 10,
        "per_seconds": 60.0,
        "used": 0,
        "opens_at": None,
    }
    done = admin.in_transaction(db, lambda q: admin.set_quota_rate(q, "api", None))
    assert done["rate"] is None and done["was"]["limit"] == 10


@pytest.mark.parametrize(
    ("name", "limit", "per", "message"),
    [
        ("nope", 1, "1m", "no quota 'nope'; create it first"),
        ("api", 0, "1m", "whole number of 1 or more"),
        ("api", 2, "soon", "is not a duration"),
        ("api", 2, None, "must be a duration"),
    ],
)
def test_admin_rate_bad_input(db, conn, queue, name, limit, per, message):
    queue.quotas.create("api", size=2, rate=(5, MINUTE))
    transaction.commit()
    with pytest.raises(admin.AdminError, match=message):
        admin.in_transaction(db, lambda q: admin.set_quota_rate(q, name, limit, per))
    transaction.begin()
    assert queue.quotas["api"].rate == (5, MINUTE)
