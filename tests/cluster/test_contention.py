"""Four processes queuing while two workers drain: conflicts are retried,
never failures.

Each queuer puts its jobs one transaction at a time and retries the
ConflictErrors it meets itself; the workers retry theirs without counting
an attempt. Every job succeeds once, none fails (with a ConflictError or
anything else), and the workers' stats lines count the conflicts retried.
"""

from cluster_support import report, stop_workers

QUEUERS = 4
PER_QUEUER = 150
TOTAL = QUEUERS * PER_QUEUER


def test_queuers_and_workers_in_contention(zeo_cluster, tmp_path):
    cluster = zeo_cluster
    cluster.setup_markers()
    workers = [cluster.worker("a"), cluster.worker("b")]
    go = str(tmp_path / "go")
    for index in range(QUEUERS):
        cluster.start_queuer(f"queuer{index}", PER_QUEUER, index * 100_000, go)
    open(go, "w").close()  # all four start queuing together
    results = cluster.wait_queuers(120)
    ids = {key: job_id for result in results for key, job_id in result["ids"].items()}
    assert len(ids) == TOTAL

    cluster.wait_drained(TOTAL, 120)
    outcomes = cluster.check_all_succeeded_once(ids)
    conflict_failures = [o for o in outcomes.values() if "ConflictError" in o.result]
    assert not conflict_failures, conflict_failures[:5]
    # The workers drained while the queuers were queuing.
    first_start = min(o.started for o in outcomes.values())
    last_queued = max(o.queued for o in outcomes.values())
    assert first_start < last_queued, (first_start, last_queued)

    stats = stop_workers(workers)
    assert all(stats.values()), f"a worker logged no stats line: {stats}"
    worker_conflicts = {name: s["conflicts"] for name, s in stats.items()}
    queuer_conflicts = [result["conflicts"] for result in results]
    assert sum(s["completed"] for s in stats.values()) == TOTAL, stats
    assert sum(s["failed"] for s in stats.values()) == 0, stats
    assert sum(worker_conflicts.values()) + sum(queuer_conflicts) > 0, (
        "no conflict at all: the processes did not contend"
    )
    report(
        "contention",
        worker_conflicts=worker_conflicts,
        queuer_conflicts=queuer_conflicts,
        queuing_seconds=[round(result["seconds"], 2) for result in results],
        stats=stats,
    )
