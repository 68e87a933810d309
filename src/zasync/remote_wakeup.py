"""Remote wake-ups: waking idle dispatchers on commits made by other processes.

In one process, a commit that queues work wakes the dispatchers at once
(zasync.wakeup). Other processes learn of it through their storage:

- ZEO pushes the oids of every committed transaction to each client; a
  dispatcher watches the oids of the objects that change when its queues
  get work (the pending count, the quotas) and wakes when one goes by.
- RelStorage pushes nothing (its clients poll), so a process that queued
  work on PostgreSQL sends ``NOTIFY zasync_wakeup`` after its commit and
  the dispatchers of other processes ``LISTEN`` for it.

Other storages (FileStorage in one process, MappingStorage) need nothing
more. Whatever the storage, a dispatcher still looks for work every poll
interval, so a lost signal delays a job, never loses it.
"""

import contextlib
import logging
import select
import threading
import weakref

from zasync import transact

log = logging.getLogger("zasync.remote_wakeup")

CHANNEL = "zasync_wakeup"


def _base_storage(db):
    return getattr(db, "storage", None)


# -- ZEO: watch the invalidations the server pushes ------------------------


class InvalidationWatch:
    """Calls ``wake()`` when another process commits a change to one of the
    ``oids`` it watches. Installed on the MVCC adapter that a ZEO client
    storage reports invalidations to."""

    def __init__(self, wake):
        self.wake = wake
        self.oids = frozenset()

    def watch(self, oids):
        self.oids = frozenset(oid for oid in oids if oid is not None)

    def invalidated(self, oids):
        watched = self.oids
        if watched and not watched.isdisjoint(oids):
            self.wake()


class _Tap:
    """Stands between a storage and the database it reports invalidations
    to, and tells the watches of the oids that went by."""

    def __init__(self):
        self.watches = weakref.WeakSet()
        self.lock = threading.Lock()

    def __call__(self, oids):
        with self.lock:
            watches = list(self.watches)
        for watch in watches:
            try:
                watch.invalidated(oids)
            except Exception:  # never break the storage's IO thread
                log.exception("zasync: invalidation watch failed")


_TAP = "_zasync_invalidation_tap"


def _invalidation_source(db):
    """The object a ZEO client storage calls ``invalidate(tid, oids)`` on,
    or None when the storage does not push invalidations."""
    storage = _base_storage(db)
    if storage is None or not hasattr(storage, "invalidateTransaction"):
        return None
    adapter = getattr(storage, "_db", None)
    if adapter is None or not hasattr(adapter, "invalidate"):
        return None
    return adapter


def watch_invalidations(db, wake):
    """An InvalidationWatch of ``db`` calling ``wake``, or None when its
    storage does not push invalidations (everything but ZEO)."""
    adapter = _invalidation_source(db)
    if adapter is None:
        return None
    tap = adapter.__dict__.get(_TAP)
    if tap is None:
        tap = _Tap()
        invalidate = adapter.invalidate

        def invalidate_and_tap(tid, oids, *args, **kwargs):
            result = invalidate(tid, oids, *args, **kwargs)
            tap(oids)
            return result

        # An instance attribute: ZEO looks the method up at each call.
        adapter.invalidate = invalidate_and_tap
        setattr(adapter, _TAP, tap)
    watch = InvalidationWatch(wake)
    with tap.lock:
        tap.watches.add(watch)
    return watch


# -- PostgreSQL (RelStorage): NOTIFY after commit, LISTEN in dispatchers ----


def _postgresql_dsn(db):
    """The libpq DSN of a RelStorage-on-PostgreSQL ``db``, or None."""
    adapter = getattr(_base_storage(db), "_adapter", None)
    if adapter is None or "postgresql" not in type(adapter).__module__.split("."):
        return None
    return getattr(adapter, "_dsn", None)


def _psycopg2():
    try:
        import psycopg2
    except ImportError:
        return None
    return psycopg2


class _Notifier:
    """One autocommit connection per database that sends NOTIFY."""

    def __init__(self, dsn):
        self.dsn = dsn
        self.conn = None
        self.lock = threading.Lock()

    def notify(self):
        psycopg2 = _psycopg2()
        if psycopg2 is None:
            return
        with self.lock:
            for _attempt in range(2):
                try:
                    if self.conn is None or self.conn.closed:
                        self.conn = psycopg2.connect(self.dsn)
                        self.conn.autocommit = True
                    with self.conn.cursor() as cursor:
                        cursor.execute(f"NOTIFY {CHANNEL}")
                    return
                except psycopg2.Error as exc:
                    # A server restart closes the connection: reconnect once.
                    with contextlib.suppress(Exception):
                        self.conn.close()
                    self.conn = None
                    error = exc
            log.warning(
                "zasync: could not NOTIFY other processes (%s); they will find "
                "the new job within their poll interval",
                error,
            )


_notifiers = {}
_notifiers_lock = threading.Lock()


def notify_other_processes(db):
    """Tell the dispatchers of other processes that ``db`` got work.

    Called after a commit that queued a job. Does something only for
    storages that do not push invalidations themselves (RelStorage on
    PostgreSQL); costs one round trip to the server there.
    """
    if db is None:
        return
    dsn = _postgresql_dsn(db)
    if dsn is None:
        return
    with _notifiers_lock:
        notifier = _notifiers.get(dsn)
        if notifier is None:
            notifier = _notifiers[dsn] = _Notifier(dsn)
    notifier.notify()


class PostgreSQLListener:
    """A thread that LISTENs on the database of a RelStorage ``db`` and
    calls ``wake()`` for each NOTIFY, reconnecting when the server goes."""

    def __init__(self, dsn, wake, name="zasync-listen"):
        self.dsn = dsn
        self.wake = wake
        self._stop = threading.Event()
        self._conn = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.listening = threading.Event()

    def start(self):
        self._thread.start()
        return self

    def stop(self):
        self._stop.set()
        self._thread.join(5)

    def _connect(self, psycopg2):
        conn = psycopg2.connect(self.dsn)
        conn.autocommit = True
        with conn.cursor() as cursor:
            cursor.execute(f"LISTEN {CHANNEL}")
        return conn

    def _run(self):
        psycopg2 = _psycopg2()
        failures = 0
        while not self._stop.is_set():
            try:
                conn = self._connect(psycopg2)
            except psycopg2.Error as exc:
                failures += 1
                if failures == 1:
                    log.warning("zasync: cannot LISTEN for new jobs yet: %s", exc)
                self._stop.wait(transact.backoff(failures, base=0.1, cap=5.0))
                continue
            failures = 0
            # Something may have been queued while we were not listening.
            self.wake()
            self.listening.set()
            try:
                while not self._stop.is_set():
                    ready, _, _ = select.select([conn], [], [], 0.5)
                    if not ready:
                        continue
                    conn.poll()
                    if conn.notifies:
                        conn.notifies.clear()
                        self.wake()
            except (psycopg2.Error, OSError, ValueError) as exc:
                log.warning("zasync: LISTEN connection lost (%s); reconnecting", exc)
            finally:
                self.listening.clear()
                with contextlib.suppress(Exception):
                    conn.close()


def listen(db, wake):
    """Start listening for other processes' new jobs on ``db``; returns an
    object with ``stop()``, ``watch(oids)`` and ``kind``, or None when the
    storage needs nothing beyond in-process wake-ups."""
    watch = watch_invalidations(db, wake)
    if watch is not None:
        return _Listening("zeo-invalidations", watch=watch)
    dsn = _postgresql_dsn(db)
    if dsn is not None:
        if _psycopg2() is None:
            log.warning(
                "zasync: RelStorage without psycopg2: other processes' jobs are "
                "found by polling only"
            )
            return None
        listener = PostgreSQLListener(dsn, wake).start()
        return _Listening("postgresql-notify", listener=listener)
    return None


class _Listening:
    def __init__(self, kind, watch=None, listener=None):
        self.kind = kind
        self._watch = watch
        self._listener = listener

    def watch(self, oids):
        if self._watch is not None:
            self._watch.watch(oids)

    def wait_ready(self, timeout):
        if self._listener is None:
            return True
        return self._listener.listening.wait(timeout)

    def stop(self):
        if self._listener is not None:
            self._listener.stop()
        if self._watch is not None:
            self._watch.watch(())
