"""The setUp/tearDown contract of IJob: tearDown always runs (with None if
setUp raised); a setUp error fails the job; a tearDown error is logged and
never replaces the job's outcome."""

import logging

import pytest
import transaction

import jobfuncs
from zasync.retry import NeverRetry
from zasync.testing import wait_for_result


@pytest.fixture(autouse=True)
def clean():
    del jobfuncs.teardowns[:]


def hook_job(func, *args, setup_error=None, teardown_error=None):
    job = jobfuncs.HookJob(func, *args)
    job.setup_error = setup_error
    job.teardown_error = teardown_error
    job.retry_policy = NeverRetry()
    return job


def tear_down_errors(caplog):
    return [
        r
        for r in caplog.records
        if r.name == "zasync.job" and "tearDown raised" in r.getMessage()
    ]


def test_a_failing_setup_fails_the_job_and_tears_down_with_none():
    job = hook_job(jobfuncs.add, 1, 2, setup_error="no site")
    result = job()
    assert job.failed and result.check(LookupError)
    assert result.getErrorMessage() == "no site"
    assert jobfuncs.teardowns == [(job.id, None)]


def test_setup_info_reaches_teardown():
    job = hook_job(jobfuncs.add, 1, 2)
    assert job() == 3
    assert jobfuncs.teardowns == [(job.id, "set up")]


def test_a_failing_teardown_keeps_the_result_and_is_logged(caplog):
    job = hook_job(jobfuncs.add, 1, 2, teardown_error="cleanup broke")
    assert job() == 3
    assert not job.failed
    (record,) = tear_down_errors(caplog)
    assert record.levelno == logging.ERROR
    assert str(job.id) in record.getMessage()
    assert job.log_context in record.getMessage()
    assert "cleanup broke" in record.exc_text


def test_a_failing_teardown_keeps_the_body_failure(caplog):
    job = hook_job(jobfuncs.fail, "the body broke", teardown_error="cleanup broke")
    result = job()
    assert result.check(ValueError) and result.getErrorMessage() == "the body broke"
    assert len(tear_down_errors(caplog)) == 1


def test_a_failing_setup_and_teardown_keep_the_setup_error(caplog):
    job = hook_job(jobfuncs.add, 1, 2, setup_error="no site", teardown_error="x")
    assert job().getErrorMessage() == "no site"
    assert jobfuncs.teardowns == [(job.id, None)]
    assert len(tear_down_errors(caplog)) == 1


def test_in_a_worker_a_failing_teardown_commits_the_result(queue, dispatcher, caplog):
    caplog.set_level(logging.INFO, logger="zasync")
    job = queue.put(hook_job(jobfuncs.add, 40, 2, teardown_error="cleanup broke"))
    failing = queue.put(hook_job(jobfuncs.add, 1, 1, setup_error="no site"))
    transaction.commit()
    assert wait_for_result(job) == 42
    assert wait_for_result(failing).getErrorMessage() == "no site"
    assert (failing.id, None) in jobfuncs.teardowns
    (record,) = tear_down_errors(caplog)
    assert "queue 'default'" in record.getMessage()
