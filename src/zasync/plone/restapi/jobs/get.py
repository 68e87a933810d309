"""``GET @zasync-jobs`` (the list) and ``GET @zasync-jobs/{id}`` (one job).

Permission ``zope2.View`` in ZCML, and in code: Anonymous gets 401; a
user without "zasync: Manage jobs" sees only the jobs they queued (the
list is always ``mine`` for them, and another user's job is 404).
"""

from urllib.parse import urlencode

from zasync import admin, clock

# find_jobs's own matching, so that ``mine`` filters exactly as the rest.
from zasync.admin.reports import _age_time, _callable_matcher, _error_matcher
from zasync.plone import queuers
from zasync.plone.references import path_text
from zasync.plone.restapi.base import JOBS_SERVICE, ServiceError, ZasyncService

#: The batch size when ``b_size`` is not given, and the largest allowed.
DEFAULT_BATCH = 25
MAX_BATCH = 200

TRUE = ("1", "true", "yes", "on")
FALSE = ("0", "false", "no", "off", "")


def job_site(job):
    """The path of the site a job was queued in, or None."""
    path = getattr(getattr(job, "environment", None), "site_path", None)
    return None if path is None else path_text(path)


def who_and_where(job):
    """The user id that queued a job and the path of its site."""
    return {"user": queuers.queuer_id(job), "site": job_site(job)}


class JobsGet(ZasyncService):
    """See the module."""

    def reply(self):
        self.check_authenticated()
        if len(self.params) > 1:
            raise ServiceError(
                404,
                f"there is nothing at {JOBS_SERVICE}/{'/'.join(self.params)}; "
                f"GET {JOBS_SERVICE}/<id> describes a job",
            )
        if self.params:
            return self.reply_job()
        return self.reply_list()

    # -- one job ---------------------------------------------------------------

    def reply_job(self):
        job = self.visible_job(self.job_id_param())
        full = self._flag("full", False)
        data = admin.for_json(admin.describe_job(job, full=full))
        if not self.can_manage and data["assignee"] is not None:
            # Which machine runs it is the operators' business.
            data["assignee"].update(host=None, pid=None)
        data.update(who_and_where(job))
        data["@id"] = self.job_url(data["id"])
        return data

    # -- the list ----------------------------------------------------------------

    def _text(self, name):
        value = self.request.form.get(name)
        if value is None:
            return None
        if not isinstance(value, str):
            raise ServiceError(400, f"give {name!r} once, as text")
        return value.strip() or None

    def _flag(self, name, default):
        value = self.request.form.get(name)
        if value is None:
            return default
        text = str(value).strip().lower()
        if text in TRUE:
            return True
        if text in FALSE:
            return False
        raise ServiceError(400, f"{name!r} is true or false (1 or 0), not {value!r}")

    def _number(self, name, default, least, most=None):
        value = self.request.form.get(name)
        if value is None:
            return default
        text = str(value).strip()
        if not text.isdigit() or int(text) < least or (most and int(text) > most):
            upto = f" and at most {most}" if most else ""
            raise ServiceError(
                400,
                f"{name!r} must be a whole number of at least {least}{upto}, "
                f"not {value!r}",
            )
        return int(text)

    def _duration(self, name):
        text = self._text(name)
        if text is None:
            return None
        try:
            return admin.parse_duration(text)
        except ValueError as exc:
            raise ServiceError(400, f"{name}: {exc}") from None

    def filters(self):
        """The request's filters, checked (400 saying what to fix)."""
        found = {
            "status": self._text("status"),
            "queue": self._text("queue"),
            "callable": self._text("callable"),
            "error": self._text("error"),
            "older_than": self._duration("older_than"),
            "newer_than": self._duration("newer_than"),
            "user": self._text("user"),
            "site": self._text("site"),
        }
        if found["site"] is not None and found["site"] != "/":
            found["site"] = "/" + found["site"].strip("/")
        status = found["status"]
        if status is not None and status not in admin.STATUS_FILTERS:
            raise ServiceError(
                400,
                f"unknown status {status!r}; use one of "
                f"{', '.join(admin.STATUS_FILTERS)}",
            )
        return found

    def where(self, filters):
        """The user and site filters as a predicate on a job, or None."""
        user, site = filters["user"], filters["site"]
        if user is None and site is None:
            return None

        def matches(job):
            if user is not None and queuers.queuer_id(job) != user:
                return False
            return site is None or job_site(job) == site

        return matches

    def reply_list(self):
        b_start = self._number("b_start", 0, 0)
        b_size = self._number("b_size", DEFAULT_BATCH, 1, MAX_BATCH)
        filters = self.filters()
        # Without "zasync: Manage jobs", always one's own jobs.
        mine = self._flag("mine", False) or not self.can_manage
        queues = self.queues()
        try:
            if filters["queue"] is not None:
                admin.select_queues(queues, filters["queue"])  # 400 if unknown
            if mine:
                jobs, more, total = self._mine(queues, filters, b_start, b_size)
            else:
                jobs, more, total = self._all(queues, filters, b_start, b_size)
        except admin.AdminError as exc:
            raise ServiceError(400, str(exc)) from None
        items = []
        for job in jobs:
            item = admin.for_json(admin.job_summary(job))
            item.update(who_and_where(job))
            item["@id"] = self.job_url(item["id"])
            items.append(item)
        exact = total is not None
        if total is None:
            # At least what this batch shows, and one more if more match.
            total = b_start + len(items) + int(more) if items else 0
        result = {
            "@id": self._url(b_start, b_size),
            "items": items,
            "items_total": total,
            "items_total_exact": exact,
        }
        batching = self._batching(b_start, b_size, more, total if exact else None)
        if batching is not None:
            result["batching"] = batching
        return result

    def _all(self, queues, filters, b_start, b_size):
        jobs, more = admin.find_jobs(
            queues,
            status=filters["status"],
            queue=filters["queue"],
            callable=filters["callable"],
            older_than=filters["older_than"],
            newer_than=filters["newer_than"],
            error=filters["error"],
            where=self.where(filters),
            limit=b_size,
            start=b_start,
        )
        # Known when the end was reached. The queues' counts would not do
        # for the rest: they count the internal jobs (the callbacks of a
        # cancelled job) that listings leave out.
        total = b_start + len(jobs) if not more and (jobs or b_start == 0) else None
        return jobs, more, total

    def _mine(self, queues, filters, b_start, b_size):
        """The user's jobs from the site's index (newest first), filtered
        here: the index holds the newest few hundred of each user, so all
        of them are read and the total is exact."""
        jobs, _ = queuers.jobs_of(self.context, queues)
        wanted = self._matcher(filters)
        found = [job for job in jobs if wanted(job)]
        page = found[b_start : b_start + b_size]
        return page, len(found) > b_start + b_size, len(found)

    def _matcher(self, filters):
        now = clock.utcnow()
        status = filters["status"]
        queue = filters["queue"]
        queue = None if queue is None else admin.queue_name(queue)
        callable_matches = _callable_matcher(filters["callable"])
        in_error = _error_matcher(filters["error"])
        older = None if filters["older_than"] is None else now - filters["older_than"]
        newer = None if filters["newer_than"] is None else now - filters["newer_than"]
        where = self.where(filters)

        def wanted(job):
            summary = admin.job_summary(job)
            shown = summary["status"]
            completed = status == "completed" and shown in ("failed", "succeeded")
            if status is not None and status != shown and not completed:
                return False
            if queue is not None and (job.queue is None or job.queue.name != queue):
                return False
            if not callable_matches(job.callable_name) or not in_error(job):
                return False
            when = _age_time(job)
            if older is not None and (when is None or when >= older):
                return False
            if newer is not None and (when is None or when < newer):
                return False
            return where is None or where(job)

        return wanted

    # -- batching ------------------------------------------------------------------

    def _url(self, b_start, b_size):
        query = [
            (name, value)
            for name, value in sorted(self.request.form.items())
            if name not in ("b_start", "b_size") and isinstance(value, str)
        ]
        if b_start:
            query.append(("b_start", str(b_start)))
        if b_size != DEFAULT_BATCH:
            query.append(("b_size", str(b_size)))
        url = f"{self.site_url}/{JOBS_SERVICE}"
        return f"{url}?{urlencode(query)}" if query else url

    def _batching(self, b_start, b_size, more, total):
        """plone.restapi's ``batching`` links, or None if all fits in one
        batch; ``last`` only when the total is known."""
        if not more and b_start == 0:
            return None
        links = {
            "@id": self._url(b_start, b_size),
            "first": self._url(0, b_size),
        }
        if b_start > 0:
            links["prev"] = self._url(max(b_start - b_size, 0), b_size)
        if more:
            links["next"] = self._url(b_start + b_size, b_size)
        if total is not None:
            last = max((total - 1) // b_size * b_size, 0)
            links["last"] = self._url(last, b_size)
        return links
