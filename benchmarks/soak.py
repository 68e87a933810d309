"""Soak runs: issue 14's faults, each against real worker processes, with
what happened to the jobs counted.

Each scenario starts its own servers and ``zasync worker`` processes,
queues jobs, injects one kind of fault, lets the fault clear, and waits
(bounded) for the jobs. Every job appends ``TOKEN PID`` to an effects file
each time its code starts (see soak_jobs.py), so a run counts:

- lost: a job the database no longer knows;
- run twice: a healthy job whose code started more than once (in the
  scenarios where no worker really died, any second run is wrong);
- wrongly failed: a healthy job that completed with a failure;
- hung: a healthy job not completed when the run's deadline passed;
- peers judged dead: "missed its heartbeat" lines in the workers' logs,
  in scenarios where no worker died.

``python benchmarks/soak.py`` runs every scenario (``make soak``);
``--scenario NAME`` (repeatable) runs some. A scenario whose tool is
missing here (faketime for clock skew, PostgreSQL, mounting a tmpfs) is
reported as not run, with why. Slow on purpose: minutes, not for ``make
test``.
"""

import argparse
import collections
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time

import ZODB.config

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from benchsupport import Client, say  # noqa: E402

import zasync  # noqa: E402
from zasync.status import COMPLETED  # noqa: E402
from zasync.testing import processes  # noqa: E402

# Short heartbeats, so that a pause or an outage is long against them.
PING, DEATH = "0.5", "2"
SCENARIOS = {}


def scenario(name, about):
    def register(func):
        SCENARIOS[name] = (func, about)
        return func

    return register


class NotRun(Exception):
    """This machine lacks what the scenario needs."""


class Run:
    """One scenario's directory, servers, workers and jobs."""

    def __init__(self, name, root):
        self.name = name
        self.directory = os.path.join(root, name)
        os.makedirs(self.directory)
        self.effects = os.path.join(self.directory, "effects.txt")
        self.workers = []
        self.cleanups = []
        self.healthy = {}  # token -> job id
        self.others = {}  # token -> job id (jobs meant to fail or be set aside)
        self.conf = None
        self.client = None

    # -- servers and workers ---------------------------------------------

    def env(self, extra_path=()):
        env = dict(os.environ)
        path = [HERE, *extra_path]
        if env.get("PYTHONPATH"):
            path.append(env["PYTHONPATH"])
        env["PYTHONPATH"] = os.pathsep.join(path)
        env["ZASYNC_SOAK_EFFECTS"] = self.effects
        return env

    def zeo(self, directory=None):
        server = processes.ZEOServer(directory or os.path.join(self.directory, "zeo"))
        server.start()
        self.cleanups.append(server.kill)
        self.conf = server.client_conf(os.path.join(self.directory, "client.conf"))
        self.connect()
        return server

    def postgres(self):
        if not processes.postgres_available():
            raise NotRun(f"no PostgreSQL at {processes.POSTGRES_DSN}")
        database = processes.PostgresDatabase().create()
        self.cleanups.append(database.drop)
        self.conf = database.zodb_conf(os.path.join(self.directory, "rs.conf"))
        self.connect()
        return database

    def connect(self):
        self.client = Client(ZODB.config.databaseFromURL(self.conf))
        self.cleanups.append(self.client.close)
        self.client.write(lambda root: self.client.queue(""))

    def worker(self, options=(), prefix=()):
        number = len(self.workers)
        worker = processes.Worker(
            os.path.join(self.directory, "workers"),
            f"worker-{number}",
            self.conf,
            options=["--ping-interval", PING, "--death-interval", DEATH, *options],
            env=self.env(),
        )
        if prefix:  # e.g. faketime: wrap the command
            original = worker._spawn
            worker._spawn = lambda argv, env=None, cwd=None: original(
                [*prefix, *argv], env=env, cwd=cwd
            )
        self.workers.append(worker)
        self.cleanups.append(worker.kill)
        worker.start()
        return worker

    def close(self):
        for cleanup in reversed(self.cleanups):
            with contextlib.suppress(Exception):
                cleanup()

    # -- jobs ----------------------------------------------------------------

    def put(self, calls, healthy=True, **options):
        """Queue ``calls`` [(token, callable, args)] in one transaction."""

        def put(root):
            queue = self.client.queue("")
            for token, func, args in calls:
                job = queue.put(zasync.Job(func, *args), **options)
                (self.healthy if healthy else self.others)[token] = job.id

        self.client.write(put)

    def put_work(self, count, seconds=0.0, prefix="job", **options):
        import soak_jobs

        self.put(
            [
                (f"{prefix}-{n}", soak_jobs.work, (f"{prefix}-{n}", seconds))
                for n in range(count)
            ],
            **options,
        )

    def states(self):
        """{token: (status or None, failed)} of every job put."""

        def read(root):
            queues = zasync.get_queues(self.client.conn)
            found = {}
            for token, job_id in {**self.healthy, **self.others}.items():
                job = queues.find_job(job_id)
                found[token] = (
                    (None, False)
                    if job is None
                    else (
                        job.status,
                        job.status == COMPLETED and bool(job.failed),
                    )
                )
            return found

        return self.client.read(read)

    def wait_done(self, timeout):
        """Wait until every healthy job completed, at most ``timeout`` s."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                states = self.states()
            except Exception:  # our own connection lost to the fault too
                states = None
            if states and all(states[t][0] == COMPLETED for t in self.healthy):
                return True
            time.sleep(0.25)  # polling the database, bounded by the deadline
        return False

    def runs(self):
        """{token: [pid, ...]} from the effects file."""
        found = collections.defaultdict(list)
        with contextlib.suppress(FileNotFoundError), open(self.effects) as f:
            for line in f:
                token, pid = line.split()
                found[token].append(int(pid))
        return found

    def judged_dead(self):
        return sum(w.log().count("missed its heartbeat") for w in self.workers)

    def count(self, paused_pids=(), notes=""):
        states, runs = self.states(), self.runs()
        lost = sum(1 for t in self.healthy if states[t][0] is None)
        twice = sum(
            1
            for t in self.healthy
            if len(runs.get(t, ())) > 1 and runs[t][0] not in paused_pids
        )
        failed = sum(1 for t in self.healthy if states[t][1])
        hung = sum(1 for t in self.healthy if states[t][0] not in (COMPLETED, None))
        return {
            "jobs": len(self.healthy),
            "lost": lost,
            "run twice": twice,
            "wrongly failed": failed,
            "hung": hung,
            "judged dead": self.judged_dead(),
            "notes": notes,
        }


# -- the scenarios ------------------------------------------------------------


@scenario("pause", "SIGSTOP a worker for 5 s (death interval 2 s), then SIGCONT")
def pause(run):
    run.zeo()
    paused = run.worker(["--agent-size", "2"])
    run.worker(["--agent-size", "2"])
    run.put_work(4, seconds=8, prefix="long")
    run.put_work(40, seconds=0.2)
    time.sleep(1.5)  # let both claim (the scenario's timing, not a wait)
    os.kill(paused.pid, signal.SIGSTOP)
    time.sleep(5)  # the pause itself
    os.kill(paused.pid, signal.SIGCONT)
    run.wait_done(90)
    row = run.count(
        paused_pids={paused.pid},
        notes="jobs first run by the paused worker may run again (at-least-once)",
    )
    # The paused worker really was unresponsive: being judged dead by the
    # steady one is right; the steady one being judged dead is not.
    row["judged dead"] = paused.log().count("missed its heartbeat")
    return row


@scenario("zeo-outage", "ZEO server down 3 s (death interval 2 s), three times")
def zeo_outage(run):
    server = run.zeo()
    run.worker(["--agent-size", "2"])
    run.worker(["--agent-size", "2"])
    run.put_work(2, seconds=15, prefix="long")
    run.put_work(30, seconds=0.2)
    for _ in range(3):
        time.sleep(2)  # let work go on between outages
        server.restart(down_for=3)
    run.wait_done(90)
    return run.count()


@scenario("base-exception", "jobs raising SystemExit, KeyboardInterrupt, GeneratorExit")
def base_exception(run):
    import soak_jobs

    run.zeo()
    run.worker(["--agent-size", "2"])
    kinds = ["SystemExit", "KeyboardInterrupt", "GeneratorExit"]
    run.put(
        [
            (f"raise-{k}-{n}", soak_jobs.raise_base, (f"raise-{k}-{n}", k))
            for k in kinds
            for n in range(3)
        ],
        healthy=False,
    )
    run.put_work(40, seconds=0.05)
    run.wait_done(60)
    states = run.states()
    recorded = sum(1 for t in run.others if states[t][1])
    return run.count(
        notes=f"{recorded} of {len(run.others)} raising jobs recorded as failed"
    )


def _removed_module(run, source):
    """A module importable here but not by the workers: its classes are
    ZODB Broken objects in the workers."""
    directory = os.path.join(run.directory, "removed")
    os.makedirs(directory)
    with open(os.path.join(directory, "soak_removed.py"), "w") as f:
        f.write(textwrap.dedent(source))
    sys.path.insert(0, directory)
    run.cleanups.append(lambda: sys.path.remove(directory))
    run.cleanups.append(lambda: sys.modules.pop("soak_removed", None))
    import soak_removed

    return soak_removed


@scenario(
    "removed-job-class",
    "a job of a Job subclass the workers cannot import, then 50 jobs",
)
def removed_job_class(run):
    import soak_jobs

    removed = _removed_module(
        run,
        """
        import zasync

        class SpecialJob(zasync.Job):
            pass
        """,
    )
    run.zeo()
    run.worker(["--agent-size", "2"])
    run.worker(["--agent-size", "2"])

    def put(root):
        queue = run.client.queue("")
        run.others["special"] = queue.put(
            removed.SpecialJob(soak_jobs.work, "special")
        ).id

    run.client.write(put)
    run.put_work(50, seconds=0.05)
    run.wait_done(60)
    lines = sum(len(w.log().splitlines()) for w in run.workers)
    return run.count(notes=f"{lines} log lines")


@scenario(
    "removed-policy-class",
    "a job whose retry policy class the workers cannot import, then 50 jobs",
)
def removed_policy_class(run):
    import soak_jobs

    removed = _removed_module(
        run,
        """
        import zasync.retry

        class SpecialPolicy(zasync.retry.RetryCommonFourTimes):
            pass
        """,
    )
    run.zeo()
    run.worker(["--agent-size", "2"])
    run.worker(["--agent-size", "2"])

    def put(root):
        queue = run.client.queue("")
        job = queue.put(
            zasync.Job(soak_jobs.fail, "special"),
            retry_policy=removed.SpecialPolicy(),
        )
        run.others["special"] = job.id

    run.client.write(put)
    run.put_work(50, seconds=0.05)
    run.wait_done(60)
    lines = sum(len(w.log().splitlines()) for w in run.workers)
    return run.count(notes=f"{lines} log lines")


@scenario("disk-full", "the ZEO server's disk fills for 5 s while jobs run")
def disk_full(run):
    mount = os.path.join(run.directory, "disk")
    os.makedirs(mount)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=12m", "tmpfs", mount],
        capture_output=True,
        text=True,
    )
    if done.returncode:
        raise NotRun(f"cannot mount a tmpfs: {done.stderr.strip()}")
    run.cleanups.append(lambda: subprocess.run(["umount", "-l", mount], check=False))
    run.zeo(os.path.join(mount, "zeo"))
    run.worker(["--agent-size", "2"])
    run.put_work(60, seconds=0.1)
    filler = os.path.join(mount, "filler")
    with open(filler, "wb") as f, contextlib.suppress(OSError):
        while True:
            f.write(b"\0" * 65536)
            f.flush()
    time.sleep(5)  # the disk stays full
    os.remove(filler)
    run.wait_done(90)
    return run.count()


@scenario(
    "postgres-drop",
    "every PostgreSQL connection of the database terminated, three times",
)
def postgres_drop(run):
    database = run.postgres()
    run.worker(["--agent-size", "2"])
    run.worker(["--agent-size", "2"])
    run.put_work(200, seconds=0.02)
    for _ in range(3):
        time.sleep(1.5)  # work goes on between the drops
        database.drop_connections()
    run.wait_done(120)
    return run.count()


@scenario("cpu-hogs", "6 one-thread workers, 4 CPU hogs, death interval 3 s")
def cpu_hogs(run):
    run.zeo()
    for _ in range(6):
        run.worker(["--agent-size", "1", "--death-interval", "3"])
    hogs = [
        subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(4)
    ]
    for hog in hogs:
        run.cleanups.append(hog.kill)
    run.put_work(60, seconds=0.3)
    run.wait_done(150)
    for hog in hogs:
        hog.kill()
    return run.count()


@scenario("clock-skew", "one of two workers with its clock 10 s ahead (faketime)")
def clock_skew(run):
    import soak_jobs

    faketime = shutil.which("faketime")
    if faketime is None:
        raise NotRun("faketime is not installed (apt-get install faketime)")
    run.zeo()
    run.worker(["--agent-size", "2"])
    run.worker(["--agent-size", "2"], prefix=[faketime, "-f", "+10s"])
    run.put_work(30, seconds=0.2)
    run.put(
        [(f"by-{n}", soak_jobs.work, (f"by-{n}", 0.05)) for n in range(20)], begin_by=5
    )
    run.wait_done(90)
    return run.count()


# -- running and reporting --------------------------------------------------------

COLUMNS = ["jobs", "lost", "run twice", "wrongly failed", "hung", "judged dead"]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", action="append", choices=sorted(SCENARIOS))
    parser.add_argument("--json", metavar="FILE", help="also write the rows here")
    parser.add_argument("--keep", action="store_true", help="keep the directories")
    args = parser.parse_args(argv)
    root = tempfile.mkdtemp(prefix="zasync-soak-")
    rows = {}
    for name in args.scenario or list(SCENARIOS):
        func, about = SCENARIOS[name]
        say(f"{name}: {about}")
        run = Run(name, root)
        began = time.monotonic()
        try:
            rows[name] = func(run)
        except NotRun as exc:
            rows[name] = {"notes": f"not run: {exc}"}
        except Exception as exc:
            rows[name] = {
                "notes": f"the run itself failed: {type(exc).__name__}: {exc}"
            }
        finally:
            run.close()
        rows[name]["seconds"] = round(time.monotonic() - began, 1)
    print("zasync soak runs (issue 14's faults)")
    print(f"  {'scenario':22}" + "".join(f"{c:>15}" for c in COLUMNS) + "  notes")
    for name, row in rows.items():
        cells = "".join(f"{row.get(c, '-')!s:>15}" for c in COLUMNS)
        print(f"  {name:22}{cells}  {row.get('notes', '')} ({row['seconds']} s)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)
    if not args.keep:
        shutil.rmtree(root, ignore_errors=True)
    else:
        print(f"  kept {root}")


if __name__ == "__main__":
    main()
