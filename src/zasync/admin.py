"""Operations on the queues of a database: what an operator needs.

This is what the ``zasync status``, ``jobs``, ``job``, ``retry``,
``cancel`` and ``prune`` commands do, without any command-line parsing, so
that Python code (a script, a Zope control panel) can do the same.

Reading functions take an IQueues (see :func:`read_queues`) and return
plain data: dicts and lists of str, int, float, bool, None and aware UTC
datetimes. :func:`retry_job` and :func:`cancel_job` change the queues in
the caller's current transaction (commit it, or use :func:`in_transaction`,
which retries conflicts); :func:`prune` runs transactions of its own, a
batch at a time. Anything that cannot be done as asked raises
:class:`AdminError`, whose message says why and what to do instead.
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
from zasync.failure import Failure, failure_from
from zasync.job import CallableNotFound, Job
from zasync.queue import _TIME_MASK, DEFAULT_QUEUE, ROOT_KEY
from zasync.runner import POSTPONE, abort
from zasync.status import ACTIVE, ASSIGNED, CALLBACKS, COMPLETED, PENDING
from zasync.transact import in_own_transaction, pause

__all__ = [
    "AdminError",
    "JobCancelled",
    "JobNotFound",
    "NoQueues",
    "RetryOutcome",
    "STATUS_FILTERS",
    "cancel_job",
    "describe_job",
    "find_jobs",
    "format_duration",
    "get_job",
    "in_transaction",
    "job_summary",
    "parse_duration",
    "parse_job_id",
    "prune",
    "queue_label",
    "queue_name",
    "read_queues",
    "retry_job",
    "select_queues",
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


class AdminError(Exception):
    """An operation cannot be done as asked; the message says why and what
    to do instead. Nothing was changed."""


class JobNotFound(AdminError, LookupError):
    """No queue of the database has a job with this id."""


class NoQueues(AdminError):
    """The database has no zasync queues at all."""


class JobCancelled(Exception):
    """The job was cancelled before it ran (the Failure of a cancelled job)."""


# -- small parsers and formatters -------------------------------------------

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
    """A job id (an int) from text; ValueError saying what ids look like."""
    if isinstance(text, int) and not isinstance(text, bool):
        return text
    compact = str(text).strip()
    if not compact.isdigit() or not compact.isascii():
        raise ValueError(
            f"{text!r} is not a job id: ids are whole numbers, as "
            f"'zasync jobs' lists them"
        )
    return int(compact)


def queue_label(name):
    """How a queue is named to people: the default queue ('') is 'default'."""
    return "default" if name == DEFAULT_QUEUE else name


def queue_name(label):
    """The queue name for what a person typed: 'default' is ''."""
    return DEFAULT_QUEUE if label in ("default", DEFAULT_QUEUE) else label


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
        raise JobNotFound(
            f"no job {job_id} in any queue (it may have been pruned; "
            f"'zasync jobs' lists the jobs there are)"
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
        if not matches(job.callable_name):
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
        "callbacks": [_related(callback) for callback in job.callbacks],
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
    except POSTPONE:
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
        except POSTPONE:
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
