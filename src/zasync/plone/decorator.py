"""The gocept.async style: functions that queue themselves when called.

>>> from zasync.plone import asyncfunction, is_async
>>> @asyncfunction
... def reindex(folder):
...     ...
>>> job = reindex(folder)   # queued as the current user, in this site

Inside a job, calling such a function runs it at once instead.
"""

import functools

from zasync import local
from zasync.job import Job
from zasync.plone import environment as env


def is_async():
    """True if the calling code runs in a zasync job."""
    return local.in_job()


def asyncfunction(func=None, *, queue="", quota_names=(), priority=0, notify=False):
    """Make a module-level function queue itself when called.

    Calling the decorated function queues ``func(*args, **kwargs)`` in
    ``queue`` under ``quota_names`` (none by default: such jobs run side by
    side; give ``("default",)`` to run them one at a time, in order) as the
    current user in the current site, and returns the job. Stored Zope
    objects among the arguments are passed by path, as with IAsyncService.
    Called from inside a job, it runs the function at once and returns
    its result. With ``notify=True``, the user who called it in a request
    is told on their next page when the job has finished (see
    IAsyncService.notifyWhenDone). Use as ``@asyncfunction`` or
    ``@asyncfunction(queue=...)``.
    """
    if func is None:
        return functools.partial(
            asyncfunction,
            queue=queue,
            quota_names=quota_names,
            priority=priority,
            notify=notify,
        )
    qualname = getattr(func, "__qualname__", "")
    if not callable(func) or "." in qualname or "<" in qualname:
        raise TypeError(
            f"@asyncfunction needs a function defined at module level, so that "
            f"a worker can import it; {qualname or func!r} is not one."
        )

    @functools.wraps(func)
    def queue_or_run(*args, **kwargs):
        if is_async():
            return func(*args, **kwargs)
        job = _queue_call(queue_or_run, args, kwargs, queue, quota_names, priority)
        if notify:
            from zasync.plone.myjobs.notices import notify_when_done

            notify_when_done(job)
        return job

    queue_or_run.run_now = func
    return queue_or_run


def _queue_call(function, args, kwargs, queue_name, quota_names, priority):
    from zasync.plone.service import as_plone_job, queue_job

    args, kwargs = env.references_in(args, kwargs)
    # The job stores the decorated function by name; in the worker calling
    # it runs the function, since the worker is in a job.
    job = as_plone_job(Job(function, *args, **kwargs))
    return queue_job(queue_name, quota_names, job, priority=priority)
