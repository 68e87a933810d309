"""Small parsers and formatters of the operator library: durations, job
ids, queue labels, JSON-ready data, shortened reprs."""

import datetime
import re

from zasync.config import queue_label, queue_name  # noqa: F401 (part of admin)

# Reprs longer than these are shortened, unless full=True.
ARGUMENT_REPR_LIMIT = 200
VALUE_REPR_LIMIT = 1000

#: The largest integer a JSON number keeps exactly in JavaScript and jq.
JSON_SAFE_INTEGER = 2**53 - 1
#: Keys whose values are job ids, which for_json turns into strings.
JOB_ID_KEYS = frozenset({"id", "retry_of", "waiting_for"})


def for_json(data):
    """A copy of plain ``data`` (what this module returns) ready for
    ``json.dumps``: job ids (the values of the keys in JOB_ID_KEYS) become
    strings, which JavaScript and jq would otherwise round; datetimes
    become ISO 8601 text, timedeltas seconds."""

    def convert(value, key=None):
        if isinstance(value, dict):
            return {k: convert(v, k) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            # A list of ids (waiting_for) keeps its key for its items.
            return [convert(v, key if key in JOB_ID_KEYS else None) for v in value]
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


def format_period(seconds):
    """A period (of a rate) in its largest whole unit: ``1h``, ``30m``,
    ``90s``, ``1.5s``."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


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
