"""Queues: pending jobs in run order, per-status indexes, quotas, dispatchers."""

import datetime
import heapq
import itertools
import logging
import operator
import threading

import persistent
from BTrees.Length import Length
from BTrees.LOBTree import LOBTree
from BTrees.OOBTree import OOBTree
from persistent.mapping import PersistentMapping
from ZODB.POSException import ConflictError
from zope.interface import implementer

from zasync import clock, dependencies, keys, wakeup
from zasync.config import DEFAULT_QUEUE, queue_label

# Failures stored by earlier versions name these here: the names stay.
from zasync.exceptions import JobInterrupted as JobInterrupted
from zasync.exceptions import JobTimedOut as JobTimedOut
from zasync.interfaces import IQueue, IQueues
from zasync.job import Job, new_job_id
from zasync.keys import PRIORITY_LIMIT
from zasync.loading import (
    STORAGE_TROUBLE,
    broken_reason,
    is_broken,
    job_problem,
    readable,
    stored_id,
    stored_state,
)
from zasync.logonce import LogOnce
from zasync.quota import Quotas
from zasync.status import (
    ACTIVE,
    ASSIGNED,
    CALLBACKS,
    COMPLETED,
    NEW,
    PENDING,
    WAITING,
    Status,
)
from zasync.storable import BadJobError, check_value

ROOT_KEY = "zasync"

# The index keys live in zasync.keys; their old names here stay importable.
_ID_BITS = keys.ID_BITS
_TIME_BITS = keys.TIME_BITS
_LEVEL_SHIFT = keys.LEVEL_SHIFT
_TIME_MASK = keys.TIME_MASK
_pending_key = keys.run_order_key
_key_begin = keys.begin_of
_level_end = keys.level_end
_next_level = keys.next_level
_completed_key = keys.completion_key

log = logging.getLogger("zasync.job")
# Jobs set aside are logged by the dispatcher's logger, each once.
aside_log = LogOnce(logging.getLogger("zasync.dispatcher"))

# How many jobs an agent filter may turn down in one lane before the claim
# moves on; bounds the cost of a claim when a filter rejects most jobs.
FILTER_SCAN_LIMIT = 200

# The inbox (see Inbox): how many shards a new queue has, how many jobs a
# shard holds before a put files them in the run order itself (no
# dispatcher has for a while), and how many make a dispatcher's round file
# them even when it claims nothing.
INBOX_SHARDS = 16
INBOX_SPILL = 100
INBOX_DRAIN = 50

# The run order is kept in parts, by job id as the inbox shards are (shard
# index modulo RUN_PARTS), each part with lanes of its own, so that
# dispatchers claiming at once can each prefer their own parts: they then
# take jobs from different inbox shards and different lane buckets, and
# their claims merge instead of conflicting on the head of one lane.
RUN_PARTS = 4
# A dispatcher takes a job from a part it does not prefer when its own have
# none ready and that job has been due this long (microseconds), so that the
# peer whose part it is, if idle, takes it first; or, although its own have
# one ready, when that job's priority is higher or it has been due this much
# longer: a busy peer's part does not wait behind a free dispatcher's.
SPREAD_SLACK_US = 250_000


class _Inline(threading.local):
    """Set by zasync.testing.inline(): put() in this thread runs jobs at
    once instead of queuing them. Per thread, so that a test's inline block
    does not change what a dispatcher's threads (or other tests') do."""

    on = False


inline = _Inline()


def _lane_key(quota_names):
    return tuple(sorted(set(quota_names)))


def _preferred(best, other, now_us):
    """Of the best ready job of the preferred parts and that of the
    others, each a (key, job, inbox index) or None, the one to claim."""
    if best is None:
        if other is not None and keys.begin_of(other[0]) + SPREAD_SLACK_US > now_us:
            return None  # left to its peer for now
        return other
    if other is not None:
        ours, theirs = best[0], other[0]
        if keys.level_of(theirs) < keys.level_of(ours):
            return other
        if keys.level_of(theirs) == keys.level_of(ours) and keys.begin_of(
            theirs
        ) + SPREAD_SLACK_US < keys.begin_of(ours):
            return other
    return best


def _earlier(found, best):
    return best is None or found[0] < best[0]


def _first_ready(lane, now_us, agent):
    """The first job of a lane that may start now and that ``agent`` accepts.

    Inside one priority level the first key is the earliest due, so a level
    whose first job is not due yet is skipped whole.
    """
    try:
        key = lane.minKey()
    except ValueError:
        return None
    while key is not None:
        if keys.begin_of(key) <= now_us:
            candidates = lane.items(min=key, max=keys.level_end(key, now_us))
            for seen, (candidate, job) in enumerate(candidates, 1):
                # A job that cannot be loaded is taken, to be set aside.
                if agent is None or is_broken(job) or agent.accepts(job):
                    return candidate, job
                if seen >= FILTER_SCAN_LIMIT:
                    break
        try:
            key = lane.minKey(keys.next_level(key))
        except ValueError:
            key = None
    return None


class Inbox(persistent.Persistent):
    """Jobs put in a queue and not filed in its lanes yet: part of the run
    order, unsorted.

    ``entries`` is a tuple of ``(pending_key, lane key, job)`` in arrival
    order. A put appends one entry; a claim takes the entries of the jobs
    it claims; a dispatcher's round files a shard that grew (next_due), and
    a put a full one, in the lanes, taking all its entries. The state is
    this one tuple, so that concurrent changes merge
    (``_p_resolveConflict``, after zc.queue): appends and takes combine,
    unless both transactions took the same entry (two dispatchers claiming
    or filing the same job: one of them must try again) or appended the
    same one. Entries are told apart by their key, an integer that includes
    the job's id, never by comparing persistent references. A queue's
    shards are fixed when it is made and never replaced, so emptying one
    changes no parent object (unlike zc.queue's CompositeQueue buckets, and
    unlike a BTree bucket, which cannot merge an insert while it is emptied
    or split).
    """

    entries = ()

    def __len__(self):
        return len(self.entries)

    def append(self, key, lane_key, job):
        self.entries += ((key, lane_key, job),)

    def take(self):
        """Remove every entry and return them (writes only if any)."""
        entries = self.entries
        if entries:
            self.entries = ()
        return entries

    def find(self, job_id):
        """The entry of the job with this id, or None (reads only)."""
        for entry in self.entries:
            if keys.id_of(entry[0]) == job_id:
                return entry
        return None

    def discard(self, key):
        """Remove the entry of ``key``; False (and no write) if missing."""
        kept = tuple(entry for entry in self.entries if entry[0] != key)
        if len(kept) == len(self.entries):
            return False
        self.entries = kept
        return True

    def _p_resolveConflict(self, old, committed, new):
        others = set(old) | set(committed) | set(new)
        others.discard("entries")
        for name in others:
            if not (old.get(name) == committed.get(name) == new.get(name)):
                raise ConflictError("inbox attributes changed concurrently")
        before = old.get("entries", ())
        theirs, mine = committed.get("entries", ()), new.get("entries", ())
        old_keys = {entry[0] for entry in before}
        their_keys = {entry[0] for entry in theirs}
        my_keys = {entry[0] for entry in mine}
        if (old_keys - their_keys) & (old_keys - my_keys):
            raise ConflictError("two transactions took the same job from the inbox")
        if (their_keys - old_keys) & (my_keys - old_keys):
            raise ConflictError("two transactions put the same job in the inbox")
        taken_by_me = old_keys - my_keys
        resolved = dict(committed)
        resolved["entries"] = tuple(
            entry for entry in theirs if entry[0] not in taken_by_me
        ) + tuple(entry for entry in mine if entry[0] not in old_keys)
        return resolved

    def __repr__(self):
        return f"<Inbox of {len(self.entries)} jobs>"


class RunPart(persistent.Persistent):
    """The indexes of one run part of a queue (see RUN_PARTS): its lanes
    (quota names -> {run-order key: job}), its jobs by id, and its
    completed jobs (completion key -> job, see zasync.keys). Each tree
    belongs to one part, so that dispatchers preferring different parts
    write different trees: a bucket split in one (which BTrees cannot
    merge) does not conflict with the others."""

    def __init__(self, lanes=None, jobs=None, succeeded=None, failed=None):
        self.lanes = OOBTree() if lanes is None else lanes
        self.jobs = LOBTree() if jobs is None else jobs
        self.succeeded = OOBTree() if succeeded is None else succeeded
        self.failed = OOBTree() if failed is None else failed

    def __repr__(self):
        return f"<RunPart of {len(self.jobs)} jobs>"


class _FirstPart:
    """Run part 0 of a queue stored before there were parts: its own
    trees, until it makes its parts (read only, not stored)."""

    def __init__(self, queue):
        self.lanes = queue._lanes
        self.jobs = queue._jobs
        self.succeeded = queue._succeeded
        self.failed = queue._failed


@implementer(IQueue)
class Queue(persistent.Persistent):
    """See IQueue."""

    def __init__(self, name=DEFAULT_QUEUE):
        self.name = name
        self.quotas = Quotas()
        self.dispatchers = OOBTree()
        # The jobs the queue knows, its run order and its completed jobs,
        # in RUN_PARTS parts by job id (see RunPart). The lanes: one per
        # combination of quotas, so a claim skips a full quota's jobs at
        # once, keyed by run order (see zasync.keys: priority, begin_after,
        # id packed in one integer). Completed jobs: newest first. Part 0's
        # trees are also the queue's own _jobs, _lanes, _succeeded and
        # _failed, where a queue stored before there were parts keeps all.
        self._parts = tuple(RunPart() for _ in range(RUN_PARTS))
        first = self._parts[0]
        self._jobs, self._lanes = first.jobs, first.lanes
        self._succeeded, self._failed = first.succeeded, first.failed
        self._pending_count = Length()
        self._succeeded_count = Length()
        self._failed_count = Length()
        # Jobs in no lane and on no agent, waiting for queued sub-jobs:
        # serial/parallel parents and jobs whose callbacks were queued.
        self._waiting = LOBTree()
        self._unique = OOBTree()  # unique_key -> pending or running job
        self._live = LOBTree()  # job id -> live annotations
        self._inbox = tuple(Inbox() for _ in range(INBOX_SHARDS))
        self._dependents = OOBTree()

    _aside = None
    # (dependency id, dependent id) -> the WAITING dependent (see
    # zasync.dependencies); made at the first put with depends_on in a
    # queue stored before there were dependencies.
    _dependents = None
    # A queue stored before there were run parts makes them at its first
    # put or filing (see _part).
    _parts = None
    # Jobs put and not filed in the lanes yet, sharded by job id (see
    # Inbox). A queue stored before there was an inbox has none until its
    # first put makes it.
    _inbox = ()
    #: The agent sizes set for this queue's dispatchers, cluster-wide
    #: (zasync.registry.AgentSettings), or None until one is set: see
    #: zasync.registry.agent_settings().
    agent_settings = None
    #: (since, by) while paused, else None (see IQueue.pause).
    paused = None
    # See IQueue.default_timeout; a property, so that it is validated.
    _default_timeout = None

    @property
    def default_timeout(self):
        return self._default_timeout

    @default_timeout.setter
    def default_timeout(self, value):
        if value is not None:
            value = clock.duration(
                value, "default_timeout (a time limit, or None: none)", positive=True
            )
        if value != self._default_timeout:
            self._default_timeout = value

    #: How long the queue keeps completed jobs, cluster-wide
    #: (zasync.retention.RetentionSettings), or None: the built-in defaults.
    retention = None

    def __repr__(self):
        return f"<Queue {self.name!r} pending={len(self)}>"

    def pause(self, now, by=None):
        if self.paused is None:
            self.paused = (now, by)
        return self.paused

    def resume(self):
        was = self.paused is not None
        if was:
            self.paused = None
            # This process's dispatchers at once; others watch the queue.
            wakeup.wake_after_commit(self)
        return was

    # -- putting -----------------------------------------------------------

    def put(
        self,
        job_or_callable,
        begin_after=None,
        begin_by=None,
        quota_names=(),
        priority=0,
        unique_key=None,
        retry_policy=None,
        rate_limit=None,
        timeout=None,
        now=None,
        depends_on=None,
        on_dependency_failure=dependencies.FAIL,
    ):
        now = now or clock.utcnow()
        job = job_or_callable
        if not isinstance(job, Job):
            job = Job(job_or_callable)
        # A job put by a transaction that aborted still says so in memory.
        job.forget_aborted_put()
        if job.status != NEW or job.queue is not None:
            raise ValueError(
                f"{job!r} is already queued (status {job.status}, queue "
                f"{getattr(job.queue, 'name', None)!r}); create a new Job to "
                f"run the same call again."
            )
        if isinstance(quota_names, str):
            quota_names = (quota_names,)
        names = _lane_key(tuple(quota_names) or job.quota_names)
        names = self._with_rate_limit(names, rate_limit)
        for name in names:
            if name not in self.quotas:
                raise ValueError(
                    f"queue {self.name!r} has no quota {name!r}; create it first "
                    f"with queue.quotas.create({name!r}, size=1)"
                )
        if (
            not isinstance(priority, int)
            or isinstance(priority, bool)
            or abs(priority) > PRIORITY_LIMIT
        ):
            raise ValueError(
                f"priority must be an int from {-PRIORITY_LIMIT} to "
                f"{PRIORITY_LIMIT} (higher runs first), not {priority!r}"
            )
        if unique_key is not None:
            if not isinstance(unique_key, str):
                raise ValueError(f"unique_key must be a string, not {unique_key!r}")
            existing = self._unique.get(unique_key)
            if existing is not None and readable(existing).status != COMPLETED:
                return existing
        if begin_after is None:
            begin_after = now
        elif isinstance(begin_after, datetime.datetime):
            begin_after = clock.aware(begin_after, "begin_after")
        else:
            begin_after = now + clock.duration(
                begin_after, "begin_after (a datetime, or a duration from now)"
            )
        if begin_by is not None:
            begin_by = clock.duration(begin_by, "begin_by", positive=True)
        if timeout is not None:
            job.timeout = timeout  # validated by the job
        waits_for = dependencies.check(self, job, depends_on, on_dependency_failure)
        if inline.on:
            if waits_for:
                return self._run_inline_after(
                    job, waits_for, on_dependency_failure, names, priority, now
                )
            return self._run_inline(job, names, priority, unique_key, retry_policy, now)

        # Renewed here, so that ids of queued jobs follow their arrival.
        job_id = new_job_id()
        while self.get(job_id) is not None:
            job_id = new_job_id()
        job.enter_queue(
            self,
            job_id,
            now,
            begin_after,
            begin_by,
            names,
            priority,
            unique_key,
            retry_policy,
        )
        if unique_key is not None:
            self._unique[unique_key] = job
        if waits_for and dependencies.hold(
            self, job, waits_for, on_dependency_failure, now
        ):
            return job  # waiting in _waiting, or failed already
        job.enter_run_order()
        # Only the job (new), an inbox shard and the pending count (both
        # merge concurrent changes) are written: the lanes and _jobs, whose
        # keys grow with time (every put would land in their last bucket),
        # are left to the dispatchers.
        self._pending_count.change(1)
        self._to_inbox(job)
        wakeup.wake_after_commit(self)
        return job

    def _with_rate_limit(self, names, rate_limit):
        """The lane key ``names`` with the quota that ``rate_limit`` names
        (see IQueue.put), which must exist and carry a rate."""
        if rate_limit is None:
            return names
        if not isinstance(rate_limit, str) or not rate_limit:
            raise ValueError(
                f"rate_limit must be the name of a quota with a rate, not "
                f"{rate_limit!r}"
            )
        quota = self.quotas.get(rate_limit)
        if quota is None or quota.rate is None:
            raise ValueError(
                f"queue {self.name!r} has no rate limit {rate_limit!r}; create "
                f"it first with queue.quotas.create({rate_limit!r}, size=..., "
                f"rate=(starts, timedelta(...)))"
                + ("" if quota is None else " or quota.set_rate(...)")
            )
        return _lane_key((*names, rate_limit))

    def _run_inline(self, job, names, priority, unique_key, retry_policy, now):
        job.enter_queue(
            self,
            job.id,
            now,
            now,
            job.begin_by,
            names,
            priority,
            unique_key,
            retry_policy,
        )
        self._part(self._part_of(job.id)).jobs[job.id] = job
        job()
        self._index_completed(job)
        return job

    def _run_inline_after(self, job, waits_for, on_failure, names, priority, now):
        """The inline mode (zasync.testing.inline) with depends_on: the
        dependencies must have completed (run inline before)."""
        left = [
            each.id
            for each in waits_for
            if each.status != COMPLETED
            or dependencies.decision(each, on_failure) == "wait"
        ]
        if left:
            raise ValueError(
                f"in the inline mode of zasync.testing a job runs when it is "
                f"put, but this one would wait for jobs {left} (not completed, "
                f"or failed with on_dependency_failure='wait')"
            )
        job.enter_queue(self, job.id, now, now, job.begin_by, names, priority)
        if not dependencies.hold(self, job, waits_for, on_failure, now):
            self._part(self._part_of(job.id)).jobs[job.id] = job
            job()
            self._index_completed(job)
        return job

    def _enter_run_order(self, job):
        """A job released from waiting joins the run order as a put does."""
        job.enter_run_order()
        self._pending_count.change(1)
        self._to_inbox(job)
        wakeup.wake_after_commit(self)

    def _dependents_index(self):
        if self._dependents is None:  # a queue stored before dependencies
            self._dependents = OOBTree()
        return self._dependents

    def put_sub_job(self, job, parent, quota_names=None):
        """Queue a callback or child of ``parent`` (see Job.sub_job_done)."""
        if job.queue is self:
            self._forget_job(job)
        job.renew(parent)
        return self.put(
            job,
            quota_names=quota_names if quota_names is not None else job.quota_names,
            priority=parent.priority,
        )

    def _to_inbox(self, job):
        if not self._inbox:  # a queue stored before there was an inbox
            self._inbox = tuple(Inbox() for _ in range(INBOX_SHARDS))
        self._part(0)  # and before there were parts
        index = self._shard_index(job.id)
        shard = self._inbox[index]
        if len(shard) >= INBOX_SPILL:
            # No dispatcher filed them for a while: do it, so that the
            # shard stays small (each put stores all of it).
            self._file(index)
        shard.append(job.pending_key, _lane_key(job.lane_quota_names), job)

    def _shard_index(self, job_id):
        # Fibonacci hashing: ids of one process step by one or two.
        return ((job_id * 0x9E3779B97F4A7C15) >> 32) % (len(self._inbox) or 1)

    def _shard(self, job_id):
        inbox = self._inbox
        return inbox[self._shard_index(job_id)] if inbox else None

    def _part_of(self, job_id):
        """The run part of a job: that of its inbox shard (0 in a queue
        stored before there were parts)."""
        if self._parts is None:
            return 0
        return self._shard_index(job_id) % RUN_PARTS

    def _part(self, part):
        """RunPart number ``part``, for writing: a queue stored before
        there were parts makes them here, its own trees becoming part 0's
        (this writes the queue, once)."""
        if self._parts is None:
            first = RunPart(self._lanes, self._jobs, self._succeeded, self._failed)
            self._parts = (first, *(RunPart() for _ in range(RUN_PARTS - 1)))
        return self._parts[part]

    def _all_parts(self):
        """Every run part, for reading (without making them)."""
        return self._parts or (_FirstPart(self),)

    def _parts_of(self, job_id):
        """The run parts where a job may be: its own, then part 0, where
        it was if it was filed before there were parts."""
        part = self._part_of(job_id)
        parts = self._all_parts()
        return (parts[part], parts[0]) if part else (parts[0],)

    def _each_lane(self):
        """(part, lane key, lane) of every lane of every run part."""
        for number, part in enumerate(self._all_parts()):
            for lane_key, lane in part.lanes.items():
                yield number, lane_key, lane

    def _in_inbox(self, job_id):
        shard = self._shard(job_id)
        return None if shard is None else shard.find(job_id)

    def _lane(self, lane_key, part):
        lanes = self._part(part).lanes
        lane = lanes.get(lane_key)
        if lane is None:
            lane = lanes[lane_key] = OOBTree()
        return lane

    def _file(self, index):
        """Move the jobs of inbox shard ``index`` to the lanes of its run
        part and to _jobs (the jobs are not written: put set their keys)."""
        part = index % RUN_PARTS
        jobs = self._part(part).jobs
        for key, lane_key, job in self._inbox[index].take():
            jobs[keys.id_of(key)] = job
            self._lane(lane_key, part)[key] = job

    def _file_inbox(self, at_least=1, prefer=None):
        """File the jobs of every shard holding at least ``at_least``, only
        of the run parts in ``prefer`` if given."""
        for index, shard in enumerate(self._inbox):
            if prefer is not None and index % RUN_PARTS not in prefer:
                continue
            if len(shard) >= at_least:
                self._file(index)

    def _add_pending(self, job, front=False):
        lane = self._lane(_lane_key(job.lane_quota_names), self._part_of(job.id))
        lane[job.enter_run_order(front)] = job
        self._pending_count.change(1)

    def _unlink_pending(self, job, key, known=True):
        """Take the job filed under ``key`` out of the inbox or its lane.
        A job taken from the inbox is added to _jobs if ``known``."""
        shard = self._shard(job.id)
        if shard is not None and shard.discard(key):
            if known:
                self._part(self._part_of(job.id)).jobs[job.id] = job
        else:
            self._lane_holding(job, key).pop(key)
        self._pending_count.change(-1)

    def _lane_holding(self, job, key):
        """The lane in which the job is filed under ``key``: in its run
        part's, or (filed before there were parts) in part 0's."""
        lane_key = _lane_key(job.lane_quota_names)
        for part in self._parts_of(job.id):
            lane = part.lanes.get(lane_key)
            if lane is not None and key in lane:
                return lane
        raise KeyError(
            f"job {job.id} is not in the run order of queue {self.name!r} under {key}"
        )

    def _remove_pending(self, job, known=True):
        self._unlink_pending(job, job.leave_run_order(), known)

    # -- reading -----------------------------------------------------------

    def __len__(self):
        return self._pending_count.value

    def __bool__(self):
        return True

    def _pending_items(self):
        put = sorted(
            ((key, job) for shard in self._inbox for key, _, job in shard.entries),
            key=operator.itemgetter(0),
        )
        return heapq.merge(put, *(lane.items() for _, _, lane in self._each_lane()))

    def __iter__(self):
        return (job for _, job in self._pending_items())

    def __getitem__(self, index):
        if index < 0:
            index += len(self)
        for position, job in enumerate(self):
            if position == index:
                return job
        raise IndexError(f"no pending job at index {index} (queue has {len(self)})")

    def get(self, job_id, default=None):
        for part in self._parts_of(job_id):
            job = part.jobs.get(job_id)
            if job is not None:
                return job
        entry = self._in_inbox(job_id)
        if entry is None:
            # Jobs waiting for their dependencies are only there.
            return self._waiting.get(job_id, default)
        return entry[2]

    def _forget_job(self, job):
        """Take a job out of its part's jobs (None if it was in none)."""
        for part in self._parts_of(job.id):
            if part.jobs.pop(job.id, None) is not None:
                return job
        return None

    def claimed_jobs(self):
        """The jobs held by this queue's dispatchers and those waiting for
        their sub-jobs (see IQueue.claimed_jobs)."""
        for record in self.dispatchers.values():
            for agent in record.agents.values():
                yield from agent.jobs.values()
        yield from self._waiting.values()

    def counts(self):
        counts = {status.value: 0 for status in Status if status != NEW}
        succeeded, failed = self._succeeded_count.value, self._failed_count.value
        for job in self.claimed_jobs():
            # A job whose worker committed it but whose dispatcher has not
            # indexed it yet counts as what it is now (one that cannot be
            # loaded, as what it says it is).
            job = readable(job)
            if job.status == COMPLETED:
                failed, succeeded = (
                    (failed + 1, succeeded) if job.failed else (failed, succeeded + 1)
                )
            else:
                counts[job.status.value] += 1
        counts[PENDING.value] = self._pending_count.value
        counts["succeeded"] = succeeded
        counts["failed"] = failed
        counts[COMPLETED.value] = counts["succeeded"] + counts["failed"]
        return counts

    def jobs(self, status=None, failed=None, start=0, limit=None):
        stop = None if limit is None else start + limit
        if status is None:
            # Completed jobs not indexed yet are listed with the completed.
            unsettled = (
                j for j in self.claimed_jobs() if readable(j).status != COMPLETED
            )
            found = itertools.chain(unsettled, self, self._completed_jobs(failed))
        else:
            status = Status(status)
            if status == PENDING:
                found = iter(self)
            elif status == COMPLETED:
                found = self._completed_jobs(failed)
            else:
                found = (j for j in self.claimed_jobs() if readable(j).status == status)
        return list(itertools.islice(found, start, stop))

    def _completed_jobs(self, failed=None):
        # Jobs completed but not indexed yet by their dispatcher come first:
        # they are the newest.
        fresh = [
            job
            for job in self.claimed_jobs()
            if readable(job).status == COMPLETED
            and (failed is None or readable(job).failed == failed)
        ]
        indexed = (job for _, job in self.indexed_completed(failed))
        return itertools.chain(fresh, indexed)

    def indexed_completed(self, failed=None, min_key=None):
        """(key, job) of the completed jobs in the indexes, newest first."""
        parts = self._all_parts()
        indexes = []
        if failed is not False:
            indexes += [part.failed for part in parts]
        if failed is not True:
            indexes += [part.succeeded for part in parts]
        return heapq.merge(*(index.items(min=min_key) for index in indexes))

    def completed_items(self, failed=None, min_key=None):
        """(key, job) of completed jobs, newest first, including those their
        dispatcher has not indexed yet (see IQueue.completed_items)."""
        fresh = sorted(
            (
                (job.index_key, job)
                for job in map(readable, self.claimed_jobs())
                if job.status == COMPLETED
                and (failed is None or job.failed == failed)
                and (min_key is None or job.index_key >= min_key)
            ),
            key=operator.itemgetter(0),
        )
        return heapq.merge(
            fresh, self.indexed_completed(failed, min_key), key=operator.itemgetter(0)
        )

    def watched_objects(self, parts=None):
        """The persistent objects whose change means work may have arrived
        (see IQueue.watched_objects)."""
        if parts is None:
            put = [self._pending_count]
        else:
            put = [
                shard
                for index, shard in enumerate(self._inbox)
                if index % RUN_PARTS in parts
            ]
        # The queue itself: pausing and resuming it rewrites it.
        return [*put, self, self.quotas, *self.quotas.values()]

    def unsettled(self):
        """How many jobs are pending, claimed or waiting, counting completed
        jobs that their dispatcher has not indexed yet."""
        claimed = sum(1 for _ in self.claimed_jobs())
        return self._pending_count.value + claimed

    def live_annotations(self, job_id, create=False):
        live = self._live.get(job_id)
        if live is None:
            if not create:
                return {}
            live = self._live[job_id] = PersistentMapping()
        return live

    # -- removing ----------------------------------------------------------

    def pull(self, index=0):
        job = self[index]
        self.remove(job)
        return job

    def remove(self, job):
        job_id = stored_id(readable(job))
        if job_id in (self._aside or ()) and self._aside[job_id][0] is getattr(
            job, "stand_in", job
        ):
            self.discard_set_aside(job_id)
            return
        if is_broken(job):
            raise ValueError(
                f"job {job_id} of queue {self.name!r} cannot be loaded "
                f"({broken_reason(job)}); a dispatcher sets such a job aside, "
                f"and then it can be removed"
            )
        if self.get(job.id) is not job:
            raise ValueError(f"{job!r} is not in queue {self.name!r}")
        status = job.status
        if status not in (WAITING, PENDING, COMPLETED):
            raise ValueError(
                f"{job!r} is {status}; only waiting, pending or completed jobs "
                f"can be removed from a queue."
            )
        # Jobs waiting for this one could never run: they fail.
        dependencies.removed(self, job, clock.utcnow())
        if status == WAITING:
            self._waiting.pop(job.id, None)
            self._forget_unique(job)
            job.leave_queue()
            return
        if status == PENDING:
            if self._in_inbox(job.id) is not None:
                self._remove_pending(job, known=False)
                self._forget_unique(job)
                job.leave_queue()
                return
            self._remove_pending(job)
        else:  # COMPLETED
            index = self._indexed_in(job)
            if index is not None:
                del index[job.index_key]
                self._completed_count(job).change(-1)
            self._live.pop(job.id, None)
        self._forget_job(job)
        self._forget_unique(job)
        job.leave_queue()

    def _forget_unique(self, job):
        if job.unique_key is not None and self._unique.get(job.unique_key) is job:
            del self._unique[job.unique_key]

    def _check_in_run_order(self, job, action):
        if (
            self.get(job.id) is not job
            or job.status != PENDING
            or job.pending_key is None
            or job.id in (self._aside or ())
        ):
            raise ValueError(
                f"only a pending job in the run order of queue {self.name!r} "
                f"can be {action}, not {job!r}"
            )

    def cancel(self, job, failure, now):
        """Complete a pending job with ``failure`` instead of running it."""
        if job.status == WAITING and self.get(job.id) is job:
            dependencies.fail_dependent(self, job, failure, now)
            return
        self._check_in_run_order(job, "cancelled")
        self._remove_pending(job)
        job.fail(failure, now)
        # Its callbacks are queued (failure callbacks see the failure); it
        # is completed, indexed as failed and frees its unique key when
        # they are done, at once if it has none.
        job.resume_callbacks(self, now)

    def reschedule(self, job, begin_after):
        """Move a pending job to ``begin_after`` in the run order."""
        self._check_in_run_order(job, "rescheduled")
        begin_after = clock.aware(begin_after, "begin_after")
        self._remove_pending(job)
        job.reschedule(begin_after)
        self._add_pending(job)
        wakeup.wake_after_commit(self)

    # -- dispatching (used by dispatchers) ---------------------------------

    def _lane_has_room(self, lane_key, now_us):
        """Whether a job of the lane may start now: none of its quotas is
        full, paused or out of its rate."""
        for name in lane_key:
            quota = self.quotas.get(name)
            if quota is not None and not quota._may_start(now_us):
                return False
        return True

    def claim(self, agent, uuid, limit, now, start=None, prefer=None):
        """Claim up to ``limit`` jobs that may start now for ``agent`` of
        dispatcher ``uuid`` and return them, in run order.

        ``prefer`` is the set of run parts (0 to RUN_PARTS - 1) this
        dispatcher takes jobs from first, so that dispatchers claiming at
        the same time do not take the same jobs (see _best_ready); None
        for all of them alike (strict run order).

        The first ``start`` of them (all if None) are started (ACTIVE); the
        rest are ASSIGNED: held by the dispatcher for its next free thread,
        which starts them (see activate). Serial and parallel jobs met on the
        way are started here (they queue their children) and are not
        returned: they take no thread and no quota slot while they wait.
        """
        now_us = clock.to_micros(now)
        claimed = []
        blocked = set()
        put = self._ready_in_inbox(now_us)
        while len(claimed) < limit:
            best = self._best_ready(agent, now_us, blocked, put, prefer)
            if best is None:
                break
            key, job = best
            problem = job_problem(job)
            if problem is not None:
                # It cannot be run: out of the way, so the others go on.
                self.set_aside(job, problem, key)
                continue
            self._remove_pending(job)
            if getattr(job, "is_composite", False):
                job.start(self, now)
                continue
            for name in job.quota_names:
                quota = self.quotas.get(name)
                if quota is not None:
                    quota.hold(job.id)
                    quota.record_start(job.id, now)
            job.assign((uuid, agent.name), now)
            if start is None or len(claimed) < start:
                job.begin_attempt(now)
            agent.jobs[job.id] = job
            claimed.append(job)
        return claimed

    def _ready_in_inbox(self, now_us):
        """[(key, lane key, job, run part)] of the inbox's jobs that may
        start now, in run order (read once per claim)."""
        return sorted(
            (
                (*entry, index % RUN_PARTS)
                for index, shard in enumerate(self._inbox)
                for entry in shard.entries
                if keys.begin_of(entry[0]) <= now_us
            ),
            key=operator.itemgetter(0),
        )

    def _best_ready(self, agent, now_us, blocked, put, prefer=None):
        """(key, job) of the job to claim next: the first ready in the inbox
        (``put``, from _ready_in_inbox; the one returned is removed from
        it) or in any lane with quota room; lanes found full are added to
        ``blocked`` and skipped. A claim takes a job from the inbox without
        filing the others: two claims taking different jobs merge.

        With ``prefer`` (a set of run parts), the first of those parts wins
        over the first of the others unless that one has a higher priority
        or has been due much longer, and one of the others is taken only
        once it has been due a moment (see SPREAD_SLACK_US and _preferred):
        dispatchers that prefer different parts claim different jobs, and
        any of them takes what the others leave."""
        best = [None, None]  # (key, job, inbox index) of preferred, others
        for index, (key, lane_key, job, part) in enumerate(put):
            side = 0 if prefer is None or part in prefer else 1
            if best[side] is not None or lane_key in blocked:
                continue
            if not self._lane_has_room(lane_key, now_us):
                blocked.add(lane_key)
                continue
            if agent is None or is_broken(job) or agent.accepts(job):
                best[side] = (key, job, index)
                if best[1 - side] is not None or prefer is None:
                    break
        for part, lane_key, lane in self._each_lane():
            if lane_key in blocked or not lane:
                continue
            if not self._lane_has_room(lane_key, now_us):
                blocked.add(lane_key)
                continue
            side = 0 if prefer is None or part in prefer else 1
            found = _first_ready(lane, now_us, agent)
            if found is not None and _earlier(found, best[side]):
                best[side] = (*found, None)
        chosen = _preferred(*best, now_us)
        if chosen is None:
            return None
        key, job, index = chosen
        if index is not None:
            del put[index]
        return key, job

    def peek(self, agent, now, prefer=None):
        """The job that ``claim`` would take next for ``agent``, or None.

        Without ``prefer``: the first ready job in run order, which a
        claim preferring some parts may leave to a peer until
        ``takeable_at(job)``."""
        now_us = clock.to_micros(now)
        best = self._best_ready(
            agent, now_us, set(), self._ready_in_inbox(now_us), prefer
        )
        return None if best is None else best[1]

    @staticmethod
    def takeable_at(job):
        """When a claim preferring other parts than the job's takes it,
        if no peer has (see SPREAD_SLACK_US)."""
        if is_broken(job):
            key = stored_state(job).get("pending_key") or 0
        else:
            key = job.pending_key
        return clock.from_micros(keys.begin_of(key) + SPREAD_SLACK_US)

    def set_aside(self, job, reason, key=None):
        """Take a pending job that cannot be claimed out of the run order
        without writing it (its class cannot be imported, or its state could
        not be stored): it is kept in ``set_aside_jobs`` with the reason,
        for an operator to look at, put back or discard. ``key`` is its
        run-order key (default: the one it says it has)."""
        job_id = stored_id(job)
        if key is None:
            broken = is_broken(job)
            key = stored_state(job).get("pending_key") if broken else job.pending_key
        shard = self._shard(job_id)
        if shard is not None and shard.discard(key):
            self._part(self._part_of(job_id)).jobs[job_id] = job
        else:
            lane = self._lane_filed_in(job_id, key)
            if lane is None:
                raise ValueError(
                    f"job {job_id} is not in the run order of queue "
                    f"{self.name!r} (under {key}); only a pending job can be "
                    f"set aside"
                )
            del lane[key]
        self._pending_count.change(-1)
        self._keep_aside(job_id, job, reason)

    def _lane_filed_in(self, job_id, key):
        """The lane of the job's run parts holding ``key``, or None (reads
        no job: works for one that cannot be loaded)."""
        for part in self._parts_of(job_id):
            for lane in part.lanes.values():
                if key in lane:
                    return lane
        return None

    def _keep_aside(self, job_id, job, reason):
        if self._aside is None:
            self._aside = OOBTree()
        self._aside[job_id] = (job, reason)
        view = readable(job)
        try:
            where = view.log_context  # with user and site, if it says
        except Exception:
            where = f"queue {queue_label(self.name)!r}"
        aside_log.error(
            (self.name, job_id, reason),
            "job %s (%s) cannot be run and was set aside (%s): %s; 'zasync "
            "set-aside' lists such jobs, 'zasync retry %s' puts it back once "
            "the cause is fixed, 'zasync discard %s' removes it",
            job_id,
            view.callable_name,
            where,
            reason,
            job_id,
            job_id,
        )

    def _set_aside_claimed(self, job, reason, now):
        """Set aside a job claimed by an agent (or waiting): its agent and
        quotas let it go; one that loads is put back (PENDING, out of the
        run order, no attempt counted) first."""
        loads = broken_reason(job) is None
        job_id = stored_id(job) if loads or is_broken(job) else None
        if loads:
            self._release(job)
            if job.status in (ASSIGNED, ACTIVE):
                job.put_back()
        else:
            # Not even its assignee can be read: let go of it everywhere.
            for record in self.dispatchers.values():
                for agent in record.agents.values():
                    for held_id, held in list(agent.jobs.items()):
                        if held is job:
                            job_id = held_id
                            del agent.jobs[held_id]
            for quota in self.quotas.values():
                quota.release(job_id)
        self._waiting.pop(job_id, None)
        self._keep_aside(job_id, job, reason)

    @property
    def set_aside_jobs(self):
        """{job id: (job, reason)} of the jobs set aside (see set_aside)."""
        return dict(self._aside or {})

    def set_aside_reason(self, job_id):
        """Why the job ``job_id`` was set aside, or None if it is not."""
        entry = (self._aside or {}).get(job_id)
        return None if entry is None else entry[1]

    def put_back_set_aside(self, job_id, now=None):
        """Put a set-aside job back in the run order (see IQueue)."""
        now = now or clock.utcnow()
        job, _ = self._aside_entry(job_id)
        problem = job_problem(job)
        if problem is not None:
            raise ValueError(
                f"set-aside job {job_id} of queue {self.name!r} still cannot be "
                f"run: {problem}"
            )
        try:
            check_value(job.__getstate__(), f"job {job_id}")
        except BadJobError as exc:
            raise ValueError(
                f"set-aside job {job_id} of queue {self.name!r} still cannot be "
                f"stored: {exc}"
            ) from None
        if job.status not in (PENDING, ASSIGNED, ACTIVE):
            raise ValueError(
                f"set-aside job {job_id} of queue {self.name!r} is {job.status}; "
                f"only a job that has not run can be put back"
            )
        del self._aside[job_id]
        if job.status in (ASSIGNED, ACTIVE):
            job.put_back()
        if job.pending_key is not None:
            job.leave_run_order()  # the key it had when it was set aside
        self._part(self._part_of(job_id)).jobs[job_id] = job
        self._add_back(job, now)
        wakeup.wake_after_commit(self)
        return job

    def discard_set_aside(self, job_id):
        """Remove a set-aside job from the queue (see IQueue)."""
        job, _ = self._aside_entry(job_id)
        del self._aside[job_id]
        for part in self._parts_of(job_id):
            if part.jobs.get(job_id) is job:
                del part.jobs[job_id]
        unique_key = (
            stored_state(job).get("unique_key") if is_broken(job) else job.unique_key
        )
        if unique_key is not None and self._unique.get(unique_key) is job:
            del self._unique[unique_key]
        self._live.pop(job_id, None)
        dependencies.removed(self, readable(job), clock.utcnow())
        # The job itself is not written: it may not be storable.
        return job

    def _aside_entry(self, job_id):
        entry = (self._aside or {}).get(job_id)
        if entry is None:
            raise ValueError(
                f"job {job_id} is not set aside in queue {self.name!r} "
                f"(set_aside_jobs lists those that are)"
            )
        return entry

    @staticmethod
    def activate(job, now):
        """Start an ASSIGNED job (the old name of ``job.begin_attempt``)."""
        job.begin_attempt(now)

    def next_due(self, now, prefer=None):
        """When the earliest pending job that is not due yet becomes due.

        A dispatcher asks every round: the inbox's shards that grew large
        (its agents claimed nothing for a while) are filed here, only those
        of the run parts it prefers if ``prefer`` is given."""
        now_us = clock.to_micros(now)
        self._file_inbox(INBOX_DRAIN, prefer)
        due = None
        for shard in self._inbox:
            for key, _, _ in shard.entries:
                begin = keys.begin_of(key)
                if begin > now_us and (due is None or begin < due):
                    due = begin
        for _, _, lane in self._each_lane():
            try:
                key = lane.minKey()
            except ValueError:
                continue
            while key is not None:
                begin = keys.begin_of(key)
                if begin <= now_us:
                    # The level's first job is due: look past the due ones.
                    try:
                        later = lane.minKey(keys.level_end(key, now_us) + 1)
                    except ValueError:
                        later = None
                    if later is not None and keys.level_of(later) == keys.level_of(key):
                        begin = keys.begin_of(later)
                if begin > now_us and (due is None or begin < due):
                    due = begin
                try:
                    key = lane.minKey(keys.next_level(key))
                except ValueError:
                    key = None
        opens = self._rate_opens_at(now_us)
        if opens is not None and (due is None or opens < due):
            due = opens
        return None if due is None else clock.from_micros(due)

    def _rate_opens_at(self, now_us):
        """When the earliest rate that holds back a pending job lets one
        start (microseconds), or None: the dispatcher waits until then."""
        limited = {
            quota.name: quota._rate_opens_at(now_us)
            for quota in self.quotas.values()
            if quota._rate is not None and quota._paused is None
        }
        limited = {name: at for name, at in limited.items() if at is not None}
        if not limited:
            return None
        waiting = {lane_key for _, lane_key, lane in self._each_lane() if lane}
        waiting.update(
            lane_key for shard in self._inbox for _, lane_key, _ in shard.entries
        )
        times = [
            limited[name]
            for lane_key in waiting
            for name in lane_key
            if name in limited
        ]
        return min(times, default=None)

    def _agent_of(self, job):
        if job.assignee is None:
            return None
        uuid, agent_name = job.assignee
        record = self.dispatchers.get(uuid)
        return None if record is None else record.agents.get(agent_name)

    def _release(self, job):
        # job.assignee stays: it tells who ran the job last.
        agent = self._agent_of(job)
        if agent is not None:
            agent.jobs.pop(job.id, None)
        for name in job.quota_names:
            quota = self.quotas.get(name)
            if quota is not None:
                quota.release(job.id)

    def reconcile(self, job, now):
        """Bring the indexes in line with a job its worker has finished with.

        A worker commits a job's result touching only the job (so the job's
        transaction conflicts with nothing else); its dispatcher then calls
        this in a transaction of its own to release the job's agent slot and
        quotas and to index it by its new status.
        """
        if is_broken(job):
            self.recover_job(job, now)
            return
        status = job.status
        if status == PENDING and job.pending_key is None:
            self._release(job)
            self._add_pending(job)
        elif status == COMPLETED:
            self._release(job)
            self._record_completion(job, now)
        elif status in (ACTIVE, ASSIGNED):
            # Its worker could not store any outcome (say, a full disk):
            # treat it like an interrupted job.
            self.recover_job(job, now, interrupted=True)

    def recover_job(self, job, now, interrupted=True):
        """Take back a job from an agent whose dispatcher died or stopped.

        ``interrupted`` is False when the dispatcher stopped cleanly and put
        the job back itself: then it is not counted as an interruption.

        A job that cannot be loaded (its class, or its retry policy's, cannot
        be imported), or whose retry policy fails, is set aside with the
        reason instead, so that recovering it never fails the round.
        """
        problem = broken_reason(job, "the job's class")
        if problem is not None:
            self._set_aside_claimed(job, problem, now)
            return
        self._release(job)
        status = job.status
        if status == COMPLETED:
            self._record_completion(job, now)
        elif status == PENDING:
            if job.pending_key is None:
                self._add_pending(job)
        elif status == CALLBACKS:
            job.resume_callbacks(self, now)
        elif status == ASSIGNED:
            # Claimed but never started: no attempt, no interruption.
            job.put_back()
            self._add_back(job, now)
        elif status == ACTIVE:
            if job.expired or not interrupted:
                job.put_back()  # its attempt is not counted
                self._add_back(job, now)
            elif (problem := self._interrupt_problem(job, now)) is not None:
                self._keep_aside(job.id, job, problem)
            elif job.status == PENDING:  # to be retried
                self._add_back(job, now)
            else:
                log.error(
                    "job %s (%s) failed: interrupted %d times (%s): %s",
                    job.id,
                    job.callable_name,
                    job.interruptions,
                    job.log_context,
                    job.result,
                )
                job.resume_callbacks(self, now)

    @staticmethod
    def _interrupt_problem(job, now):
        """Let the job's retry policy handle its interruption; if the policy
        cannot be loaded or raises, put the job back (PENDING, out of the
        run order) and return why, for it to be set aside."""
        problem = job_problem(job)
        if problem is None:
            try:
                job.handle_interrupt(now)
                return None
            except STORAGE_TROUBLE:
                raise
            except Exception as exc:
                problem = (
                    f"its retry policy {job.retry_policy!r} failed on its "
                    f"interruption ({type(exc).__name__}: {exc})"
                )
        job.put_back()
        return problem

    def _add_back(self, job, now):
        # A job taken back from its dispatcher had its turn already: it goes
        # before the jobs of its priority that came after it (as in
        # zc.async), unless its retry policy makes it wait.
        self._add_pending(job, front=job.begin_after <= now)

    def recover_dispatcher(self, record, now, interrupted=True):
        """Recover every job claimed by the agents of ``record``."""
        recovered = 0
        for agent in record.agents.values():
            for job_id, job in list(agent.jobs.items()):
                if is_broken(job) and job_id in (self._aside or ()):
                    agent.jobs.pop(job_id, None)  # set aside already
                    continue
                self.recover_job(job, now, interrupted)
                recovered += 1
        return recovered

    def dependents(self, job):
        """The jobs waiting for ``job`` (see IQueue.dependents)."""
        return dependencies.dependents(self, job.id)

    def move_dependents(self, job, retry):
        """Jobs waiting for the failed ``job`` wait for ``retry`` instead
        (see IQueue.move_dependents)."""
        return dependencies.move(self, job, retry)

    def wait_for_sub_jobs(self, job):
        self._waiting[job.id] = job

    def finish(self, job, now):
        """Complete a job whose result and callbacks are all done."""
        job.complete(now)
        self._record_completion(job, now)

    def _completed_count(self, job):
        return self._failed_count if job.failed else self._succeeded_count

    def _indexed_in(self, job):
        """The completed index holding the job, or None."""
        for part in self._parts_of(job.id):
            index = part.failed if job.failed else part.succeeded
            if index.get(job.index_key) is job:
                return index
        return None

    def _index_completed(self, job):
        if self._indexed_in(job) is None:
            part = self._part(self._part_of(job.id))
            (part.failed if job.failed else part.succeeded)[job.index_key] = job
            self._completed_count(job).change(1)

    def _record_completion(self, job, now):
        self._waiting.pop(job.id, None)
        if self.get(job.id) is job:
            self._index_completed(job)
        self._forget_unique(job)
        dependencies.completed(self, job, now)
        parent = job.parent
        if parent is None:
            return
        if is_broken(parent):
            # Waiting for this sub-job, and cannot be loaded: set aside.
            if stored_id(parent) not in (self._aside or ()):
                reason = broken_reason(parent, "the job's class")
                self._set_aside_claimed(parent, reason, now)
            return
        parent.sub_job_done(job, self, now)


@implementer(IQueues)
class Queues(persistent.Persistent):
    """See IQueues."""

    #: The cluster's automatic pruning, its lease and last pass
    #: (zasync.retention.RetentionState), or None before the first pass.
    retention_state = None

    def __init__(self):
        self._queues = OOBTree()
        self._queues[DEFAULT_QUEUE] = Queue(DEFAULT_QUEUE)

    def create(self, name):
        queue = self._queues.get(name)
        if queue is None:
            queue = self._queues[name] = Queue(name)
        return queue

    def __getitem__(self, name):
        try:
            return self._queues[name]
        except KeyError:
            raise KeyError(
                f"no queue {name!r}; create it with get_queues(conn).create({name!r})"
            ) from None

    def get(self, name, default=None):
        return self._queues.get(name, default)

    def __contains__(self, name):
        return name in self._queues

    def __iter__(self):
        return iter(self._queues.keys())

    def __len__(self):
        return len(self._queues)

    def keys(self):
        return list(self._queues.keys())

    def values(self):
        return list(self._queues.values())

    def items(self):
        return list(self._queues.items())

    def find_job(self, job_id):
        """The job with this id in any queue, or None."""
        for queue in self._queues.values():
            job = queue.get(job_id)
            if job is not None:
                return job
        return None


def get_queues(connection, database=None):
    """The Queues of the database behind ``connection``, installed if missing.

    ``database`` names another database of a multi-database setup (the
    queues' own mounted database); installing writes the root, so the caller
    commits. Returns an IQueues.
    """
    if database is not None:
        connection = connection.get_connection(database)
    root = connection.root()
    queues = root.get(ROOT_KEY)
    if queues is None:
        queues = root[ROOT_KEY] = Queues()
    return queues
