"""Failing the jobs that run past their time limit (``timeout``).

A dispatcher's loop calls :func:`enforce` before each round. For each
claimed job whose attempt runs past ``started + time_limit``:

1. its runner dooms the attempt's transactions (nothing it wrote may
   commit, whatever its code does later) and asks it to stop
   (``zasync.local.check_cancelled`` raises JobTimedOut in its thread);
2. the job is failed with a JobTimedOut Failure, through the runner's
   decision path (its retry policy's ``job_error`` is asked, as for any
   error of the job), in a transaction of the loop's own;
3. its thread's slot is freed (WorkerPool.abandon): the job is reconciled
   by the round, and another job may run while the old thread stays in
   the job's code until it returns (Python cannot stop a thread), then
   ends without recording anything.

The job thread's commit writes the job, so it conflicts with the failure
committed in step 2 when it comes later: whichever commits first is the
job's one outcome.
"""

import logging

from zasync.status import ACTIVE, CALLBACKS

log = logging.getLogger("zasync.dispatcher")


class _NothingToDo(Exception):
    """The job is not running here any more: nothing to fail."""


def enforce(dispatcher, now):
    """Fail the jobs of ``dispatcher`` that run past their deadline at
    ``now``; returns how many were failed."""
    failed = 0
    for oid, runner in dispatcher.pool.overdue(now):
        if time_out(dispatcher, oid, runner, now):
            failed += 1
    return failed


def time_out(dispatcher, oid, runner, now):
    """Stop and fail the job ``oid`` run by ``runner`` (see the module)."""
    outcome = {}
    stopped = []

    def work(_now):
        job = dispatcher._jobs_connection().get(oid)
        if job.status != ACTIVE or job.assignee is None:
            raise _NothingToDo
        if job.assignee[0] != dispatcher.uuid or job.started is None:
            raise _NothingToDo
        limit = job.time_limit
        elapsed = max((now - job.started).total_seconds(), 0.0)
        failure = job.run_time_failure(limit, elapsed)
        # Doomed first: from now on nothing of the attempt commits. Once
        # only: a retry of this transaction fails the job even if its code
        # returned meanwhile (it recorded nothing).
        if not stopped:
            if not runner.stop_attempt(oid, job.id, failure.getErrorMessage()):
                raise _NothingToDo
            stopped.append(True)
        outcome.clear()
        record = runner._decision(failure, "job_error", True, elapsed, outcome)
        if record(job) is False:
            raise _NothingToDo
        if job.status == CALLBACKS:
            # Its thread will not run them: they are queued as jobs, as
            # for a job recovered after its worker stopped.
            job.queue.recover_job(job, now, interrupted=False)

    try:
        dispatcher._retry_transaction(work)
    except _NothingToDo:
        dispatcher.pool.unwatch(oid)
        return False
    runner._report_decision(outcome)
    dispatcher.count("timed_out")
    if not dispatcher.pool.abandon(oid):
        log.info("job %r timed out; its thread's slot is freed when it returns", oid)
    return True
