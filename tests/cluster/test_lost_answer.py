"""A commit whose answer is lost (ZEO disconnects after the server committed)
leaves no job behind.

When a ZEO server stops between committing a transaction and answering it,
the worker's commit raises ClientDisconnected although the transaction is
committed. The job whose transaction it was is done; a job started in the
same commit (a worker thread starts the next job its dispatcher holds for
it in the commit of the previous one) must still run. A resource manager
that raises ClientDisconnected in tpc_finish after the storage finished
reproduces this deterministically in a real worker on a real ZEO server.
"""

import cluster_jobs
from cluster_support import report, stop_workers

import zasync


def test_job_started_in_a_commit_whose_answer_was_lost_still_runs(zeo_cluster):
    cluster = zeo_cluster
    cluster.setup_markers()

    def put(root):
        queue = zasync.get_queues(root._p_jar)[""]
        ids = {}
        for key in range(11):
            func = cluster_jobs.mark_and_lose_the_answer if key == 5 else None
            job = zasync.Job(func or cluster_jobs.mark, root["markers"], key)
            ids[key] = queue.put(job).id
        return ids

    ids = cluster.transact(put)
    # One thread: the dispatcher holds the other jobs for it, and each job's
    # commit starts the next one.
    worker = cluster.worker("worker", "--agent-size", "1")
    try:
        cluster.wait_drained(len(ids), 10)
    finally:
        report("lost answer", unsettled=cluster.describe_unsettled() or "none")
    cluster.check_all_succeeded_once(ids)
    assert "the answer to tpc_finish was lost" in worker.log()
    stop_workers([worker])


def test_jobs_claimed_in_a_round_whose_answer_was_lost_still_run(zeo_cluster):
    """The same for the dispatcher's own round: the jobs it claimed (some
    started, some held for its threads) in a commit that raised
    ClientDisconnected after the server committed it must still run. An
    agent filter joins the resource manager to the first claim's
    transaction."""
    cluster = zeo_cluster
    cluster.setup_markers()
    worker = cluster.worker("worker")

    def install_filter(root):
        queue = zasync.get_queues(root._p_jar)[""]
        record = queue.dispatchers[worker.uuid]
        record.agents["main"].filter = cluster_jobs.lose_the_answer_of_a_claim

    cluster.transact(install_filter)
    ids = cluster.put_marks(range(10))
    try:
        cluster.wait_drained(len(ids), 10)
    finally:
        report("lost answer of a claim", unsettled=cluster.describe_unsettled())
    cluster.check_all_succeeded_once(ids)
    assert "the answer to tpc_finish was lost" in worker.log()
    stop_workers([worker])
