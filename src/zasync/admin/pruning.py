"""Removing old completed jobs, a batch per transaction, keeping failed
ones longer."""

import datetime
import logging

import transaction

from zasync import clock
from zasync.admin.actions import MAX_CONFLICTS
from zasync.admin.reports import _completed_threshold, read_queues, select_queues
from zasync.admin.text import queue_label
from zasync.exceptions import AdminError
from zasync.loading import readable
from zasync.retention import remove_batch
from zasync.transact import TRANSIENT_ERRORS, abort, pause

log = logging.getLogger("zasync.admin")

# Completed jobs removed per transaction by prune().
PRUNE_BATCH = 300
# Failed jobs are kept this many times longer than succeeded ones by default.
FAILED_KEEP_FACTOR = 4

# -- pruning ----------------------------------------------------------------


def _prune_index(
    tm, conn, database, name, failed, cutoff, dry_run, batch_size, progress=None
):
    """Remove the jobs of one completed index that ended before ``cutoff``,
    ``batch_size`` per transaction (see zasync.retention.remove_batch).
    Calls ``progress(removed, estimate)`` after each batch. Returns
    (removed, kept)."""
    cursor = _completed_threshold(cutoff)
    removed = kept = 0
    conflicts = 0
    estimate = None
    while True:
        tm.begin()
        try:
            queue = read_queues(conn, database).get(name)
            if queue is None:
                abort(tm)
                break  # removed meanwhile
            if estimate is None and progress is not None:
                # Counting the keys loads the buckets the batches load anyway.
                estimate = sum(1 for _ in queue.indexed_completed(bool(failed), cursor))
            batch_removed, batch_kept, next_key = remove_batch(
                queue, failed, cursor, batch_size, dry_run=dry_run
            )
            if dry_run:
                abort(tm)
            else:
                tm.commit()
        except TRANSIENT_ERRORS:
            abort(tm)
            conflicts += 1
            if conflicts >= MAX_CONFLICTS:
                raise AdminError(
                    f"gave up pruning queue {queue_label(name)!r} after "
                    f"{conflicts} write conflicts in a row; {removed} jobs were "
                    f"removed. Try again, or with a smaller batch."
                ) from None
            pause(conflicts)
            continue
        except BaseException:
            abort(tm)
            raise
        conflicts = 0
        removed += batch_removed
        kept += batch_kept
        if batch_removed or batch_kept:
            log.info(
                "queue %r: %s %d %s jobs",
                queue_label(name),
                "would remove" if dry_run else "removed",
                batch_removed,
                "failed" if failed else "succeeded",
            )
            if progress is not None:
                progress(removed, max(estimate or 0, removed + kept))
        if next_key is None:
            break
        cursor = next_key
    return removed, kept


def _prune_set_aside(tm, conn, database, name, cutoff, dry_run):
    """Discard the set-aside jobs of one queue queued before ``cutoff``, in
    one transaction. Returns how many."""
    conflicts = 0
    while True:
        tm.begin()
        try:
            queue = read_queues(conn, database).get(name)
            if queue is None:
                abort(tm)
                return 0
            removed = 0
            for job_id, (job, _) in sorted(queue.set_aside_jobs.items()):
                queued = readable(job).queued
                if queued is not None and queued >= cutoff:
                    continue
                if not dry_run:
                    queue.discard_set_aside(job_id)
                removed += 1
            if dry_run or not removed:
                abort(tm)
            else:
                tm.commit()
                log.info(
                    "queue %r: discarded %d set-aside jobs", queue_label(name), removed
                )
            return removed
        except TRANSIENT_ERRORS:
            abort(tm)
            conflicts += 1
            if conflicts >= MAX_CONFLICTS:
                raise AdminError(
                    f"gave up discarding the set-aside jobs of queue "
                    f"{queue_label(name)!r} after {conflicts} write conflicts; "
                    f"try again"
                ) from None
            pause(conflicts)
        except BaseException:
            abort(tm)
            raise


def prune(
    db,
    older_than,
    failed_older_than=None,
    queue=None,
    dry_run=False,
    database=None,
    batch_size=PRUNE_BATCH,
    now=None,
    set_aside=False,
    progress=None,
):
    """Remove completed jobs that ended more than ``older_than`` ago (a
    timedelta); failed jobs are kept until ``failed_older_than`` (default:
    FAILED_KEEP_FACTOR times ``older_than``).

    ``queue`` names one queue (default: all). Jobs are removed
    ``batch_size`` per transaction, each retried on conflicts, so that
    dispatchers go on meanwhile; a completed part or callback of a job that
    is not completed is kept. With ``dry_run`` nothing is removed and the
    counts say what would be. Returns ``{queue name: {"succeeded": n,
    "failed": n, "kept": n}}``. The space is given back to the storage when
    it is packed.

    Set-aside jobs are kept (an operator retries or discards them), unless
    ``set_aside``: then those queued before the failed jobs' cutoff are
    discarded too, and each queue's counts also have ``"set_aside"``.

    ``progress``, if given, is called after each batch with ``{"queue":
    name, "kind": "succeeded" or "failed", "removed": n, "estimate": n}``:
    the jobs of that kind removed so far in the queue (or that would be),
    and about how many there are to remove in all (counted when the queue's
    pruning began: jobs completing meanwhile are not in it).
    """
    if older_than < datetime.timedelta(0):
        raise AdminError("--older-than must not be negative")
    if failed_older_than is None:
        failed_older_than = older_than * FAILED_KEEP_FACTOR
    if failed_older_than < datetime.timedelta(0):
        raise AdminError("--failed-older-than must not be negative")
    if batch_size < 1:
        raise AdminError(f"the batch size must be at least 1, not {batch_size}")
    now = now or clock.utcnow()
    tm = transaction.TransactionManager(explicit=True)
    conn = db.open(transaction_manager=tm)
    try:
        tm.begin()
        try:
            names = [q.name for q in select_queues(read_queues(conn, database), queue)]
        finally:
            abort(tm)
        counts = {}
        for name in names:

            def report(kind, name=name):
                if progress is None:
                    return None
                return lambda removed, estimate: progress(
                    {
                        "queue": name,
                        "kind": kind,
                        "removed": removed,
                        "estimate": estimate,
                    }
                )

            succeeded, kept_ok = _prune_index(
                tm,
                conn,
                database,
                name,
                False,
                now - older_than,
                dry_run,
                batch_size,
                report("succeeded"),
            )
            failed, kept_failed = _prune_index(
                tm,
                conn,
                database,
                name,
                True,
                now - failed_older_than,
                dry_run,
                batch_size,
                report("failed"),
            )
            counts[name] = {
                "succeeded": succeeded,
                "failed": failed,
                "kept": kept_ok + kept_failed,
            }
            if set_aside:
                counts[name]["set_aside"] = _prune_set_aside(
                    tm, conn, database, name, now - failed_older_than, dry_run
                )
        return counts
    finally:
        abort(tm)
        conn.close()
