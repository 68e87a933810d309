"""The job owns its life cycle: each transition checks the status it starts
from (BadStatusError otherwise, naming the job, its status and what was
asked), and only zasync.job assigns a job's status."""

import datetime
import pathlib
import re

import pytest

import jobfuncs
import zasync
from zasync import Status
from zasync.exceptions import BadStatusError, JobInterrupted, JobTimedOut
from zasync.registry import Agent, DispatcherRecord
from zasync.retry import NeverRetry, RetryWithDelay

NOW = jobfuncs.NOW
SECOND = datetime.timedelta(seconds=1)
SRC = pathlib.Path(zasync.__file__).parent


def a_failure(message="cancelled"):
    try:
        raise ValueError(message)
    except ValueError:
        return zasync.Failure()


def claimed(queue, job=None, start=True, now=NOW):
    """Put ``job`` (a new one by default) and claim it; return it."""
    job = queue.put(job or zasync.Job(jobfuncs.add, 1, 2), now=now)
    if "d" not in queue.dispatchers:
        record = queue.dispatchers["d"] = DispatcherRecord("d", now)
        record.agents["main"] = Agent("main", size=5)
    agent = queue.dispatchers["d"].agents["main"]
    (got,) = queue.claim(agent, "d", 1, now, start=1 if start else 0)
    assert got is job
    return job


def test_only_job_py_assigns_a_status():
    """Queues, runners and composites ask the job: no engine module but
    zasync/job.py assigns ``.status`` or ``._status``."""
    assignment = re.compile(r"\.(_?status)\s*=(?!=)")
    offenders = []
    for path in sorted(SRC.glob("*.py")):
        if path.name == "job.py":
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if assignment.search(line):
                offenders.append(f"{path.name}:{number}: {line.strip()}")
    assert offenders == []


def test_the_queue_patches_nothing_onto_job():
    """pending_key, index_key and lane_quota_names are the Job class's own."""
    for name in ("pending_key", "index_key", "lane_quota_names"):
        assert name in vars(zasync.Job), name
    job = zasync.Job(jobfuncs.add, 1, 2)
    assert job.pending_key is None
    assert job.lane_quota_names == ()
    assert isinstance(job.index_key, int)


def test_a_refused_transition_names_job_status_and_action():
    job = zasync.Job(jobfuncs.add, 1, 2)
    with pytest.raises(BadStatusError) as raised:
        job.record_outcome(3, NOW)
    message = str(raised.value)
    assert str(job.id) in message and "jobfuncs.add" in message
    assert "record the outcome" in message
    assert "it is new" in message and "only a job that is active" in message


def test_claim_assigns_and_begins_an_attempt(queue):
    job = claimed(queue)
    assert job.status == Status.ACTIVE
    assert job.assignee == ("d", "main")
    assert (job.attempts, job.started, job.pending_key) == (1, NOW, None)
    with pytest.raises(BadStatusError, match="begin an attempt"):
        job.begin_attempt(NOW)


def test_an_assigned_job_begins_when_its_thread_is_free(queue):
    job = claimed(queue, start=False)
    assert (job.status, job.attempts) == (Status.ASSIGNED, 0)
    job.begin_attempt(NOW + SECOND)
    assert (job.status, job.attempts, job.started) == (
        Status.ACTIVE,
        1,
        NOW + SECOND,
    )


def test_a_job_in_the_run_order_cannot_be_assigned_or_begun(queue):
    job = queue.put(zasync.Job(jobfuncs.add, 1, 2), now=NOW)
    assert job.status == Status.PENDING and job.pending_key is not None
    for action in (
        lambda: job.assign(("d", "main"), NOW),
        lambda: job.fail(a_failure(), NOW),
    ):
        with pytest.raises(BadStatusError, match="run order"):
            action()
    with pytest.raises(BadStatusError, match="run order"):
        job.begin_attempt(NOW)
    with pytest.raises(BadStatusError, match="in it already"):
        job.enter_run_order()


def test_record_outcome_completes_or_waits_for_callbacks(queue):
    plain = claimed(queue)
    plain.record_outcome(3, NOW + SECOND)
    assert (plain.status, plain.result, plain.ended) == (
        Status.COMPLETED,
        3,
        NOW + SECOND,
    )
    with_callback = zasync.Job(jobfuncs.add, 1, 1)
    with_callback.add_callback(jobfuncs.labelled, "cb")
    claimed(queue, with_callback).record_outcome(2, NOW)
    assert with_callback.status == Status.CALLBACKS
    with_callback.complete(NOW + SECOND)
    assert with_callback.status == Status.COMPLETED
    assert with_callback.ended == NOW  # set by the outcome, kept
    with pytest.raises(BadStatusError, match="record the outcome"):
        with_callback.record_outcome(4, NOW)


def test_postpone_does_not_count_the_attempt(queue):
    job = claimed(queue)
    job.postpone(NOW + SECOND)
    assert job.status == Status.PENDING and job.pending_key is None
    assert (job.attempts, job.postponements, job.begin_after) == (0, 1, NOW + SECOND)
    with pytest.raises(BadStatusError, match="postpone"):
        job.postpone(NOW)


def test_retry_later_keeps_the_attempt_counted(queue):
    job = claimed(queue)
    job.retry_later(NOW + SECOND)
    assert (job.status, job.attempts, job.begin_after) == (
        Status.PENDING,
        1,
        NOW + SECOND,
    )


def test_put_back_takes_back_without_an_outcome(queue):
    active = claimed(queue)
    active.put_back()
    assert (active.status, active.attempts) == (Status.PENDING, 0)
    assigned = claimed(queue, start=False)
    assigned.put_back()
    assert (assigned.status, assigned.attempts) == (Status.PENDING, 0)
    with pytest.raises(BadStatusError, match="put back"):
        assigned.put_back()


def test_handle_interrupt_retries_or_fails(queue):
    retried = zasync.Job(jobfuncs.add, 1, 2)
    retried.retry_policy = RetryWithDelay(jitter=0)  # at once
    claimed(queue, retried)
    assert retried.handle_interrupt(NOW + SECOND) is True
    assert (retried.status, retried.interruptions) == (Status.PENDING, 1)
    assert (retried.attempts, retried.begin_after) == (1, NOW + SECOND)

    given_up = zasync.Job(jobfuncs.add, 1, 2)
    given_up.retry_policy = NeverRetry()
    claimed(queue, given_up)
    assert given_up.handle_interrupt(NOW) is False
    assert given_up.status == Status.COMPLETED and given_up.failed
    assert given_up.result.check(JobInterrupted)
    with pytest.raises(BadStatusError, match="interruption"):
        given_up.handle_interrupt(NOW)


def test_fail_is_for_a_job_that_did_not_run(queue):
    """fail(): cancelled (pending, out of the run order), or expired; a
    running job records its outcome instead."""
    running = claimed(queue)
    with pytest.raises(BadStatusError, match="record its outcome instead"):
        running.fail(a_failure(), NOW)
    late = zasync.Job(jobfuncs.add, 1, 2)
    queue.put(late, begin_after=NOW - 10 * SECOND, begin_by=SECOND, now=NOW)
    record = queue.dispatchers["late"] = DispatcherRecord("late", NOW)
    agent = record.agents["main"] = Agent("main", size=1)
    queue.claim(agent, "late", 1, NOW)
    assert late.expired and late.status == Status.ACTIVE and late.attempts == 0
    late.fail(late.deadline_failure(), NOW)
    assert late.status == Status.COMPLETED and late.result.check(JobTimedOut)
    with pytest.raises(TypeError, match="Failure"):
        zasync.Job(jobfuncs.add, 1, 2).fail("not a failure", NOW)


def test_a_job_that_ran_cannot_be_called_again():
    job = zasync.Job(jobfuncs.add, 1, 2)
    assert job() == 3
    with pytest.raises(BadStatusError, match="it is completed"):
        job()
    assert job.attempts == 1


def test_renew_readies_a_callback_to_be_queued_again(queue):
    parent = zasync.Job(jobfuncs.add, 1, 2)
    callback = parent.add_callback(jobfuncs.labelled, "cb")
    callback.status = Status.ACTIVE  # as a dead worker left it
    callback.renew(parent)
    assert (callback.status, callback.queue, callback.assignee) == (
        Status.NEW,
        None,
        None,
    )
    callback.status = Status.COMPLETED
    with pytest.raises(BadStatusError, match="queue again"):
        callback.renew(parent)


def test_remove_and_put_again(queue):
    job = queue.put(zasync.Job(jobfuncs.add, 1, 2), now=NOW)
    queue.remove(job)
    assert (job.status, job.queue, job.pending_key) == (Status.NEW, None, None)
    with pytest.raises(BadStatusError, match="remove from its queue"):
        job.leave_queue()
    assert queue.put(job) is job and job.status == Status.PENDING


def test_old_queue_methods_delegate_to_the_job(queue):
    """Queue.activate is kept for callers of the old name."""
    job = claimed(queue, start=False)
    queue.activate(job, NOW)
    assert (job.status, job.attempts) == (Status.ACTIVE, 1)


# -- public reads ------------------------------------------------------------


def test_claimed_and_completed_reads(queue):
    done = claimed(queue)
    running = claimed(queue)
    assert set(queue.claimed_jobs()) == {done, running}
    done.record_outcome(3, NOW)  # committed by its worker, not yet indexed
    assert [job for _, job in queue.completed_items()] == [done]
    assert list(queue.indexed_completed()) == []
    queue.reconcile(done, NOW)
    assert list(queue.claimed_jobs()) == [running]
    assert list(queue.indexed_completed(False)) == [(done.index_key, done)]
    assert list(queue.indexed_completed(True)) == []
    later = zasync.clock.to_micros(NOW + SECOND)
    assert list(queue.completed_items(None, zasync.keys.ended_before(later))) == [
        (done.index_key, done)
    ]
    earlier = zasync.clock.to_micros(NOW)
    assert list(queue.completed_items(None, zasync.keys.ended_before(earlier))) == []


def test_watched_objects_are_what_a_put_or_a_release_changes(queue):
    quota = queue.quotas.create("q", size=1)
    watched = queue.watched_objects()
    assert queue.quotas in watched and quota in watched
    assert queue._pending_count in watched
    assert watched is not queue.watched_objects()  # a new list each time


def test_own_annotations_are_read_without_creating_them():
    job = zasync.Job(jobfuncs.add, 1, 2)
    assert dict(job.own_annotations) == {}
    assert job._annotations is None
    job.annotations["k"] = "v"
    assert job.own_annotations == {"k": "v"}


def test_explicit_retry_policy_is_none_for_the_default():
    job = zasync.Job(jobfuncs.add, 1, 2)
    assert job.explicit_retry_policy is None and job.retry_policy is not None
    policy = NeverRetry()
    job.retry_policy = policy
    assert job.explicit_retry_policy is policy


def test_no_caller_reads_private_queue_or_job_attributes():
    """admin, dispatcher and testing use the public reads."""
    private = re.compile(
        r"\.(_pending_count|_failed|_succeeded|_claimed_and_waiting|"
        r"_annotations|_retry_policy)\b"
    )
    offenders = []
    for path in sorted(SRC.rglob("*.py")):
        if path.name in ("queue.py", "job.py", "composite.py"):
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if private.search(line):
                offenders.append(f"{path.relative_to(SRC)}:{number}: {line.strip()}")
    assert offenders == []
