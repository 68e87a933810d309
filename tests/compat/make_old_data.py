"""Write ``old-data.fs`` with the zasync of the commit it is run on.

Run once, before a restructuring, and commit the file with the commit it
was written by in ``old-data.txt``; ``test_old_data.py`` then checks that
code after the move still reads, lists and runs it:

    .venv/bin/python tests/compat/make_old_data.py
"""

import datetime
import importlib.metadata
import os
import subprocess
import sys

import transaction
import ZODB
import ZODB.FileStorage

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import compat_jobs  # noqa: E402

import zasync  # noqa: E402
import zasync.clock  # noqa: E402
from zasync import admin  # noqa: E402
from zasync.local import NotInJobError  # noqa: E402
from zasync.plone.accounts import Principal  # noqa: E402
from zasync.plone.environment import PloneEnvironment  # noqa: E402
from zasync.plone.exceptions import UserNotFound  # noqa: E402
from zasync.plone.jobrequest import VirtualHost  # noqa: E402
from zasync.plone.references import ObjectRef  # noqa: E402
from zasync.retry import RetryWithDelay  # noqa: E402
from zasync.testing import wait_for_all_jobs  # noqa: E402

PATH = os.path.join(HERE, "old-data.fs")


def plone_environment():
    return PloneEnvironment(
        "main",
        ("", "Plone"),
        ("", "Plone", "acl_users"),
        "editor",
        "http://example.org/Plone",
        site_oid=b"\0" * 7 + b"\x11",
        principal=Principal(
            ("", "Plone", "acl_users"), "editor", 2, None, ("Member", "Editor")
        ),
        virtual_host=VirtualHost("https://example.org", ("", "Plone"), ()),
    )


def main():
    for suffix in ("", ".index", ".lock", ".tmp"):
        if os.path.exists(PATH + suffix):
            os.remove(PATH + suffix)
    db = ZODB.DB(ZODB.FileStorage.FileStorage(PATH))
    conn = db.open()
    queues = zasync.get_queues(conn)
    queue = queues[""]
    queues.create("reports")
    queue.quotas.create("exports", size=2)
    # What runs now, to be stored completed or failed.
    done = queue.put(zasync.Job(compat_jobs.add, 1, 2), quota_names=("exports",))
    done.add_callback(compat_jobs.note, "sum")
    queue.put(zasync.Job(compat_jobs.fail_with, ValueError("plain trouble")))
    queue.put(zasync.Job(compat_jobs.fail_with, NotInJobError("not in a job")))
    queue.put(zasync.Job(compat_jobs.fail_with, UserNotFound("user 'gone'")))
    queue.put(
        zasync.parallel(
            zasync.Job(compat_jobs.add, 1, 1),
            zasync.Job(compat_jobs.add, 2, 2),
            postprocess=compat_jobs.total,
        )
    )
    queue.put(
        zasync.Job(compat_jobs.add, 0, 0),
        begin_after=zasync.clock.utcnow() - datetime.timedelta(hours=1),
        begin_by=datetime.timedelta(seconds=1),
    )
    plone_failed = zasync.Job(compat_jobs.fail_with, UserNotFound("user 'editor'"))
    plone_failed.environment = plone_environment()
    queue.put(plone_failed)
    transaction.commit()
    dispatcher = zasync.start(db, poll_interval=0.05)
    try:
        wait_for_all_jobs(conn, seconds=60)
    finally:
        dispatcher.stop(10)
    transaction.begin()
    # What stays pending: the test runs it after the move.
    pending = queue.put(zasync.Job(compat_jobs.add, 20, 22), quota_names=("exports",))
    pending.add_callback(compat_jobs.note, "later")
    pending.retry_policy = RetryWithDelay(
        delay=datetime.timedelta(seconds=1), max_attempts=2
    )
    queue.put(
        zasync.serial(
            zasync.Job(compat_jobs.add, 3, 4), zasync.Job(compat_jobs.add, 5, 6)
        )
    )
    queues["reports"].put(zasync.Job(compat_jobs.add, 100, 1))
    cancelled = queue.put(zasync.Job(compat_jobs.add, 0, 1))
    plone_pending = zasync.Job(
        compat_jobs.add, ObjectRef(("", "Plone", "doc"), "u1"), 0
    )
    plone_pending.environment = plone_environment()
    queues["reports"].put(plone_pending)
    transaction.commit()
    admin.cancel_job(queues, cancelled.id, by="make_old_data", reason="a test")
    transaction.commit()
    conn.close()
    db.close()
    for suffix in (".index", ".lock", ".tmp"):
        if os.path.exists(PATH + suffix):
            os.remove(PATH + suffix)
    commit = subprocess.run(
        ["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=HERE
    ).stdout.strip()
    with open(os.path.join(HERE, "old-data.txt"), "w") as f:
        f.write(
            f"written by zasync {importlib.metadata.version('zasync')} at commit {commit}\n"
        )
    print(f"wrote {PATH}")


if __name__ == "__main__":
    main()
