"""Concurrent-enqueue benchmark: how often a put conflicts, and on what.

Run with ``make bench`` (after bench_peers.py) or::

    .venv/bin/python benchmarks/bench_enqueue.py [--quick] [--producers P]
        [--jobs J] [--only fs|zeo] [--json FILE] [--help]

Issue 13's concurrent enqueue, four runs:

- FileStorage, P producer THREADS (default 8) in this process, each with
  its own connection and transaction manager;
- ZEO, P producer PROCESSES (each ``bench_enqueue.py --producer``), one
  ZEO server on loopback;

each once with nobody draining the queue and once with a dispatcher
draining it (FileStorage: ``zasync.start`` in this process; ZEO: one
``zasync worker`` process), agent size 2. Every producer puts J jobs
(default 200), ONE put per commit, all producers released at once. A put
whose commit raises a transient error (ConflictError, ReadConflictError,
...) is aborted and retried until it commits; every failed attempt is
counted with the exception's class and the oid and class of the object
that conflicted (ZODB's ConflictError carries both). After the run the
oids are named by walking the queue's persistent structures (``Queue``
attributes, their BTree buckets, Lengths, quotas, the dispatcher
registry): ``Queue._jobs bucket 7 (rightmost)``, ``Queue._lanes``...
An oid that is no longer reachable (a bucket merged away) is shown by its
class only. The numbers of the buckets are those at the end of the run: a
bucket that was the rightmost one when it conflicted may have split since.

Printed: per run, the share of enqueues that conflicted at least once,
failed attempts per enqueue, the enqueue rate, the dispatcher's own
conflicts, and a table of what conflicted. ``--quick``: 4 producers x 30
jobs. The target of issue 13 is at most 1 % of enqueues conflicting.
"""

import argparse
import contextlib
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time

import transaction
import ZODB
import ZODB.config
import ZODB.FileStorage
from persistent import Persistent
from ZODB.utils import u64, z64

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import jobs as bench_jobs  # noqa: E402
from benchsupport import say  # noqa: E402

import zasync  # noqa: E402
from zasync.queue import get_queues  # noqa: E402
from zasync.transact import TRANSIENT_ERRORS  # noqa: E402

QUEUE = "enqueue"
TARGET = 0.01


# -- one producer ------------------------------------------------------------


def describe(exc):
    """(exception class, oid as int or None, class of the conflicting object)."""
    oid = getattr(exc, "oid", None)
    class_name = getattr(exc, "class_name", None)
    return type(exc).__name__, (u64(oid) if oid else None), class_name


def produce(db, count, go=None, queue_name=QUEUE):
    """Put ``count`` jobs, one per commit, retrying; the failed attempts."""
    tm = transaction.TransactionManager(explicit=True)
    conn = db.open(transaction_manager=tm)
    failures, conflicted = [], 0
    try:
        tm.begin()
        get_queues(conn)[queue_name].counts()  # warm the cache
        tm.abort()
        if go is not None:
            go()
        started = time.perf_counter()
        for i in range(count):
            failed_before = len(failures)
            while True:
                tm.begin()
                try:
                    get_queues(conn)[queue_name].put(zasync.Job(bench_jobs.noop, i))
                    tm.commit()
                    break
                except TRANSIENT_ERRORS as exc:
                    tm.abort()
                    failures.append(describe(exc))
                    if len(failures) - failed_before > 1000:
                        raise
            if len(failures) > failed_before:
                conflicted += 1
        ended = time.perf_counter()
    finally:
        with contextlib.suppress(Exception):
            tm.abort()
        conn.close()
    return {
        "puts": count,
        "conflicted": conflicted,
        "failures": failures,
        "start": started,
        "end": ended,
    }


def producer_main(conf, count):
    """``--producer CONF COUNT``: a producer process, for the ZEO runs."""
    db = ZODB.config.databaseFromURL(conf)
    try:

        def go():
            print("ready", flush=True)
            if not sys.stdin.readline():
                raise SystemExit("no go")

        result = produce(db, count, go)
        # perf_counter is per-process: send wall-clock-free durations.
        result["seconds"] = result["end"] - result["start"]
        print(json.dumps(result), flush=True)
    finally:
        db.close()
    return 0


# -- naming the oids -----------------------------------------------------------


def structure_names(queue, others=()):
    """{oid int: where it is in the queue's structures}, jobs left out;
    ``others``: more (name, object) pairs to walk after the queue."""
    names = {}

    def name(obj, path):
        if not isinstance(obj, Persistent) or isinstance(obj, zasync.Job):
            return False
        oid = obj._p_oid
        if oid is None or u64(oid) in names:
            return False
        names[u64(oid)] = path
        return True

    def visit(obj, path, depth=0):
        if not name(obj, path) or depth > 4:
            return
        module = type(obj).__module__
        if module.startswith("BTrees"):
            if not hasattr(obj, "items"):  # Length
                return
            state = obj.__getstate__()
            tree = type(obj).__name__.endswith(("BTree", "TreeSet"))
            if tree and state and len(state) == 2:  # buckets of their own
                bucket, index, leaves = state[1], 0, []
                while bucket is not None:
                    leaves.append(bucket)
                    bstate = bucket.__getstate__()
                    bucket = bstate[1] if len(bstate) > 1 else None
                    index += 1
                for i, leaf in enumerate(leaves):
                    last = " (rightmost)" if i == len(leaves) - 1 else ""
                    name(leaf, f"{path} bucket {i + 1} of {len(leaves)}{last}")
                for child in state[0][0::2]:
                    if hasattr(child, "__getstate__") and child not in leaves:
                        name(child, f"{path} interior node")
            for key, value in obj.items():
                if isinstance(value, Persistent) and not isinstance(value, zasync.Job):
                    visit(value, f"{path}[{key!r}]", depth + 1)
            return
        with contextlib.suppress(TypeError):
            for attr, value in sorted(vars(obj).items()):
                if isinstance(value, tuple):  # the queue's inbox shards
                    for i, item in enumerate(value):
                        visit(item, f"{path}.{attr}[{i}]", depth + 1)
                else:
                    visit(value, f"{path}.{attr}", depth + 1)

    visit(queue, "Queue")
    for path, obj in others:
        visit(obj, path)
    return names


# -- the runs ----------------------------------------------------------------


BUCKET = re.compile(r" bucket \d+ of \d+( \(rightmost\))?$")


def summarize(label, results, names, dispatcher_conflicts, by_oid=False):
    """The figures of one run; its table has a row per (exception, place,
    class): [exception, place, class, failed attempts, distinct oids]. The
    buckets of one BTree are one place unless ``by_oid``."""
    puts = sum(r["puts"] for r in results)
    conflicted = sum(r["conflicted"] for r in results)
    failures = [f for r in results for f in r["failures"]]
    seconds = max(r["seconds"] for r in results)
    table = {}
    for kind, oid, class_name in failures:
        where = names.get(oid) if oid is not None else None
        if where is None:
            where = f"{class_name or '?'}" + (
                ", no longer in the queue's structures" if oid is not None else ""
            )
        if not by_oid:
            where = BUCKET.sub(" buckets", where)
        key = (kind, where, class_name or "-")
        count, oids = table.get(key, (0, set()))
        oids.add(oid)
        table[key] = (count + 1, oids)
    return {
        "label": label,
        "puts": puts,
        "conflicted": conflicted,
        "conflicted_share": conflicted / puts,
        "failed_attempts": len(failures),
        "seconds": seconds,
        "puts_per_s": puts / seconds,
        "dispatcher_conflicts": dispatcher_conflicts,
        "table": sorted(
            ([*k, count, len(oids)] for k, (count, oids) in table.items()),
            key=lambda row: -row[3],
        ),
    }


def read_names(db):
    tm = transaction.TransactionManager(explicit=True)
    conn = db.open(transaction_manager=tm)
    try:
        tm.begin()
        queues = get_queues(conn)
        return structure_names(
            queues[QUEUE], [("Queues", queues), ("root", conn.get(z64))]
        )
    finally:
        tm.abort()
        conn.close()


def create_queue(db):
    tm = transaction.TransactionManager(explicit=True)
    conn = db.open(transaction_manager=tm)
    tm.begin()
    get_queues(conn).create(QUEUE)
    tm.commit()
    conn.close()


def wait_drained(db, puts, timeout):
    tm = transaction.TransactionManager(explicit=True)
    conn = db.open(transaction_manager=tm)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            tm.begin()
            done = get_queues(conn)[QUEUE].counts()["completed"]
            tm.abort()
            if done >= puts:
                return
            time.sleep(0.05)
        raise TimeoutError(f"the dispatcher did not drain {puts} jobs in {timeout} s")
    finally:
        conn.close()


def run_filestorage(directory, args, draining):
    label = f"FileStorage, {args.producers} threads, " + (
        "a dispatcher draining" if draining else "no dispatcher"
    )
    say(label)
    db = ZODB.DB(ZODB.FileStorage.FileStorage(os.path.join(directory, "Data.fs")))
    dispatcher = None
    try:
        create_queue(db)
        if draining:
            dispatcher = zasync.start(db, queues=(QUEUE,), agent_size=2)
        barrier = threading.Barrier(args.producers, timeout=60)
        results, errors = [None] * args.producers, []

        def work(index):
            try:
                r = produce(db, args.jobs, barrier.wait)
                r["seconds"] = r["end"] - r["start"]
                results[index] = r
            except BaseException as exc:  # reported below
                errors.append(exc)
                barrier.abort()

        threads = [
            threading.Thread(target=work, args=(i,), daemon=True)
            for i in range(args.producers)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(args.timeout)
        if errors or any(t.is_alive() for t in threads):
            raise RuntimeError(f"a producer failed or hung: {errors!r}")
        dispatcher_conflicts = None
        if dispatcher is not None:
            wait_drained(db, args.producers * args.jobs, args.timeout)
            dispatcher.stop(30)
            dispatcher_conflicts = (dispatcher.stats or {}).get("conflicts")
            dispatcher = None
        return summarize(
            label, results, read_names(db), dispatcher_conflicts, args.by_oid
        )
    finally:
        if dispatcher is not None:
            dispatcher.stop(30)
        db.close()


def run_zeo(directory, args, draining):
    from zasync.testing import processes

    label = f"ZEO, {args.producers} processes, " + (
        "a worker process draining" if draining else "no dispatcher"
    )
    say(label)
    zeo = processes.ZEOServer(os.path.join(directory, "zeo")).start()
    procs, worker, db = [], None, None
    try:
        conf = zeo.client_conf(os.path.join(directory, "client.conf"))
        db = ZODB.config.databaseFromURL(conf)
        create_queue(db)
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (HERE, env.get("PYTHONPATH")) if p
        )
        if draining:
            worker = processes.Worker(
                os.path.join(directory, "workers"),
                "drain",
                conf,
                options=["--queue", QUEUE, "--agent-size", "2"],
                env=env,
            )
            worker.start()
        for _ in range(args.producers):
            procs.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        os.path.abspath(__file__),
                        "--producer",
                        conf,
                        str(args.jobs),
                    ],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    text=True,
                    env=env,
                )
            )
        for proc in procs:
            if read_line(proc, 60).strip() != "ready":
                raise RuntimeError("a producer did not start")
        for proc in procs:
            proc.stdin.write("go\n")
            proc.stdin.flush()
        results = [json.loads(read_line(proc, args.timeout)) for proc in procs]
        for proc in procs:
            proc.wait(30)
        dispatcher_conflicts = None
        if worker is not None:
            wait_drained(db, args.producers * args.jobs, args.timeout)
            worker.terminate(60)
            dispatcher_conflicts = (worker.stats() or {}).get("conflicts")
            worker = None
        for r in results:
            r["failures"] = [tuple(f) for f in r["failures"]]
        return summarize(
            label, results, read_names(db), dispatcher_conflicts, args.by_oid
        )
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
        if worker is not None:
            worker.terminate(60)
        if db is not None:
            db.close()
        zeo.stop()


def read_line(proc, timeout):
    """One line of a producer's stdout, within ``timeout`` seconds."""
    import select

    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    if not ready:
        raise TimeoutError("a producer said nothing in time")
    line = proc.stdout.readline()
    if not line:
        raise RuntimeError(f"a producer exited ({proc.wait(10)})")
    return line


# -- the report ----------------------------------------------------------------


def fmt(value):
    return "-" if value is None else str(value)


def report(runs, args):
    out = []
    w = out.append
    w(
        f"Concurrent enqueue: {args.producers} producers x {args.jobs} jobs, "
        "one put per commit, failed puts retried until they commit"
    )
    w("")
    w(
        f"  {'run':50}{'puts':>7}{'conflicted':>12}{'failed':>10}{'puts/s':>8}"
        f"{'dispatcher':>12}"
    )
    w(f"  {'':50}{'':>7}{'enqueues':>12}{'attempts':>10}{'':>8}{'conflicts':>12}")
    for run in runs:
        verdict = "MET" if run["conflicted_share"] <= TARGET else "MISSED"
        w(
            f"  {run['label']:50}{run['puts']:>7}"
            f"{run['conflicted_share']:>12.1%}{run['failed_attempts']:>10}"
            f"{run['puts_per_s']:>8.0f}"
            f"{fmt(run['dispatcher_conflicts']):>12}"
            f"   target <= {TARGET:.0%} {verdict}"
        )
    w("")
    for run in runs:
        w(f"  what conflicted: {run['label']}")
        if not run["table"]:
            w("    nothing")
        else:
            w(f"    {'failed':>6} {'oids':>5}  {'exception':22}where  [class]")
        for kind, where, class_name, count, oids in run["table"][: args.rows]:
            w(f"    {count:6} {oids:5}  {kind:22}{where}  [{class_name}]")
        if len(run["table"]) > args.rows:
            rest = run["table"][args.rows :]
            w(f"    {sum(r[3] for r in rest):6}  in {len(rest)} more rows (--rows)")
        w("")
    return "\n".join(out)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--producer"]:
        return producer_main(argv[1], int(argv[2]))
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--producers", type=int, default=8)
    parser.add_argument("--jobs", type=int, default=200, help="jobs per producer")
    parser.add_argument("--only", choices=["fs", "zeo"], help="one storage only")
    parser.add_argument("--timeout", type=float, default=600)
    parser.add_argument("--rows", type=int, default=15, help="rows of each table")
    parser.add_argument(
        "--by-oid", action="store_true", help="a row per bucket, not per BTree"
    )
    parser.add_argument("--quick", action="store_true", help="4 producers x 30 jobs")
    parser.add_argument("--json", metavar="FILE", help="also write the figures here")
    args = parser.parse_args(argv)
    if args.quick:
        args.producers, args.jobs = 4, 30
    runs = []
    with tempfile.TemporaryDirectory(prefix="zasync-enqueue-bench-") as directory:
        for number, (storage, draining) in enumerate(
            [("fs", False), ("fs", True), ("zeo", False), ("zeo", True)]
        ):
            if args.only and storage != args.only:
                continue
            where = os.path.join(directory, str(number))
            os.makedirs(where)
            run = run_filestorage if storage == "fs" else run_zeo
            runs.append(run(where, args, draining))
    print(report(runs, args))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(runs, f, indent=2, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())
