"""The demo page ``@@zasync-demo`` and its job list ``@@zasync-demo-jobs``.

The page queues the jobs of :mod:`zasync.plone.demo.jobs` on a POST that
carries plone.protect's authenticator, and lists the jobs queued from it.
It finds them through the ids it keeps in an annotation of the demo folder
(the last :data:`KEEP` of them, newest first), looked up in the queues by
id: it never scans a queue. A job pruned from its queue is not shown.

Each user sees the jobs they queued themselves (the user recorded in the
job's environment: the same id in the same user folder): results and
tracebacks may tell about content of others. Those with the permission
*zasync: View all demo jobs* on the site (Managers and Site Administrators)
see everyone's.

Every text they show is a message id of the ``zasync`` domain, translated
for the request; the JSON view gives the texts translated as well, as the
page's script shows them.
"""

import re

from AccessControl import getSecurityManager
from Acquisition import aq_inner, aq_parent
from persistent.list import PersistentList
from plone.protect.authenticator import check, createToken
from Products.Five import BrowserView
from Products.Five.browser.pagetemplatefile import ViewPageTemplateFile
from Products.statusmessages.interfaces import IStatusMessage
from zExceptions import Unauthorized
from zope.annotation.interfaces import IAnnotations
from zope.component import getUtility
from zope.i18n import translate
from zope.i18nmessageid import Message

from plone import api
from zasync.admin import job_summary
from zasync.failure import Failure
from zasync.plone import statuses
from zasync.plone.demo import jobs
from zasync.plone.demo.permissions import VIEW_ALL_JOBS
from zasync.plone.i18n import _
from zasync.plone.interfaces import IAsyncService
from zasync.plone.jsonview import json_response
from zasync.status import COMPLETED
from zasync.storable import callable_name

#: The annotation of the demo folder that holds the ids of its jobs.
ANNOTATION_KEY = "zasync.plone.demo.jobs"
#: How many job ids the demo folder keeps.
KEEP = 50
#: What the slow job does when queued from the page.
SLOW_STEPS = 10
SLOW_PAUSE = 0.5
#: Created paths shown in a result before "and N more".
SHOWN_PATHS = 3

#: The jobs the page queues: the ``job`` of the form -> (label, function).
ACTIONS = {
    "create": (
        _("demo_job_create", default="Create documents"),
        jobs.create_documents,
    ),
    "publish": (
        _("demo_job_publish", default="Publish the folder's contents"),
        jobs.publish_contents,
    ),
    "progress": (
        _("demo_job_progress", default="Count slowly, with progress"),
        jobs.count_slowly,
    ),
    "fail": (_("demo_job_fail", default="Fail on purpose"), jobs.fail_on_purpose),
}
LABELS = {callable_name(func): label for label, func in ACTIONS.values()}

ANONYMOUS = _("demo_anonymous", default="Anonymous")


def _pattern(message):
    """A regular expression matching the English text of ``message``, with a
    named group for each ``${name}``."""
    parts = re.split(r"\$\{(\w+)\}", message.default)
    pattern = "".join(
        re.escape(part) if index % 2 == 0 else f"(?P<{part}>.*?)"
        for index, part in enumerate(parts)
    )
    return re.compile(pattern + r"\Z")


#: The English texts the jobs keep (progress, their failure's message),
#: recognized again to be shown translated.
KNOWN_TEXTS = [
    (message, _pattern(message))
    for message in (*jobs.PROGRESS_MESSAGES, jobs.FAILURE_MESSAGE)
]


# -- the demo folder and its jobs -------------------------------------------


def demo_folder(portal):
    """The demo folder of ``portal``, or None if there is none yet."""
    return portal.get(jobs.DEMO_FOLDER_ID)


def create_demo_folder(portal, request=None):
    """Create the demo folder as the current user (who needs the right to
    add a Folder to the site), titled in the language of ``request``."""
    return api.content.create(
        container=portal,
        type="Folder",
        id=jobs.DEMO_FOLDER_ID,
        title=translate(_("demo_folder_title", default="zasync demo"), context=request),
        description=translate(
            _(
                "demo_folder_description",
                default="Documents created by the jobs of the zasync demo page.",
            ),
            context=request,
        ),
    )


def remembered_ids(folder):
    """The ids of the jobs queued from the demo, oldest first."""
    if folder is None:
        return []
    return list(IAnnotations(folder).get(ANNOTATION_KEY, ()))


def remember(folder, job):
    """Keep ``job``'s id on the demo folder (the last KEEP ids only)."""
    annotations = IAnnotations(folder)
    ids = annotations.get(ANNOTATION_KEY)
    if ids is None:
        ids = annotations[ANNOTATION_KEY] = PersistentList()
    ids.append(job.id)
    if len(ids) > KEEP:
        del ids[:-KEEP]


def current_queuer():
    """(user id, path of their user folder) of the current user, as a job
    queued now records them in its environment; (None, None) for
    Anonymous."""
    user = getSecurityManager().getUser()
    user_id = None if user is None else user.getId()
    if user_id is None:
        return None, None
    folder = aq_parent(aq_inner(user))
    path = getattr(folder, "getPhysicalPath", None)
    return user_id, None if path is None else tuple(path())


def queued_by(job):
    """(user id, user folder path) of who queued ``job``, from its
    environment; (None, None) if it records none."""
    environment = job.environment
    path = getattr(environment, "user_folder_path", None)
    return (
        getattr(environment, "user_id", None),
        None if path is None else tuple(path),
    )


def demo_jobs(folder, queuer=None):
    """The demo's jobs still in the queues, newest first: all of them, or
    those queued by ``queuer`` (as :func:`current_queuer` gives it)."""
    ids = remembered_ids(folder)
    if not ids:
        return []
    queues = getUtility(IAsyncService).getQueues()
    found = (queues.find_job(job_id) for job_id in reversed(ids))
    return [
        job
        for job in found
        if job is not None and (queuer is None or queued_by(job) == queuer)
    ]


# -- what the page and the JSON show of a job ----------------------------------


def _iso(when):
    return None if when is None else when.isoformat()


def _clock(when):
    return "" if when is None else f"{when:%H:%M:%S}"


def translated_text(text, request=None):
    """``text`` a job keeps (its progress message, the message of its
    failure) translated for ``request`` if it is one of the demo jobs'
    :data:`KNOWN_TEXTS`; as it is otherwise."""
    if not isinstance(text, str) or not text:
        return text
    for message, pattern in KNOWN_TEXTS:
        match = pattern.match(text)
        if match is not None:
            return translate(
                Message(message, mapping=match.groupdict()), context=request
            )
    return text


def _created_text(result, request):
    paths = list(result.get("paths", ()))
    count = result["created"]
    title = result.get("title")
    mapping = {"count": str(count), "title": title}
    if title and count == 1:
        message = _(
            "demo_result_created_one_titled",
            default="Created 1 document titled “${title} 1”",
            mapping=mapping,
        )
    elif title and count:
        message = _(
            "demo_result_created_titled",
            default="Created ${count} documents titled “${title} 1” to "
            "“${title} ${count}”",
            mapping=mapping,
        )
    elif count == 1:
        message = _("demo_result_created_one", default="Created 1 document")
    else:
        message = _(
            "demo_result_created", default="Created ${count} documents", mapping=mapping
        )
    if not paths:
        return translate(message, context=request)
    shown = ", ".join(paths[:SHOWN_PATHS])
    if len(paths) > SHOWN_PATHS:
        shown = _(
            "demo_result_more_paths",
            default="${paths} and ${more} more",
            mapping={"paths": shown, "more": str(len(paths) - SHOWN_PATHS)},
        )
    # The inner texts translated first: without a catalog for the domain,
    # zope.i18n would fill in a message id's msgid, not its default.
    return translate(
        _(
            "demo_result_with_paths",
            default="${result}: ${paths}",
            mapping={
                "result": translate(message, context=request),
                "paths": translate(shown, context=request),
            },
        ),
        context=request,
    )


def describe_result(result, request=None):
    """A short text for the result of a demo job, in the language of
    ``request``."""
    if isinstance(result, dict):
        if "created" in result:
            return _created_text(result, request)
        if "published" in result:
            return translate(
                _(
                    "demo_result_published",
                    default="Published ${published}; ${already} already "
                    "published, ${refused} refused",
                    mapping={
                        "published": str(result["published"]),
                        "already": str(result.get("already_published", 0)),
                        "refused": str(result.get("refused", 0)),
                    },
                ),
                context=request,
            )
        if "steps" in result:
            return translate(
                _(
                    "demo_result_steps",
                    default="${steps} steps in ${seconds} s",
                    mapping={
                        "steps": str(result["steps"]),
                        "seconds": str(result.get("seconds")),
                    },
                ),
                context=request,
            )
    text = repr(result)
    return text if len(text) <= 300 else text[:299] + "…"


def job_info(job, request=None):
    """Plain data about one job, for the page and the JSON view: its texts
    in the language of ``request``."""
    done = job.status == COMPLETED
    result = job.result if done else None
    failure = result if isinstance(result, Failure) else None
    status = job_summary(job)["status"]
    progress = job.progress
    fraction = message = None
    if progress is not None:
        fraction, message = progress
        fraction = max(0.0, min(1.0, float(fraction)))
    environment = job.environment
    user = getattr(environment, "user_id", None)
    label = LABELS.get(job.callable_name)
    percent = None if fraction is None else round(fraction * 100)
    return {
        # Job ids do not fit in a JavaScript number: a string.
        "id": str(job.id),
        "job": (
            job.callable_name if label is None else translate(label, context=request)
        ),
        "callable": job.callable_name,
        "status": status,
        "status_text": translate(statuses.label(status), context=request),
        "badge": statuses.badge(status),
        "done": done,
        "failed": failure is not None,
        "progress": fraction,
        "percent": percent,
        "percent_text": (
            None
            if percent is None
            else translate(
                _("percent", default="${percent}%", mapping={"percent": percent}),
                context=request,
            )
        ),
        "progress_message": translated_text(message, request),
        "queued": _iso(job.queued),
        "started": _iso(job.started),
        "ended": _iso(job.ended if done else None),
        "queued_time": _clock(job.queued),
        "started_time": _clock(job.started),
        "ended_time": _clock(job.ended if done else None),
        "result": (
            describe_result(result, request) if done and failure is None else None
        ),
        "error": (
            None
            if failure is None
            else f"{failure.type_name}: "
            f"{translated_text(failure.getErrorMessage(), request)}"
        ),
        "traceback": None if failure is None else failure.getTraceback(),
        "user": translate(ANONYMOUS, context=request) if user is None else user,
    }


# -- the views ----------------------------------------------------------------


class DemoBase(BrowserView):
    @property
    def portal(self):
        return api.portal.get()

    def sees_all(self):
        """May the current user see every user's jobs, or only theirs?"""
        return bool(getSecurityManager().checkPermission(VIEW_ALL_JOBS, self.portal))

    def jobs(self):
        """The demo jobs the current user may see, as plain data."""
        cached = getattr(self, "_jobs", None)
        if cached is None:
            queuer = None if self.sees_all() else current_queuer()
            if queuer == (None, None):  # Anonymous: the views refuse them
                cached = []
            else:
                found = demo_jobs(demo_folder(self.portal), queuer)
                cached = [job_info(job, self.request) for job in found]
            self._jobs = cached
        return cached

    def running(self):
        return any(not info["done"] for info in self.jobs())

    def empty_text(self):
        if self.sees_all():
            message = _(
                "demo_empty_all", default="No job was queued from this page yet."
            )
        else:
            message = _(
                "demo_empty_own",
                default="You have not queued a job from this page yet.",
            )
        return translate(message, context=self.request)


class DemoView(DemoBase):
    """The page: forms that queue the demo jobs, and the jobs' table."""

    index = ViewPageTemplateFile("templates/demo.pt")

    error = None
    keep = KEEP
    max_documents = jobs.MAX_DOCUMENTS
    slow_steps = SLOW_STEPS
    slow_pause = SLOW_PAUSE

    def __call__(self):
        if self.request.method == "POST":
            # Forbidden without plone.protect's token: nothing is queued.
            check(self.request)
            job = self.queue_from_form()
            if job is not None:
                message = _(
                    "demo_queued",
                    default="Queued job ${id}: ${job}. It runs in the background "
                    "as you; watch it below.",
                    mapping={
                        "id": str(job.id),
                        "job": translate(
                            LABELS[job.callable_name], context=self.request
                        ),
                    },
                )
                IStatusMessage(self.request).add(
                    translate(message, context=self.request), type="info"
                )
                self.request.response.redirect(self.page_url())
                return ""
        return self.index()

    def page_url(self):
        return f"{self.portal.absolute_url()}/@@zasync-demo"

    def jobs_url(self):
        return f"{self.portal.absolute_url()}/@@zasync-demo-jobs"

    def folder_path(self):
        return f"/{jobs.DEMO_FOLDER_ID}"

    def folder_url(self):
        folder = demo_folder(self.portal)
        return None if folder is None else folder.absolute_url()

    def user_name(self):
        user = api.user.get_current()
        fullname = (
            user.getProperty("fullname", "") if hasattr(user, "getProperty") else ""
        )
        return fullname or user.getUserName()

    def token(self):
        return createToken()

    def count_value(self):
        return self.request.form.get("count", "5")

    def title_value(self):
        title = self.request.form.get("title")
        if title is None:
            title = translate(
                _("demo_default_title", default="Demo document"), context=self.request
            )
        return title

    def show_error(self, message):
        """Show ``message`` (a message id) as the page's error."""
        self.error = translate(message, context=self.request)

    def queue_from_form(self):
        """Queue the job the form asks for and return it; None, with
        ``self.error`` saying why, if the form is wrong."""
        form = self.request.form
        action = form.get("job")
        if action not in ACTIONS:
            self.show_error(
                _(
                    "demo_error_unknown_job",
                    default="Unknown job ${job}: use one of the buttons of this page.",
                    mapping={"job": repr(action)},
                )
            )
            return None
        args = ()
        kwargs = {}
        if action == "create":
            try:
                args = (
                    jobs.check_count(form.get("count", "")),
                    jobs.check_title(form.get("title", "")),
                )
            except jobs.InvalidInput as exc:
                self.show_error(
                    _(
                        "demo_error_not_queued",
                        default="${error} No job was queued.",
                        mapping={"error": translate(exc.message, context=self.request)},
                    )
                )
                return None
        elif action == "progress":
            kwargs = {"steps": SLOW_STEPS, "pause": SLOW_PAUSE}
        folder = demo_folder(self.portal)
        if folder is None:
            try:
                folder = create_demo_folder(self.portal, self.request)
            except Unauthorized:
                self.show_error(
                    _(
                        "demo_error_no_folder",
                        default="The demo folder ${path} does not exist yet and "
                        "you may not add a folder to the site: ask a Manager to "
                        "queue a first job. No job was queued.",
                        mapping={"path": self.folder_path()},
                    )
                )
                return None
        func = ACTIONS[action][1]
        job = getUtility(IAsyncService).queueJob(func, folder, *args, **kwargs)
        remember(folder, job)
        return job


class DemoJobsJSON(DemoBase):
    """The demo's jobs as JSON: ``{"running": bool, "jobs": [...]}``, newest
    first, each job a dict of plain data (see :func:`job_info`)."""

    def __call__(self):
        data = {"running": self.running(), "jobs": self.jobs()}
        return json_response(self.request, data)
