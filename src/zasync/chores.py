"""Cluster chores: work that every dispatcher does now and then, besides
claiming jobs (firing recurring jobs, pruning old jobs, ...).

A chore is an object providing :class:`zasync.interfaces.IChore`. Each
running dispatcher runs every registered chore when it is due, in a
transaction of its own after a round (so that a chore's conflicts never
cost a claim), and retries it when it conflicts. Every dispatcher runs
them: a chore that must be done once for the whole cluster decides that
itself, through the database (a unique key, a lease that conflicts), never
by electing a leader process.

>>> from zasync import chores
>>> chores.register(my_chore)      # every dispatcher of this process runs it
>>> chores.unregister(my_chore)
"""

import logging
import threading
import time

from zasync import clock, transact
from zasync.logonce import LogOnce

log = logging.getLogger(__name__)

#: Seconds before a chore that raised is tried again by the same dispatcher.
RETRY_FAILED_AFTER = 30.0

_registered = []
_lock = threading.Lock()


def register(chore):
    """Let every dispatcher of this process run ``chore`` (an IChore).
    Registering a chore twice, or two chores of one name, changes nothing
    the second time: the first stays."""
    name = getattr(chore, "name", None)
    if not isinstance(name, str) or not name:
        raise TypeError(f"a chore needs a non-empty string name, not {name!r}")
    if not callable(getattr(chore, "run", None)):
        raise TypeError(f"chore {name!r} needs a run(dispatcher, queues, now) method")
    with _lock:
        if all(other.name != name for other in _registered):
            _registered.append(chore)


def unregister(chore):
    """Stop running ``chore`` (or the chore of that name); no error if it
    is not registered."""
    name = chore if isinstance(chore, str) else chore.name
    with _lock:
        _registered[:] = [other for other in _registered if other.name != name]


def registered():
    """The registered chores, in registration order (a copy)."""
    with _lock:
        return list(_registered)


class ChoreRunner:
    """The chores of one dispatcher: when each is due next, and running
    the due ones (see IChore). ``monotonic`` is injected for tests."""

    def __init__(self, dispatcher, monotonic=time.monotonic):
        self.dispatcher = dispatcher
        self.monotonic = monotonic
        self._due = {}  # chore name -> monotonic time it is due
        self._failures = LogOnce(log)

    def run_due(self, run_in_transaction):
        """Run each chore that is due, each through
        ``run_in_transaction(work)``, which calls ``work(queues, now)`` in
        a transaction of the dispatcher's connection (``queues``: its
        IQueues) and commits it, retrying conflicts. Returns the seconds
        until the next chore is due, or None if no chore is registered."""
        soonest = None
        for chore in registered():
            at = self._due.get(chore.name)
            if at is None or at <= self.monotonic():
                wait = self._run(chore, run_in_transaction)
                at = self._due[chore.name] = self.monotonic() + wait
            left = max(0.0, at - self.monotonic())
            soonest = left if soonest is None else min(soonest, left)
        return soonest

    def _run(self, chore, run_in_transaction):
        interval = float(getattr(chore, "interval", 60.0))
        try:
            wait = run_in_transaction(
                lambda queues, now: chore.run(self.dispatcher, queues, now)
            )
        except transact.TRANSIENT_ERRORS as exc:
            # The storage is away, or too many conflicts: the next round
            # tries again soon, quietly (the round logs storage trouble).
            log.debug("chore %s: %s", chore.name, exc)
            return min(interval, RETRY_FAILED_AFTER)
        except Exception:
            self._failures.error(
                chore.name,
                "zasync chore %r failed; trying again in %ss",
                chore.name,
                RETRY_FAILED_AFTER,
                exc_info=True,
            )
            return RETRY_FAILED_AFTER
        if wait is None:
            return interval
        wait = clock.duration(wait, f"the wait chore {chore.name!r} returned")
        return max(0.0, wait.total_seconds())
