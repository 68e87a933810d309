"""serial() and parallel() jobs."""

import uuid

import pytest
import transaction
from persistent.list import PersistentList

import jobfuncs
import zasync
from zasync.status import Status
from zasync.testing import wait_for_all_jobs, wait_for_result


def test_serial_runs_in_order_and_returns_the_jobs(conn, queue, dispatcher):
    conn.root()["log"] = log = PersistentList()
    job = queue.put(
        zasync.serial(*(zasync.Job(jobfuncs.append, log, value) for value in "abcd"))
    )
    transaction.commit()
    result = wait_for_result(job)
    assert [child.result for child in result] == list("abcd")
    assert list(conn.root()["log"]) == list("abcd")


def test_serial_goes_on_after_a_failure(queue, dispatcher):
    job = queue.put(
        zasync.serial(jobfuncs_job("fail", "first"), zasync.Job(jobfuncs.add, 1, 1))
    )
    transaction.commit()
    first, second = wait_for_result(job)
    assert first.result.check(ValueError)
    assert second.result == 2


def jobfuncs_job(name, *args):
    return zasync.Job(getattr(jobfuncs, name), *args)


def test_parallel_with_postprocess(queue, dispatcher):
    job = queue.put(
        zasync.parallel(
            zasync.Job(jobfuncs.add, 1, 1),
            zasync.Job(jobfuncs.add, 2, 2),
            zasync.Job(jobfuncs.add, 3, 3),
            postprocess=jobfuncs.join,
        )
    )
    transaction.commit()
    assert wait_for_result(job) == [2, 4, 6]


def test_parent_holds_no_quota_slot_nor_thread(queue, start_dispatcher):
    """zc.async deadlocked here: the parent held the only slot and thread."""
    queue.quotas.create("one", size=1)
    token = str(uuid.uuid4())
    job = queue.put(
        zasync.parallel(
            *(zasync.Job(jobfuncs.count_concurrency, token, "never") for _ in range(3)),
            postprocess=jobfuncs.join,
        ),
        quota_names=("one",),
    )
    transaction.commit()
    start_dispatcher(agent_size=1)
    assert wait_for_result(job, seconds=20) == [token] * 3
    assert jobfuncs.most_running[token] == 1
    wait_for_all_jobs(queue._p_jar)
    assert len(queue.quotas["one"]) == 0


def test_nested_composites_and_callbacks(queue, dispatcher):
    inner = zasync.serial(
        zasync.Job(jobfuncs.add, 1, 2), zasync.Job(jobfuncs.add, 3, 4)
    )
    job = queue.put(zasync.parallel(inner, zasync.Job(jobfuncs.add, 5, 6)))
    callback = job.add_callback(jobfuncs.callback_value)
    transaction.commit()
    first, second = wait_for_result(job)
    assert [child.result for child in first.result] == [3, 7]
    assert second.result == 11
    assert wait_for_result(callback).startswith("callback got")


def test_serial_called_directly_runs_inline(queue):
    job = zasync.serial(zasync.Job(jobfuncs.add, 1, 1), postprocess=jobfuncs.join)
    assert job() == [2]


@pytest.mark.parametrize("postprocess", [None, jobfuncs.join])
def test_parent_advances_once_when_children_finish_together(queue, postprocess):
    # Two children committed before the dispatcher reconciles either: each
    # reconcile sees all children done, and the parent must move on once.
    first, second = zasync.Job(jobfuncs.add, 1, 2), zasync.Job(jobfuncs.add, 3, 4)
    parent = zasync.parallel(first, second, postprocess=postprocess)
    parent.add_callback(jobfuncs.callback_value)
    queue.put(parent)
    now = zasync.clock.utcnow()
    queue.claim(zasync.registry.Agent("main", 3), "uuid", 5, now)  # starts it
    assert {first.status, second.status} == {Status.PENDING}
    for child in (first, second):
        queue.remove(child)
        child.status = Status.COMPLETED
    for child in (first, second):
        parent.sub_job_done(child, queue, now)
    queued = [job for job in queue if job.parent is parent]
    assert len(queued) == 1, queued
