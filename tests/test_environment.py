"""Job environments (IJobEnvironment) and the job's transaction."""

import collections

import pytest
import transaction
from BTrees.OOBTree import OOBTree
from zope.interface.verify import verifyObject

import jobfuncs
import zasync
from zasync.failure import Failure
from zasync.interfaces import IJobEnvironment
from zasync.testing import wait_for, wait_for_result


@pytest.fixture(autouse=True)
def _clean():
    jobfuncs.environment.clear()
    del jobfuncs.teardowns[:]


def test_environment_provides_interface():
    assert verifyObject(IJobEnvironment, jobfuncs.Environment("x"))


def test_environment_wraps_the_call_and_resolves_arguments(queue, dispatcher):
    job = zasync.Job(jobfuncs.site_and_args, "@here", 2)
    job.environment = jobfuncs.Environment("site-a")
    queue.put(job)
    transaction.commit()
    assert wait_for_result(job) == ("site-a", "site-a:here", 2)
    assert jobfuncs.teardowns == [(job.id, "token of site-a")]
    assert jobfuncs.environment == {}


def test_callbacks_and_children_inherit_the_environment(queue, dispatcher):
    parent = zasync.serial(
        zasync.Job(jobfuncs.site_and_args, "@child"),
        postprocess=jobfuncs.site_and_args,
    )
    parent.environment = jobfuncs.Environment("site-b")
    callback = parent.add_callback(jobfuncs.site_and_args)
    queue.put(parent)
    transaction.commit()
    result = wait_for_result(parent)
    assert result[0] == "site-b"  # the postprocess job ran in it
    assert result[1].result == ("site-b", "site-b:child")
    assert wait_for_result(callback)[0] == "site-b"


def test_an_own_environment_wins_over_the_inherited_one(queue, dispatcher):
    job = zasync.Job(jobfuncs.add, 1, 2)
    job.environment = jobfuncs.Environment("outer")
    own = zasync.Job(jobfuncs.site_and_args)
    own.environment = jobfuncs.Environment("inner")
    job.add_callback(own)
    queue.put(job)
    transaction.commit()
    wait_for_result(job)
    assert own.result == ("inner", 3)


def test_failing_enter_fails_the_job_without_calling_it(queue, dispatcher):
    job = zasync.Job(jobfuncs.site_and_args)
    job.environment = jobfuncs.Environment("gone", fail_on_enter=True)
    queue.put(job)
    transaction.commit()
    result = wait_for_result(job)
    assert isinstance(result, Failure)
    assert result.check(LookupError)
    assert "environment gone is gone" in str(result)
    assert jobfuncs.teardowns == []  # exit only follows a successful enter


def test_unpicklable_environment_is_refused():
    job = zasync.Job(jobfuncs.add, 1, 2)

    class Local:  # a local class cannot be stored
        pass

    with pytest.raises(zasync.BadJobError, match="environment"):
        job.environment = Local()


def test_job_code_joins_the_jobs_transaction(queue, dispatcher):
    seen = jobfuncs.after_commit
    del seen[:]
    job = queue.put(zasync.Job(jobfuncs.join_transaction))
    transaction.commit()
    assert wait_for_result(job) == "joined"
    # The after-commit hook runs with the job's own commit, successfully.
    wait_for(lambda: seen, 10, lambda: None, lambda: "no after-commit hook ran")
    assert seen == [True]


def test_job_may_commit_its_own_progress(conn, queue, dispatcher):
    root = conn.root()
    root["done"] = OOBTree()
    root["failed"] = OOBTree()
    ok = queue.put(zasync.Job(jobfuncs.commit_half_way, root["done"], False))
    bad = queue.put(zasync.Job(jobfuncs.commit_half_way, root["failed"], True))
    transaction.commit()
    assert wait_for_result(ok) == "done"
    assert dict(root["done"]) == {"first": 1, "second": 2}
    assert isinstance(wait_for_result(bad), Failure)
    # What was committed before the error stays; the rest was aborted.
    assert dict(root["failed"]) == {"first": 1}


def test_environment_is_stored_only_when_set(queue):
    job = zasync.Job(jobfuncs.add, 1, 2)
    assert "_environment" not in job.__getstate__()
    job.environment = jobfuncs.Environment("x")
    assert isinstance(job.__getstate__()["_environment"], jobfuncs.Environment)
    assert collections.Counter(jobfuncs.teardowns) == collections.Counter()
