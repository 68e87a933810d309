"""A dispatcher's worker threads and the jobs it holds for them.

The dispatcher's loop thread claims jobs and hands each to a thread of the
pool; a thread runs it (zasync.runner) and reports it finished, so that the
next round reconciles it. When jobs are short, the loop also claims jobs
ahead, held in a buffer per agent (*prefetch*): a thread that finishes a
job takes the next one from there and starts it in the commit of the one
it finished, without waiting for a round. Several short held jobs may be
taken at once and run in one transaction (group commit, see
zasync.runner.GroupCommit), started together in the commit before.

Keys are (queue name, agent name). Only the loop thread claims, holds and
hands over; worker threads take held jobs, report finished ones and put
back a held job they could not start.
"""

import collections
import itertools
import logging
import threading
import time

from zasync import transact
from zasync.runner import GroupCommit
from zasync.transact import abort

log = logging.getLogger("zasync.dispatcher")

#: How many threads of a pool may be left running jobs that were failed at
#: their time limit (their code goes on until it returns: Python cannot
#: stop a thread) while others take their places. Past it, a timed-out
#: job is still failed, but its thread's slot stays taken until it returns.
MAX_ABANDONED_THREADS = 16


class WorkerPool:
    """Threads that run claimed jobs, made as needed, one job at a time each.

    ``make_runner()`` gives each new thread its JobRunner; ``wake()`` is
    called when a thread finished a job the loop should see soon. ``name``
    (the dispatcher's UUID) names the threads and the log lines. Jobs are
    held ahead (up to ``prefetch`` per agent) while the average job takes
    less than ``prefetch_below`` seconds. Up to ``group_commit`` short jobs
    of one thread, and no more than ``group_commit_window`` seconds of their
    work, commit in one transaction (1 or 0 seconds: each job alone).
    """

    def __init__(
        self,
        make_runner,
        wake,
        name,
        prefetch=16,
        prefetch_below=0.05,
        group_commit=1,
        group_commit_window=0.0,
    ):
        self.make_runner = make_runner
        self.wake = wake
        self.name = name
        self.prefetch = prefetch
        self.prefetch_below = prefetch_below
        #: A round reconciles at once when this many jobs finished.
        self.batch_size = max(1, prefetch // 2)
        #: Which jobs share a transaction; shared by the threads.
        self.group = GroupCommit(size=group_commit, window=group_commit_window)
        #: Set once the dispatcher stops: no held job is taken any more.
        self.stopping = False
        # Until a job has been timed, assume jobs are not short: a new worker
        # then claims no more than it can start, and long jobs spread out.
        self._job_seconds = prefetch_below
        self._buffers = collections.defaultdict(collections.deque)
        self._running = collections.Counter()
        # Oids handed to a thread, or taken from a buffer by one, until they
        # are finished or put back: with the buffers and the finished, what
        # this process knows it holds (see known_oids).
        self._running_oids = set()
        self._track = threading.Lock()
        self._finished = collections.deque()
        self._in_flight = 0
        self._idle = threading.Condition()
        self._tasks = collections.deque()
        self._task_ready = threading.Condition()
        self._threads = []
        self._numbers = itertools.count()
        self._idle_threads = 0
        # Time limits (see watch): {oid: (deadline, runner, thread)}; the
        # agent key of each thread's task; the threads left to their
        # timed-out jobs, and those jobs' oids.
        self._limits = {}
        self._thread_keys = {}
        self._abandoned = set()
        self._abandoned_oids = set()
        self.max_abandoned = MAX_ABANDONED_THREADS

    # -- what the loop thread asks ------------------------------------------

    @property
    def in_flight(self):
        """How many jobs threads are running (or about to)."""
        return self._in_flight

    def idle_threads(self, key, size):
        """How many of the ``size`` threads of agent ``key`` run no job. The
        pool serves that agent from then on (every_agent_has_held_jobs)."""
        self._buffers.setdefault(key, collections.deque())
        return size - self._running[key]

    def is_running(self, oid):
        return oid in self._running_oids

    def jobs_to_hold(self):
        """How many jobs to hold ahead per agent: ``prefetch`` while jobs
        are short, else none."""
        return self.prefetch if self._job_seconds < self.prefetch_below else 0

    def known_oids(self):
        """The oids this process knows it holds: running, held or finished
        but not reconciled yet."""
        with self._track:
            known = set(self._running_oids)
            known.update(self._finished)
            for buffer in self._buffers.values():
                known.update(buffer)
        return known

    def every_agent_has_held_jobs(self):
        """True unless an agent served has no job held for its threads."""
        return all(self._buffers.values())

    # -- held jobs -------------------------------------------------------------

    def hold(self, key, oid):
        """Hold the claimed (ASSIGNED) job ``oid`` for agent ``key``."""
        self._buffers[key].append(oid)

    def pop_held(self, key):
        """The oldest job held for agent ``key``, for the loop to start, or
        None."""
        buffer = self._buffers[key]
        return buffer.popleft() if buffer else None

    def pop_newest_held(self, key):
        """The job held longest ahead for agent ``key`` (the newest), to give
        back to the queue, or None."""
        buffer = self._buffers[key]
        return buffer.pop() if buffer else None

    def put_back(self, key, oid):
        """Hold ``oid`` again, first (a round that took it failed)."""
        self._buffers[key].appendleft(oid)

    def _take_held(self, key):
        """The next job held for this agent's threads, unless stopping."""
        if self.stopping:
            return None
        with self._track:
            try:
                oid = self._buffers[key].popleft()
            except IndexError:
                return None
            self._running_oids.add(oid)
            return oid

    # -- finished jobs ---------------------------------------------------------

    @property
    def finished_count(self):
        return len(self._finished)

    def take_finished(self):
        """The jobs finished since the last call, oldest first."""
        finished = []
        while self._finished:
            finished.append(self._finished.popleft())
        return finished

    def restore_finished(self, oids):
        """Give back what take_finished gave (a round that failed)."""
        self._finished.extendleft(reversed(oids))

    def finished(self):
        """The jobs finished and not taken yet (they stay)."""
        return list(self._finished)

    # -- time limits -----------------------------------------------------------

    def watch(self, runner, oid, deadline):
        """Called by the thread about to run the claimed job ``oid`` under a
        time limit (``deadline``, an aware datetime); the loop is woken to
        take the deadline into its wait."""
        with self._track:
            self._limits[oid] = (deadline, runner, threading.current_thread())
        self.wake()

    def unwatch(self, oid):
        with self._track:
            self._limits.pop(oid, None)

    def next_deadline(self):
        """The earliest deadline of the jobs running, or None."""
        with self._track:
            return min((entry[0] for entry in self._limits.values()), default=None)

    def overdue(self, now):
        """[(oid, runner)] of the jobs running past their deadline at ``now``."""
        with self._track:
            return [
                (oid, entry[1])
                for oid, entry in self._limits.items()
                if entry[0] <= now
            ]

    def abandon(self, oid):
        """The timed-out job ``oid`` was failed: free its thread's slot for
        other jobs, and report it finished (to be reconciled). Its thread
        runs on until the job's code returns, then ends; a new thread takes
        its place when a job is handed over. Up to ``max_abandoned`` such
        threads at a time; past that, False: the slot stays taken."""
        # Both locks: the thread reports its jobs finished under _track and
        # looks whether it was abandoned under _task_ready, so either it is
        # abandoned before it reports the job, or it reported it and is not.
        with self._task_ready, self._track:
            entry = self._limits.pop(oid, None)
            if entry is None or oid not in self._running_oids:
                return False  # its code returned meanwhile: all as usual
            thread = entry[2]
            key = self._thread_keys.get(thread)
            if key is None or thread in self._abandoned:
                return False
            if len(self._abandoned) >= self.max_abandoned:
                log.warning(
                    "dispatcher %s: %d threads still run jobs failed at their "
                    "time limit; the slot of job %r stays taken until it returns",
                    self.name,
                    len(self._abandoned),
                    oid,
                )
                return False
            self._abandoned.add(thread)
            if thread in self._threads:
                self._threads.remove(thread)
            self._abandoned_oids.add(oid)
            self._running_oids.discard(oid)
            self._finished.append(oid)
        with self._idle:
            self._in_flight -= 1
            self._running[key] -= 1
            self._idle.notify_all()
        self.wake()
        return True

    @property
    def abandoned_threads(self):
        """How many threads run on jobs failed at their time limit."""
        return len(self._abandoned)

    def _is_abandoned(self):
        return threading.current_thread() in self._abandoned

    # -- threads ---------------------------------------------------------------

    def hand_over(self, oid, key):
        """Run the job ``oid`` of agent ``key`` in a thread (a new one if
        none is idle)."""
        with self._track:
            self._running_oids.add(oid)
        with self._idle:
            self._in_flight += 1
            self._running[key] += 1
        with self._task_ready:
            self._tasks.append((oid, key))
            if self._idle_threads < len(self._tasks):
                self._start_thread()
            self._task_ready.notify()

    def _start_thread(self):
        """Start a thread, counted idle (``_task_ready`` held)."""
        thread = threading.Thread(
            target=self._work,
            name=f"zasync-worker-{self.name[:8]}-{next(self._numbers)}",
            daemon=True,
        )
        self._threads.append(thread)
        self._idle_threads += 1
        thread.start()

    def wait_idle(self, timeout):
        """Wait up to ``timeout`` seconds until no job runs; True if none does."""
        with self._idle:
            return self._idle.wait_for(lambda: self._in_flight == 0, timeout)

    def stop(self, join_timeout):
        """End the threads once they are done with their jobs; wait up to
        ``join_timeout`` seconds for each."""
        with self._task_ready:
            self._tasks.extend([None] * len(self._threads))
            self._task_ready.notify_all()
            threads = list(self._threads)
        for thread in threads:
            thread.join(join_timeout)

    def _work(self):
        """A worker thread: runs the jobs handed over, one chain at a time.

        It is supervised: whatever escapes a chain (an error outside the
        jobs, in this code, a retry policy or the storage's abort) is
        logged, the chain's jobs are given back (those started to the next
        round, which recovers them through their retry policy, counted as
        an interruption), and a new thread with a new connection takes this
        one's place, so that the counts of idle threads and of jobs in
        flight stay true."""
        runner = self._open_runner()
        died = False
        try:
            while runner is not None:
                with self._task_ready:
                    while not self._tasks:
                        self._task_ready.wait()
                    task = self._tasks.popleft()
                    self._idle_threads -= 1
                    if task is not None:
                        self._thread_keys[threading.current_thread()] = task[1]
                if task is None:
                    return
                chain = [task[0]]  # what this thread runs (see _run_chain)
                try:
                    self._run_chain(runner, *task, chain=chain)
                except BaseException:
                    died = True
                    self._give_back_chain(runner, task[1], chain)
                    # The new thread is counted idle before the job's slot
                    # is freed, so that the loop hands the next job to it.
                    with self._task_ready:
                        if threading.current_thread() in self._threads:
                            # (An abandoned thread was replaced already.)
                            self._threads.remove(threading.current_thread())
                            self._start_thread()
                            self._task_ready.notify()
                finally:
                    with self._task_ready:
                        self._thread_keys.pop(threading.current_thread(), None)
                        abandoned = self._is_abandoned()
                        self._abandoned.discard(threading.current_thread())
                    if abandoned:
                        # Its slot was freed when its job timed out: this
                        # thread ends, now that the job's code returned.
                        died = True
                    else:
                        if not died:
                            with self._task_ready:
                                self._idle_threads += 1
                        with self._idle:
                            self._in_flight -= 1
                            self._running[task[1]] -= 1
                            self._idle.notify_all()
                    self.wake()
                if died:
                    return
        finally:
            if runner is not None:
                self._close_runner(runner)

    def _open_runner(self):
        """The thread's JobRunner; while none can be made (the storage is
        unreachable), retry with a growing pause, logging once. None if the
        pool stops meanwhile."""
        failures = 0
        while True:
            try:
                return self.make_runner()
            except Exception:
                if not failures:
                    log.exception(
                        "dispatcher %s: a worker thread could not open its "
                        "connection; it tries again",
                        self.name,
                    )
                failures += 1
                if self.stopping:
                    return None
                time.sleep(transact.backoff(failures, base=0.05, cap=5.0))

    def _close_runner(self, runner):
        try:
            runner.close()
        except Exception:
            log.warning(
                "dispatcher %s: a worker thread could not close its connection",
                self.name,
                exc_info=True,
            )

    def _give_back_chain(self, runner, key, chain):
        """A worker thread died running ``chain`` (the jobs it was running,
        and those it took to run next): the running ones are reported
        finished, so that the next round recovers them (Queue.reconcile: an
        ACTIVE job as interrupted, through its retry policy); those taken to
        run next are held again for the other threads."""
        log.exception(
            "dispatcher %s: worker thread %s died running jobs %r; a new "
            "thread takes its place, and the jobs are recovered through their "
            "retry policy (an interruption)",
            self.name,
            threading.current_thread().name,
            chain,
        )
        running = [oid for oid in chain if oid not in self._abandoned_oids]
        try:
            taken, _ = runner.taken_next()
        except BaseException:
            taken = []
        taken = [oid for oid in taken if oid not in running]
        with self._track:
            self._finished.extend(oid for oid in running if oid not in self._finished)
            self._running_oids.difference_update(running)
            for oid in reversed(taken):
                if oid in self._running_oids:
                    self._running_oids.discard(oid)
                    if not self.stopping:
                        self._buffers[key].appendleft(oid)

    def _run_chain(self, runner, oid, key, chain=None):
        """Run a job, then the jobs held for its agent, while there are any
        (several at a time when they may share a transaction). ``chain``,
        a list, is kept holding the jobs this thread runs, for
        _give_back_chain."""
        if chain is None:
            chain = []
        ready = [oid]
        while ready:
            chain[:] = ready
            started = time.monotonic()
            try:
                taken, activated = runner.run_group(
                    ready,
                    lambda: None if self._is_abandoned() else self._take_held(key),
                    self.group,
                )
            except Exception:
                log.exception(
                    "dispatcher %s: worker failed on jobs %r", self.name, ready
                )
                abort(runner.tm)
                # Jobs it took to run next are still ours to run or put back.
                taken, activated = runner.taken_next()
            # A moving average of job run times decides whether to hold
            # jobs for threads: worth it for short jobs only.
            keep = 0.9 ** len(ready)
            self._job_seconds = keep * self._job_seconds + (1 - keep) * (
                (time.monotonic() - started) / len(ready)
            )
            with self._track:
                # A job abandoned at its time limit was reported already.
                self._finished.extend(
                    oid for oid in ready if oid not in self._abandoned_oids
                )
                self._abandoned_oids.difference_update(ready)
                self._running_oids.difference_update(ready)
            chain[:] = []
            if len(self._finished) >= self.batch_size or not self._buffers[key]:
                self.wake()
            rest = [oid for oid in taken if oid not in activated]
            if rest and self._is_abandoned():
                with self._track:  # for the thread that took this one's place
                    for oid in reversed(rest):
                        if not self.stopping:
                            self._buffers[key].appendleft(oid)
                        self._running_oids.discard(oid)
                rest = []
            if rest:
                activated = [*activated, *runner.activate_alone(rest)]
                unstarted = [oid for oid in rest if oid not in activated]
                with self._track:
                    for oid in reversed(unstarted):
                        if not self.stopping:
                            self._buffers[key].appendleft(oid)
                        self._running_oids.discard(oid)
            ready = [oid for oid in taken if oid in activated]
