"""``@@my-jobs``: the jobs the current user queued in this site, and
``@@my-jobs-json``, the same as JSON for the page's live updates.

Both are on the site root with the permission View and refuse Anonymous
(Unauthorized: Plone asks them to log in). They list only the current
user's own jobs, found through the site's index of who queued what
(zasync.plone.queuers), never a scan of the queues, newest first,
:data:`PAGE_SIZE` at a time.
"""

from Products.Five import BrowserView
from Products.Five.browser.pagetemplatefile import ViewPageTemplateFile
from zExceptions import Unauthorized
from zope.component.hooks import getSite
from zope.i18n import translate

from zasync.plone import queuers
from zasync.plone.jsonview import json_response
from zasync.plone.myjobs.info import job_info

#: Jobs per page.
PAGE_SIZE = 30


class MyJobsBase(BrowserView):
    def key(self):
        key = queuers.user_key()
        if key is None:
            raise Unauthorized("Log in to see the jobs you queued.")
        return key

    def start(self):
        try:
            start = int(self.request.form.get("b_start", 0))
        except (TypeError, ValueError):
            start = 0
        return max(0, start)

    def page(self):
        """(plain data of this page's jobs, whether more follow)."""
        cached = getattr(self, "_page", None)
        if cached is None:
            from zasync.plone.service import site_queues

            found, more = queuers.jobs_of(
                getSite(),
                site_queues(),
                key=self.key(),
                start=self.start(),
                limit=PAGE_SIZE,
            )
            cached = self._page = (
                [job_info(job, self.translate) for job in found],
                more,
            )
        return cached

    def translate(self, message):
        return translate(message, context=self.request)

    def jobs(self):
        return self.page()[0]

    def running(self):
        return any(not info["done"] for info in self.jobs())

    def page_url(self):
        return f"{getSite().absolute_url()}/@@my-jobs"


class MyJobsView(MyJobsBase):
    """The page: a table of the user's jobs, updated while some run."""

    index = ViewPageTemplateFile("templates/my_jobs.pt")

    def __call__(self):
        self.key()
        return self.index()

    def json_url(self):
        return f"{getSite().absolute_url()}/@@my-jobs-json?b_start={self.start()}"

    def next_url(self):
        if not self.page()[1]:
            return None
        return f"{self.page_url()}?b_start={self.start() + PAGE_SIZE}"

    def previous_url(self):
        if self.start() == 0:
            return None
        return f"{self.page_url()}?b_start={max(0, self.start() - PAGE_SIZE)}"


class MyJobsJSON(MyJobsBase):
    """``{"running": bool, "more": bool, "jobs": [...]}``, each job the
    plain data of info.job_info."""

    def __call__(self):
        jobs, more = self.page()
        data = {"running": self.running(), "more": more, "jobs": jobs}
        return json_response(self.request, data)
