"""Operations on the queues of a database: what an operator needs.

This is what the ``zasync status``, ``jobs``, ``job``, ``retry``,
``cancel``, ``prune``, ``settings``, ``quota``, ``agents`` and ``mode``
commands do, without any command-line parsing, so that Python code (a
script, a Zope control panel) can do the same.

Reading functions take an IQueues (see :func:`read_queues`) and return
plain data: dicts and lists of str, int, float, bool, None and aware UTC
datetimes. :func:`retry_job` and :func:`cancel_job` change the queues in
the caller's current transaction (commit it, or use :func:`in_transaction`,
which retries conflicts); :func:`prune` runs transactions of its own, a
batch at a time. Anything that cannot be done as asked raises
:class:`AdminError`, whose message says why and what to do instead.

Job ids are ints here. They have 18 digits, more than a JSON number keeps
in JavaScript or jq (2**53): :func:`for_json` makes data ready for JSON,
with ids as strings.

Cluster-wide settings live with the queues, so every process and every
site of the database sees the same: the size of each quota (the quota
itself), and the agent sizes of dispatchers (see zasync.registry):
:func:`settings_report` shows them with where each comes from;
:func:`set_quota_size` and :func:`set_agent_size` change them in the
current transaction.
"""

import dataclasses
import datetime
import fnmatch
import heapq
import itertools
import logging
import operator
import re

import transaction

from zasync import clock
from zasync.config import queue_label, queue_name
from zasync.exceptions import AdminError, JobCancelled, JobNotFound, NoQueues
from zasync.failure import Failure, failure_from
from zasync.job import CallableNotFound, Job
from zasync.queue import _TIME_MASK, DEFAULT_QUEUE, ROOT_KEY
from zasync.registry import (
    DEFAULT_AGENT_SIZE,
    FROM_BUILT_IN,
    FROM_DISPATCHER_SETTING,
    FROM_QUEUE_DEFAULT,
    agent_settings,
    configured_agent_size,
)
from zasync.status import ACTIVE, ASSIGNED, CALLBACKS, COMPLETED, PENDING
from zasync.transact import TRANSIENT_ERRORS, abort, in_own_transaction, pause

__all__ = [
    "AdminError",
    "DEFAULT_AGENT_SIZE",
    "FROM_BUILT_IN",
    "FROM_DISPATCHER_SETTING",
    "FROM_QUEUE_DEFAULT",
    "JobCancelled",
    "JobNotFound",
    "NoQueues",
    "RetryOutcome",
    "STATUS_FILTERS",
    "cancel_job",
    "describe_job",
    "describe_location",
    "find_jobs",
    "for_json",
    "format_duration",
    "get_job",
    "in_transaction",
    "job_summary",
    "parse_duration",
    "parse_job_id",
    "prune",
    "queue_label",
    "queue_name",
    "queues_location",
    "read_queues",
    "record_queues_location",
    "retry_job",
    "select_queues",
    "set_agent_size",
    "set_quota_size",
    "settings_report",
    "status_report",
]

log = logging.getLogger("zasync.admin")

# Completed jobs removed per transaction by prune().
PRUNE_BATCH = 300
# Failed jobs are kept this many times longer than succeeded ones by default.
FAILED_KEEP_FACTOR = 4
# How many conflicts a write may meet before giving up.
MAX_CONFLICTS = 50
# Reprs longer than these are shortened, unless full=True.
ARGUMENT_REPR_LIMIT = 200
VALUE_REPR_LIMIT = 1000

STATUS_FILTERS = (
    "pending",
    "assigned",
    "active",
    "callbacks",
    "completed",
    "failed",
    "succeeded",
    "set-aside",
)


# -- small parsers and formatters -------------------------------------------

#: The largest integer a JSON number keeps exactly in JavaScript and jq.
JSON_SAFE_INTEGER = 2**53 - 1
#: Keys whose values are job ids, which for_json turns into strings.
JOB_ID_KEYS = frozenset({"id", "retry_of"})


def for_json(data):
    """A copy of plain ``data`` (what this module returns) ready for
    ``json.dumps``: job ids (the values of the keys in JOB_ID_KEYS) become
    strings, which JavaScript and jq would otherwise round; datetimes
    become ISO 8601 text, timedeltas seconds."""

    def convert(value, key=None):
        if isinstance(value, dict):
            return {k: convert(v, k) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [convert(v) for v in value]
        is_int = isinstance(value, int) and not isinstance(value, bool)
        if key in JOB_ID_KEYS and is_int:
            return str(value)
        if isinstance(value, datetime.datetime):
            return value.isoformat()
        if isinstance(value, datetime.timedelta):
            return value.total_seconds()
        return value

    return convert(data)


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION = re.compile(r"(?:\d+(?:\.\d+)?[smhdw])+")
_PART = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")


def parse_duration(text):
    """A ``datetime.timedelta`` from text like ``90s``, ``30m``, ``2h``,
    ``7d``, ``2w`` or ``1h30m``; ValueError saying the format otherwise."""
    compact = str(text).strip().lower().replace(" ", "")
    if not _DURATION.fullmatch(compact):
        raise ValueError(
            f"{text!r} is not a duration: write a number and a unit, like "
            f"90s, 30m, 2h, 7d or 1h30m (s seconds, m minutes, h hours, "
            f"d days, w weeks)"
        )
    seconds = sum(float(n) * _UNITS[unit] for n, unit in _PART.findall(compact))
    return datetime.timedelta(seconds=seconds)


def format_duration(delta):
    """A short text for a timedelta (or seconds): ``45s``, ``3m12s``,
    ``5h02m``, ``3d04h``; negative durations (clocks out of step) get a
    minus sign."""
    seconds = delta.total_seconds() if isinstance(delta, datetime.timedelta) else delta
    sign = "-" if seconds < 0 else ""
    seconds = abs(seconds)
    if seconds == 0:
        return "0s"
    if seconds < 10:
        return f"{sign}{seconds:.1f}s"
    whole = int(seconds)
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{sign}{days}d{hours:02d}h"
    if hours:
        return f"{sign}{hours}h{minutes:02d}m"
    if minutes:
        return f"{sign}{minutes}m{secs:02d}s"
    return f"{sign}{secs}s"


def parse_job_id(text):
    """A job id (an int) from text; ValueError saying what ids look like.

    The id may be quoted as JSON gives it (``"244851019106319317"``, what
    ``jq`` prints without ``-r``)."""
    if isinstance(text, int) and not isinstance(text, bool):
        return text
    compact = str(text).strip()
    if len(compact) > 2 and compact[0] == compact[-1] and compact[0] in "\"'":
        compact = compact[1:-1].strip()
    if not compact.isdigit() or not compact.isascii():
        raise ValueError(
            f"{text!r} is not a job id: ids are whole numbers, as "
            f"'zasync jobs' lists them"
        )
    return int(compact)


def _shorten(text, limit):
    if limit is None or len(text) <= limit:
        return text
    return f"{text[: limit - 1]}… ({len(text)} characters)"


def _repr(value, limit):
    try:
        text = repr(value)
    except Exception as exc:  # a broken __repr__ must not hide the rest
        text = f"<unprintable {type(value).__name__}: {type(exc).__name__}: {exc}>"
    return _shorten(text, limit)


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
    return job


def _set_aside_reason(job):
    queue = job.queue
    if queue is None or job.status != PENDING:
        return None
    entry = queue.set_aside_jobs.get(job.id)
    return None if entry is None else entry[1]


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
    or dead, heartbeat, agents), quotas and set-aside jobs, as a dict."""
    now = now or clock.utcnow()
    return {
        "time": now,
        "queues": [_queue_status(queue, now) for queue in queues.values()],
    }


def _queue_status(queue, now):
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
                "heartbeat_age": (now - last).total_seconds(),
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
        "set_aside": len(queue.set_aside_jobs),
        "dispatchers": dispatchers,
        "quotas": [
            {"name": quota.name, "size": quota.size, "active": len(quota)}
            for quota in queue.quotas.values()
        ],
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
    cutoff_us = max(clock.to_micros(cutoff), 0)
    return (_TIME_MASK - cutoff_us + 1) << 64


def _claimed(queue, statuses):
    """Jobs claimed by dispatchers or waiting for sub-jobs, by id."""
    found = [j for j in queue._claimed_and_waiting() if j.status in statuses]
    return sorted(found, key=operator.attrgetter("id"))


def _completed_items(queue, failed, older_than_key=None):
    """(index key, job) of completed jobs, newest first; completed jobs that
    their dispatcher has not indexed yet come first, as they are newest."""
    fresh = sorted(
        (
            (job.index_key, job)
            for job in queue._claimed_and_waiting()
            if job.status == COMPLETED and (failed is None or job.failed == failed)
        ),
        key=operator.itemgetter(0),
    )
    indexes = []
    if failed in (None, True):
        indexes.append(queue._failed.items(min=older_than_key))
    if failed in (None, False):
        indexes.append(queue._succeeded.items(min=older_than_key))
    return heapq.merge(fresh, *indexes, key=operator.itemgetter(0))


def _candidates(queues, status, older_cutoff, newer_cutoff):
    """Jobs of ``queues`` in display order: claimed and waiting, pending in
    run order, set aside, completed newest first (across queues)."""
    everything = status is None
    running = {ASSIGNED, ACTIVE, CALLBACKS}
    if not everything and status in running:
        running = {status}
    if everything or status in ("assigned", "active", "callbacks"):
        for queue in queues:
            yield from _claimed(queue, running)
    if everything or status == "pending":
        yield from (
            job
            for _, job in heapq.merge(
                *(queue._pending_items() for queue in queues),
                key=operator.itemgetter(0),
            )
        )
    if everything or status == "set-aside":
        for queue in queues:
            for job_id in sorted(queue.set_aside_jobs):
                yield queue.set_aside_jobs[job_id][0]
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
            yield job


def _callable_matcher(pattern):
    if pattern is None:
        return lambda name: True
    if any(char in pattern for char in "*?["):
        return lambda name: fnmatch.fnmatchcase(name, pattern)
    return lambda name: pattern in name


def find_jobs(
    queues,
    status=None,
    queue=None,
    callable=None,
    older_than=None,
    newer_than=None,
    limit=50,
    now=None,
):
    """Jobs matching every filter given, and whether more match.

    ``status`` is one of STATUS_FILTERS (None: any); ``queue`` a queue name
    ('default' is the default queue); ``callable`` a substring of the
    callable's dotted name, or an fnmatch pattern if it has ``*``, ``?`` or
    ``[`` (case matters); ``older_than`` / ``newer_than`` timedeltas: the age
    of a completed job counts from its end, of any other job from when it
    was queued. Returns ``(jobs, more)``: at most ``limit`` jobs, running
    ones first, then pending in run order, set aside, and completed newest
    first; ``more`` is True if the limit left some out.
    """
    if status is not None and status not in STATUS_FILTERS:
        raise AdminError(
            f"unknown status {status!r}; use one of {', '.join(STATUS_FILTERS)}"
        )
    if limit is not None and limit < 1:
        raise AdminError(f"the limit must be at least 1, not {limit}")
    now = now or clock.utcnow()
    selected = select_queues(queues, queue)
    older_cutoff = None if older_than is None else now - older_than
    newer_cutoff = None if newer_than is None else now - newer_than
    matches = _callable_matcher(callable)
    found = []
    for job in _candidates(selected, status, older_cutoff, newer_cutoff):
        if job.internal or not matches(job.callable_name):
            continue
        when = _age_time(job)
        if older_cutoff is not None and (when is None or when >= older_cutoff):
            continue
        if newer_cutoff is not None and (when is None or when < newer_cutoff):
            continue
        found.append(job)
        if limit is not None and len(found) > limit:
            return found[:limit], True
    return found, False


def job_summary(job):
    """One line's worth of a job, as a dict (what ``zasync jobs`` shows)."""
    aside = _set_aside_reason(job) is not None
    return {
        "id": job.id,
        "queue": queue_label(job.queue.name) if job.queue is not None else None,
        "status": _status_text(job, aside),
        "callable": job.callable_name,
        "queued": job.queued,
        "ended": job.ended if job.status == COMPLETED else None,
        "attempts": job.attempts,
    }


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


def describe_job(job, full=False):
    """Everything about one job, as a dict (what ``zasync job`` shows).

    Reprs of arguments, the environment, annotations and the result are
    shortened to a few hundred characters unless ``full``; the traceback of
    a failure is always whole.
    """
    short = None if full else ARGUMENT_REPR_LIMIT
    long = None if full else VALUE_REPR_LIMIT
    aside = _set_aside_reason(job)
    done = job.status in (CALLBACKS, COMPLETED)
    result = job.result if done else None
    failure = result if isinstance(result, Failure) else None
    queue = job.home_queue
    own_annotations = dict(job._annotations or {})
    return {
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
        "parent": None if job.parent is None else _related(job.parent),
        "callbacks": [_related(cb) for cb in job.callbacks if not cb.internal],
        "children": [_related(child) for child in getattr(job, "children", ())],
        "retry_of": own_annotations.get(RETRY_OF),
        "annotations": {
            str(name): _repr(value, short) for name, value in own_annotations.items()
        },
        "live_annotations": {
            str(name): _repr(value, short)
            for name, value in dict(job.live_annotations()).items()
        },
        "result": _repr(result, long) if done and failure is None else None,
        "error": None if failure is None else f"{failure.type_name}: {failure.value}",
        "traceback": None if failure is None else failure.getTraceback(),
    }


# -- retry and cancel -------------------------------------------------------

# The annotation of a job queued by retry_job: the id of the job it retries.
RETRY_OF = "zasync.retry_of"


@dataclasses.dataclass
class RetryOutcome:
    """What :func:`retry_job` did: queued ``job`` as a new job retrying the
    failed job ``retried``, or (``made_due``) made the pending job ``job``
    due now instead of at ``was_due``."""

    job: Job
    retried: Job
    made_due: bool = False
    was_due: datetime.datetime | None = None


def _describe_claim(job):
    assignee = _assignee(job)
    if assignee is None:
        return ""
    where = assignee["dispatcher"]
    if assignee["host"] is not None:
        where = f"{where} on {assignee['host']}:{assignee['pid']}"
    return f" (claimed by dispatcher {where})"


def _check_in_run_order(job, doing):
    """AdminError unless a pending job is in its queue's run order."""
    reason = _set_aside_reason(job)
    if reason is not None:
        raise AdminError(
            f"job {job.id} ({job.callable_name}) was set aside by a dispatcher "
            f"because it cannot be stored again ({reason}); it is out of the "
            f"run order already and cannot be {doing}. Fix the cause and queue "
            f"a new job."
        )
    if job.pending_key is None:
        raise AdminError(
            f"job {job.id} ({job.callable_name}) is being put back in the queue "
            f"by its dispatcher; try again in a moment"
        )


def _copy_job(job, environment):
    """A new job making the same call as ``job``, in ``environment``, with
    copies of its callbacks (which share the copy's environment unless they
    have their own, as the originals did)."""
    try:
        func = job.resolve_callable()
    except CallableNotFound as exc:
        raise AdminError(str(exc)) from None
    copy = type(job)(func, *job.args, **dict(job.kwargs))
    copy.retry_policy = job._retry_policy
    copy.quota_names = tuple(job.quota_names)
    copy.internal = job.internal
    if environment is not None:
        copy.environment = environment
    for callback in job.callbacks:
        copy.add_callback(_copy_job(callback, callback._environment))
    return copy


def retry_job(queues, job_id, now=None):
    """Run a job again: a failed job, or a pending job that waits.

    For a completed job that failed, a new job with the same call
    (callable, arguments, environment, quota names, priority, ``begin_by``,
    unique key, retry policy, and copies of its callbacks) is queued in
    the same queue; the failed job is left as it was, and the new one
    carries its id in the annotation ``zasync.retry_of``. For a pending job
    whose ``begin_after`` is in the future (a retry delay, or scheduled),
    ``begin_after`` becomes now. Anything else raises AdminError saying
    why. Works in the current transaction; returns a RetryOutcome.
    """
    now = now or clock.utcnow()
    job = get_job(queues, job_id)
    queue = job.queue
    status = job.status
    if status == PENDING:
        _check_in_run_order(job, "made due now")
        if job.begin_after <= now:
            raise AdminError(
                f"job {job.id} ({job.callable_name}) is pending and due "
                f"already; it starts when a dispatcher of queue "
                f"{queue_label(queue.name)!r} has a free thread (and its quotas "
                f"have room): see 'zasync status'"
            )
        was_due = job.begin_after
        queue.reschedule(job, now)
        return RetryOutcome(job=job, retried=job, made_due=True, was_due=was_due)
    if status != COMPLETED:
        raise AdminError(
            f"job {job.id} ({job.callable_name}) is {status}{_describe_claim(job)}; "
            f"only a failed job, or a pending job waiting to start, can be "
            f"retried"
        )
    if not job.failed:
        raise AdminError(
            f"job {job.id} ({job.callable_name}) succeeded; only failed jobs "
            f"are retried. To make the same call again, queue a new job."
        )
    if getattr(job, "is_composite", False):
        raise AdminError(
            f"job {job.id} ({job.callable_name}) is a serial/parallel job; "
            f"retry its failed parts one by one instead: "
            + ", ".join(str(child.id) for child in job.children if child.failed)
        )
    if job.role == "callback":
        raise AdminError(
            f"job {job.id} ({job.callable_name}) is a callback of job "
            f"{job.parent.id} and is called with that job's result; it cannot "
            f"run on its own"
        )
    # A part of a serial/parallel job had its parent's environment.
    copy = _copy_job(job, job.environment)
    copy.annotations[RETRY_OF] = job.id
    try:
        queued = queue.put(
            copy,
            begin_by=job.begin_by,
            quota_names=job.quota_names,
            priority=job.priority,
            unique_key=job.unique_key,
            now=now,
        )
    except ValueError as exc:
        raise AdminError(f"cannot queue a retry of job {job.id}: {exc}") from None
    if queued is not copy:
        raise AdminError(
            f"job {queued.id} with the same unique key {job.unique_key!r} is "
            f"{queued.status} already; it does what a retry of job {job.id} "
            f"would, so nothing new was queued"
        )
    return RetryOutcome(job=copy, retried=job)


def cancel_job(queues, job_id, by="zasync cancel", reason=None, now=None):
    """Cancel a pending job: it is taken out of the run order and completed
    with the Failure of a :class:`JobCancelled` naming ``by`` (and
    ``reason``), so its callbacks run (failure callbacks see the failure)
    and it is counted among the failed jobs; its unique key is freed once
    those callbacks are done. A running or claimed job cannot be stopped
    (threads cannot be killed), nor a completed one cancelled: AdminError.
    Works in the current transaction; returns the job.
    """
    now = now or clock.utcnow()
    job = get_job(queues, job_id)
    status = job.status
    name = f"job {job.id} ({job.callable_name})"
    if status == COMPLETED:
        outcome = "failed" if job.failed else "succeeded"
        raise AdminError(
            f"{name} has completed already ({outcome} at "
            f"{job.ended:%Y-%m-%d %H:%M:%S} UTC); there is nothing to cancel"
        )
    if status == CALLBACKS:
        raise AdminError(
            f"{name} has run and its callbacks are running; it cannot be cancelled"
        )
    if getattr(job, "is_composite", False) and status == ACTIVE:
        pending = [c.id for c in job.children if c.status == PENDING]
        hint = (
            f"cancel its pending parts instead: {', '.join(map(str, pending))}"
            if pending
            else "none of its parts is pending"
        )
        raise AdminError(
            f"{name} is a serial/parallel job whose parts are running; {hint}"
        )
    if status in (ASSIGNED, ACTIVE):
        doing = "running" if status == ACTIVE else "claimed, about to start,"
        raise AdminError(
            f"{name} is {doing}{_describe_claim(job)}; a running job cannot be "
            f"stopped (threads cannot be killed). Wait for it to end, or stop "
            f"its worker (SIGTERM): a job still running after the worker's "
            f"--grace period is put back in the queue, and can be cancelled then."
        )
    _check_in_run_order(job, "cancelled")
    message = f"Job {job.id} ({job.callable_name}) was cancelled by {by}"
    message += f" before it ran: {reason}" if reason else " before it ran"
    job.queue.cancel(job, failure_from(JobCancelled(message)), now)
    return job


def in_transaction(db, work, database=None, attempts=MAX_CONFLICTS):
    """Call ``work(queues)`` in a transaction of its own on ``db`` and
    commit, retrying on ConflictError and other transient errors with a
    growing random pause; returns what ``work`` returned.

    ``work`` must return plain data, not persistent objects: the connection
    is closed on return. ``database`` names the queues' database in a
    multi-database setup.
    """
    try:
        return in_own_transaction(
            db, lambda conn: work(read_queues(conn, database)), attempts
        )
    except TRANSIENT_ERRORS:
        raise AdminError(
            f"gave up after {attempts} write conflicts: the queues are very busy; "
            f"try again"
        ) from None


# -- pruning ----------------------------------------------------------------


def _prune_index(tm, conn, database, name, failed, cutoff, dry_run, batch_size):
    """Remove the jobs of one completed index that ended before ``cutoff``,
    ``batch_size`` per transaction. Returns (removed, kept)."""
    cursor = _completed_threshold(cutoff)
    removed = kept = 0
    conflicts = 0
    while True:
        tm.begin()
        try:
            queue = read_queues(conn, database).get(name)
            if queue is None:
                abort(tm)
                break  # removed meanwhile
            index = queue._failed if failed else queue._succeeded
            batch = list(itertools.islice(index.items(min=cursor), batch_size))
            batch_removed = batch_kept = 0
            for _, job in batch:
                parent = job.parent
                if parent is not None and parent.status != COMPLETED:
                    # Part of a serial/parallel job or callback of a job
                    # that is not done: its parent still needs it.
                    batch_kept += 1
                    continue
                if not dry_run:
                    try:
                        queue.remove(job)
                    except ValueError:
                        # Indexed but not the queue's job any more: leave
                        # it for a person to look at.
                        log.warning("queue %r: could not remove %r", name, job)
                        batch_kept += 1
                        continue
                batch_removed += 1
            if dry_run:
                abort(tm)
            else:
                tm.commit()
        except TRANSIENT_ERRORS:
            abort(tm)
            conflicts += 1
            if conflicts >= MAX_CONFLICTS:
                raise AdminError(
                    f"gave up pruning queue {queue_label(name)!r} after "
                    f"{conflicts} write conflicts in a row; {removed} jobs were "
                    f"removed. Try again, or with a smaller batch."
                ) from None
            pause(conflicts)
            continue
        except BaseException:
            abort(tm)
            raise
        conflicts = 0
        removed += batch_removed
        kept += batch_kept
        if batch:
            log.info(
                "queue %r: %s %d %s jobs",
                queue_label(name),
                "would remove" if dry_run else "removed",
                batch_removed,
                "failed" if failed else "succeeded",
            )
        if len(batch) < batch_size:
            break
        cursor = batch[-1][0] + 1
    return removed, kept


def prune(
    db,
    older_than,
    failed_older_than=None,
    queue=None,
    dry_run=False,
    database=None,
    batch_size=PRUNE_BATCH,
    now=None,
):
    """Remove completed jobs that ended more than ``older_than`` ago (a
    timedelta); failed jobs are kept until ``failed_older_than`` (default:
    FAILED_KEEP_FACTOR times ``older_than``).

    ``queue`` names one queue (default: all). Jobs are removed
    ``batch_size`` per transaction, each retried on conflicts, so that
    dispatchers go on meanwhile; a completed part or callback of a job that
    is not completed is kept. With ``dry_run`` nothing is removed and the
    counts say what would be. Returns ``{queue name: {"succeeded": n,
    "failed": n, "kept": n}}``. The space is given back to the storage when
    it is packed.
    """
    if older_than < datetime.timedelta(0):
        raise AdminError("--older-than must not be negative")
    if failed_older_than is None:
        failed_older_than = older_than * FAILED_KEEP_FACTOR
    if failed_older_than < datetime.timedelta(0):
        raise AdminError("--failed-older-than must not be negative")
    if batch_size < 1:
        raise AdminError(f"the batch size must be at least 1, not {batch_size}")
    now = now or clock.utcnow()
    tm = transaction.TransactionManager(explicit=True)
    conn = db.open(transaction_manager=tm)
    try:
        tm.begin()
        try:
            names = [q.name for q in select_queues(read_queues(conn, database), queue)]
        finally:
            abort(tm)
        counts = {}
        for name in names:
            succeeded, kept_ok = _prune_index(
                tm, conn, database, name, False, now - older_than, dry_run, batch_size
            )
            failed, kept_failed = _prune_index(
                tm,
                conn,
                database,
                name,
                True,
                now - failed_older_than,
                dry_run,
                batch_size,
            )
            counts[name] = {
                "succeeded": succeeded,
                "failed": failed,
                "kept": kept_ok + kept_failed,
            }
        return counts
    finally:
        abort(tm)
        conn.close()


# -- cluster-wide settings --------------------------------------------------


def settings_report(queues, queue=None, now=None):
    """The cluster-wide settings in force, as a dict: for each queue (or
    the one named ``queue``) its quotas, the default agent size, each
    registered dispatcher's agent size with where it comes from, and the
    sizes set for dispatchers that are not registered now.

    A dispatcher's ``source`` is where its size comes from: its process
    (``"zope.conf"``, ``"command line"``, ``"agent_size argument"``; then
    ``follows_settings`` is False and a size set for it in the database is
    not in force), ``"dispatcher setting"``, ``"cluster default"`` or
    ``"built-in default"`` (see zasync.registry).
    """
    now = now or clock.utcnow()
    return {
        "time": now,
        "queues": [_queue_settings(q, now) for q in select_queues(queues, queue)],
    }


def _queue_settings(queue, now):
    settings = queue.agent_settings
    default = None if settings is None else settings.default_size
    own = {} if settings is None else settings.dispatcher_sizes()
    dispatchers = []
    for uuid, record in queue.dispatchers.items():
        agent = record.agents.get("main")
        configured, configured_source = configured_agent_size(queue, uuid)
        explicit = record.agent_size_source
        dispatchers.append(
            {
                "uuid": uuid,
                "host": record.host,
                "pid": record.pid,
                "alive": not record.is_dead(now),
                "size": agent.size if agent is not None else configured,
                "source": explicit or configured_source,
                "follows_settings": explicit is None,
                "setting": own.get(uuid),
            }
        )
    return {
        "name": queue.name,
        "label": queue_label(queue.name),
        "quotas": [
            {"name": quota.name, "size": quota.size, "active": len(quota)}
            for quota in queue.quotas.values()
        ],
        "default_agent_size": {
            "size": DEFAULT_AGENT_SIZE if default is None else default,
            "source": FROM_BUILT_IN if default is None else FROM_QUEUE_DEFAULT,
        },
        "dispatchers": dispatchers,
        "unregistered_settings": [
            {"uuid": uuid, "size": size}
            for uuid, size in sorted(own.items())
            if uuid not in queue.dispatchers
        ],
    }


def _size(value, what):
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise AdminError(f"{what} must be a whole number of 0 or more, not {value!r}")
    return value


def _one_queue(queues, queue):
    return select_queues(queues, DEFAULT_QUEUE if queue is None else queue)[0]


def set_quota_size(queues, name, size, queue=None):
    """Set the size of quota ``name`` in ``queue`` (default: the default
    queue), creating the quota if missing; 0 pauses the jobs naming it.
    Every dispatcher of the cluster follows at its next claim. Works in the
    current transaction; returns ``{"queue", "quota", "size", "was"}``
    (``was``: the size before, None if the quota was created)."""
    size = _size(size, "a quota size")
    if not isinstance(name, str) or not name.strip():
        raise AdminError(f"a quota name must be a non-empty text, not {name!r}")
    target = _one_queue(queues, queue)
    quota = target.quotas.get(name)
    was = None if quota is None else quota.size
    if quota is None:
        target.quotas.create(name, size=size)
    elif quota.size != size:
        quota.size = size
    log.info(
        "queue %r: quota %r size %s (was %s)", queue_label(target.name), name, size, was
    )
    return {"queue": queue_label(target.name), "quota": name, "size": size, "was": was}


def _dispatcher_uuid(queue, text):
    """The UUID of a dispatcher of ``queue`` (registered, or with a size of
    its own) that ``text`` names in full or by a unique prefix."""
    settings = queue.agent_settings
    known = set(queue.dispatchers.keys())
    if settings is not None:
        known.update(settings.dispatcher_sizes())
    wanted = str(text).strip().lower()
    if wanted in known:
        return wanted
    matches = sorted(uuid for uuid in known if uuid.startswith(wanted))
    label = queue_label(queue.name)
    if len(matches) == 1 and len(wanted) >= 4:
        return matches[0]
    if len(matches) > 1:
        raise AdminError(
            f"{text!r} names several dispatchers of queue {label!r} "
            f"({', '.join(matches)}); give more of the UUID"
        )
    raise AdminError(
        f"no dispatcher {text!r} serves queue {label!r}; 'zasync settings' "
        f"lists the dispatchers (by UUID) and their agent sizes"
    )


def set_agent_size(queues, size, queue=None, dispatcher=None):
    """Set the agent size, cluster-wide, in ``queue`` (default: the
    default queue): of every dispatcher (``dispatcher`` None: the queue's
    default agent size) or of the one whose UUID (or a unique prefix of it)
    ``dispatcher`` gives. ``size`` None unsets it: the dispatchers then
    follow the queue's default, or the built-in default.

    Dispatchers whose process sets its size explicitly (zope.conf
    ``threads``, ``zasync worker --agent-size``) keep it: for one of them
    AdminError says so, as the setting would not be in force. The others
    are resized at once, and the setting stays in force when they restart.
    Works in the current transaction; returns ``{"queue", "dispatcher",
    "size", "was", "resized", "overridden"}``: the dispatchers whose agents
    now have another size (``{"uuid", "size"}``) and those that keep the
    size of their process (``{"uuid", "size", "source"}``).
    """
    if size is not None:
        size = _size(size, "an agent size")
    target = _one_queue(queues, queue)
    label = queue_label(target.name)
    uuid = None
    if dispatcher is not None:
        uuid = _dispatcher_uuid(target, dispatcher)
        record = target.dispatchers.get(uuid)
        if record is not None and record.agent_size_source is not None:
            agent = record.agents.get("main")
            raise AdminError(
                f"dispatcher {uuid} ({record.host}:{record.pid}) takes its "
                f"agent size ({agent.size if agent else '?'} threads) from its "
                f"{record.agent_size_source}, which wins over a setting in the "
                f"database; change it there ({_where_to_change(record)}) and "
                f"restart that process"
            )
        if record is None and size is not None:
            raise AdminError(
                f"dispatcher {uuid} does not serve queue {label!r} now; set its "
                f"size while it runs (sizes it had are kept when it restarts)"
            )
    settings = agent_settings(target) if size is not None else target.agent_settings
    was = None
    if settings is not None:
        if uuid is None:
            was = settings.default_size
            settings.default_size = size
        else:
            was = settings.dispatcher_size(uuid)
            settings.set_dispatcher_size(uuid, size)
    resized, overridden = [], []
    for record_uuid, record in target.dispatchers.items():
        agent = record.agents.get("main")
        if agent is None:
            continue
        if record.agent_size_source is not None:
            overridden.append(
                {
                    "uuid": record_uuid,
                    "size": agent.size,
                    "source": record.agent_size_source,
                }
            )
            continue
        new_size, _ = configured_agent_size(target, record_uuid)
        if agent.size != new_size:
            # The dispatcher watches its agent: it takes up the new size at
            # once (and, on a race with its registration, in its next round).
            agent.size = new_size
            resized.append({"uuid": record_uuid, "size": new_size})
    log.info(
        "queue %r: agent size of %s set to %s (was %s)",
        label,
        f"dispatcher {uuid}" if uuid else "every dispatcher",
        "unset" if size is None else size,
        was,
    )
    return {
        "queue": label,
        "dispatcher": uuid,
        "size": size,
        "was": was,
        "resized": resized,
        "overridden": overridden,
    }


def _where_to_change(record):
    source = record.agent_size_source
    if source == "zope.conf":
        return "<product-config zasync> threads"
    if source == "command line":
        return "zasync worker --agent-size"
    return "the agent_size argument of zasync.start()"


# -- where the queues live ---------------------------------------------------

#: The key of the main database's root that records where the queues of
#: the cluster live (see queues_location).
LOCATION_KEY = "zasync.queues_location"


def describe_location(database):
    """How a queues location is named to people."""
    if database is None:
        return "the main database (single-database mode)"
    return f"the database {database!r} (multi-database mode)"


def queues_location(connection):
    """Where the processes of this cluster keep the queues, as recorded in
    the main database behind ``connection``: ``{"database": None (the main
    database) or the name of the queues' own database, "recorded_by": text,
    "recorded": datetime}``, or None if nothing is recorded.

    The first process that starts records it; each one that starts later
    checks it (zasync.plone.startup), so that a process configured for the
    other mode stops instead of watching queues nobody else uses."""
    entry = connection.root().get(LOCATION_KEY)
    return None if entry is None else dict(entry)


def record_queues_location(connection, database, by, now=None):
    """Record, in the current transaction, that the queues live in
    ``database`` (None: the main database); ``by`` says who did. Returns
    what was recorded before (see queues_location), or None."""
    if database is not None and (not isinstance(database, str) or not database):
        raise AdminError(f"a database name must be a non-empty text, not {database!r}")
    before = queues_location(connection)
    connection.root()[LOCATION_KEY] = {
        "database": database,
        "recorded_by": str(by),
        "recorded": now or clock.utcnow(),
    }
    return before


def unfinished_jobs(queues):
    """How many jobs of ``queues`` are pending, claimed or waiting."""
    return sum(queue.unsettled() for queue in queues.values())
