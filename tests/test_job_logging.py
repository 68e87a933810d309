"""What the engine logs about a job, and at which level: a final failure is
a WARNING (an interrupted job's ERROR) that names the job, its callable,
its queue and the error; a retry is INFO; a postponed conflict DEBUG."""

import datetime
import functools
import logging
import uuid

import transaction

import jobfuncs
import zasync
from zasync import clock
from zasync.registry import Agent, DispatcherRecord
from zasync.retry import RetryWithDelay
from zasync.testing import wait_for_result


def records(caplog, job, level=None):
    return [
        r
        for r in caplog.records
        if str(job.id) in r.getMessage() and (level is None or r.levelno == level)
    ]


def logged(caplog, job, level):
    """The job's records at ``level``, once there is one: its worker logs
    the outcome just after committing it, so a test that saw the result
    may be a moment early for the line."""
    clock.wait_until(lambda: records(caplog, job, level), timeout=10, interval=0.01)
    return records(caplog, job, level)


def test_a_final_failure_is_a_warning_naming_job_queue_and_error(
    queue, dispatcher, caplog
):
    caplog.set_level(logging.DEBUG, logger="zasync")
    job = queue.put(zasync.Job(jobfuncs.fail, "the export broke"))
    transaction.commit()
    wait_for_result(job)
    (warning,) = logged(caplog, job, logging.WARNING)
    message = warning.getMessage()
    assert warning.name == "zasync.job"
    assert "jobfuncs.fail" in message and "failed" in message
    assert "queue 'default'" in message
    assert "the export broke" in message
    assert records(caplog, job, logging.ERROR) == []


def test_a_retry_is_info_and_only_the_last_failure_a_warning(queue, dispatcher, caplog):
    caplog.set_level(logging.DEBUG, logger="zasync")
    job = zasync.Job(jobfuncs.fail_first, f"retry-{uuid.uuid4()}", 5, "never")
    job.retry_policy = RetryWithDelay(delay=0.01, max_attempts=2, jitter=0)
    queue.put(job)
    transaction.commit()
    wait_for_result(job)
    infos = [r.getMessage() for r in records(caplog, job, logging.INFO)]
    assert any("will be retried" in m and "service unavailable" in m for m in infos)
    (warning,) = logged(caplog, job, logging.WARNING)
    assert "attempt 2" in warning.getMessage()


def test_a_postponed_conflict_is_debug_only(queue, dispatcher, caplog):
    caplog.set_level(logging.DEBUG, logger="zasync")
    job = queue.put(zasync.Job(jobfuncs.conflict_first, str(uuid.uuid4()), 7, "ok"))
    transaction.commit()
    assert wait_for_result(job) == "ok"
    postponed = [r for r in records(caplog, job) if "postponed" in r.getMessage()]
    assert postponed and {r.levelno for r in postponed} == {logging.DEBUG}
    assert records(caplog, job, logging.WARNING) == []


def test_a_job_that_keeps_killing_its_worker_is_an_error(
    queue, start_dispatcher, caplog
):
    caplog.set_level(logging.DEBUG, logger="zasync")
    ghost = str(uuid.uuid4())
    poison = queue.put(zasync.Job(jobfuncs.add, 1, 1))
    poison.interruptions = 4  # the default policy allows four
    record = queue.dispatchers[ghost] = DispatcherRecord(
        ghost, clock.utcnow() - datetime.timedelta(hours=1), 0.1, 0.5
    )
    agent = record.agents["main"] = Agent("main", size=1)
    queue.claim(agent, ghost, 1, clock.utcnow(), start=1)
    transaction.commit()
    start_dispatcher(ping_interval=0.1)
    wait_for_result(poison)
    (error,) = records(caplog, poison, logging.ERROR)
    assert "interrupted 5 times" in error.getMessage()
    assert "queue 'default'" in error.getMessage()


def test_logs_name_the_users_function_not_a_wrapper(queue, dispatcher, caplog):
    """A functools.partial is named by the function it wraps; the callback
    add_callbacks() makes, by the success and failure functions."""
    caplog.set_level(logging.DEBUG, logger="zasync")
    partial = queue.put(zasync.Job(functools.partial(jobfuncs.add, 40), 2))
    both = partial.add_callbacks(
        success=jobfuncs.callback_value, failure=jobfuncs.on_failure
    )
    only_failure = partial.add_callbacks(failure=jobfuncs.on_failure)
    transaction.commit()
    assert wait_for_result(partial) == 42
    assert wait_for_result(both) == "callback got 42"
    assert partial.callable_name == "jobfuncs.add"
    assert both.callable_name == "jobfuncs.callback_value or jobfuncs.on_failure"
    assert only_failure.callable_name == "jobfuncs.on_failure"
    for job in (partial, both, only_failure):
        messages = [r.getMessage() for r in records(caplog, job)]
        assert any("started" in m for m in messages), messages
        assert all(f"({job.callable_name})" in m for m in messages), messages
    logged = " ".join(r.getMessage() for r in caplog.records)
    assert "functools.partial" not in logged
    assert "success_or_failure" not in logged
