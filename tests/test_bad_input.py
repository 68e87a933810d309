"""Bad input is refused when a job is made or queued, never in a worker.

Each refusal names the offending argument, and leaves the jobs already in
the queue as they were.
"""

import datetime
import importlib
import sys
import threading
import uuid

import pytest
import ZODB
import ZODB.FileStorage

import jobfuncs
import zasync
from zasync.job import BadJobError, CallableNotFound
from zasync.queue import get_queues
from zasync.testing import inline

UTC = datetime.UTC


@pytest.fixture
def conn(db):
    conn = jobfuncs.open_connection(db)
    yield conn
    conn.transaction_manager.abort()
    conn.close()


@pytest.fixture
def queue(conn):
    """The default queue, holding two committed pending jobs."""
    queue = get_queues(conn)[""]
    queue.put(zasync.Job(jobfuncs.add, 1, 2), priority=1)
    queue.put(zasync.Job(jobfuncs.add, 3, 4), unique_key="existing")
    conn.transaction_manager.commit()
    return queue


def snapshot(queue):
    """What must not change when a put is refused."""
    return (
        len(queue),
        [(job.id, job.status, job.priority, job.args, job.queue) for job in queue],
        queue.counts(),
    )


@pytest.fixture
def untouched(queue):
    """Check, after the test body, that the queued jobs are as they were."""
    before = snapshot(queue)
    yield
    assert snapshot(queue) == before
    assert len(queue) == 2
    assert all(job.status == zasync.Status.PENDING for job in queue)


# -- callables ------------------------------------------------------------------


def test_lambda_callable_is_refused(queue, untouched):
    """A lambda cannot be imported by a worker."""
    with pytest.raises(BadJobError, match="lambda"):
        queue.put(lambda: 1)
    with pytest.raises(BadJobError, match="lambda"):
        zasync.Job(lambda x: x, 1)


def test_nested_function_is_refused(queue, untouched):
    """A function defined inside another one cannot be imported."""

    def nested():
        return 1

    with pytest.raises(BadJobError, match="nested function or closure") as info:
        queue.put(nested)
    assert "test_nested_function_is_refused.<locals>.nested" in str(info.value)


def test_closure_is_refused(queue, untouched):
    """A closure (a nested function using outer variables) is refused."""
    captured = 42

    def closure():
        return captured

    with pytest.raises(BadJobError, match="closure") as info:
        queue.put(zasync.Job(closure))
    assert "closure" in str(info.value)
    assert "module-level function" in str(info.value)


def test_method_of_non_persistent_object_is_refused(queue, untouched):
    """A method of a plain object could not be found again by a worker."""
    with pytest.raises(BadJobError, match="non-persistent") as info:
        queue.put(jobfuncs.Plain().method)
    assert "Plain.method" in str(info.value)


def test_non_callable_is_refused(queue, untouched):
    """Something that is not callable is refused when the job is made."""
    with pytest.raises(BadJobError, match="not callable"):
        queue.put(zasync.Job(42))


def test_callbacks_are_checked_like_callables(queue, untouched):
    """A lambda as callback, or as success/failure, is refused at once."""
    job = queue[0]
    with pytest.raises(BadJobError, match="lambda"):
        job.add_callback(lambda result: result)
    with pytest.raises(BadJobError, match="success callback"):
        job.add_callbacks(success=lambda result: result)
    with pytest.raises(BadJobError, match="failure callback"):
        job.add_callbacks(failure=jobfuncs.Plain().method)
    assert job.callbacks == ()


# -- arguments ---------------------------------------------------------------------


def test_open_file_argument_is_refused(queue, untouched, tmp_path):
    """An open file as positional argument: the message names it."""
    path = tmp_path / "data.txt"
    path.write_text("x")
    with path.open() as fp, pytest.raises(BadJobError) as info:
        queue.put(zasync.Job(jobfuncs.echo, "fine", fp))
    message = str(info.value)
    assert "argument 2" in message
    assert "a path instead of an open file" in message


def test_open_file_keyword_argument_is_refused(queue, untouched, tmp_path):
    """An open file as keyword argument: the message names the keyword."""
    path = tmp_path / "data.txt"
    path.write_text("x")
    with path.open() as fp, pytest.raises(BadJobError) as info:
        queue.put(zasync.Job(jobfuncs.echo, 1, fp=fp))
    assert "keyword argument 'fp'" in str(info.value)


def test_lock_argument_is_refused(queue, untouched):
    """A lock does not pickle; the message names the argument."""
    with pytest.raises(BadJobError, match="argument 1"):
        queue.put(zasync.Job(jobfuncs.echo, threading.Lock()))
    with pytest.raises(BadJobError, match="keyword argument 'guard'"):
        queue.put(zasync.Job(jobfuncs.echo, guard=threading.RLock()))


def test_lambda_inside_a_list_is_refused(queue, untouched):
    """An unpicklable value deep inside an argument is found too."""
    with pytest.raises(BadJobError, match="argument 2"):
        queue.put(zasync.Job(jobfuncs.echo, 1, [1, {"f": lambda: 0}]))
    with pytest.raises(BadJobError, match="keyword argument 'items'"):
        queue.put(zasync.Job(jobfuncs.echo, items=[lambda: 0]))


def test_instance_of_local_class_is_refused(queue, untouched):
    """An instance of a class defined in a function does not pickle."""

    class Local:
        pass

    with pytest.raises(BadJobError, match="argument 1"):
        queue.put(zasync.Job(jobfuncs.echo, Local()))


def test_persistent_argument_is_accepted(conn, queue, untouched):
    """Persistent objects are stored as references, and are fine."""
    counter = conn.root()["counter"] = jobfuncs.Counter()
    job = zasync.Job(jobfuncs.echo, counter, c=counter)
    assert job.args == (counter,)
    conn.transaction_manager.abort()


# -- putting --------------------------------------------------------------------------


def test_putting_a_queued_job_again_raises(conn, queue, untouched):
    """A job that is pending in a queue cannot be put again, here or in
    another queue."""
    job = queue[0]
    with pytest.raises(ValueError, match="already queued"):
        queue.put(job)
    other = get_queues(conn).create("other")
    with pytest.raises(ValueError, match="create a new Job"):
        other.put(job)
    assert len(other) == 0
    assert job.queue is queue


def test_putting_a_completed_job_again_raises(queue, untouched):
    """A job that already ran (here: called directly) cannot be put."""
    job = zasync.Job(jobfuncs.add, 1, 1)
    job()
    with pytest.raises(ValueError, match="already queued"):
        queue.put(job)


def test_unknown_quota_is_refused(queue, untouched):
    """Every quota name must exist; the message says how to create it."""
    with pytest.raises(ValueError) as info:
        queue.put(zasync.Job(jobfuncs.add, 1, 1), quota_names=("nope",))
    message = str(info.value)
    assert "'nope'" in message
    assert "queue.quotas.create('nope'" in message
    with pytest.raises(ValueError, match="quotas.create\\('single'"):
        queue.put(zasync.Job(jobfuncs.add, 1, 1), quota_names="single")


def test_naive_begin_after_is_refused(queue, untouched):
    """begin_after must be timezone-aware."""
    with pytest.raises(ValueError, match="begin_after must be timezone-aware"):
        queue.put(
            zasync.Job(jobfuncs.add, 1, 1), begin_after=datetime.datetime(2030, 1, 1)
        )


@pytest.mark.parametrize("begin_after", ["5", datetime.date(2030, 1, 1), True])
def test_begin_after_of_wrong_type_is_refused(queue, untouched, begin_after):
    """begin_after is a datetime or a duration (timedelta or seconds)."""
    with pytest.raises(TypeError, match="begin_after .a datetime, or a duration"):
        queue.put(zasync.Job(jobfuncs.add, 1, 1), begin_after=begin_after)


@pytest.mark.parametrize(
    "begin_by", [datetime.timedelta(0), datetime.timedelta(-1), 0, -3.5, "30"]
)
def test_bad_begin_by_is_refused(queue, untouched, begin_by):
    """begin_by is a positive duration: a timedelta or seconds."""
    with pytest.raises((TypeError, ValueError), match="begin_by"):
        queue.put(zasync.Job(jobfuncs.add, 1, 1), begin_by=begin_by)


@pytest.mark.parametrize("priority", [1.5, "high", None, True, 2**31, -(2**31)])
def test_bad_priority_is_refused(queue, untouched, priority):
    """priority is an int within the signed 32-bit range (bools are not)."""
    with pytest.raises(ValueError, match="priority") as info:
        queue.put(zasync.Job(jobfuncs.add, 1, 1), priority=priority)
    assert repr(priority) in str(info.value)


@pytest.mark.parametrize("key", [5, b"bytes", ("a",)])
def test_non_string_unique_key_is_refused(queue, untouched, key):
    """unique_key must be a string."""
    with pytest.raises(ValueError, match="unique_key must be a string"):
        queue.put(zasync.Job(jobfuncs.add, 1, 1), unique_key=key)


def test_refused_put_in_inline_mode_runs_nothing(queue, untouched):
    """Validation comes before the inline run: a bad put runs no job."""
    job = zasync.Job(jobfuncs.add, 1, 1)
    with inline(), pytest.raises(ValueError, match="priority"):
        queue.put(job, priority="urgent")
    assert job.status == zasync.Status.NEW
    assert job.result is None


# -- serial / parallel construction --------------------------------------------------


@pytest.mark.parametrize("make", [zasync.serial, zasync.parallel])
def test_composite_needs_jobs(make):
    """serial()/parallel() need at least one job."""
    with pytest.raises(ValueError, match="at least one job"):
        make()


@pytest.mark.parametrize("make", [zasync.serial, zasync.parallel])
def test_composite_refuses_queued_children(make, queue, untouched):
    """A child that is already queued is refused, and stays where it is."""
    queued = queue[0]
    with pytest.raises(ValueError, match="already queued"):
        make(zasync.Job(jobfuncs.add, 1, 1), queued)
    assert queued.parent is None


@pytest.mark.parametrize("make", [zasync.serial, zasync.parallel])
def test_composite_refuses_bad_children_and_postprocess(make):
    """Children and postprocess are checked like any callable."""
    with pytest.raises(BadJobError, match="lambda"):
        make(jobfuncs.which_job, lambda: 1)
    with pytest.raises(BadJobError, match="postprocess"):
        make(jobfuncs.which_job, postprocess=lambda *jobs: jobs)


# -- a callable that disappeared before the worker runs it ---------------------------


def _write_module(directory, name, source):
    (directory / f"{name}.py").write_text(source)
    importlib.invalidate_caches()
    sys.modules.pop(name, None)
    return importlib.import_module(name)


def _forget_module(directory, name):
    sys.modules.pop(name, None)
    (directory / f"{name}.py").unlink()
    importlib.invalidate_caches()


def _queue_and_close(path, make_job):
    """Queue make_job(root) in a database at path, commit, close; the id."""
    db = ZODB.DB(ZODB.FileStorage.FileStorage(str(path)))
    try:
        conn = jobfuncs.open_connection(db)
        job = get_queues(conn)[""].put(make_job(conn.root()))
        conn.transaction_manager.commit()
        return job.id
    finally:
        db.close()


def _load_job(path, job_id):
    """Open a new DB (cold cache) on the file and load the job."""
    db = ZODB.DB(ZODB.FileStorage.FileStorage(str(path)))
    conn = jobfuncs.open_connection(db)
    return db, get_queues(conn)[""].get(job_id)


@pytest.fixture
def module_dir(tmp_path, monkeypatch):
    directory = tmp_path / "modules"
    directory.mkdir()
    monkeypatch.syspath_prepend(str(directory))
    return directory


def test_callable_whose_module_disappeared(tmp_path, module_dir):
    """If the callable's module is gone when the job is loaded,
    resolve_callable() raises CallableNotFound naming the function."""
    name = f"zasync_vanishing_{uuid.uuid4().hex}"
    module = _write_module(module_dir, name, "def work(x):\n    return x * 2\n")
    path = tmp_path / "jobs.fs"
    job_id = _queue_and_close(path, lambda root: zasync.Job(module.work, 21))
    _forget_module(module_dir, name)

    db, job = _load_job(path, job_id)
    try:
        assert job is not None
        assert job.callable_name == f"{name}.work"
        with pytest.raises(CallableNotFound) as info:
            job.resolve_callable()
        message = str(info.value)
        assert f"{name}.work" in message
        assert str(job_id) in message
        assert "Restore it" in message
    finally:
        db.close()


def test_callable_whose_function_was_removed(tmp_path, module_dir):
    """If the module is still there but the function was removed or
    renamed, resolve_callable() raises CallableNotFound too."""
    name = f"zasync_renamed_{uuid.uuid4().hex}"
    module = _write_module(module_dir, name, "def work(x):\n    return x\n")
    path = tmp_path / "jobs.fs"
    job_id = _queue_and_close(path, lambda root: zasync.Job(module.work, 1))
    _forget_module(module_dir, name)
    _write_module(module_dir, name, "def renamed(x):\n    return x\n")

    db, job = _load_job(path, job_id)
    try:
        with pytest.raises(CallableNotFound, match=f"{name}.work"):
            job.resolve_callable()
    finally:
        db.close()
        sys.modules.pop(name, None)


def test_method_that_was_removed_from_persistent_class(tmp_path, module_dir):
    """If the persistent object's class lost the method, resolve_callable()
    raises CallableNotFound naming the method."""
    name = f"zasync_methods_{uuid.uuid4().hex}"
    source = (
        "import persistent\n"
        "class Thing(persistent.Persistent):\n"
        "    def work(self):\n"
        "        return 1\n"
    )
    module = _write_module(module_dir, name, source)

    def make(root):
        thing = root["thing"] = module.Thing()
        return zasync.Job(thing.work)

    path = tmp_path / "jobs.fs"
    job_id = _queue_and_close(path, make)
    _forget_module(module_dir, name)
    _write_module(
        module_dir,
        name,
        "import persistent\nclass Thing(persistent.Persistent):\n    pass\n",
    )

    db, job = _load_job(path, job_id)
    try:
        with pytest.raises(CallableNotFound, match=f"{name}.Thing.work"):
            job.resolve_callable()
    finally:
        db.close()
        sys.modules.pop(name, None)


def test_a_builtin_types_method_is_refused_naming_it():
    with pytest.raises(BadJobError) as raised:
        zasync.Job(datetime.date.fromisoformat, "2026-11-23")
    message = str(raised.value)
    assert "datetime.date.fromisoformat" in message
    assert "builtin type, which ZODB cannot store" in message
