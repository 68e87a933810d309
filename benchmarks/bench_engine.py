"""Engine benchmark: throughput, pickup latency and storage cost per job.

Run with ``make bench``. All figures come from one process on one
FileStorage in a temporary directory:

- raw commit rate: single-object commits on the same storage, same run;
- throughput: N trivial jobs put in one transaction, from the commit of
  that transaction until all are completed, with the ratio to the raw rate;
- pickup latency: commit of a put to the start of the job on an idle
  dispatcher, p50 and p99;
- bytes added to the storage per completed job.
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
from persistent.mapping import PersistentMapping

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import jobs  # noqa: E402

import zasync  # noqa: E402

TARGET_RATIO = 0.5
TARGET_PICKUP_P50_MS = 10.0


def raw_commit_rate(db, commits):
    conn = db.open()
    root = conn.root()
    root["raw"] = PersistentMapping()
    transaction.commit()
    started = time.perf_counter()
    for i in range(commits):
        root["raw"]["value"] = i
        transaction.commit()
    rate = commits / (time.perf_counter() - started)
    conn.close()
    return rate


def wait_until_done(conn, queue, count, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        # Look rarely, so that watching does not slow the dispatcher down.
        time.sleep(0.02)
        transaction.begin()
        if queue.counts()["completed"] >= count:
            return time.perf_counter()
    raise SystemExit(f"timed out: {queue.counts()}")


def throughput(db, path, count, agent_size):
    conn = db.open()
    queue = zasync.get_queues(conn).create("bench")
    transaction.commit()
    dispatcher = zasync.start(db, queues=("bench",), agent_size=agent_size)
    for i in range(count):
        queue.put(zasync.Job(jobs.noop, i))
    size_before = os.path.getsize(path)
    transaction.commit()
    started = time.perf_counter()
    ended = wait_until_done(conn, queue, count, timeout=600)
    dispatcher.stop(10)
    transaction.begin()
    size_after = os.path.getsize(path)
    rounds = dispatcher.stats["rounds"]
    conn.close()
    return count / (ended - started), (size_after - size_before) / count, rounds


def pickup_latency(db, samples):
    conn = db.open()
    queue = zasync.get_queues(conn)[""]
    transaction.commit()
    dispatcher = zasync.start(db, poll_interval=1.0)
    latencies = []
    for _ in range(samples):
        job = queue.put(zasync.Job(jobs.stamp))
        transaction.commit()
        committed = time.time()
        zasync.testing.wait_for_result(job, seconds=10)
        # jobs.stamp returns the wall-clock moment the job ran.
        latencies.append((job.result - committed) * 1000)
    dispatcher.stop(10)
    conn.close()
    latencies.sort()
    return statistics.median(latencies), latencies[int(len(latencies) * 0.99) - 1]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=5000)
    parser.add_argument("--agent-size", type=int, default=3)
    parser.add_argument("--raw-commits", type=int, default=3000)
    parser.add_argument("--latency-samples", type=int, default=200)
    args = parser.parse_args(argv)
    import zasync.testing  # noqa: F401

    with tempfile.TemporaryDirectory(prefix="zasync-bench-") as directory:
        path = os.path.join(directory, "Data.fs")
        db = ZODB.DB(ZODB.FileStorage.FileStorage(path))
        raw = raw_commit_rate(db, args.raw_commits)
        rate, bytes_per_job, rounds = throughput(db, path, args.jobs, args.agent_size)
        raw_after = raw_commit_rate(db, args.raw_commits)
        p50, p99 = pickup_latency(db, args.latency_samples)
        db.close()

    raw_rate = (raw + raw_after) / 2
    ratio = rate / raw_rate
    print(
        f"FileStorage, one process, {args.jobs} trivial jobs, "
        f"agent size {args.agent_size}"
    )
    print(
        f"  raw commit rate            {raw_rate:9.0f} commits/s "
        f"(before {raw:.0f}, after {raw_after:.0f})"
    )
    print(
        f"  throughput                 {rate:9.0f} jobs/s  "
        f"({rounds} dispatcher rounds, {args.jobs / max(rounds, 1):.1f} jobs per round)"
    )
    print(
        f"  throughput / raw commits   {ratio:9.2f}        target >= {TARGET_RATIO}"
        f"  {'MET' if ratio >= TARGET_RATIO else 'MISSED'}"
    )
    print(
        f"  pickup latency p50         {p50:9.2f} ms     "
        f"target < {TARGET_PICKUP_P50_MS}"
        f"  {'MET' if p50 < TARGET_PICKUP_P50_MS else 'MISSED'}"
    )
    print(f"  pickup latency p99         {p99:9.2f} ms")
    print(f"  storage bytes per job      {bytes_per_job:9.0f} bytes (before packing)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
