"""Peers benchmark: zasync beside huey + Redis and Procrastinate + PostgreSQL.

Run with ``make bench`` (after bench_engine.py and bench_cluster.py) or::

    .venv/bin/python benchmarks/bench_peers.py [--quick] [--jobs N]
        [--rounds R] [--system NAME ...] [--json FILE] [--help]

The protocol of issue 13, the same for every system, in one run:

- the workers are started and idle (one warm-up job has run);
- N trivial jobs (default 5,000) are enqueued in a loop by this process,
  ONE transaction each, as a web request would make it; a zasync put that
  raises a ConflictError (or another transient error) is retried until it
  commits, and the enqueues that needed a retry are counted;
- processing rate = N / (first enqueue call .. all N seen done), "done"
  polled every 20 ms (huey: its result hash; Procrastinate: its jobs
  table; zasync: ``queue.counts()``);
- pickup latency = from the enqueue call to the moment the job started
  (the job reads ``time.time()``), on an idle worker: 50 samples, a random
  0.15-0.35 s gap before each;
- CPU ms per job = user + system CPU over the throughput phase of every
  process involved, divided by N: this process (the enqueuer, and for
  FileStorage the dispatcher's threads), the worker processes, and the
  server: the ``redis-server`` process (its pid from ``INFO``), the
  PostgreSQL backends connected to the benchmark's database (from
  ``pg_stat_activity``; PostgreSQL's shared walwriter, checkpointer and
  background writer are NOT counted, nor are other people's backends), the
  ZEO server process;
- the raw commit rate of each storage, measured in the same round with
  the workers stopped: one client making single small transactions (Redis:
  ``INCR``; PostgreSQL: a one-row ``UPDATE`` in autocommit; ZODB storages:
  one small persistent object changed per commit);
- R rounds (default 3), interleaved: every system once per round, in the
  order given; medians over the rounds and per-round ratios are printed.

Systems (``--system``, repeatable; default all):

- ``huey``: huey + Redis (``RedisHuey``), a ``huey_consumer`` process with
  2 worker threads, Redis at 127.0.0.1:6379 (``--redis-url``);
- ``procrastinate``: Procrastinate + PostgreSQL, a ``procrastinate worker``
  process with concurrency 2, psycopg 3, its schema in a database of its
  own (``zasync_bench_procrastinate``, created and dropped here);
- ``fs``: zasync on a FileStorage, the dispatcher in the enqueuing process;
- ``zeo1`` / ``zeo2``: zasync over ZEO, 1 or 2 ``zasync worker`` processes;
- ``relstorage``: zasync on RelStorage (history-free) on PostgreSQL, one
  ``zasync worker`` process, a database of its own per round.

zasync's agent size is ``--agent-size`` (default 2: two threads, as the
peers have). Everything runs on loopback; every wait has a timeout. The
peers' tasks are in benchmarks/peer_tasks.py, zasync's in benchmarks/jobs.py.
``--quick`` is a smoke run: N = 200, 10 pickup samples, 1 round.
"""

import argparse
import contextlib
import datetime
import json
import os
import platform
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

import ZODB
import ZODB.config
import ZODB.FileStorage
from persistent.mapping import PersistentMapping

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import jobs as bench_jobs  # noqa: E402
import peer_tasks  # noqa: E402
from benchsupport import Client, say, version  # noqa: E402

import zasync  # noqa: E402
from zasync.queue import get_queues  # noqa: E402
from zasync.testing import processes  # noqa: E402
from zasync.transact import TRANSIENT_ERRORS  # noqa: E402

SYSTEMS = ("huey", "procrastinate", "fs", "zeo1", "zeo2", "relstorage")
LABELS = {
    "huey": "huey + Redis, 2 threads",
    "procrastinate": "Procrastinate + PostgreSQL, concurrency 2",
    "fs": "zasync, FileStorage, dispatcher in-process",
    "zeo1": "zasync over ZEO, 1 worker",
    "zeo2": "zasync over ZEO, 2 workers",
    "relstorage": "zasync, RelStorage/PostgreSQL, 1 worker",
}
STORAGE = {
    "huey": "Redis",
    "procrastinate": "PostgreSQL",
    "fs": "FileStorage",
    "zeo1": "ZEO",
    "zeo2": "ZEO",
    "relstorage": "RelStorage",
}
# Issue 13's targets: (system, peer it is compared with, minimum ratio,
# pickup p50 ceiling in ms).
TARGETS = (
    ("fs", "huey", 1.0, 2.0),
    ("zeo1", "procrastinate", 1.0, 5.0),
    ("zeo2", "zeo1", 1.0, 5.0),
    ("relstorage", "procrastinate", 1.0, 10.0),
)
POLL = 0.02  # how often "all done" is looked at
PG_NAME = "zasync_bench_procrastinate"
WARNINGS = []


def _bin(name):
    path = os.path.join(os.path.dirname(sys.executable), name)
    return path if os.path.exists(path) else shutil.which(name) or name


def wait_for(predicate, timeout, what, interval=POLL):
    """Poll ``predicate`` until it returns a true value; bounded."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


# -- the protocol's arithmetic (tested in tests/test_bench_peers.py) ----------


def percentile(values, fraction):
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))
    return ordered[index]


def summarize(rounds):
    """Medians over rounds of one system's per-round figures.

    ``rounds`` is a list of dicts with ``rate``, ``pickup_ms`` (a list),
    ``cpu_ms_per_job``, ``raw_rate`` and ``enqueue_conflicted`` (a fraction).
    """

    def med(key):
        values = [r[key] for r in rounds if r.get(key) is not None]
        return statistics.median(values) if values else None

    return {
        "rate": med("rate"),
        "rates": [r["rate"] for r in rounds],
        "pickup_p50_ms": statistics.median(
            [statistics.median(r["pickup_ms"]) for r in rounds]
        ),
        "pickup_p95_ms": statistics.median(
            [percentile(r["pickup_ms"], 0.95) for r in rounds]
        ),
        "cpu_ms_per_job": med("cpu_ms_per_job"),
        "raw_rate": med("raw_rate"),
        "enqueue_conflicted": med("enqueue_conflicted"),
        "worker_conflicts": med("worker_conflicts"),
    }


def ratios(results, system, peer):
    """Per-round ratios of ``system``'s processing rate to ``peer``'s, and
    their median; rounds where either is missing are left out."""
    a, b = results.get(system, []), results.get(peer, [])
    per_round = [x["rate"] / y["rate"] for x, y in zip(a, b, strict=False)]
    return per_round, (statistics.median(per_round) if per_round else None)


# -- CPU of the processes involved -------------------------------------------


def cpu_seconds(pids):
    """{pid: user + system CPU seconds} of the pids that still exist."""
    import psutil

    found = {}
    for pid in set(pids):
        with contextlib.suppress(psutil.Error):
            times = psutil.Process(pid).cpu_times()
            found[pid] = times.user + times.system
    return found


def cpu_used(before, after):
    """CPU seconds between two snapshots; a pid first seen after counts from 0."""
    return sum(after[p] - before.get(p, 0.0) for p in after)


# -- child processes ---------------------------------------------------------


class Child:
    """A peer's worker process, logging to a file, stopped by signal."""

    def __init__(self, argv, log_path, env, stop_signal=signal.SIGTERM):
        self.log_path = log_path
        self.stop_signal = stop_signal
        self.log_file = open(log_path, "ab")  # noqa: SIM115 (closed in stop)
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=self.log_file,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=HERE,
        )

    @property
    def pid(self):
        return self.proc.pid

    def log(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def check(self):
        if self.proc.poll() is not None:
            raise RuntimeError(
                f"{self.proc.args[0]} exited ({self.proc.returncode}):\n"
                f"{self.log()[-3000:]}"
            )

    def stop(self, timeout=30):
        if self.proc.poll() is None:
            self.proc.send_signal(self.stop_signal)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.log_file.close()


def peer_env(**extra):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (HERE, env.get("PYTHONPATH")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


class StampFile:
    """Where the peers' stamp tasks write when they ran."""

    def __init__(self, path):
        self.path = path
        open(path, "w").close()

    def find(self, key):
        with open(self.path) as f:
            for line in f:
                name, _, value = line.partition(" ")
                if name == key and value.endswith("\n"):
                    return float(value)
        return None


# -- the systems -------------------------------------------------------------


class System:
    """One system under test for one round: start() leaves its workers
    idle; enqueue() makes one transaction; stop() stops the workers,
    raw_rate() then measures its storage."""

    key = None
    worker_conflicts = None

    def __init__(self, args, directory):
        self.args = args
        self.directory = directory
        os.makedirs(directory, exist_ok=True)

    def cpu_pids(self):
        return [os.getpid(), *self.worker_pids(), *self.server_pids()]

    def worker_pids(self):
        return []

    def server_pids(self):
        return []

    def close(self):
        pass


class Huey(System):
    key = "huey"

    def start(self):
        import redis

        self.name = f"zasync-bench-{os.getpid()}-{time.time_ns()}"
        os.environ["ZASYNC_BENCH_HUEY_NAME"] = self.name
        os.environ["ZASYNC_BENCH_REDIS_URL"] = self.args.redis_url
        peer_tasks._apps.pop("huey", None)
        self.huey, self.noop, self.stamp_task = peer_tasks.huey_app()
        self.redis = redis.Redis.from_url(self.args.redis_url, socket_timeout=10)
        self.redis_pid = int(self.redis.info("server")["process_id"])
        self.huey.flush()
        self.stamps = StampFile(os.path.join(self.directory, "stamps"))
        self.child = Child(
            [_bin("huey_consumer"), "peer_tasks.huey", "-w", "2", "-k", "thread"],
            os.path.join(self.directory, "huey_consumer.log"),
            peer_env(),
        )
        self.warm_up()

    def warm_up(self):
        result = self.noop(0)
        wait_for(
            lambda: self.child.check() or result.get(preserve=True) is not None,
            60,
            "huey's warm-up task",
        )
        self.done_base = self.huey.storage.result_store_size()

    def enqueue(self, i):
        self.noop(i)
        return 0

    def done(self):
        return self.huey.storage.result_store_size() - self.done_base

    def enqueue_stamp(self, key):
        self.stamp_task(self.stamps.path, key)

    def started_at(self, key):
        return self.stamps.find(key)

    def worker_pids(self):
        return [self.child.pid]

    def server_pids(self):
        return [self.redis_pid]

    def stop(self):
        if hasattr(self, "child"):
            self.child.stop()

    def raw_rate(self, commits):
        key = f"{self.name}-raw"
        began = time.perf_counter()
        for _ in range(commits):
            self.redis.incr(key)
        rate = commits / (time.perf_counter() - began)
        self.redis.delete(key)
        return rate

    def close(self):
        with contextlib.suppress(Exception):
            self.huey.flush()
        if hasattr(self, "redis"):
            self.redis.close()


def pg_connect(dsn, autocommit=True):
    import psycopg

    return psycopg.connect(dsn, autocommit=autocommit, connect_timeout=10)


def pg_admin(sql):
    with pg_connect(processes.POSTGRES_DSN) as conn:
        conn.execute(sql)


def dsn_for(name):
    parts = [p for p in processes.POSTGRES_DSN.split() if not p.startswith("dbname=")]
    return " ".join([*parts, f"dbname={name}"])


def backend_pids(conn, database):
    rows = conn.execute(
        "SELECT pid FROM pg_stat_activity WHERE datname = %s", (database,)
    ).fetchall()
    return [row[0] for row in rows]


class Procrastinate(System):
    key = "procrastinate"

    @classmethod
    def create_database(cls):
        pg_admin(f"DROP DATABASE IF EXISTS {PG_NAME} WITH (FORCE)")
        pg_admin(f"CREATE DATABASE {PG_NAME}")
        os.environ["ZASYNC_BENCH_PROCRASTINATE_DSN"] = dsn_for(PG_NAME)
        peer_tasks._apps.pop("procrastinate", None)
        app = peer_tasks.procrastinate_tasks()[0]
        app.open()
        try:
            app.schema_manager.apply_schema()
        finally:
            app.close()
        peer_tasks._apps.pop("procrastinate", None)

    @classmethod
    def drop_database(cls):
        pg_admin(f"DROP DATABASE IF EXISTS {PG_NAME} WITH (FORCE)")

    def start(self):
        self.dsn = dsn_for(PG_NAME)
        os.environ["ZASYNC_BENCH_PROCRASTINATE_DSN"] = self.dsn
        self.app, self.noop, self.stamp_task = peer_tasks.procrastinate_tasks()
        self.app.open()
        self.sql = pg_connect(self.dsn)
        self.sql.execute("TRUNCATE procrastinate_jobs CASCADE")
        self.stamps = StampFile(os.path.join(self.directory, "stamps"))
        self.child = Child(
            [
                sys.executable,
                "-m",
                "procrastinate",
                "--app",
                "peer_tasks.procrastinate_app",
                "worker",
                "--concurrency",
                "2",
            ],
            os.path.join(self.directory, "procrastinate_worker.log"),
            peer_env(ZASYNC_BENCH_PROCRASTINATE_DSN=self.dsn),
        )
        self.noop.defer(i=0)
        wait_for(
            lambda: self.child.check() or self.done() >= 1,
            60,
            "Procrastinate's warm-up task",
        )
        self.done_base = 1

    def done(self):
        row = self.sql.execute(
            "SELECT count(*) FROM procrastinate_jobs"
            " WHERE status = 'succeeded' AND task_name = 'noop'"
        ).fetchone()
        return row[0] - getattr(self, "done_base", 0)

    def enqueue(self, i):
        self.noop.defer(i=i)
        return 0

    def enqueue_stamp(self, key):
        self.stamp_task.defer(path=self.stamps.path, key=key)

    def started_at(self, key):
        return self.stamps.find(key)

    def worker_pids(self):
        return [self.child.pid]

    def server_pids(self):
        return backend_pids(self.sql, PG_NAME)

    def stop(self):
        if hasattr(self, "child"):
            self.child.stop()
        if hasattr(self, "app"):
            self.app.close()

    def raw_rate(self, commits):
        self.sql.execute("CREATE TABLE IF NOT EXISTS bench_raw (id int, value int)")
        self.sql.execute("TRUNCATE bench_raw")
        self.sql.execute("INSERT INTO bench_raw VALUES (1, 0)")
        began = time.perf_counter()
        for i in range(commits):
            self.sql.execute("UPDATE bench_raw SET value = %s WHERE id = 1", (i,))
        rate = commits / (time.perf_counter() - began)
        return rate

    def close(self):
        if hasattr(self, "sql"):
            self.sql.close()


class Zasync(System):
    """zasync: this process enqueues through a connection of its own."""

    queue_name = "bench"

    def open_db(self):
        raise NotImplementedError

    def start(self):
        self.client = Client(self.open_db())
        self.db, self.tm, self.conn = self.client.db, self.client.tm, self.client.conn
        self.write(lambda root: get_queues(self.conn).create(self.queue_name))
        self.start_workers()
        self.conflicts = {}
        self.warm = self.enqueue_job(bench_jobs.noop, 0)[0]
        wait_for(lambda: self.done_count() >= 1, 60, f"{self.key}'s warm-up job")
        self.done_base = 1
        self.conflicts = {}
        self.jobs = {}

    def write(self, func):
        return self.client.write(func)

    def read(self, func):
        return self.client.read(func)

    def queue(self):
        return self.client.queue(self.queue_name)

    def enqueue_job(self, func, *args):
        """Put one job in one transaction, retrying transient errors;
        (job, how many attempts failed)."""
        failures = 0
        while True:
            self.tm.begin()
            try:
                job = self.queue().put(zasync.Job(func, *args))
                self.tm.commit()
                return job, failures
            except TRANSIENT_ERRORS as exc:
                self.tm.abort()
                failures += 1
                name = type(exc).__name__
                self.conflicts[name] = self.conflicts.get(name, 0) + 1
                if failures > 1000:
                    raise

    def enqueue(self, i):
        return self.enqueue_job(bench_jobs.noop, i)[1]

    def done_count(self):
        return self.read(lambda root: self.queue().counts()["completed"])

    def done(self):
        return self.done_count() - self.done_base

    def enqueue_stamp(self, key):
        self.jobs[key] = self.enqueue_job(bench_jobs.stamp)[0]

    def started_at(self, key):
        job = self.jobs[key]
        return self.read(
            lambda root: job.result if job.status.value == "completed" else None
        )

    def raw_rate(self, commits):
        def make(root):
            root["raw"] = PersistentMapping(value=0)

        self.write(make)
        began = time.perf_counter()
        for i in range(commits):
            self.tm.begin()
            self.conn.root()["raw"]["value"] = i
            self.tm.commit()
        rate = commits / (time.perf_counter() - began)
        return rate

    def close(self):
        if hasattr(self, "client"):
            self.client.close()


class FileStorageInProcess(Zasync):
    key = "fs"

    def open_db(self):
        path = os.path.join(self.directory, "Data.fs")
        return ZODB.DB(ZODB.FileStorage.FileStorage(path))

    def start_workers(self):
        self.dispatcher = zasync.start(
            self.db, queues=(self.queue_name,), agent_size=self.args.agent_size
        )

    def stop(self):
        if hasattr(self, "dispatcher"):
            stats = getattr(self.dispatcher, "stats", {}) or {}
            self.worker_conflicts = stats.get("conflicts")
            self.dispatcher.stop(30)


class WorkerProcesses(Zasync):
    """zasync worker processes on a storage served to several processes."""

    workers = 1
    server_pid = None

    def open_db(self):
        self.conf = self.make_conf()
        return ZODB.config.databaseFromURL(self.conf)

    def start_workers(self):
        self.worker_list = []
        for i in range(self.workers):
            worker = processes.Worker(
                os.path.join(self.directory, "workers"),
                f"{self.key}-{i}",
                self.conf,
                options=[
                    "--queue",
                    self.queue_name,
                    "--agent-size",
                    str(self.args.agent_size),
                ],
                env=peer_env(),
            )
            self.worker_list.append(worker)
            worker.start()

    def worker_pids(self):
        return [w.pid for w in self.worker_list]

    def stop(self):
        conflicts = 0
        for worker in getattr(self, "worker_list", ()):
            worker.terminate(60)
            conflicts += (worker.stats() or {}).get("conflicts", 0)
        self.worker_conflicts = conflicts


class ZEO(WorkerProcesses):
    key = "zeo1"

    def make_conf(self):
        self.zeo = processes.ZEOServer(os.path.join(self.directory, "zeo")).start()
        self.server_pid = self.zeo.pid
        return self.zeo.client_conf(os.path.join(self.directory, "client.conf"))

    def server_pids(self):
        return [self.zeo.pid]

    def close(self):
        super().close()
        if hasattr(self, "zeo"):
            self.zeo.stop()


class ZEO2(ZEO):
    key = "zeo2"
    workers = 2


class RelStorage(WorkerProcesses):
    key = "relstorage"

    def make_conf(self):
        self.database = processes.PostgresDatabase(
            f"zasync_bench_rs_{os.getpid()}_{time.time_ns() % 10**6}"
        ).create()
        self.sql = pg_connect(processes.POSTGRES_DSN)
        return self.database.zodb_conf(os.path.join(self.directory, "rs.conf"))

    def server_pids(self):
        return backend_pids(self.sql, self.database.name)

    def close(self):
        super().close()
        if hasattr(self, "sql"):
            self.sql.close()
        if hasattr(self, "database"):
            self.database.drop()


CLASSES = {
    "huey": Huey,
    "procrastinate": Procrastinate,
    "fs": FileStorageInProcess,
    "zeo1": ZEO,
    "zeo2": ZEO2,
    "relstorage": RelStorage,
}


# -- one system, one round ---------------------------------------------------


def measure(system, args):
    """Throughput, pickup and raw commit rate of one system in one round."""
    try:
        return _measure(system, args)
    finally:
        system.close()


def _measure(system, args):
    n = args.jobs
    say(f"{LABELS[system.key]}: starting workers")
    try:
        system.start()
        pids = system.cpu_pids()
        cpu_before = cpu_seconds(pids)
        say(f"{LABELS[system.key]}: {n} jobs, one transaction each")
        conflicted = 0
        began = time.perf_counter()
        for i in range(1, n + 1):
            if system.enqueue(i):
                conflicted += 1
        enqueued = time.perf_counter()
        wait_for(
            lambda: system.done() >= n,
            args.timeout,
            f"{n} jobs done on {LABELS[system.key]}",
        )
        ended = time.perf_counter()
        cpu_after = cpu_seconds(system.cpu_pids() + pids)
        cpu = cpu_used(cpu_before, cpu_after)

        say(f"{LABELS[system.key]}: pickup, {args.pickup_samples} samples")
        pickup = []
        for index in range(args.pickup_samples):
            time.sleep(random.uniform(0.15, 0.35))
            key = f"p{index}-{time.time_ns()}"
            called = time.time()
            system.enqueue_stamp(key)
            ran = wait_for(
                lambda key=key: system.started_at(key),
                30,
                f"pickup job {index} on {LABELS[system.key]}",
                interval=0.001,
            )
            pickup.append((ran - called) * 1000)
    finally:
        system.stop()
    say(f"{LABELS[system.key]}: raw commit rate of {STORAGE[system.key]}")
    raw = system.raw_rate(args.raw_commits)
    return {
        "rate": n / (ended - began),
        "enqueue_s": enqueued - began,
        "seconds": ended - began,
        "cpu_ms_per_job": cpu * 1000 / n,
        "pickup_ms": pickup,
        "raw_rate": raw,
        "enqueue_conflicted": conflicted / n if system.key not in PEERS else None,
        "conflict_types": dict(getattr(system, "conflicts", {}) or {}),
        "worker_conflicts": system.worker_conflicts,
    }


PEERS = ("huey", "procrastinate")


# -- the report ----------------------------------------------------------------


def fmt(value, spec=".0f", missing="-"):
    return missing if value is None else format(value, spec)


def report(results, args, facts):
    out = []
    w = out.append
    w("zasync beside its peers (issue 13's protocol)")
    w(
        f"  machine   {facts['cores']} cores, {facts['platform']}, Python "
        f"{facts['python']}; {facts['load']} (at start)"
    )
    w(f"  software  {facts['software']}")
    w(f"  Redis     {facts.get('redis', '-')}")
    w(f"  Postgres  {facts.get('postgres', '-')}")
    w(
        f"  N = {args.jobs} trivial jobs, one transaction each; {args.rounds} "
        f"interleaved round(s); zasync agent size {args.agent_size}; pickup "
        f"{args.pickup_samples} samples"
    )
    w("  CPU: this process + worker processes + the server (redis-server; the")
    w("  PostgreSQL backends of the benchmark's database; the ZEO server)")
    w("")
    head = (
        f"  {'system':44}{'jobs/s':>8}{'pickup':>8}{'p95':>7}{'CPU ms':>8}"
        f"{'enq.':>7}{'worker':>8}{'raw':>9}{'jobs/s':>8}"
    )
    w(head)
    w(
        f"  {'':44}{'median':>8}{'p50 ms':>8}{'ms':>7}{'/job':>8}"
        f"{'confl.':>7}{'confl.':>8}{'commit/s':>9}{'/raw':>8}"
    )
    summaries = {}
    for key in args.system:
        rounds = results.get(key)
        if not rounds:
            continue
        s = summaries[key] = summarize(rounds)
        conflicted = (
            "-" if s["enqueue_conflicted"] is None else f"{s['enqueue_conflicted']:.1%}"
        )
        per_raw = s["rate"] / s["raw_rate"] if s["raw_rate"] else None
        w(
            f"  {LABELS[key]:44}{fmt(s['rate']):>8}{fmt(s['pickup_p50_ms'], '.1f'):>8}"
            f"{fmt(s['pickup_p95_ms'], '.1f'):>7}{fmt(s['cpu_ms_per_job'], '.2f'):>8}"
            f"{conflicted:>7}{fmt(s['worker_conflicts']):>8}"
            f"{fmt(s['raw_rate']):>9}{fmt(per_raw, '.2f'):>8}"
        )
    w("")
    w("  jobs/s per round: " + ("" if args.rounds > 1 else "(one round)"))
    for key in summaries:
        w(
            f"    {LABELS[key]:44}"
            + "  ".join(f"{r:7.0f}" for r in summaries[key]["rates"])
        )
    w("")
    w("  ratios of processing rates, per round (median):")
    for key in ("fs", "zeo1", "zeo2", "relstorage"):
        for peer in ("huey", "procrastinate") + (("zeo1",) if key == "zeo2" else ()):
            if key in summaries and peer in summaries:
                per_round, med = ratios(results, key, peer)
                w(
                    f"    {key + ' / ' + peer:28}"
                    + "  ".join(f"{r:5.2f}" for r in per_round)
                    + f"   ({med:.2f})"
                )
    w("")
    w("  enqueue conflicts by exception (all rounds):")
    for key in summaries:
        kinds = {}
        for r in results[key]:
            for name, count in r["conflict_types"].items():
                kinds[name] = kinds.get(name, 0) + count
        if key not in PEERS:
            shown = ", ".join(f"{k} {v}" for k, v in sorted(kinds.items())) or "none"
            w(f"    {LABELS[key]:44}{shown}")
    w("")
    w("  issue 13's targets (median over rounds):")
    for key, peer, ratio, ceiling in TARGETS:
        if key not in summaries or peer not in summaries:
            continue
        _, med = ratios(results, key, peer)
        p50 = summaries[key]["pickup_p50_ms"]
        raw = summaries[key]["raw_rate"]
        verdict = "MET" if med >= ratio and p50 <= ceiling else "MISSED"
        w(
            f"    {key:11}>= {ratio:g} x {peer:14}{med:5.2f} x; pickup p50 "
            f"{p50:5.1f} ms <= {ceiling:g}   {verdict}"
            f"   (raw {STORAGE[key]} {raw:.0f} commits/s)"
        )
    for warning in WARNINGS:
        w(f"WARNING: {warning}")
    w(f"total time {results['_seconds']:.0f} s")
    return "\n".join(out)


def machine_facts(args):
    try:
        load = "load average {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())
    except OSError:
        load = ""
    facts = {
        "cores": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "load": load,
        "software": ", ".join(
            f"{name} {version(name)}"
            for name in (
                "zasync",
                "ZODB",
                "ZEO",
                "RelStorage",
                "huey",
                "redis",
                "procrastinate",
                "psycopg",
            )
        ),
    }
    with contextlib.suppress(Exception):
        import redis

        r = redis.Redis.from_url(args.redis_url, socket_timeout=5)
        info = r.info()
        persistence = r.config_get("appendonly")
        fsync = r.config_get("appendfsync")
        facts["redis"] = (
            f"{args.redis_url}, server {info['redis_version']}, appendonly "
            f"{persistence.get('appendonly')}, appendfsync {fsync.get('appendfsync')}"
        )
        r.close()
    with contextlib.suppress(Exception), pg_connect(processes.POSTGRES_DSN) as conn:
        shown = []
        for setting in ("server_version", "fsync", "synchronous_commit"):
            shown.append(f"{setting} {conn.execute(f'SHOW {setting}').fetchone()[0]}")
        facts["postgres"] = "127.0.0.1, " + ", ".join(shown)
    return facts


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--jobs", type=int, default=5000, help="N, jobs per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--pickup-samples", type=int, default=50)
    parser.add_argument(
        "--raw-commits", type=int, default=1000, help="commits for the raw rate"
    )
    parser.add_argument("--agent-size", type=int, default=2, help="zasync threads")
    parser.add_argument(
        "--system",
        action="append",
        choices=SYSTEMS,
        help="a system to measure (repeatable; default: all, in this order: "
        + ", ".join(SYSTEMS)
        + ")",
    )
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument(
        "--timeout", type=float, default=900, help="seconds for N jobs to be done"
    )
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: N=200, 10 samples, 1 round"
    )
    parser.add_argument("--json", metavar="FILE", help="also write the figures here")
    parser.add_argument("--keep", action="store_true", help="keep the directory")
    args = parser.parse_args(argv)
    if args.quick:
        args.jobs, args.pickup_samples, args.rounds = 200, 10, 1
        args.raw_commits = min(args.raw_commits, 200)
    args.system = args.system or list(SYSTEMS)
    return args


def redis_available(url):
    try:
        import redis

        client = redis.Redis.from_url(url, socket_timeout=3, socket_connect_timeout=3)
        try:
            return client.ping()
        finally:
            client.close()
    except Exception:
        return False


def main(argv=None):
    args = parse_args(argv)
    began = time.monotonic()
    facts = machine_facts(args)
    needs_pg = {"procrastinate", "relstorage"} & set(args.system)
    if needs_pg and not processes.postgres_available():
        say(f"PostgreSQL unreachable at {processes.POSTGRES_DSN!r}: leaving out")
        WARNINGS.append("PostgreSQL unreachable: Procrastinate, RelStorage left out")
        args.system = [s for s in args.system if s not in needs_pg]
    if "huey" in args.system and not redis_available(args.redis_url):
        say(f"Redis unreachable at {args.redis_url}: leaving huey out")
        WARNINGS.append(f"Redis unreachable at {args.redis_url}: huey left out")
        args.system = [s for s in args.system if s != "huey"]
    directory = tempfile.mkdtemp(prefix="zasync-peers-bench-")
    results = {}
    failed = True
    try:
        with contextlib.ExitStack() as stack:
            if "procrastinate" in args.system:
                Procrastinate.create_database()
                stack.callback(Procrastinate.drop_database)
            for number in range(1, args.rounds + 1):
                for key in args.system:
                    say(f"round {number}: {LABELS[key]}")
                    system = CLASSES[key](
                        args, os.path.join(directory, f"r{number}-{key}")
                    )
                    results.setdefault(key, []).append(measure(system, args))
        failed = False
    finally:
        if args.keep or failed:
            say(f"kept {directory} (logs, storages)")
        else:
            shutil.rmtree(directory, ignore_errors=True)
    results["_seconds"] = time.monotonic() - began
    print(report(results, args, facts))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {
                    "facts": facts,
                    "args": vars(args),
                    "results": results,
                    "started": datetime.datetime.now().isoformat(timespec="seconds"),
                },
                f,
                indent=2,
                default=str,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
