"""Group commit: short jobs of one dispatcher thread share a transaction,
each in a savepoint of its own (a real dispatcher on a real FileStorage).

Each test makes a batch for sure: a blocking job keeps the one thread busy
while the jobs are queued and held, then lets go. The first held job (a
"leader") runs alone, since the blocker's transaction is older than the
claim of the held jobs and cannot read them; its commit starts the others
together and the thread runs them in one transaction. The jobs record each
committed run of theirs as (attempt, ran in a batch).
"""

import datetime
import uuid

import persistent
import pytest
import transaction

import groupfuncs
import jobfuncs
import zasync
from zasync.config import MAIN_AGENT, DispatcherConfig
from zasync.exceptions import ConfigurationError
from zasync.retry import RetryWithDelay
from zasync.runner import GroupCommit
from zasync.status import COMPLETED
from zasync.testing import wait_for, wait_for_all_jobs, wait_for_result, wait_for_start

KEY = ("", MAIN_AGENT)


class Other(persistent.Persistent):
    value = ()


def warmed_up(conn, queue, start_dispatcher, **options):
    """A one-thread dispatcher that has timed ``groupfuncs.record`` once,
    and the tree the jobs write to. Its group commit window is wide: on a
    busy machine a run of ``record`` can take more than the default 20 ms,
    which would keep it out of batches (or close one early)."""
    conn.root()["tree"] = tree = groupfuncs.new_tree()
    transaction.commit()
    options.setdefault("group_commit_window", 1.0)
    dispatcher = start_dispatcher(agent_size=1, **options)
    job = queue.put(zasync.Job(groupfuncs.record, tree, "warm-up"))
    transaction.commit()
    assert wait_for_result(job) == "warm-up"
    assert tree["warm-up"] == ((1, False),)  # alone: its callable was new
    return dispatcher, tree


def run_together(conn, queue, dispatcher, jobs, policies=None, before_end=None):
    """Queue a leader and ``jobs`` while the thread is busy, wait until
    they are held, then let the thread go on to run them; returns them.
    ``policies``: {job: its retry policy}; ``before_end()`` is called once
    the thread goes on."""
    policies = policies or {}
    name = f"blocker-{uuid.uuid4()}"
    blocker = queue.put(zasync.Job(jobfuncs.block, name))
    transaction.commit()
    wait_for_start(blocker)
    leader = zasync.Job(groupfuncs.record, conn.root()["tree"], "leader")
    for job in [leader, *jobs]:
        if job in policies:
            queue.put(job, retry_policy=policies[job])
        else:
            queue.put(job)
    transaction.commit()
    wait_for(
        lambda: len(dispatcher.pool._buffers[KEY]) >= len(jobs) + 1,
        10,
        lambda: None,
        lambda: f"held: {list(dispatcher.pool._buffers[KEY])}",
    )
    jobfuncs.events[name].set()
    if before_end is not None:
        before_end()
    wait_for_all_jobs(conn, 30)
    transaction.begin()
    assert leader.result == "leader"
    return jobs


def committed_with(db, oids):
    """The transactions of the storage that wrote every one of ``oids``."""
    return [
        txn
        for txn in db.storage.iterator()
        if set(oids) <= {record.oid for record in txn}
    ]


def test_short_jobs_commit_together(conn, queue, start_dispatcher, db):
    # Room for the leader and the 8, whether the leader joins them or not.
    dispatcher, tree = warmed_up(conn, queue, start_dispatcher, group_commit=16)
    jobs = run_together(
        conn,
        queue,
        dispatcher,
        [zasync.Job(groupfuncs.record, tree, f"k{n}") for n in range(8)],
    )
    assert [job.result for job in jobs] == [f"k{n}" for n in range(8)]
    assert all(tree[f"k{n}"][0][0] == 1 for n in range(8)), list(tree.items())
    # The first may be claimed with the leader, in a round of its own, and
    # then lead the others as the leader did: all the rest ran together.
    batched = [job for job in jobs if tree[job.args[1]] == ((1, True),)]
    assert len(batched) >= len(jobs) - 1, list(tree.items())
    assert batched == jobs[len(jobs) - len(batched) :]
    # One transaction stored the writes and the results of those.
    completing = [
        txn
        for txn in committed_with(db, [tree._p_oid] + [j._p_oid for j in batched])
        if all(
            conn.oldstate(job, txn.tid)["_status"] == COMPLETED.value for job in batched
        )
    ]
    assert len(completing) == 1


def test_group_commit_can_be_turned_off(conn, queue, start_dispatcher):
    dispatcher, tree = warmed_up(conn, queue, start_dispatcher, group_commit=1)
    run_together(
        conn,
        queue,
        dispatcher,
        [zasync.Job(groupfuncs.record, tree, f"k{n}") for n in range(4)],
    )
    assert all(tree[f"k{n}"] == ((1, False),) for n in range(4))


def test_a_job_that_raises_loses_only_its_own_writes(conn, queue, start_dispatcher):
    """Its writes are rolled back, its Failure recorded and its retry
    policy applied (one retries it); the others' writes and results are
    kept, committed together."""
    dispatcher, tree = warmed_up(conn, queue, start_dispatcher)
    jobs = [zasync.Job(groupfuncs.record, tree, f"k{n}") for n in range(5)]
    failing = zasync.Job(groupfuncs.record, tree, "bad", "fail")
    retried = zasync.Job(groupfuncs.record, tree, "retried", "fail")
    jobs[2:2] = [failing]
    jobs[4:4] = [retried]
    policy = RetryWithDelay(max_attempts=2, delay=datetime.timedelta(0), jitter=0)
    run_together(conn, queue, dispatcher, jobs, policies={retried: policy})
    for n in range(5):
        assert tree[f"k{n}"] == ((1, True),)
        assert jobs[[j.args[1] for j in jobs].index(f"k{n}")].result == f"k{n}"
    assert "bad" not in tree  # rolled back
    assert failing.status == COMPLETED and failing.failed
    assert failing.result.check(ValueError) and failing.attempts == 1
    # Its policy retried it once; both attempts raised, none left a write.
    assert "retried" not in tree
    assert retried.failed and retried.attempts == 2
    assert dispatcher.stats["failed"] == 2 and dispatcher.stats["retried"] == 1


def test_a_conflict_at_commit_reruns_every_job_once(conn, queue, start_dispatcher):
    """A job of the batch writes an object that another connection changes
    before the batch commits: the batch aborts whole and every one of its
    jobs runs again alone, each job's writes committed exactly once."""
    conn.root()["other"] = other = Other()
    dispatcher, tree = warmed_up(conn, queue, start_dispatcher)
    entered, go = groupfuncs.make_events("conflicting")
    jobs = [zasync.Job(groupfuncs.record, tree, f"k{n}") for n in range(4)]
    jobs.insert(
        2, zasync.Job(groupfuncs.record, tree, "conflicting", "conflict", other)
    )

    def change_other():
        assert entered.wait(10)
        # Another writer changes the object the batch wrote, and commits
        # before the batch does.
        other.value = ("elsewhere",)
        transaction.commit()
        go.set()

    run_together(conn, queue, dispatcher, jobs, before_end=change_other)
    assert dispatcher.stats["conflicts"] >= 1, dispatcher.stats
    for job in jobs:
        key = job.args[1]
        assert job.result == key
        # Once in the batch that aborted (not committed), once alone.
        assert tree[key] == ((1, False),), (key, tree[key])
    assert other.value == ("elsewhere", "conflicting")


def test_a_job_that_commits_runs_alone(conn, queue, start_dispatcher):
    """A job that commits the transaction itself cannot share it: the
    batch aborts before anything of it is stored, its jobs run again
    alone, and its callable runs alone from then on."""
    dispatcher, tree = warmed_up(conn, queue, start_dispatcher)
    jobs = [zasync.Job(groupfuncs.record, tree, f"k{n}") for n in range(4)]
    jobs.insert(1, zasync.Job(groupfuncs.record, tree, "committer", "commit"))
    run_together(conn, queue, dispatcher, jobs)
    for job in jobs:
        key = job.args[1]
        assert job.result == key and not job.failed
        assert tree[key] == ((1, False),), (key, tree[key])
    assert dispatcher.pool.group.alone == {"groupfuncs.record"}


def test_a_job_that_adds_a_hook_runs_alone(conn, queue, start_dispatcher):
    dispatcher, tree = warmed_up(conn, queue, start_dispatcher)
    jobs = [zasync.Job(groupfuncs.record, tree, f"k{n}") for n in range(3)]
    jobs.append(zasync.Job(groupfuncs.record, tree, "hooked", "hook"))
    run_together(conn, queue, dispatcher, jobs)
    for job in jobs:
        key = job.args[1]
        assert job.result == key
        assert tree[key] == ((1, False),), (key, tree[key])
    assert dispatcher.pool.group.alone == {"groupfuncs.record"}


def test_which_jobs_may_join_a_batch(conn, queue):
    """Only plain short jobs, never interrupted, join a batch; the first
    run of a callable is alone (it is timed then)."""
    group = GroupCommit(size=8, window=0.02)
    job = zasync.Job(jobfuncs.add, 1, 2)
    assert not group.joinable(job)  # never timed
    group.timed(job, 0.001)
    assert group.joinable(job)
    assert not GroupCommit(size=1, window=0.02, seconds=group.seconds).joinable(job)
    assert not GroupCommit(size=8, window=0.0, seconds=group.seconds).joinable(job)
    interrupted = zasync.Job(jobfuncs.add, 1, 2)
    interrupted.interruptions = 1
    assert not group.joinable(interrupted)
    with_environment = zasync.Job(jobfuncs.add, 1, 2)
    with_environment.environment = jobfuncs.Environment("site")
    assert not group.joinable(with_environment)
    with_callback = zasync.Job(jobfuncs.add, 1, 2)
    with_callback.add_callback(jobfuncs.callback_value)
    assert not group.joinable(with_callback)
    queue.quotas.create("q", size=1)
    with_quota = queue.put(zasync.Job(jobfuncs.add, 1, 2), quota_names=("q",))
    assert not group.joinable(with_quota)
    transaction.abort()
    composite = zasync.serial(zasync.Job(jobfuncs.add, 1, 2))
    group.timed(composite, 0.001)
    assert not group.joinable(composite)
    assert not group.joinable(composite.children[0])  # a child
    group.timed(job, 1.0)  # now long on average
    assert not group.joinable(job)
    group.alone.add("jobfuncs.add")
    group.timed(job, 0.0)
    assert not group.joinable(job)


def test_the_group_commit_options_are_checked():
    assert DispatcherConfig().group_commit == 8
    assert DispatcherConfig().group_commit_window == 0.02
    for bad in (0, -1, 1.5, True, "8"):
        with pytest.raises(ConfigurationError, match="group_commit must be"):
            DispatcherConfig(group_commit=bad)
    for bad in (-0.1, float("nan"), "0.02"):
        with pytest.raises(ConfigurationError, match="group_commit_window must"):
            DispatcherConfig(group_commit_window=bad)
    assert DispatcherConfig(group_commit=1, group_commit_window=0).group_commit == 1
