"""A job in steps (zasync.steps) whose worker is killed with -9 half way
goes on from its committed cursor, and does every item exactly once.

One ``zasync worker`` process over ZEO runs a job that writes a marker for
each of 600 keys, 50 per chunk; it is killed once some chunks committed,
and restarted with its UUID file, which recovers the job at once."""

import os
import re
import signal
import subprocess
import sys

import cluster_jobs
from cluster_support import check_exactly_once

import zasync
from zasync import steps
from zasync.status import COMPLETED
from zasync.testing import processes

TOTAL = 600
EVERY = 50


def test_a_job_in_steps_killed_half_way_resumes_from_its_cursor(zeo_cluster):
    cluster = zeo_cluster
    cluster.setup_markers()
    worker = cluster.worker("killed")
    keys = list(range(TOTAL))

    def put(root):
        queue = zasync.get_queues(root._p_jar)[""]
        return queue.put(
            zasync.Job(cluster_jobs.mark_in_steps, root["markers"], keys, EVERY, 0.005)
        ).id

    job_id = cluster.transact(put)

    def state_of(root):
        job = _find(root, job_id)
        return None if job is None else (job.status, steps.state(job))

    def some_chunks_done():
        found = cluster.read(state_of)
        return found and found[1] and 2 * EVERY <= found[1]["done"] < TOTAL // 2

    processes.wait_for(some_chunks_done, 60, "some chunks of the job to commit")
    worker.kill()
    assert worker.process.returncode == -signal.SIGKILL
    _, at_kill = cluster.read(state_of)
    done_at_kill = at_kill["done"]
    assert 0 < done_at_kill < TOTAL
    # What the killed run committed is there, and only that.
    assert len(cluster.markers()) == done_at_kill

    worker.start()
    processes.wait_for(
        lambda: cluster.read(state_of)[0] == COMPLETED, 120, "the job to complete"
    )
    status, final = cluster.read(state_of)
    assert final["finished"] and final["done"] == TOTAL, final
    assert final["runs"] == 2 and final["resumed_from"] >= done_at_kill, final
    check_exactly_once(cluster.markers(), keys)
    failed, interruptions = cluster.read(
        lambda root: (_find(root, job_id).failed, _find(root, job_id).interruptions)
    )
    # Its first chunk after the kill set the interruption back to 0.
    assert not failed and interruptions == 0
    assert f"steps 'items' resumed from item {final['resumed_from']}" in worker.log()
    # The operators' command tells of it.
    shown = zasync_command("job", str(job_id), "--zodb-conf", cluster.zodb_conf)
    assert shown.returncode == 0, shown.stderr
    line = (
        f"{TOTAL} of {TOTAL} items done in {final['chunks']} chunks, resumed "
        f"from item {final['resumed_from']} (run 2), finished"
    )
    assert re.search(rf"^  steps +{re.escape(line)}$", shown.stdout, re.M), shown.stdout


def _find(root, job_id):
    return zasync.get_queues(root._p_jar)[""].get(job_id)


def zasync_command(*args):
    return subprocess.run(
        [os.path.join(os.path.dirname(sys.executable), "zasync"), *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
