"""Retention: completed jobs pruned automatically by the cluster.

Each queue keeps its succeeded jobs for :data:`DEFAULT_SUCCEEDED_AGE` and
its failed jobs for :data:`DEFAULT_FAILED_AGE` unless its
:class:`RetentionSettings` (``queue.retention``, cluster-wide) say
otherwise: an age and/or a count for each kind, or retention off.

The :class:`RetentionChore`, registered at import, is run by every
dispatcher (see zasync.chores). One dispatcher at a time prunes: it takes
the lease in the database's :class:`RetentionState` (two dispatchers
taking it at once conflict, and the one that retries sees the other's), and
looks at :data:`BATCH` completed jobs at most per run (one transaction),
asking to be run again at once while there is more, so that a long prune
never holds up a round. A pass over the queues begins every :data:`EVERY`
seconds; between passes the dispatchers only read. The
lease lapses when its holder stops renewing it (judged on the storage's
commit times), and another dispatcher goes on where it stopped.

The jobs removed are taken from the old side of each completed index (the
indexes keep the newest first and completions insert there), so a batch
and a job completing rarely touch the same bucket. Set-aside jobs are never
pruned automatically: they wait for an operator (``zasync retry``,
``zasync discard``, ``zasync prune --set-aside``).

The primitives :func:`prunable` and :func:`remove_batch` are also what
``zasync.admin.prune`` (the ``zasync prune`` command) uses.
"""

import datetime
import itertools
import logging

import persistent
from zope.interface import implementer

from zasync import chores, clock
from zasync.interfaces import IChore, IRetentionSettings, IRetentionState
from zasync.keys import ended_before
from zasync.loading import readable
from zasync.status import COMPLETED

log = logging.getLogger(__name__)

#: Succeeded jobs are kept this long unless a queue's settings say otherwise.
DEFAULT_SUCCEEDED_AGE = datetime.timedelta(days=7)
#: Failed jobs are kept this long unless a queue's settings say otherwise.
DEFAULT_FAILED_AGE = datetime.timedelta(days=30)
#: The value of an age or count setting that sets no limit.
UNLIMITED = "unlimited"
#: The settings of a queue, by name.
FIELDS = ("succeeded_age", "succeeded_count", "failed_age", "failed_count")
#: Completed jobs looked at (removed, or kept as parts of unfinished
#: jobs) per chore run at most: one transaction.
BATCH = 200
#: Seconds of the storage's time after which a holder's lease lapses.
LEASE_SECONDS = 300.0
#: Seconds between the starts of two passes over the cluster's queues.
EVERY = 600.0

FROM_SETTING = "cluster setting"
FROM_BUILT_IN = "built-in default"
_BUILT_IN = {
    "enabled": True,
    "succeeded_age": DEFAULT_SUCCEEDED_AGE,
    "succeeded_count": UNLIMITED,
    "failed_age": DEFAULT_FAILED_AGE,
    "failed_count": UNLIMITED,
}


# -- settings -----------------------------------------------------------------


def check_value(field, value):
    """``value`` checked for setting ``field``: an age is a positive
    timedelta or number of seconds, a count a whole number >= 1, and either
    may be UNLIMITED; ``enabled`` is a bool. ValueError/TypeError saying
    what to give otherwise."""
    if field == "enabled":
        if not isinstance(value, bool):
            raise TypeError(f"enabled must be True or False, not {value!r}")
        return value
    if field not in FIELDS:
        raise ValueError(
            f"no retention setting {field!r}; the settings are enabled, "
            f"{', '.join(FIELDS)}"
        )
    if value == UNLIMITED:
        return UNLIMITED
    if field.endswith("_age"):
        try:
            delta = clock.duration(value, field, positive=True)
        except (TypeError, ValueError):
            raise ValueError(
                f"{field} must be a positive duration (a timedelta or seconds) "
                f"or {UNLIMITED!r}, not {value!r}"
            ) from None
        return delta
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(
            f"{field} must be a whole number of at least 1 or {UNLIMITED!r}, "
            f"not {value!r}"
        )
    return value


@implementer(IRetentionSettings)
class RetentionSettings(persistent.Persistent):
    """See IRetentionSettings. Written by operators (rarely), read by the
    dispatcher holding the retention lease."""

    def __init__(self):
        self._values = {}

    def get(self, field):
        if field != "enabled":
            check_value(field, UNLIMITED)  # the field's name
        return self._values.get(field)

    def update(self, changes):
        values = dict(self._values)
        for field, value in changes.items():
            if value is None:
                check_value(field, True if field == "enabled" else UNLIMITED)
                values.pop(field, None)
            else:
                values[field] = check_value(field, value)
        self._values = values

    def values(self):
        return dict(self._values)

    def __repr__(self):
        return f"<RetentionSettings {self._values}>"


def retention_settings(queue):
    """The queue's RetentionSettings, created (in the current transaction)
    if it has none yet."""
    settings = getattr(queue, "retention", None)
    if settings is None:
        settings = queue.retention = RetentionSettings()
    return settings


def policy(queue):
    """The retention in force for ``queue``: ``{field: (value, source)}``
    for enabled and each of FIELDS (source: FROM_SETTING or
    FROM_BUILT_IN). Reads only."""
    settings = getattr(queue, "retention", None)
    values = {} if settings is None else settings.values()
    return {
        field: (values[field], FROM_SETTING)
        if field in values
        else (default, FROM_BUILT_IN)
        for field, default in _BUILT_IN.items()
    }


# -- removing -----------------------------------------------------------------


def prunable(job):
    """Whether a completed job may leave its queue: not when it is a part
    (of a serial/parallel job) or a callback of a job that is not
    completed, which still needs it."""
    parent = readable(job).parent
    return parent is None or readable(parent).status == COMPLETED


def remove_batch(queue, failed, min_key, limit, dry_run=False):
    """Remove from ``queue`` what may be removed of the next ``limit``
    completed jobs (failed ones if ``failed``, else succeeded ones) whose
    completion key is ``min_key`` or more (those that ended before a
    cutoff, see zasync.keys.ended_before). Jobs that are not
    :func:`prunable`, or that the queue refuses to remove, are kept. Works
    in the current transaction; with ``dry_run`` nothing is changed.
    Returns ``(removed, kept, next_key)``: ``next_key`` is where the next
    batch begins, None when no job is left after this batch."""
    # Taken first: a BTree must not change under its iterator.
    window = list(
        itertools.islice(queue.indexed_completed(bool(failed), min_key), limit + 1)
    )
    removed = kept = 0
    for _, job in window[:limit]:
        if not prunable(job):
            kept += 1
            continue
        if not dry_run:
            try:
                queue.remove(job)
            except ValueError:
                # Indexed but not the queue's job any more: leave it for
                # a person to look at.
                log.warning("queue %r: could not remove %r", queue.name, job)
                kept += 1
                continue
        removed += 1
    next_key = window[limit][0] if len(window) > limit else None
    return removed, kept, next_key


def count_boundary(queue, failed, keep):
    """The completion key of the first job beyond the ``keep`` newest of
    its kind in ``queue`` (None if there are not more than ``keep``)."""
    counts = queue.counts()
    if counts["failed" if failed else "succeeded"] <= keep:
        return None
    beyond = next(
        itertools.islice(queue.indexed_completed(bool(failed)), keep, None), None
    )
    return None if beyond is None else beyond[0]


def boundary(queue, failed, now):
    """The smallest completion key of the jobs of a kind that the queue's
    retention removes at ``now`` (None: none, or retention is off): those
    older than the age, and those beyond the count."""
    rules = policy(queue)
    if not rules["enabled"][0]:
        return None
    kind = "failed" if failed else "succeeded"
    age, count = rules[f"{kind}_age"][0], rules[f"{kind}_count"][0]
    found = []
    if age != UNLIMITED:
        found.append(ended_before(clock.to_micros(now - age)))
    if count != UNLIMITED:
        beyond = count_boundary(queue, failed, count)
        if beyond is not None:
            found.append(beyond)
    return min(found) if found else None


# -- the lease and the passes -------------------------------------------------


@implementer(IRetentionState)
class RetentionState(persistent.Persistent):
    """See IRetentionState. Only the lease's holder writes it, except when
    a dispatcher takes the lease (then two taking it at once conflict)."""

    holder = None
    renewed = None  # the holder's time of its last batch
    next_pass = None
    current = None  # the pass under way: see IRetentionState.current
    last = None
    _tasks = ()
    _key = None  # where the current task goes on; None: not begun

    def lease_age(self, tid=None):
        """Seconds of the storage's time since the holder last wrote, or
        None if the storage does not tell."""
        serial = getattr(self, "_p_serial", None)
        if tid is None or not serial or serial == b"\0" * 8:
            return None
        return max(clock.tid_seconds(tid) - clock.tid_seconds(serial), 0.0)

    def held_by_other(self, holder, now, tid=None):
        if self.holder is None or self.holder == holder:
            return False
        age = self.lease_age(tid)
        if age is None:
            age = (now - self.renewed).total_seconds() if self.renewed else 0.0
        return age < LEASE_SECONDS

    def __repr__(self):
        return f"<RetentionState holder={self.holder} next_pass={self.next_pass}>"


def retention_state(queues, create=False):
    """The database's RetentionState (None if there is none and not
    ``create``)."""
    state = getattr(queues, "retention_state", None)
    if state is None and create:
        state = queues.retention_state = RetentionState()
    return state


def _blank_counts():
    return {"succeeded": 0, "failed": 0, "kept": 0}


def step(queues, holder, now, tid=None, batch=BATCH, every=EVERY):
    """One chore run of retention for dispatcher ``holder`` at ``now``, in
    the current transaction: take or renew the lease when a pass is due or
    under way, and remove one batch. Returns the seconds until it should
    run again (0: at once, there is more)."""
    state = retention_state(queues)
    if state is not None and state.held_by_other(holder, now, tid):
        return LEASE_SECONDS / 2
    if state is None or state.current is None:
        if state is not None and state.next_pass is not None and now < state.next_pass:
            return min((state.next_pass - now).total_seconds(), every)
        state = retention_state(queues, create=True)
        state.current = {"started": now, "by": holder, "queues": {}}
        state._tasks = tuple((name, kind) for name in queues for kind in (True, False))
        state._key = None
    state.holder, state.renewed = holder, now
    current = dict(state.current)
    counts = {name: dict(c) for name, c in current["queues"].items()}
    left = batch  # jobs looked at in this run, removed or kept
    while state._tasks and left > 0:
        name, failed = state._tasks[0]
        queue = queues.get(name)
        key = state._key
        if key is None and queue is not None:
            key = boundary(queue, failed, current["started"])
        if queue is None or key is None:
            state._tasks, state._key = state._tasks[1:], None
            continue
        removed, kept, key = remove_batch(queue, failed, key, left)
        left -= removed + kept
        found = counts.setdefault(name, _blank_counts())
        found["failed" if failed else "succeeded"] += removed
        found["kept"] += kept
        if key is None:
            state._tasks, state._key = state._tasks[1:], None
        else:
            state._key = key
    current["queues"] = counts
    if state._tasks:
        state.current = current
        return 0
    current["ended"] = now
    current["removed"] = sum(c["succeeded"] + c["failed"] for c in counts.values())
    state.last, state.current = current, None
    state.holder, state._key = None, None
    state.next_pass = current["started"] + datetime.timedelta(seconds=every)
    if current["removed"]:
        log.info(
            "retention: dispatcher %s pruned %d completed jobs",
            holder,
            current["removed"],
        )
    return max((state.next_pass - now).total_seconds(), 0.0)


@implementer(IChore)
class RetentionChore:
    """Automatic retention (see this module's docstring); ``every``:
    seconds between the starts of two passes; ``batch``: completed jobs
    looked at per run at most; ``interval``: seconds between two looks of
    one dispatcher while no pass is due."""

    name = "zasync.retention"

    def __init__(self, every=EVERY, batch=BATCH, interval=60.0):
        self.every = every
        self.batch = batch
        self.interval = interval

    def run(self, dispatcher, queues, now):
        tid = clock.seen_tid(queues._p_jar) if queues._p_jar is not None else None
        wait = step(queues, dispatcher.uuid, now, tid, self.batch, self.every)
        return min(wait, self.interval) if wait else 0


#: The chore every dispatcher runs (registered when this module is imported).
CHORE = RetentionChore()
chores.register(CHORE)
