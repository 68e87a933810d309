"""Cluster benchmark: ``zasync worker`` processes on ZEO and on RelStorage.

Run with ``make bench`` (after bench_engine.py) or on its own::

    .venv/bin/python benchmarks/bench_cluster.py [--json FILE] [--help]

Everything runs on this machine, on loopback, in a temporary directory: a
ZEO server (FileStorage) on a free port, and a PostgreSQL database of its
own for RelStorage, created and dropped here (skipped, and said so, when
PostgreSQL is not reachable). The bench process watches the database
through a connection of its own. It measures:

1. Throughput of 1 and 2 worker processes. The workers are started and
   idle first; then N trivial jobs are queued in one transaction, and the
   rate is N / (first job start .. last job end), from the jobs' own
   ``started`` and ``ended`` timestamps. Beside it, the raw commit rate of
   the same storage in the same run, from 1 and from 2 client processes
   each committing one small object per transaction, and the ratios.
2. Pickup latency across processes: an idle worker (``--poll-interval 5``,
   so a poll cannot explain a fast pickup) and this process queuing one
   job at a time; latency = the time the job read with ``time.time()``
   when it ran, minus the time the queuing ``commit()`` returned.
3. Heartbeat bytes: an in-process dispatcher on a FileStorage pinging
   every 0.05 s with nothing else to do; Data.fs growth per heartbeat,
   extrapolated to a day at the default ping interval.
4. Recovery after ``kill -9`` over ZEO: (a) by a live peer once the dead
   worker's heartbeat expired, (b) by the same worker restarted with its
   UUID file, with no death interval to wait for.
5. Fairness over ZEO: two idle worker processes of one thread each, warmed
   up on short jobs (so they hold jobs ahead), are given 18 jobs of one
   second in one transaction; the time to all done against the 9 s two
   threads need, and how the jobs split between the workers.
"""

import argparse
import contextlib
import datetime
import json
import os
import platform
import select
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import ZODB
import ZODB.config
import ZODB.FileStorage
from persistent.mapping import PersistentMapping
from ZODB.utils import get_pickle_metadata

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import jobs as bench_jobs  # noqa: E402
from benchsupport import Client, say, version  # noqa: E402

import zasync  # noqa: E402
from zasync.config import DEFAULTS  # noqa: E402
from zasync.queue import get_queues  # noqa: E402
from zasync.status import ACTIVE, ASSIGNED  # noqa: E402
from zasync.testing import processes  # noqa: E402

TARGET_PICKUP_P50_MS = 25.0
# Fairness: the makespan of the jobs on two workers, at most this many
# times the ideal (jobs * seconds / 2).
TARGET_FAIRNESS_RATIO = 1.2
LABEL = 48  # width of the label column of the report
WARNINGS = []  # anything that makes a figure doubtful, printed at the end
DEFAULT_PING = DEFAULTS.ping_interval
RAW_CLIENT = os.path.join(HERE, "cluster_raw.py")


def worker_env():
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (HERE, env.get("PYTHONPATH")) if p)
    return env


# -- where the CPU goes (Linux /proc; figures are None elsewhere) ---------------


def cpu_snapshot(pids):
    """(monotonic time, machine (busy, total) ticks, {pid: cpu ticks})."""
    machine, used = None, {}
    with contextlib.suppress(OSError, ValueError, IndexError):
        with open("/proc/stat") as f:
            ticks = [int(x) for x in f.readline().split()[1:]]
        idle = ticks[3] + ticks[4]  # idle + iowait
        machine = (sum(ticks) - idle, sum(ticks))
    for pid in pids:
        with contextlib.suppress(OSError, ValueError, IndexError):
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            used[pid] = int(fields[11]) + int(fields[12])  # utime + stime
    return time.monotonic(), machine, used


def cpu_usage(before, after, groups):
    """Machine busy fraction, and cores used by each group of pids."""
    wall = after[0] - before[0]
    result = {"machine_busy": None}
    if before[1] and after[1] and after[1][1] > before[1][1]:
        busy = after[1][0] - before[1][0]
        result["machine_busy"] = busy / (after[1][1] - before[1][1])
    hertz = os.sysconf("SC_CLK_TCK")
    for name, pids in groups.items():
        ticks = [after[2][p] - before[2][p] for p in pids if p in after[2]]
        result[name] = sum(ticks) / hertz / wall if ticks and wall > 0 else None
    # Whatever else ran meanwhile: PostgreSQL, or other people's work.
    if result["machine_busy"] is not None:
        ours = sum(v or 0 for k, v in result.items() if k != "machine_busy")
        result["others"] = result["machine_busy"] * (os.cpu_count() or 1) - ours
    return result


# -- the bench process's own view of the database -----------------------------


class Backend:
    """A storage served to several processes: its --zodb-conf file."""

    def __init__(self, key, label, conf_path, workdir, server_pid=None):
        self.key = key
        self.server_pid = server_pid
        self.label = label
        self.conf = conf_path
        self.workdir = workdir
        self.client = Client(ZODB.config.databaseFromURL(conf_path))

    def worker(self, name, options, uuid_file=None):
        return processes.Worker(
            os.path.join(self.workdir, "workers"),
            f"{self.key}-{name}",
            self.conf,
            uuid_file=uuid_file,
            options=options,
            env=worker_env(),
        )

    def create_queue(self, name):
        self.client.write(lambda root: get_queues(self.client.conn).create(name))


# -- 1. throughput and raw commits --------------------------------------------


def _read_line(proc, deadline, what):
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise processes.ProcessError(f"timed out waiting for {what}")
        ready, _, _ = select.select([proc.stdout], [], [], remaining)
        if ready:
            line = proc.stdout.readline()
            if not line:
                raise processes.ProcessError(
                    f"{what}: the process exited ({proc.wait(10)}): "
                    f"{proc.stderr.read()[-2000:]}"
                )
            return line


def raw_commit_rate(backend, clients, commits, timeout=300):
    """Commits/s of ``clients`` processes committing at once, each one small
    object per transaction, ``commits`` times."""
    keys = [f"raw-{clients}-{i}" for i in range(clients)]

    def make(root):
        for key in keys:
            root[key] = PersistentMapping(value=0)

    backend.client.write(make)
    procs = [
        subprocess.Popen(
            [sys.executable, RAW_CLIENT, backend.conf, key, str(commits)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for key in keys
    ]
    try:
        deadline = time.monotonic() + 60
        for proc in procs:
            _read_line(proc, deadline, "a raw-commit client to be ready")
        for proc in procs:  # all are connected and warm: go
            proc.stdin.write("go\n")
            proc.stdin.flush()
        deadline = time.monotonic() + timeout
        results = [
            json.loads(_read_line(proc, deadline, "a raw-commit client's result"))
            for proc in procs
        ]
        for proc in procs:
            proc.wait(30)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
    span = max(r["end"] for r in results) - min(r["start"] for r in results)
    return clients * commits / span


def _completed(backend, name):
    return backend.client.read(lambda root: backend.client.queue(name).counts())


def throughput(backend, workers, jobs, agent_size, timeout):
    """Jobs/s of ``workers`` worker processes on ``jobs`` trivial jobs."""
    name = f"throughput-{workers}"
    backend.create_queue(name)
    started_workers = []
    try:
        for i in range(workers):
            worker = backend.worker(
                f"{name}-{i}", ["--queue", name, "--agent-size", str(agent_size)]
            )
            started_workers.append(worker)  # stopped below even if start fails
            worker.start()

        def put(root):
            queue = backend.client.queue(name)
            for i in range(jobs):
                queue.put(zasync.Job(bench_jobs.noop, i))

        pids = [w.pid for w in started_workers] + [backend.server_pid, os.getpid()]
        cpu_before = cpu_snapshot(pids)
        backend.client.write(put)
        committed = time.monotonic()
        counts = processes.wait_for(
            lambda: (c := _completed(backend, name))["completed"] >= jobs and c,
            timeout,
            f"{jobs} jobs to complete on {backend.label} with {workers} workers",
            interval=0.05,
        )
        seen = time.monotonic() - committed
        cpu = cpu_usage(
            cpu_before,
            cpu_snapshot(pids),
            {
                "workers": pids[:-2],
                "server": [backend.server_pid],
                "bench": [os.getpid()],
            },
        )
    finally:
        stats = []
        for worker in started_workers:
            worker.terminate(60)
            stats.append(worker.stats() or {})

    def timestamps(root):
        queue = backend.client.queue(name)
        found = queue.jobs(status="completed")
        by_worker = {}
        for job in found:
            by_worker[job.assignee[0]] = by_worker.get(job.assignee[0], 0) + 1
        return (
            len(found),
            min(job.started for job in found),
            max(job.ended for job in found),
            sorted(by_worker.values(), reverse=True),
        )

    count, first, last, split = backend.client.read(timestamps)
    span = (last - first).total_seconds()
    if count != jobs or counts["failed"]:
        WARNINGS.append(
            f"{backend.label}, {workers} workers: {count} of {jobs} jobs completed, "
            f"{counts['failed']} failed (see the worker logs; rerun with --keep)"
        )
    return {
        "workers": workers,
        "jobs": jobs,
        "completed": count,
        "failed": counts["failed"],
        "seconds": span,
        "jobs_per_s": jobs / span,
        "commit_to_all_seen_s": seen,
        "split": split,
        "conflicts": sum(s.get("conflicts", 0) for s in stats),
        "rounds": sum(s.get("rounds", 0) for s in stats),
        "cpu": cpu,
    }


def throughput_section(backend, jobs, raw_commits, agent_size):
    say(f"{backend.label}: raw commit rate, 1 then 2 clients ({raw_commits} each)")
    raw1 = raw_commit_rate(backend, 1, raw_commits)
    raw2 = raw_commit_rate(backend, 2, raw_commits)
    say(f"{backend.label}: {jobs} trivial jobs, 1 worker")
    one = throughput(backend, 1, jobs, agent_size, timeout=max(120, jobs / 20))
    say(f"{backend.label}: {jobs} trivial jobs, 2 workers")
    two = throughput(backend, 2, jobs, agent_size, timeout=max(120, jobs / 20))
    return {
        "jobs": jobs,
        "raw_commits": raw_commits,
        "raw_1_client": raw1,
        "raw_2_clients": raw2,
        "one_worker": one,
        "two_workers": two,
        "ratio_1": one["jobs_per_s"] / raw1,
        "ratio_2": two["jobs_per_s"] / raw2,
        "scaling": two["jobs_per_s"] / one["jobs_per_s"],
    }


# -- 2. pickup latency ---------------------------------------------------------


def percentile(values, fraction):
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))
    return ordered[index]


def pickup_section(backend, samples, warmup=5):
    say(f"{backend.label}: pickup latency, {samples} jobs one at a time")
    name = "pickup"
    backend.create_queue(name)
    worker = backend.worker(name, ["--queue", name, "--poll-interval", "5"])
    client = backend.client
    latencies, commits = [], []
    try:
        worker.start()
        for index in range(warmup + samples):

            def put(root):
                return client.queue(name).put(zasync.Job(bench_jobs.stamp))

            before = time.time()
            job = client.write(put)
            committed = time.time()

            def done(root, job=job):
                # Completed, and reconciled by the dispatcher: it is idle
                # again before the next job is queued.
                return job.status.value == "completed" and not (
                    client.queue(name).unsettled()
                )

            processes.wait_for(
                lambda: client.read(done), 15, f"pickup job {index} on {backend.label}"
            )
            ran_at = client.read(lambda root, job=job: job.result)
            if index >= warmup:
                latencies.append((ran_at - committed) * 1000)
                commits.append((committed - before) * 1000)
    finally:
        worker.terminate(60)
    return {
        "samples": samples,
        "warmup": warmup,
        "p50_ms": statistics.median(latencies),
        "p99_ms": percentile(latencies, 0.99),
        "min_ms": min(latencies),
        "max_ms": max(latencies),
        "put_commit_p50_ms": statistics.median(commits),
        "worker_stats": worker.stats(),
    }


# -- 3. heartbeat bytes --------------------------------------------------------


def heartbeat_section(directory, heartbeats, ping):
    say(f"heartbeat bytes: {heartbeats} heartbeats every {ping}s on a FileStorage")
    path = os.path.join(directory, "heartbeat", "Data.fs")
    os.makedirs(os.path.dirname(path))
    storage = ZODB.FileStorage.FileStorage(path)
    db = ZODB.DB(storage)

    dispatcher = zasync.start(
        db, ping_interval=ping, death_interval=max(1.0, ping * 10)
    )
    try:
        # Let start-up settle: registration, first rounds. Every heartbeat
        # is a round (not every round a heartbeat); the heartbeats are
        # counted exactly afterwards, from the storage, once it is quiet.
        processes.wait_for(
            lambda: dispatcher.stats["rounds"] >= 3, 30, "the first heartbeats"
        )
        tid0, size0 = storage.lastTransaction(), os.path.getsize(path)
        rounds0 = dispatcher.stats["rounds"]
        processes.wait_for(
            lambda: dispatcher.stats["rounds"] - rounds0 >= heartbeats,
            heartbeats * ping * 5 + 30,
            f"{heartbeats} heartbeats",
            interval=0.1,
        )
        tid1, size1 = storage.lastTransaction(), os.path.getsize(path)
        rounds = dispatcher.stats["rounds"] - rounds0
    finally:
        dispatcher.stop(10)
    # What each heartbeat transaction wrote, object by object.
    objects = {}
    count = 0
    record_bytes = 0
    for txn in storage.iterator(start=tid0):
        if not tid0 < txn.tid <= tid1:
            continue
        count += 1
        for record in txn:
            module, klass = get_pickle_metadata(record.data)
            entry = objects.setdefault(klass, {"count": 0, "pickle_bytes": 0})
            entry["count"] += 1
            entry["pickle_bytes"] += len(record.data)
            record_bytes += 42 + len(record.data)  # FileStorage data header: 42
    db.close()
    per_heartbeat = (size1 - size0) / count
    per_day = per_heartbeat * 86400 / DEFAULT_PING
    return {
        "ping_s": ping,
        "heartbeats": count,
        "rounds": rounds,
        "bytes_per_heartbeat": per_heartbeat,
        "objects_per_heartbeat": {
            klass: {
                "per_heartbeat": v["count"] / count,
                "pickle_bytes": v["pickle_bytes"] / v["count"],
            }
            for klass, v in objects.items()
        },
        "txn_overhead_bytes": per_heartbeat - record_bytes / count,
        "default_ping_s": DEFAULT_PING,
        "bytes_per_day": per_day,
    }


# -- 4. recovery after kill -9 --------------------------------------------------


def first_write_after(backend, oid, moment):
    """Wall-clock time of the first transaction after ``moment`` that wrote
    ``oid`` (from the storage's history: ZEO/FileStorage keeps it)."""
    history = backend.client.db.storage.history(oid, size=200)
    times = [entry["time"] for entry in history if entry["time"] > moment]
    return min(times) if times else None


def recovery_section(backend, jobs, job_seconds, ping=1, death=5):
    say(f"{backend.label}: recovery after kill -9 (ping {ping}s, death {death}s)")
    name = "recovery"
    backend.create_queue(name)
    client = backend.client
    options = [
        "--queue",
        name,
        "--ping-interval",
        str(ping),
        "--death-interval",
        str(death),
        "--grace",
        "0.5",
        "--agent-size",
        "3",
    ]
    victim = backend.worker("victim", options)
    survivor = backend.worker("survivor", options)
    result = {"ping_s": ping, "death_s": death, "jobs": jobs, "job_s": job_seconds}

    def held_by(uuid):
        def held(root):
            record = client.queue(name).dispatchers.get(uuid)
            if record is None:
                return None
            agent_jobs = list(record.agents["main"].jobs.values())
            return {
                "record_oid": record._p_oid,
                "dead": record.dead,
                "last_ping": record.last_ping.timestamp(),
                "active": sum(j.status == ACTIVE for j in agent_jobs),
                "assigned": sum(j.status == ASSIGNED for j in agent_jobs),
                "ids": sorted(j.id for j in agent_jobs),
            }

        return held

    def queue_jobs(root):
        queue = client.queue(name)
        for _ in range(jobs):
            queue.put(zasync.Job(bench_jobs.sleep, job_seconds))

    try:
        # The victim starts alone and fills its threads (a new worker holds
        # no jobs ahead: it has not timed one yet); then the survivor starts.
        victim.start()
        client.write(queue_jobs)
        processes.wait_for(
            lambda: (
                (h := client.read(held_by(victim.uuid))) and h["active"] == min(jobs, 3)
            ),
            30,
            "the victim to start its jobs",
        )
        survivor.start()
        processes.wait_for(
            lambda: client.read(held_by(survivor.uuid)), 30, "the survivor's record"
        )
        held = client.read(held_by(victim.uuid))

        # (a) kill -9, no restart: the survivor recovers after the death interval.
        killed = time.time()
        victim.kill()
        dead = time.time()  # reaped: any later write to its record is a peer's
        processes.wait_for(
            lambda: (
                (h := client.read(held_by(victim.uuid)))
                and h["dead"]
                and not h["ids"]
                and h
            ),
            death + ping * 3 + 30,
            "the survivor to recover the victim's jobs",
        )
        seen = time.time()
        at = first_write_after(backend, held["record_oid"], dead) or seen
        rerun = processes.wait_for(
            lambda: (
                (h := client.read(held_by(survivor.uuid)))
                and set(held["ids"]) <= set(h["ids"])
                and h
            ),
            30,
            "the survivor to claim the recovered jobs",
        )
        result["a"] = {
            "held_at_kill": {"active": held["active"], "assigned": held["assigned"]},
            "heartbeat_age_at_kill_s": killed - held["last_ping"],
            "recovered_after_s": at - killed,
            "seen_after_s": seen - killed,
            "claimed_by_survivor_after_s": time.time() - killed,
            "survivor_logged": "missed its heartbeat" in survivor.log(),
            "survivor_running": rerun["active"],
        }

        # (b) kill -9 and restart with the same UUID file. The survivor is
        # stopped first (its jobs go back to the queue), so only the
        # restarted victim can recover its own jobs.
        survivor.terminate(60)
        victim.start()
        processes.wait_for(
            lambda: (
                (h := client.read(held_by(victim.uuid)))
                and h["active"]
                and not h["dead"]
                and h
            ),
            60,
            "the restarted victim to claim jobs",
        )
        held = client.read(held_by(victim.uuid))
        victim.kill()
        restarted = time.time()
        # start() returns once the worker logged that it is ready, which it
        # does after registering: the registering transaction recovers.
        victim.start()
        ready = time.time()
        at = first_write_after(backend, held["record_oid"], restarted)
        tail = victim.log().split(processes.READY)[-2]
        result["b"] = {
            "held_at_kill": {"active": held["active"], "assigned": held["assigned"]},
            "recovered_after_s": (at or ready) - restarted,
            "ready_after_s": ready - restarted,
            "victim_logged": "unfinished jobs of this dispatcher's previous run"
            in tail,
        }
    finally:
        for worker in (victim, survivor):
            if worker.running():
                worker.terminate(60)
    return result


# -- the report ----------------------------------------------------------------


def fairness_section(backend, jobs=18, job_seconds=1.0, warmup=50):
    """Two warmed-up workers of one thread each on ``jobs`` jobs of
    ``job_seconds``: makespan and split."""
    name = "fairness"
    backend.create_queue(name)
    workers = [
        backend.worker(f"{name}-{i}", ["--queue", name, "--agent-size", "1"])
        for i in range(2)
    ]
    try:
        for worker in workers:
            worker.start()

        def put(func, *args, count):
            def write(root):
                queue = backend.client.queue(name)
                for _ in range(count):
                    queue.put(zasync.Job(func, *args))

            return write

        # Short jobs first: each worker learns that jobs are short, which is
        # when it holds jobs ahead.
        backend.client.write(put(bench_jobs.noop, count=warmup))
        processes.wait_for(
            lambda: _completed(backend, name)["completed"] >= warmup,
            60,
            "the warm-up jobs",
        )
        backend.client.write(put(bench_jobs.sleep, job_seconds, count=jobs))
        committed = time.monotonic()
        processes.wait_for(
            lambda: _completed(backend, name)["completed"] >= warmup + jobs,
            jobs * job_seconds + 60,
            f"{jobs} jobs of {job_seconds:g} s",
            interval=0.05,
        )
        seen = time.monotonic() - committed
    finally:
        for worker in workers:
            worker.terminate(60)

    def split(root):
        queue = backend.client.queue(name)
        by_worker = {}
        for job in queue.jobs(status="completed"):
            if job.callable_name.endswith("sleep"):
                by_worker[job.assignee[0]] = by_worker.get(job.assignee[0], 0) + 1
        return sorted(by_worker.values(), reverse=True)

    ideal = jobs * job_seconds / 2
    return {
        "jobs": jobs,
        "job_s": job_seconds,
        "seconds": seen,
        "ideal_s": ideal,
        "ratio": seen / ideal,
        "split": backend.client.read(split),
    }


def machine_facts(directory, pg_version):
    try:
        load = "load average {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())
    except OSError:
        load = ""
    return {
        "cores": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "ZODB": version("ZODB"),
        "ZEO": version("ZEO"),
        "RelStorage": version("RelStorage"),
        "psycopg2": version("psycopg2")
        if version("psycopg2") != "absent"
        else version("psycopg2-binary"),
        "PostgreSQL": pg_version,
        "directory": directory,
        "load": load,
    }


def postgres_facts(dsn):
    import psycopg2

    conn = psycopg2.connect(dsn, connect_timeout=5)
    try:
        with conn.cursor() as cursor:
            facts = []
            for setting in ("server_version", "fsync", "synchronous_commit"):
                cursor.execute(f"SHOW {setting}")
                facts.append(f"{setting} {cursor.fetchone()[0]}")
        return ", ".join(facts)
    finally:
        conn.close()


def fmt(value, spec=".0f", missing="-"):
    return missing if value is None else format(value, spec)


def report(results, args):
    m = results["machine"]
    out = []
    w = out.append
    w("zasync cluster benchmark")
    w(f"  machine     {m['cores']} cores, {m['platform']}, Python {m['python']}")
    w(f"              {m['load']} (at start)")
    w(
        f"  software    ZODB {m['ZODB']}, ZEO {m['ZEO']}, RelStorage {m['RelStorage']},"
        f" psycopg2 {m['psycopg2']}"
    )
    w(f"  ZEO         one server process, FileStorage in {m['directory']}")
    if m["PostgreSQL"]:
        w(f"  PostgreSQL  127.0.0.1, {m['PostgreSQL']}; history-free RelStorage")
    else:
        w(f"  PostgreSQL  not measured, {results['postgres_skipped']}")
    w("")

    backends = [
        b
        for b in ("zeo", "postgres")
        if b in results["throughput"] or b in results["pickup"]
    ]
    labels = {"zeo": "ZEO", "postgres": "PostgreSQL"}
    head = f"  {'':{LABEL}}" + "".join(f"{labels[b]:>14}" for b in backends)

    def row(label, func):
        cells = []
        for b in backends:
            try:
                cells.append(f"{func(b):>14}")
            except (KeyError, TypeError):
                cells.append(f"{'-':>14}")
        w(f"  {label:{LABEL}}" + "".join(cells))

    t = results["throughput"]
    if t:
        w(
            "1. Throughput: `zasync worker` processes, agent size "
            f"{args.agent_size}, trivial jobs"
        )
        w("   (workers started and idle; N jobs queued in one transaction;")
        w("    rate = N / (first job started .. last job ended))")
        w(head)
        row("jobs queued (N)", lambda b: t[b]["jobs"])
        row("raw commits/s, 1 client process", lambda b: fmt(t[b]["raw_1_client"]))
        row("raw commits/s, 2 client processes", lambda b: fmt(t[b]["raw_2_clients"]))
        row("jobs/s, 1 worker", lambda b: fmt(t[b]["one_worker"]["jobs_per_s"]))
        row("jobs/s, 2 workers", lambda b: fmt(t[b]["two_workers"]["jobs_per_s"]))
        row("1 worker / raw 1 client", lambda b: fmt(t[b]["ratio_1"], ".2f"))
        row("2 workers / raw 2 clients", lambda b: fmt(t[b]["ratio_2"], ".2f"))
        row("2 workers / 1 worker", lambda b: fmt(t[b]["scaling"], ".2f"))
        row(
            "jobs per worker, 2 workers",
            lambda b: "/".join(map(str, t[b]["two_workers"]["split"])),
        )
        row(
            "dispatcher rounds per job, 1 / 2 workers",
            lambda b: (
                f"{t[b]['one_worker']['rounds'] / t[b]['jobs']:.2f} / "
                f"{t[b]['two_workers']['rounds'] / t[b]['jobs']:.2f}"
            ),
        )
        row(
            "conflicts, 1 / 2 workers",
            lambda b: (
                f"{t[b]['one_worker']['conflicts']} / "
                f"{t[b]['two_workers']['conflicts']}"
            ),
        )

        def cpu(b, what, spec):
            one, two = (t[b][k]["cpu"][what] for k in ("one_worker", "two_workers"))
            return f"{fmt(one, spec)} / {fmt(two, spec)}"

        row("machine CPU busy, 1 / 2 workers", lambda b: cpu(b, "machine_busy", ".0%"))
        row("cores used by workers, 1 / 2 workers", lambda b: cpu(b, "workers", ".2f"))
        row(
            "cores used by ZEO server, 1 / 2 workers", lambda b: cpu(b, "server", ".2f")
        )
        row(
            "cores used by this bench (poller), 1 / 2", lambda b: cpu(b, "bench", ".2f")
        )
        row(
            "cores used by PostgreSQL + others, 1 / 2",
            lambda b: cpu(b, "others", ".2f"),
        )
        row(
            "commit to all seen done, 1 / 2 workers (s)",
            lambda b: (
                f"{t[b]['one_worker']['commit_to_all_seen_s']:.1f} / "
                f"{t[b]['two_workers']['commit_to_all_seen_s']:.1f}"
            ),
        )
        w("")

    p = results["pickup"]
    if p:
        samples = next(iter(p.values()))
        w(
            "2. Pickup latency: idle worker (--poll-interval 5), another process "
            f"queues {samples['samples']} jobs"
        )
        w("   one at a time (after 5 warm-up jobs); from the return of the queuing")
        w("   commit() to the job's time.time() in the worker")
        w(head)
        row("p50 (ms)", lambda b: fmt(p[b]["p50_ms"], ".1f"))
        row("p99 (ms)", lambda b: fmt(p[b]["p99_ms"], ".1f"))
        row("min / max (ms)", lambda b: f"{p[b]['min_ms']:.1f} / {p[b]['max_ms']:.0f}")
        row(
            "queuing commit() itself, p50 (ms)",
            lambda b: fmt(p[b]["put_commit_p50_ms"], ".1f"),
        )
        if "zeo" in p:
            met = p["zeo"]["p50_ms"] < TARGET_PICKUP_P50_MS
            label = f"target: ZEO p50 < {TARGET_PICKUP_P50_MS:g} ms"
            w(f"  {label:{LABEL}}{'MET' if met else 'MISSED':>14}")
        w("")

    h = results.get("heartbeat")
    if h:
        w(
            "3. Heartbeat cost: in-process dispatcher on a FileStorage, 1 queue, "
            f"idle, ping every {h['ping_s']:g} s"
        )
        w(f"  {'heartbeats measured':{LABEL}}{h['heartbeats']:>14}")
        w(f"  {'Data.fs bytes per heartbeat':{LABEL}}{h['bytes_per_heartbeat']:>14.0f}")
        for klass, v in sorted(h["objects_per_heartbeat"].items()):
            label = f"  of which {klass} (x {v['per_heartbeat']:.2f})"
            w(f"{label:{LABEL + 2}}{v['pickle_bytes'] + 42:>14.0f}")
        label = "  of which transaction header + trailer"
        w(f"{label:{LABEL + 2}}{h['txn_overhead_bytes']:>14.0f}")
        label = f"bytes/day per dispatcher per queue, ping {h['default_ping_s']:g} s"
        w(f"  {label:{LABEL}}{h['bytes_per_day']:>14,.0f}")
        w(
            f"  ({86400 / h['default_ping_s']:.0f} heartbeats a day, the default "
            "ping interval; each data record has a 42 B header)"
        )
        w("  Packing removes the superseded heartbeat records (only the current")
        w("  ones stay); a history-free RelStorage keeps no old records at all.")
        w("")

    r = results.get("recovery")
    if r:
        a, b = r["a"], r["b"]
        w(
            f"4. Recovery after kill -9: workers over ZEO with --ping-interval "
            f"{r['ping_s']:g} --death-interval {r['death_s']:g};"
        )
        w(
            f"   {r['jobs']} jobs sleeping {r['job_s']:g} s each, agent size 3; "
            "the victim's threads were full at the kill"
        )
        age = a["heartbeat_age_at_kill_s"]
        w(
            f"  (a) no restart, a live survivor: victim held "
            f"{a['held_at_kill']['active']} running + "
            f"{a['held_at_kill']['assigned']} held jobs,"
        )
        w(f"      its last heartbeat {age:.2f} s old at the kill")
        w(
            f"  {'    jobs taken back by the survivor after (s)':{LABEL}}"
            f"{a['recovered_after_s']:>14.2f}"
        )
        lo, hi = r["death_s"] - age, r["death_s"] - age + r["ping_s"]
        w(
            f"  {'    expected (death - age .. + one ping) (s)':{LABEL}}"
            f"{f'{lo:.2f}..{hi:.2f}':>14}"
        )
        w(
            f"  {'    all claimed again by the survivor after (s)':{LABEL}}"
            f"{a['claimed_by_survivor_after_s']:>14.2f}"
        )
        w("  (b) restart with the same UUID file, the survivor stopped first:")
        w(
            f"      victim held {b['held_at_kill']['active']} running + "
            f"{b['held_at_kill']['assigned']} held jobs"
        )
        w(
            f"  {'    recovered after the restart command (s)':{LABEL}}"
            f"{b['recovered_after_s']:>14.2f}"
        )
        w(
            f"  {'    worker ready after the restart command (s)':{LABEL}}"
            f"{b['ready_after_s']:>14.2f}"
        )
        w(
            "      the restarted worker "
            + ("logged the recovery" if b["victim_logged"] else "logged NO recovery")
            + "; no death interval involved"
        )
        w("")
    f = results.get("fairness")
    if f:
        w(
            f"5. Fairness over ZEO: {f['jobs']} jobs of {f['job_s']:g} s on 2 idle, "
            "warmed-up workers of 1 thread each"
        )
        w(f"  {'commit to all done (s)':{LABEL}}{f['seconds']:>14.1f}")
        w(f"  {'ideal: 2 threads busy throughout (s)':{LABEL}}{f['ideal_s']:>14.1f}")
        w(f"  {'ratio':{LABEL}}{f['ratio']:>14.2f}")
        w(f"  {'jobs per worker':{LABEL}}{'/'.join(map(str, f['split'])):>14}")
        met = f["ratio"] <= TARGET_FAIRNESS_RATIO
        label = f"target: ratio <= {TARGET_FAIRNESS_RATIO:g}"
        w(f"  {label:{LABEL}}{'MET' if met else 'MISSED':>14}")
        w("")
    for warning in results.get("warnings", ()):
        w(f"WARNING: {warning}")
    w(f"total time {results['seconds']:.0f} s")
    return "\n".join(out)


# -- main ----------------------------------------------------------------------


def run_all(stack, args, skip, pg_ok, directory, results):
    """Start the servers (closed by ``stack``) and run the parts."""
    backends = []
    zeo = processes.ZEOServer(os.path.join(directory, "zeo")).start()
    stack.callback(zeo.stop)
    conf = zeo.client_conf(os.path.join(directory, "zeo", "client.conf"))
    backends.append((Backend("zeo", "ZEO", conf, directory, zeo.pid), args.jobs))
    stack.callback(backends[-1][0].client.close)
    if pg_ok:
        database = stack.enter_context(processes.PostgresDatabase())
        conf = database.zodb_conf(os.path.join(directory, "relstorage.conf"))
        backends.append(
            (Backend("postgres", "PostgreSQL", conf, directory), args.pg_jobs)
        )
        stack.callback(backends[-1][0].client.close)

    for backend, count in backends:
        raw = args.raw_commits if backend.key == "zeo" else args.pg_raw_commits
        if "throughput" not in skip:
            results["throughput"][backend.key] = throughput_section(
                backend, count, raw, args.agent_size
            )
        if "pickup" not in skip:
            results["pickup"][backend.key] = pickup_section(
                backend, args.latency_samples
            )
    if "heartbeat" not in skip:
        results["heartbeat"] = heartbeat_section(
            directory, args.heartbeats, args.heartbeat_ping
        )
    if "recovery" not in skip:
        results["recovery"] = recovery_section(
            backends[0][0], args.recovery_jobs, args.recovery_job_seconds
        )
    if "fairness" not in skip:
        results["fairness"] = fairness_section(backends[0][0])


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--jobs", type=int, default=2000, help="throughput jobs, ZEO")
    parser.add_argument(
        "--pg-jobs", type=int, default=1000, help="throughput jobs, PostgreSQL"
    )
    parser.add_argument(
        "--raw-commits", type=int, default=2000, help="raw commits per client, ZEO"
    )
    parser.add_argument(
        "--pg-raw-commits",
        type=int,
        default=1000,
        help="raw commits per client, PostgreSQL",
    )
    parser.add_argument("--agent-size", type=int, default=3)
    parser.add_argument("--latency-samples", type=int, default=200)
    parser.add_argument("--heartbeats", type=int, default=200)
    parser.add_argument("--heartbeat-ping", type=float, default=0.05)
    parser.add_argument("--recovery-jobs", type=int, default=6)
    parser.add_argument(
        "--recovery-job-seconds",
        type=float,
        default=30.0,
        help="how long each recovery job sleeps (they must outlive the test)",
    )
    parser.add_argument(
        "--skip",
        action="append",
        default=[],
        choices=[
            "throughput",
            "pickup",
            "heartbeat",
            "recovery",
            "fairness",
            "postgres",
        ],
        help="leave out a part (repeatable)",
    )
    parser.add_argument("--json", metavar="FILE", help="also write the figures here")
    parser.add_argument(
        "--keep", action="store_true", help="keep the directory (logs, Data.fs)"
    )
    args = parser.parse_args(argv)
    began = time.monotonic()
    skip = set(args.skip)

    pg_ok, pg_why = False, "left out with --skip postgres"
    if "postgres" not in skip:
        pg_ok = processes.postgres_available()
        pg_why = f"unreachable at '{processes.POSTGRES_DSN}' (ZASYNC_TEST_POSTGRES)"

    directory = tempfile.mkdtemp(prefix="zasync-cluster-bench-")
    results = {
        "machine": machine_facts(
            directory, postgres_facts(processes.POSTGRES_DSN) if pg_ok else None
        ),
        "throughput": {},
        "pickup": {},
        "started": datetime.datetime.now().isoformat(timespec="seconds"),
    }
    if not pg_ok:
        results["postgres_skipped"] = pg_why
        say(f"PostgreSQL not measured, {pg_why}")
    failed = True
    try:
        with contextlib.ExitStack() as stack:
            run_all(stack, args, skip, pg_ok, directory, results)
        failed = False
    finally:
        if args.keep or failed:
            say(f"kept {directory} (worker logs, Data.fs)")
        else:
            shutil.rmtree(directory, ignore_errors=True)
    results["warnings"] = WARNINGS
    results["seconds"] = time.monotonic() - began
    print(report(results, args))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())
