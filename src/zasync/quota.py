"""Quotas: cluster-wide limits on how many jobs of a kind run at once, how
many of them start per period (a rate), and whether they start at all
(paused)."""

import datetime

import persistent
from BTrees.OOBTree import OOBTree
from ZODB.POSException import ConflictError
from zope.interface import implementer

from zasync import clock, wakeup
from zasync.interfaces import IQuota, IQuotas

_UNSET = object()


def check_rate(rate):
    """``rate`` as ``(limit, per)`` (an int of 1 or more, a positive
    timedelta), or None; ValueError saying what to give otherwise."""
    if rate is None:
        return None
    try:
        limit, per = rate
    except (TypeError, ValueError):
        raise ValueError(
            f"a rate is (starts, per), e.g. (10, timedelta(minutes=1)), "
            f"or None for no rate, not {rate!r}"
        ) from None
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
        raise ValueError(
            f"a rate's number of starts must be a whole number of 1 or more, "
            f"not {limit!r} (pause the quota to start none)"
        )
    if not isinstance(per, datetime.timedelta) or per <= datetime.timedelta(0):
        raise ValueError(
            f"a rate's period must be a positive timedelta, e.g. "
            f"timedelta(minutes=1), not {per!r}"
        )
    return limit, per


def _crowded(starts, limit, per_us):
    """Whether more than ``limit`` of ``starts`` (sorted) fall in one
    period: some ``limit + 1`` consecutive ones span less than ``per_us``."""
    return any(
        starts[i + limit][0] - starts[i][0] < per_us for i in range(len(starts) - limit)
    )


def _merged_setting(old, committed, new, name, default=None):
    """The three-way merge of one setting: the side that changed it wins;
    both changing it to different values conflict."""
    before = old.get(name, default)
    theirs, mine = committed.get(name, default), new.get(name, default)
    if theirs == mine or mine == before:
        return theirs
    if theirs == before:
        return mine
    raise ConflictError(f"quota setting {name} changed concurrently")


@implementer(IQuota)
class Quota(persistent.Persistent):
    """See IQuota.

    The held slots are a tuple on the quota itself. Concurrent changes are
    merged by ``_p_resolveConflict`` only while the merged slots fit the
    size: two dispatchers taking the last slot at once conflict, and one of
    them tries again and finds the quota full.

    A rate is kept as a sliding window: ``_starts``, the sorted
    ``(microseconds, job id)`` of the starts of the last period (older ones
    are dropped at the next start). A claim starts a job only while fewer
    than ``limit`` starts fall in the period before it. Two claims
    committing at once are merged only if no ``limit + 1`` of the merged
    starts fall within one period (any window of the period's length holds
    at most ``limit``), else they conflict and one claim tries again and
    finds the rate used up. That bound does not depend on the clocks of the
    claiming processes agreeing, only on the starts' own times. The pause
    and the settings (size, rate) merge like settings: the side that
    changed one wins; both changing it differently conflict.
    """

    # Class defaults: quotas stored before pausing and rates existed.
    _paused = None
    _rate = None
    _starts = ()

    def __init__(self, name, size=1, rate=None):
        self.name = name
        self.size = size
        self.set_rate(rate)
        self._active = ()

    @property
    def size(self):
        return self._size

    @size.setter
    def size(self, value):
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ValueError(
                f"quota size must be a whole number of 0 or more, not {value!r} "
                f"(0 pauses the jobs naming the quota)"
            )
        self._size = value

    @property
    def active(self):
        return self._active

    def has_room(self):
        return len(self._active) < self._size

    def __len__(self):
        return len(self._active)

    def hold(self, job_id):
        if job_id not in self._active:
            self._active = self._active + (job_id,)

    def release(self, job_id):
        if job_id in self._active:
            self._active = tuple(i for i in self._active if i != job_id)

    # -- pausing -----------------------------------------------------------

    @property
    def paused(self):
        return self._paused

    def pause(self, now, by=None):
        if self._paused is None:
            self._paused = (clock.aware(now, "now"), by)
        return self._paused

    def resume(self):
        was = self._paused is not None
        if was:
            self._paused = None
            # This process's dispatchers at once; others watch the quota.
            wakeup.wake_after_commit(self)
        return was

    # -- rate ----------------------------------------------------------------

    @property
    def rate(self):
        if self._rate is None:
            return None
        limit, per_us = self._rate
        return limit, datetime.timedelta(microseconds=per_us)

    def set_rate(self, rate, per=_UNSET):
        if per is not _UNSET:
            rate = (rate, per)
        rate = check_rate(rate)
        stored = None if rate is None else (rate[0], _micros(rate[1]))
        if stored != self._rate:
            self._rate = stored
            if stored is None:
                self._starts = ()
            # A higher rate may let waiting jobs start now.
            if self._p_jar is not None:
                wakeup.wake_after_commit(self)

    def _recent(self, now_us):
        """The starts that count against the rate at ``now_us``."""
        if self._rate is None:
            return ()
        since = now_us - self._rate[1]
        return tuple(s for s in self._starts if s[0] > since)

    def starts_in_period(self, now):
        return len(self._recent(clock.to_micros(now)))

    def rate_opens_at(self, now):
        now_us = clock.to_micros(now)
        when = self._rate_opens_at(now_us)
        return None if when is None else clock.from_micros(when)

    def _rate_opens_at(self, now_us):
        """Microseconds when the rate next lets a job start, None if now."""
        recent = self._recent(now_us)
        if self._rate is None or len(recent) < self._rate[0]:
            return None
        limit, per_us = self._rate
        return recent[len(recent) - limit][0] + per_us

    def record_start(self, job_id, now):
        if self._rate is None:
            return
        now_us = clock.to_micros(now)
        self._starts = tuple(sorted((*self._recent(now_us), (now_us, job_id))))

    # -- claiming ------------------------------------------------------------

    def may_start(self, now):
        return self._may_start(clock.to_micros(now))

    def _may_start(self, now_us):
        return (
            self._paused is None
            and self.has_room()
            and self._rate_opens_at(now_us) is None
        )

    def _p_resolveConflict(self, old, committed, new):
        size = _merged_setting(old, committed, new, "_size")
        paused = _merged_setting(old, committed, new, "_paused")
        rate = _merged_setting(old, committed, new, "_rate")
        starts = self._merged_starts(old, committed, new, rate)
        before = old.get("_active", ())
        theirs, mine = committed.get("_active", ()), new.get("_active", ())
        released = (set(before) - set(theirs)) | (set(before) - set(mine))
        merged = [i for i in before if i not in released]
        for job_id in theirs + mine:
            if job_id not in before and job_id not in merged:
                merged.append(job_id)
        if len(merged) > size:
            raise ConflictError("quota full")
        resolved = dict(new)
        resolved["_size"] = size
        resolved["_active"] = tuple(merged)
        for name, value in (("_paused", paused), ("_rate", rate), ("_starts", starts)):
            if value == getattr(Quota, name):
                resolved.pop(name, None)
            else:
                resolved[name] = value
        return resolved

    @staticmethod
    def _merged_starts(old, committed, new, rate):
        """The starts of both sides: those both kept, and those each added.
        Conflict if both added starts and together they crowd the rate."""
        before = set(old.get("_starts", ()))
        theirs, mine = set(committed.get("_starts", ())), set(new.get("_starts", ()))
        added_theirs, added_mine = theirs - before, mine - before
        merged = sorted((before & theirs & mine) | added_theirs | added_mine)
        if rate is None:
            return ()
        if added_theirs and added_mine and _crowded(merged, *rate):
            raise ConflictError("quota rate used up")
        return tuple(merged)

    def __repr__(self):
        state = " paused" if self._paused is not None else ""
        return f"<Quota {self.name!r} {len(self._active)}/{self._size}{state}>"


def _micros(delta):
    return (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds


@implementer(IQuotas)
class Quotas(persistent.Persistent):
    """See IQuotas."""

    def __init__(self):
        self._quotas = OOBTree()

    def create(self, name, size=1, rate=None):
        if not isinstance(name, str) or not name:
            raise ValueError(f"a quota name must be a non-empty string, not {name!r}")
        check_rate(rate)
        if name in self._quotas:
            raise ValueError(
                f"quota {name!r} exists already; change its size with "
                f"quotas[{name!r}].size = {size}"
            )
        quota = self._quotas[name] = Quota(name, size, rate)
        return quota

    def remove(self, name):
        del self._quotas[name]

    def get(self, name, default=None):
        return self._quotas.get(name, default)

    def __getitem__(self, name):
        try:
            return self._quotas[name]
        except KeyError:
            raise KeyError(
                f"no quota {name!r}; create it with queue.quotas.create({name!r})"
            ) from None

    def __contains__(self, name):
        return name in self._quotas

    def __iter__(self):
        return iter(self._quotas.keys())

    def __len__(self):
        return len(self._quotas)

    def values(self):
        return list(self._quotas.values())
