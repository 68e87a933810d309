"""The jobs dashboard ``@@zasync-jobs`` (permission "zasync: Manage jobs").

One view on the site root answers these URLs (the rest of the path is
taken by publishTraverse):

- ``@@zasync-jobs``: the overview: queues, dispatchers, quotas (editable),
  set-aside jobs (put back, discard);
- ``@@zasync-jobs/list``: the jobs, filtered and paged; POST: a bulk retry,
  cancel or delete of the selected jobs or of every job the filter matches;
- ``@@zasync-jobs/job/<id>``: one job; POST: retry, cancel or delete it;
- ``@@zasync-jobs/recurring``: the recurring jobs; POST: pause, resume or
  run one now (recurring.py);
- ``@@zasync-jobs/quota`` and ``@@zasync-jobs/set-aside``: POST only, the
  overview's forms;
- ``@@zasync-jobs/json``, ``@@zasync-jobs/list/json?ids=...`` and
  ``@@zasync-jobs/job/<id>/json``: what the pages' script polls.

The data come from :mod:`zasync.plone.dashboard.data` (plain data built on
zasync.admin). Every POST needs plone.protect's authenticator (else
Forbidden, and nothing changes) and answers with a redirect to a page
whose status message says what was done and what could not be, and why.
The queues are those of the site's database: every site of that database
shares them, and the dashboard shows the jobs of all of them.
"""

from urllib.parse import urlencode

from AccessControl import getSecurityManager
from plone.protect.authenticator import check, createToken
from Products.Five import BrowserView
from Products.Five.browser.pagetemplatefile import ViewPageTemplateFile
from Products.statusmessages.interfaces import IStatusMessage
from zExceptions import BadRequest, NotFound
from zope.i18n import translate
from zope.interface import implementer
from zope.publisher.interfaces import IPublishTraverse

from plone import api
from zasync import admin, clock
from zasync.admin import AdminError
from zasync.plone import statuses
from zasync.plone.dashboard import data
from zasync.plone.dashboard.recurring import RecurringPage
from zasync.plone.i18n import _
from zasync.plone.jsonview import json_response
from zasync.plone.service import site_queues

#: Jobs per page of the list, by default and at most.
PAGE_SIZE = 50
MAX_PAGE_SIZE = 200
#: What the list's and a job's buttons do.
JOB_ACTIONS = ("retry", "cancel", "delete")
#: The list's filters: request field -> keyword of data.list_jobs.
FILTERS = (
    "status",
    "queue",
    "callable",
    "user",
    "site",
    "older",
    "newer",
    "error",
)

BADGES = statuses.BADGES
STATUS_LABELS = statuses.LABELS

ACTION_LABELS = {
    "retry": _("action_retry", default="Retry"),
    "cancel": _("action_cancel", default="Cancel"),
    "delete": _("action_delete", default="Delete"),
    "put-back": _("action_put_back", default="Put back"),
    "discard": _("action_discard", default="Discard"),
}


_json = json_response


def when(value):
    """A UTC time as the pages show it."""
    return "" if value is None else f"{value:%Y-%m-%d %H:%M:%S}"


def duration(seconds):
    return "" if seconds is None else admin.format_duration(seconds)


def period(seconds):
    return admin.format_period(seconds)


@implementer(IPublishTraverse)
class JobsDashboard(RecurringPage, BrowserView):
    """See the module's docstring."""

    overview_template = ViewPageTemplateFile("templates/overview.pt")
    list_template = ViewPageTemplateFile("templates/list.pt")
    job_template = ViewPageTemplateFile("templates/job.pt")
    #: The navigation and progress bar the pages share.
    macros_template = ViewPageTemplateFile("templates/macros.pt")

    #: What publishTraverse took of the path after @@zasync-jobs.
    subpath = ()
    #: Why the list's filters are wrong, if they are (shown on the page).
    filter_error = None

    badges = BADGES
    when = staticmethod(when)
    duration = staticmethod(duration)
    period = staticmethod(period)

    def publishTraverse(self, request, name):
        if len(self.subpath) >= 3:
            raise NotFound(name)
        self.subpath = (*self.subpath, name)
        return self

    def __call__(self):
        path = self.subpath
        if path == ():
            return self.overview_template()
        if path == ("json",):
            return self.overview_json()
        if path == ("list",):
            if self.request.method == "POST":
                return self.bulk_action()
            return self.list_page()
        if path == ("list", "json"):
            return self.list_json()
        if path == ("quota",):
            return self.edit_quota()
        if path == ("set-aside",):
            return self.set_aside_action()
        if path == ("recurring",):
            return self.recurring_page()
        if len(path) in (2, 3) and path[0] == "job":
            if len(path) == 3 and path[2] != "json":
                raise NotFound(path[2])
            self.job_id = path[1]
            if len(path) == 3:
                return self.job_json()
            if self.request.method == "POST":
                return self.job_action()
            return self.job_page()
        raise NotFound("/".join(path))

    # -- shared ----------------------------------------------------------

    @property
    def queues(self):
        return site_queues()

    @property
    def base_url(self):
        return f"{api.portal.get().absolute_url()}/@@zasync-jobs"

    def url(self, *parts, **query):
        url = "/".join((self.base_url, *map(str, parts)))
        query = {k: v for k, v in query.items() if v not in (None, "")}
        return f"{url}?{urlencode(query)}" if query else url

    def job_url(self, job_id):
        return self.url("job", job_id)

    def token(self):
        return createToken()

    def status_label(self, status):
        label = STATUS_LABELS.get(status)
        return status if label is None else translate(label, context=self.request)

    def t(self, message):
        return translate(message, context=self.request)

    def say(self, message, kind="info"):
        IStatusMessage(self.request).add(self.t(message), type=kind)

    def require_post(self):
        """Refuse anything but a POST with a valid authenticator: nothing
        changes otherwise."""
        if self.request.method != "POST":
            self.request.response.setStatus(405)
            raise BadRequest(
                self.t(
                    _(
                        "error_post_only",
                        default="This address only takes the dashboard's forms "
                        "(POST); open ${url} instead.",
                        mapping={"url": self.base_url},
                    )
                )
            )
        check(self.request)  # Forbidden without plone.protect's token

    def redirect(self, url):
        self.request.response.redirect(url)
        return ""

    def actor(self):
        user = getSecurityManager().getUser()
        return f"{user.getId() or user.getUserName()} (jobs dashboard)"

    def report_outcome(self, action, done, refused, more=False):
        """Status messages saying what an action did and what it could not."""
        label = self.t(ACTION_LABELS[action])
        asked = [d for d in done if d.get("requested")]
        done = [d for d in done if not d.get("requested")]
        if asked:
            self.say(
                _(
                    "msg_cancel_requested",
                    default="Cancel requested for running job(s) ${ids}: each "
                    "stops at its next check (zasync.local.check_cancelled); one "
                    "whose code never checks runs on until it ends or reaches "
                    "its time limit.",
                    mapping={"ids": ", ".join(str(d["id"]) for d in asked)},
                ),
            )
        if done:
            ids = ", ".join(
                str(d["id"]) + (f" → {d['new_id']}" if d["new_id"] else "")
                for d in done
            )
            self.say(
                _(
                    "msg_done",
                    default="${action}: done for ${count} job(s): ${ids}.",
                    mapping={"action": label, "count": len(done), "ids": ids},
                ),
            )
        for each in refused:
            self.say(
                _(
                    "msg_refused",
                    default="${action} job ${id}: not done: ${error}",
                    mapping={"action": label, "id": each["id"], "error": each["error"]},
                ),
                "error",
            )
        if not done and not refused and not asked:
            self.say(
                _(
                    "msg_nothing_selected",
                    default="No job was selected: nothing was done. Tick the jobs "
                    "first, or use the buttons for every job the filter matches.",
                ),
                "warning",
            )
        if more:
            self.say(
                _(
                    "msg_more_left",
                    default="Only the first ${limit} matching jobs were handled "
                    "in one go; press the button again for the rest.",
                    mapping={"limit": data.BULK_LIMIT},
                ),
                "warning",
            )

    # -- overview ----------------------------------------------------------

    def overview(self):
        cached = getattr(self, "_overview", None)
        if cached is None:
            cached = self._overview = data.overview(self.queues)
        return cached

    def overview_json(self):
        report = self.overview()
        return _json(
            self.request,
            {
                "time": report["time"],
                "queues": [
                    {
                        "label": q["label"],
                        "counts": q["counts"],
                        "throughput": q["throughput"],
                        "oldest_pending": q["oldest_pending"],
                        "dispatchers": [
                            {
                                "uuid": d["uuid"],
                                "alive": d["alive"],
                                "heartbeat_age": d["heartbeat_age"],
                                "threads_busy": d["threads_busy"],
                                "threads_idle": d["threads_idle"],
                                "jobs": d["jobs"],
                            }
                            for d in q["dispatchers"]
                        ],
                    }
                    for q in report["queues"]
                ],
                "set_aside": len(report["set_aside"]),
            },
        )

    def list_url_for(self, queue_label, status):
        return self.url("list", queue=queue_label, status=status)

    def edit_quota(self):
        self.require_post()
        form = self.request.form
        name = form.get("quota", "")
        queue = form.get("queue") or None
        if form.get("action") in ("pause", "resume"):
            return self.pause_quota(name, queue, form["action"])
        try:
            size = int(str(form.get("size", "")).strip())
        except ValueError:
            self.say(
                _(
                    "error_quota_size",
                    default="The size of quota '${quota}' must be a whole number, "
                    "0 or more (0 pauses its jobs), not '${size}'. Nothing was "
                    "changed.",
                    mapping={"quota": name, "size": form.get("size", "")},
                ),
                "error",
            )
            return self.redirect(self.base_url + "#quotas")
        try:
            changed = admin.set_quota_size(self.queues, name, size, queue=queue)
        except AdminError as exc:
            self.say(
                _(
                    "error_quota",
                    default="Quota '${quota}' was not changed: ${error}",
                    mapping={"quota": name, "error": str(exc)},
                ),
                "error",
            )
        else:
            self.say(
                _(
                    "msg_quota_set",
                    default="Quota '${quota}' of queue '${queue}': ${size} "
                    "job(s) at once (was ${was}).",
                    mapping={
                        "quota": changed["quota"],
                        "queue": changed["queue"],
                        "size": changed["size"],
                        "was": changed["was"],
                    },
                )
            )
        return self.redirect(self.base_url + "#quotas")

    def pause_quota(self, name, queue, action):
        """Pause or resume quota ``name`` of ``queue``, cluster-wide."""
        try:
            if action == "pause":
                done = admin.pause_quota(self.queues, name, queue, by=self.actor())
            else:
                done = admin.resume_quota(self.queues, name, queue)
        except AdminError as exc:
            self.say(
                _(
                    "error_quota",
                    default="Quota '${quota}' was not changed: ${error}",
                    mapping={"quota": name, "error": str(exc)},
                ),
                "error",
            )
            return self.redirect(self.base_url + "#quotas")
        mapping = {"quota": done["quota"], "queue": done["queue"]}
        if action == "pause":
            message = _(
                "msg_quota_paused",
                default="Quota '${quota}' of queue '${queue}' is paused: no job "
                "naming it is claimed; running jobs finish.",
                mapping=mapping,
            )
        elif done["was_paused"]:
            message = _(
                "msg_quota_resumed",
                default="Quota '${quota}' of queue '${queue}' is resumed: its "
                "jobs are claimed again.",
                mapping=mapping,
            )
        else:
            message = _(
                "msg_quota_not_paused",
                default="Quota '${quota}' of queue '${queue}' was not paused.",
                mapping=mapping,
            )
        self.say(message)
        return self.redirect(self.base_url + "#quotas")

    def set_aside_action(self):
        self.require_post()
        form = self.request.form
        action = form.get("action")
        job_id = form.get("id", "")
        if action in ("put-back", "discard"):
            done, refused = self._act(action, [job_id])
            self.report_outcome(action, done, refused)
        else:
            self.say(
                _(
                    "error_set_aside_action",
                    default="Unknown action '${action}': use the Put back or "
                    "Discard button of a set-aside job.",
                    mapping={"action": action or ""},
                ),
                "error",
            )
        return self.redirect(self.base_url + "#set-aside")

    # -- the list -----------------------------------------------------------

    def filters(self):
        """The filter fields as given (text), for the form and links."""
        form = self.request.form
        return {name: str(form.get(name, "") or "").strip() for name in FILTERS}

    def list_arguments(self, values):
        """The keywords of data.list_jobs for the filter ``values``;
        AdminError saying what to fix if one is wrong."""
        status = values["status"] or None
        if status is not None and status not in admin.STATUS_FILTERS:
            raise AdminError(
                self.t(
                    _(
                        "error_status",
                        default="Unknown status '${status}': choose one of the list.",
                        mapping={"status": status},
                    )
                )
            )
        ages = {}
        for name in ("older", "newer"):
            if values[name]:
                try:
                    ages[name] = admin.parse_duration(values[name])
                except ValueError as exc:
                    raise AdminError(str(exc)) from None
        return {
            "status": status,
            "queue": values["queue"] or None,
            "callable": values["callable"] or None,
            "user": values["user"] or None,
            "site": values["site"] or None,
            "older_than": ages.get("older"),
            "newer_than": ages.get("newer"),
            "error": values["error"] or None,
        }

    def paging(self):
        form = self.request.form
        try:
            start = max(0, int(form.get("start", 0) or 0))
        except ValueError:
            start = 0
        try:
            size = int(form.get("size", PAGE_SIZE) or PAGE_SIZE)
        except ValueError:
            size = PAGE_SIZE
        return start, max(1, min(MAX_PAGE_SIZE, size))

    def page(self):
        """``{"rows", "more", "start", "size", "prev_url", "next_url"}`` of
        the list; empty, with ``self.filter_error`` set, for bad filters."""
        cached = getattr(self, "_page", None)
        if cached is not None:
            return cached
        values = self.filters()
        start, size = self.paging()
        rows, more = [], False
        try:
            rows, more = data.list_jobs(
                self.queues, start=start, limit=size, **self.list_arguments(values)
            )
        except AdminError as exc:
            self.filter_error = str(exc)
        query = {**values, "size": size if size != PAGE_SIZE else None}
        self._page = {
            "rows": rows,
            "more": more,
            "start": start,
            "size": size,
            "first": start + 1 if rows else 0,
            "last": start + len(rows),
            "prev_url": (
                self.url("list", **query, start=max(0, start - size) or None)
                if start
                else None
            ),
            "next_url": self.url("list", **query, start=start + size) if more else None,
        }
        return self._page

    def status_options(self):
        return [("", self.t(_("filter_any_status", default="any status")))] + [
            (status, self.status_label(status)) for status in admin.STATUS_FILTERS
        ]

    def queue_options(self):
        return [admin.queue_label(name) for name in self.queues]

    def list_page(self):
        return self.list_template()

    def list_query(self):
        """The list's URL with the filters and paging it shows."""
        start, size = self.paging()
        return self.url(
            "list",
            **self.filters(),
            start=start or None,
            size=size if size != PAGE_SIZE else None,
        )

    def bulk_action(self):
        self.require_post()
        form = self.request.form
        bulk = str(form.get("bulk", ""))
        action, _sep, scope = bulk.partition("-")
        back = self.list_query()
        if action not in JOB_ACTIONS or scope not in ("selected", "filter"):
            self.say(
                _(
                    "error_bulk",
                    default="Unknown bulk action '${bulk}': use the buttons "
                    "under the list.",
                    mapping={"bulk": bulk},
                ),
                "error",
            )
            return self.redirect(back)
        more = False
        if scope == "selected":
            ids = form.get("ids", [])
            ids = [ids] if isinstance(ids, str) else list(ids)
        else:
            try:
                arguments = self.list_arguments(self.filters())
            except AdminError as exc:
                self.say(
                    _(
                        "error_filter",
                        default="The filter is wrong, nothing was done: ${error}",
                        mapping={"error": str(exc)},
                    ),
                    "error",
                )
                return self.redirect(back)
            ids, more = data.matching_ids(self.queues, **arguments)
        done, refused = self._act(action, ids)
        self.report_outcome(action, done, refused, more)
        return self.redirect(back)

    def _act(self, action, ids):
        return data.act_on_jobs(self.queues, action, ids, self.actor())

    def list_json(self):
        raw = str(self.request.form.get("ids", ""))
        ids = [part for part in raw.split(",") if part.strip()][:MAX_PAGE_SIZE]
        rows = data.live_rows(self.queues, ids)
        for row in rows.values():
            row["label"] = self.status_label(row["status"])
            row["badge"] = BADGES.get(row["status"], "text-bg-secondary")
        return _json(
            self.request, {"time": clock.utcnow(), "jobs": list(rows.values())}
        )

    # -- one job --------------------------------------------------------------

    def job(self):
        """The job's detail (data.job_detail); NotFound if there is none."""
        cached = getattr(self, "_job", None)
        if cached is None:
            try:
                job = admin.get_job(self.queues, self.job_id)
            except AdminError as exc:
                raise NotFound(str(exc)) from None
            cached = self._job = data.job_detail(job)
        return cached

    def job_page(self):
        self.job()
        return self.job_template()

    def job_json(self):
        info = self.job()
        return _json(
            self.request,
            {
                "id": info["id"],
                "status": info["status"],
                "label": self.status_label(info["status"]),
                "badge": BADGES.get(info["status"], "text-bg-secondary"),
                "done": info["done"],
                "progress": info["progress"],
                "live_annotations": info["live_annotations"],
                "started": info["started"],
                "ended": info["ended"],
                "attempts": info["attempts"],
                "result": info["result"],
                "error": info["error"],
            },
        )

    def job_action(self):
        self.require_post()
        action = self.request.form.get("action")
        if action not in JOB_ACTIONS:
            self.say(
                _(
                    "error_job_action",
                    default="Unknown action '${action}': use the job's buttons.",
                    mapping={"action": action or ""},
                ),
                "error",
            )
            return self.redirect(self.job_url(self.job_id))
        done, refused = self._act(action, [self.job_id])
        self.report_outcome(action, done, refused)
        if done and action == "delete":
            return self.redirect(self.url("list"))
        if done and done[0]["new_id"]:
            return self.redirect(self.job_url(done[0]["new_id"]))
        return self.redirect(self.job_url(self.job_id))
