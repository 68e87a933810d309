"""IJobSuccess and IJobFailure, fired by a callback of each job the service
queues: after the job's result is committed, in the job's site, as its user."""

import logging

from zope.event import notify

from zasync import local
from zasync.failure import Failure
from zasync.plone.environment import degraded
from zasync.plone.interfaces import JobFailure, JobSuccess

log = logging.getLogger("zasync.plone")


def notify_job_event(result):
    """The callback: notify IJobSuccess or IJobFailure for the parent job.

    A handler's exception is logged and fails this callback job only (its
    writes are aborted); the job's own result is already committed.
    """
    job = local.get_job().parent
    kind = JobFailure if isinstance(result, Failure) else JobSuccess
    event = kind(result, job, degraded())
    try:
        notify(event)
    except Exception:
        log.exception(
            "a handler of %s for job %s (%s) failed",
            type(event).__name__,
            job.id,
            job.callable_name,
        )
        raise
    return None
