"""Recurring jobs for operators (``zasync recurring``, the dashboard):
their definitions as plain data, and pause, resume, run now and remove in
the caller's transaction. See zasync.recurring."""

import logging

from zasync import clock, recurring
from zasync.admin.text import queue_label
from zasync.exceptions import AdminError

log = logging.getLogger(__name__)


def _definition(queues, name):
    try:
        return recurring.get(queues, name)
    except KeyError as exc:
        raise AdminError(exc.args[0]) from None


def describe_recurring(definition):
    """One definition as plain data."""
    job, status, failed = recurring.last_run(definition)
    return {
        "name": definition.name,
        "schedule": definition.schedule_text,
        "cron": definition.cron,
        "every": None if definition.every is None else definition.every.total_seconds(),
        "timezone": definition.timezone,
        "queue": queue_label(definition.queue),
        "quota_names": list(definition.quota_names),
        "priority": definition.priority,
        "catch_up": definition.catch_up,
        "callable": definition.callable_name,
        "environment": (
            None if definition.environment is None else str(definition.environment)
        ),
        "paused": bool(definition.paused),
        "source": definition.source,
        "last_tick": definition.last_tick,
        "next_tick": None if definition.paused else definition.next_tick,
        "last_run": (
            None
            if job is None
            else {
                "id": job.id,
                "status": status,
                "failed": failed,
                "queued": job.queued,
            }
        ),
        "last_error": definition.last_error,
    }


def recurring_report(queues):
    """The recurring jobs of the database, by name: a list of dicts (see
    :func:`describe_recurring`)."""
    return [describe_recurring(d) for d in recurring.definitions(queues)]


def pause_recurring(queues, name):
    """Pause the recurring job ``name``: ``{"name", "was_paused"}``."""
    definition = _definition(queues, name)
    was = bool(definition.paused)
    recurring.pause(queues, name)
    if not was:
        log.info("recurring job %r paused", name)
    return {"name": name, "was_paused": was}


def resume_recurring(queues, name, now=None):
    """Resume the recurring job ``name``: ``{"name", "was_paused",
    "next_tick"}``."""
    definition = _definition(queues, name)
    was = bool(definition.paused)
    recurring.resume(queues, name, now=now or clock.utcnow())
    if was:
        log.info("recurring job %r resumed", name)
    return {"name": name, "was_paused": was, "next_tick": definition.next_tick}


def run_recurring(queues, name, now=None):
    """Queue one run of the recurring job ``name`` now: ``{"name",
    "job_id", "queue"}``."""
    definition = _definition(queues, name)
    try:
        job = recurring.run_now(queues, name, now=now)
    except (ImportError, AttributeError, ValueError) as exc:
        raise AdminError(
            f"recurring job {name!r} cannot be queued: {exc}; define it again"
        ) from None
    log.info("recurring job %r run now: job %s", name, job.id)
    return {"name": name, "job_id": job.id, "queue": queue_label(definition.queue)}


def remove_recurring(queues, name):
    """Remove the recurring job ``name`` (its jobs stay):
    ``{"name", "source"}``. A definition from ZCML comes back when its
    instance starts again unless its ZCML is removed too."""
    definition = _definition(queues, name)
    recurring.remove(queues, name)
    log.info("recurring job %r removed", name)
    return {"name": name, "source": definition.source}
