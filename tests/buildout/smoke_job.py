"""The job of the buildout smoke test (tests/buildout/smoke.sh), queued and
checked through the web instance with ``bin/instance run``:

    bin/instance run smoke_job.py queue
    bin/instance run smoke_job.py wait WORKER_UUID_FILE SECONDS
    bin/instance run smoke_job.py stopped WORKER_UUID_FILE SECONDS

``queue`` puts one job, ``os.getpid()``, in the default queue (in the main
database, or in the queues' own in multi-database mode) and commits. ``wait`` waits (at most SECONDS) until it completed
and checks that it succeeded in the worker: its result is the pid of the
dispatcher registered under the worker's UUID file, and no dispatcher runs
in this instance. ``stopped`` waits until that dispatcher left the queue,
which a worker stopped gracefully does.

``bin/instance run`` executes this file with ``app``, the Zope application
of the instance's zope.conf, in its globals; it exits 1 when this raises.
Not a pytest module: its name does not start with ``test_``.
"""

import os
import sys
import time

import transaction

import zasync
from zasync.connect import wait_until
from zasync.dispatcher import read_uuid_file
from zasync.plone import roles, startup

KEY = "zasync-buildout-smoke"
POLL = 0.1


class SmokeFailure(Exception):
    """The deployment did not do what the smoke test expects."""


def default_queue(app):
    """The default queue, where this process's role keeps it."""
    return zasync.get_queues(app._p_jar, roles.queues_database())[""]


def where():
    database = roles.queues_database()
    return "the main database" if database is None else f"database {database!r}"


def queue(app):
    role = roles.current_role()
    if roles.runs_dispatcher():
        raise SmokeFailure(
            f"the instance runs a dispatcher (role {role.name}): is "
            f"single_db_instance.zcml or multi_db_instance.zcml loaded?"
        )
    job = default_queue(app).put(zasync.Job(os.getpid))
    # The job's id, in the main database: the job may be in another one.
    app._p_jar.root()[KEY] = job.id
    transaction.commit()
    print(
        f"queued {job!r} ({job.callable_name}) in {where()}, from process "
        f"{os.getpid()} (role {role.name})"
    )


def worker_uuid(path):
    if not os.path.exists(path):
        raise SmokeFailure(f"no UUID file {path}: has the worker started?")
    return str(read_uuid_file(path))


def poll(app, seconds, ready, describe):
    """Return ready()'s first true value, looking afresh each time; fail
    with describe() after ``seconds``."""

    def afresh():
        transaction.abort()
        app._p_jar.sync()
        return ready()

    value = wait_until(afresh, seconds, POLL)
    if not value:
        raise SmokeFailure(f"after {seconds}s: {describe()}")
    return value


def wait(app, uuid_file, seconds):
    uuid = worker_uuid(uuid_file)
    queue = default_queue(app)
    job = queue.get(app._p_jar.root()[KEY])
    started = time.monotonic()
    poll(
        app,
        seconds,
        lambda: job.status == zasync.Status.COMPLETED,
        lambda: (
            f"{job!r} is {job.status.name}, not COMPLETED; dispatchers in "
            f"the queue: {sorted(queue.dispatchers)} (worker {uuid})"
        ),
    )
    if job.failed:
        raise SmokeFailure(f"{job!r} failed:\n{job.result.getTraceback()}")
    record = queue.dispatchers.get(uuid)
    if record is None:
        raise SmokeFailure(f"the worker's dispatcher {uuid} is not in the queue")
    if job.result != record.pid:
        raise SmokeFailure(
            f"{job!r} ran in process {job.result}, not in the worker's "
            f"dispatcher {uuid} (process {record.pid})"
        )
    if startup.get_dispatcher() is not None or job.result == os.getpid():
        raise SmokeFailure("the job ran in the instance, not in the worker")
    print(
        f"{job!r} completed in the worker (process {job.result}, dispatcher "
        f"{uuid}, queues in {where()}) {time.monotonic() - started:.2f}s "
        f"after the wait began"
    )


def stopped(app, uuid_file, seconds):
    uuid = worker_uuid(uuid_file)
    queue = default_queue(app)
    poll(
        app,
        seconds,
        lambda: uuid not in queue.dispatchers,
        lambda: f"the stopped worker's dispatcher {uuid} is still in the queue",
    )
    print(f"the worker's dispatcher {uuid} left the queue")


def main(app, argv):
    commands = {"queue": queue, "wait": wait, "stopped": stopped}
    if not argv or argv[0] not in commands:
        raise SystemExit(f"usage: smoke_job.py {'|'.join(commands)} [ARGS]")
    command, args = commands[argv[0]], argv[1:]
    if command is not queue:
        args = [args[0], float(args[1])]
    try:
        command(app, *args)
    except SmokeFailure as exc:
        print(f"smoke_job.py {argv[0]}: FAILED: {exc}", file=sys.stderr)
        raise SystemExit(1) from None


def arguments(argv):
    """This script's arguments: what follows its path in ``argv`` (before it,
    bin/instance run leaves its interpreter's own, and the ``-c`` they ran)."""
    for index, arg in enumerate(argv):
        if os.path.basename(arg) == "smoke_job.py":
            return argv[index + 1 :]
    return []


if __name__ == "__main__":
    main(app, arguments(sys.argv))  # noqa: F821 (app: given by bin/instance run)
