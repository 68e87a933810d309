"""Kill -9 of a ``zasync worker`` while a batch of jobs sharing one
transaction (group commit) runs: nothing of the batch is visible, every
job of it is interrupted and reruns alone, and every job's writes exist
exactly once, with its result.

The worker has one thread. A holding job keeps it busy while the record
jobs are queued and claimed ahead; once it lets go, the record jobs run in
a batch (their callable was timed short by a warm-up run), and one of them
waits inside the batch until the test has killed the worker.
"""

import os
import signal

import group_jobs
from cluster_support import check_exactly_once, report

import zasync
from zasync.status import ACTIVE, ASSIGNED, COMPLETED
from zasync.testing import processes

KEYS = range(10, 16)
GATED = 12


def test_kill_during_a_batch_commits_nothing_of_it(zeo_cluster, tmp_path):
    cluster = zeo_cluster
    cluster.setup_markers()
    worker = cluster.worker("worker", "--agent-size", "1")
    warm_up = cluster.transact(
        lambda root: (
            zasync.get_queues(root._p_jar)[""]
            .put(zasync.Job(group_jobs.record, root["markers"], 0))
            .id
        )
    )
    cluster.wait_drained(1, 30)

    hold_gate = str(tmp_path / "hold")
    batch_gate = str(tmp_path / "batch")
    holder = cluster.put(group_jobs.hold, hold_gate)
    # The reader is a ZEO client of its own: it may see a commit late, so
    # every read here waits for what it expects.
    processes.wait_for(
        lambda: statuses(cluster, [holder]) == [ACTIVE], 30, "the holder to start"
    )

    def put(root):
        queue = zasync.get_queues(root._p_jar)[""]
        return {
            key: queue.put(
                zasync.Job(
                    group_jobs.record,
                    root["markers"],
                    key,
                    batch_gate if key == GATED else None,
                )
            ).id
            for key in KEYS
        }

    ids = cluster.transact(put)
    processes.wait_for(
        lambda: set(statuses(cluster, ids.values())) == {ASSIGNED},
        30,
        "the worker to claim the record jobs ahead",
    )
    open(hold_gate, "w").close()
    processes.wait_for(
        lambda: os.path.exists(batch_gate + ".entered"), 30, "the gated job"
    )

    def started_together():
        found = dict(zip(ids, statuses(cluster, ids.values()), strict=True))
        active = {key for key, status in found.items() if status == ACTIVE}
        return active if GATED in active and len(active) > 1 else None

    # The gated job and others were started together, by one commit before
    # they ran, and run in one transaction, not committed yet.
    active = processes.wait_for(
        started_together, 30, "the gated job and others started together"
    )
    markers = cluster.markers()
    assert not (active & set(markers)), (active, markers)
    assert os.path.exists(batch_gate + ".entered") and not os.path.exists(batch_gate)
    worker.kill()
    assert worker.process.returncode == -signal.SIGKILL
    open(batch_gate, "w").close()  # the reruns go through

    worker.start()  # same UUID: takes back its interrupted jobs at once
    cluster.wait_drained(len(KEYS) + 2, 60)
    outcomes = cluster.check_all_succeeded_once({**ids, 0: warm_up})
    markers = cluster.markers()
    check_exactly_once(markers, [0, *KEYS])
    for key, job_id in ids.items():
        outcome = outcomes[job_id]
        assert outcome.status == COMPLETED and outcome.result == repr(key)
        if key in active:
            # Interrupted once, then run alone: its one committed run.
            assert outcome.interruptions == 1, (key, outcome)
            assert markers[key] == ((2, False),), (key, markers[key])
        else:
            assert outcome.interruptions == 0, (key, outcome)
            assert len(markers[key]) == 1
    report(
        "group commit, kill -9 mid-batch",
        batch_members_at_kill=len(active),
        markers=len(markers),
    )


def statuses(cluster, job_ids):
    """The statuses of ``job_ids``, in order (None: not seen yet)."""
    job_ids = list(job_ids)
    found = cluster.jobs(job_ids) or {}
    return [
        None if found.get(job_id) is None else found[job_id].status
        for job_id in job_ids
    ]
