"""POST views for bench_plone.py; each says how many times the publisher
retried the request (a ConflictError) before this answer."""

from plone.protect.authenticator import check, createToken
from Products.Five import BrowserView
from zExceptions import BadRequest
from zope.component import getUtility

from zasync.plone.interfaces import IAsyncService
from zasync_bench_plone import jobs


class _Post(BrowserView):
    def __call__(self):
        if self.request.method != "POST":
            raise BadRequest("POST only")
        check(self.request)  # plone.protect: the _authenticator token
        self.work()
        return f"ok retries={self.request.retry_count}"

    def work(self):
        pass


class QueueOne(_Post):
    """Queue one trivial job as the current user, in this site."""

    def work(self):
        getUtility(IAsyncService).queueJob(jobs.nothing, self.context)


class Baseline(_Post):
    """The same request, without the job."""


class Token(BrowserView):
    """The CSRF token for this user's POSTs."""

    def __call__(self):
        return createToken()
