"""zasync.steps: a long job in chunks that commit their work and cursor
together, retry only the chunk that conflicted, and go on from the cursor.

These run jobs with a real dispatcher on a FileStorage; a worker killed
with -9 half way is in tests/cluster/test_steps_crash.py."""

import pytest
import transaction
from zope.interface.verify import verifyObject

import stepfuncs
import zasync
from zasync import steps
from zasync.interfaces import ISteps
from zasync.runner import GroupCommit
from zasync.testing import wait_for_result

KEYS = [f"doc-{i:03}" for i in range(25)]


@pytest.fixture(autouse=True)
def clean():
    stepfuncs.calls.clear()
    stepfuncs.clock = None
    yield
    stepfuncs.calls.clear()
    stepfuncs.clock = None


@pytest.fixture
def tree(conn):
    conn.root()["tree"] = stepfuncs.counters(KEYS)
    transaction.commit()
    return conn.root()["tree"]


def chunks_of_calls():
    """The keys done, grouped by the transaction they were done in."""
    groups = []
    last = None
    for key, txn in stepfuncs.calls:
        if txn is not last:
            groups.append([])
            last = txn
        groups[-1].append(key)
    return groups


def counts(tree):
    transaction.begin()
    return {key: tree[key].n for key in tree}


def test_the_module_provides_its_interface():
    assert verifyObject(ISteps, steps)


def test_chunks_commit_every_n_items(queue, dispatcher, tree):
    job = queue.put(zasync.Job(stepfuncs.count_all, tree, KEYS, 10))
    transaction.commit()
    final = wait_for_result(job)
    assert [len(c) for c in chunks_of_calls()] == [10, 10, 5]
    assert counts(tree) == dict.fromkeys(KEYS, 1)
    assert (
        final
        == steps.state(job)
        == {
            "cursor": 25,
            "done": 25,
            "total": 25,
            "chunks": 3,
            "runs": 1,
            "resumed_from": None,
            "finished": True,
        }
    )
    # Each chunk's commit set the job's progress.
    assert job.progress == (1.0, "25 of 25 items done in 3 chunks, finished")
    assert not job.failed


def test_chunks_commit_after_seconds_by_the_injected_clock(queue, dispatcher, tree):
    stepfuncs.clock = stepfuncs.Clock()
    job = queue.put(zasync.Job(stepfuncs.count_all, tree, KEYS[:10], 100, 3))
    transaction.commit()
    wait_for_result(job)
    # Each item takes one second: a chunk ends with the item during which
    # three seconds passed.
    assert [len(c) for c in chunks_of_calls()] == [3, 3, 3, 1]
    assert steps.state(job)["chunks"] == 4


def test_the_work_of_each_chunk_is_committed_with_its_cursor(queue, dispatcher, tree):
    job = queue.put(zasync.Job(stepfuncs.count_all, tree, KEYS, 10))
    transaction.commit()
    storage = tree._p_jar.db().storage
    queued = storage.lastTransaction()
    wait_for_result(job)
    # Read back from the storage's history: every transaction that wrote
    # counters wrote the job too (its cursor).
    chunk_oids = {tree[key]._p_oid: key for key in KEYS}
    seen = []
    for txn in storage.iterator(queued):
        if txn.tid == queued:
            continue
        oids = {record.oid for record in txn}
        done = sorted(chunk_oids[oid] for oid in oids if oid in chunk_oids)
        if done:
            assert job._p_oid in oids, done
            seen.append(len(done))
    assert seen == [10, 10, 5]


def test_a_conflict_retries_only_its_chunk(queue, dispatcher, tree, conn):
    conn.root()["shared"] = shared = stepfuncs.Shared()
    transaction.commit()
    job = queue.put(
        zasync.Job(
            stepfuncs.count_all, tree, KEYS, 10, conflict_at=KEYS[15], shared=shared
        )
    )
    transaction.commit()
    final = wait_for_result(job)
    groups = chunks_of_calls()
    # The second chunk was done twice (its first commit conflicted), the
    # others once; every counter is committed once.
    assert [len(c) for c in groups] == [10, 10, 10, 5]
    assert groups[1] == groups[2] == KEYS[10:20]
    assert counts(tree) == dict.fromkeys(KEYS, 1)
    assert final["chunks"] == 3 and final["runs"] == 1
    assert job.attempts == 1 and not job.failed


def test_items_fetched_after_the_cursor(queue, dispatcher, tree):
    job = queue.put(zasync.Job(stepfuncs.count_fetched, tree, 10, total=len(KEYS)))
    transaction.commit()
    final = wait_for_result(job)
    assert [len(c) for c in chunks_of_calls()] == [10, 10, 5]
    assert counts(tree) == dict.fromkeys(KEYS, 1)
    assert final["cursor"] == KEYS[-1]
    assert final["done"] == 25 and final["finished"]


def test_a_run_goes_on_from_the_stored_cursor(queue, dispatcher, tree):
    """A job whose state says 10 items are done (as after a worker died
    there) does the other 15 only."""
    job = queue.put(zasync.Job(stepfuncs.count_all, tree, KEYS, 10))
    # What an earlier run left: its attempt was interrupted after its first
    # chunk committed (the state is written as record_steps would).
    job.steps = {
        "items": {**steps._fresh(25), "cursor": 10, "done": 10, "chunks": 1, "runs": 1}
    }
    job.interruptions = 3
    for key in KEYS[:10]:
        tree[key].n = 1
    transaction.commit()
    final = wait_for_result(job)
    # Work committed since: the interruptions are forgiven.
    assert job.interruptions == 0
    assert [len(c) for c in chunks_of_calls()] == [10, 5]
    assert counts(tree) == dict.fromkeys(KEYS, 1)
    assert final["resumed_from"] == 10 and final["runs"] == 2
    assert steps.describe(final) == (
        "25 of 25 items done in 3 chunks, resumed from item 10 (run 2), finished"
    )


def test_called_directly_a_job_does_all_in_the_callers_transaction(conn, tree):
    """No dispatcher: no commits of its own (job(), inline mode)."""
    job = zasync.Job(stepfuncs.count_all, tree, KEYS, 10)
    conn.root()["job"] = job
    final = job()
    assert len({id(txn) for _, txn in stepfuncs.calls}) == 1
    assert final["chunks"] == 3 and final["finished"]
    transaction.abort()  # nothing was committed
    assert counts(tree) == dict.fromkeys(KEYS, 0)


def test_named_runs_in_one_job(queue, dispatcher, tree):
    job = queue.put(zasync.Job(stepfuncs.two_runs, tree, KEYS[:6]))
    transaction.commit()
    assert wait_for_result(job) == (6, 6)
    assert steps.state(job, "first")["chunks"] == 3
    assert steps.state(job, "second")["chunks"] == 2
    assert counts(tree) == {**dict.fromkeys(KEYS[:6], 2), **dict.fromkeys(KEYS[6:], 0)}


def test_a_job_in_steps_never_joins_a_batch():
    group = GroupCommit(size=10, window=1.0)
    job = zasync.Job(stepfuncs.count_all, None, KEYS, 10)
    group.timed(job, 0.001)
    assert group.joinable(job)
    job.steps = {"items": steps._fresh(25)}
    assert not group.joinable(job)


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"every": 0}, ValueError, "every must be a whole number"),
        ({"seconds": -1}, ValueError, "seconds must be a number > 0"),
        ({"tries": 0}, ValueError, "tries must be a whole number"),
        ({"key": str}, TypeError, "key and total are for items given by a function"),
    ],
)
def test_bad_arguments_are_refused_with_what_to_fix(kwargs, error, message):
    job = zasync.Job(steps.run, KEYS, print, **kwargs)
    result = job()
    assert result.check(error), result
    assert message in str(result.value)


def test_items_that_are_no_sequence_are_refused():
    job = zasync.Job(steps.run, 42, print)
    result = job()
    assert result.check(TypeError)
    assert "items must be a sequence" in str(result.value)


def test_outside_a_job_run_says_so():
    with pytest.raises(zasync.exceptions.NotInJobError):
        steps.run(KEYS, print)
