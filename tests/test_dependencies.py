"""Jobs that wait for other jobs: IQueue.put(depends_on=...)."""

import datetime
import uuid

import pytest
import transaction
from ZODB.POSException import ConflictError

import jobfuncs
import zasync
from zasync import admin
from zasync.exceptions import DependencyFailed
from zasync.status import COMPLETED, PENDING, WAITING
from zasync.testing import inline, wait_for, wait_for_result, wait_for_start

NOW = jobfuncs.NOW


def job(func, *args):
    return zasync.Job(getattr(jobfuncs, func), *args)


def blocker():
    name = f"block-{uuid.uuid4()}"
    return name, job("block", name, name)


def refresh(conn):
    conn.transaction_manager.begin()


def test_waits_until_all_dependencies_completed(conn, queue, dispatcher):
    name, first = blocker()
    first = queue.put(first)
    second = queue.put(job("add", 1, 2))
    last = queue.put(job("add", 3, 4), depends_on=[first, second])
    assert last.status == WAITING
    assert set(last.waiting_for) == {first.id, second.id}
    assert last.depends_on == (first, second)
    transaction.commit()
    wait_for_result(second)
    wait_for_start(first)
    # Counted when its dispatcher indexes the completion, just after.
    wait_for(
        lambda: last.waiting_for == (first.id,),
        10,
        lambda: refresh(conn),
        lambda: f"still waiting for {last.waiting_for}",
    )
    assert last.status == WAITING
    assert queue.counts()["waiting"] == 1
    assert queue.jobs(status="waiting") == [last]
    assert queue.dependents(first) == [last]
    jobfuncs.events[name].set()
    assert wait_for_result(last) == 7
    assert first.ended <= last.started
    assert queue.counts()["waiting"] == 0
    assert not queue._dependents  # nothing left behind


def test_completed_dependency_counts_at_put(conn, queue, dispatcher):
    done = queue.put(job("add", 1, 1))
    transaction.commit()
    wait_for_result(done)
    later = queue.put(job("add", 2, 2), depends_on=done)  # one job will do
    assert later.status == PENDING and later.depends_on == (done,)
    transaction.commit()
    assert wait_for_result(later) == 4


def test_a_failed_dependency_fails_the_job_naming_it(conn, queue, dispatcher):
    failing = queue.put(job("fail", "broken input"))
    dependent = queue.put(job("add", 1, 1), depends_on=[failing])
    # Jobs waiting for the failed one fail in turn.
    after = queue.put(job("add", 2, 2), depends_on=[dependent])
    callback = dependent.add_callback(jobfuncs.callback_value)
    transaction.commit()
    failure = wait_for_result(after)
    assert failure.check(DependencyFailed)
    result = dependent.result
    assert result.check(DependencyFailed)
    assert f"job {failing.id} (jobfuncs.fail) failed" in str(result.value)
    assert "broken input" in str(result.value)
    assert str(dependent.id) in str(failure.value)
    assert dependent.attempts == 0 and after.attempts == 0
    assert wait_for_result(callback) == f"callback got {result!r}"


def test_a_dependency_failed_at_put_fails_the_job_at_once(conn, queue, dispatcher):
    failing = queue.put(job("fail"))
    transaction.commit()
    wait_for_result(failing)
    dependent = queue.put(job("add", 1, 1), depends_on=[failing])
    assert dependent.status == COMPLETED and dependent.result.check(DependencyFailed)
    transaction.commit()
    assert queue.counts()["failed"] == 2


def test_policy_run_runs_anyway(conn, queue, dispatcher):
    failing = queue.put(job("fail"))
    fine = queue.put(job("add", 1, 1))
    dependent = queue.put(
        job("add", 5, 5), depends_on=[failing, fine], on_dependency_failure="run"
    )
    transaction.commit()
    assert wait_for_result(dependent) == 10


def test_policy_wait_waits_for_a_retry_that_succeeds(conn, queue, dispatcher):
    token = str(uuid.uuid4())
    # Fails twice (each time for good: no retry policy retries it), then works.
    failing = queue.put(job("fail_first", token, 2, "done"), retry_policy=NoRetry())
    dependent = queue.put(
        job("add", 1, 1), depends_on=[failing], on_dependency_failure="wait"
    )
    transaction.commit()
    assert wait_for_result(failing).check(ConnectionError)
    refresh(conn)
    assert dependent.status == WAITING and dependent.waiting_for == (failing.id,)
    queues = zasync.get_queues(conn)
    first_retry = admin.retry_job(queues, failing.id).job
    assert dependent.waiting_for == (first_retry.id,)
    assert dependent.depends_on == (first_retry,)
    transaction.commit()
    assert wait_for_result(first_retry).check(ConnectionError)
    refresh(conn)
    assert dependent.status == WAITING
    second_retry = admin.retry_job(queues, first_retry.id).job
    transaction.commit()
    assert wait_for_result(second_retry) == "done"
    assert wait_for_result(dependent) == 2


class NoRetry(zasync.retry.RetryWithDelay):
    def __init__(self):
        super().__init__(max_attempts=1)


def test_waiting_jobs_hold_no_thread_and_no_quota_slot(conn, queue, start_dispatcher):
    queue.quotas.create("one", size=1)
    name, slow = blocker()
    slow = queue.put(slow)
    # It waits with the quota named; another job of the quota runs meanwhile.
    dependent = queue.put(job("add", 1, 1), quota_names="one", depends_on=[slow])
    other = queue.put(job("add", 2, 2), quota_names="one")
    transaction.commit()
    start_dispatcher(agent_size=2)
    wait_for_start(slow)
    assert wait_for_result(other) == 4
    record = next(iter(queue.dispatchers.values()))
    (agent,) = record.agents.values()
    # Once the dispatcher has let go of the other job: only the slow one
    # holds anything.
    wait_for(
        lambda: len(queue.quotas["one"]) == 0 and list(agent.jobs) == [slow.id],
        10,
        lambda: refresh(conn),
        lambda: f"held: {list(queue.quotas['one'].active)}, {list(agent.jobs)}",
    )
    assert dependent.status == WAITING
    jobfuncs.events[name].set()
    assert wait_for_result(dependent) == 2


def test_many_dependencies_completing_on_two_dispatchers(conn, queue, start_dispatcher):
    parts = [queue.put(job("add", n, 0)) for n in range(40)]
    dependents = [
        queue.put(job("add", n, 100), depends_on=parts[n % 4 :: 4]) for n in range(4)
    ]
    everything = queue.put(job("add", 0, 0), depends_on=parts)
    transaction.commit()
    start_dispatcher(agent_size=3, group_commit=1)
    start_dispatcher(agent_size=3, group_commit=1)
    assert [wait_for_result(each, 30) for each in dependents] == [100, 101, 102, 103]
    assert wait_for_result(everything, 30) == 0
    # Every completion was counted once, and the index is empty again.
    assert not queue._dependents and queue.counts()["waiting"] == 0


def test_two_dependencies_completing_at_once_are_both_counted(queue, connections):
    """Each completion writes the dependent: one of two concurrent
    transactions conflicts, and its retry sees the other's count."""
    first, second = queue.put(job("add", 1, 1)), queue.put(job("add", 2, 2))
    dependent = queue.put(
        job("add", 3, 3), depends_on=[first, second], on_dependency_failure="run"
    )
    transaction.commit()
    one, two = connections(2)
    ids = first.id, second.id
    for conn, job_id in zip((one, two), ids, strict=True):
        queue_there = zasync.get_queues(conn)[""]
        queue_there.cancel(queue_there.get(job_id), failure(), NOW)
    one.transaction_manager.commit()
    with pytest.raises(ConflictError):
        two.transaction_manager.commit()
    two.transaction_manager.abort()
    queue_there = zasync.get_queues(two)[""]
    queue_there.cancel(queue_there.get(second.id), failure(), NOW)
    two.transaction_manager.commit()
    queue._p_jar.sync()
    transaction.begin()
    assert dependent.status == PENDING and dependent.pending_key is not None


def failure():
    try:
        raise zasync.exceptions.JobCancelled("cancelled by the test")
    except Exception:
        return zasync.Failure()


def test_a_put_conflicts_when_its_dependency_completes_meanwhile(queue, connections):
    """The put read the dependency unfinished: if it completes before the
    put commits, the put's transaction conflicts and its retry sees it."""
    first = queue.put(job("add", 1, 1))
    transaction.commit()
    putter, other = connections(2)
    queue_there = zasync.get_queues(putter)[""]
    dependent = queue_there.put(
        job("add", 2, 2), depends_on=[queue_there.get(first.id)]
    )
    assert dependent.status == WAITING
    queue_other = zasync.get_queues(other)[""]
    queue_other.cancel(queue_other.get(first.id), failure(), NOW)
    other.transaction_manager.commit()
    with pytest.raises(ConflictError):
        putter.transaction_manager.commit()
    putter.transaction_manager.abort()
    queue_there = zasync.get_queues(putter)[""]
    dependent = queue_there.put(
        job("add", 2, 2), depends_on=[queue_there.get(first.id)]
    )
    # The retry sees it cancelled: the job fails at once, naming it.
    assert dependent.result.check(DependencyFailed)
    assert "was cancelled" in str(dependent.result.value)
    putter.transaction_manager.commit()


def test_cycles_are_refused(queue):
    waiting = queue.put(job("add", 1, 1))
    new = job("add", 1, 1)
    with pytest.raises(ValueError, match="cannot depend on itself"):
        queue.put(new, depends_on=[new])
    # Dependencies are fixed at put: a queued job cannot be given more, so
    # no job can come to wait for one that waits for it.
    dependent = queue.put(job("add", 2, 2), depends_on=[waiting])
    with pytest.raises(ValueError, match="already queued"):
        queue.put(waiting, depends_on=[dependent])
    # A job taken out and queued again cannot close a cycle either: what
    # waited for it failed when it was removed.
    queue.remove(waiting)
    assert dependent.result.check(DependencyFailed)
    again = queue.put(waiting, depends_on=[dependent])
    assert again.result.check(DependencyFailed)


def test_a_cycle_found_in_the_waiting_jobs_is_refused(queue):
    first = queue.put(job("add", 1, 1))
    second = queue.put(job("add", 2, 2), depends_on=[first])
    third = job("add", 3, 3)
    # Only a damaged database could hold this: second waiting for third.
    second.depends_on += (third,)
    second._waiting_for += (third.id,)
    with pytest.raises(ValueError, match="cycle") as info:
        queue.put(third, depends_on=[second])
    assert f"job {second.id}" in str(info.value)
    assert third.status == "new"


def test_cancelling_a_dependency(queue, dispatcher):
    name, slow = blocker()
    slow = queue.put(slow)  # keeps the others pending
    cancelled = queue.put(job("add", 1, 1), begin_after=3600)
    failing = queue.put(job("add", 2, 2), depends_on=[cancelled])
    waiting = queue.put(
        job("add", 3, 3), depends_on=[cancelled], on_dependency_failure="wait"
    )
    running = queue.put(
        job("add", 4, 4), depends_on=[cancelled], on_dependency_failure="run"
    )
    transaction.commit()
    admin.cancel_job(zasync.get_queues(queue._p_jar), cancelled.id, reason="why")
    transaction.commit()
    for each in (failing, waiting):
        result = wait_for_result(each)
        assert result.check(DependencyFailed)
        assert f"job {cancelled.id} (jobfuncs.add) was cancelled" in str(result.value)
    assert wait_for_result(running) == 8
    jobfuncs.events[name].set()


def test_cancelling_a_waiting_job(conn, queue, dispatcher):
    name, slow = blocker()
    slow = queue.put(slow)
    dependent = queue.put(job("add", 1, 1), depends_on=[slow])
    transaction.commit()
    cancelled = admin.cancel_job(zasync.get_queues(conn), dependent.id)
    assert cancelled.status == COMPLETED and cancelled.failed
    assert not queue.dependents(slow) and not queue._dependents
    transaction.commit()
    jobfuncs.events[name].set()
    assert wait_for_result(slow) == name
    assert queue.counts()["waiting"] == 0


def test_removing_a_dependency_fails_its_dependents(queue):
    dependency = queue.put(job("add", 1, 1))
    dependent = queue.put(
        job("add", 2, 2), depends_on=[dependency], on_dependency_failure="run"
    )
    assert queue.pull() is dependency
    assert dependent.result.check(DependencyFailed)
    assert "was removed from queue ''" in str(dependent.result.value)
    transaction.commit()


def test_pruning_a_failed_dependency_fails_the_jobs_waiting_for_a_retry(
    db, conn, queue, dispatcher
):
    failing = queue.put(job("fail"))
    dependent = queue.put(
        job("add", 1, 1), depends_on=[failing], on_dependency_failure="wait"
    )
    transaction.commit()
    wait_for_result(failing)
    wait_for(
        lambda: list(queue.indexed_completed(failed=True)),
        10,
        lambda: refresh(conn),
        lambda: "the failure is not indexed",
    )
    later = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=30)
    day = datetime.timedelta(days=1)
    pruned = admin.prune(db, day, failed_older_than=day, now=later)
    assert pruned[""]["failed"] == 1, pruned
    result = wait_for_result(dependent)
    assert result.check(DependencyFailed) and "removed" in str(result.value)


def test_removing_a_waiting_job(queue):
    dependency = queue.put(job("add", 1, 1))
    dependent = queue.put(job("add", 2, 2), depends_on=[dependency])
    queue.remove(dependent)
    assert dependent.status == "new" and dependent.waiting_for == ()
    assert queue.get(dependent.id) is None and not queue._dependents
    assert queue.counts()["waiting"] == 0


def test_bad_dependencies_are_refused_and_change_nothing(conn, queue):
    queued = queue.put(job("add", 1, 1))
    other_queue = zasync.get_queues(conn).create("other")
    elsewhere = other_queue.put(job("add", 1, 1))
    transaction.commit()
    before = queue.counts()
    cases = [
        (TypeError, "must hold zasync.Job objects", [queued, "a job"]),
        (TypeError, "must be a list of queued jobs", 42),
        (ValueError, "is not queued", [job("add", 1, 1)]),
        (ValueError, "is in queue 'other', not ''", [elsewhere]),
    ]
    for error, message, depends_on in cases:
        fresh = job("add", 2, 2)
        with pytest.raises(error, match=message):
            queue.put(fresh, depends_on=depends_on)
        assert fresh.status == "new"
    with pytest.raises(ValueError, match="on_dependency_failure must be one of"):
        queue.put(job("add", 2, 2), depends_on=[queued], on_dependency_failure="x")
    queue.remove(queued)
    with pytest.raises(ValueError, match="is not queued"):
        queue.put(job("add", 2, 2), depends_on=[queued])
    assert queue.counts() == {**before, "pending": 0}
    assert not queue._dependents


def test_inline_mode(queue):
    with inline():
        first = queue.put(job("add", 1, 1))
        assert queue.put(job("add", 2, 2), depends_on=[first]).result == 4
        failing = queue.put(job("fail"))
        assert queue.put(job("add", 2, 2), depends_on=[failing]).failed
    pending = queue.put(job("add", 1, 1))
    with inline(), pytest.raises(ValueError, match="inline mode"):
        queue.put(job("add", 2, 2), depends_on=[pending])


def test_a_queue_stored_before_dependencies(queue):
    del queue._dependents  # as stored by an earlier version
    dependency = queue.put(job("add", 1, 1))
    assert queue.dependents(dependency) == []
    dependent = queue.put(job("add", 2, 2), depends_on=[dependency])
    assert queue.dependents(dependency) == [dependent]
    transaction.commit()


def test_the_job_report_shows_dependencies(conn, queue):
    dependency = queue.put(job("add", 1, 1))
    dependent = queue.put(
        job("add", 2, 2), depends_on=[dependency], on_dependency_failure="run"
    )
    transaction.commit()
    info = admin.describe_job(dependent)
    assert info["status"] == "waiting"
    assert info["depends_on"] == [
        {
            "id": dependency.id,
            "status": "pending",
            "callable": "jobfuncs.add",
            "error": None,
        }
    ]
    assert info["on_dependency_failure"] == "run"
    assert info["waiting_for"] == [dependency.id]
    assert [each["id"] for each in admin.describe_job(dependency)["dependents"]] == [
        dependent.id
    ]
    found, _ = admin.find_jobs(zasync.get_queues(conn), status="waiting")
    assert [each.id for each in found] == [dependent.id]
    assert (
        admin.status_report(zasync.get_queues(conn))["queues"][0]["counts"]["waiting"]
        == 1
    )


def test_waiting_jobs_and_their_queue_verify(queue):
    from zope.interface.verify import verifyObject

    from zasync.interfaces import IJob, IQueue

    dependency = queue.put(job("add", 1, 1))
    dependent = queue.put(job("add", 2, 2), depends_on=[dependency])
    assert verifyObject(IJob, dependent) and verifyObject(IQueue, queue)


def test_a_running_dependency_cannot_be_removed_and_its_dependents_wait(queue):
    dependency = queue.put(job("add", 1, 1))
    dependent = queue.put(job("add", 2, 2), depends_on=[dependency])
    agent = zasync.registry.Agent("main", size=1)
    (claimed,) = queue.claim(agent, "test", 1, NOW)
    assert claimed is dependency
    with pytest.raises(ValueError, match="only waiting, pending or completed"):
        queue.remove(dependency)
    assert dependent.status == WAITING and queue.dependents(dependency) == [dependent]


def test_waiting_for_serial_and_parallel_jobs(conn, queue, dispatcher):
    steps = queue.put(zasync.serial(job("add", 1, 1), job("add", 2, 2)))
    both = queue.put(zasync.parallel(job("add", 3, 3), job("add", 4, 4)))
    last = queue.put(job("join", steps, both), depends_on=[steps, both])
    transaction.commit()
    assert wait_for_result(last) == [steps.result, both.result]
    assert [child.result for child in steps.result] == [2, 4]


def test_a_job_put_again_after_an_abort(queue):
    dependency = queue.put(job("add", 1, 1))
    transaction.commit()
    dependent = queue.put(job("add", 2, 2), depends_on=[dependency])
    transaction.abort()
    assert queue.dependents(dependency) == []
    queue.put(dependent)  # without dependencies this time
    assert dependent.status == PENDING and dependent.depends_on == ()
    transaction.commit()
