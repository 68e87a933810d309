"""The dispatcher: claims jobs for its agents and runs them in threads.

One dispatcher per process and database. Its loop thread heartbeats,
reconciles the jobs its workers finished, recovers the jobs of dead peers
and claims work for idle threads, all in one transaction per round, so the
cost of the bookkeeping is shared by every job of the round. Each worker
thread runs one job at a time with its own connection and transaction
manager (see zasync.runner).
"""

import collections
import contextlib
import dataclasses
import datetime
import logging
import math
import os
import socket
import threading
import time

import transaction
from ZODB.utils import z64
from zope.interface import implementer

# zasync.recurring and zasync.retention are imported for their chores,
# which they register.
from zasync import (  # noqa: F401
    chores,
    clock,
    recurring,
    remote_wakeup,
    retention,
    timelimit,
    transact,
    wakeup,
)
from zasync.config import MAIN_AGENT, DispatcherConfig
from zasync.identity import UUID_ENVIRONMENT, dispatcher_uuid, read_uuid_file
from zasync.interfaces import IDispatcher
from zasync.loading import is_broken, stored_state
from zasync.logonce import LogOnce, UntilRecovered
from zasync.pool import WorkerPool
from zasync.queue import RUN_PARTS, get_queues
from zasync.registry import (
    Agent,
    DispatcherRecord,
    configured_agent_size,
    intervals_in_force,
    threads_text,
)
from zasync.runner import JobRunner, RunnerContext, jobs_connection
from zasync.status import ACTIVE, ASSIGNED, CALLBACKS
from zasync.transact import TRANSIENT_ERRORS, ClientDisconnected, abort

log = logging.getLogger("zasync.dispatcher")

#: Where an interval given to Dispatcher() or start() comes from.
ARGUMENT = "argument"
# What _claim_carefully cannot do is logged once per kind, with a count.
careful_log = LogOnce(log)

# UUID_ENVIRONMENT, read_uuid_file and dispatcher_uuid live in
# zasync.identity; they stay importable from here, their old home.
__all__ = [
    "UUID_ENVIRONMENT",
    "Dispatcher",
    "Round",
    "add_observer",
    "dispatcher_uuid",
    "read_uuid_file",
    "remove_observer",
    "start",
]

# Tries of the dispatcher's own small transactions (register, deregister,
# set a job aside) when they conflict, and the back-off between them.
TRANSACTION_TRIES = 100
TRANSACTION_BACKOFF = {"base": 0.01, "cap": 0.2}
# The loop's pause after a round lost to a conflict or to a lost server
# (capped by the poll interval), and after a round that failed otherwise.
ROUND_CONFLICT_BASE = 0.002
ROUND_ERROR_BACKOFF = {"base": 0.1, "cap": 10.0}
# After this many failed rounds in a row the loop reopens its connection.
REOPEN_AFTER_FAILURES = 3
# A failed round of a kind already logged is logged again every this many.
REPEAT_LOG_EVERY = 100
# How many jobs _claim_carefully claims or sets aside per queue at most.
CAREFUL_CLAIMS = 1000
# Judging peers (see Dispatcher._heartbeat): the loop stalled when two of
# its rounds started more than STALL_PINGS ping intervals apart (by this
# process's monotonic clock); its watch of the storage was interrupted when
# two of its own heartbeats committed more than WATCH_GAP_PINGS ping
# intervals apart (by the storage's time).
STALL_PINGS = 1.5
WATCH_GAP_PINGS = 2.0
# Scheduling on the storage's time (see Dispatcher._now): the offset of
# this process's clock from the storage's is the largest of the last
# OFFSET_SAMPLES measured at its heartbeat commits (each sample errs by the
# commit's latency, always on the low side), applied to the rounds' time
# once it exceeds SKEW_TOLERANCE seconds.
OFFSET_SAMPLES = 8
SKEW_TOLERANCE = 1.0
# A round that judges is also run when a peer's death interval, as watched,
# is about to end (not only at the next heartbeat): this long after it.
JUDGE_MARGIN = 0.1


# The IDispatcherObservers of this process's dispatchers: a tuple, replaced
# whole, so that the threads read it without a lock.
_observers = ()
_observers_lock = threading.Lock()
# What an observer raised is logged once per kind, never raised.
observer_log = LogOnce(log)


def add_observer(observer):
    """Tell ``observer`` (an IDispatcherObserver) what every dispatcher of
    this process does from now on; adding it again changes nothing."""
    global _observers
    with _observers_lock:
        if observer not in _observers:
            _observers = (*_observers, observer)


def remove_observer(observer):
    """Stop telling ``observer``; one that was not added is ignored."""
    global _observers
    with _observers_lock:
        _observers = tuple(o for o in _observers if o is not observer)


def _tell(method, *args):
    for observer in _observers:
        try:
            getattr(observer, method)(*args)
        except Exception:
            observer_log.error(
                (type(observer), method),
                "the dispatcher observer %r failed in %s; it is ignored",
                observer,
                method,
                exc_info=True,
            )


@dataclasses.dataclass
class Round:
    """What one round of the loop found to do, gathered while its
    transaction runs: done once it commits, undone if it does not."""

    #: The time the round runs at.
    now: datetime.datetime
    #: Jobs whose threads committed their outcome before the round began
    #: (a later commit, reconciled from an older snapshot, would conflict).
    finished: list
    #: Whether the round looks for jobs held without knowing it (after a
    #: lost server, and with each heartbeat).
    audit: bool = False
    #: Whether the round heartbeats (and looks for dead peers).
    pinged: bool = False
    #: (key, oid) taken from the held jobs to start: put back on failure.
    taken: list = dataclasses.field(default_factory=list)
    #: (key, oid) to hand to threads once committed.
    to_start: list = dataclasses.field(default_factory=list)
    #: (key, oid) claimed to hold for threads once committed.
    to_hold: list = dataclasses.field(default_factory=list)
    #: When the first pending job of the served queues becomes due, if any.
    due: datetime.datetime | None = None
    #: The oids whose change by another process is to wake the dispatcher.
    watched: set = dataclasses.field(default_factory=set)

    def note_due(self, when):
        if when is not None and (self.due is None or when < self.due):
            self.due = when

    def starting(self, key):
        """How many jobs of agent ``key`` the round starts so far."""
        return sum(1 for k, _ in self.to_start if k == key)


@implementer(IDispatcher)
class Dispatcher:
    """See IDispatcher. Use :func:`zasync.start` to make one.

    Its options are a :class:`zasync.config.DispatcherConfig`, given as
    ``config`` or as keyword arguments (its fields), or both (the keyword
    arguments win).
    """

    def __init__(self, db, *, config=None, **options):
        if config is None:
            config = DispatcherConfig(**options).with_sources_of(options, ARGUMENT)
        elif not isinstance(config, DispatcherConfig):
            raise TypeError(
                f"config must be a zasync.config.DispatcherConfig, not {config!r}; "
                f"give the options as keyword arguments"
            )
        elif options:
            config = config.replace(**options).with_sources_of(options, ARGUMENT)
        config = config.replace(uuid=dispatcher_uuid(config.uuid))
        self.config = config
        self.db = db
        self.uuid = config.uuid
        self.queue_names = config.queues
        # {queue name: (size, source)} of the agents as registered and
        # followed since; read by other threads for display only.
        self.agent_sizes = {}
        # {interval: (seconds, source)}, as _follow_intervals found them.
        self.intervals, _ = intervals_in_force(config)
        # What _follow_intervals last read: (oid, serial) of the settings.
        self._intervals_seen = object()
        self.running = False
        self.abandoned = False
        self.stats = collections.Counter()
        self._stats_lock = threading.Lock()
        self._audit_due = False
        self._wake = threading.Event()
        self.pool = WorkerPool(
            make_runner=lambda: JobRunner(self._runner_context),
            wake=self._wake.set,
            name=self.uuid,
            prefetch=config.prefetch,
            prefetch_below=config.prefetch_below,
            group_commit=config.group_commit,
            group_commit_window=config.group_commit_window,
        )
        self._runner_context = RunnerContext(
            db=db,
            database=config.database,
            uuid=self.uuid,
            clock=config.clock,
            abandoned=lambda: self.abandoned,
            count=self.count,
            transient_error=self.transient_error,
            attempt_ended=self._attempt_ended,
            watch=self.pool.watch,
            unwatch=self.pool.unwatch,
        )
        self._chores = chores.ChoreRunner(self)
        self._loop_thread = None
        #: time.monotonic() when the loop last started a round, or None.
        self.last_round_started = None
        self._last_ping = None
        # Judging peers (see _heartbeat). The tid of the heartbeat commit
        # since which this dispatcher has watched the storage without
        # interruption (None: not yet); whether its watch was interrupted
        # since (a start, a stall of the loop, a lost server); the tid of
        # its last committed heartbeat; the Heartbeat the round pinged.
        self._watching_since = None
        self._watch_broken = True
        self._own_beat_tid = None
        self._pinged_beat = None
        self._previous_round_started = None
        # time.monotonic() when a peer may be found dead, or None.
        self._judge_at = None
        #: Seconds the rounds add to ``clock()`` (see _now): the storage's
        #: time less this process's clock, when more than SKEW_TOLERANCE.
        self.clock_offset = 0.0
        self._offsets = collections.deque(maxlen=OFFSET_SAMPLES)
        self._tm = transaction.TransactionManager(explicit=True)
        self._conn = None
        self._listening = None

    # The options, as IDispatcher names them (see DispatcherConfig).
    agent_size = property(lambda self: self.config.agent_size)
    agent_size_source = property(lambda self: self.config.agent_size_source)
    agent_filter = property(lambda self: self.config.agent_filter)
    # The intervals in force: the process's own, else the cluster's
    # settings (see _follow_intervals), else the defaults.
    poll_interval = property(lambda self: self.intervals["poll_interval"][0])
    ping_interval = property(lambda self: self.intervals["ping_interval"][0])
    death_interval = property(lambda self: self.intervals["death_interval"][0])
    clock = property(lambda self: self.config.clock)
    database = property(lambda self: self.config.database)

    def __repr__(self):
        return f"<Dispatcher {self.uuid} queues={list(self.queue_names)}>"

    def _jobs_connection(self):
        return jobs_connection(self._conn, self.database)

    def count(self, what, n=1):
        with self._stats_lock:
            self.stats[what] += n
        if _observers:
            _tell("counted", what, n)

    @staticmethod
    def _attempt_ended(outcome, pickup, duration):
        if _observers:
            _tell("attempt_ended", outcome, pickup, duration)

    def transient_error(self, exc):
        """Count a transaction aborted by a conflict or a lost server. After
        a lost server, the next round looks for jobs we hold without knowing
        it: a commit may have reached the server without its answer."""
        if isinstance(exc, ClientDisconnected):
            self.count("disconnects")
            self._audit_due = True
            # Peers may have lost the server too: judge none of them on
            # heartbeats they could not commit (see _heartbeat).
            self._watch_broken = True
        else:
            self.count("conflicts")

    # -- starting and stopping --------------------------------------------

    def start(self):
        if self.running:
            raise RuntimeError("this dispatcher is running already")
        self._conn = self.db.open(transaction_manager=self._tm)
        self._retry_transaction(self._register)
        self.running = True
        wakeup.register(self)
        # Commits of other processes wake us through the storage (ZEO
        # invalidations, PostgreSQL NOTIFY); see zasync.remote_wakeup.
        self._listening = remote_wakeup.listen(self._jobs_connection().db(), self.wake)
        self._watch_at_start()
        self._loop_thread = threading.Thread(
            target=self._loop, name=f"zasync-dispatcher-{self.uuid[:8]}", daemon=True
        )
        self._loop_thread.start()
        log.info(
            "dispatcher %s started for queues %s: %s",
            self.uuid,
            self.queue_names,
            self.describe_agent_sizes(),
        )
        return self

    def describe_agent_sizes(self):
        """The agents' sizes and where they come from, for a log line:
        ``3 threads (cluster default)``, or one per queue if they differ."""
        sizes = dict(self.agent_sizes)
        if not sizes:
            return "not registered"

        def text(size, source):
            return f"{threads_text(size)} ({source})"

        if len(set(sizes.values())) == 1:
            return text(*next(iter(sizes.values())))
        return ", ".join(f"{name!r} {text(*sizes[name])}" for name in sizes)

    def _agent_size_for(self, queue):
        """(size, source) this dispatcher's agent in ``queue`` should have."""
        if self.agent_size is not None:
            return self.agent_size, self.agent_size_source
        return configured_agent_size(queue, self.uuid)

    def _set_up_agent(self, queue, record):
        """Give the record's agent the size in force and this process's
        filter; create it if missing."""
        size, source = self._agent_size_for(queue)
        if record.agent_size_source != self.agent_size_source:
            record.agent_size_source = self.agent_size_source
        agent = record.agents.get(MAIN_AGENT)
        if agent is None:
            record.agents[MAIN_AGENT] = Agent(MAIN_AGENT, size, self.agent_filter)
        else:
            if agent.size != size:
                agent.size = size
            if agent.filter is not self.agent_filter:
                agent.filter = self.agent_filter
        self.agent_sizes[queue.name] = (size, source)

    def _follow_settings(self, queue, record):
        """A dispatcher that follows the database's agent settings takes up
        a change made since it registered (an operator's change also
        resizes the agents at once; this covers a change that raced with
        this dispatcher's registration)."""
        if self.agent_size is not None:
            return
        size, source = configured_agent_size(queue, self.uuid)
        agent = record.agents.get(MAIN_AGENT)
        if agent is not None and agent.size != size:
            agent.size = size
            log.info(
                "dispatcher %s: agent of queue %r resized to %d (%s)",
                self.uuid,
                queue.name,
                size,
                source,
            )
        self.agent_sizes[queue.name] = (size, source)

    def _follow_intervals(self, queues):
        """Take up the cluster-wide interval settings (for the intervals
        this process does not set itself); when they changed, say so and
        write them into this dispatcher's records, which peers judge its
        death by. Returns whether they changed. Each round calls it: it
        reads the settings' serial only, until they change."""
        settings = getattr(queues, "interval_settings", None)
        if settings is not None:
            settings._p_activate()  # a ghost's serial is not its last one
        seen = None if settings is None else (settings._p_oid, settings._p_serial)
        if seen == self._intervals_seen:
            return False
        self._intervals_seen = seen
        intervals, problem = intervals_in_force(self.config, queues)
        if problem is not None:
            careful_log.log(logging.WARNING, ("intervals", problem), "%s", problem)
        if intervals == self.intervals:
            return False
        self.intervals = intervals
        log.info(
            "dispatcher %s: intervals now %s",
            self.uuid,
            ", ".join(f"{f} {v:g}s ({src})" for f, (v, src) in intervals.items()),
        )
        for name in self.queue_names:
            queue = queues.get(name)
            record = None if queue is None else queue.dispatchers.get(self.uuid)
            if record is not None:
                self._record_intervals(record)
        return True

    def _record_intervals(self, record):
        if record.ping_interval != self.ping_interval:
            record.ping_interval = self.ping_interval
        if record.death_interval != self.death_interval:
            record.death_interval = self.death_interval
        if record.intervals != self.intervals:
            record.intervals = dict(self.intervals)

    def _register(self, now):
        queues = get_queues(self._conn, self.database)
        self._follow_intervals(queues)
        for name in self.queue_names:
            queue = queues.create(name)
            record = queue.dispatchers.get(self.uuid)
            if record is not None:
                # Our own record: the process that had it is gone (this one
                # has the UUID now), so its jobs are recovered at once.
                recovered = queue.recover_dispatcher(record, now)
                if recovered:
                    log.warning(
                        "recovered %d unfinished jobs of this dispatcher's "
                        "previous run in queue %r",
                        recovered,
                        name,
                    )
                record.dead = False
                record.started = now
                # The same UUID, a new process (perhaps on another machine).
                record.host = socket.gethostname()
                record.pid = os.getpid()
                record.ping(now)
            else:
                record = queue.dispatchers[self.uuid] = DispatcherRecord(
                    self.uuid, now, self.ping_interval, self.death_interval
                )
            self._record_intervals(record)
            # An explicit size of this process wins; else the size set in
            # the database (for this UUID, or for the queue) applies, so a
            # restart keeps an operator's change.
            self._set_up_agent(queue, record)
            self._forget_long_dead(queue, now)
        # The first round heartbeats at once; peers are judged from a
        # watch of the storage that begins with it (see _heartbeat).
        self._last_ping = None
        self._watch_broken = True

    @staticmethod
    def _forget_long_dead(queue, now):
        """Drop records of dispatchers dead for a day whose jobs are recovered."""
        for uuid, record in list(queue.dispatchers.items()):
            if not record.dead:
                continue
            if (now - record.last_ping).total_seconds() < 86400 + record.death_interval:
                continue
            if all(len(agent.jobs) == 0 for agent in record.agents.values()):
                del queue.dispatchers[uuid]

    def _retry_transaction(self, work):
        """``work(now)`` in a transaction of the loop's connection, retried
        (TRANSACTION_TRIES) when it conflicts; every try lost is counted."""
        self._ensure_connection()
        try:
            return transact.run(
                self._tm,
                lambda: work(self.clock()),
                tries=TRANSACTION_TRIES,
                on_error=lambda exc, attempt: self.count("conflicts"),
                **TRANSACTION_BACKOFF,
            )
        except TRANSIENT_ERRORS as exc:
            raise RuntimeError(
                f"zasync: could not commit after {TRANSACTION_TRIES} conflicts"
            ) from exc

    def wake(self):
        self._wake.set()

    def stop(self, timeout=30):
        if not self.running:
            return True
        self.pool.stopping = True
        self._wake.set()
        finished = self.pool.wait_idle(timeout)
        if not finished:
            log.warning(
                "dispatcher %s: %d jobs still running after %ss; putting them back",
                self.uuid,
                self.pool.in_flight,
                timeout,
            )
            self.abandoned = True
        self._wake.set()
        self._loop_thread.join(max(timeout, 5))
        # The loop thread's connection is not ours to touch while it runs
        # (ZODB objects are not thread-safe): if a round is stuck, say a
        # storage server gone, leave the record for a restart to recover.
        loop_stuck = self._loop_thread.is_alive()
        if loop_stuck:
            log.error(
                "dispatcher %s: its loop did not stop; not deregistering (a "
                "restart with this UUID recovers its jobs)",
                self.uuid,
            )
        else:
            try:
                self._retry_transaction(self._deregister)
            except Exception:
                log.exception("dispatcher %s could not deregister", self.uuid)
        self.pool.stop(0.5 if self.abandoned else 5)
        if not loop_stuck and self._conn is not None:
            with contextlib.suppress(Exception):  # the storage may be gone
                abort(self._tm)
            self._conn.close()
        wakeup.unregister(self)
        if self._listening is not None:
            self._listening.stop()
            self._listening = None
        self.running = False
        log.info("dispatcher %s stopped", self.uuid)
        return finished

    def _deregister(self, now):
        self._reconcile(self.pool.finished(), now)
        queues = get_queues(self._conn, self.database)
        for name in self.queue_names:
            queue = queues.get(name)
            record = queue and queue.dispatchers.get(self.uuid)
            if record is None:
                continue
            queue.recover_dispatcher(record, now, interrupted=False)
            del queue.dispatchers[self.uuid]

    # -- the loop ----------------------------------------------------------

    def _loop(self):
        """Run rounds until stopped. Nothing a round, an abort or the
        storage raises ends the loop: a failed round is logged (once per
        kind of error until rounds work again, see _RoundErrors), the loop
        backs off, and after repeated failures it reopens its connection,
        so that it goes on when the storage comes back."""
        errors = _RoundErrors(self.uuid)
        pool = self.pool
        failures = 0
        while not pool.stopping or (pool.in_flight and not self.abandoned):
            try:
                failures = self._loop_once(failures, errors)
            except Exception as exc:  # a bug of the loop itself: go on
                failures += 1
                errors.failed(exc, 1.0)
                self._wake.wait(1.0)
            if failures is None:
                break

    def _loop_once(self, failures, errors):
        """One round of the loop and the wait after it; the failures in a
        row since, or None when the loop is to end."""
        pool = self.pool
        self.last_round_started = self._pace(self.last_round_started)
        try:
            wait = self._round()
            if failures:
                errors.recovered()
            failures = 0
            if not pool.stopping:
                wait = self._run_chores(wait)
        except TRANSIENT_ERRORS as exc:
            self._abort_round()
            self.transient_error(exc)
            if isinstance(exc, ClientDisconnected) and not failures:
                log.warning(
                    "dispatcher %s: lost the storage server (%s); waiting "
                    "for it to come back",
                    self.uuid,
                    exc,
                )
            failures += 1
            wait = transact.backoff(
                failures, base=ROUND_CONFLICT_BASE, cap=self.poll_interval
            )
        except Exception as exc:
            self._abort_round()
            failures += 1
            wait = transact.backoff(failures, **ROUND_ERROR_BACKOFF)
            errors.failed(exc, wait)
            try:
                if failures >= REOPEN_AFTER_FAILURES:
                    self._reopen()
                elif failures >= 2:
                    # Maybe one job cannot be stored any more: find it
                    # and set it aside, so it does not stop the others.
                    self._claim_carefully()
            except Exception as inner:
                self._abort_round()
                errors.failed(inner, wait)
        if pool.stopping and not pool.in_flight:
            return None
        # After a failure the loop backs off even with finished jobs
        # waiting to be recorded: retrying at once only fails again.
        if wait > 0 and (failures or not pool.finished_count):
            self._wake.wait(wait)
        self._wake.clear()
        self._gather_finished()
        return failures

    def _run_chores(self, wait):
        """Run the due chores (zasync.chores), each in a transaction of its
        own; returns ``wait`` shortened to when the next one is due."""
        due = self._chores.run_due(
            lambda work: self._retry_transaction(
                lambda now: work(get_queues(self._conn, self.database), now)
            )
        )
        return wait if due is None else min(wait, due)

    def _ensure_connection(self):
        """Open the loop's connection again if _reopen dropped it."""
        if self._conn is None:
            self._conn = self.db.open(transaction_manager=self._tm)

    def _abort_round(self):
        """Abort the round's transaction; if even that fails (the storage's
        connection is gone), the connection is reopened."""
        try:
            abort(self._tm)
        except Exception as exc:
            log.debug("dispatcher %s: abort failed (%s)", self.uuid, exc)
            self._reopen()

    def _reopen(self):
        """Drop the loop's connection (it may hold a broken storage
        connection or a stale state); the next round opens a fresh one."""
        old, self._conn = self._conn, None
        if old is not None:
            with contextlib.suppress(Exception):
                abort(self._tm)
            with contextlib.suppress(Exception):
                old.close()

    def _pace(self, began):
        """Start rounds at most one per ``batch_window`` (``began``: when
        the last one started), so that under a stream of puts one round
        claims several jobs and their threads commit them together, instead
        of a round and a commit for each. The first round after a quiet
        moment starts at once: pickup latency is unaffected."""
        window = self.config.batch_window
        if began is not None and window > 0 and not self.pool.stopping:
            remaining = began + window - time.monotonic()
            if remaining > 0:
                time.sleep(remaining)
        return time.monotonic()

    def _gather_finished(self):
        """Let a round serve several finished jobs at once.

        While other jobs are still running, wait a moment for them: one
        round then reconciles and replaces several jobs in one commit. An
        idle dispatcher (nothing running) never waits here, so pickup
        latency is unaffected.
        """
        pool = self.pool
        if not pool.finished_count or self.config.batch_window <= 0:
            return
        deadline = time.monotonic() + self.config.batch_window
        while (
            pool.in_flight
            and pool.finished_count < pool.batch_size
            and pool.every_agent_has_held_jobs()  # no thread is about to run dry
        ):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            self._wake.wait(remaining)
            self._wake.clear()

    def _round(self):
        """One transaction: reconcile, heartbeat, recover peers, claim.
        Returns how long to sleep before the next round."""
        now = self._now()
        self._ensure_connection()
        # Jobs past their time limit are failed first, to be reconciled now.
        timelimit.enforce(self, now)
        # Only jobs whose workers committed before this transaction begins:
        # reconciling a later commit from an older snapshot would conflict.
        round = Round(now=now, finished=self.pool.take_finished())
        stalled = self._loop_stalled()
        self._tm.begin()
        try:
            self._reconcile(round.finished, now)
            queues = get_queues(self._conn, self.database)
            self._follow_intervals(queues)
            round.audit = self._audit_due
            # A loop that stalled heartbeats at once, and judges no peer
            # before a round of its own on fresh evidence.
            round.pinged = (
                stalled
                or self._last_ping is None
                or ((now - self._last_ping).total_seconds() >= self.ping_interval)
                or (self._judge_at is not None and time.monotonic() >= self._judge_at)
            )
            if round.pinged:
                self._heartbeat(queues, now)
                round.audit = True
            self._audit_due = False
            if not self.pool.stopping:
                for name in self.queue_names:
                    self._claim(queues[name], round)
            self._tm.commit()
        except BaseException:
            self._undo(round)
            raise
        self.count("rounds")
        if self._listening is not None and not self.pool.stopping:
            self._listening.watch(round.watched)
        if round.pinged:
            # Only once stored: a heartbeat lost to a conflict is retried in
            # the next round, not a whole ping interval later.
            self._last_ping = now
            self._heartbeat_committed()
        for key, oid in round.to_hold:
            self.pool.hold(key, oid)
        for key, oid in round.to_start:
            self.pool.hand_over(oid, key)
        return self._wait_after(round)

    def _now(self):
        """The time of a round: ``clock()``, or the storage's time where
        this process's clock is more than SKEW_TOLERANCE off it, so that
        jobs become due (``begin_after``) and expire (``begin_by``) by the
        time every client agrees on, not by the clock of whichever worker
        claims them."""
        now = self.clock()
        if self.clock_offset:
            now += datetime.timedelta(seconds=self.clock_offset)
        return now

    def _measure_clock(self, tid):
        """Take the offset of this process's clock from the storage's at
        the commit of ``tid`` (just now), and follow it (see _now)."""
        local = clock.to_micros(self.clock()) / 1e6
        self._offsets.append(clock.tid_seconds(tid) - local)
        best = max(self._offsets)
        offset = best if abs(best) > SKEW_TOLERANCE else 0.0
        if offset == self.clock_offset:
            return
        if abs(offset - self.clock_offset) > SKEW_TOLERANCE or not offset:
            log.warning(
                "dispatcher %s: this process's clock is %.1fs off the storage's; %s",
                self.uuid,
                -best,
                "its rounds now use the storage's time for due jobs and deadlines"
                if offset
                else "its rounds use it again",
            )
        if self._last_ping is not None:  # the same ping, in the new time
            self._last_ping += datetime.timedelta(seconds=offset - self.clock_offset)
        self.clock_offset = offset

    def _loop_stalled(self):
        """Whether the loop stalled (paused, starved of CPU, stuck in a
        storage call or in its clock) since its last round: the two began
        their transactions more than STALL_PINGS ping intervals apart (a
        loop that runs rounds at least once a ping interval). Its view of
        its peers may then be stale: it judges none before it has watched
        again."""
        started, previous = time.monotonic(), self._previous_round_started
        self._previous_round_started = started
        if previous is None:
            return False
        if started - previous > STALL_PINGS * self.ping_interval:
            self._watch_broken = True
            self.count("stalls")
            return True
        return False

    def _undo(self, round):
        """Put back what a round that did not commit took."""
        self.pool.restore_finished(round.finished)
        for key, oid in reversed(round.taken):
            self.pool.put_back(key, oid)
        if round.audit:
            self._audit_due = True

    def _wait_after(self, round):
        """Seconds to wait after ``round``: the poll interval, or less if a
        job becomes due or a heartbeat is due sooner."""
        wait = self.poll_interval
        if round.due is not None:
            wait = min(wait, max((round.due - self._now()).total_seconds(), 0.001))
        if self._last_ping is not None:
            until_ping = (
                self.ping_interval - (self._now() - self._last_ping).total_seconds()
            )
            wait = min(wait, max(until_ping, 0.001))
        if self._judge_at is not None:
            wait = min(wait, max(self._judge_at - time.monotonic(), 0.001))
        deadline = self.pool.next_deadline()
        if deadline is not None:
            wait = min(wait, max((deadline - self._now()).total_seconds(), 0.001))
        return wait

    def _claim(self, queue, round):
        """The round's work for one queue: follow the agent settings, take
        up jobs held without knowing (when auditing), start and claim jobs
        for each agent, and note when the next job is due."""
        record = queue.dispatchers[self.uuid]
        self._follow_settings(queue, record)
        if round.audit:
            self._adopt_unknown(queue, record, round)
        if queue.paused is not None:
            # Nothing is claimed from a paused queue; its resume, a commit
            # of the queue itself, wakes this dispatcher (watched below).
            if self._listening is not None:
                round.watched.update(self._watched_oids(queue, record, None))
            return
        parts = self._parts_of_dispatchers(queue, round.now)
        prefer = None if parts is None else parts[self.uuid]
        for agent in record.agents.values():
            self._claim_for(queue, agent, (queue.name, agent.name), round, prefer)
        round.note_due(queue.next_due(round.now, prefer))
        if self._listening is not None:
            round.watched.update(self._watched_oids(queue, record, parts))

    def _preferred_parts(self, queue, now):
        """The run parts of ``queue`` this dispatcher claims from first
        (see Queue.claim), or None when it claims alone."""
        parts = self._parts_of_dispatchers(queue, now)
        return None if parts is None else parts[self.uuid]

    def _parts_of_dispatchers(self, queue, now):
        """{uuid: run parts it prefers} of this dispatcher and its live
        peers that claim: each takes its turn of the parts by its place
        among them (ordered by UUID, which every peer sees alike); None
        when this one claims alone."""
        claiming = sorted(
            uuid
            for uuid, record in queue.dispatchers.items()
            if uuid == self.uuid
            or (
                not record.is_dead(now)
                and any(agent.size for agent in record.agents.values())
            )
        )
        peers = len(claiming)
        if peers < 2:
            return None
        if peers >= RUN_PARTS:
            return {
                uuid: frozenset({place % RUN_PARTS})
                for place, uuid in enumerate(claiming)
            }
        return {
            uuid: frozenset(part for part in range(RUN_PARTS) if part % peers == place)
            for place, uuid in enumerate(claiming)
        }

    def _claim_for(self, queue, agent, key, round, prefer=None):
        """Start jobs for the agent's idle threads, held ones first, and
        claim more to hold for threads that are about to finish.

        Held jobs must not wait here while a peer could run them: with live
        peers serving the queue, the agent keeps (running and held) at most
        its share of the queue's outstanding jobs, in proportion to its
        threads (see _share), and gives the newest held ones back to the
        queue beyond it. An agent of size 0 claims nothing and gives back
        what it held."""
        if agent.size == 0:
            self._give_back_held(queue, key, round, len(agent.jobs))
            return
        idle = self.pool.idle_threads(key, agent.size)
        idle -= round.starting(key)  # adopted ones
        while idle > 0:
            oid = self.pool.pop_held(key)
            if oid is None:
                break
            round.taken.append((key, oid))
            job = self._jobs_connection().get(oid)
            if job.assignee is None or job.assignee[0] != self.uuid:
                continue  # taken back by a peer meanwhile
            if job.status == ASSIGNED:
                queue.activate(job, round.now)
            elif job.status not in (ACTIVE, CALLBACKS):
                continue
            # An ACTIVE one was started by a commit whose answer was lost:
            # it is ours, and runs now, its attempt counted already.
            round.to_start.append((key, oid))
            idle -= 1
        keep = agent.size + self.pool.jobs_to_hold()
        share = self._share(queue, agent, round.now)
        if share is not None:
            keep = min(keep, max(agent.size, share))
        if len(agent.jobs) > keep:
            self._give_back_held(queue, key, round, len(agent.jobs) - keep)
        wanted = keep - len(agent.jobs)
        if wanted <= 0:
            return
        start = max(idle, 0)
        claimed = queue.claim(agent, self.uuid, wanted, round.now, start, prefer)
        for index, job in enumerate(claimed):
            (round.to_start if index < start else round.to_hold).append(
                (key, job._p_oid)
            )
        if prefer is not None and len(claimed) < wanted and len(queue):
            # Jobs ready in a peer's parts are left to it for a moment:
            # look again when they are ours to take, if it has not.
            left = queue.peek(agent, round.now)
            if left is not None:
                round.note_due(queue.takeable_at(left))

    def _share(self, queue, agent, now):
        """How many jobs ``agent`` may have (running and held) so that no
        live peer of ``queue`` waits for jobs held here: the queue's
        outstanding jobs (pending, and claimed by any agent) in proportion
        to the agent's threads among all live threads, rounded up; None
        without live peers (then only the prefetch limit holds)."""
        threads, claimed = agent.size, len(agent.jobs)
        for uuid, record in queue.dispatchers.items():
            if uuid == self.uuid or record.is_dead(now):
                continue
            for peer in record.agents.values():
                threads += peer.size
                claimed += len(peer.jobs)
        if threads == agent.size:
            return None
        return math.ceil((claimed + len(queue)) * agent.size / threads)

    def _give_back_held(self, queue, key, round, count):
        """Put up to ``count`` of the jobs held for agent ``key``, newest
        first, back in the queue, unstarted and with no attempt counted,
        for any dispatcher to claim."""
        for _ in range(count):
            oid = self.pool.pop_newest_held(key)
            if oid is None:
                return
            round.taken.append((key, oid))
            job = self._jobs_connection().get(oid)
            if job.status == ASSIGNED and job.assignee[0] == self.uuid:
                queue.recover_job(job, round.now, interrupted=False)

    def _adopt_unknown(self, queue, record, round):
        """Take up the jobs the database says this dispatcher holds but this
        process does not know of: claimed or started by a commit that
        reached the server but whose answer was lost (ZEO disconnected in
        tpc_finish), so the process thinks it failed. Without this they
        would wait for a restart with this UUID."""
        known = self.pool.known_oids()
        known.update(round.finished)
        adopted = 0
        for agent in record.agents.values():
            key = (queue.name, agent.name)
            for job in list(agent.jobs.values()):
                oid = job._p_oid
                if oid in known:
                    continue
                adopted += 1
                if job.status == ASSIGNED:
                    round.to_hold.append((key, oid))
                elif job.status in (ACTIVE, CALLBACKS):
                    round.to_start.append((key, oid))
                else:  # its outcome is stored; only the indexes lag
                    queue.reconcile(job, round.now)
        if adopted:
            log.warning(
                "dispatcher %s: took up %d jobs of queue %r that it held without "
                "knowing (a commit whose answer was lost)",
                self.uuid,
                adopted,
                queue.name,
            )

    def _claim_carefully(self):
        """Claim one job per transaction; set aside a job whose claim cannot
        be committed for another reason than a conflict. Never raises: what
        goes wrong here is logged (once per kind, see zasync.logonce) and
        the next round tries again."""
        for name in self.queue_names:
            for _ in range(CAREFUL_CLAIMS):
                peeked = []
                try:
                    oid = transact.run(
                        self._tm, lambda n=name, p=peeked: self._claim_one(n, p)
                    )
                except TRANSIENT_ERRORS:
                    self._abort_round()
                    break  # the next round tries again
                except Exception as exc:
                    self._abort_round()
                    if transact.storage_error(exc):
                        break  # the storage's fault, not the job's: next round
                    if not peeked:
                        careful_log.error(
                            (self.uuid, name, "claim", type(exc).__name__, str(exc)),
                            "dispatcher %s: cannot claim in queue %r: %s: %s",
                            self.uuid,
                            name,
                            type(exc).__name__,
                            exc,
                            exc_info=True,
                        )
                        break
                    reason = f"{type(exc).__name__}: {exc}"
                    try:
                        self._retry_transaction(
                            lambda now, q=name, o=peeked[0], r=reason: self._set_aside(
                                q, o, r
                            )
                        )
                    except Exception as error:
                        self._abort_round()
                        careful_log.error(
                            (self.uuid, name, "set aside", peeked[0]),
                            "dispatcher %s: could not set aside the job of oid "
                            "%r in queue %r (%s: %s), whose claim failed: %s",
                            self.uuid,
                            peeked[0],
                            name,
                            type(error).__name__,
                            error,
                            reason,
                        )
                        break
                    continue
                if oid is None:
                    break
                self.pool.hold((name, MAIN_AGENT), oid)

    def _claim_one(self, queue_name, peeked):
        """Claim the next job of the queue alone (its oid is put in
        ``peeked`` first); None if there is none."""
        now = self.clock()
        queue = get_queues(self._conn, self.database)[queue_name]
        agent = queue.dispatchers[self.uuid].agents[MAIN_AGENT]
        job = queue.peek(agent, now)
        if job is None:
            return None
        peeked[:] = [job._p_oid]
        queue.claim(agent, self.uuid, 1, now, start=0)
        return job._p_oid

    def _set_aside(self, queue_name, oid, reason):
        """Set aside the pending job of ``oid`` (the queue logs it, once)."""
        queue = get_queues(self._conn, self.database)[queue_name]
        queue.set_aside(self._jobs_connection().get(oid), reason)

    def _reconcile(self, finished, now):
        for oid in finished:
            job = self._jobs_connection().get(oid)
            if is_broken(job):  # cannot be loaded: its queue sets it aside
                queue = stored_state(job).get("queue")
                if queue is not None:
                    queue.reconcile(job, now)
                continue
            if job.assignee is None or job.assignee[0] != self.uuid:
                continue  # taken back by a peer meanwhile: not ours to index
            if self.pool.is_running(oid):
                continue  # claimed again since, and running now
            job.queue.reconcile(job, now)

    def _heartbeat(self, queues, now):
        """Ping, and declare dead the peers whose heartbeats stopped.

        Death is judged on evidence every client agrees on and that this
        dispatcher gathered itself, watching: a peer is dead when, in this
        transaction's snapshot, a whole death interval of the storage's
        time (transaction ids, whatever any machine's clock says) has
        passed since the commit of its last heartbeat and since this
        dispatcher began its current watch. A watch begins with a
        heartbeat commit of this dispatcher, after its start and after
        each interruption: a stall of its loop (_loop_stalled), a lost
        server, or its own heartbeats committed far apart (then the
        storage, or this process, was away, and peers could not commit
        theirs either). No peer is judged in such a round, nor while this
        dispatcher cannot commit. A verdict commits only if the peer's
        heartbeat did not change meanwhile (readCurrent).
        """
        tid = self._storage_now(queues)
        judging = self._may_judge(tid)
        if judging:
            self.count("judgements")
        for name in self.queue_names:
            queue = queues[name]
            record = queue.dispatchers.get(self.uuid)
            if record is None:
                # Someone declared us dead and removed us: register again.
                record = queue.dispatchers[self.uuid] = DispatcherRecord(
                    self.uuid, now, self.ping_interval, self.death_interval
                )
                self._record_intervals(record)
                self._set_up_agent(queue, record)
            if record.dead:  # only then: setting it would rewrite the record
                record.dead = False
            record.ping(now)
            self._pinged_beat = record.heartbeat
            if not judging:
                continue
            for uuid, peer in queue.dispatchers.items():
                if uuid == self.uuid or peer.dead:
                    continue
                if not peer.looks_dead(tid, self._watching_since):
                    continue
                age = peer.heartbeat_age(tid)
                peer.heartbeat._p_jar.readCurrent(peer.heartbeat)
                recovered = queue.recover_dispatcher(peer, now)
                peer.dead = True
                self.count("peers declared dead")
                log.warning(
                    "dispatcher %s (%s:%s) missed its heartbeat since %s (by "
                    "its clock; none committed for %.1fs of the storage's "
                    "time, death interval %ss): recovered %d of its jobs",
                    uuid,
                    peer.host,
                    peer.pid,
                    peer.last_ping,
                    age,
                    peer.death_interval,
                    recovered,
                )
        self._judge_at = self._next_judgement(queues, tid, judging)

    def _next_judgement(self, queues, tid, judging):
        """time.monotonic() when the first live peer's death interval, as
        this dispatcher watches it, ends: a round then judges, whatever
        the ping interval. Only the wake-up is reckoned by this process's
        clock (set to the storage's, see _now); the verdict waits for the
        storage's time."""
        if tid is None:
            return None
        now = clock.to_micros(self._now()) / 1e6
        watch = None
        if judging and self._watching_since is not None:
            watch = clock.tid_seconds(self._watching_since)
        soonest = None
        for name in self.queue_names:
            for uuid, peer in queues[name].dispatchers.items():
                if uuid == self.uuid or peer.dead:
                    continue
                beat = peer.heartbeat_tid
                if beat is None:
                    continue
                # A watch that is to begin begins about now.
                start = max(clock.tid_seconds(beat), now if watch is None else watch)
                remaining = start + peer.death_interval - now
                if soonest is None or remaining < soonest:
                    soonest = remaining
        if soonest is None:
            return None
        return time.monotonic() + max(soonest, 0.0) + JUDGE_MARGIN

    def _storage_now(self, queues):
        """The storage's time this round sees, as a transaction id: the
        latest transaction of the snapshot, or, where the storage does not
        say, the latest heartbeat commit it shows (never later than the
        snapshot, so ages are never overstated)."""
        tid = clock.seen_tid(queues._p_jar)
        if tid is not None:
            return tid
        beats = [
            record.heartbeat_tid
            for name in self.queue_names
            for record in queues[name].dispatchers.values()
        ]
        beats = [beat for beat in beats if beat is not None]
        if self._own_beat_tid is not None:
            beats.append(self._own_beat_tid)
        return max(beats, default=None)

    def _may_judge(self, tid):
        """Whether this round may judge peers: its watch is unbroken, and
        the storage's time since its own last heartbeat is no longer than
        WATCH_GAP_PINGS ping intervals."""
        if self._watch_broken or self._watching_since is None:
            return False
        if tid is not None and self._own_beat_tid is not None:
            gap = clock.tid_seconds(tid) - clock.tid_seconds(self._own_beat_tid)
            if gap > WATCH_GAP_PINGS * self.ping_interval:
                self._watch_broken = True
                return False
        return True

    def _heartbeat_committed(self):
        """After a heartbeat's commit: note its tid, and begin a new watch
        if the last was interrupted (or if this heartbeat came too long
        after the previous one, in the storage's time)."""
        beat, self._pinged_beat = self._pinged_beat, None
        tid = None if beat is None else beat._p_serial
        if tid is None or tid == z64:
            return
        previous, self._own_beat_tid = self._own_beat_tid, tid
        self._measure_clock(tid)
        gap = (
            None
            if previous is None
            else clock.tid_seconds(tid) - clock.tid_seconds(previous)
        )
        if (
            self._watch_broken
            or self._watching_since is None
            or (gap is not None and gap > WATCH_GAP_PINGS * self.ping_interval)
        ):
            self._watching_since = tid
            self._watch_broken = False

    def _watch_at_start(self):
        """Listen for puts before the first round: a job queued by another
        process while that round runs must wake it (later rounds keep the
        watch up to date, see _watched_oids)."""
        if self._listening is None:
            return
        self._tm.begin()
        try:
            queues = get_queues(self._conn, self.database)
            watched = set()
            for name in self.queue_names:
                queue = queues[name]
                record = queue.dispatchers[self.uuid]
                watched |= self._watched_oids(queue, record, None)
            self._listening.watch(watched)
        finally:
            abort(self._tm)

    def _watched_oids(self, queue, record, parts):
        """The oids of the objects whose change by another process means
        there may be work for us: what a put changes (see
        IQueue.watched_objects: with peers, only in our own parts and in
        those of peers with no thread free, whose jobs we may take), the
        quotas (room was made) and our agents (resized)."""
        watch = None
        if parts is not None:
            watch = set(parts[self.uuid])
            for uuid, peer in queue.dispatchers.items():
                if uuid in parts and uuid != self.uuid and _busy(peer):
                    watch |= parts[uuid]
        objects = queue.watched_objects(watch)
        objects.extend(record.agents.values())
        if queue.agent_settings is not None:  # agent sizes set for the cluster
            objects.append(queue.agent_settings)
        return {obj._p_oid for obj in objects}


class _RoundErrors:
    """How a dispatcher's loop logs failed rounds without flooding: the
    first failure of each kind (exception class and message) since rounds
    last worked is logged with its traceback, repeats only every
    REPEAT_LOG_EVERY times with their count, and the recovery once (see
    zasync.logonce.UntilRecovered)."""

    def __init__(self, uuid):
        self.uuid = uuid
        self._errors = UntilRecovered(log, every=REPEAT_LOG_EVERY)

    def failed(self, exc, wait):
        self._errors.failed(
            f"{type(exc).__name__}: {exc}",
            logging.ERROR,
            "dispatcher %s: round failed; retrying in %.1fs",
            self.uuid,
            wait,
            exc_info=exc,
        )

    def recovered(self):
        self._errors.recovered("dispatcher %s: rounds work again", self.uuid)


def _busy(record):
    """Whether a dispatcher has no thread free: as many jobs running and
    held as threads."""
    agents = record.agents.values()
    return sum(len(agent.jobs) for agent in agents) >= sum(a.size for a in agents)


def start(db, *, config=None, **options):
    """Start a dispatcher for ``db`` in this process and return it.

    Installs the queues (and any named in ``queues``) if missing, registers
    the dispatcher with an agent in each queue, and starts its threads.
    The options are those of :class:`zasync.config.DispatcherConfig`
    (where each is documented, with its default), as keyword arguments or
    as ``config``; among them:

    ``agent_size`` (threads per queue), when given, wins over the sizes set
    in the database, and ``agent_size_source`` says where it came from (for
    ``zasync settings``: "zope.conf", "command line"; default "agent_size
    argument"); without it the agents take the size set in the database
    for this dispatcher or for the queue (``zasync agents set``), else 3,
    and follow changes of those settings while they run.

    ``poll_interval`` (seconds) bounds how long an idle dispatcher waits
    before looking for work it was not woken for (commits in other
    processes, jobs becoming due); commits in this process wake it at once.
    ``database`` names the database of a multi-database setup that holds
    the queues (default: the main one). Stop it with
    ``dispatcher.stop(timeout)``.
    """
    return Dispatcher(db, config=config, **options).start()
