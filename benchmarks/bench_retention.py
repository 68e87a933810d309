"""Retention benchmark: database growth per 10,000 jobs after a pack, with
automatic retention on and off.

Run with ``make bench`` (``python benchmarks/bench_retention.py``). Each
round runs the same jobs twice through a real dispatcher on a FileStorage
of its own in a temporary directory:

- retention on: the queue keeps succeeded jobs for ``--age`` seconds, and
  the cluster's pruning (zasync.retention) starts a pass every
  ``--every`` seconds; the round waits until it has pruned every job;
- retention off: the queue keeps its completed jobs.

Then the storage is packed (to the present), and the growth of the
database file since the empty, packed queue is printed per 10,000 jobs,
with the medians over ``--rounds`` rounds.
"""

import argparse
import os
import statistics
import sys
import tempfile
import time

import transaction
import ZODB
import ZODB.FileStorage

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import jobs  # noqa: E402
from benchsupport import say  # noqa: E402

import zasync  # noqa: E402
from zasync import retention  # noqa: E402

QUEUE = "bench"
PER = 10_000  # the growth is given per this many jobs


def packed_size(db, path):
    db.pack(time.time() + 1)
    return os.path.getsize(path)


def wait_until(predicate, conn, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        transaction.begin()
        if predicate():
            return
        time.sleep(0.05)  # a benchmark's watch, not a test's wait
    raise SystemExit(f"timed out waiting for {what}")


def run(directory, count, keep, args):
    """One run; returns its figures (``keep``: retention on)."""
    path = os.path.join(directory, f"{'on' if keep else 'off'}.fs")
    db = ZODB.DB(ZODB.FileStorage.FileStorage(path))
    conn = db.open()
    queue = zasync.get_queues(conn).create(QUEUE)
    settings = retention.retention_settings(queue)
    if keep:
        settings.update({"succeeded_age": args.age, "failed_age": args.age})
    else:
        settings.update({"enabled": False})
    for other in zasync.get_queues(conn).values():
        if other is not queue:
            retention.retention_settings(other).update({"enabled": False})
    transaction.commit()
    baseline = packed_size(db, path)
    dispatcher = zasync.start(db, queues=(QUEUE,), agent_size=args.agent_size)
    started = time.perf_counter()
    try:
        for first in range(0, count, args.put_batch):
            # A put may conflict with the dispatcher's take: tried again.
            for attempt in transaction.manager.attempts(10):
                with attempt:
                    for i in range(first, min(first + args.put_batch, count)):
                        queue.put(zasync.Job(jobs.noop, i))
        # No job pending or claimed: all completed (and some pruned).
        wait_until(
            lambda: queue.unsettled() == 0,
            conn,
            args.timeout,
            f"{count} jobs to complete",
        )
        ran = time.perf_counter() - started
        if keep:
            wait_until(
                lambda: queue.counts()["completed"] == 0,
                conn,
                args.timeout,
                f"{count} jobs to be pruned",
            )
        done = time.perf_counter() - started
    finally:
        dispatcher.stop(10)
    transaction.begin()
    unpacked = os.path.getsize(path)
    size = packed_size(db, path)
    conn.close()
    db.close()
    return {
        "growth": (size - baseline) * PER / count,
        "unpacked": (unpacked - baseline) * PER / count,
        "seconds": done,
        "run_seconds": ran,
    }


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--jobs", type=int, default=10_000, help="jobs per run")
    parser.add_argument("--rounds", type=int, default=1, help="medians over these")
    parser.add_argument("--agent-size", type=int, default=3)
    parser.add_argument(
        "--put-batch", type=int, default=500, help="jobs put per transaction"
    )
    parser.add_argument(
        "--age", type=float, default=1.0, help="seconds succeeded jobs are kept"
    )
    parser.add_argument(
        "--every", type=float, default=0.5, help="seconds between two pruning passes"
    )
    parser.add_argument("--timeout", type=float, default=300.0)
    args = parser.parse_args(argv)
    # The dispatcher of this process runs the registered chore: make its
    # passes come often, as the short age wants.
    retention.CHORE.every = args.every
    retention.CHORE.interval = min(args.every, retention.CHORE.interval)
    results = {True: [], False: []}
    with tempfile.TemporaryDirectory(prefix="zasync-bench-retention-") as directory:
        for number in range(args.rounds):
            for keep in (True, False):
                say(
                    f"round {number + 1}/{args.rounds}: {args.jobs} jobs, "
                    f"retention {'on' if keep else 'off'}"
                )
                results[keep].append(run(directory, args.jobs, keep, args))
    rounds = f"{args.rounds} rounds, medians" if args.rounds > 1 else "1 round"
    print(
        f"FileStorage, one dispatcher (agent size {args.agent_size}), "
        f"{args.jobs} trivial jobs per run, {rounds}"
    )
    for keep in (True, False):
        figures = results[keep]
        growth = statistics.median(f["growth"] for f in figures)
        unpacked = statistics.median(f["unpacked"] for f in figures)
        seconds = statistics.median(f["seconds"] for f in figures)
        label = (f"retention on ({args.age:g}s)" if keep else "retention off").ljust(20)
        print(
            f"  {label}  database growth after pack {growth:12,.0f} bytes per "
            f"{PER:,} jobs  (before the pack {unpacked / 1e6:.1f} MB; "
            f"{seconds:.1f}s{' until all were pruned' if keep else ' to run them'})"
        )
    on = statistics.median(f["growth"] for f in results[True])
    off = statistics.median(f["growth"] for f in results[False])
    if off > 0:
        print(f"  with retention the packed database grows {on / off:.2%} as much")
    return 0


if __name__ == "__main__":
    sys.exit(main())
