"""Recurring jobs (zasync.recurring): definitions, exactly one job per tick
across dispatchers, catch-up policies, DST. Real FileStorage, real
dispatchers, an injected clock."""

import datetime
import threading

import pytest
import transaction
from ZODB.POSException import ConflictError
from zope.interface.verify import verifyObject

import jobfuncs
import zasync
from zasync import recurring
from zasync.exceptions import BadJobError
from zasync.interfaces import IChore, IRecurringJob, IRecurringJobs
from zasync.status import COMPLETED
from zasync.testing import wait_for

UTC = datetime.UTC
T0 = datetime.datetime(2026, 6, 1, 12, 0, 0, tzinfo=UTC)
MINUTE = datetime.timedelta(minutes=1)


class Clock:
    """The dispatchers' time, moved by the test."""

    def __init__(self, now):
        self.now = now
        self._lock = threading.Lock()

    def __call__(self):
        with self._lock:
            return self.now

    def advance(self, delta):
        with self._lock:
            self.now += delta


def recurring_runs(queue, name=None):
    """The jobs the recurring definitions put, oldest tick first."""
    found = [
        job
        for job in queue.jobs()
        if recurring.ANNOTATION in job.annotations
        and (name is None or job.annotations[recurring.ANNOTATION]["name"] == name)
    ]
    return sorted(found, key=lambda job: job.begin_after)


def ticks_of(jobs):
    return [job.annotations[recurring.ANNOTATION]["tick"] for job in jobs]


# -- definitions -------------------------------------------------------------


def test_the_implementations_provide_their_interfaces(conn):
    queues = zasync.get_queues(conn)
    definition = recurring.define(queues, "d", jobfuncs.add, every=60, args=(1, 2))
    verifyObject(IRecurringJob, definition)
    verifyObject(IRecurringJobs, recurring)
    verifyObject(IChore, recurring.chore)


def test_define_stores_a_definition_with_its_next_tick(conn):
    queues = zasync.get_queues(conn)
    definition = recurring.define(
        queues,
        "nightly",
        jobfuncs.add,
        cron="0 3 * * *",
        timezone="Europe/Berlin",
        args=(1, 2),
        now=T0,
    )
    transaction.commit()
    assert recurring.definitions(queues) == [definition]
    assert recurring.get(queues, "nightly") is definition
    # 03:00 in Berlin in June is 01:00 UTC, the next day.
    assert definition.next_tick == datetime.datetime(2026, 6, 2, 1, 0, tzinfo=UTC)
    assert definition.last_tick is None
    assert definition.callable is jobfuncs.add
    assert definition.source == "code"
    assert "cron '0 3 * * *' in Europe/Berlin" in repr(definition)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"cron": "0 3 * *"}, "cron expression '0 3 \\* \\*' is not valid"),
        ({"cron": "61 * * * *"}, "is not valid; use five fields"),
        ({}, "exactly one of them"),
        ({"cron": "0 3 * * *", "every": 60}, "exactly one of them"),
        ({"every": 0}, "every"),
        ({"every": 0.5}, "at least one second"),
        ({"every": 60, "timezone": "Mars/Olympus"}, "unknown timezone 'Mars/Olympus'"),
        ({"every": 60, "queue": "nope"}, "no queue 'nope'"),
        ({"every": 60, "quota_names": ("slow",)}, "has no quota 'slow'"),
        ({"every": 60, "catch_up": "all"}, "catch_up must be one of skip, once, each"),
        ({"every": 60, "priority": "high"}, "priority must be an int"),
    ],
)
def test_bad_definitions_are_refused_and_nothing_is_stored(conn, options, message):
    queues = zasync.get_queues(conn)
    recurring.define(queues, "kept", jobfuncs.add, every=60, args=(1, 1))
    transaction.commit()
    with pytest.raises(ValueError, match=message):
        recurring.define(queues, "bad", jobfuncs.add, **options)
    assert [d.name for d in recurring.definitions(queues)] == ["kept"]


def test_unstorable_callables_and_arguments_are_refused(conn):
    queues = zasync.get_queues(conn)
    with pytest.raises(BadJobError, match="lambda"):
        recurring.define(queues, "l", lambda: None, every=60)
    with pytest.raises(BadJobError, match="argument 1 of recurring job 'f'"):
        recurring.define(queues, "f", jobfuncs.echo, every=60, args=(threading.Lock(),))
    assert recurring.definitions(queues) == []


def test_defining_again_unchanged_writes_nothing_and_a_change_is_stored(conn):
    queues = zasync.get_queues(conn)
    recurring.define(queues, "d", jobfuncs.add, every=60, args=(1, 2), now=T0)
    transaction.commit()
    definition = recurring.get(queues, "d")
    recurring.define(queues, "d", jobfuncs.add, every=60, args=(1, 2), now=T0 + MINUTE)
    assert not definition._p_changed
    assert definition.next_tick == T0 + MINUTE
    recurring.pause(queues, "d")
    recurring.define(queues, "d", jobfuncs.add, every=3600, args=(1, 2), now=T0)
    assert definition.every == datetime.timedelta(hours=1)
    assert definition.next_tick == T0 + datetime.timedelta(hours=1)
    assert definition.paused  # a change keeps it paused


def test_unknown_names_get_a_key_error_that_says_how_to_list(conn):
    queues = zasync.get_queues(conn)
    for action in (
        recurring.remove,
        recurring.pause,
        recurring.resume,
        recurring.run_now,
    ):
        with pytest.raises(KeyError, match="zasync recurring list"):
            action(queues, "missing")


# -- firing ticks --------------------------------------------------------------


def fire(conn, now):
    transaction.begin()
    queues = zasync.get_queues(conn)
    wait = recurring.chore.run(None, queues, now)
    transaction.commit()
    return wait


def test_a_due_tick_puts_one_normal_job_and_the_chore_waits_for_the_next(conn, queue):
    queues = zasync.get_queues(conn)
    recurring.define(queues, "d", jobfuncs.add, every=60, args=(2, 3), now=T0)
    transaction.commit()
    assert fire(conn, T0 + datetime.timedelta(seconds=10)) == recurring.CHECK_EVERY
    assert recurring_runs(queue) == []
    assert fire(conn, T0 + datetime.timedelta(seconds=60.5)) == recurring.CHECK_EVERY
    assert fire(conn, T0 + datetime.timedelta(seconds=115)) == pytest.approx(5)
    (job,) = recurring_runs(queue)
    assert job.begin_after == T0 + MINUTE
    assert job.callable is jobfuncs.add and job.args == (2, 3)
    definition = recurring.get(queues, "d")
    assert definition.last_tick == T0 + MINUTE
    assert definition.next_tick == T0 + 2 * MINUTE
    assert definition.last_job is job
    assert recurring.last_run(definition) == (job, "pending", False)
    # The same tick again: nothing more.
    fire(conn, T0 + datetime.timedelta(seconds=116))
    assert len(recurring_runs(queue)) == 1


def _downtime(conn, queue, catch_up):
    queues = zasync.get_queues(conn)
    recurring.define(
        queues, "d", jobfuncs.add, every=60, args=(1, 1), catch_up=catch_up, now=T0
    )
    transaction.commit()
    # No dispatcher for ten minutes and more: ticks 1..10 are missed (the
    # tenth by more than half its period).
    fire(conn, T0 + datetime.timedelta(minutes=10, seconds=45))
    return recurring_runs(queue), recurring.get(queues, "d")


def test_catch_up_skip_drops_the_missed_ticks(conn, queue):
    jobs, definition = _downtime(conn, queue, "skip")
    assert jobs == []
    assert definition.last_tick == T0 + 10 * MINUTE
    assert definition.next_tick == T0 + 11 * MINUTE


def test_catch_up_skip_still_runs_a_tick_less_than_a_minute_late(conn, queue):
    queues = zasync.get_queues(conn)
    recurring.define(queues, "d", jobfuncs.add, every=600, args=(1, 1), now=T0)
    transaction.commit()
    fire(conn, T0 + datetime.timedelta(seconds=650))
    assert ticks_of(recurring_runs(queue)) == [(T0 + 10 * MINUTE).isoformat()]


def test_catch_up_once_runs_one_job_for_all_missed_ticks(conn, queue):
    jobs, definition = _downtime(conn, queue, "once")
    assert ticks_of(jobs) == [(T0 + 10 * MINUTE).isoformat()]
    assert definition.next_tick == T0 + 11 * MINUTE


def test_catch_up_each_runs_one_job_per_missed_tick(conn, queue):
    jobs, definition = _downtime(conn, queue, "each")
    assert ticks_of(jobs) == [(T0 + n * MINUTE).isoformat() for n in range(1, 11)]
    assert definition.next_tick == T0 + 11 * MINUTE


def test_catch_up_each_is_bounded_to_the_newest_ticks(conn, queue, monkeypatch):
    monkeypatch.setattr(recurring, "MAX_CATCH_UP", 3)
    jobs, _ = _downtime(conn, queue, "each")
    assert ticks_of(jobs) == [(T0 + n * MINUTE).isoformat() for n in (8, 9, 10)]


def test_paused_ticks_are_not_run_and_resume_starts_from_the_next(conn, queue):
    queues = zasync.get_queues(conn)
    recurring.define(
        queues, "d", jobfuncs.add, every=60, args=(1, 1), catch_up="each", now=T0
    )
    recurring.pause(queues, "d")
    transaction.commit()
    fire(conn, T0 + 5 * MINUTE)
    assert recurring_runs(queue) == []
    recurring.resume(queues, "d", now=T0 + datetime.timedelta(minutes=5, seconds=1))
    transaction.commit()
    assert recurring.get(queues, "d").next_tick == T0 + 6 * MINUTE
    fire(conn, T0 + 6 * MINUTE)
    assert ticks_of(recurring_runs(queue)) == [(T0 + 6 * MINUTE).isoformat()]


def test_run_now_puts_a_job_and_keeps_the_schedule(conn, queue):
    queues = zasync.get_queues(conn)
    recurring.define(queues, "d", jobfuncs.add, every=60, args=(1, 1), now=T0)
    recurring.pause(queues, "d")
    job = recurring.run_now(queues, "d", now=T0)
    transaction.commit()
    assert job.annotations[recurring.ANNOTATION] == {"name": "d", "tick": None}
    assert recurring.get(queues, "d").next_tick == T0 + MINUTE
    assert recurring.get(queues, "d").last_job is job


def test_a_definition_whose_function_is_gone_spends_the_tick_and_says_why(conn, queue):
    queues = zasync.get_queues(conn)
    definition = recurring.define(queues, "d", jobfuncs.add, every=60, now=T0)
    definition._callable = ("jobfuncs", "no_such_function")
    transaction.commit()
    fire(conn, T0 + MINUTE)
    assert recurring_runs(queue) == []
    assert "no_such_function" in definition.last_error
    assert definition.next_tick == T0 + 2 * MINUTE


def test_a_broken_definition_does_not_hold_up_the_others(conn, queue):
    queues = zasync.get_queues(conn)
    broken = recurring.define(queues, "a-broken", jobfuncs.add, every=60, now=T0)
    recurring.define(queues, "b-fine", jobfuncs.add, every=60, args=(1, 1), now=T0)
    broken.timezone = "Nowhere/Gone"  # as if tzdata lost it
    broken.cron, broken.every = "* * * * *", None
    transaction.commit()
    fire(conn, T0 + MINUTE)
    assert [
        j.annotations[recurring.ANNOTATION]["name"] for j in recurring_runs(queue)
    ] == ["b-fine"]


def test_two_connections_firing_one_tick_conflict_and_one_job_is_put(db, queue):
    recurring.define(
        zasync.get_queues(queue._p_jar),
        "d",
        jobfuncs.add,
        every=60,
        args=(1, 1),
        now=T0,
    )
    transaction.commit()
    managers = [transaction.TransactionManager() for _ in range(2)]
    conns = [db.open(transaction_manager=tm) for tm in managers]
    try:
        for tm, c in zip(managers, conns, strict=True):
            tm.begin()
            recurring.chore.run(None, zasync.get_queues(c), T0 + MINUTE)
        managers[0].commit()
        with pytest.raises(ConflictError):
            managers[1].commit()
        managers[1].abort()
        # The retry sees the tick done.
        managers[1].begin()
        recurring.chore.run(None, zasync.get_queues(conns[1]), T0 + MINUTE)
        managers[1].commit()
    finally:
        for c in conns:
            c.close()
    transaction.begin()
    assert ticks_of(recurring_runs(queue)) == [(T0 + MINUTE).isoformat()]


# -- DST -----------------------------------------------------------------------


def berlin_ticks(start, count):
    schedule = recurring.Schedule("30 2 * * *", None, "Europe/Berlin", None)
    ticks, when = [], start
    for _ in range(count):
        when = schedule.after(when)
        ticks.append(when)
    return ticks


def test_dst_spring_forward_runs_the_missing_time_at_three():
    ticks = berlin_ticks(datetime.datetime(2026, 3, 27, 12, tzinfo=UTC), 3)
    assert ticks == [
        datetime.datetime(2026, 3, 28, 1, 30, tzinfo=UTC),  # 02:30 CET
        datetime.datetime(
            2026, 3, 29, 1, 0, tzinfo=UTC
        ),  # 02:30 does not exist: 03:00 CEST
        datetime.datetime(2026, 3, 30, 0, 30, tzinfo=UTC),  # 02:30 CEST
    ]


def test_dst_fall_back_runs_a_fixed_hour_once():
    ticks = berlin_ticks(datetime.datetime(2026, 10, 23, 12, tzinfo=UTC), 3)
    assert ticks == [
        datetime.datetime(2026, 10, 24, 0, 30, tzinfo=UTC),  # 02:30 CEST
        datetime.datetime(2026, 10, 25, 0, 30, tzinfo=UTC),  # the first 02:30 only
        datetime.datetime(2026, 10, 26, 1, 30, tzinfo=UTC),  # 02:30 CET
    ]


def test_dst_fall_back_runs_a_wildcard_hour_in_both_hours():
    schedule = recurring.Schedule("30 * * * *", None, "Europe/Berlin", None)
    when = datetime.datetime(2026, 10, 24, 23, 45, tzinfo=UTC)
    ticks = []
    for _ in range(4):
        when = schedule.after(when)
        ticks.append(when.strftime("%H:%M"))
    assert ticks == ["00:30", "01:30", "02:30", "03:30"]  # UTC: every hour


def test_dst_catch_up_each_over_the_fall_back_night(conn, queue):
    queues = zasync.get_queues(conn)
    start = datetime.datetime(2026, 10, 23, 12, tzinfo=UTC)
    recurring.define(
        queues,
        "berlin",
        jobfuncs.add,
        cron="30 2 * * *",
        timezone="Europe/Berlin",
        args=(1, 1),
        catch_up="each",
        now=start,
    )
    transaction.commit()
    fire(conn, datetime.datetime(2026, 10, 26, 12, tzinfo=UTC))
    assert ticks_of(recurring_runs(queue)) == [
        "2026-10-24T00:30:00+00:00",
        "2026-10-25T00:30:00+00:00",
        "2026-10-26T01:30:00+00:00",
    ]


# -- real dispatchers ----------------------------------------------------------


def test_two_dispatchers_put_exactly_one_job_per_tick(
    conn, queue, start_dispatcher, monkeypatch
):
    monkeypatch.setattr(recurring, "CHECK_EVERY", 0.01)
    clock = Clock(T0)
    queues = zasync.get_queues(conn)
    recurring.define(queues, "d", jobfuncs.add, every=60, args=(1, 1), now=T0)
    transaction.commit()
    first = start_dispatcher(clock=clock)
    second = start_dispatcher(clock=clock)

    def completed(count):
        def check():
            runs = recurring_runs(queue)
            return len(runs) >= count and all(j.status == COMPLETED for j in runs)

        wait_for(
            check,
            seconds=20,
            refresh=transaction.begin,
            describe=lambda: f"recurring runs: {recurring_runs(queue)}",
        )

    for n in range(1, 6):
        clock.advance(MINUTE)
        completed(n)
    # Paused: ticks pass without a job, in the running dispatchers.
    recurring.pause(queues, "d")
    transaction.commit()
    clock.advance(MINUTE)
    recurring.resume(queues, "d", now=clock())
    transaction.commit()
    clock.advance(MINUTE)
    completed(6)
    first.stop(5)
    second.stop(5)
    transaction.begin()
    runs = recurring_runs(queue)
    expected = [(T0 + n * MINUTE).isoformat() for n in (1, 2, 3, 4, 5, 7)]
    assert ticks_of(runs) == expected
    assert [job.result for job in runs] == [2] * 6
