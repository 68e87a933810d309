"""Quotas: cluster-wide limits on how many jobs of a kind run at once."""

import persistent
from BTrees.OOBTree import OOBTree
from ZODB.POSException import ConflictError
from zope.interface import implementer

from zasync.interfaces import IQuota, IQuotas


@implementer(IQuota)
class Quota(persistent.Persistent):
    """See IQuota.

    The held slots are a tuple on the quota itself. Concurrent changes are
    merged by ``_p_resolveConflict`` only while the merged slots fit the
    size: two dispatchers taking the last slot at once conflict, and one of
    them tries again and finds the quota full.
    """

    def __init__(self, name, size=1):
        self.name = name
        self.size = size
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

    def _p_resolveConflict(self, old, committed, new):
        if committed.get("_size") != new.get("_size") and old.get("_size") not in (
            committed.get("_size"),
            new.get("_size"),
        ):
            raise ConflictError("quota size changed concurrently")
        size = (
            new["_size"]
            if committed.get("_size") == old.get("_size")
            else committed["_size"]
        )
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
        return resolved

    def __repr__(self):
        return f"<Quota {self.name!r} {len(self._active)}/{self._size}>"


@implementer(IQuotas)
class Quotas(persistent.Persistent):
    """See IQuotas."""

    def __init__(self):
        self._quotas = OOBTree()

    def create(self, name, size=1):
        if not isinstance(name, str) or not name:
            raise ValueError(f"a quota name must be a non-empty string, not {name!r}")
        if name in self._quotas:
            raise ValueError(
                f"quota {name!r} exists already; change its size with "
                f"quotas[{name!r}].size = {size}"
            )
        quota = self._quotas[name] = Quota(name, size)
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
