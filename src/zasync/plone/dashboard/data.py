"""Plain data for the jobs dashboard, built on :mod:`zasync.admin`.

Every function takes the queues (an IQueues) and returns dicts and lists
of str, int, float, bool, None and aware UTC datetimes, as zasync.admin
does; nothing here knows about requests or templates. The actions
(:func:`delete_job`, :func:`act_on_jobs`) change the queues in the
caller's transaction and raise or report AdminError messages.
"""

import datetime
import heapq
import itertools
import operator

import transaction

from zasync import admin, clock
from zasync.admin import AdminError
from zasync.failure import Failure
from zasync.keys import ended_before
from zasync.loading import readable
from zasync.plone import queuers
from zasync.plone.references import path_text
from zasync.status import ACTIVE, ASSIGNED, CALLBACKS, COMPLETED, PENDING, WAITING

#: The statuses counted per queue on the overview, in the order shown.
COUNTED = (
    "waiting",
    "pending",
    "assigned",
    "active",
    "callbacks",
    "succeeded",
    "failed",
    "set-aside",
)
#: Pending jobs looked at (in run order) for the oldest one's age.
OLDEST_PENDING_SCAN = 1000
#: The window of the throughput figure, in seconds.
THROUGHPUT_WINDOW = 3600
#: The most jobs one bulk action on a whole filter changes per request.
BULK_LIMIT = 500
#: The actions the dashboard offers on jobs (put-back and discard: on
#: set-aside jobs only).
ACTIONS = ("retry", "cancel", "delete", "put-back", "discard")
#: Pending and set-aside jobs materialised ahead of the completed ones
#: when paging an unfiltered list (more: the generic, slower path).
FAST_PREFIX_LIMIT = 10000


def _age(now, then):
    return None if then is None else max(0.0, (now - then).total_seconds())


# -- overview -------------------------------------------------------------------


def completed_since(queue, cutoff, failed=None):
    """How many jobs of ``queue`` completed at or after ``cutoff``: the
    completed index is read newest first and left at the cutoff, so this
    costs the jobs of the window, not all jobs (the jobs themselves are not
    loaded, only the index's keys)."""
    threshold = ended_before(clock.to_micros(cutoff))
    items = queue.completed_items(failed)
    return sum(1 for _ in itertools.takewhile(lambda kv: kv[0] < threshold, items))


def oldest_pending(queue, now, scan=OLDEST_PENDING_SCAN):
    """``(age in seconds, job id, exact)`` of the pending job queued first
    among the first ``scan`` in run order (``exact`` False if more were
    left unread), or None without pending jobs."""
    oldest = None
    seen = 0
    for job in itertools.islice(iter(queue), scan):
        seen += 1
        job = readable(job)
        if job.queued is not None and (oldest is None or job.queued < oldest.queued):
            oldest = job
    if oldest is None:
        return None
    return {
        "age": _age(now, oldest.queued),
        "id": oldest.id,
        "exact": len(queue) <= seen,
    }


def _dispatcher_details(queue, info):
    """Add threads busy and idle, and the jobs each agent runs, to one
    dispatcher of ``admin.status_report``."""
    record = queue.dispatchers.get(info["uuid"])
    busy = idle = 0
    running = []
    for agent in info["agents"]:
        stored = None if record is None else record.agents.get(agent["name"])
        jobs = [] if stored is None else list(map(readable, stored.jobs.values()))
        active = [job for job in jobs if job.status == ACTIVE]
        agent["busy"] = len(active)
        agent["idle"] = max(0, agent["size"] - agent["claimed"])
        busy += agent["busy"]
        idle += agent["idle"]
        for job in jobs:
            running.append(
                {
                    "id": job.id,
                    "callable": job.callable_name,
                    "status": job.status.value,
                    "agent": agent["name"],
                    "progress": progress_of(job),
                }
            )
    info["threads_busy"] = busy
    info["threads_idle"] = idle
    info["jobs"] = running
    return info


def overview(queues, now=None):
    """What the overview page shows: for each queue its counts per status
    (:data:`COUNTED`), jobs completed in the last hour (succeeded, failed),
    the oldest pending job, its dispatchers (with threads busy and idle and
    the jobs they hold) and quotas; and the set-aside jobs."""
    now = now or clock.utcnow()
    report = admin.status_report(queues, now)
    cutoff = now - datetime.timedelta(seconds=THROUGHPUT_WINDOW)
    found = []
    for info in report["queues"]:
        queue = queues[info["name"]]
        counts = dict(info["counts"])
        counts["set-aside"] = info["set_aside"]
        succeeded = completed_since(queue, cutoff, failed=False)
        failed = completed_since(queue, cutoff, failed=True)
        found.append(
            {
                "name": info["name"],
                "label": info["label"],
                "paused": info["paused"],
                "counts": {status: counts.get(status, 0) for status in COUNTED},
                "throughput": {
                    "succeeded": succeeded,
                    "failed": failed,
                    "total": succeeded + failed,
                    "window": THROUGHPUT_WINDOW,
                },
                "oldest_pending": oldest_pending(queue, now),
                "dispatchers": [
                    _dispatcher_details(queue, each) for each in info["dispatchers"]
                ],
                "quotas": info["quotas"],
            }
        )
    return {
        "time": now,
        "queues": found,
        "set_aside": admin.set_aside_report(queues),
    }


def counts(queues):
    """Just the counts per queue (what the overview's polling updates)."""
    found = {}
    for queue in queues.values():
        each = dict(queue.counts())
        each["set-aside"] = len(queue.set_aside_jobs)
        found[admin.queue_label(queue.name)] = {s: each.get(s, 0) for s in COUNTED}
    return found


# -- one job ----------------------------------------------------------------------


def progress_of(job):
    """``{"fraction", "percent", "message"}`` from the job's live
    annotations, or None if it reports no progress."""
    try:
        progress = job.progress
    except Exception:  # a broken job's stand-in may have no queue
        return None
    if progress is None:
        return None
    try:
        fraction, message = progress
        fraction = max(0.0, min(1.0, float(fraction)))
    except (TypeError, ValueError):
        return None
    return {
        "fraction": fraction,
        "percent": round(fraction * 100),
        "message": None if message is None else str(message),
    }


def site_of(job):
    """The path of the site a Plone job was queued in, as text, or None."""
    path = getattr(getattr(job, "environment", None), "site_path", None)
    return None if path is None else path_text(path)


def job_row(job, now=None):
    """One job as a row of the list: its summary, who queued it, its site,
    progress, error and times."""
    now = now or clock.utcnow()
    job = readable(job)
    row = admin.job_summary(job)
    failure = job.result if job.status == COMPLETED and job.failed else None
    row.update(
        user=queuers.queuer_id(job),
        site=site_of(job),
        started=job.started,
        age=_age(now, row["ended"] or job.queued),
        progress=progress_of(job),
        error=(
            f"{failure.type_name}: {failure.value}"
            if isinstance(failure, Failure)
            else None
        ),
        done=job.status == COMPLETED,
    )
    return row


def job_detail(job, now=None):
    """Everything the job page shows: ``admin.describe_job`` with who
    queued it, its site, context path, progress, and actions that may be
    tried on it."""
    now = now or clock.utcnow()
    job = readable(job)
    info = admin.describe_job(job)
    environment = getattr(job, "environment", None)
    context = job.args[0] if job.args else None
    context_path = getattr(context, "path", None)
    info.update(
        user=queuers.queuer_id(job),
        site=site_of(job),
        context_path=None if context_path is None else path_text(context_path),
        environment_text=None if environment is None else str(environment),
        progress=progress_of(job),
        done=info["status"] in ("succeeded", "failed"),
        age=_age(now, job.queued),
        possible=possible_actions(info),
    )
    return info


def possible_actions(info):
    """The actions worth offering for a job in ``info``'s status (the
    action itself still decides and says why not)."""
    status = info["status"]
    return {
        "retry": status in ("failed", "pending", "set-aside"),
        # A running (or claimed) job is asked to stop.
        "cancel": status in ("waiting", "pending", "set-aside", "assigned", "active"),
        "delete": status in ("succeeded", "failed", "set-aside"),
    }


# -- listing ------------------------------------------------------------------------


def job_filter(user=None, site=None):
    """A predicate for ``find_jobs(where=)`` keeping the jobs queued by the
    user id ``user`` and in the site at path ``site`` (either None: any),
    or None if neither is given."""
    if not user and not site:
        return None
    site = None if not site else "/" + site.strip().strip("/")

    def keep(job):
        if user and queuers.queuer_id(job) != user:
            return False
        return not site or site_of(job) == site

    return keep


def _unfiltered_page(queues, status, queue, start, limit):
    """The page ``find_jobs`` would give without filters but status and
    queue, reading completed jobs from their indexes' keys alone up to the
    page, so a deep page costs the keys before it and the jobs on it; None
    where this does not apply (find_jobs is used then)."""
    if status not in (None, "completed", "failed", "succeeded"):
        return None
    selected = admin.select_queues(queues, queue)
    prefix = []
    if status is None:
        waiting = sum(len(q) + len(q.set_aside_jobs) for q in selected)
        if waiting > FAST_PREFIX_LIMIT:
            return None
        running = []
        for each in selected:  # as find_jobs: by queue, each by id
            claimed = (
                job
                for job in map(readable, each.claimed_jobs())
                if job.status in (WAITING, ASSIGNED, ACTIVE, CALLBACKS)
                and not job.internal
            )
            running += sorted(claimed, key=operator.attrgetter("id"))
        pending, _ = admin.find_jobs(queues, queue=queue, status="pending", limit=None)
        aside, _ = admin.find_jobs(queues, queue=queue, status="set-aside", limit=None)
        prefix = running + pending + aside
    failed = {"failed": True, "succeeded": False}.get(status)
    merged = heapq.merge(
        *(q.completed_items(failed) for q in selected), key=operator.itemgetter(0)
    )
    page = prefix[start : start + limit + 1]
    skip = max(0, start - len(prefix))
    for _, job in itertools.islice(merged, skip, None):
        if len(page) > limit:
            break
        job = readable(job)
        if job.internal:
            continue
        page.append(job)
    return page[:limit], len(page) > limit


def list_jobs(
    queues,
    status=None,
    queue=None,
    callable=None,
    user=None,
    site=None,
    older_than=None,
    newer_than=None,
    error=None,
    start=0,
    limit=50,
    now=None,
):
    """A page of jobs matching the filters, as ``find_jobs`` orders them
    (running, pending in run order, set aside, completed newest first):
    ``(rows, more)``. ``user`` is a user id (who queued the job),
    ``site`` a site path; the rest is as for ``admin.find_jobs``
    (AdminError for bad values)."""
    now = now or clock.utcnow()
    filtered = any((callable, user, site, older_than, newer_than, error))
    found = None
    if not filtered and limit is not None and start >= 0:
        found = _unfiltered_page(queues, status, queue, start, limit)
    if found is None:
        found = admin.find_jobs(
            queues,
            status=status,
            queue=queue,
            callable=callable or None,
            older_than=older_than,
            newer_than=newer_than,
            limit=limit,
            now=now,
            error=error or None,
            where=job_filter(user, site),
            start=start,
        )
    jobs, more = found
    return [job_row(job, now) for job in jobs], more


# -- actions --------------------------------------------------------------------------


def delete_job(queues, job_id):
    """Remove a job from its queue for good: a completed one (unless a
    serial/parallel job or a job waiting for its callbacks still needs
    it) or a set-aside one (``admin.discard_job``). Pending and running
    jobs are not deleted: AdminError saying to cancel or wait. Works in
    the caller's transaction; returns the job's id and callable."""
    job = admin.get_job(queues, job_id)
    if job.queue is not None and job.queue.set_aside_reason(job.id) is not None:
        found = admin.discard_job(queues, job.id)
        return {"id": found["id"], "callable": found["callable"]}
    name = f"job {job.id} ({job.callable_name})"
    if job.status in (PENDING, WAITING):
        raise AdminError(
            f"{name} is {job.status}; cancel it first (it then completes as "
            f"failed and can be deleted)"
        )
    if job.status != COMPLETED:
        raise AdminError(
            f"{name} is {job.status}; a job that runs cannot be deleted. Wait "
            f"for it to end"
        )
    parent = job.parent
    if parent is not None and readable(parent).status != COMPLETED:
        raise AdminError(
            f"{name} is a part or callback of job {parent.id}, which is not "
            f"done yet and still needs it"
        )
    try:
        job.queue.remove(job)
    except ValueError as exc:
        raise AdminError(f"{name} cannot be deleted: {exc}") from None
    return {"id": job.id, "callable": job.callable_name}


def put_back(queues, job_id, now=None):
    """Put a set-aside job back in the run order (``admin.retry_job`` of a
    set-aside job); AdminError for any other job, or one that still cannot
    be run. Works in the caller's transaction."""
    job = admin.get_job(queues, job_id)
    if job.queue is None or job.queue.set_aside_reason(job.id) is None:
        raise AdminError(
            f"job {job.id} ({job.callable_name}) is {job.status}, not set aside; "
            f"only set-aside jobs are put back"
        )
    outcome = admin.retry_job(queues, job.id, now=now)
    return {"id": outcome.job.id, "callable": job.callable_name}


def act_on_job(queues, action, job_id, by, now=None):
    """Retry, cancel or delete one job; returns a dict saying what was
    done (``id``, ``action``, and ``new_id`` for a retry that queued a new
    job). AdminError says why it could not be done."""
    if action not in ACTIONS:
        raise AdminError(f"unknown action {action!r}; use one of {', '.join(ACTIONS)}")
    if action == "retry":
        outcome = admin.retry_job(queues, job_id, now=now)
        new_id = None if outcome.job is outcome.retried else outcome.job.id
        return {"id": outcome.retried.id, "action": action, "new_id": new_id}
    if action == "cancel":
        job = admin.cancel_job(queues, job_id, by=by, now=now)
        # A running (or claimed) job was asked to stop: it stays as it is.
        requested = job.status.value in ("active", "assigned")
        return {"id": job.id, "action": action, "new_id": None, "requested": requested}
    if action == "put-back":
        found = put_back(queues, job_id, now)
    elif action == "discard":
        found = admin.discard_job(queues, job_id)
    else:
        found = delete_job(queues, job_id)
    return {"id": found["id"], "action": action, "new_id": None}


def act_on_jobs(queues, action, job_ids, by, now=None):
    """:func:`act_on_job` on each of ``job_ids``, in the current
    transaction, each in a savepoint of its own, so that a job that could
    not be changed leaves no half-change behind: ``(done, refused)``,
    ``done`` the dicts of act_on_job, ``refused`` a list of ``{"id",
    "error"}`` with the AdminError message of each."""
    if action not in ACTIONS:
        raise AdminError(f"unknown action {action!r}; use one of {', '.join(ACTIONS)}")
    done, refused = [], []
    for job_id in job_ids:
        savepoint = transaction.savepoint()
        try:
            done.append(act_on_job(queues, action, job_id, by, now))
        except AdminError as exc:
            savepoint.rollback()
            refused.append({"id": job_id, "error": str(exc)})
    return done, refused


def matching_ids(queues, limit=BULK_LIMIT, **filters):
    """The ids of (at most ``limit``) jobs matching ``filters`` (those of
    :func:`list_jobs`), and whether more match: what a bulk action on a
    whole filter works on."""
    rows, more = list_jobs(queues, start=0, limit=limit, **filters)
    return [row["id"] for row in rows], more


def live_rows(queues, job_ids, now=None):
    """Status and progress of the jobs ``job_ids`` (the rows a page shows),
    by id; ids not found are left out."""
    now = now or clock.utcnow()
    found = {}
    for job_id in job_ids:
        try:
            job = admin.get_job(queues, job_id)
        except AdminError:
            continue
        row = job_row(job, now)
        found[job.id] = {
            "id": job.id,
            "status": row["status"],
            "progress": row["progress"],
            "error": row["error"],
            "done": row["done"],
        }
    return found
