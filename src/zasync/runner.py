"""Running claimed jobs in a worker thread, with its own connection.

A job's own writes, its new status and its result are committed together,
in a transaction that touches nothing shared but the job, so it conflicts
only with writes to the job itself. The dispatcher updates the queue's
indexes afterwards (see Queue.reconcile).

Short plain jobs of one thread may share that transaction (group commit,
see GroupCommit): each runs inside a savepoint of its own, so a job that
raises loses only its own writes; the batch commits or aborts whole, and
whatever makes the batch unsure (a conflict at commit, a job that touched
the transaction itself) aborts it and runs its jobs again, each alone.

A runner knows of its dispatcher only its RunnerContext.
"""

import contextlib
import dataclasses
import datetime
import logging
import threading
import time
import typing

import transaction
from transaction.interfaces import NoTransaction
from ZODB.POSException import ConflictError, ReadConflictError

from zasync import local, transact, wakeup
from zasync.exceptions import JobCancelled
from zasync.failure import Failure, failure_from
from zasync.logonce import UntilRecovered
from zasync.status import ACTIVE, ASSIGNED, CALLBACKS, COMPLETED, NEW, PENDING
from zasync.storable import check_value
from zasync.transact import TRANSIENT_ERRORS, ClientDisconnected, abort, storage_error

log = logging.getLogger("zasync.job")

# A job whose transaction conflicts this many times in a row is put back in
# the queue for a while instead of being retried at once in its thread.
IMMEDIATE_CONFLICT_RETRIES = 5
MAX_POSTPONEMENT = 60.0
# How long a worker keeps a job's outcome in hand while the storage server
# is unreachable (ZEO restarting), or the storage fails (a full disk),
# before leaving the job to recovery.
DISCONNECTED_PATIENCE = 600.0
# Tries of the small transactions that record a job's outcome, and of a
# live annotation, when they conflict.
OUTCOME_TRIES = 50
LIVE_ANNOTATION_TRIES = 20
# The back-off between those tries (transact.backoff): short, since the
# other writer is another job's thread that is done in milliseconds; and
# the pause between tries while the storage server is gone (a restart).
CONFLICT_BACKOFF = {"base": 0.002, "cap": 0.1}
DISCONNECTED_BACKOFF = {"base": 0.05, "cap": 0.5}

# The old names of these, kept for code that imported them from here.
POSTPONE = TRANSIENT_ERRORS


def jobs_connection(connection, database=None):
    """The connection to the database holding the queues and jobs: the
    given one, or in multi-database mode its sibling called ``database``."""
    if database is None:
        return connection
    return connection.get_connection(database)


class StorageTrouble:
    """The storage errors (transact.storage_error) the threads of one
    dispatcher met: the first of each kind is logged, with the job it hit,
    the next ones only counted, until a commit goes through again, which is
    logged once with the counts (see zasync.logonce.UntilRecovered). One
    is shared by the runners of a dispatcher, through its RunnerContext."""

    def __init__(self):
        self._errors = UntilRecovered(log, every=0)

    def failed(self, kind, exc, what):
        self._errors.failed(
            kind,
            logging.WARNING,
            "the storage failed (%s) %s: %s. Not the job's fault: it is not "
            "charged to the job, which is tried again once the storage works "
            "(errors of this kind are counted, not logged, until then)",
            kind,
            what,
            exc,
        )

    def recovered(self):
        """A commit went through: the storage works (again)."""
        self._errors.recovered("the storage works again")


@dataclasses.dataclass(frozen=True)
class RunnerContext:
    """What a JobRunner needs of its dispatcher, and nothing more."""

    #: The database to open the runner's connections on.
    db: typing.Any
    #: In multi-database mode, the name of the database holding the queues.
    database: str | None
    #: The dispatcher's UUID: the jobs assigned to it are the runner's.
    uuid: str
    #: ``clock()``: the time now, as the dispatcher tells it.
    clock: typing.Callable
    #: ``abandoned()``: true once the stopping dispatcher gave up on its
    #: running jobs (they were put back): commit nothing more for them.
    abandoned: typing.Callable[[], bool]
    #: ``count(what)``: add one to the dispatcher's counter ``what``
    #: ("completed", "failed", "retried"; see IDispatcher.stats).
    count: typing.Callable[[str], None]
    #: ``transient_error(exc)``: a transaction was aborted by a conflict or
    #: a lost server (counted; a lost server makes the next round audit).
    transient_error: typing.Callable[[BaseException], None]
    #: The storage errors its runners met (logged once per kind).
    storage: StorageTrouble = dataclasses.field(default_factory=StorageTrouble)
    #: ``attempt_ended(outcome, pickup, duration)``: an attempt of a claimed
    #: job ended and its outcome committed (see IDispatcherObserver).
    attempt_ended: typing.Callable[[str, float, float], None] = lambda *a: None
    #: ``watch(runner, oid, deadline)``: the claimed job ``oid`` runs in
    #: ``runner``'s thread until ``deadline`` (an aware datetime: its time
    #: limit); ``unwatch(oid)``: that attempt is over (see zasync.timelimit).
    watch: typing.Callable = lambda *a: None
    unwatch: typing.Callable = lambda *a: None


def attempt_times(job, ended=None):
    """(pickup, duration) of the latest attempt of ``job``, in seconds, for
    IDispatcherObserver.attempt_ended: from its queue time (or begin_after
    if later) to its start, and from its start to ``ended`` (its end by
    default); (0, 0) for what is unknown. Never negative: the queue time
    may come from another machine's clock."""
    started = job.started
    if started is None:
        return 0.0, 0.0
    ready = job.queued
    if job.begin_after is not None and (ready is None or job.begin_after > ready):
        ready = job.begin_after
    ended = job.ended if ended is None else ended
    pickup = 0.0 if ready is None else (started - ready).total_seconds()
    duration = 0.0 if ended is None else (ended - started).total_seconds()
    return max(pickup, 0.0), max(duration, 0.0)


@dataclasses.dataclass
class GroupCommit:
    """Which jobs of one thread share a transaction, and how many.

    A batch takes at most ``size`` jobs, and no more once its jobs have
    worked ``window`` seconds in all. A job joins one only if it is plain
    (no environment, callbacks, parent, quota, deadline or time limit; not
    a composite job, nor one that ran in steps), was never interrupted, its
    callable took less than ``window`` on average in this process (so the
    first run of a callable is alone, and timed), and its callable never
    touched a batch's transaction itself. ``size`` 1 (or ``window`` 0) runs
    every job alone. Shared by the threads of one pool.
    """

    size: int = 1
    window: float = 0.0
    #: {callable name: moving average of its run time, seconds}.
    seconds: dict = dataclasses.field(default_factory=dict)
    #: Callable names that committed, aborted, joined a resource manager or
    #: added a hook inside a batch: they always run alone.
    alone: set = dataclasses.field(default_factory=set)

    #: How many callables are timed at most (then the timings start over).
    MAX_TIMED = 1000

    @property
    def enabled(self):
        return self.size > 1 and self.window > 0

    def joinable(self, job):
        """True if ``job`` may run in a batch with others."""
        if not self.enabled:
            return False
        if (
            job.interruptions
            or job.expired
            or job.parent is not None
            or job.quota_names
            or job.callbacks
            or getattr(job, "is_composite", False)
            or job.environment is not None
            or job.steps  # a job in steps commits its chunks: alone
            or job.time_limit is not None
        ):
            return False
        name = job.callable_name
        if name in self.alone:
            return False
        seconds = self.seconds.get(name)
        return seconds is not None and seconds < self.window

    def timed(self, job, seconds):
        """Note that a run of ``job``'s callable took ``seconds``."""
        name = job.callable_name
        before = self.seconds.get(name)
        if before is None and len(self.seconds) >= self.MAX_TIMED:
            self.seconds.clear()
        self.seconds[name] = seconds if before is None else 0.8 * before + 0.2 * seconds


class _BatchCommitRefused(RuntimeError):
    """Raised to a job that commits the transaction it shares with others."""


class _Member:
    """A job run in a batch and what it came to (for after the commit)."""

    def __init__(self, oid, job, elapsed, outcome):
        self.oid = oid
        self.job = job
        self.elapsed = elapsed
        self.outcome = outcome  # None: succeeded; else what _decision made


class _AttemptStopped(Exception):
    """The attempt just run had been stopped at its time limit, and its
    outcome recorded by the dispatcher: the runner records nothing."""


class _Unchanged(Exception):
    """Raised in a small transaction that has nothing to commit."""


class _Patience:
    """How long a small transaction of a runner keeps trying: until
    OUTCOME_TRIES conflicts, or while the storage server has been gone, or
    the storage has been failing (transact.storage_error: a full disk), for
    less than DISCONNECTED_PATIENCE and the dispatcher still wants the
    outcome; and how long it pauses between tries (for transact.run's
    should_stop and wait)."""

    def __init__(self, abandoned):
        self.abandoned = abandoned
        self.conflicts = 0
        self.disconnects = 0
        self.disconnected_since = None

    @staticmethod
    def _outage(exc):
        return isinstance(exc, ClientDisconnected) or not isinstance(
            exc, TRANSIENT_ERRORS
        )

    def exhausted(self, exc, attempt):
        if self._outage(exc):
            # Not a conflict: the server is gone for a while (a restart), or
            # the storage fails (a full disk). Keep the outcome in hand until
            # it is back, unless stopping.
            self.disconnects += 1
            now = time.monotonic()
            if self.disconnected_since is None:
                self.disconnected_since = now
            gone_for = now - self.disconnected_since
            return self.abandoned() or gone_for > DISCONNECTED_PATIENCE
        self.conflicts += 1
        return self.conflicts >= OUTCOME_TRIES

    def pause(self, exc, attempt):
        if self._outage(exc):
            return transact.backoff(self.disconnects - 1, **DISCONNECTED_BACKOFF)
        return transact.backoff(self.conflicts - 1, **CONFLICT_BACKOFF)


class _AttemptGuard:
    """Dooms the transactions of a job's attempt once it ran past its time
    limit, so that none of its writes commit, whatever its code does later.

    A synchronizer of the job thread's transaction manager: it knows the
    thread's current transaction, and dooms every new one while ``doomed``.
    ``doom()`` is called from the dispatcher's thread; a transaction that
    is committing already cannot be doomed, but its commit writes the job
    and so conflicts with the failure the dispatcher committed first."""

    def __init__(self):
        self.txn = None
        self.doomed = False

    def newTransaction(self, txn):  # noqa: N802 (transaction's ISynchronizer)
        self.txn = txn
        if self.doomed:
            txn.doom()

    def beforeCompletion(self, txn):  # noqa: N802
        pass

    def afterCompletion(self, txn):  # noqa: N802
        pass

    def doom(self):
        self.doomed = True
        txn = self.txn
        if txn is not None:
            with contextlib.suppress(ValueError):  # committing, or done
                txn.doom()


class LiveChannel:
    """A side connection that commits live annotations at once."""

    #: (job id, message) once the job's dispatcher stopped it (its time
    #: limit): zasync.local.check_cancelled raises JobTimedOut then.
    stopped = None

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

        def store():
            stored = conn.get(job._p_oid)
            queue = stored.home_queue
            queue.live_annotations(stored.id, create=True)[name] = value

        try:
            transact.run(
                self.tm,
                store,
                tries=LIVE_ANNOTATION_TRIES,
                # Only conflicts are worth trying again here: the job's own
                # transaction hears of a lost server.
                should_stop=lambda exc, attempt: not isinstance(exc, ConflictError),
                **CONFLICT_BACKOFF,
            )
        except ConflictError as exc:
            raise ConflictError(f"could not store live annotation {name!r}") from exc
        wakeup.notify_changed()

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
        self.storage = None  # a storage error (transact.storage_error)
        self.failure = None
        self.ran = None  # perf_counter() when the job's call returned

    def __call__(self, result):
        runner, job = self.runner, self.job
        self.ran = time.perf_counter()
        try:
            runner._set_result(job, result, runner.clock())
            self.committed = runner._commit(
                final=self.claimed and job.status == COMPLETED
            )
        except TRANSIENT_ERRORS as exc:
            self.transient = exc
        except Exception as exc:
            if storage_error(exc):
                self.storage = exc  # the storage's fault, not the job's
            else:
                self.failure = Failure()
        return result


class JobRunner:
    """Runs the jobs its dispatcher claimed in one thread's connection;
    ``context`` (a RunnerContext) is all it knows of the dispatcher."""

    _take_next = None
    _group = None
    # The jobs taken to run next (None: none taken yet), those of them the
    # last commit started, and whether it did.
    _next = None
    _next_complete = False
    _next_started = ()
    _next_activated = False
    # True while running the last job (or batch) of a run: only its final
    # commit starts the next jobs.
    _may_activate = True
    # While a batch runs: True once its own commit is under way.
    _committing = False

    def __init__(self, context):
        self.context = context
        self.clock = context.clock
        # The thread's own manager (the one transaction.get() returns in
        # this thread), so that code in a job that joins "the" transaction
        # (MailHost, after-commit hooks, savepoints, a batch commit of its
        # own) joins the job's transaction.
        self.tm = transaction.manager.manager
        self.conn = context.db.open(transaction_manager=self.tm)
        self.jobs = jobs_connection(self.conn, context.database)
        self.live = LiveChannel(context.db, context.database)
        # The claimed job whose attempt runs under a time limit now (its
        # oid), and the guard that dooms its transactions once past it.
        self._limited = None
        self._limit_lock = threading.Lock()
        self._guard = _AttemptGuard()
        self.tm.registerSynch(self._guard)

    def close(self):
        abort(self.tm)
        self.tm.unregisterSynch(self._guard)
        self.conn.close()
        self.live.close()

    # -- time limits -------------------------------------------------------

    def stop_attempt(self, oid, job_id, message):
        """Called from the dispatcher's thread once the job ``oid`` ran past
        its time limit: doom its transactions (nothing of this attempt may
        commit) and ask its code to stop (zasync.local.check_cancelled
        raises JobTimedOut with ``message``). False if that attempt is over
        already."""
        with self._limit_lock:
            if self._limited != oid:
                return False
            self._guard.doom()
            self.live.stopped = (job_id, message)
            return True

    def _watch(self, oid, job):
        """Before a claimed job's attempt: if it has a time limit, have
        the dispatcher watch it; returns the limit, or None."""
        limit = job.time_limit
        if limit is None or job.started is None:
            return None
        with self._limit_lock:
            self._limited = oid
        self.context.watch(self, oid, job.started + limit)
        return limit

    def _unwatch(self, oid, job, limit, commit):
        """After a watched attempt: raises _AttemptStopped if it had been
        stopped at its limit (and failed by the dispatcher) and did not
        commit before."""
        self.context.unwatch(oid)
        with self._limit_lock:
            self._limited = None
            stopped = self._guard.doomed
            self._guard.doomed = False
            self.live.stopped = None
        if stopped and not commit.committed:
            log.warning(
                "job %s (%s) returned after its time limit of %s; it was "
                "failed already, and nothing of this attempt was committed",
                job.id,
                job.callable_name,
                limit,
            )
            raise _AttemptStopped

    # -- helpers -----------------------------------------------------------

    def _held(self, job):
        """True if ``job`` is held (ASSIGNED) by this dispatcher."""
        return job.status == ASSIGNED and job.assignee[0] == self.context.uuid

    def _mine(self, job):
        return (
            job.status in (ACTIVE, CALLBACKS)
            and job.assignee is not None
            and job.assignee[0] == self.context.uuid
        )

    def _commit(self, final=False):
        """Commit unless the dispatcher gave up on its running jobs.

        ``final``: this is the last commit for the job; the start of the
        next jobs the dispatcher holds for this thread rides on it, which
        saves them a commit of their own.
        """
        if self.context.abandoned():
            abort(self.tm)
            return False
        activating = final and self._activate_next()
        self.tm.commit()
        if activating:
            self._next_activated = True
        self.context.storage.recovered()
        wakeup.notify_changed()
        return True

    def _activate_next(self):
        """Start the jobs to run next in the transaction about to commit
        (taking them first); True if it starts any."""
        if self._take_next is None or not self._may_activate:
            return False
        if self._next_activated:
            return False  # a later commit of the same run (its callbacks)
        self._take_group()
        started = []
        for oid in self._next:
            try:
                job = self.jobs.get(oid)
                held = self._held(job)
            except ReadConflictError:
                # Claimed after this transaction began: started later, in a
                # transaction of its own, rather than redo this one.
                continue
            if held:
                job.begin_attempt(self.clock())
                started.append(oid)
        self._next_started = tuple(started)
        return bool(started)

    def _take_group(self):
        """Take the jobs to run next, into ``_next`` as they are taken, so
        that a read that conflicts loses none and the retry goes on: one,
        or while they may run in a batch (GroupCommit.joinable) up to a
        batch's size of them; the last one taken may be one that runs
        alone."""
        if self._next is None:
            self._next = []
        taken = self._next
        group = self._group
        while not self._next_complete:
            try:
                enough = taken and (
                    group is None
                    or len(taken) >= group.size
                    or not group.joinable(self.jobs.get(taken[-1]))
                )
            except ReadConflictError:
                enough = True  # too new to read here: it ends the group
            if enough:
                break
            oid = self._take_next()
            if oid is None:
                break
            taken.append(oid)
        self._next_complete = True

    def taken_next(self):
        """(oids, started) of the jobs taken to run next by the last run,
        and those of them its last commit started, for a caller whose run
        raised."""
        started = self._next_started if self._next_activated else ()
        return list(self._next or ()), list(started)

    def activate_alone(self, oids):
        """Start ASSIGNED jobs in a transaction of their own; returns those
        it started (a list; a single oid gives True or False)."""
        if not isinstance(oids, list | tuple):
            return bool(self.activate_alone([oids]))
        started = []

        def activate(job):
            started.clear()
            for oid in oids:
                held = self.jobs.get(oid)
                if self._held(held):
                    held.begin_attempt(self.clock())
                    started.append(oid)
            return bool(started)

        if not oids or not self._small_transaction(oids[0], activate):
            return []
        return list(started)

    def _small_transaction(self, oid, change, final=False):
        """Run ``change(job)`` in a transaction of its own (nothing is
        committed if it returns False), retrying conflicts (OUTCOME_TRIES)
        and waiting out a lost storage server or a failing storage (a full
        disk; up to DISCONNECTED_PATIENCE). True if committed."""
        activating = []
        patience = _Patience(self.context.abandoned)

        def work():
            job = self.jobs.get(oid)
            if change(job) is False or self.context.abandoned():
                raise _Unchanged
            activating[:] = [
                final and job.status in (COMPLETED, PENDING) and self._activate_next()
            ]

        def on_error(exc, attempt):
            if isinstance(exc, TRANSIENT_ERRORS):
                self.context.transient_error(exc)
            else:
                self._storage_failed(
                    exc, f"recording the outcome of job {oid!r} (it is kept)"
                )

        try:
            transact.run(
                self.tm,
                work,
                tries=None,
                on_error=on_error,
                should_stop=patience.exhausted,
                wait=patience.pause,
                retry_also=storage_error,
            )
        except _Unchanged:
            return False
        except TRANSIENT_ERRORS:
            log.error("gave up recording the outcome of job %r", oid)
            return False
        except Exception as exc:
            if storage_error(exc):
                log.error(
                    "gave up recording the outcome of job %r: the storage "
                    "failed (%s); the job is recovered as interrupted",
                    oid,
                    exc,
                )
            else:
                log.exception("could not record the outcome of job %r", oid)
            return False
        if activating[0]:
            self._next_activated = True
        self.context.storage.recovered()
        wakeup.notify_changed()
        return True

    def _storage_failed(self, exc, what, kind=None):
        """Count a storage error and log it (once per kind)."""
        self.context.count("storage_errors")
        self.context.storage.failed(kind or storage_error(exc), exc, what)

    def _count_transient(self, exc, oid=None):
        self.context.transient_error(exc)
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
        taken, started = self.run_group([oid], take_next)
        return (taken[0], bool(started)) if taken else (None, False)

    def run_group(self, oids, take_next=None, group=None):
        """Run the claimed and started jobs ``oids`` in order, with their
        callbacks: those that ``group`` (a GroupCommit) lets share a
        transaction in batches, the others alone.

        ``take_next()`` gives the oid of an ASSIGNED job to run next, or
        None; the last commit starts the jobs taken so (several when they
        may share a batch). Returns (the oids taken, those of them started
        already), two lists.
        """
        self._take_next = take_next
        self._group = group
        self._next = None
        self._next_complete = False
        self._next_started = ()
        self._next_activated = False
        try:
            pending = list(oids)
            while pending:
                done, again = 0, ()
                if len(pending) > 1 and group is not None and group.enabled:
                    done, again = self._run_batch(pending)
                retried = bool(done)
                if not done:
                    done, again = 1, pending[:1]
                pending = pending[done:]
                for index, oid in enumerate(again):
                    self._may_activate = not pending and index == len(again) - 1
                    self._run_alone(oid, retried=retried)
            if not self._next_complete and take_next is not None:
                self._may_activate = True
                self._take_group()
            return self.taken_next()
        finally:
            self._take_next = None
            self._group = None
            self._may_activate = True

    def _run_alone(self, oid, retried=False):
        if self._call(oid, claimed=True, retried=retried) == CALLBACKS:
            self._run_callbacks(oid)

    def _call(self, oid, claimed, retried=False):
        """Call the job until it has an outcome; return the status committed
        with it (COMPLETED or CALLBACKS), or None if none was. ``retried``:
        a batch that held it failed to commit (maybe only its answer was
        lost)."""
        conflicts = 1 if retried else 0
        storage_errors = 0
        patience = _Patience(self.context.abandoned)
        while True:
            self.tm.begin()
            try:
                job = self.jobs.get(oid)
                job._p_activate()
            except Exception as exc:
                # The job's own record cannot be read now (a damaged read
                # after a full disk, a lost database server): try again,
                # with a growing pause, while the storage is given time.
                if not storage_error(exc):
                    raise
                abort(self.tm)
                storage_errors += 1
                self._storage_failed(exc, f"reading job {oid!r}")
                if patience.exhausted(exc, storage_errors):
                    return None
                time.sleep(patience.pause(exc, storage_errors))
                continue
            if claimed and not self._mine(job):
                if (
                    conflicts
                    and job.status == COMPLETED
                    and job.assignee is not None
                    and job.assignee[0] == self.context.uuid
                ):
                    # Our commit went through; only its answer was lost.
                    self.context.count("completed")
                    if not job.failed:
                        self.context.attempt_ended("succeeded", *attempt_times(job))
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
            request = job.cancel_requested if claimed else None
            if request is not None:
                # Cancelled while claimed (or between attempts): not run.
                abort(self.tm)
                error = local.cancel_error(job, request, "before it started")
                return self._decide(oid, failure_from(error), "job_error", True)
            started = time.perf_counter()
            level = logging.DEBUG if job.internal else logging.INFO
            log.log(level, "job %s (%s) started", job.id, job.callable_name)
            commit = _Commit(self, job, claimed)
            limit = self._watch(oid, job) if claimed else None
            try:
                try:
                    # Run alone, the job's transaction is its own: a job in
                    # steps (zasync.steps) commits chunks of its work in it.
                    with local.live_channel(self.live), local.own_transaction(self.tm):
                        job.invoke(conclude=commit)
                finally:
                    if limit is not None:
                        # What the job raised after its limit is not its outcome.
                        self._unwatch(oid, job, limit, commit)
            except _AttemptStopped:
                abort(self.tm)
                return None
            except TRANSIENT_ERRORS as exc:
                abort(self.tm)
                conflicts += 1
                self._count_transient(exc, oid)
                if self._postpone_after(oid, conflicts, exc, claimed):
                    return None
                continue
            except BaseException as exc:
                # Whatever the job raises is its outcome, SystemExit,
                # KeyboardInterrupt and GeneratorExit too: in a worker thread
                # they would end only the thread, and leave the job ACTIVE
                # (see IJob). A storage error is the storage's, not the job's.
                kind = storage_error(exc)
                failure = None if kind else Failure()
                abort(self.tm)
                if kind:
                    storage_errors += 1
                    if self._storage_postpone(
                        oid, exc, kind, claimed, storage_errors, "while it ran"
                    ):
                        return None
                    continue
                elapsed = time.perf_counter() - started
                return self._decide(oid, failure, "job_error", claimed, elapsed)
            if commit.transient is not None:
                abort(self.tm)
                conflicts += 1
                self._count_transient(commit.transient, oid)
                if self._postpone_after(oid, conflicts, commit.transient, claimed):
                    return None
                continue
            if commit.storage is not None:
                abort(self.tm)
                storage_errors += 1
                if self._storage_postpone(
                    oid, commit.storage, None, claimed, storage_errors, "at its commit"
                ):
                    return None
                continue
            if commit.failure is not None:
                abort(self.tm)
                elapsed = time.perf_counter() - started
                return self._decide(
                    oid, commit.failure, "commit_error", claimed, elapsed
                )
            if self._group is not None:
                self._group.timed(job, commit.ran - started)
            if not commit.committed:
                return None
            self.context.count("completed")
            if claimed:
                self.context.attempt_ended("succeeded", *attempt_times(job))
            log.log(
                level,
                "job %s (%s) succeeded in %.3fs",
                job.id,
                job.callable_name,
                time.perf_counter() - started,
            )
            return job.status

    # -- group commit ----------------------------------------------------------

    def _run_batch(self, oids):
        """Run the first jobs of ``oids`` that may share a transaction, each
        in a savepoint of its own, and commit them together.

        Returns (how many of ``oids`` it took, those to run again alone):
        (0, ()) if the first may not join a batch; (n, ()) once n jobs
        committed together (or were found taken back); (n, the n) if the
        batch aborted instead (a conflict, a lost server, an error at
        commit, a job that touched the transaction): none of it committed.
        """
        group = self._group
        self.tm.begin()
        txn = self.tm.get()
        try:
            members, broken, took = self._fill_batch(txn, oids, group)
        except BaseException:
            abort(self.tm)
            raise
        if broken is not None or not any(m.job is not None for m in members):
            abort(self.tm)
            if broken is not None:
                return took, oids[:took]
            return took, ()
        self._may_activate = took == len(oids)
        try:
            activating = self._activate_next()
            if self.context.abandoned():
                abort(self.tm)
                return took, ()
            self._committing = True
            self.tm.commit()
        except TRANSIENT_ERRORS as exc:
            abort(self.tm)
            self._count_transient(exc)
            return took, oids[:took]
        except Exception as exc:
            abort(self.tm)
            kind = storage_error(exc)
            if kind:
                self._storage_failed(
                    exc, f"at the commit of a batch of {len(members)} jobs", kind
                )
            else:
                log.exception(
                    "dispatcher %s: a batch of %d jobs could not commit; they "
                    "run again, each alone",
                    self.context.uuid,
                    len(members),
                )
            return took, oids[:took]
        finally:
            self._committing = False
        if activating:
            self._next_activated = True
        self.context.storage.recovered()
        wakeup.notify_changed()
        for member in members:
            self._report_member(member)
        for member in members:
            if member.job is not None and member.job.status == CALLBACKS:
                self._run_callbacks(member.oid)
        return took, ()

    def _fill_batch(self, txn, oids, group):
        """Run jobs of ``oids`` in ``txn`` while they may share it. Returns
        (the members, what broke the batch or None, how many oids taken)."""
        txn.addBeforeCommitHook(self._refuse_commit)
        ours = {id(c) for c in self.conn.connections.values()}
        members = []
        work = 0.0
        for oid in oids:
            if len(members) >= group.size or work >= group.window:
                break
            try:
                job = self.jobs.get(oid)
                mine = self._mine(job) and job.status == ACTIVE
            except Exception as exc:
                if not storage_error(exc):
                    raise
                return members, exc, len(members) + 1  # alone, it waits
            if not mine:
                members.append(_Member(oid, None, 0.0, None))  # taken back
                continue
            if not group.joinable(job):
                break
            savepoint = txn.savepoint()
            hooks = _hook_count(txn)
            level = logging.DEBUG if job.internal else logging.INFO
            log.log(level, "job %s (%s) started", job.id, job.callable_name)
            started = time.perf_counter()
            failure = None
            try:
                with local.live_channel(self.live):
                    result = job.invoke()
            except TRANSIENT_ERRORS as exc:
                self._count_transient(exc, oid)
                return members, exc, len(members) + 1
            except BaseException as exc:  # any exception is the job's outcome
                if storage_error(exc):
                    # Not the job's: the batch aborts, and its jobs run
                    # again alone, where the storage error postpones them.
                    return members, exc, len(members) + 1
                failure = Failure()
            elapsed = time.perf_counter() - started
            work += elapsed
            group.timed(job, elapsed)
            if self._touched(txn, hooks, ours):
                group.alone.add(job.callable_name)
                log.info(
                    "job %s (%s) touched the transaction it shared with other "
                    "jobs; they run again, each alone, and %s always runs alone",
                    job.id,
                    job.callable_name,
                    job.callable_name,
                )
                return members, True, len(members) + 1
            outcome = None
            try:
                if failure is None:
                    self._set_result(job, result, self.clock())
                else:
                    savepoint.rollback()
                    outcome = {}
                    self._decision(failure, "job_error", True, elapsed, outcome)(job)
            except Exception as exc:
                log.exception("job %s: could not record its outcome in a batch", oid)
                return members, exc, len(members) + 1
            members.append(_Member(oid, job, elapsed, outcome))
        return members, None, len(members)

    def _refuse_commit(self):
        """The before-commit hook of a batch: only the runner commits it."""
        if not self._committing:
            raise _BatchCommitRefused(
                "this job ran in a transaction shared with other jobs (group "
                "commit) and may not commit it itself; it is run again alone"
            )

    def _touched(self, txn, hooks, ours):
        """True if the job just run ended, replaced or doomed the batch's
        transaction, tried to commit it, added hooks to it or joined a
        resource manager other than this thread's ZODB connections: then
        its effects cannot be kept apart from the others' in the batch."""
        try:
            current = self.tm.get()
        except NoTransaction:
            return True
        return (
            current is not txn
            or txn.isDoomed()
            or txn.status != "Active"
            or _hook_count(txn) != hooks
            or any(id(r) not in ours for r in txn._resources)
        )

    def _report_member(self, member):
        """Count and log a job once its batch committed."""
        if member.job is None:
            return
        job = member.job
        if member.outcome is not None:
            self._report_decision(member.outcome)
            return
        self.context.count("completed")
        self.context.attempt_ended("succeeded", *attempt_times(job))
        log.log(
            logging.DEBUG if job.internal else logging.INFO,
            "job %s (%s) succeeded in %.3fs (committed with others)",
            job.id,
            job.callable_name,
            member.elapsed,
        )

    def _postpone_after(self, oid, conflicts, exc, claimed):
        """Retry a transient error at once a few times, then put the job
        back for later without counting the attempt. True if put back."""
        if conflicts <= IMMEDIATE_CONFLICT_RETRIES:
            transact.pause(conflicts, **CONFLICT_BACKOFF)
            return False
        if not claimed:
            transact.pause(6, **CONFLICT_BACKOFF)
            return False
        # Conflicts are routine under load: DEBUG, not noise.
        cause = "disconnect" if isinstance(exc, ClientDisconnected) else "conflict"
        self._postpone(oid, f"{conflicts} transient errors: {exc}", cause)
        return True

    def _storage_postpone(self, oid, exc, kind, claimed, count, when):
        """A storage error (transact.storage_error) hit the job ``when``:
        log it (once per kind) and put the job back for later without
        counting the attempt, once the storage lets us (a callback run in
        its parent's thread tries again in place, after a pause). True if
        the job is done with here."""
        self._storage_failed(exc, f"{when}: job {oid!r}", kind)
        if not claimed:
            if self.context.abandoned():
                return True
            time.sleep(transact.backoff(count - 1, **DISCONNECTED_BACKOFF))
            return False
        self._postpone(oid, f"a storage error: {exc}", "storage_error")
        return True

    def _postpone(self, oid, why, cause):
        """Put the job back in the queue for a while, its attempt not
        counted (Job.postpone); the log line says ``why`` (DEBUG), the
        counter ``postponed_<cause>`` counts it (see IDispatcher.stats)."""

        def postpone(job):
            if not self._mine(job):
                return False
            # The pause grows with each postponement of this job, so a job
            # that always conflicts is retried forever, but ever more rarely.
            delay = min(0.05 * 2**job.postponements, MAX_POSTPONEMENT)
            log.debug("job %s postponed %.2fs after %s", job.id, delay, why)
            job.postpone(self.clock() + datetime.timedelta(seconds=delay))

        if self._small_transaction(oid, postpone):
            self.context.count(f"postponed_{cause}")

    def _decide(self, oid, failure, kind, final, elapsed=0.0):
        """Ask the job's retry policy about an error; record its answer.

        A final failure is logged at WARNING (operators' alerts see it), a
        retry at INFO, each with where and as whom the job ran."""
        outcome = {}
        record = self._decision(failure, kind, final, elapsed, outcome)
        stored = self._small_transaction(oid, record, final=final)
        if stored:
            self._report_decision(outcome)
        return outcome.get("status") if stored else None

    def _report_decision(self, outcome):
        ended = "failed" if "status" in outcome else "retried"
        self.context.count(ended)
        if "times" in outcome:
            self.context.attempt_ended(ended, *outcome["times"])
        log.log(*outcome["log"])

    def _decision(self, failure, kind, final, elapsed, outcome):
        """``record(job)``: apply the retry policy's answer about
        ``failure`` to the job, noting in ``outcome`` what it was."""
        what = "raised" if kind == "job_error" else "could not commit"

        def record(job):
            if job.role != "callback" and not self._mine(job):
                return False
            if not final and job.status == NEW:
                # A callback run in its parent's thread: its attempt began
                # in the transaction that was undone.
                job.begin_attempt(self.clock() - datetime.timedelta(seconds=elapsed))
            if kind == "job_error" and failure.check(JobCancelled):
                delay = None  # an operator asked it to stop: never retried
            else:
                delay = getattr(job.retry_policy, kind)(job, failure)
            now = self.clock()
            if final and job.role != "callback":
                outcome["times"] = attempt_times(job, now)
            if delay is None or job.role == "callback":
                self._set_result(job, failure, now)
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
                job.retry_later(now + delay)
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

        return record

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
            if stored or not added or self.context.abandoned():
                return


def _hook_count(txn):
    """How many commit and abort hooks ``txn`` has."""
    return sum(
        sum(1 for _ in hooks())
        for hooks in (
            txn.getBeforeCommitHooks,
            txn.getAfterCommitHooks,
            txn.getBeforeAbortHooks,
            txn.getAfterAbortHooks,
        )
    )
