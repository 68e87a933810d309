"""Transactions that retry: the errors worth trying again, aborting, the
back-off between tries, and one retrying call that every conflict loop in
zasync uses (modelled on ``transaction.TransactionManager.run``)."""

import contextlib
import random
import time

import transaction
from transaction.interfaces import NoTransaction, TransientError
from ZODB.POSException import ConflictError

try:  # ZEO is optional; losing its server is worth another try too.
    from ZEO.Exceptions import ClientDisconnected
except ImportError:  # pragma: no cover

    class ClientDisconnected(Exception):
        """Stands in for ZEO's when ZEO is not installed."""


#: Errors after which the same work may well succeed: write conflicts and
#: a storage server that is (for now) unreachable.
TRANSIENT_ERRORS = (TransientError, ConflictError, ClientDisconnected)

#: How many tries :func:`run` makes unless told otherwise.
DEFAULT_TRIES = 50


def abort(tm):
    """Abort the current transaction of the explicit manager ``tm``, if it
    has one (an explicit manager raises NoTransaction otherwise)."""
    with contextlib.suppress(NoTransaction):
        tm.abort()


def backoff(attempt, base=0.005, cap=0.5):
    """Seconds to pause before try ``attempt + 1``: random, up to ``base``
    doubled per attempt and at most ``cap``, so that writers that
    conflicted fall out of step instead of conflicting again."""
    return random.uniform(0, min(base * 2 ** min(attempt, 30), cap))


def pause(attempt, base=0.005, cap=0.5):
    """Sleep for :func:`backoff` seconds."""
    time.sleep(backoff(attempt, base, cap))


def run(tm, work, tries=DEFAULT_TRIES, base=0.005, cap=0.5, on_retry=None):
    """Begin a transaction of the explicit manager ``tm``, call ``work()``,
    commit and return what it returned.

    A transient error (:data:`TRANSIENT_ERRORS`, at the call or the commit)
    aborts and tries again after a :func:`backoff` pause, at most ``tries``
    times in all; the last one is raised. ``on_retry(exc, attempt)``, if
    given, hears of each one first (to count or log it). Any other error
    aborts and is raised at once.
    """
    for attempt in range(tries):
        tm.begin()
        try:
            result = work()
            tm.commit()
            return result
        except TRANSIENT_ERRORS as exc:
            abort(tm)
            if attempt + 1 == tries:
                raise
            if on_retry is not None:
                on_retry(exc, attempt)
            pause(attempt, base, cap)
        except BaseException:
            abort(tm)
            raise
    raise ValueError(f"tries must be at least 1, not {tries!r}")


def in_own_transaction(db, work, attempts=DEFAULT_TRIES):
    """Call ``work(connection)`` in a transaction of its own on ``db`` and
    commit it, retrying as :func:`run` does; returns what ``work``
    returned. ``work`` must return plain data, not persistent objects: the
    connection is closed on return.
    """
    tm = transaction_manager()
    conn = db.open(transaction_manager=tm)
    try:
        return run(tm, lambda: work(conn), tries=attempts)
    finally:
        abort(tm)
        conn.close()


def transaction_manager():
    """A new explicit transaction manager, as every zasync thread uses."""
    return transaction.TransactionManager(explicit=True)
