"""A Data.fs written by an earlier zasync (see old-data.txt) still opens,
lists and runs: every stored class is importable under its old dotted name.
Written by make_old_data.py; regenerate it only before a change that must
keep reading it, never after."""

import json
import os
import shutil
import subprocess
import sys

import pytest
import transaction
import ZODB
import ZODB.FileStorage

import zasync
from zasync.status import COMPLETED, PENDING
from zasync.testing import wait_for_all_jobs

HERE = os.path.dirname(os.path.abspath(__file__))
ZASYNC = os.path.join(os.path.dirname(sys.executable), "zasync")


@pytest.fixture
def old_data(tmp_path):
    path = tmp_path / "Data.fs"
    shutil.copy(os.path.join(HERE, "old-data.fs"), path)
    conf = tmp_path / "zodb.conf"
    conf.write_text(
        f"<zodb>\n  <filestorage>\n    path {path}\n  </filestorage>\n</zodb>\n"
    )
    return path, conf


def command(conf, *args):
    done = subprocess.run(
        [ZASYNC, *args, "--zodb-conf", str(conf)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=HERE,  # compat_jobs is importable from here
        env={**os.environ, "PYTHONPATH": os.pathsep.join([HERE, *sys.path])},
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def listed(conf, *filters):
    return json.loads(command(conf, "jobs", "--json", *filters))["jobs"]


def test_the_command_lists_and_describes_the_old_jobs(old_data):
    _, conf = old_data
    failed = listed(conf, "--status", "failed")
    assert len(failed) == 6
    errors = set()
    for row in failed:
        described = json.loads(command(conf, "job", row["id"], "--json"))
        errors.add(described["error"].split(":")[0])
    assert {
        "builtins.ValueError",
        "zasync.local.NotInJobError",
        "zasync.plone.exceptions.UserNotFound",
        "zasync.queue.JobTimedOut",
        "zasync.admin.JobCancelled",
    } <= errors
    succeeded = listed(conf, "--status", "succeeded")
    assert sorted(row["callable"] for row in succeeded) == [
        *["compat_jobs.add"] * 3,
        "compat_jobs.total",
        "parallel(2 jobs)",
    ]
    assert len(listed(conf, "--status", "pending")) == 4
    status = command(conf, "status")
    assert "exports" in status and "reports" in status


def test_the_old_classes_load_and_the_pending_jobs_run(old_data):
    path, _ = old_data
    sys.path.insert(0, HERE)
    db = ZODB.DB(ZODB.FileStorage.FileStorage(str(path)))
    try:
        conn = db.open()
        queues = zasync.get_queues(conn)
        pending = [job for queue in queues.values() for job in queue]
        assert len(pending) == 4
        plone_jobs = [job for job in pending if job.environment is not None]
        (plone_job,) = plone_jobs
        environment = plone_job.environment
        assert type(environment).__module__ == "zasync.plone.environment"
        assert environment.principal.roles == ("Editor", "Member")
        assert environment.virtual_host.server_url == "https://example.org"
        assert plone_job.args[0].path == ("", "Plone", "doc")
        # The Plone job needs a Plone site: it is cancelled; the rest run.
        queues["reports"].remove(plone_job)
        assert queues[""].quotas["exports"].size == 2
        transaction.commit()
        dispatcher = zasync.start(db, poll_interval=0.05, queues=("", "reports"))
        try:
            wait_for_all_jobs(conn, seconds=60)
        finally:
            dispatcher.stop(10)
        transaction.begin()
        results = sorted(
            repr(job.result)
            for queue in queues.values()
            for job in queue.jobs(status=COMPLETED)
            if job.status == COMPLETED and not job.failed
        )
        assert "42" in results and "101" in results
        with_callback = [
            job for job in queues[""].jobs(status=COMPLETED) if job.result == 42
        ]
        (job,) = with_callback
        assert [cb.result for cb in job.callbacks] == ["later: 42"]
        assert not [
            job for queue in queues.values() for job in queue if job.status == PENDING
        ]
        conn.close()
    finally:
        db.close()
        sys.path.remove(HERE)


def test_an_old_queue_gets_its_inbox_from_its_first_put(old_data):
    """Queues stored before there was an inbox read without writing, and
    the first put makes the inbox (see zasync.queue.Inbox)."""
    path, _ = old_data
    sys.path.insert(0, HERE)
    db = ZODB.DB(ZODB.FileStorage.FileStorage(str(path)))
    try:
        conn = db.open()
        queue = zasync.get_queues(conn)[""]
        assert "_inbox" not in queue.__dict__
        pending = list(queue)
        assert len(queue) == len(pending) and queue.counts()["pending"] == len(pending)
        assert all(queue.get(job.id) is job for job in pending)
        assert conn._registered_objects == []
        job = queue.put(zasync.Job(compat_job("add"), 20, 22))
        assert "_inbox" in queue.__dict__
        transaction.commit()
        assert queue.get(job.id) is job and job in list(queue)
        dispatcher = zasync.start(db, poll_interval=0.05, queues=("",))
        try:
            wait_for_all_jobs(conn, seconds=60, queue_names=[""])
        finally:
            dispatcher.stop(10)
        transaction.begin()
        assert job.status == COMPLETED and job.result == 42
        conn.close()
    finally:
        sys.path.remove(HERE)
        db.close()


def test_an_old_queue_keeps_its_jobs_when_it_makes_its_run_parts(old_data):
    """A queue stored before there were run parts reads from its own trees
    and makes its parts at its first put; the jobs filed before are still
    found, run, listed and removed (they stay in part 0)."""
    path, conf = old_data
    sys.path.insert(0, HERE)
    db = ZODB.DB(ZODB.FileStorage.FileStorage(str(path)))
    try:
        conn = db.open()
        queue = zasync.get_queues(conn)[""]
        assert "_parts" not in queue.__dict__
        pending = list(queue)
        completed = queue.jobs(status=COMPLETED)
        assert pending and completed
        assert conn._registered_objects == []
        new = queue.put(zasync.Job(compat_job("add"), 1, 2))
        assert "_parts" in queue.__dict__
        transaction.commit()
        assert all(queue.get(job.id) is job for job in pending + completed + [new])
        assert queue.jobs(status=COMPLETED) == completed
        dispatcher = zasync.start(db, poll_interval=0.05, queues=("",))
        try:
            wait_for_all_jobs(conn, seconds=60, queue_names=[""])
        finally:
            dispatcher.stop(10)
        transaction.begin()
        assert all(job.status == COMPLETED for job in pending + [new])
        listed = queue.jobs(status=COMPLETED)
        assert set(completed + pending + [new]) <= set(listed)
        for job in listed:
            if job.parent is None:
                queue.remove(job)
        transaction.commit()
        assert [job for job in queue.jobs(status=COMPLETED) if job.parent is None] == []
        conn.close()
    finally:
        sys.path.remove(HERE)
        db.close()


def compat_job(name):
    import compat_jobs

    return getattr(compat_jobs, name)
