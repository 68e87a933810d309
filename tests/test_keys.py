"""zasync.keys: one integer per index entry, ordered as the indexes need."""

import datetime

import pytest

import jobfuncs
import zasync
from zasync import clock, keys, queue

NOW_US = clock.to_micros(datetime.datetime(2030, 1, 2, tzinfo=datetime.UTC))


def test_run_order_is_priority_then_begin_after_then_id():
    ordered = [
        keys.run_order_key(5, NOW_US + 10, 9),  # higher priority, later
        keys.run_order_key(0, NOW_US, 7),
        keys.run_order_key(0, NOW_US, 8),  # same time, arrived later
        keys.run_order_key(0, NOW_US + 1, 1),
        keys.run_order_key(-5, 0, 0),
    ]
    assert ordered == sorted(ordered)


def test_run_order_key_decodes():
    key = keys.run_order_key(3, NOW_US, 42)
    assert keys.begin_of(key) == NOW_US
    assert keys.level_of(key) == keys.PRIORITY_LIMIT - 3
    assert key & keys.ID_MASK == 42
    # the level's due keys end at level_end; the next level starts after
    assert key <= keys.level_end(key, NOW_US) < keys.run_order_key(3, NOW_US + 1, 0)
    assert keys.level_end(key, NOW_US) < keys.next_level(key)
    assert keys.level_of(keys.next_level(key)) == keys.level_of(key) + 1
    assert keys.begin_of(keys.run_order_key(0, -5, 1)) == 0  # never negative


@pytest.mark.parametrize("priority", [keys.PRIORITY_LIMIT, -keys.PRIORITY_LIMIT])
def test_extreme_priorities_keep_their_order(priority):
    assert keys.run_order_key(priority, 0, 0) >= 0
    assert (keys.run_order_key(priority, keys.TIME_MASK, keys.ID_MASK)) < (
        keys.next_level(keys.run_order_key(priority, 0, 0))
    )


def test_completion_order_is_newest_first():
    newer = keys.completion_key(NOW_US + 1, 1)
    older = keys.completion_key(NOW_US, 2)
    assert newer < older
    assert keys.ended_of(older) == NOW_US


def test_ended_before_is_where_older_jobs_begin():
    threshold = keys.ended_before(NOW_US)
    assert keys.completion_key(NOW_US - 1, keys.ID_MASK) >= threshold
    assert keys.completion_key(NOW_US, 0) < threshold
    assert keys.ended_before(-10) == keys.ended_before(0)


def test_the_old_names_in_zasync_queue_still_import():
    assert queue._TIME_MASK == keys.TIME_MASK
    assert queue.PRIORITY_LIMIT == keys.PRIORITY_LIMIT
    assert queue._pending_key(1, 2, 3) == keys.run_order_key(1, 2, 3)
    assert queue._completed_key(2, 3) == keys.completion_key(2, 3)
    assert queue.JobTimedOut.__module__ == "zasync.exceptions"


def test_id_of_a_run_order_key():
    assert keys.id_of(keys.run_order_key(-3, NOW_US, 12345)) == 12345


def test_a_job_entered_in_front_sorts_before_its_priority_only():
    def pending(priority, front=False):
        job = zasync.Job(jobfuncs.add, 1, 2)
        job.enter_queue(None, job.id, jobfuncs.NOW, jobfuncs.NOW, priority=priority)
        return job.enter_run_order(front=front)

    older = pending(0)
    back = pending(0, front=True)
    assert back < older  # newer, yet first among its priority
    assert pending(1) < back  # a higher priority still runs first
    assert keys.begin_of(back) == 0
