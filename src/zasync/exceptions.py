"""Every exception zasync raises or stores, under one base: ZasyncError.

Each docstring says what went wrong and how to fix it. The classes keep
their old dotted names too (``zasync.queue.JobTimedOut``,
``zasync.admin.AdminError``, ...): Failures stored by earlier versions name
them there. Where an error is also one of Python's kinds (a bad argument, a
missing item), it derives from that too, so ``except TypeError`` or
``except LookupError`` keep catching it.
"""


class ZasyncError(Exception):
    """Base of every zasync exception: ``except ZasyncError`` catches them all."""


# -- making and queuing jobs -----------------------------------------------


class BadJobError(ZasyncError, TypeError):
    """A job's callable or one of its arguments cannot be stored. Pass a
    module-level function (or a method of a persistent object) and
    picklable arguments; the message names the one that is not."""


class BadStatusError(ZasyncError):
    """A job was asked for a change its status does not allow (it ran
    already, or is not running). Look at ``job.status``: only a pending job
    can start, only an active one can record an outcome."""


class NotInJobError(ZasyncError, RuntimeError):
    """A zasync.local function was called outside a running job. Call it
    from the job's code, or check ``zasync.local.in_job()`` first."""


# -- running jobs ----------------------------------------------------------


class CallableNotFound(ZasyncError):
    """The job's callable cannot be found any more in the worker: its module
    or name was removed or renamed. Deploy the code on every worker, or
    keep an alias at the old name until the stored jobs are done."""


class JobInterrupted(ZasyncError):
    """The job's worker died while running it, too many times. Look at
    why (memory, a crash in the callable); retry it once that is fixed."""


class JobTakenBack(ZasyncError):
    """A job that runs in steps (zasync.steps) found that it is no longer
    running here: a peer recovered it, it was cancelled, or its dispatcher
    stopped and put it back. Nothing to fix: its committed steps are kept,
    and where it runs next it goes on from its stored cursor."""


class JobTimedOut(ZasyncError):
    """The job missed one of its time limits: it did not start before its
    ``begin_by`` deadline (no worker was free, or none ran: start workers,
    or queue it with a later deadline), or it ran longer than its
    ``timeout`` (or its queue's ``default_timeout``): then none of its
    writes were committed. Make the job faster or split it, or queue it
    with a longer ``timeout``; the message says which limit it was."""


class JobCancelled(ZasyncError):
    """The job was cancelled (``zasync cancel``, the dashboard, REST):
    before it ran, or while it ran, at a ``zasync.local.check_cancelled()``
    of its code; the message says by whom. None of the writes of the
    cancelled attempt were committed. Queue it again if it is still
    wanted."""


class DependencyFailed(ZasyncError):
    """A job put with ``depends_on`` did not run: one of the jobs it waited
    for failed, was cancelled, or was removed from its queue (see
    ``on_dependency_failure`` of IQueue.put). The message names that job;
    fix what made it fail, retry it, then queue this job again (or queue it
    with ``on_dependency_failure="run"`` if it should run anyway)."""


class UnpicklableError(ZasyncError):
    """Stands in for an exception whose value could not be pickled.

    It has the same ``str`` as the original, and remembers the original
    type's dotted name in ``original_type``. Make the exception's arguments
    picklable to keep the original.
    """

    def __init__(self, message, original_type=""):
        super().__init__(message)
        self.original_type = original_type

    def __str__(self):
        return self.args[0] if self.args else ""

    def __reduce__(self):
        return (type(self), (str(self), self.original_type))


# -- operating ---------------------------------------------------------------


class ConfigurationError(ZasyncError, ValueError):
    """A dispatcher option (an argument of ``zasync.start``, a ``zasync
    worker`` option, a ``<product-config zasync>`` key) has a value that
    cannot be used. The message names the option as it was given and what
    to change."""


class AdminError(ZasyncError):
    """An operation cannot be done as asked; the message says why and what
    to do instead. Nothing was changed."""


class JobNotFound(AdminError, LookupError):
    """No queue of the database has a job with this id; ``zasync jobs``
    lists the ones there are (it may have been pruned)."""


class NoQueues(AdminError):
    """The database has no zasync queues at all: start a worker or the site
    once (they install them), or check that the command opens the right
    database."""


class CommandError(ZasyncError):
    """A problem the person running a command must fix; printed without a
    traceback."""


class ProcessError(ZasyncError, RuntimeError):
    """A process did not start, or did not do what was expected in time;
    the message quotes what it printed."""
