"""What the zasync control panel shows and changes, as plain data.

Two kinds of settings, kept in two places:

- *cluster-wide*, kept with the queues of the default queue (see
  zasync.admin): the size of each quota, the default agent size, and the
  agent sizes of single dispatchers. Every site of the database and every
  worker shares them: a change made in one site's control panel shows in
  every other's, and ``zasync settings`` shows the same;
- *this site's*, kept in its registry (IZasyncSettings): the public URL.

The retention of every queue (how long it keeps completed jobs, see
zasync.retention) is cluster-wide too; here in the units of a form: ages
in days (0: no age limit; None: the built-in default), counts (None: no
count limit), and whether the queue is pruned automatically.

:func:`current` reads both, :func:`change` changes both in the current
transaction; the form (views.py), and a REST ``@controlpanels`` endpoint
later, only translate.
"""

import datetime

from zope.component import getUtility

from zasync import admin, retention
from zasync.plone import settings as site_settings
from zasync.plone.interfaces import DEFAULT_QUOTA, IAsyncService

#: ``change()`` leaves a setting alone when given this.
UNCHANGED = object()


def queues():
    """The IQueues of this site's database (the queues' own in
    multi-database mode)."""
    return getUtility(IAsyncService).getQueues()


def current():
    """The settings in force: ``{"cluster": ..., "site": ...}``.

    ``cluster`` is the default queue's part of
    :func:`zasync.admin.settings_report` (quotas, default agent size,
    dispatchers with their sizes and where those come from); ``site`` is
    ``{"public_url": text or None}``; ``intervals`` the cluster-wide
    interval settings (:func:`zasync.admin.interval_report`).
    """
    report = admin.settings_report(queues(), queue="default")
    (queue,) = report["queues"]
    queue["quotas"].sort(key=lambda q: (q["name"] != DEFAULT_QUOTA, q["name"]))
    proxy = site_settings.settings()
    every = admin.retention_report(queues())
    return {
        "cluster": queue,
        "intervals": report["intervals"],
        "retention": [
            {
                "name": found["name"],
                "label": found["label"],
                "in_force": found["retention"],
                "form": retention_form_values(found["retention"]),
            }
            for found in every["queues"]
        ],
        "pruning": every["pruning"],
        "site": {"public_url": None if proxy is None else proxy.public_url},
    }


#: The retention fields of a queue, in form units (see the module).
RETENTION_FORM_FIELDS = (
    "enabled",
    "succeeded_days",
    "succeeded_count",
    "failed_days",
    "failed_count",
)


def retention_form_values(in_force):
    """``{form field: value}`` of one queue's retention (its
    ``admin.queue_retention``): the settings, not the defaults."""
    values = {"enabled": in_force["enabled"]["value"]}
    for kind in ("succeeded", "failed"):
        age, count = in_force[f"{kind}_age"], in_force[f"{kind}_count"]
        days = None
        if age["source"] == retention.FROM_SETTING:
            days = 0.0 if age["value"] == retention.UNLIMITED else age["value"] / DAY
        values[f"{kind}_days"] = days
        count_value = count["value"]
        values[f"{kind}_count"] = (
            None if count_value == retention.UNLIMITED else count_value
        )
    return values


DAY = datetime.timedelta(days=1)


def _retention_changes(wanted, shown):
    """The engine's changes for one queue: form values ``wanted`` that
    differ from those ``shown``."""
    changes = {}
    for field, value in wanted.items():
        if field not in RETENTION_FORM_FIELDS:
            raise admin.AdminError(
                f"no retention field {field!r}; use {', '.join(RETENTION_FORM_FIELDS)}"
            )
        if value == shown[field]:
            continue
        if field == "enabled":
            changes["enabled"] = bool(value)
        elif field.endswith("_days"):
            kind = field[: -len("_days")]
            if value is None:
                changes[f"{kind}_age"] = None
            elif value == 0:
                changes[f"{kind}_age"] = retention.UNLIMITED
            else:
                changes[f"{kind}_age"] = datetime.timedelta(days=value)
        else:
            changes[field] = value
    return changes


def change(
    quotas=None,
    rates=None,
    default_agent_size=UNCHANGED,
    dispatchers=None,
    public_url=UNCHANGED,
    intervals=None,
    retention=None,
):
    """Change settings in the current transaction; returns what changed,
    as sentences.

    ``quotas`` maps quota names to sizes, ``rates`` quota names to rates
    as text (``100/1h``; None or empty: no rate), ``dispatchers`` dispatcher UUIDs
    to agent sizes (None: follow the default), ``intervals``
    'poll_interval', 'ping_interval' and 'death_interval' to seconds (None:
    the built-in default); ``default_agent_size`` is a size or None (the
    built-in default), ``public_url`` a URL or None; ``retention`` maps
    queue names to ``{form field: value}`` (see RETENTION_FORM_FIELDS).
    Only values that differ from those in force are written. Raises
    AdminError (nothing may then be committed: the caller aborts) if a
    value cannot be used, for instance a size for a dispatcher whose
    process sets its own.
    """
    done = []
    found = current()
    cluster = found["cluster"]
    target = queues()
    sizes = {q["name"]: q["size"] for q in cluster["quotas"]}
    for name, size in (quotas or {}).items():
        if sizes.get(name) != size:
            admin.set_quota_size(target, name, size)
            done.append(f"quota {name!r}: {size} jobs at once (every site)")
    in_force = {q["name"]: q.get("rate") for q in cluster["quotas"]}
    for name, text in (rates or {}).items():
        limit, per = parse_rate(text)
        rate = in_force.get(name)
        if (rate and (rate["limit"], rate["per_seconds"])) == (
            limit and (limit, per.total_seconds())
        ):
            continue
        admin.set_quota_rate(target, name, limit, per)
        shown = "no rate" if limit is None else text.strip()
        done.append(f"quota {name!r}: {shown} (every site)")
    default = cluster["default_agent_size"]
    is_set = default["source"] != admin.FROM_BUILT_IN
    if default_agent_size is not UNCHANGED and (
        default_agent_size != (default["size"] if is_set else None)
    ):
        admin.set_agent_size(target, default_agent_size)
        shown = "the built-in default" if default_agent_size is None else None
        done.append(f"default agent size: {shown or default_agent_size} (every site)")
    by_uuid = {d["uuid"]: d for d in cluster["dispatchers"]}
    for uuid, size in (dispatchers or {}).items():
        entry = by_uuid.get(uuid)
        if entry is not None and not entry["follows_settings"]:
            continue  # shown, not editable: its process decides
        if entry is not None and entry["setting"] == size:
            continue
        admin.set_agent_size(target, size, dispatcher=uuid)
        shown = "the default" if size is None else f"{size} threads"
        done.append(f"dispatcher {uuid}: {shown} (every site)")
    changed = {
        name: seconds
        for name, seconds in (intervals or {}).items()
        if found["intervals"][name]["setting"] != seconds
    }
    if changed:
        admin.set_intervals(target, changed)
        for name, seconds in changed.items():
            shown = "the built-in default" if seconds is None else f"{seconds:g} s"
            done.append(f"{name.replace('_', ' ')}: {shown} (every site)")
    shown = {entry["name"]: entry for entry in found["retention"]}
    for name, wanted in (retention or {}).items():
        entry = shown.get(name)
        if entry is None:
            raise admin.AdminError(f"no queue {name!r}; it may have been removed")
        changes = _retention_changes(wanted, entry["form"])
        if changes:
            admin.set_retention(target, changes, queue=entry["label"])
            done.append(
                f"retention of queue {entry['label']}: "
                + ", ".join(
                    f"{field} {admin.describe_value(value)}"
                    for field, value in changes.items()
                )
                + " (every site)"
            )
    if public_url is not UNCHANGED and public_url != found["site"]["public_url"]:
        proxy = site_settings.settings()
        if proxy is None:
            raise admin.AdminError(
                "this site has no zasync settings in its registry: install "
                "zasync in the add-ons control panel"
            )
        proxy.public_url = public_url
        done.append(f"public URL: {public_url or 'none'} (this site)")
    return done


def parse_rate(text):
    """``(limit, per)`` of a rate written ``100/1h`` (``100 per 1h`` too),
    ``(None, None)`` for none; AdminError saying the format otherwise."""
    if text is None or not str(text).strip():
        return None, None
    compact = str(text).strip().replace(" per ", "/")
    limit, _, per = compact.partition("/")
    try:
        limit = int(limit.strip())
        per = admin.parse_duration(per)
    except ValueError:
        raise admin.AdminError(
            f"a rate is written as starts/period, like 100/1h or 10/30s, not {text!r}"
        ) from None
    return limit, per
