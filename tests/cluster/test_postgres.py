"""RelStorage on PostgreSQL: an instance process queuing and two workers
draining run every job exactly once, and so does a kill -9 of a worker
restarted with its UUID file.

Each test has a PostgreSQL database of its own, created and dropped by the
test; without PostgreSQL the tests are skipped, except under CI (the CI
environment variable set), where they fail.
"""

import pytest
from cluster_support import drain_with_a_kill, report, stop_workers

pytestmark = pytest.mark.postgres

TOTAL = 300


def test_instance_queues_and_two_workers_drain(pg_cluster):
    cluster = pg_cluster
    cluster.setup_markers()
    workers = [cluster.worker("a"), cluster.worker("b")]
    cluster.start_queuer("instance", TOTAL, 0)
    (result,) = cluster.wait_queuers(120)
    ids = result["ids"]
    assert len(ids) == TOTAL
    cluster.wait_drained(TOTAL, 120)
    cluster.check_all_succeeded_once(ids)
    stats = stop_workers(workers)
    assert sum(s["completed"] for s in stats.values()) == TOTAL, stats
    assert all(s["completed"] for s in stats.values()), f"a worker was idle: {stats}"
    report(
        "PostgreSQL, one instance and two workers",
        queuer_conflicts=result["conflicts"],
        queuing_seconds=round(result["seconds"], 2),
        stats=stats,
    )


def test_killed_worker_restarted_with_its_uuid_recovers_its_jobs(pg_cluster):
    figures = drain_with_a_kill(pg_cluster, 1000, restart=True)
    report("PostgreSQL, kill -9 and restart", **figures)
