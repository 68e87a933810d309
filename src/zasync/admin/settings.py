"""Cluster-wide settings stored with the queues: quota sizes, agent sizes,
the dispatchers' intervals and the queues' retention, with where each
comes from."""

import datetime
import logging

from zasync import clock, retention
from zasync.admin.reports import quota_info, select_queues
from zasync.admin.retention import (
    RETENTION_FIELDS,
    UNLIMITED,
    pruning_report,
    queue_retention,
)
from zasync.admin.text import parse_duration, queue_label
from zasync.config import DEFAULT_QUEUE, DEFAULTS, INTERVALS, MAIN_AGENT
from zasync.exceptions import AdminError
from zasync.registry import (
    DEFAULT_AGENT_SIZE,
    FROM_BUILT_IN,
    FROM_QUEUE_DEFAULT,
    agent_settings,
    configured_agent_size,
    interval_settings,
)

log = logging.getLogger("zasync.admin")


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
        "intervals": interval_report(queues),
        "queues": [_queue_settings(q, now) for q in select_queues(queues, queue)],
        "pruning": pruning_report(queues),
    }


def interval_report(queues):
    """The cluster-wide interval settings: for each of poll_interval,
    ping_interval and death_interval, ``{"setting": seconds or None,
    "default": the built-in seconds}``."""
    settings = getattr(queues, "interval_settings", None)
    values = {} if settings is None else settings.values()
    return {
        field: {
            "setting": values.get(field),
            "default": float(getattr(DEFAULTS, field)),
        }
        for field in INTERVALS
    }


def _interval_name(field):
    if field in ("poll", "ping", "death"):
        field = f"{field}_interval"
    if field not in INTERVALS:
        raise AdminError(f"no interval {field!r}; use one of {', '.join(INTERVALS)}")
    return field


def _seconds(field, seconds):
    if isinstance(seconds, str):
        try:
            return float(seconds)
        except ValueError:
            raise AdminError(
                f"{field} must be a number of seconds > 0, not {seconds!r}"
            ) from None
    return seconds


def set_intervals(queues, changes):
    """Set cluster-wide intervals: ``changes`` maps 'poll_interval',
    'ping_interval' and 'death_interval' ('poll', 'ping' and 'death' do
    too) to seconds, or to None to unset one (the built-in default). The
    intervals they make together are checked (a death interval longer than
    the ping interval); nothing changes if they cannot be used. Dispatchers
    whose process sets an interval keep their own; the others take the
    change up at their next round. Works in the current transaction;
    returns ``{"intervals": {field: seconds or None}, "was": {...}}``."""
    wanted = {
        name: _seconds(name, seconds)
        for name, seconds in ((_interval_name(f), s) for f, s in changes.items())
    }
    settings = interval_settings(queues)
    was = {field: settings.get(field) for field in wanted}
    try:
        settings.update(wanted)
    except ValueError as exc:
        raise AdminError(f"{exc}; nothing was changed") from None
    now = {field: settings.get(field) for field in wanted}
    log.info("intervals set to %s (were %s)", now, was)
    return {"intervals": now, "was": was}


def set_interval(queues, field, seconds):
    """:func:`set_intervals` for one interval."""
    return set_intervals(queues, {field: seconds})


def _queue_settings(queue, now):
    settings = queue.agent_settings
    default = None if settings is None else settings.default_size
    own = {} if settings is None else settings.dispatcher_sizes()
    dispatchers = []
    for uuid, record in queue.dispatchers.items():
        agent = record.agents.get(MAIN_AGENT)
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
                "intervals": _record_intervals(record),
            }
        )
    return {
        "name": queue.name,
        "label": queue_label(queue.name),
        "quotas": [quota_info(quota, now) for quota in queue.quotas.values()],
        "default_agent_size": {
            "size": DEFAULT_AGENT_SIZE if default is None else default,
            "source": FROM_BUILT_IN if default is None else FROM_QUEUE_DEFAULT,
        },
        "retention": queue_retention(queue),
        "dispatchers": dispatchers,
        "unregistered_settings": [
            {"uuid": uuid, "size": size}
            for uuid, size in sorted(own.items())
            if uuid not in queue.dispatchers
        ],
    }


def _record_intervals(record):
    """{field: {"seconds", "source"}} of a dispatcher's intervals in force
    (a record of an older version knows its ping and death intervals only,
    not where they come from)."""
    known = record.intervals
    if known is None:
        known = {
            "ping_interval": (record.ping_interval, None),
            "death_interval": (record.death_interval, None),
        }
    return {
        field: {"seconds": seconds, "source": source}
        for field, (seconds, source) in known.items()
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


def set_quota_rate(queues, name, limit, per=None, queue=None):
    """Set the rate of quota ``name`` in ``queue`` (default: the default
    queue): at most ``limit`` jobs naming it start in any period ``per`` (a
    timedelta, seconds or text like ``1m``, ``2h``), cluster-wide;
    ``limit`` None removes the rate. The quota must exist (``set_quota_size``
    creates one). Works in the current transaction; returns ``{"queue",
    "quota", "rate", "was"}`` (rates as ``{"limit", "per_seconds"}`` or
    None)."""
    target = _one_queue(queues, queue)
    quota = target.quotas.get(name) if isinstance(name, str) else None
    if quota is None:
        raise AdminError(
            f"queue {queue_label(target.name)!r} has no quota {name!r}; create "
            f"it first ('zasync quota set {name} SIZE')"
        )
    was = _rate_data(quota.rate)
    if limit is None:
        rate = None
    else:
        if isinstance(limit, str) and limit.strip().isdigit():
            limit = int(limit)
        rate = (limit, _period(per))
    try:
        quota.set_rate(rate)
    except ValueError as error:
        raise AdminError(str(error)) from None
    log.info(
        "queue %r: quota %r rate %s (was %s)",
        queue_label(target.name),
        name,
        _rate_data(quota.rate),
        was,
    )
    return {
        "queue": queue_label(target.name),
        "quota": name,
        "rate": _rate_data(quota.rate),
        "was": was,
    }


def _rate_data(rate):
    return (
        None
        if rate is None
        else {"limit": rate[0], "per_seconds": rate[1].total_seconds()}
    )


def _period(per):
    if isinstance(per, datetime.timedelta):
        return per
    if isinstance(per, (int, float)) and not isinstance(per, bool):
        return datetime.timedelta(seconds=per)
    if isinstance(per, str):
        try:
            return parse_duration(per)
        except ValueError as error:
            raise AdminError(f"a rate's period: {error}") from None
    raise AdminError(
        f"a rate's period must be a duration (like 1m or 2h, or seconds), not {per!r}"
    )


def _find_dispatcher(queue, text):
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
        uuid = _find_dispatcher(target, dispatcher)
        record = target.dispatchers.get(uuid)
        if record is not None and record.agent_size_source is not None:
            agent = record.agents.get(MAIN_AGENT)
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
        agent = record.agents.get(MAIN_AGENT)
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


# -- retention ----------------------------------------------------------------


def retention_report(queues, queue=None, now=None):
    """The retention in force for each queue (or the one named
    ``queue``): ``{"time", "queues": [{"name", "label", "retention":
    {field: {"value", "source"}}}], "pruning": pruning_report(queues)}``.
    A value is a bool (enabled), a timedelta (an age), an int (a count) or
    ``"unlimited"``; a source ``"cluster setting"`` or ``"built-in
    default"``."""
    return {
        "time": now or clock.utcnow(),
        "queues": [
            {
                "name": q.name,
                "label": queue_label(q.name),
                "retention": queue_retention(q),
            }
            for q in select_queues(queues, queue)
        ],
        "pruning": pruning_report(queues),
    }


def _value(field, value):
    """A setting's value from text or a value; AdminError saying what to
    give otherwise."""
    if isinstance(value, str):
        text = value.strip().lower()
        if field == "enabled":
            if text in ("on", "true", "yes", "1"):
                return True
            if text in ("off", "false", "no", "0"):
                return False
            raise AdminError(f"enabled must be on or off, not {value!r}")
        if text in (UNLIMITED, "none", "forever"):
            return UNLIMITED
        if field.endswith("_age"):
            try:
                return parse_duration(text)
            except ValueError as exc:
                raise AdminError(f"{field}: {exc}, or {UNLIMITED!r}") from None
        if field.endswith("_count"):
            try:
                return int(text)
            except ValueError:
                raise AdminError(
                    f"{field} must be a whole number of at least 1 or "
                    f"{UNLIMITED!r}, not {value!r}"
                ) from None
    return value


def set_retention(queues, changes, queue=None):
    """Set the retention of ``queue`` (default: the default queue) for the
    whole cluster: ``changes`` maps 'enabled', 'succeeded_age',
    'succeeded_count', 'failed_age' and 'failed_count' to a value (text
    like ``7d``, ``500``, ``unlimited``, ``off`` is parsed), or to None to
    unset one (the built-in default). Nothing changes if one cannot be
    used. The dispatcher pruning next follows it. Works in the current
    transaction; returns ``{"queue", "retention": {field: value or None},
    "was": {...}}``."""
    target = select_queues(queues, DEFAULT_QUEUE if queue is None else queue)[0]
    unknown = [field for field in changes if field not in RETENTION_FIELDS]
    if unknown:
        raise AdminError(
            f"no retention setting {unknown[0]!r}; use one of "
            f"{', '.join(RETENTION_FIELDS)}"
        )
    if not changes:
        raise AdminError(f"give at least one of {', '.join(RETENTION_FIELDS)}")
    wanted = {
        field: None if value is None else _value(field, value)
        for field, value in changes.items()
    }
    settings = target.retention
    was = {field: None if settings is None else settings.get(field) for field in wanted}
    if settings is None and all(value is None for value in wanted.values()):
        now = dict.fromkeys(wanted)
    else:
        settings = retention.retention_settings(target)
        try:
            settings.update(wanted)
        except (TypeError, ValueError) as exc:
            raise AdminError(f"{exc}; nothing was changed") from None
        now = {field: settings.get(field) for field in wanted}
    log.info(
        "queue %r: retention set to %s (was %s)", queue_label(target.name), now, was
    )
    return {"queue": queue_label(target.name), "retention": now, "was": was}
