"""Jobs: status, timestamps, direct calls, callbacks, annotations, ids."""

import datetime

import pytest

import jobfuncs
import zasync
from zasync import Status
from zasync.composite import Parallel, Serial
from zasync.queue import get_queues

UTC = datetime.UTC


def reopen(db):
    """A second connection, on its own transaction manager."""
    return jobfuncs.open_connection(db)


# -- status --------------------------------------------------------------------


def test_new_job_status_is_new():
    """A job that was just made is NEW, has no result and did not fail."""
    job = zasync.Job(jobfuncs.add, 1, 2)
    assert job.status == Status.NEW
    assert job.result is None
    assert job.failed is False
    assert job.queue is None
    assert job.attempts == 0
    assert job.callbacks == ()


def test_status_values_are_strings():
    """Statuses compare equal to, and print as, plain strings."""
    assert [s.value for s in Status] == [
        "new",
        "waiting",
        "pending",
        "assigned",
        "active",
        "callbacks",
        "completed",
    ]
    assert Status.PENDING == "pending"
    assert str(Status.ACTIVE) == "active"
    assert f"{Status.COMPLETED}" == "completed"
    assert zasync.Job(jobfuncs.add, 1, 2).status == "new"
    assert isinstance(zasync.Job(jobfuncs.add, 1, 2).status, str)


def test_job_keeps_callable_and_arguments():
    """args is a tuple, kwargs a dict, callable_name the dotted name."""
    job = zasync.Job(jobfuncs.echo, 1, [2], key="v")
    assert job.callable is jobfuncs.echo
    assert job.callable_name == "jobfuncs.echo"
    assert job.args == (1, [2])
    assert job.kwargs == {"key": "v"}


def test_timestamps_after_put_are_aware_utc(queue):
    """queued and begin_after are timezone-aware UTC datetimes after put."""
    before = datetime.datetime.now(UTC)
    job = queue.put(zasync.Job(jobfuncs.add, 1, 2))
    after = datetime.datetime.now(UTC)
    for when in (job.queued, job.begin_after):
        assert when.tzinfo is not None
        assert when.utcoffset() == datetime.timedelta(0)
        assert before - datetime.timedelta(milliseconds=1) <= when
        assert when <= after + datetime.timedelta(milliseconds=1)
    assert job.status == Status.PENDING
    assert job.started is None and job.ended is None


def test_timestamps_given_in_another_zone_are_stored_as_utc(queue):
    """An aware begin_after in another time zone is kept as the same instant
    in UTC."""
    zone = datetime.timezone(datetime.timedelta(hours=5))
    local_time = datetime.datetime(2030, 6, 1, 12, 0, tzinfo=zone)
    job = queue.put(zasync.Job(jobfuncs.add, 1, 2), begin_after=local_time)
    assert job.begin_after == local_time
    assert job.begin_after.utcoffset() == datetime.timedelta(0)
    assert job.begin_after.hour == 7


# -- calling a job directly ----------------------------------------------------------


def test_direct_call_runs_and_stores_result():
    """job() runs the callable, stores the result and completes the job."""
    job = zasync.Job(jobfuncs.add, 2, 3)
    assert job() == 5
    assert job.result == 5
    assert job.status == Status.COMPLETED
    assert job.failed is False
    assert job.attempts == 1
    assert job.started.tzinfo is not None and job.ended.tzinfo is not None
    assert job.started <= job.ended


def test_direct_call_appends_extra_arguments():
    """Arguments given to job() are appended to the job's own."""
    job = zasync.Job(jobfuncs.echo, 1, a="x")
    assert job(2, b="y") == ((1, 2), {"a": "x", "b": "y"})


def test_direct_call_returns_failure_instead_of_raising():
    """An exception becomes a Failure, returned and stored, not raised."""
    job = zasync.Job(jobfuncs.fail, "nope")
    result = job()
    assert isinstance(result, zasync.Failure)
    assert job.result is result
    assert result.check(ValueError) is ValueError
    assert result.getErrorMessage() == "nope"
    assert job.failed is True
    assert job.status == Status.COMPLETED


def test_job_whose_callable_is_another_job():
    """A job may call another job: the inner job runs and its result is the
    outer job's result."""
    inner = zasync.Job(jobfuncs.add, 20, 1)
    outer = zasync.Job(inner)
    assert outer.callable_name == "job:jobfuncs.add"
    assert outer() == 21
    assert inner.status == Status.COMPLETED
    assert inner.result == 21
    assert outer.result == 21


def test_job_calling_a_failing_job_fails():
    """When the inner job fails, the outer one's result is that Failure."""
    inner = zasync.Job(jobfuncs.fail, "inner")
    outer = zasync.Job(inner)
    result = outer()
    assert isinstance(result, zasync.Failure)
    assert outer.failed is True
    assert result.getErrorMessage() == "inner"


def test_method_of_persistent_object_as_callable(db, conn, queue):
    """A method of a persistent object is stored as a reference to the
    object; the job finds and calls it from another connection."""
    counter = conn.root()["counter"] = jobfuncs.Counter()
    job = queue.put(zasync.Job(counter.add, 5))
    conn.transaction_manager.commit()
    job_id = job.id

    other = reopen(db)
    try:
        loaded = get_queues(other)[""].get(job_id)
        assert loaded.callable_name == "jobfuncs.Counter.add"
        assert loaded.callable.__self__ is other.root()["counter"]
        assert loaded() == 5
        other.transaction_manager.commit()
    finally:
        other.close()

    conn.transaction_manager.begin()
    assert conn.root()["counter"].value == 5
    assert job.result == 5


def test_callable_persistent_object(conn):
    """A persistent object with __call__ can be the callable."""
    counter = conn.root()["counter"] = jobfuncs.Counter()
    job = zasync.Job(counter, 3)
    assert job() == 3
    assert counter.value == 3


def test_classmethod_of_importable_class_is_accepted(conn):
    """A classmethod of an importable class is a valid, storable callable."""
    job = conn.root()["job"] = zasync.Job(jobfuncs.Plain.build, 7)
    conn.transaction_manager.commit()
    assert job.callable_name == "jobfuncs.Plain.build"
    assert job() == ("Plain", 7)


# -- callbacks --------------------------------------------------------------------------


def test_add_callback_runs_after_the_job_with_its_result():
    """A callback gets the result first, then its own arguments, and runs
    when the job is called; the job's result is unchanged."""
    job = zasync.Job(jobfuncs.add, 1, 2)
    callback = job.add_callback(jobfuncs.labelled, "seen")
    assert isinstance(callback, zasync.Job)
    assert callback.parent is job
    assert job.callbacks == (callback,)
    assert job() == 3
    assert callback.status == Status.COMPLETED
    assert callback.result == ("seen", 3)
    assert job.result == 3


def test_callbacks_run_in_order_added(conn):
    """Callbacks run one after the other, in the order they were added."""
    log = conn.root()["log"] = jobfuncs.Log()
    job = zasync.Job(jobfuncs.add, 1, 1)
    for label in ("first", "second", "third"):
        job.add_callback(log.append, label)
    job()
    assert list(log.entries) == [("first", 2), ("second", 2), ("third", 2)]


def test_camel_case_aliases_are_the_same_methods():
    """addCallback/addCallbacks are add_callback/add_callbacks."""
    assert zasync.Job.addCallback is zasync.Job.add_callback
    assert zasync.Job.addCallbacks is zasync.Job.add_callbacks
    job = zasync.Job(jobfuncs.add, 4, 4)
    callback = job.addCallback(jobfuncs.labelled, "camel")
    both = job.addCallbacks(success=jobfuncs.tag_success)
    job()
    assert callback.result == ("camel", 8)
    assert both.result == ("success", 8)


def test_add_callbacks_success_path():
    """add_callbacks: success(result) runs when the job succeeds."""
    job = zasync.Job(jobfuncs.add, 2, 2)
    callback = job.add_callbacks(
        success=jobfuncs.tag_success, failure=jobfuncs.tag_failure
    )
    job()
    assert callback.result == ("success", 4)


def test_add_callbacks_failure_path():
    """add_callbacks: failure(Failure) runs when the job fails."""
    job = zasync.Job(jobfuncs.fail, "broken")
    callback = job.add_callbacks(
        success=jobfuncs.tag_success, failure=jobfuncs.tag_failure
    )
    job()
    assert job.failed
    assert callback.result == ("failure", "broken")
    assert callback.failed is False


def test_add_callbacks_missing_side_passes_result_through():
    """With only success given, a failure passes through, and vice versa."""
    failing = zasync.Job(jobfuncs.fail, "through")
    only_success = failing.add_callbacks(success=jobfuncs.tag_success)
    failing()
    assert isinstance(only_success.result, zasync.Failure)
    assert only_success.result.getErrorMessage() == "through"

    working = zasync.Job(jobfuncs.add, 1, 1)
    only_failure = working.add_callbacks(failure=jobfuncs.tag_failure)
    working()
    assert only_failure.result == 2


def test_add_callbacks_needs_one_side():
    """add_callbacks() with neither success nor failure is an error."""
    with pytest.raises(ValueError, match="success"):
        zasync.Job(jobfuncs.add, 1, 1).add_callbacks()


def test_failing_callback_does_not_change_job_result():
    """An exception in a callback is that callback's Failure only."""
    job = zasync.Job(jobfuncs.add, 1, 2)
    bad = job.add_callback(jobfuncs.explode)
    good = job.add_callback(jobfuncs.labelled, "after")
    job()
    assert job.result == 3
    assert job.failed is False
    assert bad.failed is True
    assert bad.result.check(RuntimeError) is RuntimeError
    assert good.result == ("after", 3)


def test_callback_added_to_completed_job_runs_at_once():
    """Adding a callback to a completed (unqueued) job runs it at once."""
    job = zasync.Job(jobfuncs.add, 5, 5)
    job()
    callback = job.add_callback(jobfuncs.labelled, "late")
    assert callback.status == Status.COMPLETED
    assert callback.result == ("late", 10)


def test_job_given_as_callback_must_be_new_and_take_no_arguments():
    """A Job passed as callback carries its own arguments."""
    job = zasync.Job(jobfuncs.add, 1, 1)
    callback = zasync.Job(jobfuncs.labelled, "own")
    assert job.add_callback(callback) is callback
    with pytest.raises(ValueError, match="arguments"):
        job.add_callback(zasync.Job(jobfuncs.labelled), "extra")
    done = zasync.Job(jobfuncs.add, 0, 0)
    done()
    with pytest.raises(ValueError, match="new"):
        job.add_callback(done)
    job()
    assert callback.result == ("own", 2)


# -- annotations ------------------------------------------------------------------------


def test_annotations_persist_after_commit(db, conn, queue):
    """The annotations mapping is stored with the job, including later
    changes made in ordinary transactions."""
    job = queue.put(zasync.Job(jobfuncs.add, 1, 2))
    job.annotations["owner"] = "alice"
    conn.transaction_manager.commit()
    job_id = job.id

    other = reopen(db)
    try:
        loaded = get_queues(other)[""].get(job_id)
        assert dict(loaded.annotations) == {"owner": "alice"}
        loaded.annotations["step"] = 2
        other.transaction_manager.commit()
    finally:
        other.close()

    conn.transaction_manager.begin()
    assert dict(job.annotations) == {"owner": "alice", "step": 2}


# -- ids -----------------------------------------------------------------------------------


def test_ids_are_unique_and_grow_with_arrival(queue):
    """Jobs put one after the other get unique, increasing ids."""
    jobs = [queue.put(zasync.Job(jobfuncs.add, i, i)) for i in range(300)]
    ids = [job.id for job in jobs]
    assert all(isinstance(i, int) for i in ids)
    assert len(set(ids)) == len(ids)
    assert ids == sorted(ids)
    assert [queue.get(i) for i in ids] == jobs


def test_id_is_renewed_when_put(queue):
    """IJob.id: given when the job is made, renewed by put."""
    job = zasync.Job(jobfuncs.add, 1, 2)
    made = job.id
    assert isinstance(made, int)
    queue.put(job)
    assert isinstance(job.id, int) and job.id > made


def test_ids_follow_arrival_not_creation(queue):
    """A job made earlier but put later gets the larger id (ids grow with
    time of arrival)."""
    made_first = zasync.Job(jobfuncs.add, 1, 1)
    made_second = zasync.Job(jobfuncs.add, 2, 2)
    queue.put(made_second)
    queue.put(made_first)
    assert made_second.id < made_first.id


# -- retry policy -----------------------------------------------------------------------------


def test_job_retry_policy_can_be_set_and_must_pickle():
    """retry_policy: the default until set; an unpicklable one is refused."""
    from zasync.job import BadJobError
    from zasync.retry import DEFAULT_POLICY, NeverRetry

    job = zasync.Job(jobfuncs.add, 1, 1)
    assert job.retry_policy is DEFAULT_POLICY
    job.retry_policy = NeverRetry()
    assert job.retry_policy == NeverRetry()
    job.retry_policy = None
    assert job.retry_policy is DEFAULT_POLICY

    class LocalPolicy(NeverRetry):
        pass

    with pytest.raises(BadJobError, match="retry_policy"):
        job.retry_policy = LocalPolicy()


def test_put_sets_retry_policy(queue):
    """queue.put(retry_policy=...) sets the job's policy."""
    from zasync.retry import RetryWithDelay

    policy = RetryWithDelay(max_attempts=2)
    job = queue.put(zasync.Job(jobfuncs.add, 1, 1), retry_policy=policy)
    assert job.retry_policy is policy


# -- serial and parallel: construction only ------------------------------------------------


@pytest.mark.parametrize(
    "make, cls", [(zasync.serial, Serial), (zasync.parallel, Parallel)]
)
def test_composite_wraps_callables_and_adopts_children(make, cls):
    """serial()/parallel() make a job whose children are jobs (callables
    are wrapped) with the composite as parent."""
    given = zasync.Job(jobfuncs.add, 1, 2)
    composite = make(given, jobfuncs.which_job, postprocess=jobfuncs.echo)
    assert isinstance(composite, cls)
    assert isinstance(composite, zasync.Job)
    assert composite.status == Status.NEW
    assert composite.children[0] is given
    assert isinstance(composite.children[1], zasync.Job)
    assert composite.children[1].callable is jobfuncs.which_job
    assert all(child.parent is composite for child in composite.children)
    assert type(composite).__name__.lower() in composite.callable_name


@pytest.mark.parametrize("make", [zasync.serial, zasync.parallel])
def test_composite_can_be_put_in_a_queue(make, queue):
    """A composite job is queued like any other job."""
    composite = queue.put(make(jobfuncs.which_job, jobfuncs.which_job))
    assert composite.status == Status.PENDING
    assert list(queue) == [composite]
    assert all(child.status == Status.NEW for child in composite.children)
