"""Wherever a duration is asked for, a timedelta or a number of seconds
will do; anything else is an error that says what is accepted."""

import datetime

import pytest

import zasync
from jobfuncs import add
from zasync.retry import RetryWithDelay


@pytest.mark.parametrize("given", [1.5, 1, datetime.timedelta(seconds=1.5)])
def test_a_retry_delay_takes_seconds_or_a_timedelta(given):
    policy = RetryWithDelay(delay=given, max_delay=given, jitter=0)
    seconds = given if isinstance(given, int | float) else given.total_seconds()
    assert policy.delay == datetime.timedelta(seconds=seconds)
    assert policy.delay_for(3) == datetime.timedelta(seconds=seconds)


@pytest.mark.parametrize("given", ["30s", None, True])
def test_anything_else_is_refused_with_what_is_accepted(given):
    with pytest.raises(TypeError, match="timedelta or a number of seconds"):
        RetryWithDelay(delay=given)


def test_begin_after_and_begin_by_take_seconds_as_timedeltas(queue):
    now = queue.put(zasync.Job(add, 1, 2)).queued
    job = queue.put(zasync.Job(add, 1, 2), begin_after=90, begin_by=30)
    assert job.begin_by == datetime.timedelta(seconds=30)
    assert abs(job.begin_after - now - datetime.timedelta(seconds=90)) < (
        datetime.timedelta(seconds=5)
    )
    same = queue.put(
        zasync.Job(add, 1, 2),
        begin_after=datetime.timedelta(seconds=90),
        begin_by=datetime.timedelta(seconds=30),
    )
    assert same.begin_by == job.begin_by
