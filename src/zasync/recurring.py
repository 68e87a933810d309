"""Recurring jobs: a named definition (a cron expression in a timezone, or
an interval) whose every tick puts one normal job into a queue.

The definitions are stored in the database (``queues.recurring_jobs``, by
name) and are the truth: every running dispatcher fires the due ticks
through a chore (see :mod:`zasync.chores`) and takes a changed or removed
definition at its next look. Exactly one job per tick across the cluster:
the chore advances the definition's stored tick and puts the tick's job in
one transaction, so two dispatchers firing the same tick conflict on the
definition; the one that retries finds the tick done. No leader is elected.

>>> from zasync import recurring
>>> recurring.define(queues, "nightly", export, cron="0 3 * * *",
...                  timezone="Europe/Berlin")
>>> recurring.pause(queues, "nightly")
>>> recurring.run_now(queues, "nightly")   # one job now, the schedule unchanged
"""

import datetime
import logging
import math
import zoneinfo

import persistent
from BTrees.OOBTree import OOBTree
from croniter import croniter
from zope.interface import implementer, moduleProvides

from zasync import chores, clock
from zasync.interfaces import IChore, IRecurringJob, IRecurringJobs
from zasync.job import Job, resolve_reference, storable_reference
from zasync.keys import PRIORITY_LIMIT
from zasync.status import COMPLETED
from zasync.storable import callable_name, check_callable, check_value

log = logging.getLogger(__name__)

#: The catch-up policies: what happens to ticks missed while no dispatcher
#: ran (or while one ran late).
SKIP, ONCE, EACH = "skip", "once", "each"
CATCH_UP_POLICIES = (SKIP, ONCE, EACH)

#: A tick this late (or half its period, if that is shorter) still runs
#: under the "skip" policy; older ones are missed.
LATE_GRACE = datetime.timedelta(seconds=60)

#: Under the "each" policy at most this many missed ticks run (the newest).
MAX_CATCH_UP = 100

#: Seconds a dispatcher waits at most before it looks at the definitions
#: again: a definition added or changed elsewhere is taken within this.
CHECK_EVERY = 10.0

#: The annotation of a recurring job's run: {"name": ..., "tick": iso text}.
ANNOTATION = "zasync.recurring"

UTC = datetime.UTC

moduleProvides(IRecurringJobs)


def _zone(name):
    if not isinstance(name, str) or not name:
        raise ValueError(f"timezone must be an IANA name such as 'UTC', not {name!r}")
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"unknown timezone {name!r}; use an IANA name such as "
            f"'Europe/Berlin' or 'UTC'"
        ) from None


def _check_cron(expression):
    if not isinstance(expression, str) or not croniter.is_valid(expression):
        raise ValueError(
            f"cron expression {expression!r} is not valid; use five fields "
            f"'minute hour day-of-month month day-of-week', for example "
            f"'0 3 * * *' (03:00 every day) or '*/15 * * * *'"
        )
    return expression.strip()


def _hour_is_fixed(expression):
    # Like Vixie cron: a job at a fixed hour runs once on the day the
    # clocks go back; one whose hour is a wildcard runs in both hours.
    if expression.startswith("@"):
        return expression != "@hourly"
    return expression.split()[1] != "*"


def _repeated_wall_time(tick):
    """True for the second occurrence of a wall-clock time repeated when
    the clocks go back."""
    first = tick.replace(fold=0).utcoffset()
    second = tick.replace(fold=1).utcoffset()
    return first != second and tick.utcoffset() == second


class Schedule:
    """When a definition's ticks are: cron in a timezone, or every N
    seconds from an anchor. Times in and out are aware UTC datetimes."""

    def __init__(self, cron, every, timezone, anchor):
        self.cron = cron
        self.every = every
        self.zone = _zone(timezone)
        self.anchor = anchor

    def after(self, when):
        """The first tick strictly after ``when``."""
        if self.every is not None:
            k = math.floor((when - self.anchor) / self.every) + 1
            return self.anchor + k * self.every
        ticks = croniter(self.cron, when.astimezone(self.zone))
        while True:
            tick = ticks.get_next(datetime.datetime)
            if not (_hour_is_fixed(self.cron) and _repeated_wall_time(tick)):
                return tick.astimezone(UTC)

    def before(self, when):
        """The last tick at or before ``when``."""
        if self.every is not None:
            k = math.floor((when - self.anchor) / self.every)
            return self.anchor + k * self.every
        ticks = croniter(
            self.cron, (when + datetime.timedelta(microseconds=1)).astimezone(self.zone)
        )
        while True:
            tick = ticks.get_prev(datetime.datetime)
            if not (_hour_is_fixed(self.cron) and _repeated_wall_time(tick)):
                return tick.astimezone(UTC)

    def due(self, start, end, limit):
        """The ticks from ``start`` to ``end`` (both included), the newest
        ``limit`` of them, oldest first."""
        newest = []
        tick = self.before(end)
        while tick >= start and len(newest) < limit:
            newest.append(tick)
            tick = self.before(tick - datetime.timedelta(microseconds=1))
        return newest[::-1]

    def period_after(self, tick):
        return self.after(tick) - tick


@implementer(IRecurringJob)
class RecurringJob(persistent.Persistent):
    """A stored definition; see IRecurringJob. Change it through
    :func:`define`, :func:`pause`, ... so that it stays valid."""

    # Definitions stored before these existed.
    environment = None
    retry_policy = None
    last_job = None
    last_error = None
    paused = False
    source = "code"

    def __init__(self, name):
        self.name = name
        self.last_tick = None
        self.next_tick = None

    def __repr__(self):
        return f"<RecurringJob {self.name!r} {self.schedule_text}>"

    @property
    def schedule_text(self):
        if self.cron is not None:
            return f"cron {self.cron!r} in {self.timezone}"
        return f"every {self.every.total_seconds():g}s"

    @property
    def callable(self):
        return resolve_reference(self._callable)

    def schedule(self):
        return Schedule(self.cron, self.every, self.timezone, self.anchor)

    def _spec(self):
        return (self.cron, self.every, self.timezone)

    def make_job(self, tick=None):
        """A new Job for this definition (not queued yet)."""
        job = Job(self.callable, *self.args, **self.kwargs)
        if self.environment is not None:
            job.environment = self.environment
        job.annotations[ANNOTATION] = {
            "name": self.name,
            "tick": None if tick is None else tick.isoformat(),
        }
        return job

    def put(self, queues, begin_after, now, tick=None):
        """Queue one run; returns the job."""
        job = self.make_job(tick)
        unique = None
        if tick is not None:
            unique = f"{ANNOTATION}:{self.name}:{tick.isoformat()}"
        job = queues[self.queue].put(
            job,
            begin_after=begin_after,
            quota_names=self.quota_names,
            priority=self.priority,
            unique_key=unique,
            retry_policy=self.retry_policy,
            now=now,
        )
        self.last_job = job
        return job

    def fire(self, queues, now):
        """Put the jobs of the ticks due at ``now`` following the catch-up
        policy and advance the stored ticks; returns the jobs put."""
        if self.paused or self.next_tick is None or self.next_tick > now:
            return []
        schedule = self.schedule()
        limit = MAX_CATCH_UP if self.catch_up == EACH else 1
        due = schedule.due(self.next_tick, now, limit)
        if self.catch_up == EACH:
            fired = due
        elif self.catch_up == ONCE:
            fired = due[-1:]
        else:
            # Late by less than the grace (or half the period, for short
            # ones): on time, not missed.
            grace = min(LATE_GRACE, schedule.period_after(due[-1]) / 2) if due else None
            fired = [tick for tick in due[-1:] if now - tick <= grace]
        jobs = []
        try:
            for tick in fired:
                jobs.append(self.put(queues, tick, now, tick))
            self.last_error = None
        except Exception as exc:
            # The tick is spent either way: a definition that cannot put its
            # job (its function was removed, its queue deleted) must not be
            # tried again at every look; it says why in last_error.
            self.last_error = f"{type(exc).__name__}: {exc}"
            log.warning("recurring job %r could not be queued: %s", self.name, exc)
        if due:
            self.last_tick = due[-1]
        self.next_tick = schedule.after(now)
        return jobs


def definitions_of(queues, create=False):
    """The OOBTree of definitions by name (None if there is none and not
    ``create``)."""
    stored = getattr(queues, "recurring_jobs", None)
    if stored is None and create:
        stored = queues.recurring_jobs = OOBTree()
    return stored


def definitions(queues):
    """The stored definitions (IRecurringJob), by name."""
    stored = definitions_of(queues)
    return [] if stored is None else list(stored.values())


def get(queues, name):
    """The definition named ``name``; KeyError saying how to list them."""
    stored = definitions_of(queues)
    definition = None if stored is None else stored.get(name)
    if definition is None:
        raise KeyError(
            f"no recurring job {name!r}; 'zasync recurring list' shows the defined ones"
        )
    return definition


def check_schedule(name, cron=None, every=None, timezone="UTC", catch_up=SKIP):
    """``(cron, every)`` checked and normalized (``every`` a timedelta), or
    ValueError saying what to fix; for code that checks a definition before
    it has the database (ZCML)."""
    if (cron is None) == (every is None):
        raise ValueError(
            f"recurring job {name!r}: give either cron='0 3 * * *' or "
            f"every=<seconds or timedelta>, exactly one of them"
        )
    if cron is not None:
        cron = _check_cron(cron)
    else:
        every = clock.duration(every, f"every of recurring job {name!r}", positive=True)
        if every < datetime.timedelta(seconds=1):
            raise ValueError(
                f"recurring job {name!r}: every must be at least one second, "
                f"not {every.total_seconds()}s"
            )
    _zone(timezone)
    if catch_up not in CATCH_UP_POLICIES:
        raise ValueError(
            f"recurring job {name!r}: catch_up must be one of "
            f"{', '.join(CATCH_UP_POLICIES)}, not {catch_up!r}"
        )
    return cron, every


def define(
    queues,
    name,
    callable,
    *,
    cron=None,
    every=None,
    timezone="UTC",
    queue="",
    quota_names=(),
    priority=0,
    catch_up=SKIP,
    args=(),
    kwargs=None,
    environment=None,
    retry_policy=None,
    source="code",
    now=None,
):
    """Add the recurring job ``name``, or change it; see IRecurringJobs."""
    now = clock.aware(now, "now") if now is not None else clock.utcnow()
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"a recurring job needs a non-empty name, not {name!r}")
    cron, every = check_schedule(name, cron, every, timezone, catch_up)
    if queue not in queues:
        raise ValueError(
            f"recurring job {name!r}: no queue {queue!r}; create it first with "
            f"get_queues(conn).create({queue!r})"
        )
    if isinstance(quota_names, str):
        quota_names = (quota_names,)
    quota_names = tuple(quota_names)
    for quota in quota_names:
        if quota not in queues[queue].quotas:
            raise ValueError(
                f"recurring job {name!r}: queue {queue!r} has no quota "
                f"{quota!r}; create it first with "
                f"queue.quotas.create({quota!r}, size=1)"
            )
    if (
        not isinstance(priority, int)
        or isinstance(priority, bool)
        or abs(priority) > PRIORITY_LIMIT
    ):
        raise ValueError(
            f"priority must be an int from {-PRIORITY_LIMIT} to {PRIORITY_LIMIT}, "
            f"not {priority!r}"
        )
    check_callable(callable, f"the callable of recurring job {name!r}")
    args = tuple(args)
    kwargs = dict(kwargs or {})
    for index, value in enumerate(args):
        check_value(value, f"argument {index + 1} of recurring job {name!r}")
    for key, value in kwargs.items():
        check_value(value, f"keyword argument {key!r} of recurring job {name!r}")
    for value, where in ((environment, "environment"), (retry_policy, "retry_policy")):
        if value is not None:
            check_value(value, f"the {where} of recurring job {name!r}")

    stored = definitions_of(queues, create=True)
    definition = stored.get(name)
    fields = {
        "cron": cron,
        "every": every,
        "timezone": timezone,
        "queue": queue,
        "quota_names": quota_names,
        "priority": priority,
        "catch_up": catch_up,
        "_callable": storable_reference(callable),
        "callable_name": callable_name(callable),
        "args": args,
        "kwargs": kwargs,
        "environment": environment,
        "retry_policy": retry_policy,
        "source": source,
    }
    if definition is None:
        definition = RecurringJob(name)
        stored[name] = definition
        schedule_changed = True
    else:
        schedule_changed = definition._spec() != (cron, every, timezone)
        if all(_same(getattr(definition, k, None), v) for k, v in fields.items()):
            return definition  # unchanged: nothing written (no conflicts)
    for key, value in fields.items():
        setattr(definition, key, value)
    if schedule_changed:
        definition.anchor = now
        definition.next_tick = definition.schedule().after(now)
    return definition


def _same(old, new):
    try:
        return bool(old == new) and type(old) is type(new)
    except Exception:
        return False


def remove(queues, name):
    """Remove the definition ``name``; jobs it put already stay."""
    get(queues, name)
    del definitions_of(queues)[name]


def pause(queues, name):
    """Stop firing ``name``'s ticks until :func:`resume`; ticks that pass
    meanwhile are not run."""
    definition = get(queues, name)
    if not definition.paused:
        definition.paused = True
    return definition


def resume(queues, name, now=None):
    """Fire ``name`` again from its next tick after ``now``."""
    now = now or clock.utcnow()
    definition = get(queues, name)
    if definition.paused:
        definition.paused = False
        definition.next_tick = definition.schedule().after(now)
    return definition


def run_now(queues, name, now=None):
    """Queue one run of ``name`` now (even when paused); its schedule stays."""
    now = now or clock.utcnow()
    return get(queues, name).put(queues, now, now)


def last_run(definition):
    """``(job, status, failed)`` of the definition's last run, or ``(None,
    None, False)``; status as zasync.admin says it: pending, assigned,
    active, callbacks, succeeded or failed."""
    job = definition.last_job
    if job is None:
        return None, None, False
    if job.status != COMPLETED:
        return job, job.status.value, False
    return job, ("failed" if job.failed else "succeeded"), job.failed


@implementer(IChore)
class RecurringChore:
    """Fires the due ticks of every definition; run by every dispatcher."""

    name = "zasync.recurring"
    interval = CHECK_EVERY

    def run(self, dispatcher, queues, now):
        soonest = None
        for definition in definitions(queues):
            try:
                definition.fire(queues, now)
            except Exception as exc:
                # One broken definition (say, its timezone left tzdata)
                # must not hold up the others.
                log.warning("recurring job %r cannot fire: %s", definition.name, exc)
                continue
            if not definition.paused and definition.next_tick is not None:
                left = (definition.next_tick - now).total_seconds()
                soonest = left if soonest is None else min(soonest, left)
        wait = CHECK_EVERY if soonest is None else min(CHECK_EVERY, soonest)
        return max(0.0, wait)


chore = RecurringChore()
chores.register(chore)
