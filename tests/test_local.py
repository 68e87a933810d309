"""zasync.local: what code running in a job knows about its job.

Only direct calls (``job()``) and inline mode are tested here; the
dispatcher's live channel is tested with the dispatcher.
"""

import pytest

import jobfuncs
import zasync
from zasync import local
from zasync.queue import get_queues
from zasync.testing import inline

# -- outside a job ---------------------------------------------------------------


@pytest.mark.parametrize(
    "call",
    [
        local.get_job,
        lambda: local.set_progress(0.5, "half"),
        lambda: local.set_live_annotation("rows", 3),
        lambda: local.get_live_annotation("rows"),
    ],
    ids=["get_job", "set_progress", "set_live_annotation", "get_live_annotation"],
)
def test_outside_a_job_raises_not_in_job(call):
    """Outside a job, the local functions raise NotInJobError saying so."""
    with pytest.raises(local.NotInJobError, match="outside a job"):
        call()


def test_not_in_job_error_is_a_runtime_error():
    """NotInJobError can be caught as RuntimeError."""
    assert issubclass(local.NotInJobError, RuntimeError)


def test_in_job_tells_whether_a_job_runs():
    """in_job() is False outside a job and True inside one."""
    assert local.in_job() is False
    job = zasync.Job(local.in_job)
    assert job() is True
    assert local.in_job() is False


# -- inside a direct call ------------------------------------------------------------


def test_get_job_is_the_running_job():
    """Inside job(), get_job() returns that job."""
    job = zasync.Job(jobfuncs.which_job)
    assert job() is job


def test_get_job_in_nested_jobs_is_the_innermost():
    """A job calling another job: inside, get_job() is the inner one, and
    the outer one again afterwards."""
    inner = zasync.Job(jobfuncs.which_job)
    outer = zasync.Job(inner)
    assert outer() is inner
    assert local.in_job() is False


def test_get_job_in_a_callback_is_the_callback():
    """A callback runs as its own job."""
    job = zasync.Job(jobfuncs.add, 1, 1)
    callback = job.add_callback(jobfuncs.echo)
    job()
    assert callback.result == ((2,), {})
    probe = zasync.Job(jobfuncs.add, 1, 1)
    which = probe.add_callbacks(success=_which_job_of_callback)
    probe()
    assert which.result is which


def _which_job_of_callback(result):
    return local.get_job()


def test_set_progress_in_direct_call():
    """set_progress stores (fraction, message), readable as job.progress."""
    job = zasync.Job(jobfuncs.set_progress, 0.25, "a quarter")
    assert job.progress is None
    assert job() == "reported"
    assert job.progress == (0.25, "a quarter")


def test_set_progress_without_message():
    """The message is optional; numbers are stored as floats."""
    job = zasync.Job(jobfuncs.set_progress, 1)
    job()
    assert job.progress == (1.0, None)
    assert isinstance(job.progress[0], float)


def test_live_annotation_in_direct_call():
    """set_live_annotation/get_live_annotation round trip inside a job, and
    the job shows the value afterwards."""
    job = zasync.Job(jobfuncs.annotate_live, "rows", 1200)
    assert job() == 1200
    assert job.get_live_annotation("rows") == 1200
    assert job.get_live_annotation("missing", "default") == "default"


def test_progress_of_direct_call_is_committed(db, conn):
    """Progress set in a direct call is stored with the transaction."""
    job = conn.root()["job"] = zasync.Job(jobfuncs.set_progress, 0.5, "half")
    conn.transaction_manager.commit()
    job()
    conn.transaction_manager.commit()
    other = jobfuncs.open_connection(db)
    try:
        assert other.root()["job"].progress == (0.5, "half")
    finally:
        other.close()


def test_set_progress_of_queued_job_in_inline_mode(conn):
    """A queued job run inline keeps its progress too."""
    queue = get_queues(conn)[""]
    with inline():
        job = queue.put(zasync.Job(jobfuncs.set_progress, 0.75, "most"))
    assert job.result == "reported"
    assert job.progress == (0.75, "most")


def test_live_annotation_of_queued_job_in_inline_mode(conn):
    """A queued job run inline reads back its live annotation."""
    queue = get_queues(conn)[""]
    with inline():
        job = queue.put(zasync.Job(jobfuncs.annotate_live, "rows", 7))
    assert job.result == 7
    assert job.get_live_annotation("rows") == 7


# -- validation -----------------------------------------------------------------------


@pytest.mark.parametrize("fraction", [-0.1, 1.01, 2, float("nan"), float("inf")])
def test_set_progress_out_of_range(fraction):
    """Progress is a fraction from 0.0 to 1.0."""
    job = zasync.Job(jobfuncs.set_progress, fraction)
    result = job()
    assert isinstance(result, zasync.Failure)
    assert result.check(ValueError) is ValueError
    assert "from 0.0 to 1.0" in result.getErrorMessage()
    assert job.progress is None


@pytest.mark.parametrize("fraction", ["half", None, [0.5]])
def test_set_progress_not_a_number(fraction):
    """Progress must be a number."""
    job = zasync.Job(jobfuncs.set_progress, fraction)
    result = job()
    assert result.check(ValueError) is ValueError
    assert "must be a number" in result.getErrorMessage()


def test_set_progress_validates_before_looking_for_a_job():
    """A bad value is reported as such, even outside a job."""
    with pytest.raises(ValueError, match="must be a number"):
        local.set_progress("lots")
