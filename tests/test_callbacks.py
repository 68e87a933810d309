"""Callbacks run as jobs of their own, after the result is committed."""

import uuid

import transaction

import jobfuncs
import zasync
from zasync.status import COMPLETED
from zasync.testing import wait_for_result, wait_for_start


def test_callback_gets_the_result(queue, dispatcher):
    job = queue.put(zasync.Job(jobfuncs.add, 20, 22))
    callback = job.add_callback(jobfuncs.callback_value, extra="!")
    transaction.commit()
    assert wait_for_result(job) == 42
    assert wait_for_result(callback) == "callback got 42!"
    assert callback.started >= job.ended


def test_camel_case_aliases(queue, dispatcher):
    job = queue.put(zasync.Job(jobfuncs.add, 1, 1))
    assert zasync.Job.addCallback is zasync.Job.add_callback
    assert zasync.Job.addCallbacks is zasync.Job.add_callbacks
    callback = job.addCallbacks(success=jobfuncs.callback_value)
    transaction.commit()
    wait_for_result(job)
    assert callback.result == "callback got 2"


def test_success_and_failure_callbacks(queue, dispatcher):
    good = queue.put(zasync.Job(jobfuncs.add, 1, 2))
    good_cb = good.add_callbacks(
        success=jobfuncs.callback_value, failure=jobfuncs.on_failure
    )
    bad = queue.put(zasync.Job(jobfuncs.fail, "boom"))
    bad_cb = bad.add_callbacks(
        success=jobfuncs.callback_value, failure=jobfuncs.on_failure
    )
    passthrough = bad.add_callbacks(success=jobfuncs.callback_value)
    transaction.commit()
    wait_for_result(good)
    wait_for_result(bad)
    assert good_cb.result == "callback got 3"
    assert bad_cb.result == "handled ValueError"
    assert isinstance(passthrough.result, zasync.Failure)


def test_failing_callback_keeps_the_jobs_result(queue, dispatcher, caplog):
    job = queue.put(zasync.Job(jobfuncs.add, 2, 3))
    broken = job.add_callback(jobfuncs.failing_callback)
    after = job.add_callback(jobfuncs.callback_value)
    transaction.commit()
    assert wait_for_result(job) == 5
    assert broken.result.check(KeyError)
    assert after.result == "callback got 5"
    assert job.status == COMPLETED
    # The failed callback's attempt counts, as a succeeded one's does.
    assert (broken.attempts, after.attempts) == (1, 1)
    assert job.ended <= broken.started <= broken.ended <= after.started


def test_callback_added_to_a_completed_job_runs(queue, dispatcher):
    job = queue.put(zasync.Job(jobfuncs.add, 3, 4))
    transaction.commit()
    wait_for_result(job)
    late = job.add_callback(jobfuncs.callback_value)
    transaction.commit()
    assert wait_for_result(late) == "callback got 7"


def test_callback_added_while_running(queue, dispatcher):
    name = str(uuid.uuid4())
    job = queue.put(zasync.Job(jobfuncs.block, name, "slow"))
    transaction.commit()
    wait_for_start(job)
    callback = job.add_callback(jobfuncs.callback_value)
    transaction.commit()
    jobfuncs.events[name].set()
    assert wait_for_result(job) == "slow"
    assert wait_for_result(callback) == "callback got 'slow'"


def test_callbacks_of_callbacks(queue, dispatcher):
    job = queue.put(zasync.Job(jobfuncs.add, 1, 1))
    first = job.add_callback(jobfuncs.callback_value)
    second = first.add_callback(jobfuncs.callback_value)
    transaction.commit()
    wait_for_result(job)
    assert wait_for_result(second) == "callback got 'callback got 2'"
