"""Death is judged on fresh evidence every client agrees on.

A dispatcher declares a peer dead only when the storage's own time (the
transaction ids of commits) shows no heartbeat of the peer for a whole
death interval that the judge itself watched without interruption: not
from its own clock, and not from a view it kept through a pause of its own.
Two dispatchers share one FileStorage in this process; each has a clock of
its own (``clock=``), which the tests set off or stop.
"""

import datetime
import logging
import threading
import time
import uuid

import pytest
import transaction
from ZODB.TimeStamp import TimeStamp

import jobfuncs
import zasync
from zasync import clock
from zasync.registry import DispatcherRecord
from zasync.testing import wait_for_result

PING = 0.1
DEATH = 1.0
# Rounds that judged peers: enough for several death intervals of watching.
JUDGEMENTS = int(3 * DEATH / PING)


class Clock:
    """A clock ``offset`` seconds off the real one, which ``stop()`` makes
    block every caller (the dispatcher's loop stalls in it) until
    ``go()``."""

    def __init__(self, offset=0.0):
        self.offset = datetime.timedelta(seconds=offset)
        self.running = threading.Event()
        self.running.set()
        self.waiting = 0
        self._lock = threading.Lock()

    def __call__(self):
        if not self.running.is_set():
            with self._lock:
                self.waiting += 1
            self.running.wait(30)
            with self._lock:
                self.waiting -= 1
        return clock.utcnow() + self.offset

    def stop(self):
        self.running.clear()

    def go(self):
        self.running.set()


@pytest.fixture
def peers(db, queue):
    started = []

    def start(the_clock):
        dispatcher = zasync.start(
            db,
            uuid=str(uuid.uuid4()),
            clock=the_clock,
            ping_interval=PING,
            death_interval=DEATH,
            poll_interval=0.05,
        )
        started.append((dispatcher, the_clock))
        return dispatcher

    yield start
    for dispatcher, the_clock in started:
        the_clock.go()
        dispatcher.stop(5)


def declared_dead(caplog):
    return [
        r.getMessage()
        for r in caplog.records
        if "missed its heartbeat" in r.getMessage()
    ]


def judged(dispatcher, at_least):
    return dispatcher.stats["judgements"] >= at_least


@pytest.mark.parametrize("offset", [10.0, -10.0])
def test_a_clock_ten_seconds_off_declares_no_live_peer_dead(
    peers, queue, caplog, offset
):
    caplog.set_level(logging.WARNING, logger="zasync")
    right = peers(Clock())
    wrong = peers(Clock(offset))
    clock.wait_until(
        lambda: (
            declared_dead(caplog)
            or (judged(right, JUDGEMENTS) and judged(wrong, JUDGEMENTS))
        ),
        15,
    )
    assert declared_dead(caplog) == []
    assert judged(right, JUDGEMENTS) and judged(wrong, JUDGEMENTS)
    transaction.begin()
    assert not queue.dispatchers[right.uuid].dead
    assert not queue.dispatchers[wrong.uuid].dead


def test_a_judge_whose_loop_stalled_waits_for_fresh_evidence(peers, queue, caplog):
    """Both dispatchers stall for longer than the death interval (a host
    suspended, a long pause of both); the first to wake must not declare
    the other dead from heartbeats that could not be written meanwhile,
    but watch first: the other wakes a moment later and heartbeats."""
    caplog.set_level(logging.WARNING, logger="zasync")
    first_clock, second_clock = Clock(), Clock()
    first = peers(first_clock)
    second = peers(second_clock)
    assert clock.wait_until(
        lambda: first.stats["rounds"] >= 10 and second.stats["rounds"] >= 10, 10
    )
    first_clock.stop()
    second_clock.stop()
    assert clock.wait_until(
        lambda: first_clock.waiting and second_clock.waiting, 5, interval=0.01
    )
    stalled_at = time.monotonic()
    # The stall itself: longer than the death interval.
    clock.wait_until(lambda: time.monotonic() - stalled_at > 2 * DEATH, 10)
    rounds = first.stats["rounds"]
    first_clock.go()
    assert clock.wait_until(lambda: first.stats["rounds"] > rounds, 5, interval=0.005)
    second_clock.go()
    judgements = first.stats["judgements"]
    clock.wait_until(
        lambda: declared_dead(caplog) or judged(first, judgements + JUDGEMENTS), 15
    )
    assert declared_dead(caplog) == []
    assert first.stats["stalls"] >= 1
    transaction.begin()
    assert not queue.dispatchers[second.uuid].dead


def test_a_peer_that_stopped_is_declared_dead_by_the_storages_time(
    peers, queue, caplog
):
    """The other side: a peer whose heartbeats stopped is declared dead
    once the judge has watched a death interval of the storage's time
    without one, whatever the judge's clock says."""
    caplog.set_level(logging.WARNING, logger="zasync")
    ghost = str(uuid.uuid4())
    queue.dispatchers[ghost] = DispatcherRecord(ghost, clock.utcnow(), PING, DEATH)
    transaction.commit()
    judge = peers(Clock(-3600.0))  # an hour behind: its clock does not matter
    assert clock.wait_until(lambda: declared_dead(caplog), 10)
    (message,) = declared_dead(caplog)
    assert ghost in message and "of the storage's time" in message
    transaction.begin()
    assert queue.dispatchers[ghost].dead
    assert not queue.dispatchers[judge.uuid].dead


def test_heartbeat_age_is_measured_between_commits(queue):
    """heartbeat_age counts the storage's time from the commit that wrote
    the heartbeat (or from ``since``, if later) to a later transaction."""
    record = queue.dispatchers["d"] = DispatcherRecord("d", clock.utcnow(), 1, 3)
    assert record.heartbeat_tid is None  # not committed yet
    assert record.heartbeat_age(b"\0" * 8) == 0.0
    transaction.commit()
    transaction.begin()
    beat = record.heartbeat_tid
    assert beat is not None and clock.seen_tid(queue._p_jar) == beat

    def tid_after(seconds):
        when = clock.tid_seconds(beat) + seconds
        return TimeStamp(*time.gmtime(when)[:5], when % 60).raw()

    assert record.heartbeat_age(tid_after(2)) == pytest.approx(2.0, abs=0.01)
    assert not record.looks_dead(tid_after(2))
    assert record.looks_dead(tid_after(4))
    # Counted only from ``since`` (when the judge began to watch).
    assert not record.looks_dead(tid_after(4), since=tid_after(2))
    assert record.heartbeat_age(tid_after(4), since=tid_after(5)) == 0.0


def test_a_clock_ten_seconds_ahead_keeps_deadlines_and_delays(peers, queue):
    """Jobs become due and expire by the storage's time: a worker whose
    clock is 10 s ahead neither fails a ``begin_by=5s`` job as too late
    nor starts a ``begin_after=+2s`` job early."""
    ahead = peers(Clock(10.0))
    clock.wait_until(
        lambda: getattr(ahead, "clock_offset", 0) or ahead.stats["rounds"] >= 50, 10
    )
    now = clock.utcnow()
    in_time = queue.put(
        zasync.Job(jobfuncs.add, 1, 1), begin_by=datetime.timedelta(seconds=5)
    )
    delayed = queue.put(
        zasync.Job(jobfuncs.started_at), begin_after=datetime.timedelta(seconds=2)
    )
    transaction.commit()
    assert wait_for_result(in_time) == 2
    assert wait_for_result(delayed) >= now + datetime.timedelta(seconds=2)
    assert ahead.clock_offset == pytest.approx(-10.0, abs=1.0)


def test_a_peer_is_judged_when_its_death_interval_ends_not_at_the_next_ping(
    db, queue, caplog
):
    """A judge with a long ping interval still finds a peer dead as soon as
    the peer's (short) death interval has passed in its watch."""
    caplog.set_level(logging.WARNING, logger="zasync")
    ghost = str(uuid.uuid4())
    queue.dispatchers[ghost] = DispatcherRecord(ghost, clock.utcnow(), PING, DEATH)
    transaction.commit()
    judge = zasync.start(db, ping_interval=30, death_interval=300, poll_interval=5)
    try:
        assert clock.wait_until(lambda: declared_dead(caplog), 10 * DEATH)
    finally:
        judge.stop(5)
    transaction.begin()
    assert queue.dispatchers[ghost].dead
