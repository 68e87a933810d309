"""The dispatcher: claims jobs for its agents and runs them in threads.

One dispatcher per process and database. Its loop thread heartbeats,
reconciles the jobs its workers finished, recovers the jobs of dead peers
and claims work for idle threads, all in one transaction per round, so the
cost of the bookkeeping is shared by every job of the round. Each worker
thread runs one job at a time with its own connection and transaction
manager (see zasync.runner).
"""

import collections
import logging
import os
import random
import socket
import threading
import time
import uuid as uuidlib

import transaction
from zope.interface import implementer

from zasync import clock as clocklib
from zasync import signals, wakeup
from zasync.interfaces import IDispatcher
from zasync.queue import get_queues
from zasync.registry import (
    Agent,
    DispatcherRecord,
    check_agent_size,
    configured_agent_size,
    threads_text,
)
from zasync.runner import JobRunner, jobs_connection
from zasync.status import ACTIVE, ASSIGNED, CALLBACKS
from zasync.transact import TRANSIENT_ERRORS, ClientDisconnected, abort

log = logging.getLogger("zasync.dispatcher")

UUID_ENVIRONMENT = ("ZASYNC_UUID", "ZC_ASYNC_UUID")


def read_uuid_file(path):
    """The UUID kept in ``path``, creating the file with a new one if missing.

    The format is zc.async's: comment lines start with '#', the first other
    line is the UUID, so files of old deployments keep working.
    """
    try:
        with open(path) as f:
            for line in f:
                line = line.strip()
                if line and not line.startswith("#"):
                    try:
                        return str(uuidlib.UUID(line))
                    except ValueError:
                        raise ValueError(
                            f"{path} should hold a UUID, but has {line!r}; "
                            f"delete the file to get a new one"
                        ) from None
    except FileNotFoundError:
        pass
    value = str(uuidlib.uuid4())
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    with open(path, "w") as f:
        f.write(
            "# The zasync dispatcher UUID of this process. Keep it: a process\n"
            "# restarted with the same UUID recovers its unfinished jobs at once.\n"
            "# Give every process its own file.\n"
            f"{value}\n"
        )
    return value


def dispatcher_uuid(value=None):
    """The UUID for this process's dispatcher.

    In order: ``value``; the file named by ``ZASYNC_UUID`` (or, for old
    deployments, ``ZC_ASYNC_UUID``), created if missing; else a new random
    UUID, which means a restarted process cannot recognise its own jobs and
    they are recovered only when its old heartbeat expires.
    """
    if value is not None:
        return str(uuidlib.UUID(str(value)))
    for name in UUID_ENVIRONMENT:
        path = os.environ.get(name)
        if path:
            return read_uuid_file(path)
    log.info("no ZASYNC_UUID file set: using a new dispatcher UUID for this process")
    return str(uuidlib.uuid4())


@implementer(IDispatcher)
class Dispatcher:
    """See IDispatcher. Use :func:`zasync.start` to make one."""

    def __init__(
        self,
        db,
        uuid=None,
        queues=("",),
        agent_size=None,
        agent_filter=None,
        poll_interval=1.0,
        ping_interval=30,
        death_interval=300,
        clock=clocklib.utcnow,
        batch_window=0.005,
        prefetch=16,
        prefetch_below=0.05,
        database=None,
        agent_size_source=None,
    ):
        if isinstance(queues, str):
            queues = (queues,)
        if death_interval <= ping_interval:
            raise ValueError(
                f"death_interval ({death_interval}s) must be longer than "
                f"ping_interval ({ping_interval}s), or live dispatchers would "
                f"be declared dead"
            )
        self.db = db
        self.database = database
        self.uuid = dispatcher_uuid(uuid)
        self.queue_names = tuple(queues)
        # An explicit size wins over the database's settings, and says
        # where it came from; None follows the settings (zasync.registry).
        if agent_size is not None:
            check_agent_size(agent_size)  # refused now, not in the loop
            agent_size_source = agent_size_source or "agent_size argument"
        else:
            agent_size_source = None
        self.agent_size = agent_size
        self.agent_size_source = agent_size_source
        # {queue name: (size, source)} of the agents as registered and
        # followed since; read by other threads for display only.
        self.agent_sizes = {}
        self.agent_filter = agent_filter
        self.poll_interval = poll_interval
        self.ping_interval = ping_interval
        self.death_interval = death_interval
        self.clock = clock
        self.running = False
        self.abandoned = False
        self.batch_window = batch_window
        self.batch_size = max(1, prefetch // 2)
        self.prefetch = prefetch
        self.prefetch_below = prefetch_below
        # Until a job has been timed, assume jobs are not short: a new worker
        # then claims no more than it can start, and long jobs spread out.
        self._job_seconds = prefetch_below
        self._buffers = collections.defaultdict(collections.deque)
        self._running = collections.Counter()
        # Oids handed to a thread, or taken from a buffer by one, until they
        # are finished or put back: with the buffers and the finished, what
        # this process knows it holds (see _adopt_unknown).
        self._running_oids = set()
        self._track = threading.Lock()
        self._audit_due = False
        self.stats = collections.Counter()
        self._stats_lock = threading.Lock()
        self._stopping = False
        self._wake = threading.Event()
        self._finished = collections.deque()
        self._in_flight = 0
        self._idle = threading.Condition()
        self._tasks = collections.deque()
        self._task_ready = threading.Condition()
        self._threads = []
        self._idle_threads = 0
        self._loop_thread = None
        self._last_ping = None
        self._tm = transaction.TransactionManager(explicit=True)
        self._conn = None
        self._listening = None

    def __repr__(self):
        return f"<Dispatcher {self.uuid} queues={list(self.queue_names)}>"

    def _jobs_connection(self):
        return jobs_connection(self._conn, self.database)

    def count(self, what, n=1):
        with self._stats_lock:
            self.stats[what] += n

    def transient_error(self, exc):
        """Count a transaction aborted by a conflict or a lost server. After
        a lost server, the next round looks for jobs we hold without knowing
        it: a commit may have reached the server without its answer."""
        if isinstance(exc, ClientDisconnected):
            self.count("disconnects")
            self._audit_due = True
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
        # invalidations, PostgreSQL NOTIFY); see zasync.signals.
        self._listening = signals.listen(self._jobs_connection().db(), self.wake)
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
        agent = record.agents.get("main")
        if agent is None:
            record.agents["main"] = Agent("main", size, self.agent_filter)
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
        agent = record.agents.get("main")
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

    def _register(self, now):
        queues = get_queues(self._conn, self.database)
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
            record.ping_interval = self.ping_interval
            record.death_interval = self.death_interval
            # An explicit size of this process wins; else the size set in
            # the database (for this UUID, or for the queue) applies, so a
            # restart keeps an operator's change.
            self._set_up_agent(queue, record)
            self._forget_long_dead(queue, now)
        # The first round heartbeats and looks for dead peers at once.
        self._last_ping = None

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
        for attempt in range(100):
            self._tm.begin()
            try:
                result = work(self.clock())
                self._tm.commit()
                return result
            except TRANSIENT_ERRORS:
                abort(self._tm)
                self.count("conflicts")
                threading.Event().wait(random.uniform(0, 0.01 * min(attempt + 1, 20)))
            except BaseException:
                abort(self._tm)
                raise
        raise RuntimeError("zasync: could not commit after 100 conflicts")

    def wake(self):
        self._wake.set()

    def stop(self, timeout=30):
        if not self.running:
            return True
        self._stopping = True
        self._wake.set()
        with self._idle:
            finished = self._idle.wait_for(lambda: self._in_flight == 0, timeout)
        if not finished:
            log.warning(
                "dispatcher %s: %d jobs still running after %ss; putting them back",
                self.uuid,
                self._in_flight,
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
        with self._task_ready:
            self._tasks.extend([None] * len(self._threads))
            self._task_ready.notify_all()
        for thread in self._threads:
            thread.join(0.5 if self.abandoned else 5)
        if not loop_stuck:
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
        self._reconcile(list(self._finished), now)
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
        failures = 0
        while not self._stopping or (self._in_flight and not self.abandoned):
            try:
                wait = self._round()
                failures = 0
            except TRANSIENT_ERRORS as exc:
                abort(self._tm)
                self.transient_error(exc)
                if isinstance(exc, ClientDisconnected) and not failures:
                    log.warning(
                        "dispatcher %s: lost the storage server (%s); waiting "
                        "for it to come back",
                        self.uuid,
                        exc,
                    )
                failures += 1
                wait = random.uniform(
                    0, min(0.002 * 2 ** min(failures, 20), self.poll_interval)
                )
            except Exception:
                abort(self._tm)
                failures += 1
                wait = min(0.1 * 2 ** min(failures, 20), 10.0)
                log.exception(
                    "dispatcher %s: round failed; retrying in %.1fs", self.uuid, wait
                )
                if failures >= 2:
                    # Maybe one job cannot be stored any more: find it and
                    # set it aside, so that it does not stop all the others.
                    self._claim_carefully()
            if self._stopping and not self._in_flight:
                break
            if wait > 0 and not self._finished:
                self._wake.wait(wait)
            self._wake.clear()
            self._gather_finished()

    def _gather_finished(self):
        """Let a round serve several finished jobs at once.

        While other jobs are still running, wait a moment for them: one
        round then reconciles and replaces several jobs in one commit. An
        idle dispatcher (nothing running) never waits here, so pickup
        latency is unaffected.
        """
        if not self._finished or self.batch_window <= 0:
            return
        deadline = time.monotonic() + self.batch_window
        while (
            self._in_flight
            and len(self._finished) < self.batch_size
            and all(self._buffers.values())  # no thread is about to run dry
        ):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            self._wake.wait(remaining)
            self._wake.clear()

    def _round(self):
        """One transaction: reconcile, heartbeat, recover peers, claim.
        Returns how long to sleep before the next round."""
        now = self.clock()
        # Only jobs whose workers committed before this transaction begins:
        # reconciling a later commit from an older snapshot would conflict.
        finished = self._take_finished()
        taken = []  # (key, oid) taken from the buffers, to restore on failure
        self._tm.begin()
        try:
            self._reconcile(finished, now)
            queues = get_queues(self._conn, self.database)
            audit = self._audit_due
            pinged = self._last_ping is None or (
                (now - self._last_ping).total_seconds() >= self.ping_interval
            )
            if pinged:
                self._heartbeat(queues, now)
                audit = True
            self._audit_due = False
            to_start, to_hold = [], []
            due = None
            if not self._stopping:
                for name in self.queue_names:
                    queue = queues[name]
                    record = queue.dispatchers[self.uuid]
                    self._follow_settings(queue, record)
                    if audit:
                        self._adopt_unknown(
                            queue, record, finished, now, to_start, to_hold
                        )
                    for agent in record.agents.values():
                        key = (name, agent.name)
                        self._claim_for(
                            queue, agent, key, now, taken, to_start, to_hold
                        )
                    next_due = queue.next_due(now)
                    if next_due is not None and (due is None or next_due < due):
                        due = next_due
            self._tm.commit()
        except BaseException:
            self._finished.extendleft(reversed(finished))
            for key, oid in reversed(taken):
                self._buffers[key].appendleft(oid)
            if audit:
                self._audit_due = True
            raise
        self.count("rounds")
        if pinged:
            # Only once stored: a heartbeat lost to a conflict is retried in
            # the next round, not a whole ping interval later.
            self._last_ping = now
        for key, oid in to_hold:
            self._buffers[key].append(oid)
        for key, oid in to_start:
            self._hand_over(oid, key)
        wait = self.poll_interval
        if due is not None:
            wait = min(wait, max((due - self.clock()).total_seconds(), 0.001))
        if self._last_ping is not None:
            until_ping = (
                self.ping_interval - (self.clock() - self._last_ping).total_seconds()
            )
            wait = min(wait, max(until_ping, 0.001))
        return wait

    def _claim_for(self, queue, agent, key, now, taken, to_start, to_hold):
        """Start jobs for the agent's idle threads, held ones first, and
        claim more to hold for threads that are about to finish."""
        buffer = self._buffers[key]
        idle = agent.size - self._running[key]
        idle -= sum(1 for k, _ in to_start if k == key)  # adopted ones
        while idle > 0 and buffer:
            oid = buffer.popleft()
            taken.append((key, oid))
            job = self._jobs_connection().get(oid)
            if job.assignee is None or job.assignee[0] != self.uuid:
                continue  # taken back by a peer meanwhile
            if job.status == ASSIGNED:
                queue.activate(job, now)
            elif job.status not in (ACTIVE, CALLBACKS):
                continue
            # An ACTIVE one was started by a commit whose answer was lost:
            # it is ours, and runs now, its attempt counted already.
            to_start.append((key, oid))
            idle -= 1
        held = self.prefetch if self._job_seconds < self.prefetch_below else 0
        wanted = agent.size + held - len(agent.jobs)
        if wanted <= 0:
            return
        start = max(idle, 0)
        for index, job in enumerate(queue.claim(agent, self.uuid, wanted, now, start)):
            (to_start if index < start else to_hold).append((key, job._p_oid))

    def _adopt_unknown(self, queue, record, finished, now, to_start, to_hold):
        """Take up the jobs the database says this dispatcher holds but this
        process does not know of: claimed or started by a commit that
        reached the server but whose answer was lost (ZEO disconnected in
        tpc_finish), so the process thinks it failed. Without this they
        would wait for a restart with this UUID."""
        with self._track:
            known = set(self._running_oids)
            known.update(finished)
            known.update(self._finished)
            for buffer in self._buffers.values():
                known.update(buffer)
        adopted = 0
        for agent in record.agents.values():
            key = (queue.name, agent.name)
            for job in list(agent.jobs.values()):
                oid = job._p_oid
                if oid in known:
                    continue
                adopted += 1
                if job.status == ASSIGNED:
                    to_hold.append((key, oid))
                elif job.status in (ACTIVE, CALLBACKS):
                    to_start.append((key, oid))
                else:  # its outcome is stored; only the indexes lag
                    queue.reconcile(job, now)
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
        be committed for another reason than a conflict."""
        for name in self.queue_names:
            for _ in range(1000):
                now = self.clock()
                self._tm.begin()
                queue = get_queues(self._conn, self.database)[name]
                agent = queue.dispatchers[self.uuid].agents["main"]
                job = queue.peek(agent, now)
                if job is None:
                    abort(self._tm)
                    break
                oid = job._p_oid
                try:
                    queue.claim(agent, self.uuid, 1, now, start=0)
                    self._tm.commit()
                except TRANSIENT_ERRORS:
                    abort(self._tm)
                    continue
                except Exception as exc:
                    abort(self._tm)
                    reason = f"{type(exc).__name__}: {exc}"
                    self._retry_transaction(
                        lambda now, q=name, o=oid, r=reason: self._set_aside(q, o, r)
                    )
                    continue
                self._buffers[(name, agent.name)].append(oid)

    def _set_aside(self, queue_name, oid, reason):
        queue = get_queues(self._conn, self.database)[queue_name]
        job = self._jobs_connection().get(oid)
        queue.set_aside(job, reason)
        log.error(
            "job %s (%s) cannot be claimed and was set aside (%s): %s",
            job.id,
            job.callable_name,
            job.log_context,
            reason,
        )

    def _take_finished(self):
        finished = []
        while self._finished:
            finished.append(self._finished.popleft())
        return finished

    def _reconcile(self, finished, now):
        for oid in finished:
            job = self._jobs_connection().get(oid)
            if job.assignee is None or job.assignee[0] != self.uuid:
                continue  # taken back by a peer meanwhile: not ours to index
            if oid in self._running_oids:
                continue  # claimed again since, and running now
            job.queue.reconcile(job, now)

    def _heartbeat(self, queues, now):
        watched = set()
        for name in self.queue_names:
            queue = queues[name]
            record = queue.dispatchers.get(self.uuid)
            if record is None:
                # Someone declared us dead and removed us: register again.
                record = queue.dispatchers[self.uuid] = DispatcherRecord(
                    self.uuid, now, self.ping_interval, self.death_interval
                )
                self._set_up_agent(queue, record)
            if record.dead:  # only then: setting it would rewrite the record
                record.dead = False
            record.ping(now)
            self._watch(queue, record, watched)
            for uuid, peer in queue.dispatchers.items():
                if uuid != self.uuid and not peer.dead and peer.is_dead(now):
                    recovered = queue.recover_dispatcher(peer, now)
                    peer.dead = True
                    log.warning(
                        "dispatcher %s (%s:%s) missed its heartbeat since %s: "
                        "recovered %d of its jobs",
                        uuid,
                        peer.host,
                        peer.pid,
                        peer.last_ping,
                        recovered,
                    )
        if self._listening is not None:
            self._listening.watch(watched)

    @staticmethod
    def _watch(queue, record, watched):
        """Add the oids of the objects whose change by another process means
        there may be work for us: the pending count (a job was queued), the
        quotas (room was made) and our agents (resized)."""
        objects = queue.watched_objects()
        objects.extend(record.agents.values())
        if queue.agent_settings is not None:  # agent sizes set for the cluster
            objects.append(queue.agent_settings)
        watched.update(obj._p_oid for obj in objects)

    # -- worker threads ----------------------------------------------------

    def _hand_over(self, oid, key):
        with self._track:
            self._running_oids.add(oid)
        with self._idle:
            self._in_flight += 1
            self._running[key] += 1
        with self._task_ready:
            self._tasks.append((oid, key))
            if self._idle_threads < len(self._tasks):
                thread = threading.Thread(
                    target=self._work,
                    name=f"zasync-worker-{self.uuid[:8]}-{len(self._threads)}",
                    daemon=True,
                )
                self._threads.append(thread)
                self._idle_threads += 1
                thread.start()
            self._task_ready.notify()

    def _take_held(self, key):
        """The next job held for this agent's threads, unless stopping."""
        if self._stopping:
            return None
        with self._track:
            try:
                oid = self._buffers[key].popleft()
            except IndexError:
                return None
            self._running_oids.add(oid)
            return oid

    def _work(self):
        runner = JobRunner(self)
        try:
            while True:
                with self._task_ready:
                    while not self._tasks:
                        self._task_ready.wait()
                    task = self._tasks.popleft()
                    self._idle_threads -= 1
                if task is None:
                    return
                try:
                    self._run_chain(runner, *task)
                finally:
                    with self._task_ready:
                        self._idle_threads += 1
                    with self._idle:
                        self._in_flight -= 1
                        self._running[task[1]] -= 1
                        self._idle.notify_all()
                    self._wake.set()
        finally:
            runner.close()

    def _run_chain(self, runner, oid, key):
        """Run a job, then the jobs held for its agent, while there are any."""
        while oid is not None:
            started = time.monotonic()
            try:
                next_oid, activated = runner.run(oid, lambda: self._take_held(key))
            except Exception:
                log.exception("dispatcher %s: worker failed on job %r", self.uuid, oid)
                abort(runner.tm)
                # A job it took to run next is still ours to run or put back.
                next_oid, activated = runner.taken_next()
            # A moving average of job run times decides whether to hold
            # jobs for threads: worth it for short jobs only.
            self._job_seconds = 0.9 * self._job_seconds + 0.1 * (
                time.monotonic() - started
            )
            with self._track:
                self._finished.append(oid)
                self._running_oids.discard(oid)
            if len(self._finished) >= self.batch_size or not self._buffers[key]:
                self._wake.set()
            if (
                next_oid is not None
                and not activated
                and not runner.activate_alone(next_oid)
            ):
                with self._track:
                    if not self._stopping:
                        self._buffers[key].appendleft(next_oid)
                    self._running_oids.discard(next_oid)
                next_oid = None
            oid = next_oid


def start(
    db,
    poll_interval=1.0,
    agent_size=None,
    queues=("",),
    uuid=None,
    agent_filter=None,
    ping_interval=30,
    death_interval=300,
    clock=clocklib.utcnow,
    database=None,
    agent_size_source=None,
):
    """Start a dispatcher for ``db`` in this process and return it.

    Installs the queues (and any named in ``queues``) if missing, registers
    the dispatcher with an agent in each queue, and starts its threads.
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
    return Dispatcher(
        db,
        uuid=uuid,
        queues=queues,
        agent_size=agent_size,
        agent_filter=agent_filter,
        poll_interval=poll_interval,
        ping_interval=ping_interval,
        death_interval=death_interval,
        clock=clock,
        database=database,
        agent_size_source=agent_size_source,
    ).start()
