"""A heartbeat that a conflict kept from being stored is stored at the next
round, not one ping interval later.

Under contention the round that heartbeats can conflict; if the dispatcher
then waits a whole ping interval before heartbeating again, its stored
heartbeats drift apart by whole intervals and its peers may declare a live
worker dead (with --death-interval 3 and --ping-interval 0.5 a survivor was
seen recovering a killed worker's jobs 2 s after the kill). An agent filter
raises ConflictError once in a heartbeat round; the gaps between the
heartbeats the worker stores must stay well under two ping intervals.
"""

import cluster_jobs
from cluster_support import report

import zasync
from zasync import clock
from zasync.testing import processes

PING = 1.0


def test_heartbeat_lost_to_a_conflict_is_retried_at_once(zeo_cluster):
    cluster = zeo_cluster
    cluster.setup_markers()
    worker = cluster.worker(
        "worker",
        "--ping-interval",
        str(PING),
        "--death-interval",
        "30",
        "--poll-interval",
        "5",
    )

    def install_filter(root):
        queue = zasync.get_queues(root._p_jar)[""]
        agent = queue.dispatchers[worker.uuid].agents["main"]
        agent.filter = cluster_jobs.conflict_once_in_a_heartbeat_round

    cluster.transact(install_filter)
    cluster.put_marks([0])  # never accepted: the filter is asked every round

    def heartbeat(root):
        record = zasync.get_queues(root._p_jar)[""].dispatchers[worker.uuid]
        return record.heartbeat.micros

    seen = []

    def three_heartbeats_after_the_conflict():
        micros = cluster.read(heartbeat)
        if micros is not None and (not seen or seen[-1] != micros):
            seen.append(micros)
        if cluster_jobs.INJECTED not in worker.log():
            del seen[:-1]  # count from the last heartbeat before the conflict
            return False
        return len(seen) >= 4

    processes.wait_for(
        three_heartbeats_after_the_conflict,
        PING * 10,
        "three heartbeats after the injected conflict",
        interval=0.02,
    )
    gaps = [
        (clock.from_micros(b) - clock.from_micros(a)).total_seconds()
        for a, b in zip(seen, seen[1:], strict=False)
    ]
    report("heartbeat gaps around a conflict", gaps=[round(g, 3) for g in gaps])
    assert max(gaps) < 1.5 * PING, (
        f"a heartbeat lost to a conflict was stored {max(gaps):.2f}s after the "
        f"previous one (ping interval {PING}s): {gaps}"
    )
