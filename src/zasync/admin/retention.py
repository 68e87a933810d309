"""How long queues keep their completed jobs (cluster-wide settings of
zasync.retention) and what the automatic pruning did last, as plain data
and text; zasync.admin.settings reports and changes the settings."""

import datetime

from zasync import retention
from zasync.admin.text import format_duration, queue_label

#: The retention settings, in the order they are shown.
RETENTION_FIELDS = ("enabled", *retention.FIELDS)
UNLIMITED = retention.UNLIMITED


def queue_retention(queue):
    """``{field: {"value", "source"}}``: the retention in force for one
    queue (see :func:`retention_report`)."""
    return {
        field: {"value": value, "source": source}
        for field, (value, source) in retention.policy(queue).items()
    }


def pruning_report(queues):
    """What the automatic pruning does: ``{"holder": the UUID of the
    dispatcher pruning now or None, "next_pass": when the next pass
    begins or None, "current": the pass under way or None, "last": the
    last pass finished or None}``; a pass is ``{"started", "ended" (the
    last only), "by", "removed" (the last only), "queues": {queue label:
    {"succeeded", "failed", "kept"}}}``."""
    state = retention.retention_state(queues)
    if state is None:
        return {"holder": None, "next_pass": None, "current": None, "last": None}

    def copy(found):
        if found is None:
            return None
        found = dict(found)
        found["queues"] = {
            queue_label(name): dict(counts)
            for name, counts in found.get("queues", {}).items()
        }
        return found

    return {
        "holder": state.holder,
        "next_pass": state.next_pass,
        "current": copy(state.current),
        "last": copy(state.last),
    }


def describe_value(value):
    """A retention value as text: ``7d00h``, ``500``, ``unlimited``,
    ``on``/``off``."""
    if value is True:
        return "on"
    if value is False:
        return "off"
    if isinstance(value, datetime.timedelta):
        return format_duration(value)
    if value is None:
        return "unset"
    return str(value)


def describe_retention(rules):
    """One line for the retention in force (``queue_retention``'s
    dict, or its JSON form with seconds): ``keeps succeeded jobs 7d00h,
    failed jobs 30d00h (built-in default)``."""

    def value(field):
        found = rules[field]["value"]
        if field.endswith("_age") and isinstance(found, int | float):
            found = datetime.timedelta(seconds=found)
        return found

    if not value("enabled"):
        return f"off ({rules['enabled']['source']}): nothing is pruned automatically"
    parts = []
    for kind in ("succeeded", "failed"):
        age, count = value(f"{kind}_age"), value(f"{kind}_count")
        kept = "forever" if age == UNLIMITED else describe_value(age)
        if count != UNLIMITED:
            kept += f" (at most {count})"
        parts.append(f"{kind} jobs {kept}")
    sources = sorted({entry["source"] for entry in rules.values()})
    return f"keeps {', '.join(parts)} ({' and '.join(sources)})"
