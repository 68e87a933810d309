"""zasync.testing.inline(): queue.put runs jobs at once, for unit tests."""

import threading

import pytest

import jobfuncs
import zasync
from zasync import Status
from zasync.queue import get_queues
from zasync.testing import inline


def test_put_returns_completed_job_with_result(queue):
    """Inside inline(), put runs the job and returns it completed."""
    with inline():
        job = queue.put(zasync.Job(jobfuncs.add, 40, 2))
    assert job.status == Status.COMPLETED
    assert job.result == 42
    assert job.failed is False
    assert job.attempts == 1
    assert job.queue is queue
    assert job.queued is not None and job.ended is not None
    assert len(queue) == 0


def test_put_callable_runs_it(queue):
    """put(callable) in inline mode runs the wrapped job."""
    with inline():
        job = queue.put(jobfuncs.which_job)
    assert job.result is job


def test_callbacks_ran(conn, queue):
    """Callbacks added before put run, in order, with the result."""
    log = conn.root()["log"] = jobfuncs.Log()
    job = zasync.Job(jobfuncs.add, 2, 3)
    first = job.add_callback(log.append, "first")
    second = job.addCallbacks(
        success=jobfuncs.tag_success, failure=jobfuncs.tag_failure
    )
    third = job.add_callback(log.append, "third")
    with inline():
        queue.put(job)
    assert [cb.status for cb in (first, second, third)] == [Status.COMPLETED] * 3
    assert list(log.entries) == [("first", 5), ("third", 5)]
    assert second.result == ("success", 5)


def test_failing_callable_gives_failure_result(queue):
    """A callable that raises completes the job with a Failure."""
    job = zasync.Job(jobfuncs.fail, "inline boom")
    callback = job.add_callbacks(failure=jobfuncs.tag_failure)
    with inline():
        returned = queue.put(job)
    assert returned is job
    assert job.status == Status.COMPLETED
    assert job.failed is True
    assert isinstance(job.result, zasync.Failure)
    assert job.result.getErrorMessage() == "inline boom"
    assert callback.result == ("failure", "inline boom")


def test_counts_show_completed_jobs(queue):
    """Jobs run inline are counted as completed, succeeded or failed."""
    with inline():
        queue.put(zasync.Job(jobfuncs.add, 1, 1))
        queue.put(zasync.Job(jobfuncs.add, 2, 2))
        failed = queue.put(zasync.Job(jobfuncs.fail))
    counts = queue.counts()
    assert counts["completed"] == 3
    assert counts["succeeded"] == 2
    assert counts["failed"] == 1
    assert counts["pending"] == 0
    assert queue.jobs(status="completed", failed=True) == [failed]
    assert queue.get(failed.id) is failed


def test_inline_runs_in_callers_transaction(db, conn, queue):
    """The job's writes are part of the caller's transaction: abort and
    they are gone; commit and others see them."""
    counter = conn.root()["counter"] = jobfuncs.Counter()
    conn.transaction_manager.commit()
    with inline():
        queue.put(zasync.Job(counter.add, 5))
    assert counter.value == 5
    conn.transaction_manager.abort()
    assert counter.value == 0
    assert queue.counts()["completed"] == 0

    with inline():
        job = queue.put(zasync.Job(counter.add, 7))
    conn.transaction_manager.commit()
    other = jobfuncs.open_connection(db)
    try:
        assert other.root()["counter"].value == 7
        assert get_queues(other)[""].get(job.id).result == 7
    finally:
        other.close()


def test_inline_ends_with_the_block(queue):
    """After the block, put queues again; the mode is restored even when the
    block raises."""
    with pytest.raises(RuntimeError), inline():
        raise RuntimeError("leave the block")
    job = queue.put(zasync.Job(jobfuncs.add, 1, 1))
    assert job.status == Status.PENDING
    assert job.result is None
    assert len(queue) == 1


def test_inline_blocks_nest(queue):
    """A nested inline() block leaves inline mode on for the outer one."""
    with inline():
        with inline():
            inner = queue.put(zasync.Job(jobfuncs.add, 1, 1))
        outer = queue.put(zasync.Job(jobfuncs.add, 2, 2))
    assert inner.result == 2
    assert outer.result == 4
    assert outer.status == Status.COMPLETED


def test_inline_is_per_thread(db, queue):
    """inline() in one thread leaves put() in another thread queuing."""
    entered, put_done = threading.Event(), threading.Event()
    seen = {}

    def other_thread():
        assert entered.wait(10)
        conn = jobfuncs.open_connection(db)
        try:
            job = get_queues(conn)[""].put(zasync.Job(jobfuncs.add, 1, 1))
            seen["status"] = job.status
            conn.transaction_manager.abort()
        finally:
            conn.close()
            put_done.set()

    thread = threading.Thread(target=other_thread)
    thread.start()
    with inline():
        entered.set()
        assert put_done.wait(10)
        mine = queue.put(zasync.Job(jobfuncs.add, 2, 2))
    thread.join(10)
    assert seen["status"] == Status.PENDING
    assert mine.status == Status.COMPLETED
