"""The dispatcher runs jobs in threads, each in its own transaction."""

import datetime
import time
import uuid

import pytest
import transaction
from persistent.list import PersistentList

import jobfuncs
import zasync
from zasync import clock
from zasync.retry import RetryWithDelay
from zasync.status import ACTIVE, ASSIGNED, COMPLETED, PENDING
from zasync.testing import (
    wait_for,
    wait_for_all_jobs,
    wait_for_annotation,
    wait_for_result,
    wait_for_start,
)


def test_job_runs_and_result_is_committed(queue, dispatcher):
    job = queue.put(zasync.Job(jobfuncs.add, 40, 2))
    transaction.commit()
    assert wait_for_result(job) == 42
    assert job.status == COMPLETED
    assert job.attempts == 1
    assert job.queued <= job.started <= job.ended
    assert job.assignee[0] == dispatcher.uuid


def test_commit_wakes_an_idle_dispatcher_without_polling(queue, start_dispatcher):
    """With a 60 s poll, only the wake-up on commit can run the job in time."""
    dispatcher = start_dispatcher(poll_interval=60)
    # Let its first round pass: from then on it sleeps for the poll interval.
    wait_for(lambda: dispatcher.stats["rounds"], 5, lambda: None, lambda: "no round")
    job = queue.put(zasync.Job(jobfuncs.add, 1, 1))
    transaction.commit()
    assert wait_for_result(job, seconds=10) == 2
    assert (job.started - job.queued).total_seconds() < 10


def test_failure_is_returned_with_its_traceback(queue, dispatcher):
    job = queue.put(zasync.Job(jobfuncs.fail, "bad input"))
    transaction.commit()
    result = wait_for_result(job)
    assert isinstance(result, zasync.Failure)
    assert result.check(ValueError)
    assert "bad input" in result.getErrorMessage()
    assert "jobfuncs.py" in result.getTraceback()
    assert job.failed
    wait_for_all_jobs(queue._p_jar)
    assert queue.counts()["failed"] == 1
    assert queue.jobs("completed", failed=True) == [job]


def test_retry_policy_reruns_a_failing_job(queue, dispatcher):
    token = str(uuid.uuid4())
    policy = RetryWithDelay(delay=datetime.timedelta(0), max_attempts=5, jitter=0)
    job = queue.put(
        zasync.Job(jobfuncs.fail_first, token, 2, "ok"), retry_policy=policy
    )
    transaction.commit()
    assert wait_for_result(job) == "ok"
    assert job.attempts == 3


def test_default_policy_does_not_rerun_a_plain_error(queue, dispatcher):
    job = queue.put(zasync.Job(jobfuncs.fail, "no"))
    transaction.commit()
    assert wait_for_result(job).check(ValueError)
    assert job.attempts == 1


def test_conflict_error_is_a_postponement_not_a_failure(queue, dispatcher):
    token = str(uuid.uuid4())
    job = queue.put(zasync.Job(jobfuncs.conflict_first, token, 3, "finally"))
    transaction.commit()
    assert wait_for_result(job) == "finally"
    assert jobfuncs.counters[token] == 4
    assert job.attempts == 1
    assert dispatcher.stats["conflicts"] >= 3


def test_many_conflicts_put_the_job_back_without_counting_attempts(queue, dispatcher):
    token = str(uuid.uuid4())
    job = queue.put(zasync.Job(jobfuncs.conflict_first, token, 8, "late"))
    transaction.commit()
    assert wait_for_result(job, seconds=20) == "late"
    assert job.attempts == 1
    assert job.postponements == 1


def test_job_writes_and_result_commit_together(conn, queue, dispatcher):
    """An unstorable result fails the job, and the job's writes are undone."""
    conn.root()["log"] = log = PersistentList()
    job = queue.put(zasync.Job(jobfuncs.write_then_return_unpicklable, log))
    transaction.commit()
    result = wait_for_result(job)
    assert isinstance(result, zasync.Failure)
    assert "Lock" in result.getErrorMessage() or "pickle" in result.getErrorMessage()
    assert list(conn.root()["log"]) == []


def test_job_writes_are_committed(conn, queue, dispatcher):
    conn.root()["log"] = log = PersistentList()
    job = queue.put(zasync.Job(jobfuncs.append, log, "x"))
    transaction.commit()
    wait_for_result(job)
    assert list(conn.root()["log"]) == ["x"]


def test_priority_runs_higher_first(conn, queue, start_dispatcher):
    conn.root()["log"] = log = PersistentList()
    for value, priority in [("low", 0), ("high", 5), ("low2", 0), ("higher", 9)]:
        queue.put(zasync.Job(jobfuncs.append, log, value), priority=priority)
    transaction.commit()
    start_dispatcher(agent_size=1)
    wait_for_all_jobs(conn)
    assert list(conn.root()["log"]) == ["higher", "high", "low", "low2"]


def test_begin_after_delays_the_start(queue, dispatcher):
    job = queue.put(
        zasync.Job(jobfuncs.add, 1, 2), begin_after=datetime.timedelta(seconds=0.3)
    )
    transaction.commit()
    assert wait_for_result(job) == 3
    assert job.started >= job.begin_after


def test_begin_by_expired_job_completes_with_timeout(queue, dispatcher):
    long_ago = datetime.datetime.now(datetime.UTC) - datetime.timedelta(hours=1)
    job = queue.put(
        zasync.Job(jobfuncs.add, 1, 2),
        begin_after=long_ago,
        begin_by=datetime.timedelta(minutes=5),
    )
    transaction.commit()
    result = wait_for_result(job)
    assert result.check("zasync.queue.JobTimedOut")
    assert "did not start by its deadline" in result.getErrorMessage()
    assert job.attempts == 0


def test_quota_limits_concurrency(queue, start_dispatcher):
    queue.quotas.create("single", size=1)
    token = str(uuid.uuid4())
    jobs = [
        queue.put(
            zasync.Job(jobfuncs.count_concurrency, token, "never"),
            quota_names=("single",),
        )
        for _ in range(5)
    ]
    transaction.commit()
    start_dispatcher(agent_size=4)
    for job in jobs:
        assert wait_for_result(job) == token
    assert jobfuncs.most_running[token] == 1


def test_quota_size_change_takes_effect_at_next_claim(queue, start_dispatcher):
    quota = queue.quotas.create("q", size=0)
    job = queue.put(zasync.Job(jobfuncs.add, 2, 2), quota_names=("q",))
    transaction.commit()
    start_dispatcher()
    with pytest.raises(TimeoutError):
        wait_for_result(job, seconds=0.3)
    quota.size = 1
    transaction.commit()
    assert wait_for_result(job) == 4


def test_agent_filter_decides_what_the_dispatcher_claims(queue, start_dispatcher):
    wanted = queue.put(zasync.Job(jobfuncs.add, 1, 1))
    other = queue.put(zasync.Job(jobfuncs.fail, "not mine"))
    transaction.commit()
    start_dispatcher(agent_filter=jobfuncs_filter_add)
    assert wait_for_result(wanted) == 2
    transaction.begin()
    assert other.status == PENDING


def jobfuncs_filter_add(job):
    return job.callable_name.endswith(".add")


def test_live_annotations_and_progress_are_visible_while_running(queue, dispatcher):
    name = str(uuid.uuid4())
    job = queue.put(zasync.Job(jobfuncs.report_progress, name))
    transaction.commit()
    assert wait_for_annotation(job, "zasync.progress") == (0.5, "half way")
    assert wait_for_annotation(job, "seen") == 1
    assert job.status == ACTIVE
    assert job.progress == (0.5, "half way")
    jobfuncs.events[name].set()
    assert wait_for_result(job) == "done"


def test_unique_key_returns_the_running_job(queue, dispatcher):
    name = str(uuid.uuid4())
    first = queue.put(zasync.Job(jobfuncs.block, name, 1), unique_key="export")
    transaction.commit()
    wait_for_start(first)
    again = queue.put(zasync.Job(jobfuncs.block, name, 2), unique_key="export")
    assert again is first
    jobfuncs.events[name].set()
    assert wait_for_result(first) == 1
    wait_for_all_jobs(queue._p_jar)
    later = queue.put(zasync.Job(jobfuncs.add, 1, 1), unique_key="export")
    assert later is not first
    transaction.commit()
    assert wait_for_result(later) == 2


def test_in_job_code_sees_its_job(queue, dispatcher):
    job = queue.put(zasync.Job(jobfuncs.in_job))
    transaction.commit()
    assert wait_for_result(job) == job.id


def test_stop_puts_back_running_jobs(db, queue, start_dispatcher):
    name = str(uuid.uuid4())
    first = start_dispatcher()
    job = queue.put(zasync.Job(jobfuncs.block, name, "finished"))
    transaction.commit()
    wait_for_start(job)
    assert first.stop(timeout=0.2) is False
    transaction.begin()
    assert job.status == PENDING
    assert job.attempts == 0
    assert first.uuid not in queue.dispatchers
    jobfuncs.events[name].set()
    start_dispatcher()
    assert wait_for_result(job) == "finished"
    assert job.interruptions == 0


def test_stop_waits_for_running_jobs(queue, start_dispatcher):
    dispatcher = start_dispatcher()
    job = queue.put(zasync.Job(jobfuncs.add, 1, 2))
    transaction.commit()
    wait_for_start(job)
    assert dispatcher.stop(timeout=10) is True
    transaction.begin()
    assert job.status == COMPLETED and job.result == 3


def test_many_jobs_all_complete_once(conn, queue, start_dispatcher):
    conn.root()["log"] = log = PersistentList()
    jobs = [queue.put(zasync.Job(jobfuncs.add, i, 0)) for i in range(200)]
    transaction.commit()
    start_dispatcher(agent_size=3)
    wait_for_all_jobs(conn, 60)
    assert [job.result for job in jobs] == list(range(200))
    counts = queue.counts()
    assert counts["succeeded"] == 200
    assert counts["pending"] == counts["active"] == counts["assigned"] == 0
    assert all(job.attempts == 1 for job in jobs)
    assert log is not None


def test_held_jobs_are_started_by_their_thread(conn, queue, start_dispatcher):
    """Short jobs are claimed ahead (ASSIGNED) and started as threads free up;
    none is left assigned at the end."""
    jobs = [queue.put(zasync.Job(jobfuncs.add, i, 1)) for i in range(50)]
    transaction.commit()
    dispatcher = start_dispatcher(agent_size=1)
    wait_for_all_jobs(conn, 60)
    assert [job.result for job in jobs] == [i + 1 for i in range(50)]
    assert dispatcher.stats["rounds"] < 50
    assert not any(job.status == ASSIGNED for job in jobs)


def test_setup_and_teardown_hooks_surround_the_call(queue, dispatcher):
    job = jobfuncs.EnvironmentJob(jobfuncs.current_site)
    job.site = "plone"
    failing = jobfuncs.EnvironmentJob(jobfuncs.fail_in_site)
    failing.site = "other"
    queue.put(job)
    queue.put(failing)
    transaction.commit()
    assert wait_for_result(job) == "plone"
    assert "failed in other" in wait_for_result(failing).getErrorMessage()
    assert (job.id, "set up for plone") in jobfuncs.teardowns
    assert (failing.id, "set up for other") in jobfuncs.teardowns
    assert jobfuncs.current_site() is None


def test_two_dispatchers_run_each_job_exactly_once(conn, queue, start_dispatcher):
    """Dispatchers compete for the same jobs; claims conflict, never double."""
    from BTrees.IIBTree import IIBTree

    conn.root()["markers"] = markers = IIBTree()
    jobs = [queue.put(zasync.Job(jobfuncs.mark, markers, i)) for i in range(300)]
    transaction.commit()
    first = start_dispatcher(agent_size=3)
    second = start_dispatcher(agent_size=3)
    wait_for_all_jobs(conn, 60)
    assert [job.result for job in jobs] == list(range(300))
    assert dict(conn.root()["markers"]) == {i: 1 for i in range(300)}
    assert first.stats["completed"] + second.stats["completed"] == 300
    assert first.stats["completed"] and second.stats["completed"]


def test_heartbeat_writes_only_the_heartbeat(conn, queue, start_dispatcher):
    """A ping rewrites the small Heartbeat object, not the dispatcher record:
    heartbeats stay cheap in storage and invalidate nothing else."""
    dispatcher = start_dispatcher(ping_interval=0.02, death_interval=60)
    wait_for(lambda: dispatcher.stats["rounds"] >= 2, 5, lambda: None, lambda: "")
    transaction.begin()
    record = queue.dispatchers[dispatcher.uuid]

    def serials():
        record._p_activate()  # a ghost's serial is not its stored one
        record.heartbeat._p_activate()
        return record._p_serial, record.heartbeat._p_serial

    record_serial, beat_serial = serials()

    def pinged_again():
        transaction.begin()
        return serials()[1] != beat_serial

    wait_for(pinged_again, 5, lambda: None, lambda: "no new heartbeat")
    assert serials()[0] == record_serial


def test_a_new_dispatcher_claims_no_more_than_it_can_start(
    conn, queue, start_dispatcher
):
    """Before it has timed a job, a dispatcher holds no jobs ahead: long jobs
    are left for other dispatchers."""
    name = f"long-{uuid.uuid4()}"
    jobs = [queue.put(zasync.Job(jobfuncs.block, name, i)) for i in range(6)]
    transaction.commit()
    try:
        start_dispatcher(agent_size=2)
        wait_for_start(jobs[0], 10)
        wait_for_start(jobs[1], 10)
        transaction.begin()
        assert [job.status for job in jobs[2:]] == [PENDING] * 4
    finally:
        jobfuncs.events[name].set()
    wait_for_all_jobs(conn, 30)
    assert [job.result for job in jobs] == list(range(6))


def test_rounds_under_a_stream_of_puts_are_paced_by_the_batch_window(
    conn, queue, start_dispatcher
):
    """The first job after a quiet moment is claimed at once; puts that
    follow within batch_window wait for the next round, which claims them
    together (one round and commit for several, not one each)."""
    dispatcher = start_dispatcher(
        agent_size=4, batch_window=0.3, group_commit=1, poll_interval=5
    )
    quiet = clock.wait_until(
        lambda: (
            dispatcher.last_round_started is not None
            and time.monotonic() - dispatcher.last_round_started > 0.35
        ),
        timeout=10,
    )
    assert quiet
    quiet_start = datetime.datetime.now(datetime.UTC)
    first = queue.put(zasync.Job(jobfuncs.started_at))
    transaction.commit()
    assert wait_for_result(first) - quiet_start < datetime.timedelta(seconds=0.25)
    burst = []
    for _ in range(4):
        burst.append(queue.put(zasync.Job(jobfuncs.started_at)))
        transaction.commit()
    starts = [wait_for_result(job) for job in burst]
    assert min(starts) - first.result >= datetime.timedelta(seconds=0.25)
    assert max(starts) - min(starts) < datetime.timedelta(seconds=0.25)
