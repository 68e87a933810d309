"""Transactions that retry: the errors worth trying again, aborting, the
back-off between tries, and one retrying call that every conflict loop in
zasync uses (modelled on ``transaction.TransactionManager.run``)."""

import contextlib
import errno
import random
import time

import transaction
from transaction.interfaces import NoTransaction, TransientError
from ZODB.POSException import ConflictError, POSKeyError

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

#: The modules of storages (by name prefix): an error raised inside one of
#: them (other than a conflict) is the storage's trouble, not that of the
#: code that used it. Drivers (psycopg2, ...) are not listed: a job may use
#: them for its own work; RelStorage's own frames are on the way anyway.
STORAGE_MODULES = (
    "ZODB.FileStorage",
    "ZODB.fsIndex",
    "ZODB.blob",
    "ZODB.mvccadapter",
    "ZODB.MappingStorage",
    "ZODB.DemoStorage",
    "ZEO",
    "relstorage",
    "zc.zlibstorage",
    "tempstorage",
)


def storage_error(exc):
    """What kind of storage error ``exc`` is, as a short text for the log
    ("OSError ENOSPC", "POSKeyError", "ValueError", ...), or None if it is
    not one.

    A storage error is the storage's fault, never that of the code that
    happened to use it: a missing record (POSKeyError), or any other
    exception raised inside a storage's own code (STORAGE_MODULES) — a full
    disk at commit, a record that cannot be read, a database server that
    went away under RelStorage. Transient errors (TRANSIENT_ERRORS) and
    exceptions that are not ``Exception`` are not storage errors.
    """
    if not isinstance(exc, Exception) or isinstance(exc, TRANSIENT_ERRORS):
        return None
    if not isinstance(exc, POSKeyError) and not _raised_in_storage(exc):
        return None
    kind = type(exc).__name__
    if isinstance(exc, OSError) and exc.errno is not None:
        kind = f"{kind} {errno.errorcode.get(exc.errno, exc.errno)}"
    return kind


def _raised_in_storage(exc):
    """True if the traceback of ``exc`` goes through a storage's code."""
    tb = exc.__traceback__
    while tb is not None:
        module = tb.tb_frame.f_globals.get("__name__") or ""
        if any(
            module == prefix or module.startswith(prefix + ".")
            for prefix in STORAGE_MODULES
        ):
            return True
        tb = tb.tb_next
    return False


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
    retry_also=None,
):
    """Begin a transaction of the explicit manager ``tm``, call ``work()``,
    commit and return what it returned: the one retrying call of zasync.

    A transient error (:data:`TRANSIENT_ERRORS`, at the call or the commit)
    aborts and tries again after a pause, at most ``tries`` times in all
    (``None``: no limit, until ``should_stop`` says so); the last one is
    raised. Any other error aborts and is raised at once, so ``work`` can
    leave without committing by raising an exception of its own; unless
    ``retry_also(exc)``, if given, says it is worth trying again too (say
    :func:`storage_error`: a full disk), and then it is treated as a
    transient error.

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
        except BaseException as exc:
            abort(tm)
            if not isinstance(exc, TRANSIENT_ERRORS) and not (
                retry_also is not None
                and isinstance(exc, Exception)
                and retry_also(exc)
            ):
                raise
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
