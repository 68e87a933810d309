"""Reading the queues: finding them and their jobs, the status report, job
listings and one job in full. Plain data out."""

import fnmatch
import heapq
import logging
import operator

from zasync import clock, recurring, steps
from zasync.admin.retention import pruning_report, queue_pruned
from zasync.admin.text import (
    ARGUMENT_REPR_LIMIT,
    JSON_SAFE_INTEGER,
    VALUE_REPR_LIMIT,
    _repr,
    parse_job_id,
    queue_label,
    queue_name,
)
from zasync.exceptions import AdminError, JobNotFound, NoQueues
from zasync.failure import Failure
from zasync.keys import ended_before
from zasync.loading import readable
from zasync.queue import ROOT_KEY
from zasync.status import ACTIVE, ASSIGNED, CALLBACKS, COMPLETED, WAITING

log = logging.getLogger("zasync.admin")

# The annotation of a job queued by retry_job: the id of the job it retries.
RETRY_OF = "zasync.retry_of"

STATUS_FILTERS = (
    "pending",
    "waiting",
    "assigned",
    "active",
    "callbacks",
    "completed",
    "failed",
    "succeeded",
    "set-aside",
)

# -- finding the queues and jobs --------------------------------------------


def read_queues(connection, database=None):
    """The IQueues of the database behind ``connection`` (its sibling
    ``database`` in a multi-database setup), without installing them:
    raises NoQueues if the database has none."""
    if database is not None:
        connection = connection.get_connection(database)
    queues = connection.root().get(ROOT_KEY)
    if queues is None:
        raise NoQueues(
            "this database has no zasync queues: no job was ever queued and no "
            "dispatcher ever started on it. Is it the right database "
            "(--zodb-conf, --database)?"
        )
    return queues


def select_queues(queues, name=None):
    """The queues to work on: all (name None) or the one called ``name``
    ('default' means the default queue); AdminError if there is none."""
    if name is None:
        return list(queues.values())
    wanted = queue_name(name)
    queue = queues.get(wanted)
    if queue is None:
        known = ", ".join(repr(queue_label(n)) for n in queues)
        raise AdminError(f"there is no queue {name!r}; the queues are {known}")
    return [queue]


def get_job(queues, job_id):
    """The job with id ``job_id`` (an int or its text) in any queue;
    JobNotFound if none has it."""
    try:
        job_id = parse_job_id(job_id)
    except ValueError as exc:
        raise AdminError(str(exc)) from None
    job = queues.find_job(job_id)
    if job is None:
        rounded = ""
        # An id that a double holds exactly is likely one that went through
        # a double (few 18-digit ids do).
        if job_id > JSON_SAFE_INTEGER and int(float(job_id)) == job_id:
            rounded = (
                "; if the id went through jq or JavaScript as a number, it "
                "was rounded: take the id as text, as --json prints it"
            )
        raise JobNotFound(
            f"no job {job_id} in any queue (it may have been pruned; "
            f"'zasync jobs' lists the jobs there are{rounded})"
        )
    return readable(job)


def _set_aside_reason(job):
    queue = job.queue
    if queue is None:
        return None
    return queue.set_aside_reason(job.id)


def _problem(job):
    """Why a job (as ``readable`` gives it) cannot be loaded, or None."""
    return getattr(job, "broken", None)


def _status_text(job, aside=False):
    """The status as shown: completed jobs as failed or succeeded."""
    if aside:
        return "set-aside"
    if job.status == COMPLETED:
        return "failed" if job.failed else "succeeded"
    return job.status.value


# -- status -----------------------------------------------------------------


def status_report(queues, now=None):
    """What runs where: for each queue its job counts, dispatchers (alive
    or dead, heartbeat, agents), quotas and set-aside jobs, and what the
    automatic pruning did last (see zasync.admin.retention.pruning_report),
    as a dict."""
    now = now or clock.utcnow()
    definitions = recurring.definitions(queues)
    return {
        "time": now,
        "queues": [_queue_status(queue, now, queues) for queue in queues.values()],
        "pruning": pruning_report(queues),
        "recurring": {
            "count": len(definitions),
            "paused": sum(1 for d in definitions if d.paused),
        },
    }


def _heartbeat_age(queue, record, now):
    """Seconds since the dispatcher's last heartbeat by the storage's time
    (from its commit to the latest transaction seen: what peers judge by,
    whatever the clocks say), or by this process's clock and the one that
    wrote it where the storage does not tell its latest transaction."""
    tid = clock.seen_tid(queue._p_jar)
    if tid is not None and record.heartbeat_tid is not None:
        return round(record.heartbeat_age(tid), 6)  # to the microsecond
    return (now - record.last_ping).total_seconds()


def _paused(queue):
    """None, or {"since", "by"} of a paused queue."""
    paused = queue.paused
    return None if paused is None else {"since": paused[0], "by": paused[1]}


def quota_info(quota, now):
    """A quota as plain data: its name, size, active slots, pause
    (``{"since", "by"}`` or None) and rate (None, or ``{"limit",
    "per_seconds", "used", "opens_at"}``: starts counted in the period
    before ``now``, and when the next may start if the rate is used up)."""
    rate = quota.rate
    paused = quota.paused
    return {
        "name": quota.name,
        "size": quota.size,
        "active": len(quota),
        "paused": None if paused is None else {"since": paused[0], "by": paused[1]},
        "rate": None
        if rate is None
        else {
            "limit": rate[0],
            "per_seconds": rate[1].total_seconds(),
            "used": quota.starts_in_period(now),
            "opens_at": quota.rate_opens_at(now),
        },
    }


def _queue_status(queue, now, queues=None):
    dispatchers = []
    for uuid, record in queue.dispatchers.items():
        last = record.last_ping
        dispatchers.append(
            {
                "uuid": uuid,
                "host": record.host,
                "pid": record.pid,
                "alive": not record.is_dead(now),
                # Declared dead by a live peer, which recovered its jobs.
                "declared_dead": bool(record.dead),
                "started": record.started,
                "last_heartbeat": last,
                "heartbeat_age": _heartbeat_age(queue, record, now),
                "ping_interval": record.ping_interval,
                "death_interval": record.death_interval,
                "agents": [
                    {"name": agent.name, "size": agent.size, "claimed": len(agent.jobs)}
                    for agent in record.agents.values()
                ],
            }
        )
    return {
        "name": queue.name,
        "label": queue_label(queue.name),
        "counts": queue.counts(),
        "paused": _paused(queue),
        "set_aside": len(queue.set_aside_jobs),
        "pruned": queue_pruned(queues, queue),
        "dispatchers": dispatchers,
        "quotas": [quota_info(quota, now) for quota in queue.quotas.values()],
    }


# -- listing jobs -----------------------------------------------------------


def _age_time(job):
    """The time a job's age counts from: its end if completed, else when it
    was queued."""
    if job.status == COMPLETED and job.ended is not None:
        return job.ended
    return job.queued


def _completed_threshold(cutoff):
    """The smallest completed-index key of a job that ended before
    ``cutoff`` (the indexes keep the newest first)."""
    return ended_before(clock.to_micros(cutoff))


def _claimed(queue, statuses):
    """Jobs claimed by dispatchers or waiting for sub-jobs, by id."""
    found = [j for j in map(readable, queue.claimed_jobs()) if j.status in statuses]
    return sorted(found, key=operator.attrgetter("id"))


def _completed_items(queue, failed, older_than_key=None):
    """(index key, job) of completed jobs, newest first; completed jobs that
    their dispatcher has not indexed yet come first, as they are newest."""
    return queue.completed_items(failed, older_than_key)


def _candidates(queues, status, older_cutoff, newer_cutoff):
    """Jobs of ``queues`` in display order: claimed and waiting, pending in
    run order, set aside, completed newest first (across queues)."""
    everything = status is None
    running = {WAITING, ASSIGNED, ACTIVE, CALLBACKS}
    if not everything and status in running:
        running = {status}
    if everything or status in ("waiting", "assigned", "active", "callbacks"):
        for queue in queues:
            yield from _claimed(queue, running)
    if everything or status == "pending":
        # Each queue iterates in run order; merged, all of them are.
        yield from heapq.merge(
            *(map(readable, queue) for queue in queues),
            key=operator.attrgetter("pending_key"),
        )
    if everything or status == "set-aside":
        for queue in queues:
            aside = queue.set_aside_jobs
            for job_id in sorted(aside):
                yield readable(aside[job_id][0])
    if everything or status in ("completed", "failed", "succeeded"):
        failed = {"failed": True, "succeeded": False}.get(status)
        min_key = None if older_cutoff is None else _completed_threshold(older_cutoff)
        max_key = None if newer_cutoff is None else _completed_threshold(newer_cutoff)
        merged = heapq.merge(
            *(_completed_items(queue, failed, min_key) for queue in queues),
            key=operator.itemgetter(0),
        )
        for key, job in merged:
            if max_key is not None and key >= max_key:
                break  # newest first: all the rest ended before newer_cutoff
            yield readable(job)


def _callable_matcher(pattern):
    if pattern is None:
        return lambda name: True
    if any(char in pattern for char in "*?["):
        return lambda name: fnmatch.fnmatchcase(name, pattern)
    return lambda name: pattern in name


def _error_matcher(text):
    if text is None:
        return lambda job: True
    wanted = text.casefold()

    def in_error(job):
        failure = job.result if job.failed else None
        if not isinstance(failure, Failure):
            return False
        return wanted in f"{failure.type_name}: {failure.value}".casefold()

    return in_error


def find_jobs(
    queues,
    status=None,
    queue=None,
    callable=None,
    older_than=None,
    newer_than=None,
    limit=50,
    now=None,
    error=None,
    where=None,
    start=0,
):
    """Jobs matching every filter given, and whether more match.

    ``status`` is one of STATUS_FILTERS (None: any); ``queue`` a queue name
    ('default' is the default queue); ``callable`` a substring of the
    callable's dotted name, or an fnmatch pattern if it has ``*``, ``?`` or
    ``[`` (case matters); ``older_than`` / ``newer_than`` timedeltas: the age
    of a completed job counts from its end, of any other job from when it
    was queued; ``error`` a text the error of a failed job contains (its
    type and message, case ignored; only failed jobs match); ``where`` a
    function of a job that says whether it matches (the Plone layer's
    user and site filters). Returns ``(jobs, more)``: at most ``limit``
    jobs, running ones first, then pending in run order, set aside, and
    completed newest first, leaving out the first ``start`` that match
    (paging); ``more`` is True if the limit left some out.
    """
    if status is not None and status not in STATUS_FILTERS:
        raise AdminError(
            f"unknown status {status!r}; use one of {', '.join(STATUS_FILTERS)}"
        )
    if limit is not None and limit < 1:
        raise AdminError(f"the limit must be at least 1, not {limit}")
    if start < 0:
        raise AdminError(f"the start must be 0 or more, not {start}")
    now = now or clock.utcnow()
    selected = select_queues(queues, queue)
    older_cutoff = None if older_than is None else now - older_than
    newer_cutoff = None if newer_than is None else now - newer_than
    matches = _callable_matcher(callable)
    in_error = _error_matcher(error)
    found = []
    skipped = 0
    for job in _candidates(selected, status, older_cutoff, newer_cutoff):
        if job.internal or not matches(job.callable_name):
            continue
        when = _age_time(job)
        if older_cutoff is not None and (when is None or when >= older_cutoff):
            continue
        if newer_cutoff is not None and (when is None or when < newer_cutoff):
            continue
        if not in_error(job) or (where is not None and not where(job)):
            continue
        if skipped < start:
            skipped += 1
            continue
        found.append(job)
        if limit is not None and len(found) > limit:
            return found[:limit], True
    return found, False


def job_summary(job):
    """One line's worth of a job, as a dict (what ``zasync jobs`` shows);
    ``problem`` too, saying why, for a job whose class cannot be imported."""
    job = readable(job)
    aside = _set_aside_reason(job) is not None
    summary = {
        "id": job.id,
        "queue": queue_label(job.queue.name) if job.queue is not None else None,
        "status": _status_text(job, aside),
        "callable": job.callable_name,
        "queued": job.queued,
        "ended": job.ended if job.status == COMPLETED else None,
        "attempts": job.attempts,
    }
    if _problem(job) is not None:  # its class cannot be imported
        summary["problem"] = _problem(job)
    return summary


def set_aside_report(queues, queue=None):
    """The set-aside jobs of the queues (or of the one called ``queue``),
    oldest id first, each a dict: its id, queue, the reason it was set
    aside, whether it loads now, its class, callable, stored status,
    queue time and attempts (what ``zasync set-aside`` shows)."""
    found = []
    for each in select_queues(queues, queue):
        aside = each.set_aside_jobs
        for job_id in sorted(aside):
            stored, reason = aside[job_id]
            job = readable(stored)
            found.append(
                {
                    "id": job_id,
                    "queue": queue_label(each.name),
                    "reason": reason,
                    "loads": _problem(job) is None,
                    "problem": _problem(job),
                    "class": getattr(job, "stored_class", None)
                    or f"{type(job).__module__}.{type(job).__qualname__}",
                    "callable": job.callable_name,
                    "status": job.status.value,
                    "queued": job.queued,
                    "attempts": job.attempts,
                }
            )
    return found


# -- one job in full --------------------------------------------------------


def _related(job):
    failure = job.result if job.failed else None
    return {
        "id": job.id,
        "status": _status_text(job),
        "callable": job.callable_name,
        "error": None if failure is None else f"{failure.type_name}: {failure.value}",
    }


def _assignee(job):
    if job.assignee is None:
        return None
    uuid, agent = job.assignee
    found = {"dispatcher": uuid, "agent": agent, "host": None, "pid": None}
    queue = job.home_queue
    record = queue.dispatchers.get(uuid) if queue is not None else None
    if record is not None:
        found.update(host=record.host, pid=record.pid)
    return found


def _steps(job, limit):
    """{name: state} of the job's runs in steps (zasync.steps), each with
    ``text`` saying it in a line; the cursor as is if a number or a string,
    else its repr."""
    found = {}
    for name, state in (getattr(job, "steps", None) or {}).items():
        state = dict(state)
        cursor = state.get("cursor")
        if not isinstance(cursor, int | str | type(None)):
            state["cursor"] = _repr(cursor, limit)
        state["text"] = steps.describe(state)
        found[str(name)] = state
    return found


def describe_job(job, full=False):
    """Everything about one job, as a dict (what ``zasync job`` shows).

    Reprs of arguments, the environment, annotations and the result are
    shortened to a few hundred characters unless ``full``; the traceback of
    a failure is always whole. A job whose class cannot be imported is
    described from its stored state, with ``problem`` (why) and ``class``
    (the class it was stored as).
    """
    job = readable(job)
    short = None if full else ARGUMENT_REPR_LIMIT
    long = None if full else VALUE_REPR_LIMIT
    aside = _set_aside_reason(job)
    done = job.status in (CALLBACKS, COMPLETED)
    result = job.result if done else None
    failure = result if isinstance(result, Failure) else None
    queue = job.home_queue
    own_annotations = dict(job.own_annotations)
    info = {
        "id": job.id,
        "queue": queue_label(queue.name) if queue is not None else None,
        "status": _status_text(job, aside is not None),
        "set_aside_reason": aside,
        "callable": job.callable_name,
        "args": [_repr(arg, short) for arg in job.args],
        "kwargs": {name: _repr(value, short) for name, value in job.kwargs.items()},
        "quota_names": list(job.quota_names),
        "priority": job.priority,
        "unique_key": job.unique_key,
        "begin_after": job.begin_after,
        "begin_by": job.begin_by,
        "queued": job.queued,
        "started": job.started,
        "ended": job.ended,
        "attempts": job.attempts,
        "interruptions": job.interruptions,
        "postponements": job.postponements,
        "assignee": _assignee(job),
        "retry_policy": _repr(job.retry_policy, short),
        "environment": (
            None if job.environment is None else _repr(job.environment, long)
        ),
        "role": job.role,
        "parent": None if job.parent is None else _related(readable(job.parent)),
        "callbacks": [
            _related(cb) for cb in map(readable, job.callbacks) if not cb.internal
        ],
        "children": [
            _related(readable(child)) for child in getattr(job, "children", ())
        ],
        "depends_on": [_related(readable(each)) for each in job.depends_on],
        "on_dependency_failure": (
            job.on_dependency_failure if job.depends_on else None
        ),
        "waiting_for": list(job.waiting_for),
        "dependents": (
            [] if queue is None else [_related(each) for each in queue.dependents(job)]
        ),
        "retry_of": own_annotations.get(RETRY_OF),
        "annotations": {
            str(name): _repr(value, short) for name, value in own_annotations.items()
        },
        "live_annotations": {
            str(name): _repr(value, short)
            for name, value in dict(job.live_annotations()).items()
        },
        "steps": _steps(job, short),
        "result": _repr(result, long) if done and failure is None else None,
        "error": None if failure is None else f"{failure.type_name}: {failure.value}",
        "traceback": None if failure is None else failure.getTraceback(),
    }
    if _problem(job) is not None:  # shown as far as its stored state goes
        info["problem"] = _problem(job)
        info["class"] = job.stored_class
    return info
