"""Set-aside jobs can be cleared (issue 14): operators list them, inspect
them as far as they load, retry one once its code is back, cancel or
discard one, with zasync.admin and with the real ``zasync`` command (run
against a FileStorage named by --zodb-conf); and the commands show a job
whose class cannot be loaded instead of crashing."""

import datetime
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import transaction

import jobfuncs
import zasync
from vanishing import JOB_SUBCLASS, Vanishing, opened
from zasync import admin, clock
from zasync.exceptions import JobCancelled
from zasync.registry import Agent, DispatcherRecord
from zasync.status import COMPLETED, PENDING
from zasync.testing import wait_for_all_jobs, wait_for_result

ZASYNC = Path(sys.executable).parent / "zasync"
DAY = datetime.timedelta(days=1)


@pytest.fixture
def store(tmp_path, monkeypatch):
    """The FileStorage (with a zodb.conf naming it) holding a job of a
    class that is removed once stored: ``store()`` returns (the module's
    Vanishing, the bad job's id, a healthy job's id)."""
    (tmp_path / "zodb.conf").write_text(
        f"<zodb>\n  <filestorage>\n    path {tmp_path / 'Data.fs'}\n"
        f"  </filestorage>\n</zodb>\n"
    )

    def make(claimed_by_dead_peer=False):
        gone = Vanishing(tmp_path, monkeypatch, JOB_SUBCLASS)
        module = gone.load()
        with opened(tmp_path / "Data.fs") as conn:
            queue = zasync.get_queues(conn)[""]
            bad = queue.put(module.CustomJob(jobfuncs.add, 1, 1), priority=5)
            if claimed_by_dead_peer:
                peer = queue.dispatchers["dead-peer"] = DispatcherRecord(
                    "dead-peer", clock.utcnow() - DAY
                )
                agent = peer.agents["main"] = Agent("main", size=1)
                assert queue.claim(agent, "dead-peer", 1, clock.utcnow(), start=1)
            fine = queue.put(zasync.Job(jobfuncs.add, 2, 2))
            transaction.commit()
            ids = bad.id, fine.id
        gone.remove()
        return (gone, *ids)

    return make


def _set_aside_by_a_dispatcher(path):
    """Run a real dispatcher until every job that can run ran."""
    with opened(path) as conn:
        dispatcher = zasync.start(conn.db(), poll_interval=0.05)
        try:
            wait_for_all_jobs(conn, seconds=10)
        finally:
            dispatcher.stop(5)


@pytest.fixture
def command(tmp_path):
    """Run a command line as the documentation shows it (``zasync ...
    --zodb-conf zodb.conf``), in tmp_path, with the real ``zasync`` of this
    environment and tmp_path on PYTHONPATH (where the removed module was).
    Returns (exit code, stdout, stderr); a traceback fails the test."""

    def run(line):
        argv = shlex.split(line)
        assert argv[0] == "zasync"
        paths = [os.environ.get("PYTHONPATH"), str(tmp_path)]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p)}
        result = subprocess.run(
            [str(ZASYNC), *argv[1:]],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            stdin=subprocess.DEVNULL,
        )
        assert "Traceback" not in result.stderr + result.stdout, result.stderr
        return result.returncode, result.stdout, result.stderr

    return run


def test_commands_show_a_job_whose_class_cannot_be_loaded(store, command):
    gone, bad_id, fine_id = store(claimed_by_dead_peer=True)
    code, out, _ = command("zasync status --zodb-conf zodb.conf")
    assert code == 0
    assert "1 active" in out
    code, out, _ = command("zasync jobs --zodb-conf zodb.conf")
    assert code == 0
    assert str(bad_id) in out and str(fine_id) in out
    assert f"job {bad_id} cannot be loaded: the job's class {gone.name}" in out
    code, out, _ = command(f"zasync job {bad_id} --zodb-conf zodb.conf")
    assert code == 0
    assert "cannot be loaded" in out
    assert re.search(rf"stored class +{gone.name}\.CustomJob", out)
    assert "jobfuncs.add" in out
    code, out, _ = command(f"zasync job {bad_id} --json --zodb-conf zodb.conf")
    info = json.loads(out)
    assert (info["status"], info["class"]) == ("active", f"{gone.name}.CustomJob")
    assert "cannot be imported" in info["problem"]
    code, _, err = command(f"zasync retry {bad_id} --zodb-conf zodb.conf")
    assert code == 2
    assert "cannot be retried" in err and "sets such a job aside" in err
    code, _, err = command(f"zasync cancel {bad_id} --zodb-conf zodb.conf")
    assert code == 2
    assert "running" in err or "cannot be cancelled" in err


def test_list_retry_once_the_code_is_back(tmp_path, store, command):
    gone, bad_id, fine_id = store()
    _set_aside_by_a_dispatcher(tmp_path / "Data.fs")
    code, out, _ = command("zasync set-aside --zodb-conf zodb.conf")
    assert code == 0
    line = next(line for line in out.splitlines() if line.startswith(str(bad_id)))
    assert "pending" in line and " no " in line and "cannot be imported" in line
    code, out, _ = command("zasync set-aside --zodb-conf zodb.conf --json")
    (row,) = json.loads(out)["jobs"]
    assert (row["id"], row["loads"], row["class"]) == (
        str(bad_id),
        False,
        f"{gone.name}.CustomJob",
    )
    code, out, _ = command("zasync jobs --status set-aside --zodb-conf zodb.conf")
    assert str(bad_id) in out and "set-aside" in out
    code, _, err = command(f"zasync retry {bad_id} --zodb-conf zodb.conf")
    assert code == 2
    assert "still cannot be run" in err and f"zasync discard {bad_id}" in err

    gone.restore()
    code, out, _ = command("zasync set-aside --zodb-conf zodb.conf --json")
    assert json.loads(out)["jobs"][0]["loads"] is True
    code, out, _ = command(f"zasync retry {bad_id} --zodb-conf zodb.conf")
    assert code == 0, out
    assert "back in the run order" in out
    code, out, _ = command("zasync set-aside --zodb-conf zodb.conf")
    assert out.strip() == "no job is set aside"
    with opened(tmp_path / "Data.fs") as conn:
        queue = zasync.get_queues(conn)[""]
        job = queue.get(bad_id)
        assert list(queue) == [job]
        dispatcher = zasync.start(conn.db(), poll_interval=0.05)
        try:
            assert wait_for_result(job, seconds=10) == 2
        finally:
            dispatcher.stop(5)


def test_discard(tmp_path, store, command):
    gone, bad_id, fine_id = store()
    _set_aside_by_a_dispatcher(tmp_path / "Data.fs")
    code, out, _ = command(f"zasync discard {bad_id} --zodb-conf zodb.conf --json")
    assert code == 0
    info = json.loads(out)
    assert info["id"] == str(bad_id) and "cannot be imported" in info["reason"]
    code, _, err = command(f"zasync discard {bad_id} --zodb-conf zodb.conf")
    assert code == 2 and f"no job {bad_id}" in err
    code, _, err = command(f"zasync discard {fine_id} --zodb-conf zodb.conf")
    assert code == 2 and "not set aside" in err
    with opened(tmp_path / "Data.fs") as conn:
        queue = zasync.get_queues(conn)[""]
        assert queue.get(bad_id) is None
        assert queue.set_aside_jobs == {}
        assert queue.get(fine_id).result == 4


def test_prune_discards_set_aside_jobs_only_when_asked(tmp_path, store, command):
    gone, bad_id, _ = store()
    _set_aside_by_a_dispatcher(tmp_path / "Data.fs")
    code, out, _ = command("zasync prune --older-than 0s --zodb-conf zodb.conf")
    assert code == 0 and "set-aside" not in out
    code, out, _ = command(
        "zasync prune --older-than 0s --set-aside --zodb-conf zodb.conf"
    )
    assert code == 0
    assert "and 1 set-aside jobs" in out
    with opened(tmp_path / "Data.fs") as conn:
        assert zasync.get_queues(conn)[""].set_aside_jobs == {}


# -- the library, on jobs that load but were set aside ------------------------


def test_cancel_and_retry_a_set_aside_job_that_loads(queue):
    queues = zasync.get_queues(queue._p_jar)
    cancelled = queue.put(zasync.Job(jobfuncs.add, 1, 1))
    retried = queue.put(zasync.Job(jobfuncs.add, 2, 2))
    queue.set_aside(cancelled, "PicklingError: gone")
    queue.set_aside(retried, "PicklingError: gone")
    transaction.commit()
    assert admin.cancel_job(queues, cancelled.id, reason="not needed") is cancelled
    assert cancelled.status == COMPLETED
    assert cancelled.result.check(JobCancelled)
    assert cancelled.result.getErrorMessage().endswith("before it ran: not needed")
    outcome = admin.retry_job(queues, retried.id)
    assert (outcome.job, outcome.set_aside_reason) == (retried, "PicklingError: gone")
    assert retried.status == PENDING and list(queue) == [retried]
    assert queue.set_aside_jobs == {}
    transaction.commit()


def test_queue_remove_and_discard_a_set_aside_job(queue):
    job = queue.put(zasync.Job(jobfuncs.add, 1, 1), unique_key="once")
    other = queue.put(zasync.Job(jobfuncs.add, 2, 2))
    queue.set_aside(job, "PicklingError: gone")
    queue.set_aside(other, "PicklingError: gone")
    transaction.commit()
    queue.remove(job)  # was a bare KeyError
    assert queue.get(job.id) is None
    assert queue.put(zasync.Job(jobfuncs.add, 3, 3), unique_key="once") is not job
    assert queue.discard_set_aside(other.id) is other
    assert queue.set_aside_jobs == {}
    with pytest.raises(ValueError, match="is not set aside"):
        queue.discard_set_aside(other.id)
    with pytest.raises(admin.AdminError, match="not set aside"):
        admin.discard_job(zasync.get_queues(queue._p_jar), queue[0].id)
    transaction.commit()
