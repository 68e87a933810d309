"""What code running inside a job can learn and say about its job.

>>> from zasync import local
>>> local.get_job()                      # the running job
>>> local.set_progress(0.5, "half way")  # committed at once
>>> local.set_live_annotation("rows", 1200)
>>> local.check_cancelled()              # raises if asked to stop

Live annotations (progress is one) are committed at once in a transaction
of their own, separate from the job's, so other connections see them while
the job runs and they survive if the job's transaction is later aborted.
Outside a job, these functions raise :class:`NotInJobError`.

A job is asked to stop when someone cancels it while it runs (``zasync
cancel``, the dashboard, REST: a live annotation, so that the request
reaches it on any dispatcher) or when it runs past its time limit (its
dispatcher tells its thread). Python cannot stop a thread from outside:
only code that calls :func:`cancelled` or :func:`check_cancelled` stops.
"""

import contextlib
import threading

from zasync.exceptions import JobCancelled, JobTimedOut, NotInJobError

PROGRESS = "zasync.progress"
#: The live annotation of a request to cancel a running job:
#: ``(when, by, reason)`` (see zasync.admin.cancel_job).
CANCEL = "zasync.cancel"

_state = threading.local()


def _stack():
    stack = getattr(_state, "jobs", None)
    if stack is None:
        stack = _state.jobs = []
    return stack


@contextlib.contextmanager
def running(job):
    """Make ``job`` the current job of this thread for the block."""
    stack = _stack()
    stack.append(job)
    try:
        yield job
    finally:
        stack.pop()


@contextlib.contextmanager
def live_channel(channel):
    """Route live annotations of this thread through ``channel`` (a
    dispatcher's side connection with ``write(job, name, value)`` and
    ``read(job, name, default)``) for the block."""
    previous = getattr(_state, "channel", None)
    _state.channel = channel
    try:
        yield channel
    finally:
        _state.channel = previous


@contextlib.contextmanager
def own_transaction(tm):
    """Tell code running in the current job, for the block, that the job's
    transaction is its own and ``tm`` manages it: the job may commit it
    mid-way (zasync.steps does). A dispatcher says so for a job it runs
    alone; not for a batch of jobs sharing a transaction (group commit),
    nor for a job called directly or inline (the caller's transaction)."""
    previous = getattr(_state, "own_tm", None)
    _state.own_tm = tm
    try:
        yield tm
    finally:
        _state.own_tm = previous


def own_transaction_manager():
    """The transaction manager of the current job's own transaction, which
    the job may commit mid-way; None if the job shares its transaction
    (see :func:`own_transaction`) or if no job is running."""
    if not in_job():
        return None
    return getattr(_state, "own_tm", None)


def get_job():
    """The job running in this thread."""
    stack = _stack()
    if not stack:
        raise NotInJobError(
            "zasync.local.get_job() was called outside a job: only code run "
            "by a dispatcher (or by calling a job) has a current job."
        )
    return stack[-1]


def in_job():
    """True if this thread is running a job."""
    return bool(_stack())


def set_live_annotation(name, value):
    """Store ``value`` under ``name`` for the current job and commit it at once."""
    job = get_job()
    channel = getattr(_state, "channel", None)
    if channel is None:
        # Called by job() directly: there is no dispatcher transaction to
        # escape from, so the value joins the current transaction.
        job.live_annotations(create=True)[name] = value
    else:
        channel.write(job, name, value)


def get_live_annotation(name, default=None):
    """The latest committed live annotation ``name`` of the current job."""
    job = get_job()
    channel = getattr(_state, "channel", None)
    if channel is None:
        return job.get_live_annotation(name, default)
    return channel.read(job, name, default)


def set_progress(fraction, message=None):
    """Record how far the current job is (0.0 to 1.0) and an optional message."""
    try:
        fraction = float(fraction)
    except (TypeError, ValueError):
        raise ValueError(
            f"progress must be a number from 0.0 to 1.0, not {fraction!r}"
        ) from None
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"progress must be from 0.0 to 1.0, not {fraction!r}")
    set_live_annotation(PROGRESS, (fraction, message))


def _stop_reason(job):
    """The exception to stop ``job`` with, or None if it may go on."""
    channel = getattr(_state, "channel", None)
    stopped = getattr(channel, "stopped", None)
    if stopped is not None and stopped[0] == job.id:
        return JobTimedOut(stopped[1])  # its dispatcher's: a time limit
    request = get_live_annotation(CANCEL)
    if request is None:
        return None
    return cancel_error(job, request, "while it ran")


def cancel_error(job, request, when):
    """The JobCancelled of ``job`` for its cancel ``request`` (see CANCEL),
    saying by whom, ``when`` ("while it ran") and why."""
    _, by, reason = request
    message = f"Job {job.id} ({job.callable_name}) was cancelled by {by} {when}"
    return JobCancelled(f"{message}: {reason}" if reason else message)


def cancelled():
    """True if the current job was asked to stop: it was cancelled, or ran
    past its time limit. Each call reads the latest committed request (a
    small read of the database): call it between pieces of work, not in a
    tight loop."""
    return _stop_reason(get_job()) is not None


def check_cancelled():
    """Raise :class:`~zasync.exceptions.JobCancelled` (saying by whom) if
    the current job was cancelled, or :class:`~zasync.exceptions.JobTimedOut`
    if it ran past its time limit; else return None. Raised out of the job,
    it ends the job as failed, without a retry, and none of its writes of
    this attempt commit."""
    reason = _stop_reason(get_job())
    if reason is not None:
        raise reason
