"""What the cluster tests share: a Cluster (a database, the test process's
connection to it, the worker and queuer processes started on it) and the
checks every test makes (all jobs completed, each marker written once).

Every wait is on a condition with a time-out (processes.wait_for); nothing
sleeps to let a worker get on.
"""

import collections
import json
import os
import random
import re
import signal
import subprocess
import sys
import time

import cluster_jobs
import transaction
import ZODB
from BTrees.LOBTree import LOBTree
from transaction.interfaces import TransientError

import zasync
from zasync.status import ACTIVE, ASSIGNED, CALLBACKS, COMPLETED, PENDING
from zasync.testing import processes

HERE = os.path.dirname(os.path.abspath(__file__))

# Short heartbeats, so that a dead worker is found within seconds.
PING = 0.5
DEATH = 3.0
FAST_OPTIONS = (
    "--ping-interval",
    str(PING),
    "--death-interval",
    str(DEATH),
    "--poll-interval",
    "0.5",
)

try:
    from ZEO.Exceptions import ClientDisconnected
except ImportError:  # pragma: no cover

    class ClientDisconnected(Exception):
        pass


def worker_env():
    """The environment of worker and queuer processes: they import
    cluster_jobs from this directory."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([HERE, *filter(None, [env.get("PYTHONPATH")])])
    env["PYTHONUNBUFFERED"] = "1"
    # A worker that crashes in C code logs the Python stacks of its threads.
    env["PYTHONFAULTHANDLER"] = "1"
    return env


class Cluster:
    """A database (ZEO or RelStorage), the test process's own connection to
    it, and the worker and queuer processes started on it."""

    def __init__(self, directory, zodb_conf, storage_factory, kind):
        self.directory = directory
        self.zodb_conf = zodb_conf
        self.kind = kind
        self.reader = processes.Reader(storage_factory)
        self.db = ZODB.DB(storage_factory())
        self.workers = []
        self.queuers = []
        self.conflicts = 0  # retried by transact()

    # -- processes ---------------------------------------------------------

    def worker(self, name, *options, start=True, uuid_file=None):
        worker = processes.Worker(
            os.path.join(self.directory, "workers"),
            name,
            self.zodb_conf,
            uuid_file=uuid_file,
            options=[*FAST_OPTIONS, *options],
            env=worker_env(),
        )
        self.workers.append(worker)
        if start:
            worker.start()
        return worker

    def start_queuer(self, name, count, first_key, start_file=None):
        """A ``queuer.py`` process putting ``count`` jobs, one per transaction."""
        result = os.path.join(self.directory, f"{name}.json")
        log = open(os.path.join(self.directory, f"{name}.log"), "wb")  # noqa: SIM115
        argv = [
            sys.executable,
            os.path.join(HERE, "queuer.py"),
            "--zodb-conf",
            self.zodb_conf,
            "--count",
            str(count),
            "--first-key",
            str(first_key),
            "--result",
            result,
        ]
        if start_file:
            argv += ["--start-file", start_file]
        try:
            process = subprocess.Popen(
                argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=worker_env(),
            )
        finally:
            log.close()
        self.queuers.append((process, result))
        return process

    def wait_queuers(self, timeout=120):
        """Wait for every queuer to exit; returns their results (JSON)."""
        results = []
        for process, result in self.queuers:
            processes.wait_for(
                lambda p=process: p.poll() is not None, timeout, f"queuer {result}"
            )
            if process.returncode != 0:
                with open(result[: -len(".json")] + ".log") as f:
                    log = f.read()
                raise AssertionError(
                    f"queuer {result} exited {process.returncode}:\n{log[-5000:]}"
                )
            with open(result) as f:
                found = json.load(f)
            found["ids"] = {int(key): value for key, value in found["ids"].items()}
            results.append(found)
        return results

    def close(self):
        for worker in self.workers:
            worker.kill()
        for process, _ in self.queuers:
            if process.poll() is None:
                process.kill()
            process.wait(10)
        self.reader.close()
        self.db.close()

    # -- writing -----------------------------------------------------------

    def transact(self, change, attempts=50):
        """``change(root)`` in a transaction of its own, retried on conflicts
        (as an application would: workers claiming jobs change the queue
        too); returns its result. The conflicts are counted in
        ``self.conflicts``."""
        tm = transaction.TransactionManager(explicit=True)
        conn = self.db.open(transaction_manager=tm)
        try:
            for attempt in range(attempts):
                tm.begin()
                try:
                    result = change(conn.root())
                    tm.commit()
                    return result
                except TransientError:
                    tm.abort()
                    self.conflicts += 1
                    time.sleep(random.uniform(0, 0.002 * min(attempt + 1, 10)))
            raise RuntimeError(f"{attempts} conflicts in a row")
        finally:
            conn.close()

    def setup_markers(self):
        def setup(root):
            zasync.get_queues(root._p_jar)
            root["markers"] = LOBTree()

        self.transact(setup)

    def put_marks(self, keys, seconds=0.0, per_transaction=100):
        """Queue ``mark(markers, key, seconds)`` for each key; returns
        {key: job id}."""
        keys = list(keys)
        ids = {}
        for start in range(0, len(keys), per_transaction):
            chunk = keys[start : start + per_transaction]

            def put(root, chunk=chunk):
                queue = zasync.get_queues(root._p_jar)[""]
                return {
                    key: queue.put(
                        zasync.Job(cluster_jobs.mark, root["markers"], key, seconds)
                    ).id
                    for key in chunk
                }

            ids.update(self.transact(put))
        return ids

    def put(self, func, *args):
        """Queue one job; returns its id."""

        def put(root):
            return zasync.get_queues(root._p_jar)[""].put(zasync.Job(func, *args)).id

        return self.transact(put)

    # -- reading -----------------------------------------------------------

    def read(self, func):
        """``func(root)`` in a fresh transaction; None while a ZEO server is
        out of reach (being restarted)."""
        try:
            return self.reader.read(func)
        except ClientDisconnected:
            return None

    def counts(self):
        return self.read(lambda root: zasync.get_queues(root._p_jar)[""].counts())

    def completed(self):
        return (self.counts() or {}).get("completed", 0)

    def wait_drained(self, count, timeout):
        """Wait until ``count`` jobs are completed and none is pending,
        claimed or waiting for its dispatcher to index it."""

        def drained(root):
            queue = zasync.get_queues(root._p_jar)[""]
            counts = queue.counts()
            return counts["completed"] >= count and queue.unsettled() == 0

        try:
            processes.wait_for(
                lambda: self.read(drained), timeout, f"{count} jobs", interval=0.1
            )
        except processes.ProcessError as exc:
            raise processes.ProcessError(
                f"{exc}; counts {self.counts()}\n{self.describe_unsettled()}\n"
                f"{self.logs_tail()}"
            ) from None

    def describe_unsettled(self, limit=10):
        """The jobs not completed yet, and what the workers logged of them."""

        def read(root):
            return [
                (
                    job.id,
                    job.status.value,
                    job.assignee,
                    f"attempts={job.attempts} interruptions={job.interruptions} "
                    f"postponements={job.postponements}",
                )
                for job in unsettled_jobs(root)[:limit]
            ]

        lines = []
        dispatchers = set()
        for job_id, status, assignee, counts in self.read(read) or []:
            lines.append(f"job {job_id}: {status}, assignee {assignee}, {counts}")
            if assignee:
                dispatchers.add(assignee[0])
            for worker in self.workers:
                lines.extend(
                    f"    {worker.name}: {line}"
                    for line in worker.log().splitlines()
                    if f"job {job_id} " in line
                )
        for worker in self.workers:
            lines.extend(
                f"{worker.name}: {line}"
                for line in worker.log().splitlines()
                if " WARNING " in line and any(uuid in line for uuid in dispatchers)
            )
        return "\n".join(lines)

    def wait_completed(self, at_least, timeout):
        processes.wait_for(
            lambda: self.completed() >= at_least,
            timeout,
            f"{at_least} completed jobs",
            interval=0.05,
        )

    def logs_tail(self, chars=2000):
        return "\n".join(
            f"--- {worker.name} (last {chars} chars):\n{worker.log()[-chars:]}"
            for worker in self.workers
        )

    def jobs(self, ids):
        """{id: Outcome} of the given job ids."""

        def read(root):
            queue = zasync.get_queues(root._p_jar)[""]
            found = {}
            for job_id in ids:
                job = queue.get(job_id)
                if job is None:
                    found[job_id] = None
                    continue
                found[job_id] = Outcome(
                    job.status,
                    job.failed,
                    repr(job.result),
                    job.attempts,
                    job.interruptions,
                    job.assignee,
                    job.queued,
                    job.started,
                )
            return found

        return self.read(read)

    def markers(self):
        return self.read(lambda root: dict(root["markers"].items()))

    def claimed_by(self, uuid):
        """The jobs held by the agents of dispatcher ``uuid``, and whether its
        record is still registered."""

        def read(root):
            queue = zasync.get_queues(root._p_jar)[""]
            record = queue.dispatchers.get(uuid)
            if record is None:
                return False, []
            jobs = [
                (job.id, job.status.value)
                for agent in record.agents.values()
                for job in agent.jobs.values()
            ]
            return True, jobs

        return self.read(read)

    # -- checks ------------------------------------------------------------

    def check_all_succeeded_once(self, ids):
        """Every job of ``ids`` ({key: id}) completed without failing, and
        its marker was written by exactly one committed run. Returns the
        outcomes."""
        outcomes = self.jobs(ids.values())
        missing = [i for i, outcome in outcomes.items() if outcome is None]
        assert not missing, f"{len(missing)} jobs are gone: {missing[:5]}"
        statuses = collections.Counter(
            (o.status.value, o.failed) for o in outcomes.values()
        )
        failed = [o for o in outcomes.values() if o.failed]
        unfinished = [o for o in outcomes.values() if o.status != COMPLETED]
        assert not failed and not unfinished, (
            f"statuses (status, failed): {dict(statuses)}; failures: "
            f"{[o.result for o in failed[:5]]}; unfinished: {unfinished[:5]}"
        )
        check_exactly_once(self.markers(), ids.keys())
        return outcomes


def unsettled_jobs(root):
    """The jobs of the default queue that are not completed."""
    queue = zasync.get_queues(root._p_jar)[""]
    return [
        job
        for status in (PENDING, ASSIGNED, ACTIVE, CALLBACKS)
        for job in queue.jobs(status=status)
    ]


Outcome = collections.namedtuple(
    "Outcome",
    "status failed result attempts interruptions assignee queued started",
)


def check_exactly_once(markers, keys):
    keys = set(keys)
    missing = sorted(keys - set(markers))
    extra = sorted(set(markers) - keys)
    twice = {key: tokens for key, tokens in markers.items() if len(tokens) != 1}
    assert not missing and not extra and not twice, (
        f"markers: {len(missing)} missing {missing[:10]}, {len(extra)} "
        f"unexpected {extra[:10]}, {len(twice)} written more than once: "
        f"{dict(list(twice.items())[:5])}"
    )


def stop_workers(workers):
    """Check each worker is still running, SIGTERM it, check it exits 0 and
    logs its counters; returns {name: stats}."""
    stats = {}
    for worker in workers:
        assert worker.running(), (
            f"{worker.name} died (exit code {worker.process.returncode}):\n"
            f"{worker.log()[-5000:]}"
        )
        code = worker.terminate(60)
        assert code == 0, f"{worker.name} exited {code}:\n{worker.log()[-3000:]}"
        stats[worker.name] = worker.stats()
        assert stats[worker.name] is not None, worker.log()[-3000:]
    return stats


def report(title, **figures):
    """Print figures of a test run (shown with pytest -s or on failure)."""
    print(
        f"\n[cluster figures] {title}: "
        + ", ".join(f"{key}={value}" for key, value in figures.items())
    )


def drain_with_a_kill(cluster, total, restart):
    """Two workers drain ``total`` marker jobs; one is killed with SIGKILL
    after some but not all jobs completed, and is restarted with its UUID
    file (``restart``) or left dead. Checks that every job succeeded and
    wrote its marker exactly once, and that the killed worker's claimed jobs
    were recovered by the right process. Returns figures for the report."""
    cluster.setup_markers()
    killed = cluster.worker("killed")
    survivor = cluster.worker("survivor")
    ids = cluster.put_marks(range(total))
    processes.wait_for(
        lambda: killed.jobs_started() >= 20 and cluster.completed() >= total // 4,
        60,
        "the first quarter of the jobs, some run by the worker to kill",
    )
    killed.kill()
    killed_at = time.monotonic()
    assert killed.process.returncode == -signal.SIGKILL
    done_at_kill = cluster.completed()
    registered, held = cluster.claimed_by(killed.uuid)
    assert registered and held, (
        f"the killed worker held no job when it died ({done_at_kill} of {total} "
        f"completed): there was nothing to recover"
    )
    assert done_at_kill < total
    figures = {
        "completed_at_kill": done_at_kill,
        "held_by_killed": len(held),
        "active_at_kill": sum(status == "active" for _, status in held),
    }
    declared_dead = re.compile(
        rf"dispatcher {killed.uuid} \(.*\) missed its heartbeat since .*: "
        rf"recovered (\d+) of its jobs"
    )
    if restart:
        killed.start()
        figures["restart_to_ready_s"] = round(time.monotonic() - killed_at, 2)
        if not declared_dead.search(survivor.log()):
            # Its own record: the restarted worker recovered them at once.
            assert (
                f"recovered {len(held)} unfinished jobs of this dispatcher's "
                f"previous run" in killed.log()
            ), killed.log()[-3000:]
    else:
        found = processes.wait_for(
            lambda: declared_dead.search(survivor.log()),
            DEATH * 10,
            "the survivor to recover the killed worker's jobs",
        )
        recovery = time.monotonic() - killed_at
        figures["kill_to_recovery_s"] = round(recovery, 2)
        assert int(found.group(1)) == len(held), found.group(0)
        # Not before the heartbeat expired: the last ping stored before the
        # kill is at most PING old, give or take a round retried after a
        # conflict (see test_heartbeat.py).
        assert recovery >= DEATH - 2 * PING, figures
    cluster.wait_drained(total, 120)
    outcomes = cluster.check_all_succeeded_once(ids)
    registered, left = cluster.claimed_by(killed.uuid)
    assert not left, f"jobs still claimed by the killed worker: {left}"
    figures["interrupted_jobs"] = sum(o.interruptions > 0 for o in outcomes.values())
    stats = stop_workers([survivor, killed] if restart else [survivor])
    figures["stats"] = stats
    return figures
