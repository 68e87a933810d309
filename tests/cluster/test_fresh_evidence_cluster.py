"""No healthy worker is declared dead when a peer, or the storage, was away.

A worker paused (SIGSTOP: a long GC, a suspended VM) for longer than the
death interval wakes with an old view of its peers; a ZEO server down for
longer than the death interval stops every worker's heartbeats at once.
Neither is evidence that a peer died: a long job on a worker that was never
paused must complete once, and no worker must declare it dead. (The paused
worker itself is dead meanwhile, as far as its peers can tell: that is the
guarantee working, and it held no job.)
"""

import os
import re
import signal
import time

from cluster_support import report

from zasync.testing import processes

PING = 0.5
DEATH = 2.0
PAUSE = 2 * DEATH
# A ZEO client reconnects within about 2 s of its server's return (ZEO's
# connect poll: 1 s and up to 1 s at random): the death interval must be
# longer than that for peers to be judged on heartbeats they could commit.
OUTAGE_DEATH = 4.0
OUTAGE = OUTAGE_DEATH + 1
JOB_SECONDS = 14.0


def options(death):
    return ("--ping-interval", str(PING), "--death-interval", str(death))


def declared_dead(worker, uuid):
    pattern = re.compile(rf"dispatcher {uuid} \(.*\) missed its heartbeat")
    return pattern.findall(worker.log())


def heartbeat(cluster, uuid):
    import zasync

    def read(root):
        record = zasync.get_queues(root._p_jar)[""].dispatchers.get(uuid)
        if record is None:
            return None
        record.heartbeat._p_activate()
        return record.heartbeat._p_serial

    return cluster.read(read)


def wait_heartbeats(cluster, uuid, count, timeout=10):
    """Wait until dispatcher ``uuid`` has committed ``count`` new heartbeats."""
    seen = [heartbeat(cluster, uuid)]

    def more():
        beat = heartbeat(cluster, uuid)
        if beat is not None and beat != seen[-1]:
            seen.append(beat)
        return len(seen) > count

    processes.wait_for(more, timeout, f"{count} heartbeats of {uuid}", interval=0.05)


def start_long_job(cluster, death=DEATH):
    cluster.setup_markers()
    steady = cluster.worker("steady", *options(death), "--agent-size", "1")
    ids = cluster.put_marks([1], seconds=JOB_SECONDS)
    processes.wait_for(
        lambda: (
            (cluster.claimed_by(steady.uuid) or (False, []))[1] == [(ids[1], "active")]
        ),
        10,
        "the long job to start on the steady worker",
    )
    other = cluster.worker("other", *options(death), "--agent-size", "1")
    wait_heartbeats(cluster, other.uuid, 2)
    return steady, other, ids


def test_a_paused_worker_declares_no_healthy_peer_dead(zeo_cluster):
    cluster = zeo_cluster
    steady, paused, ids = start_long_job(cluster)
    for _ in range(2):
        os.kill(paused.pid, signal.SIGSTOP)
        stopped = time.monotonic()
        try:
            # The pause itself, longer than the death interval.
            processes.wait_for(
                lambda s=stopped: time.monotonic() - s > PAUSE, PAUSE + 5, "the pause"
            )
        finally:
            os.kill(paused.pid, signal.SIGCONT)
        # It wakes, heartbeats and watches again.
        wait_heartbeats(cluster, paused.uuid, 3)
    cluster.wait_drained(1, JOB_SECONDS + 20)
    (outcome,) = cluster.check_all_succeeded_once(ids).values()
    assert (outcome.attempts, outcome.interruptions) == (1, 0), outcome
    assert declared_dead(paused, steady.uuid) == [], paused.log()[-3000:]
    assert paused.running() and steady.running()
    report(
        "paused worker",
        pauses=2,
        pause_s=PAUSE,
        declared_dead_by_the_paused=len(declared_dead(paused, steady.uuid)),
        paused_declared_dead_by_steady=len(declared_dead(steady, paused.uuid)),
    )


def test_a_zeo_outage_longer_than_the_death_interval_kills_no_one(zeo_cluster):
    cluster = zeo_cluster
    steady, other, ids = start_long_job(cluster, OUTAGE_DEATH)
    cluster.zeo.restart(down_for=OUTAGE)
    wait_heartbeats(cluster, steady.uuid, 3, timeout=30)
    wait_heartbeats(cluster, other.uuid, 3, timeout=30)
    cluster.wait_drained(1, JOB_SECONDS + 30)
    (outcome,) = cluster.check_all_succeeded_once(ids).values()
    assert (outcome.attempts, outcome.interruptions) == (1, 0), outcome
    assert declared_dead(other, steady.uuid) == [], other.log()[-3000:]
    assert declared_dead(steady, other.uuid) == [], steady.log()[-3000:]
