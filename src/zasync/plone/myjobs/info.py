"""Plain data about one of the current user's jobs, for ``@@my-jobs``, its
JSON view and the notices. Every value is text or a number; templates and
scripts show it as text, never as markup."""

from zasync.admin import job_summary
from zasync.admin.text import VALUE_REPR_LIMIT
from zasync.failure import Failure
from zasync.plone import statuses
from zasync.plone.references import ObjectRef, path_text
from zasync.status import COMPLETED


def shorten(text, limit=VALUE_REPR_LIMIT):
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _iso(when):
    return None if when is None else when.isoformat()


def _shown(when):
    """``when`` as the site shows times (its time zone and language)."""
    if when is None:
        return None
    from plone import api

    try:
        return api.portal.get_localized_time(datetime=when, long_format=True)
    except Exception:  # no site or no translation service: plain UTC
        return f"{when:%Y-%m-%d %H:%M:%S} UTC"


def context_path(job):
    """The path of the object the job was queued on, if it has one."""
    first = job.args[0] if job.args else None
    return path_text(first.path) if isinstance(first, ObjectRef) else None


def job_info(job, translate=str):
    """Plain data about ``job``; ``translate`` turns message ids into text
    (zope.i18n.translate bound to the request)."""
    status = job_summary(job)["status"]
    done = job.status == COMPLETED
    result = job.result if done else None
    failure = result if isinstance(result, Failure) else None
    fraction = message = None
    progress = job.progress
    if progress is not None:
        fraction, message = progress
        fraction = max(0.0, min(1.0, float(fraction)))
    return {
        # Job ids do not fit in a JavaScript number: a string.
        "id": str(job.id),
        "callable": job.callable_name,
        "function": job.callable_name.rpartition(".")[2],
        "module": job.callable_name.rpartition(".")[0],
        "context": context_path(job),
        "status": status,
        "status_text": translate(statuses.label(status)),
        "badge": statuses.badge(status),
        "done": done,
        "failed": failure is not None,
        "percent": None if fraction is None else round(fraction * 100),
        "progress_message": None if message is None else shorten(str(message)),
        "queued": _iso(job.queued),
        "started": _iso(job.started),
        "ended": _iso(job.ended if done else None),
        "queued_text": _shown(job.queued),
        "ended_text": _shown(job.ended if done else None),
        "result": shorten(repr(result)) if done and failure is None else None,
        "error": (
            None
            if failure is None
            else shorten(f"{failure.type_name}: {failure.getErrorMessage()}")
        ),
        "traceback": None if failure is None else failure.getTraceback(),
    }
