"""Changing jobs: retry and cancel, in the caller's transaction, and
in_transaction for callers without one."""

import dataclasses
import datetime
import logging

from zasync import clock, local
from zasync.admin.reports import (
    RETRY_OF,
    _assignee,
    _set_aside_reason,
    get_job,
    read_queues,
    select_queues,
)
from zasync.admin.text import queue_label
from zasync.config import DEFAULT_QUEUE
from zasync.exceptions import AdminError, JobCancelled
from zasync.failure import failure_from
from zasync.job import CallableNotFound, Job
from zasync.status import ACTIVE, ASSIGNED, CALLBACKS, COMPLETED, PENDING, WAITING
from zasync.transact import TRANSIENT_ERRORS, in_own_transaction

log = logging.getLogger("zasync.admin")

# How many conflicts a write may meet before giving up.
MAX_CONFLICTS = 50

# -- retry and cancel -------------------------------------------------------


@dataclasses.dataclass
class RetryOutcome:
    """What :func:`retry_job` did: queued ``job`` as a new job retrying the
    failed job ``retried``, or (``made_due``) made the pending job ``job``
    due now instead of at ``was_due``."""

    job: Job
    retried: Job
    made_due: bool = False
    was_due: datetime.datetime | None = None
    #: Why the job had been set aside, if it was: then it was put back in
    #: the run order (``job`` is ``retried``).
    set_aside_reason: str | None = None


def _describe_claim(job):
    assignee = _assignee(job)
    if assignee is None:
        return ""
    where = assignee["dispatcher"]
    if assignee["host"] is not None:
        where = f"{where} on {assignee['host']}:{assignee['pid']}"
    return f" (claimed by dispatcher {where})"


def _check_in_run_order(job, doing):
    """AdminError unless a pending job is in its queue's run order."""
    if job.pending_key is None:
        raise AdminError(
            f"job {job.id} ({job.callable_name}) is being put back in the queue "
            f"by its dispatcher; try again in a moment"
        )


def _check_loads(job, doing):
    """AdminError for a job whose class cannot be imported (not set aside
    yet: a dispatcher sets it aside when it meets it)."""
    problem = getattr(job, "broken", None)
    if problem is not None:
        raise AdminError(
            f"job {job.id} ({job.callable_name}, {job.status}) cannot be "
            f"{doing}: {problem}. A dispatcher sets such a job aside when it "
            f"meets it; then 'zasync retry {job.id}' puts it back once the "
            f"code is back, and 'zasync discard {job.id}' removes it"
        )


def _put_back(job, reason, doing, now):
    """Put the set-aside ``job`` back in the run order; AdminError saying
    why not (it stays set aside then)."""
    try:
        return job.queue.put_back_set_aside(job.id, now)
    except ValueError as exc:
        raise AdminError(
            f"{exc}, so it cannot be {doing} (it was set aside because: "
            f"{reason}). Restore what is missing and try again, or remove it "
            f"with 'zasync discard {job.id}'"
        ) from None


def _copy_job(job, environment):
    """A new job making the same call as ``job``, in ``environment``, with
    copies of its callbacks (which share the copy's environment unless they
    have their own, as the originals did)."""
    try:
        func = job.resolve_callable()
    except CallableNotFound as exc:
        raise AdminError(str(exc)) from None
    copy = type(job)(func, *job.args, **dict(job.kwargs))
    copy.retry_policy = job.explicit_retry_policy
    copy.quota_names = tuple(job.quota_names)
    copy.internal = job.internal
    if environment is not None:
        copy.environment = environment
    for callback in job.callbacks:
        copy.add_callback(_copy_job(callback, callback._environment))
    return copy


def retry_job(queues, job_id, now=None):
    """Run a job again: a failed job, or a pending job that waits.

    For a completed job that failed, a new job with the same call
    (callable, arguments, environment, quota names, priority, ``begin_by``,
    unique key, retry policy, and copies of its callbacks) is queued in
    the same queue; the failed job is left as it was, and the new one
    carries its id in the annotation ``zasync.retry_of``. For a pending job
    whose ``begin_after`` is in the future (a retry delay, or scheduled),
    ``begin_after`` becomes now. A set-aside job is put back in the run
    order (once its class and retry policy load again and it can be
    stored; see IQueue.put_back_set_aside). Anything else raises
    AdminError saying why. Works in the current transaction; returns a
    RetryOutcome.
    """
    now = now or clock.utcnow()
    job = get_job(queues, job_id)
    queue = job.queue
    reason = _set_aside_reason(job)
    if reason is not None:
        job = _put_back(job, reason, "put back", now)
        return RetryOutcome(job=job, retried=job, set_aside_reason=reason)
    _check_loads(job, "retried")
    status = job.status
    if status == PENDING:
        _check_in_run_order(job, "made due now")
        if job.begin_after <= now:
            raise AdminError(
                f"job {job.id} ({job.callable_name}) is pending and due "
                f"already; it starts when a dispatcher of queue "
                f"{queue_label(queue.name)!r} has a free thread (and its quotas "
                f"have room): see 'zasync status'"
            )
        was_due = job.begin_after
        queue.reschedule(job, now)
        return RetryOutcome(job=job, retried=job, made_due=True, was_due=was_due)
    if status != COMPLETED:
        raise AdminError(
            f"job {job.id} ({job.callable_name}) is {status}{_describe_claim(job)}; "
            f"only a failed job, or a pending job waiting to start, can be "
            f"retried"
        )
    if not job.failed:
        raise AdminError(
            f"job {job.id} ({job.callable_name}) succeeded; only failed jobs "
            f"are retried. To make the same call again, queue a new job."
        )
    if getattr(job, "is_composite", False):
        raise AdminError(
            f"job {job.id} ({job.callable_name}) is a serial/parallel job; "
            f"retry its failed parts one by one instead: "
            + ", ".join(str(child.id) for child in job.children if child.failed)
        )
    if job.role == "callback":
        raise AdminError(
            f"job {job.id} ({job.callable_name}) is a callback of job "
            f"{job.parent.id} and is called with that job's result; it cannot "
            f"run on its own"
        )
    # A part of a serial/parallel job had its parent's environment.
    copy = _copy_job(job, job.environment)
    copy.annotations[RETRY_OF] = job.id
    try:
        queued = queue.put(
            copy,
            begin_by=job.begin_by,
            quota_names=job.quota_names,
            priority=job.priority,
            unique_key=job.unique_key,
            now=now,
        )
    except ValueError as exc:
        raise AdminError(f"cannot queue a retry of job {job.id}: {exc}") from None
    if queued is not copy:
        raise AdminError(
            f"job {queued.id} with the same unique key {job.unique_key!r} is "
            f"{queued.status} already; it does what a retry of job {job.id} "
            f"would, so nothing new was queued"
        )
    # Jobs put with on_dependency_failure="wait" wait for the retry now.
    queue.move_dependents(job, copy)
    return RetryOutcome(job=copy, retried=job)


def cancel_job(queues, job_id, by="zasync cancel", reason=None, now=None):
    """Cancel a job.

    A pending or waiting job is taken out of the run order (or stops
    waiting for its dependencies) and completed with the Failure of a
    :class:`JobCancelled` naming ``by`` (and ``reason``), so its callbacks
    run (failure callbacks see the failure) and it is counted among the
    failed jobs; its unique key is freed once those callbacks are done. A
    set-aside job is cancelled the same way if it loads and can be stored
    again (else use :func:`discard_job`).

    A running or claimed job is asked to stop (see :func:`request_cancel`):
    it stays as it is, and the returned job's ``cancel_requested`` says so.
    A completed job, a job whose callbacks run, or a serial/parallel job
    whose parts run cannot be cancelled: AdminError.
    Works in the current transaction; returns the job.
    """
    now = now or clock.utcnow()
    job = get_job(queues, job_id)
    aside = _set_aside_reason(job)
    if aside is not None:
        # Back in the run order first, to be cancelled as any pending job.
        job = _put_back(job, aside, "cancelled (its callbacks could not run)", now)
    _check_loads(job, "cancelled")
    status = job.status
    name = f"job {job.id} ({job.callable_name})"
    if status == COMPLETED:
        outcome = "failed" if job.failed else "succeeded"
        raise AdminError(
            f"{name} has completed already ({outcome} at "
            f"{job.ended:%Y-%m-%d %H:%M:%S} UTC); there is nothing to cancel"
        )
    if status == CALLBACKS:
        raise AdminError(
            f"{name} has run and its callbacks are running; it cannot be cancelled"
        )
    if getattr(job, "is_composite", False) and status == ACTIVE:
        pending = [c.id for c in job.children if c.status == PENDING]
        hint = (
            f"cancel its pending parts instead: {', '.join(map(str, pending))}"
            if pending
            else "none of its parts is pending"
        )
        raise AdminError(
            f"{name} is a serial/parallel job whose parts are running; {hint}"
        )
    if status in (ASSIGNED, ACTIVE):
        request_cancel(job, by, reason, now)
        return job
    if status != WAITING:  # a waiting job is in no run order
        _check_in_run_order(job, "cancelled")
    message = f"Job {job.id} ({job.callable_name}) was cancelled by {by}"
    message += f" before it ran: {reason}" if reason else " before it ran"
    job.queue.cancel(job, failure_from(JobCancelled(message)), now)
    return job


def request_cancel(job, by, reason=None, now=None):
    """Ask the running (or claimed) ``job`` to stop, in the current
    transaction: a live annotation (``zasync.local.CANCEL``), which its
    thread sees on any dispatcher. Its code stops at its next
    ``zasync.local.check_cancelled()``, and the job fails with a
    JobCancelled naming ``by`` (never retried); a claimed job that has not
    started yet fails so without running. Code that never checks runs on
    until it ends, or until its time limit (``job.time_limit``) if it has
    one. A second request keeps the first. Returns the request
    ``(when, by, reason)``."""
    now = now or clock.utcnow()
    live = job.live_annotations(create=True)
    request = live.get(local.CANCEL)
    if request is None:
        request = live[local.CANCEL] = (now, by, reason)
    return request


def cancel_state(job):
    """Plain data about a cancel request of ``job``: None if there is none,
    else {"requested": when, "by": ..., "reason": ..., "stops": text} where
    ``stops`` says what happens next (for commands and views)."""
    request = job.cancel_requested
    if request is None:
        return None
    when, by, reason = request
    limit = job.time_limit
    if job.status == COMPLETED:
        stops = "the job has ended"
    else:
        stops = (
            "the job stops at its next check (zasync.local.check_cancelled); "
            "if its code never checks, it runs on until it ends"
        )
        stops += f", or until its time limit of {limit}" if limit is not None else ""
    return {"requested": when, "by": by, "reason": reason, "stops": stops}


def discard_job(queues, job_id):
    """Remove a set-aside job from its queue for good, without loading or
    writing it (it may do neither): it never runs and no callback is
    called. AdminError for a job that is not set aside. Works in the
    current transaction; returns a dict: its id, queue, callable and the
    reason it had been set aside."""
    job = get_job(queues, job_id)
    reason = _set_aside_reason(job)
    if reason is None:
        raise AdminError(
            f"job {job.id} ({job.callable_name}) is {job.status}, not set aside; "
            f"only set-aside jobs are discarded. Cancel a pending job with "
            f"'zasync cancel {job.id}'; completed ones are removed by "
            f"'zasync prune'"
        )
    job.queue.discard_set_aside(job.id)
    return {
        "id": job.id,
        "queue": queue_label(job.queue.name),
        "callable": job.callable_name,
        "reason": reason,
    }


def in_transaction(db, work, database=None, attempts=MAX_CONFLICTS):
    """Call ``work(queues)`` in a transaction of its own on ``db`` and
    commit, retrying on ConflictError and other transient errors with a
    growing random pause; returns what ``work`` returned.

    ``work`` must return plain data, not persistent objects: the connection
    is closed on return. ``database`` names the queues' database in a
    multi-database setup.
    """
    try:
        return in_own_transaction(
            db, lambda conn: work(read_queues(conn, database)), attempts
        )
    except TRANSIENT_ERRORS:
        raise AdminError(
            f"gave up after {attempts} write conflicts: the queues are very busy; "
            f"try again"
        ) from None


def pause_queue(queues, queue=None, by="zasync pause", now=None):
    """Pause the queue named ``queue`` (default: the default queue),
    cluster-wide, in the current transaction: dispatchers claim nothing
    from it until :func:`resume_queue`; running jobs finish and jobs can
    still be queued. Returns ``{"queue", "paused", "was_paused"}``."""
    target = select_queues(queues, DEFAULT_QUEUE if queue is None else queue)[0]
    was = target.paused is not None
    since, who = target.pause(now or clock.utcnow(), by)
    if not was:
        log.info("queue %r paused by %s", queue_label(target.name), who)
    return {
        "queue": queue_label(target.name),
        "paused": {"since": since, "by": who},
        "was_paused": was,
    }


def set_default_timeout(queues, seconds, queue=None):
    """Set the time limit of the jobs of the queue named ``queue`` (default:
    the default queue) that have none of their own, cluster-wide, in the
    current transaction: ``seconds`` (a number or a timedelta), or None for
    no limit. Jobs running already keep the limit they started with.
    Returns ``{"queue", "default_timeout", "was"}`` (seconds, or None).
    AdminError for a value that is not a positive duration."""
    target = select_queues(queues, DEFAULT_QUEUE if queue is None else queue)[0]
    was = target.default_timeout
    try:
        target.default_timeout = seconds
    except (TypeError, ValueError) as exc:
        raise AdminError(str(exc)) from None
    now = target.default_timeout
    if now != was:
        log.info("queue %r: default time limit %s", queue_label(target.name), now)

    def seconds_of(delta):
        return None if delta is None else delta.total_seconds()

    return {
        "queue": queue_label(target.name),
        "default_timeout": seconds_of(now),
        "was": seconds_of(was),
    }


def resume_queue(queues, queue=None):
    """Resume a queue paused with :func:`pause_queue`, in the current
    transaction; dispatchers claim from it again at once. Returns
    ``{"queue", "was_paused"}``."""
    target = select_queues(queues, DEFAULT_QUEUE if queue is None else queue)[0]
    was = target.resume()
    if was:
        log.info("queue %r resumed", queue_label(target.name))
    return {"queue": queue_label(target.name), "was_paused": was}


def _quota_of(queues, name, queue):
    target = select_queues(queues, DEFAULT_QUEUE if queue is None else queue)[0]
    quota = target.quotas.get(name) if isinstance(name, str) else None
    if quota is None:
        known = ", ".join(target.quotas) or "none"
        raise AdminError(
            f"queue {queue_label(target.name)!r} has no quota {name!r} "
            f"(its quotas: {known})"
        )
    return target, quota


def pause_quota(queues, name, queue=None, by="zasync pause", now=None):
    """Pause quota ``name`` of ``queue`` (default: the default queue),
    cluster-wide, in the current transaction: no job naming it is claimed
    until :func:`resume_quota`; running jobs finish and jobs can still be
    queued. Returns ``{"queue", "quota", "paused", "was_paused"}``."""
    target, quota = _quota_of(queues, name, queue)
    was = quota.paused is not None
    since, who = quota.pause(now or clock.utcnow(), by)
    if not was:
        log.info("queue %r: quota %r paused by %s", queue_label(target.name), name, who)
    return {
        "queue": queue_label(target.name),
        "quota": name,
        "paused": {"since": since, "by": who},
        "was_paused": was,
    }


def resume_quota(queues, name, queue=None):
    """Resume a quota paused with :func:`pause_quota`, in the current
    transaction; its jobs are claimed again at once. Returns ``{"queue",
    "quota", "was_paused"}``."""
    target, quota = _quota_of(queues, name, queue)
    was = quota.resume()
    if was:
        log.info("queue %r: quota %r resumed", queue_label(target.name), name)
    return {"queue": queue_label(target.name), "quota": name, "was_paused": was}
