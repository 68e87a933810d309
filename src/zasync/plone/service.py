"""IAsyncService: queue jobs that run as the current user, in the site."""

from zope.component.hooks import getSite
from zope.interface import implementer

import zasync
from zasync.job import Job
from zasync.plone import environment as env
from zasync.plone import queuers
from zasync.plone.events import notify_job_event
from zasync.plone.interfaces import DEFAULT_QUOTA, IAsyncService
from zasync.plone.roles import queues_database
from zasync.plone.settings import ensure_quotas
from zasync.queue import get_queues


def makeJob(func, context, *args, **kwargs):
    """A job for ``func(context, *args, **kwargs)``, as the current user in
    the current site, to pass to queueSerialJobs / queueParallelJobs (or
    to queue yourself with ``queue.put``).

    ``context``, and any other stored Zope object among the arguments, is
    kept by path (and UID) and looked up again in the worker.
    """
    ref = env.reference(context, "context")
    args, kwargs = env.references_in(args, kwargs)
    return as_plone_job(Job(func, ref, *args, **kwargs))


def site_queues():
    """The zasync Queues of the current site's database."""
    return get_queues(_site_connection(), database=queues_database())


def as_plone_job(job):
    """Give ``job`` the current site and user, and the callback that fires
    IJobSuccess / IJobFailure."""
    job.environment = env.capture()
    # Bookkeeping, not the user's: operators' listings and logs leave it out.
    job.add_callback(notify_job_event).internal = True
    return job


def queue_job(
    queue,
    quota_names,
    job,
    begin_after=None,
    begin_by=None,
    priority=0,
    depends_on=None,
    on_dependency_failure="fail",
):
    """Put ``job`` in ``queue`` (a Queue, a queue name, or None for the
    default queue) under ``quota_names``, creating missing quotas; with
    ``depends_on``, to wait for those jobs (see IQueue.put)."""
    if queue is None or isinstance(queue, str):
        name = queue or ""
        queues = site_queues()
        if name not in queues:
            raise ValueError(
                f"There is no zasync queue {name!r}; the queues are "
                f"{sorted(queues)!r}. Create it first."
            )
        queue = queues[name]
    if isinstance(quota_names, str):
        quota_names = (quota_names,)
    quota_names = tuple(quota_names or ())
    ensure_quotas(queue, quota_names)
    job = queue.put(
        job,
        quota_names=quota_names,
        begin_after=begin_after,
        begin_by=begin_by,
        priority=priority,
        depends_on=depends_on,
        on_dependency_failure=on_dependency_failure,
    )
    site = getSite()
    if site is not None:
        queuers.remember(site, job)
    return job


def _site_connection():
    site = getSite()
    jar = getattr(site, "_p_jar", None)
    if jar is None:
        raise env.NotQueueable(
            "No site is set, or it is not stored: use IAsyncService from code "
            "running in a Plone site (a request, or a script that called "
            "zope.component.hooks.setSite(site))."
        )
    return jar


@implementer(IAsyncService)
class AsyncService:
    """See IAsyncService."""

    def getQueues(self):
        return site_queues()

    def queueJobInQueue(self, queue, quota_names, func, context, *args, **kwargs):
        return queue_job(queue, quota_names, makeJob(func, context, *args, **kwargs))

    def queueJob(self, func, context, *args, **kwargs):
        return self.queueJobInQueue(
            None, (DEFAULT_QUOTA,), func, context, *args, **kwargs
        )

    def queueJobWithDelay(self, begin_by, begin_after, func, context, *args, **kwargs):
        job = makeJob(func, context, *args, **kwargs)
        return queue_job(None, (DEFAULT_QUOTA,), job, begin_after, begin_by)

    def queueJobAfter(
        self, depends_on, on_dependency_failure, func, context, *args, **kwargs
    ):
        job = makeJob(func, context, *args, **kwargs)
        return queue_job(
            None,
            (DEFAULT_QUOTA,),
            job,
            depends_on=depends_on,
            on_dependency_failure=on_dependency_failure or "fail",
        )

    def _composite(self, factory, job_infos):
        for info in job_infos:
            if not isinstance(info, Job) or info.environment is None:
                raise TypeError(
                    f"{info!r} is not a job made by makeJob(func, context, ...); "
                    f"build each part with makeJob."
                )
        return as_plone_job(factory(*job_infos))

    def queueSerialJobsInQueue(self, queue, quota_names, *job_infos):
        return queue_job(queue, quota_names, self._composite(zasync.serial, job_infos))

    def queueParallelJobsInQueue(self, queue, quota_names, *job_infos):
        return queue_job(
            queue, quota_names, self._composite(zasync.parallel, job_infos)
        )

    def queueSerialJobs(self, *job_infos):
        return self.queueSerialJobsInQueue(None, (DEFAULT_QUOTA,), *job_infos)

    def queueParallelJobs(self, *job_infos):
        return self.queueParallelJobsInQueue(None, (), *job_infos)

    def notifyWhenDone(self, job):
        from zasync.plone.myjobs.notices import notify_when_done

        return notify_when_done(job)
