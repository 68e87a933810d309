"""Notices of finished jobs: "your job finished" on the user's next page.

A job is watched by :func:`notify_when_done` (``IAsyncService.
notifyWhenDone``, or ``@asyncfunction(notify=True)``) in the request that
queues it: its id goes into a cookie of the user's browser, for the site's
path. On each page of the site that shows Plone's status messages, the
viewlet :class:`JobNoticesViewlet` looks up the watched jobs; for each one
that has finished it shows a status message (succeeded, or failed and
why) and drops the id from the cookie. Jobs not finished yet stay watched.

Nothing is written to the database, so pages showing notices conflict
with nothing. A cookie can be forged: the viewlet only ever tells a user
about jobs that they queued (zasync.plone.queuers), and ignores any other
id.
"""

import re

from Acquisition import aq_base
from plone.app.layout.viewlets.common import ViewletBase
from plone.base.utils import safe_text
from Products.Five.browser.pagetemplatefile import ViewPageTemplateFile
from zope.component.hooks import getSite
from zope.globalrequest import getRequest
from zope.i18n import translate

from zasync.admin import get_job
from zasync.exceptions import JobNotFound
from zasync.plone import queuers
from zasync.plone.i18n import _
from zasync.plone.myjobs.info import shorten
from zasync.status import COMPLETED

#: The cookie holding the ids of the jobs a browser waits for.
COOKIE = "zasync_notify"
#: How many jobs one browser waits for at most (the oldest are dropped).
MAX_WATCHED = 20

_ID = re.compile(r"^[0-9]{1,19}$")


def _site_path(site):
    return site.absolute_url_path() or "/"


def watched_ids(request):
    """The job ids the request's browser waits for, oldest first: those set
    earlier in this response, else those of the request's cookie."""
    value = None
    pending = request.response.cookies.get(COOKIE)
    if pending is not None:
        value = pending.get("value", "")
    if value is None:
        value = request.cookies.get(COOKIE, "")
    ids = []
    for part in safe_text(value).split(" "):
        if _ID.match(part) and int(part) not in ids:
            ids.append(int(part))
    return ids[-MAX_WATCHED:]


def _set_watched(request, site, ids):
    path = _site_path(site)
    if ids:
        value = " ".join(str(job_id) for job_id in ids[-MAX_WATCHED:])
        request.response.setCookie(
            COOKIE, value, path=path, http_only=True, same_site="Lax"
        )
    else:
        request.response.expireCookie(COOKIE, path=path)


def notify_when_done(job, request=None):
    """Show the user of ``request`` (default: the current request) a status
    message on their next page in this site once ``job`` has finished.
    Returns the job. Without a request (a script) there is nobody to tell:
    ValueError."""
    request = getRequest() if request is None else request
    site = getSite()
    if request is None or getattr(request, "response", None) is None:
        raise ValueError(
            "notifyWhenDone needs the request of the user to tell: call it "
            "in the request that queues the job, not from a script."
        )
    if job.id is None or job.queue is None:
        raise ValueError(
            f"{job!r} is not queued yet: queue it first, then ask to be "
            f"notified when it is done."
        )
    ids = [job_id for job_id in watched_ids(request) if job_id != job.id]
    _set_watched(request, site, [*ids, job.id])
    return job


def finished_notice(job):
    """(message id, status message type) for a finished job."""
    name = job.callable_name.rpartition(".")[2] or job.callable_name
    if job.failed:
        failure = job.result
        error = shorten(f"{failure.type_name}: {failure.getErrorMessage()}", 200)
        return (
            _(
                "notice_job_failed",
                default="Your background job ${name} (${id}) failed: ${error}",
                mapping={"name": name, "id": str(job.id), "error": error},
            ),
            "error",
        )
    return (
        _(
            "notice_job_succeeded",
            default="Your background job ${name} (${id}) has finished.",
            mapping={"name": name, "id": str(job.id)},
        ),
        "info",
    )


def take_notices(request, site, queues):
    """The notices of the request's watched jobs that have finished, as
    (text, type); updates the cookie to the ones still to wait for."""
    ids = watched_ids(request)
    if not ids:
        return []
    notices, still = [], []
    for job_id in ids:
        try:
            job = get_job(queues, job_id)
        except JobNotFound:
            continue  # pruned, or never there
        if not queuers.queued_by(job):
            continue  # somebody else's: never told, never kept
        if job.status == COMPLETED:
            message, kind = finished_notice(job)
            notices.append((translate(message, context=request), kind))
        else:
            still.append(job_id)
    if still != ids:
        _set_watched(request, site, still)
    return notices


class JobNoticesViewlet(ViewletBase):
    """The notices of finished jobs, beside Plone's status messages."""

    index = ViewPageTemplateFile("templates/notices.pt")
    notices = ()

    def update(self):
        super().update()
        if not watched_ids(self.request):
            return
        from zasync.plone.service import site_queues

        site = getSite()
        if site is None or getattr(aq_base(site), "_p_jar", None) is None:
            return
        self.notices = take_notices(self.request, site, site_queues())

    def my_jobs_url(self):
        return f"{self.site_url}/@@my-jobs"
