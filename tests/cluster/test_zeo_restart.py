"""A ZEO server restarted while two workers drain jobs loses nothing.

The workers lose their connection mid-run, wait for the server, reconnect
and go on: every job completes successfully, every marker is written
exactly once, and both workers are still running afterwards.
A stop can fall between the server committing a worker's transaction and
answering it: test_lost_answer.py reproduces that case deterministically.
"""

from cluster_support import report, stop_workers

from zasync.testing import processes

TOTAL = 1000


def test_zeo_server_restart_mid_run(zeo_cluster):
    cluster = zeo_cluster
    cluster.setup_markers()
    workers = [cluster.worker("a"), cluster.worker("b")]
    ids = cluster.put_marks(range(TOTAL))
    cluster.wait_completed(TOTAL // 10, 60)
    before = cluster.completed()
    cluster.zeo.restart(down_for=1.0)
    # The outage really was mid-run: work was left when the server came back.
    after = processes.wait_for(
        lambda: cluster.counts(), 30, "the test's own client to reconnect"
    )
    assert after["completed"] < TOTAL, (before, after)

    cluster.wait_drained(TOTAL, 60)
    cluster.check_all_succeeded_once(ids)
    for worker in workers:
        assert worker.running(), f"{worker.name} died:\n{worker.log()[-3000:]}"
    stats = stop_workers(workers)
    # A commit whose answer was lost with the connection is not counted.
    assert sum(s["completed"] for s in stats.values()) <= TOTAL, stats
    report(
        "ZEO restart",
        completed_before=before,
        completed_after=after["completed"],
        stats=stats,
    )
