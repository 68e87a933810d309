"""Committing a change in a transaction of its own, retrying it when a
transient error (a ConflictError, a lost ZEO server) aborts it."""

import random
import time

import transaction

from zasync.runner import POSTPONE, abort


def pause(attempt):
    """A growing random pause, so that conflicting writers fall out of step."""
    time.sleep(random.uniform(0, min(0.005 * 2**attempt, 0.5)))


def in_own_transaction(db, work, attempts=50):
    """Call ``work(connection)`` in a transaction of its own on ``db`` and
    commit it; returns what ``work`` returned.

    A transient error starts the transaction again after a pause; after
    ``attempts`` of them the last one is raised. Any other error aborts and
    is raised at once. ``work`` must return plain data, not persistent
    objects: the connection is closed on return.
    """
    tm = transaction.TransactionManager(explicit=True)
    conn = db.open(transaction_manager=tm)
    try:
        for attempt in range(attempts):
            tm.begin()
            try:
                result = work(conn)
                tm.commit()
                return result
            except POSTPONE:
                abort(tm)
                if attempt + 1 == attempts:
                    raise
                pause(attempt)
            except BaseException:
                abort(tm)
                raise
    finally:
        abort(tm)
        conn.close()
