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
from zasync.plone.events import notify_job_event


def is_async():
    """True if the calling code runs in a zasync job."""
    return local.in_job()


def asyncfunction(func=None, *, queue="", quota_names=(), priority=0):
    """Make a module-level function queue itself when called.

    Calling the decorated function queues ``func(*args, **kwargs)`` in
    ``queue`` under ``quota_names`` (none by default: such jobs run side by
    side; give ``("default",)`` to run them one at a time, in order) as the
    current user in the current site, and returns the job. Stored Zope
    objects among the arguments are passed by path, as with IAsyncService.
    Called from inside a job, it runs the function at once and returns
    its result. Use as ``@asyncfunction`` or ``@asyncfunction(queue=...)``.
    """
    if func is None:
        return functools.partial(
            asyncfunction, queue=queue, quota_names=quota_names, priority=priority
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
        return _queue_call(queue_or_run, args, kwargs, queue, quota_names, priority)

    queue_or_run.run_now = func
    return queue_or_run


def _queue_call(function, args, kwargs, queue_name, quota_names, priority):
    from zope.component import getUtility

    from zasync.plone.interfaces import IAsyncService
    from zasync.plone.settings import ensure_quotas

    args, kwargs = env.references_in(args, kwargs)
    # The job stores the decorated function by name; in the worker calling
    # it runs the function, since the worker is in a job.
    job = Job(function, *args, **kwargs)
    job.environment = env.capture()
    job.add_callback(notify_job_event)
    queues = getUtility(IAsyncService).getQueues()
    if queue_name not in queues:
        raise ValueError(
            f"There is no zasync queue {queue_name!r}; the queues are "
            f"{sorted(queues)!r}."
        )
    target = queues[queue_name]
    quota_names = (quota_names,) if isinstance(quota_names, str) else quota_names
    ensure_quotas(target, quota_names)
    return target.put(job, quota_names=tuple(quota_names), priority=priority)
