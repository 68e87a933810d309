"""``POST @zasync-jobs/{id}/@retry`` and ``POST @zasync-jobs/{id}/@cancel``.

Permission ``zope2.View`` in ZCML (one service answers both), and in
code: ``@retry`` needs "zasync: Manage jobs"; ``@cancel`` needs it too,
except that any authenticated user may cancel a job they queued
themselves (a pending or set-aside one is cancelled at once, a running or
claimed one is asked to stop: ``cancel_requested`` in the answer says so).
A job the user may not see is 404. The change is made in the request's
transaction; a job that cannot be retried or cancelled as it is now is
409 with zasync.admin's message saying why and what to do.
"""

from AccessControl import getSecurityManager
from zExceptions import Unauthorized

from zasync import admin
from zasync.plone import queuers
from zasync.plone.references import path_text
from zasync.plone.restapi.base import JOBS_SERVICE, ServiceError, ZasyncService
from zasync.plone.restapi.jobs.get import job_site

ACTIONS = ("@retry", "@cancel")


class JobsPost(ZasyncService):
    """See the module."""

    writes = True

    def reply(self):
        self.check_authenticated()
        if len(self.params) != 2 or self.params[1] not in ACTIONS:
            raise ServiceError(
                400,
                f"POST {JOBS_SERVICE}/<id>/@retry or {JOBS_SERVICE}/<id>/@cancel "
                f"(not {JOBS_SERVICE}/{'/'.join(self.params)})",
            )
        job = self.visible_job(self.job_id_param())
        if self.params[1] == "@retry":
            return self.retry(job)
        return self.cancel(job)

    def retry(self, job):
        if not self.can_manage:
            raise Unauthorized(
                "retrying a job needs the permission 'zasync: Manage jobs'"
            )
        try:
            outcome = admin.retry_job(self.queues(), job.id)
        except admin.AdminError as exc:
            raise ServiceError(409, str(exc)) from None
        new = outcome.job
        put_back = outcome.set_aside_reason is not None
        if new is not job and job_site(new) == path_text(
            self.context.getPhysicalPath()
        ):
            # The retry is the same user's job in this site: their list
            # shows it, as it showed the failed one.
            queuers.remember(self.context, new)
        return admin.for_json(
            {
                "@id": self.job_url(new.id),
                "id": new.id,
                "callable": new.callable_name,
                "queue": admin.queue_label(new.queue.name),
                "made_due": outcome.made_due,
                "was_due": outcome.was_due,
                "put_back": put_back,
                "set_aside_reason": outcome.set_aside_reason,
                "retry_of": None if outcome.made_due or put_back else job.id,
            }
        )

    def cancel(self, job):
        if not self.can_manage and not queuers.queued_by(job):
            raise Unauthorized(
                "cancelling another user's job needs the permission "
                "'zasync: Manage jobs'"
            )
        user = getSecurityManager().getUser()
        body = self.json_body()
        reason = body.get("reason")
        if reason is not None and not isinstance(reason, str):
            raise ServiceError(400, f"'reason' must be a text, not {reason!r}")
        by = f"{user.getId()} (REST API, {self.site_url})"
        try:
            cancelled = admin.cancel_job(self.queues(), job.id, by=by, reason=reason)
        except admin.AdminError as exc:
            raise ServiceError(409, str(exc)) from None
        callbacks = [cb for cb in cancelled.callbacks if not cb.internal]
        # A running (or claimed) job is asked to stop: it stays as it is.
        running = cancelled.status.value in ("active", "assigned")
        requested = admin.cancel_state(cancelled) if running else None
        return admin.for_json(
            {
                "@id": self.job_url(cancelled.id),
                "id": cancelled.id,
                "callable": cancelled.callable_name,
                "queue": admin.queue_label(cancelled.queue.name),
                "callbacks": len(callbacks),
                "cancel_requested": requested,
            }
        )
