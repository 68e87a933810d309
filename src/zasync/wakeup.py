"""In-process wake-ups: wake idle dispatchers after a commit that queued work,
and let waiters (zasync.testing) block until some job transaction committed.
Commits of other processes wake dispatchers through zasync.remote_wakeup.
"""

import threading
import weakref

import transaction

from zasync import remote_wakeup

_dispatchers = weakref.WeakSet()
_lock = threading.Lock()
_changed = threading.Condition()
_generation = 0


def register(dispatcher):
    with _lock:
        _dispatchers.add(dispatcher)


def unregister(dispatcher):
    with _lock:
        _dispatchers.discard(dispatcher)


def wake(db=None):
    """Wake the dispatchers of this process serving ``db`` (all if None)."""
    with _lock:
        targets = list(_dispatchers)
    for dispatcher in targets:
        # In a multi-database setup the queues' database is not the
        # dispatcher's main one, but shares its ``databases`` mapping.
        if db is None or dispatcher.db is db or db in dispatcher.db.databases.values():
            dispatcher.wake()


def _after_commit(success, db):
    if success:
        wake(db)
        remote_wakeup.notify_other_processes(db)


_MARK = object()


def wake_after_commit(persistent_object):
    """Arrange for :func:`wake` when the transaction that changed
    ``persistent_object`` commits (once per transaction)."""
    jar = persistent_object._p_jar
    txn = jar.transaction_manager.get() if jar is not None else transaction.get()
    try:
        txn.data(_MARK)
        return
    except KeyError:
        txn.set_data(_MARK, True)
    # Through the storage, not the connection: MVCC may give each
    # connection its own DB wrapper, but the dispatcher keeps the DB.
    db = jar.db() if jar is not None else None
    txn.addAfterCommitHook(_after_commit, (db,))


def notify_changed():
    """Tell waiters that a job transaction committed in this process."""
    global _generation
    with _changed:
        _generation += 1
        _changed.notify_all()


def generation():
    with _changed:
        return _generation


def wait_changed(since, timeout):
    """Block until a commit newer than generation ``since``, or ``timeout``."""
    with _changed:
        if _generation == since:
            _changed.wait(timeout)
        return _generation
