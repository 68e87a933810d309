"""An idle worker picks up a job queued by another process at once, woken
by the storage (ZEO invalidations, PostgreSQL NOTIFY), not by its poll.

The worker polls every 5 s and heartbeats every 10 s, so nothing but the
wake-up signal can make it start each of ten jobs, queued one at a time
while it is idle, within 2 s of its queuing. The latency itself is measured
by the benchmarks, not asserted here.
"""

import statistics

import pytest
from cluster_support import report, stop_workers

from zasync.status import ACTIVE, ASSIGNED, COMPLETED
from zasync.testing import processes

JOBS = 10
WITHIN = 2.0  # seconds; well under the 5 s poll interval


@pytest.mark.parametrize(
    "cluster_fixture",
    ["zeo_cluster", pytest.param("pg_cluster", marks=pytest.mark.postgres)],
    ids=["zeo", "postgresql"],
)
def test_idle_worker_picks_up_a_job_of_another_process(cluster_fixture, request):
    cluster = request.getfixturevalue(cluster_fixture)
    cluster.setup_markers()
    worker = cluster.worker(
        "idle",
        "--poll-interval",
        "5",
        "--ping-interval",
        "10",
        "--death-interval",
        "60",
    )
    pickups = []
    for key in range(JOBS):
        # Idle: everything before is completed and indexed by the worker.
        cluster.wait_drained(key, 10)
        job_id = cluster.put_marks([key])[key]

        def started(job_id=job_id):
            outcome = (cluster.jobs([job_id]) or {}).get(job_id)
            if outcome and outcome.status in (ASSIGNED, ACTIVE, COMPLETED):
                return outcome.started and outcome
            return None

        outcome = processes.wait_for(started, 10, f"job {key} to start")
        pickups.append((outcome.started - outcome.queued).total_seconds())
    stop_workers([worker])
    late = [round(seconds, 3) for seconds in pickups if seconds >= WITHIN]
    assert not late, f"picked up by the poll, not the wake-up: {pickups}"
    report(
        f"pickup ({cluster.kind})",
        median_s=round(statistics.median(pickups), 4),
        max_s=round(max(pickups), 4),
    )
