"""A demonstration: queue real jobs on a FileStorage and watch them run.

``zasync demo`` (or ``make demo``) runs it. The jobs below are ordinary
module-level functions, which is what a worker needs to find them again.
"""

import datetime
import os
import tempfile
import time

import transaction
import zc.lockfile
import ZODB
import ZODB.FileStorage
from BTrees.OOBTree import OOBTree

import zasync
from zasync import local
from zasync.exceptions import CommandError
from zasync.registry import threads_text
from zasync.retry import RetryWithDelay
from zasync.testing import wait_for_all_jobs

_flaky_calls = {}


def word_count(texts, name):
    """Count the words of some documents and store the result in the DB."""
    total = 0
    for index, text in enumerate(texts):
        total += len(text.split())
        local.set_progress((index + 1) / len(texts), f"document {index + 1}")
    reports = local.get_job().queue._p_jar.root()["demo_reports"]
    reports[name] = total
    return total


def flaky_service(key):
    """Fails twice (as a slow remote service might), then answers."""
    _flaky_calls[key] = _flaky_calls.get(key, 0) + 1
    if _flaky_calls[key] <= 2:
        raise ConnectionError(f"service unavailable (try {_flaky_calls[key]})")
    return "service answered"


def divide(a, b):
    return a / b


def step(name):
    return f"{name} done"


def summarize(*jobs):
    return ", ".join(str(job.result) for job in jobs)


def notify(result):
    return f"notified: {result!r}"


def _describe(job):
    took = ""
    if job.started and job.ended:
        took = f" in {(job.ended - job.started).total_seconds() * 1000:.1f} ms"
    return (
        f"  job {job.id} {job.callable_name}: {job.status}{took}, "
        f"attempts={job.attempts}\n      result: {job.result!r}"
    )


def run(directory=None, out=print):
    """Run the demo on ``directory``/Data.fs (made if missing; a database
    of an earlier run is reused) and print what happens with ``out``."""
    if directory is None:
        directory = tempfile.mkdtemp(prefix="zasync-demo-")
    elif os.path.exists(directory) and not os.path.isdir(directory):
        raise CommandError(f"--directory {directory}: exists and is not a directory")
    else:
        try:
            os.makedirs(directory, exist_ok=True)
        except OSError as exc:
            raise CommandError(f"--directory {directory}: {exc.strerror}") from None
    path = os.path.join(directory, "Data.fs")
    out(f"zasync demo: database {path}")
    try:
        db = ZODB.DB(ZODB.FileStorage.FileStorage(path))
    except zc.lockfile.LockError:
        raise CommandError(
            f"{path} is in use by another process (a demo still running?)"
        ) from None
    try:
        dispatcher = zasync.start(db, poll_interval=0.5)
        threads = threads_text(dispatcher.agent_sizes[""][0])
        out(f"dispatcher {dispatcher.uuid} started ({threads})")
        conn = db.open()
        conn.root()["demo_reports"] = OOBTree()
        queue = zasync.get_queues(conn)[""]
        if "reports" not in queue.quotas:
            queue.quotas.create("reports", size=1)
        texts = ["the quick brown fox", "jumps over", "the lazy dog " * 50]
        jobs = [
            queue.put(zasync.Job(word_count, texts, "fox"), quota_names=("reports",)),
            queue.put(
                zasync.Job(flaky_service, "demo"),
                retry_policy=RetryWithDelay(
                    delay=datetime.timedelta(milliseconds=100), jitter=0
                ),
            ),
            queue.put(zasync.Job(divide, 1, 0)),
            queue.put(
                zasync.serial(
                    zasync.Job(step, "extract"),
                    zasync.Job(step, "transform"),
                    zasync.Job(step, "load"),
                    postprocess=summarize,
                )
            ),
            queue.put(zasync.Job(divide, 10, 4), priority=10),
        ]
        callback = jobs[0].add_callback(notify)
        started = time.perf_counter()
        transaction.commit()
        out(f"queued {len(jobs)} jobs in one transaction; waiting for them...")
        wait_for_all_jobs(conn, 30)
        out(f"all done in {time.perf_counter() - started:.2f} s:")
        for job in jobs + [callback]:
            out(_describe(job))
        out(f"  word count stored by the job: {dict(conn.root()['demo_reports'])}")
        out(f"  progress of the word count: {jobs[0].progress}")
        out(f"queue counts: {queue.counts()}")
        conn.close()
        dispatcher.stop(10)
    finally:
        db.close()
    return 0
