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


def run(
    tm,
    work,
    tries=DEFAULT_TRIES,
    base=0.005,
    cap=0.5,
    on_error=None,
    should_stop=None,
    wait=None,
):
    """Begin a transaction of the explicit manager ``tm``, call ``work()``,
    commit and return what it returned: the one retrying call of zasync.

    A transient error (:data:`TRANSIENT_ERRORS`, at the call or the commit)
    aborts and tries again after a pause, at most ``tries`` times in all
    (``None``: no limit, until ``should_stop`` says so); the last one is
    raised. Any other error aborts and is raised at once, so ``work`` can
    leave without committing by raising an exception of its own.

    ``on_error(exc, attempt)``, if given, hears of every transient error
    first, the last one too (to count or log it; ``attempt`` counts from 0).
    ``should_stop(exc, attempt)``, if given, is asked after each one: true
    gives up at once and raises it (a stopping dispatcher, a server gone
    for too long). ``wait(exc, attempt)`` gives the seconds to pause before
    the next try; by default a :func:`backoff` shaped by ``base`` and ``cap``.
    """
    if tries is not None and tries < 1:
        raise ValueError(f"tries must be at least 1 or None, not {tries!r}")
    attempt = 0
    while True:
        tm.begin()
        try:
            result = work()
            tm.commit()
            return result
        except TRANSIENT_ERRORS as exc:
            abort(tm)
            if on_error is not None:
                on_error(exc, attempt)
            if tries is not None and attempt + 1 >= tries:
                raise
            if should_stop is not None and should_stop(exc, attempt):
                raise
            if wait is None:
                time.sleep(backoff(attempt, base, cap))
            else:
                time.sleep(wait(exc, attempt))
            attempt += 1
        except BaseException:
            abort(tm)
            raise


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
