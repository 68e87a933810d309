"""How long queues keep their completed jobs (cluster-wide settings of
zasync.retention) and what the automatic pruning did last, as plain data
and text; zasync.admin.settings reports and changes the settings."""

import datetime

from zasync import retention
from zasync.admin.text import format_duration

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
    """What the automatic pruning does, with the same keys whatever it
    did: ``{"holder": the UUID of the dispatcher pruning now or None,
    "running_since", "running_removed": the pass under way (when it began,
    the jobs removed so far) or None, "last_started", "last_ended",
    "last_by", "last_removed": the last pass finished (when, by which
    dispatcher, how many jobs it removed in all) or None, "next_pass":
    when the next pass begins or None}``."""
    state = retention.retention_state(queues)
    current = None if state is None else state.current
    last = None if state is None else state.last

    def removed(found):
        return sum(c["succeeded"] + c["failed"] for c in found["queues"].values())

    return {
        "holder": None if state is None else state.holder,
        "running_since": None if current is None else current["started"],
        "running_removed": None if current is None else removed(current),
        "last_started": None if last is None else last["started"],
        "last_ended": None if last is None else last["ended"],
        "last_by": None if last is None else last["by"],
        "last_removed": None if last is None else last["removed"],
        "next_pass": None if state is None else state.next_pass,
    }


def queue_pruned(queues, queue):
    """``{"succeeded", "failed", "kept"}``: the jobs of ``queue`` (an
    IQueue) that the last automatic pass removed, and kept as parts of
    unfinished jobs (zeros before the first pass)."""
    state = None if queues is None else retention.retention_state(queues)
    last = None if state is None else state.last
    found = {} if last is None else last["queues"].get(queue.name, {})
    return {key: found.get(key, 0) for key in ("succeeded", "failed", "kept")}


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
