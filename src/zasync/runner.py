"""Running one claimed job in a worker thread, with its own connection.

The job's own writes, its new status and its result are committed together,
in a transaction that touches nothing shared but the job, so it conflicts
only with writes to the job itself. The dispatcher updates the queue's
indexes afterwards (see Queue.reconcile).
"""

import datetime
import logging
import random
import time

import transaction
from ZODB.POSException import ConflictError

from zasync import local, wakeup
from zasync.failure import Failure
from zasync.status import ACTIVE, ASSIGNED, CALLBACKS, COMPLETED, NEW, PENDING
from zasync.storable import check_value
from zasync.transact import TRANSIENT_ERRORS, ClientDisconnected, abort

log = logging.getLogger("zasync.job")

# A job whose transaction conflicts this many times in a row is put back in
# the queue for a while instead of being retried at once in its thread.
IMMEDIATE_CONFLICT_RETRIES = 5
MAX_POSTPONEMENT = 60.0
# How long a worker keeps a job's outcome in hand while the storage server
# is unreachable (ZEO restarting) before leaving the job to recovery.
DISCONNECTED_PATIENCE = 600.0

# The old names of these, kept for code that imported them from here.
POSTPONE = TRANSIENT_ERRORS


def jobs_connection(connection, database=None):
    """The connection to the database holding the queues and jobs: the
    given one, or in multi-database mode its sibling called ``database``."""
    if database is None:
        return connection
    return connection.get_connection(database)


def _backoff(conflicts):
    """A short random pause so that conflicting workers fall out of step."""
    time.sleep(random.uniform(0, min(0.002 * 2**conflicts, 0.1)))


class LiveChannel:
    """A side connection that commits live annotations at once."""

    def __init__(self, db, database=None):
        self.db = db
        self.database = database
        self.tm = transaction.TransactionManager(explicit=True)
        self.conn = None

    def _connection(self):
        if self.conn is None:
            self.conn = self.db.open(transaction_manager=self.tm)
        return jobs_connection(self.conn, self.database)

    def write(self, job, name, value):
        check_value(value, f"live annotation {name!r}")
        if job._p_oid is None:
            raise ValueError(
                "live annotations need a job that is stored in the database"
            )
        conn = self._connection()
        for attempt in range(20):
            self.tm.begin()
            try:
                stored = conn.get(job._p_oid)
                queue = stored.home_queue
                queue.live_annotations(stored.id, create=True)[name] = value
                self.tm.commit()
            except ConflictError:
                abort(self.tm)
                _backoff(attempt)
                continue
            wakeup.notify_changed()
            return
        raise ConflictError(f"could not store live annotation {name!r}")

    def read(self, job, name, default=None):
        if job._p_oid is None:
            return job.get_live_annotation(name, default)
        conn = self._connection()
        self.tm.begin()
        try:
            return conn.get(job._p_oid).get_live_annotation(name, default)
        finally:
            abort(self.tm)

    def close(self):
        if self.conn is not None:
            abort(self.tm)
            self.conn.close()
            self.conn = None


class _Commit:
    """Records a job's result and commits its transaction, called by
    Job.invoke while the job's environment is still entered (so that what
    commits do, such as Plone's indexing queue, runs in the job's site, as
    its user). What went wrong is kept for the runner, not raised through
    the job's own code."""

    def __init__(self, runner, job, claimed):
        self.runner = runner
        self.job = job
        self.claimed = claimed
        self.committed = False
        self.transient = None
        self.failure = None

    def __call__(self, result):
        runner, job = self.runner, self.job
        try:
            runner._set_result(job, result, runner.clock())
            self.committed = runner._commit(
                final=self.claimed and job.status == COMPLETED
            )
        except TRANSIENT_ERRORS as exc:
            self.transient = exc
        except Exception:
            self.failure = Failure()
        return result


class JobRunner:
    """Runs jobs claimed by ``dispatcher`` in one thread's connection."""

    _take_next = None
    _next = None
    _next_activated = False

    def __init__(self, dispatcher):
        self.dispatcher = dispatcher
        self.clock = dispatcher.clock
        # The thread's own manager (the one transaction.get() returns in
        # this thread), so that code in a job that joins "the" transaction
        # (MailHost, after-commit hooks, savepoints, a batch commit of its
        # own) joins the job's transaction.
        self.tm = transaction.manager.manager
        self.conn = dispatcher.db.open(transaction_manager=self.tm)
        self.jobs = jobs_connection(self.conn, dispatcher.database)
        self.live = LiveChannel(dispatcher.db, dispatcher.database)

    def close(self):
        abort(self.tm)
        self.conn.close()
        self.live.close()

    # -- helpers -----------------------------------------------------------

    def _held(self, job):
        """True if ``job`` is held (ASSIGNED) by this dispatcher."""
        return job.status == ASSIGNED and job.assignee[0] == self.dispatcher.uuid

    def _mine(self, job):
        return (
            job.status in (ACTIVE, CALLBACKS)
            and job.assignee is not None
            and job.assignee[0] == self.dispatcher.uuid
        )

    def _commit(self, final=False):
        """Commit unless the dispatcher gave up on its running jobs.

        ``final``: this is the last commit for the job; the start of the
        next job the dispatcher holds for this thread rides on it, which
        saves that job a commit of its own.
        """
        if self.dispatcher.abandoned:
            abort(self.tm)
            return False
        activating = final and self._activate_next()
        self.tm.commit()
        if activating:
            self._next_activated = True
        wakeup.notify_changed()
        return True

    def _activate_next(self):
        if self._take_next is None:
            return False
        if self._next is None:
            self._next = self._take_next()
            if self._next is None:
                return False
        job = self.jobs.get(self._next)
        if not self._held(job):
            return False
        job.begin_attempt(self.clock())
        return True

    def taken_next(self):
        """(oid, started) of the job taken to run next by the last run(),
        for a caller whose run() raised."""
        return self._next, self._next_activated

    def activate_alone(self, oid):
        """Start an ASSIGNED job in a transaction of its own."""

        def activate(job):
            if not self._held(job):
                return False
            job.begin_attempt(self.clock())

        return self._small_transaction(oid, activate)

    def _small_transaction(self, oid, change, final=False):
        """Run ``change(job)`` in a transaction of its own, retrying conflicts
        and waiting out a lost storage server (up to DISCONNECTED_PATIENCE)."""
        attempt = 0
        disconnected_since = None
        while attempt < 50:
            self.tm.begin()
            try:
                job = self.jobs.get(oid)
                if change(job) is False:
                    abort(self.tm)
                    return False
                return self._commit(final and job.status in (COMPLETED, PENDING))
            except ClientDisconnected as exc:
                abort(self.tm)
                self.dispatcher.transient_error(exc)
                # Not a conflict: the server is gone for a while (a restart).
                # Keep the outcome in hand until it is back, unless stopping.
                now = time.monotonic()
                disconnected_since = disconnected_since or now
                if (
                    self.dispatcher.abandoned
                    or now - disconnected_since > DISCONNECTED_PATIENCE
                ):
                    break
                time.sleep(random.uniform(0.05, 0.5))
            except TRANSIENT_ERRORS as exc:
                abort(self.tm)
                self.dispatcher.transient_error(exc)
                _backoff(min(attempt, 6))
                attempt += 1
            except Exception:
                abort(self.tm)
                log.exception("could not record the outcome of job %r", oid)
                return False
        log.error("gave up recording the outcome of job %r", oid)
        return False

    def _count_transient(self, exc, oid=None):
        self.dispatcher.transient_error(exc)
        if isinstance(exc, ClientDisconnected):
            log.warning(
                "job %r: lost the storage server (%s); the job's outcome is "
                "read back from the server and nothing is done twice",
                oid,
                exc,
            )

    @staticmethod
    def _set_result(job, result, now):
        job.record_outcome(result, now)

    # -- running -----------------------------------------------------------

    def run(self, oid, take_next=None):
        """Run the claimed job ``oid`` and its callbacks.

        ``take_next()`` gives the oid of an ASSIGNED job to run next, or
        None. Returns (that oid or None, whether it was started already).
        """
        self._take_next = take_next
        self._next = None
        self._next_activated = False
        try:
            if self._call(oid, claimed=True) == CALLBACKS:
                self._run_callbacks(oid)
            if self._next is None and take_next is not None:
                self._next = take_next()
            return self._next, self._next_activated
        finally:
            self._take_next = None

    def _call(self, oid, claimed):
        """Call the job until it has an outcome; return the status committed
        with it (COMPLETED or CALLBACKS), or None if none was."""
        conflicts = 0
        while True:
            self.tm.begin()
            job = self.jobs.get(oid)
            if claimed and not self._mine(job):
                if (
                    conflicts
                    and job.status == COMPLETED
                    and job.assignee is not None
                    and job.assignee[0] == self.dispatcher.uuid
                ):
                    # Our commit went through; only its answer was lost.
                    self.dispatcher.count("completed")
                abort(self.tm)  # else taken back, by stop() or a peer's recovery
                return None
            if job.status == CALLBACKS:
                abort(self.tm)
                return CALLBACKS
            if not claimed:  # a callback run in its parent's thread
                job.begin_attempt(self.clock())
            if job.expired:
                failure = job.deadline_failure()
                abort(self.tm)
                stored = self._small_transaction(
                    oid,
                    lambda j, failure=failure: j.fail(failure, self.clock()),
                    final=claimed,
                )
                return CALLBACKS if stored else None
            started = time.perf_counter()
            level = logging.DEBUG if job.internal else logging.INFO
            log.log(level, "job %s (%s) started", job.id, job.callable_name)
            commit = _Commit(self, job, claimed)
            try:
                with local.live_channel(self.live):
                    job.invoke(conclude=commit)
            except TRANSIENT_ERRORS as exc:
                abort(self.tm)
                conflicts += 1
                self._count_transient(exc, oid)
                if self._postpone_after(oid, conflicts, exc, claimed):
                    return None
                continue
            except Exception:
                failure = Failure()
                abort(self.tm)
                elapsed = time.perf_counter() - started
                return self._decide(oid, failure, "job_error", claimed, elapsed)
            if commit.transient is not None:
                abort(self.tm)
                conflicts += 1
                self._count_transient(commit.transient, oid)
                if self._postpone_after(oid, conflicts, commit.transient, claimed):
                    return None
                continue
            if commit.failure is not None:
                abort(self.tm)
                elapsed = time.perf_counter() - started
                return self._decide(
                    oid, commit.failure, "commit_error", claimed, elapsed
                )
            if not commit.committed:
                return None
            self.dispatcher.count("completed")
            log.log(
                level,
                "job %s (%s) succeeded in %.3fs",
                job.id,
                job.callable_name,
                time.perf_counter() - started,
            )
            return job.status

    def _postpone_after(self, oid, conflicts, exc, claimed):
        """Retry a transient error at once a few times, then put the job
        back for later without counting the attempt. True if put back."""
        if conflicts <= IMMEDIATE_CONFLICT_RETRIES:
            _backoff(conflicts)
            return False
        if not claimed:
            _backoff(6)
            return False

        def postpone(job):
            if not self._mine(job):
                return False
            # The pause grows with each postponement of this job, so a job
            # that always conflicts is retried forever, but ever more rarely.
            delay = min(0.05 * 2**job.postponements, MAX_POSTPONEMENT)
            # Conflicts are routine under load: DEBUG, not noise.
            log.debug(
                "job %s postponed %.2fs after %d transient errors: %s",
                job.id,
                delay,
                conflicts,
                exc,
            )
            job.postpone(self.clock() + datetime.timedelta(seconds=delay))

        self._small_transaction(oid, postpone)
        return True

    def _decide(self, oid, failure, kind, final, elapsed=0.0):
        """Ask the job's retry policy about an error; record its answer.

        A final failure is logged at WARNING (operators' alerts see it), a
        retry at INFO, each with where and as whom the job ran."""
        outcome = {}
        what = "raised" if kind == "job_error" else "could not commit"

        def record(job):
            if job.role != "callback" and not self._mine(job):
                return False
            if not final and job.status == NEW:
                # A callback run in its parent's thread: its attempt began
                # in the transaction that was undone.
                job.begin_attempt(self.clock() - datetime.timedelta(seconds=elapsed))
            delay = getattr(job.retry_policy, kind)(job, failure)
            if delay is None or job.role == "callback":
                self._set_result(job, failure, self.clock())
                outcome["status"] = job.status
                outcome["log"] = (
                    logging.WARNING,
                    "job %s (%s) failed: it %s after %.3fs (%s; attempt %d): %s",
                    job.id,
                    job.callable_name,
                    what,
                    elapsed,
                    job.log_context,
                    job.attempts,
                    failure,
                )
            else:
                job.retry_later(self.clock() + delay)
                outcome["log"] = (
                    logging.INFO,
                    "job %s (%s) %s after %.3fs and will be retried in %ss "
                    "(%s; attempt %d): %s",
                    job.id,
                    job.callable_name,
                    what,
                    elapsed,
                    delay.total_seconds(),
                    job.log_context,
                    job.attempts + 1,
                    failure,
                )

        stored = self._small_transaction(oid, record, final=final)
        if stored:
            self.dispatcher.count("failed" if "status" in outcome else "retried")
            log.log(*outcome["log"])
        return outcome.get("status") if stored else None

    def _run_callbacks(self, oid, claimed=True):
        """Run the callbacks of a job in CALLBACKS, each in its own
        transaction (their own callbacks too), then complete the job."""
        while True:
            self.tm.begin()
            job = self.jobs.get(oid)
            if job.status != CALLBACKS or (claimed and not self._mine(job)):
                abort(self.tm)
                return
            todo = [cb._p_oid for cb in job.callbacks if cb.status != COMPLETED]
            abort(self.tm)
            for callback_oid in todo:
                if self._call(callback_oid, claimed=False) == CALLBACKS:
                    self._run_callbacks(callback_oid, claimed=False)
            added = []

            def complete(job, added=added):
                if any(cb.status != COMPLETED for cb in job.callbacks):
                    added.append(True)  # one was added meanwhile: go round
                    return False
                job.complete(self.clock())

            stored = self._small_transaction(oid, complete, final=claimed)
            if stored or not added or self.dispatcher.abandoned:
                return
