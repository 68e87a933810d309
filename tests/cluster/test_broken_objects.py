"""One bad object must not stall the cluster (issue 14), with real worker
processes on ZEO: a queued job of a Job subclass the workers cannot import,
and a dead worker's job whose retry policy class they cannot import, are
set aside (once, with the reason) and the 50 healthy jobs queued after
them all run, once, on two workers that stay up.

The test process defines the classes in a module of its own directory;
the workers' PYTHONPATH does not have it, so they load ZODB's Broken
stand-ins, as after a deploy that removed the classes."""

import datetime

import cluster_jobs

import zasync
from vanishing import JOB_SUBCLASS, RETRY_POLICY, Vanishing
from zasync import clock
from zasync.registry import Agent, DispatcherRecord

HEALTHY = 50


def _aside_lines(workers, job_id):
    return [
        sum(
            1
            for line in worker.log().splitlines()
            if "set aside" in line and str(job_id) in line
        )
        for worker in workers
    ]


def test_broken_job_and_policy_are_set_aside_and_the_rest_runs(
    zeo_cluster, tmp_path, monkeypatch
):
    cluster = zeo_cluster
    cluster.setup_markers()
    job_module = Vanishing(tmp_path, monkeypatch, JOB_SUBCLASS).load()
    policy_module = Vanishing(tmp_path, monkeypatch, RETRY_POLICY).load()

    def put_bad(root):
        queue = zasync.get_queues(root._p_jar)[""]
        markers = root["markers"]
        bad_policy = queue.put(
            zasync.Job(cluster_jobs.mark, markers, -2),
            retry_policy=policy_module.CustomPolicy(),
        )
        # Running on a worker that died (a day ago): the live ones recover it.
        # Found dead by the storage's time half a second after a live
        # worker began watching it (see DispatcherRecord.looks_dead).
        peer = queue.dispatchers["dead-peer"] = DispatcherRecord(
            "dead-peer", clock.utcnow() - datetime.timedelta(days=1), 0.1, 0.5
        )
        agent = peer.agents["main"] = Agent("main", size=1)
        assert queue.claim(agent, "dead-peer", 1, clock.utcnow(), start=1) == [
            bad_policy
        ]
        # First in run order: the old loops died claiming it, every round.
        bad_class = queue.put(
            job_module.CustomJob(cluster_jobs.mark, markers, -1), priority=5
        )
        return bad_class.id, bad_policy.id

    bad_class_id, bad_policy_id = cluster.transact(put_bad)
    healthy = cluster.put_marks(range(HEALTHY))
    workers = [cluster.worker("w1"), cluster.worker("w2")]
    cluster.wait_drained(HEALTHY, 30)
    assert all(worker.running() for worker in workers), cluster.logs_tail()
    cluster.check_all_succeeded_once(healthy)

    def aside(root):
        queue = zasync.get_queues(root._p_jar)[""]
        return {job_id: reason for job_id, (_, reason) in queue.set_aside_jobs.items()}

    reasons = cluster.read(aside)
    assert sorted(reasons) == sorted([bad_class_id, bad_policy_id]), reasons
    assert (
        f"{job_module.__name__}.CustomJob cannot be imported" in reasons[bad_class_id]
    )
    assert "retry policy" in reasons[bad_policy_id]
    for job_id in (bad_class_id, bad_policy_id):
        lines = _aside_lines(workers, job_id)
        # Logged by the worker that set it aside; at most once per process.
        assert sum(lines) >= 1 and max(lines) == 1, (job_id, lines)
