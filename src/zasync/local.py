"""What code running inside a job can learn and say about its job.

>>> from zasync import local
>>> local.get_job()                      # the running job
>>> local.set_progress(0.5, "half way")  # committed at once
>>> local.set_live_annotation("rows", 1200)

Live annotations (progress is one) are committed at once in a transaction
of their own, separate from the job's, so other connections see them while
the job runs and they survive if the job's transaction is later aborted.
Outside a job, these functions raise :class:`NotInJobError`.
"""

import contextlib
import threading

from zasync.exceptions import NotInJobError

PROGRESS = "zasync.progress"

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
