"""Jobs of dead or restarted dispatchers are recovered, never lost."""

import datetime
import importlib
import os
import socket
import sys
import uuid

import transaction

import jobfuncs
import zasync
from zasync import clock
from zasync.dispatcher import dispatcher_uuid, read_uuid_file
from zasync.registry import Agent, DispatcherRecord
from zasync.status import ACTIVE, ASSIGNED, CALLBACKS, COMPLETED
from zasync.testing import wait_for, wait_for_result


def _claimed_by_ghost(queue, jobs, uuid_, last_ping, start, death_interval=60):
    """Jobs claimed by a dispatcher that then vanished (as after kill -9).
    Peers judge its death by the storage's time since the commit that
    wrote its heartbeat (here), not by ``last_ping``: a ghost meant to be
    found dead has a short ``death_interval``."""
    record = queue.dispatchers[uuid_] = DispatcherRecord(
        uuid_, last_ping, 0.1, death_interval
    )
    agent = record.agents["main"] = Agent("main", size=len(jobs))
    for job in jobs:
        queue.put(job)
    claimed = queue.claim(agent, uuid_, len(jobs), clock.utcnow(), start=start)
    transaction.commit()
    return record, claimed


def test_restart_with_same_uuid_recovers_at_once(queue, start_dispatcher):
    me = str(uuid.uuid4())
    job = zasync.Job(jobfuncs.add, 2, 3)
    record, _ = _claimed_by_ghost(queue, [job], me, clock.utcnow(), start=1)
    record.host, record.pid = "gone.example.org", 1
    transaction.commit()
    assert job.status == ACTIVE
    # The heartbeat is fresh: a peer would wait 60 s; the same UUID does not.
    start_dispatcher(uuid=me, ping_interval=600, death_interval=3600)
    assert wait_for_result(job) == 5
    assert job.interruptions == 1
    assert job.attempts == 2
    # The record now tells where the UUID lives.
    transaction.begin()
    assert (record.host, record.pid) == (socket.gethostname(), os.getpid())


def test_dead_peer_jobs_are_recovered(queue, start_dispatcher):
    ghost = str(uuid.uuid4())
    running, held = zasync.Job(jobfuncs.add, 1, 1), zasync.Job(jobfuncs.add, 2, 2)
    hour_ago = clock.utcnow() - datetime.timedelta(hours=1)
    record, _ = _claimed_by_ghost(
        queue, [running, held], ghost, hour_ago, start=1, death_interval=0.5
    )
    assert (running.status, held.status) == (ACTIVE, ASSIGNED)
    start_dispatcher(ping_interval=0.1)
    assert wait_for_result(running) == 2
    assert wait_for_result(held) == 4
    assert running.interruptions == 1
    assert held.interruptions == 0
    assert queue.dispatchers[ghost].dead
    assert len(queue.dispatchers[ghost].agents["main"].jobs) == 0


def test_live_peer_is_left_alone(queue, start_dispatcher):
    peer = str(uuid.uuid4())
    job = zasync.Job(jobfuncs.add, 1, 1)
    record, _ = _claimed_by_ghost(queue, [job], peer, clock.utcnow(), start=1)
    mine = start_dispatcher()
    wait_for(lambda: mine.stats["rounds"] >= 2, 5, lambda: None, lambda: "no rounds")
    transaction.begin()
    assert job.status == ACTIVE
    assert not queue.dispatchers[peer].dead


def test_job_that_keeps_killing_its_worker_fails(queue, start_dispatcher):
    ghost = str(uuid.uuid4())
    poison = zasync.Job(jobfuncs.add, 1, 1)
    poison.interruptions = 4  # the default policy allows four
    handled = poison.add_callbacks(failure=jobfuncs.on_failure)
    hour_ago = clock.utcnow() - datetime.timedelta(hours=1)
    _claimed_by_ghost(queue, [poison], ghost, hour_ago, start=1, death_interval=0.5)
    start_dispatcher(ping_interval=0.1)
    failure = wait_for_result(poison)
    assert failure.check("zasync.queue.JobInterrupted")
    assert "interrupted 5 times" in failure.getErrorMessage()
    assert wait_for_result(handled) == "handled JobInterrupted"


def test_callbacks_of_a_dead_peer_are_resumed(queue, start_dispatcher):
    ghost = str(uuid.uuid4())
    job = zasync.Job(jobfuncs.add, 1, 2)
    callback = job.add_callback(jobfuncs.callback_value)
    hour_ago = clock.utcnow() - datetime.timedelta(hours=1)
    _claimed_by_ghost(queue, [job], ghost, hour_ago, start=1, death_interval=0.5)
    job.result, job.ended, job.status = 3, clock.utcnow(), CALLBACKS
    transaction.commit()
    start_dispatcher(ping_interval=0.1)
    assert wait_for_result(callback) == "callback got 3"
    assert wait_for_result(job) == 3
    assert job.attempts == 1


def test_missing_module_fails_the_job_clearly(
    tmp_path, queue, start_dispatcher, monkeypatch
):
    module = tmp_path / "vanishing_jobs.py"
    module.write_text("def work():\n    return 'worked'\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    vanishing = importlib.import_module("vanishing_jobs")
    job = queue.put(zasync.Job(vanishing.work))
    transaction.commit()
    queue._p_jar.cacheMinimize()
    del sys.modules["vanishing_jobs"]
    module.unlink()
    importlib.invalidate_caches()
    start_dispatcher()
    failure = wait_for_result(job)
    assert failure.check("zasync.job.CallableNotFound")
    assert "vanishing_jobs.work" in failure.getErrorMessage()
    assert job.status == COMPLETED


def test_uuid_file_is_created_and_reused(tmp_path, monkeypatch):
    path = tmp_path / "var" / "uuid.txt"
    monkeypatch.setenv("ZASYNC_UUID", str(path))
    first = dispatcher_uuid()
    assert path.exists() and first == dispatcher_uuid()
    assert uuid.UUID(first)


def test_old_zc_async_uuid_variable_and_file_format(tmp_path, monkeypatch):
    path = tmp_path / "instance-uuid.txt"
    value = uuid.uuid4()
    path.write_text(f"# written by zc.async\n{value}\n")
    monkeypatch.delenv("ZASYNC_UUID", raising=False)
    monkeypatch.setenv("ZC_ASYNC_UUID", str(path))
    assert dispatcher_uuid() == str(value)
    assert read_uuid_file(str(path)) == str(value)


def test_job_that_cannot_be_stored_any_more_is_set_aside(
    tmp_path, queue, start_dispatcher, monkeypatch
):
    """A job whose argument's module vanished cannot be written again; it is
    set aside with the reason instead of stopping the dispatcher."""
    module = tmp_path / "vanishing_args.py"
    module.write_text("def transform(value):\n    return value\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    vanishing = importlib.import_module("vanishing_args")
    broken = queue.put(zasync.Job(jobfuncs.append, [], vanishing.transform), priority=5)
    fine = queue.put(zasync.Job(jobfuncs.add, 1, 1))
    transaction.commit()
    queue._p_jar.cacheMinimize()
    del sys.modules["vanishing_args"]
    module.unlink()
    importlib.invalidate_caches()
    start_dispatcher()
    assert wait_for_result(fine, seconds=20) == 2
    aside = queue.set_aside_jobs
    assert list(aside) == [broken.id]
    assert "vanishing_args" in aside[broken.id][1]
    assert len(queue) == 0
