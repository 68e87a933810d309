"""A job that kills its worker every time fails after a bounded number of
interruptions, and the jobs queued alongside it still complete.

The worker is restarted with its UUID file after each death, so it takes
back its own interrupted job at once; the default retry policy reruns it
``max_interruptions`` times, and at the next interruption the job ends
COMPLETED with a JobInterrupted failure saying how often it was interrupted.
The worker runs one job at a time, so the poison job is the only one
running when it dies: the other jobs are interrupted never.
"""

import signal

import cluster_jobs
from cluster_support import report

import zasync
from zasync.queue import JobInterrupted
from zasync.retry import RetryCommonFourTimes
from zasync.status import COMPLETED
from zasync.testing import processes


def test_poison_job_fails_after_bounded_interruptions(zeo_cluster):
    cluster = zeo_cluster
    cluster.setup_markers()
    allowed = RetryCommonFourTimes.max_interruptions
    before = cluster.put_marks(range(10))
    poison = cluster.put(cluster_jobs.kill_my_worker)
    after = cluster.put_marks(range(10, 20))
    worker = cluster.worker("worker", "--agent-size", "1")

    def poison_done():
        outcome = cluster.jobs([poison])[poison]
        return outcome.status == COMPLETED

    deaths = 0
    for _ in range(allowed + 3):  # bounded: one more death than allowed
        processes.wait_for(
            lambda: not worker.running() or poison_done(),
            30,
            "the poison job to kill the worker or to be failed",
        )
        if poison_done():
            break
        assert worker.process.returncode == -signal.SIGKILL, worker.log()[-3000:]
        deaths += 1
        worker.start()  # same UUID file: takes its interrupted job back at once

    outcome = cluster.jobs([poison])[poison]
    assert deaths == allowed + 1, (deaths, outcome)
    assert outcome.status == COMPLETED and outcome.failed, outcome
    assert outcome.interruptions == allowed + 1, outcome
    assert JobInterrupted.__name__ in outcome.result, outcome.result
    assert f"was interrupted {allowed + 1} times" in outcome.result, outcome.result

    cluster.wait_drained(21, 30)
    assert worker.running()
    outcomes = cluster.check_all_succeeded_once({**before, **after})
    assert all(o.interruptions == 0 for o in outcomes.values())

    def failure(root):
        job = zasync.get_queues(root._p_jar)[""].get(poison)
        return job.result.type, job.result.getErrorMessage()

    failure_type, message = cluster.read(failure)
    assert failure_type is JobInterrupted
    report("poison job", deaths=deaths, message=repr(message))
