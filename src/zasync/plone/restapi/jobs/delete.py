"""``DELETE @zasync-jobs/{id}``: remove a completed job from its queue, or
discard a set-aside one (which is never run). Permission
``zasync.ManageJobs``. 204 when done; 409 for a job that is pending or
running (cancel a pending job first, wait for a running one), with the
message saying so.
"""

from zasync import admin
from zasync.plone.restapi.base import ServiceError, ZasyncService
from zasync.status import COMPLETED


class JobsDelete(ZasyncService):
    """See the module."""

    writes = True

    def reply(self):
        if len(self.params) != 1:
            raise ServiceError(400, "DELETE @zasync-jobs/<id> removes one job")
        job = self.visible_job(self.job_id_param())
        queues = self.queues()
        queue = job.queue
        name = f"job {job.id} ({job.callable_name})"
        if queue is not None and queue.set_aside_reason(job.id) is not None:
            admin.discard_job(queues, job.id)
            return self.reply_no_content()
        if job.status != COMPLETED:
            hint = (
                f"cancel it first: POST @zasync-jobs/{job.id}/@cancel"
                if job.status.value == "pending"
                else "wait for it to complete"
            )
            raise ServiceError(
                409,
                f"{name} is {job.status.value}; only completed and set-aside "
                f"jobs can be removed: {hint}",
            )
        if getattr(job, "broken", None) is not None:
            raise ServiceError(409, f"{name} cannot be loaded: {job.broken}")
        try:
            queue.remove(job)
        except ValueError as exc:
            raise ServiceError(409, f"{name} cannot be removed: {exc}") from None
        return self.reply_no_content()
