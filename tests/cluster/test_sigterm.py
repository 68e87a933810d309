"""SIGTERM stops a worker without losing or repeating anything.

A worker running jobs that take 0.2 s gets SIGTERM: it exits 0 after its
grace period, logs its counters, and deregisters its dispatcher; each of its
jobs is then either completed (its marker written once) or back in the queue
(no marker): none is left ACTIVE or ASSIGNED. A clean stop is no
interruption. A second worker then drains the rest: every job completed,
every marker written exactly once.
"""

import collections

import pytest
from cluster_support import check_exactly_once, report, stop_workers

from zasync.status import COMPLETED, PENDING
from zasync.testing import processes

TOTAL = 60


@pytest.mark.parametrize(
    "grace", [0.05, 10.0], ids=["running-jobs-put-back", "running-jobs-finish"]
)
def test_sigterm_during_a_run_loses_nothing(zeo_cluster, grace):
    cluster = zeo_cluster
    cluster.setup_markers()
    first = cluster.worker("first", "--grace", str(grace))
    ids = cluster.put_marks(range(TOTAL), seconds=0.2)
    processes.wait_for(lambda: first.jobs_started() >= 6, 30, "six jobs started")
    uuid = first.uuid

    assert first.terminate(30) == 0, first.log()[-3000:]
    assert first.stats() is not None, first.log()[-3000:]
    registered, held = cluster.claimed_by(uuid)
    assert not registered and not held, (registered, held)
    outcomes = cluster.jobs(ids.values())
    statuses = collections.Counter(o.status.value for o in outcomes.values())
    assert set(statuses) <= {COMPLETED.value, PENDING.value}, statuses
    assert statuses[PENDING.value], f"SIGTERM came after the run: {statuses}"
    markers = cluster.markers()
    for key, job_id in ids.items():
        outcome = outcomes[job_id]
        if outcome.status == COMPLETED:
            assert not outcome.failed, outcome
            assert len(markers.get(key, ())) == 1, (key, markers.get(key))
        else:
            assert key not in markers, (key, outcome, markers[key])
    put_back = "unfinished jobs were put back in the queue" in first.log()
    assert put_back == (grace < 0.2), first.log()[-2000:]
    completed_by_first = statuses[COMPLETED.value]

    second = cluster.worker("second")
    cluster.wait_drained(TOTAL, 60)
    outcomes = cluster.check_all_succeeded_once(ids)
    check_exactly_once(cluster.markers(), ids)
    assert all(o.interruptions == 0 for o in outcomes.values())
    stop_workers([second])
    report(
        f"SIGTERM, grace {grace}s",
        completed_by_first=completed_by_first,
        stats_of_first=first.stats(),
        put_back=put_back,
        second_started=second.jobs_started(),
    )
