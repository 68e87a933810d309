"""Cluster-wide settings and the cluster's mode with real Zope processes:
a ZEO server, Zope 6 instances and workers started with runwsgi or
``zasync worker --zope-conf``, and the ``zasync`` command run by the test."""

import json
import os
import signal
import subprocess

import pytest
import zope_process_jobs as jobs
from test_zope_processes import FAST, main_db, zeo, zeo_server, zope
from zope_process_support import BIN, READY, put, queue_of, record_of, zodb_db

import zasync
from zasync.config import WORKER_READY
from zasync.testing import wait_for_result

__all__ = ["zeo", "zeo_server", "zope"]  # fixtures, used by name

QUEUES = "zasync_queues"


def both_databases(zeo):
    """main and zasync_queues, as every process of a cluster that may be
    in either mode mounts them: only the ZCML file differs."""
    return main_db(zeo) + zodb_db(QUEUES, zeo.zeoclient(queues=True), f"/{QUEUES}")


def zasync_command(*args, timeout=120):
    return subprocess.run(
        [os.path.join(BIN, "zasync"), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def zodb_conf(tmp_path, zeo):
    """A --zodb-conf file for the test's main storage (single-db mode)."""
    path = tmp_path / "zeo.conf"
    path.write_text(f"<zodb>\n{zeo.zeoclient()}</zodb>\n")
    return str(path)


def stop(process):
    process.process.send_signal(signal.SIGTERM)
    assert process.wait_for_exit(30) == 0, process.text()


@pytest.mark.parametrize(
    "cluster, other, mine, theirs, mode",
    [
        (
            "multi_db_instance.zcml",
            "single_db_worker.zcml",
            "the main database (single-database mode)",
            "the database 'zasync_queues' (multi-database mode)",
            "single-db",
        ),
        (
            "single_db_instance.zcml",
            "multi_db_worker.zcml",
            "the database 'zasync_queues' (multi-database mode)",
            "the main database (single-database mode)",
            "multi-db",
        ),
    ],
    ids=[
        "single-db-worker-in-multi-db-cluster",
        "multi-db-worker-in-single-db-cluster",
    ],
)
def test_a_worker_of_the_other_mode_stops_at_start_up(
    cluster, other, mine, theirs, mode, zeo, client, zope
):
    databases = both_databases(zeo)
    instance = zope("instance", cluster, databases).start_and_wait()
    worker = zope("worker", other, databases)
    worker.start()
    assert worker.wait_for_exit() != 0
    text = " ".join(worker.text().split())
    assert "ConfigurationError" in text
    assert (
        f"this process loads {other}, which keeps the queues in {mine}, but this "
        f"cluster keeps them in {theirs}, as {cluster} on "
    ) in text
    fixed = (
        other.replace("single", "multi")
        if "single" in other
        else (other.replace("multi", "single"))
    )
    assert f"Load {fixed} instead of {other}" in text
    assert f"'zasync mode set {mode} --zope-conf" in text
    assert READY not in text
    if mode == "single-db":
        # It made no queues in the main database.
        assert queue_of(client) is None

    # Switching the cluster on purpose: stop it, record the new mode with
    # the zope.conf of a process of that mode, start it in that mode.
    instance.stop()
    conf = os.path.join(worker.home, "etc/zope.conf")
    done = zasync_command("mode", "set", "--zope-conf", conf)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"recorded: the queues live in {mine} (was {theirs})" in done.stdout
    worker.start_and_wait()
    database = None if mode == "single-db" else QUEUES
    if database is None:
        job = put(client, zasync.Job(jobs.pid))
    else:
        db = zeo.open(queues=QUEUES)
        conn = db.open()
        job = put(conn, zasync.Job(jobs.pid), QUEUES)
    try:
        assert wait_for_result(job, 20) == worker.pid
    finally:
        if database is not None:
            conn.transaction_manager.abort()
            conn.close()
            for each in list(db.databases.values()):
                each.close()


def test_agent_sizes_are_cluster_wide_and_say_where_they_come_from(
    tmp_path, zeo, client, zope
):
    conf = zodb_conf(tmp_path, zeo)
    free = zope("free", "single_db_worker.zcml", main_db(zeo)).start_and_wait()
    pinned = zope(
        "pinned", "single_db_worker.zcml", main_db(zeo), f"{FAST}\nthreads 2"
    ).start_and_wait()
    assert record_of(client, free.pid).agents["main"].size == 3

    done = zasync_command("agents", "set", "5", "--zodb-conf", conf)
    assert done.returncode == 0, done.stderr
    free_uuid = record_of(client, free.pid).uuid
    pinned_uuid = record_of(client, pinned.pid).uuid
    assert f"  dispatcher {free_uuid}: now 5 threads" in done.stdout
    assert f"  dispatcher {pinned_uuid}: keeps 2 threads from its zope.conf" in (
        done.stdout
    )
    assert record_of(client, free.pid).agents["main"].size == 5

    # A restart keeps the cluster's size; zope.conf keeps its own.
    stop(free)
    free.start_and_wait()
    assert record_of(client, free.pid).uuid == free_uuid
    assert record_of(client, free.pid).agents["main"].size == 5
    assert f"started dispatcher {free_uuid} (role worker, 5 threads" in free.text()

    # The command line wins too, and says so.
    command = zope("command", "single_db_instance.zcml", main_db(zeo))
    command.start_worker("--agent-size", "4")
    command.wait_for_output(WORKER_READY)
    assert "4 threads each" in command.text()

    shown = zasync_command("settings", "--zodb-conf", conf, "--json")
    assert shown.returncode == 0, shown.stderr
    (queue,) = json.loads(shown.stdout)["queues"]
    by_pid = {d["pid"]: d for d in queue["dispatchers"]}
    assert (by_pid[free.pid]["size"], by_pid[free.pid]["source"]) == (
        5,
        "cluster default",
    )
    assert (by_pid[pinned.pid]["size"], by_pid[pinned.pid]["source"]) == (
        2,
        "zope.conf",
    )
    assert (by_pid[command.pid]["size"], by_pid[command.pid]["source"]) == (
        4,
        "command line",
    )
    text = zasync_command("settings", "--zodb-conf", conf).stdout
    assert "zope.conf, wins over the database" in text
    assert "command line, wins over the database" in text
    job = put(client, zasync.Job(jobs.pid))
    assert wait_for_result(job, 20) in (free.pid, pinned.pid, command.pid)
