"""The Plone layer's contract: the service, its events, settings and layer.

The names are those of plone.app.async, so that code written for it needs
only its imports changed.
"""

from zope import schema
from zope.interface import Attribute, Interface, implementer
from zope.publisher.interfaces.browser import IDefaultBrowserLayer

#: The quota that queueJob() uses, size 1 unless configured.
DEFAULT_QUOTA = "default"


class IAsyncService(Interface):
    """Queues jobs that run later, as the current user, in the current site.

    ``func(context, *args, **kwargs)`` runs in a worker with ``context``
    looked up again from its physical path, inside the site it was queued
    in (``setSite``), with a request that gives the URLs of the request
    that queued it (the site's public URL if none did), and with the
    security of the user who queued it: that account, found again in the
    same user folder, with the roles it has when the job runs but no global
    role it did not have when queuing. If the site, the object or the user
    is gone (or was replaced by another of the same path or id), the job
    fails with a Failure that says which; it never runs as anybody else,
    in another site or on another object. An unrestricted identity (a
    script's ``UnrestrictedUser``) runs the job as itself. The job's
    transaction commits inside its site, as its user, so the catalog and
    what else Plone does at commit see what the job did.

    Queuing is part of the current transaction: if the request aborts, no
    job exists. Every method returns the queued IJob (``addCallback`` and
    ``addCallbacks`` work on it). Arguments are checked when queued: a
    lambda, a closure or anything else a worker could not load is refused
    with an error that names it.
    """

    def getQueues():
        """The zasync Queues of this Zope database (IQueues).

        In multi-database mode they live in the database configured for
        zasync (see ``multi_db_instance.zcml``)."""

    def queueJob(func, context, *args, **kwargs):
        """Queue ``func(context, *args, **kwargs)`` in the default queue,
        under the ``default`` quota: such jobs run one at a time, in the
        order they were queued."""

    def queueJobWithDelay(begin_by, begin_after, func, context, *args, **kwargs):
        """Like queueJob, not before ``begin_after`` (an aware datetime or
        None) and failing with a time-out instead of starting later than
        ``begin_after + begin_by`` (a timedelta, or None for no limit)."""

    def queueJobAfter(
        depends_on, on_dependency_failure, func, context, *args, **kwargs
    ):
        """Like queueJob, once the jobs of ``depends_on`` (jobs of the
        default queue, as queueJob returned them) have completed: until
        then it waits, holding no thread and no slot of the ``default``
        quota. ``on_dependency_failure`` ('fail', 'run' or 'wait', None for
        'fail') says what it does if one fails: see
        zasync.interfaces.IQueue.put."""

    def queueJobInQueue(queue, quota_names, func, context, *args, **kwargs):
        """Queue in ``queue`` (a Queue or its name) under ``quota_names``
        (a tuple of quota names, created with size 1 if missing; empty for
        no quota)."""

    def queueSerialJobs(*job_infos):
        """Queue one job that runs the jobs made by ``makeJob`` one after
        the other, under the ``default`` quota. Its result is the tuple of
        those jobs, each with its own result or Failure."""

    def queueParallelJobs(*job_infos):
        """Queue one job that runs the jobs made by ``makeJob`` at the same
        time, as far as quotas and worker threads allow. Its result is the
        tuple of those jobs. Parallel jobs use no quota unless given one."""

    def queueSerialJobsInQueue(queue, quota_names, *job_infos):
        """queueSerialJobs in the given queue, under the given quotas."""

    def queueParallelJobsInQueue(queue, quota_names, *job_infos):
        """queueParallelJobs in the given queue, under the given quotas."""

    def notifyWhenDone(job):
        """Tell the user of the current request, with a status message on
        their next page in this site after ``job`` (queued by them) has
        finished, that it succeeded or why it failed; returns the job.

        Opt-in per job: ``service.notifyWhenDone(service.queueJob(...))``.
        The browser keeps the ids it waits for in a cookie (nothing is
        written to the database); the message is shown to the user who
        queued the job, and only to them. ValueError without a request or
        for a job not queued yet."""


class IJobEvent(Interface):
    """A job queued through IAsyncService completed.

    Fired in the worker, after the job's result is committed, in a
    transaction of its own, inside the job's site and as the job's user.
    An exception raised by a handler is logged and recorded on that event's
    callback job; it never changes the job's committed result.

    Every outcome reaches the handlers, also when the job's user or site is
    gone (a job that failed with UserNotFound or SiteNotFound): they then
    run with the least that still exists, never with more rights: as
    Anonymous in the site if only the user is gone, as Anonymous without a
    site if the site is gone; ``degraded`` says why. Failure callbacks
    (``job.addCallbacks(failure=...)``) run the same way.
    """

    object = Attribute("The job's result, or its Failure.")
    job = Attribute("The job (IJob).")
    degraded = Attribute(
        "None when the handlers run as the job's user in its site; else a "
        "text saying what is gone and what they run as instead."
    )


class IJobSuccess(IJobEvent):
    """The job returned; ``object`` is its result."""


class IJobFailure(IJobEvent):
    """The job raised; ``object`` is its Failure."""


@implementer(IJobEvent)
class JobEvent:
    def __init__(self, object, job, degraded=None):
        self.object = object
        self.job = job
        self.degraded = degraded

    def __repr__(self):
        return f"<{type(self).__name__} for {self.job!r}>"


@implementer(IJobSuccess)
class JobSuccess(JobEvent):
    """See IJobSuccess."""


@implementer(IJobFailure)
class JobFailure(JobEvent):
    """See IJobFailure."""


class IZasyncLayer(IDefaultBrowserLayer):
    """Marks requests of sites where the zasync add-on is installed."""


class IProcessRole(Interface):
    """What this Zope process does; registered as a utility by one of the
    ``*_db_instance.zcml`` / ``*_db_worker.zcml`` files. With none of them
    loaded the process is *embedded*: single database, and it runs a
    dispatcher itself."""

    name = Attribute("'embedded', 'instance' or 'worker'.")
    runs_dispatcher = Attribute("True if the process runs a dispatcher.")
    multi_database = Attribute(
        "True if the queues live in a database of their own, mounted next to "
        "the main one (named by product-config ``database``, default "
        "'zasync_queues')."
    )


class IZasyncSettings(Interface):
    """The settings of one site, kept in its configuration registry (prefix
    ``zasync``; records ``zasync.<field>``) and edited in the zasync
    control panel (``@@zasync-controlpanel``).

    Only what applies to this site alone is here. What applies to every
    site of the database and to every worker (the quotas' sizes, the agent
    sizes) is kept with the queues and shown by ``zasync settings`` and by
    the control panel; profile version 1001 removed the records
    ``zasync.default_quota_size`` and ``zasync.agent_size`` that earlier
    versions kept here, carrying their values over to the queues.
    """

    public_url = schema.URI(
        title="Public URL of this site",
        description=(
            "The URL the site's visitors use, such as https://www.example.org. "
            "Jobs see a request with this URL, so absolute_url() and links in "
            "e-mails point there. Empty: zope.conf's public-url, else the URL "
            "the site had when the job was queued."
        ),
        required=False,
    )
