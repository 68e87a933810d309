"""zasync.plone in real Zope processes: a ZEO server, Zope 6 instances and
workers started with runwsgi, and jobs queued by this test process."""

import os
import signal
import uuid

import pytest
import zope_process_jobs as jobs
from zope_process_support import (
    READY,
    ZEOServer,
    ZopeProcess,
    filestorage,
    fresh,
    put,
    queue_of,
    record_of,
    zodb_db,
)

import zasync
from zasync.config import WORKER_READY
from zasync.status import PENDING
from zasync.testing import wait_for_result, wait_for_start

FAST = "poll-interval 0.05"


@pytest.fixture(scope="module")
def zeo_server(tmp_path_factory):
    """One ZEO server for the module (starting one takes a second); each
    test gets storages of its own from it."""
    directory = tmp_path_factory.mktemp("zeo")
    server = ZEOServer(str(directory), [f"s{i}" for i in range(40)]).start()
    yield server
    server.stop()


@pytest.fixture
def zeo(zeo_server):
    return zeo_server.take()


@pytest.fixture
def zope(tmp_path):
    """Make ZopeProcess instance homes under tmp_path; all are stopped at the
    end (request it after ``zeo`` so that they stop first)."""
    made = []

    def make(name, role, databases, product_config=FAST, env=None):
        process = ZopeProcess(
            str(tmp_path / name), role, databases, product_config, env
        )
        made.append(process)
        return process

    yield make
    for process in made:
        process.stop()


def main_db(zeo):
    return zodb_db("main", zeo.zeoclient(), "/")


@pytest.mark.parametrize(
    "role", ["single_db_worker.zcml", None], ids=["worker", "embedded"]
)
def test_worker_runs_jobs_queued_by_another_process(role, zeo, client, zope):
    worker = zope(
        "worker",
        role,
        main_db(zeo),
        f"{FAST}\nthreads 2\ndefault-quota-size 4",
    ).start_and_wait()

    record = record_of(client, worker.pid)
    assert record is not None, worker.text()
    assert record.agents["main"].size == 2
    assert queue_of(client).quotas["default"].size == 4
    # Without ZASYNC_UUID the UUID is kept in the instance's var directory.
    with open(os.path.join(worker.var, "zasync-uuid.txt")) as f:
        assert record.uuid in f.read()
    name = "worker" if role else "embedded"
    assert f"started dispatcher {record.uuid} (role {name}, 2 threads" in worker.text()

    job = put(client, zasync.Job(jobs.pid))
    assert wait_for_result(job, 20) == worker.pid


def test_instance_runs_no_dispatcher(zeo, client, zope):
    zasync.get_queues(client)  # without the 'default' quota
    client.transaction_manager.commit()
    job = put(client, zasync.Job(jobs.pid))
    instance = zope("instance", "single_db_instance.zcml", main_db(zeo))
    instance.start_and_wait()
    # Fully started, the instance made sure of the quota but registered no
    # dispatcher, and left the job alone.
    queue = queue_of(fresh(client))
    assert "default" in queue.quotas
    assert len(queue.dispatchers) == 0
    assert job.status == PENDING
    assert "role instance, queues in the main database; this process runs no " in (
        instance.text()
    )

    # A worker started next to it runs the job: it was runnable all along.
    worker = zope("worker", "single_db_worker.zcml", main_db(zeo)).start_and_wait()
    assert wait_for_result(job, 20) == worker.pid
    assert record_of(client, instance.pid) is None
    assert record_of(client, worker.pid) is not None
    assert instance.process.poll() is None


@pytest.mark.parametrize(
    "name, product_config",
    [
        ("zasync_queues", None),
        ("jobs_db", f"database jobs_db\n{FAST}"),
    ],
    ids=["default-name", "configured-name"],
)
def test_multi_db_keeps_the_queues_in_their_own_database(
    name, product_config, zeo, zope
):
    databases = main_db(zeo) + zodb_db(name, zeo.zeoclient(queues=True), f"/{name}")
    worker = zope("worker", "multi_db_worker.zcml", databases, product_config)
    instance = zope("instance", "multi_db_instance.zcml", databases, product_config)
    # One after the other: Zope's own first start (creating its Application
    # object) conflicts when two processes do it at once.
    worker.start_and_wait()
    instance.start_and_wait()

    db = zeo.open(queues=name)
    conn = db.open()
    try:
        assert record_of(conn, worker.pid, name) is not None
        assert record_of(conn, instance.pid, name) is None
        assert f"role instance, queues in database '{name}'; this process runs" in (
            instance.text()
        )
        assert f"queues in database '{name}', UUID file" in worker.text()
        job = put(conn, zasync.Job(jobs.pid), name)
        assert wait_for_result(job, 20) == worker.pid
        assert job._p_jar.db().database_name == name
        fresh(conn)
        assert "zasync" not in conn.root()
        assert "zasync" in conn.get_connection(name).root()
    finally:
        conn.transaction_manager.abort()
        conn.close()
        for database in list(db.databases.values()):
            database.close()


@pytest.mark.parametrize(
    "role, product_config, expected",
    [
        (
            "multi_db_worker.zcml",
            None,
            [
                "zope.conf defines no database 'zasync_queues' (it has 'main')",
                "    <zodb_db zasync_queues>\n",
                "        mount-point /zasync_queues\n",
            ],
        ),
        (
            "multi_db_worker.zcml",
            f"database zasync\n{FAST}",
            [
                "As zope.conf has a <product-config zasync> section, the "
                "database needs another name",
                "        database zasync_queues\n",
                "    <zodb_db zasync_queues>\n",
            ],
        ),
        (
            "multi_db_instance.zcml",
            "database jobs",
            ["zope.conf defines no database 'jobs'", "    <zodb_db jobs>\n"],
        ),
        (
            "single_db_worker.zcml",
            "threads many",
            ["<product-config zasync> threads must be a number, not 'many'"],
        ),
    ],
    ids=["multi-db-worker", "name-clash", "multi-db-instance", "bad-threads"],
)
def test_bad_configuration_stops_startup(
    role, product_config, expected, tmp_path, zope
):
    # A FileStorage is enough: the process must not get as far as serving.
    path = tmp_path / "Data.fs"
    databases = zodb_db("main", filestorage(path), "/")
    process = zope("broken", role, databases, product_config)
    process.start()
    assert process.wait_for_exit() != 0
    text = process.text()
    assert "ConfigurationError" in text
    for line in expected:
        assert line in text
    assert READY not in text


@pytest.mark.parametrize("variable", ["ZASYNC_UUID", "ZC_ASYNC_UUID"])
def test_uuid_comes_from_the_file_named_by_the_environment(
    variable, tmp_path, zeo, client, zope
):
    wanted = str(uuid.uuid4())
    path = tmp_path / "uuid.txt"
    path.write_text(f"# this worker's dispatcher\n{wanted}\n")
    env = {variable: str(path)}
    if variable == "ZASYNC_UUID":
        # The new name wins over the old one.
        old = tmp_path / "old-uuid.txt"
        old.write_text(f"{uuid.uuid4()}\n")
        env["ZC_ASYNC_UUID"] = str(old)
    worker = zope("worker", "single_db_worker.zcml", main_db(zeo), env=env)
    worker.start_and_wait()

    record = record_of(client, worker.pid)
    assert record is not None, worker.text()
    assert record.uuid == wanted
    assert f"UUID file {path})" in worker.text()
    assert not os.path.exists(os.path.join(worker.var, "zasync-uuid.txt"))


def test_sigterm_lets_the_running_job_finish_and_deregisters(
    tmp_path, zeo, client, zope
):
    worker = zope("worker", "single_db_worker.zcml", main_db(zeo)).start_and_wait()
    dispatcher_uuid = record_of(client, worker.pid).uuid
    release = tmp_path / "release"
    job = put(client, zasync.Job(jobs.wait_for_file, str(release)))
    wait_for_start(job, 20)

    worker.process.send_signal(signal.SIGTERM)
    worker.wait_for_output("zasync: stopping dispatcher")
    assert worker.process.poll() is None  # waiting for the job
    release.touch()

    assert worker.wait_for_exit(20) == 0, worker.text()
    assert wait_for_result(job, 5) == ("released", worker.pid)
    assert dispatcher_uuid not in queue_of(fresh(client)).dispatchers
    assert f"dispatcher {dispatcher_uuid} stopped" in worker.text()
    assert "Traceback" not in worker.text()


def test_zasync_worker_command_boots_zope_without_http(tmp_path, zeo, client, zope):
    """`zasync worker --zope-conf` runs jobs with Zope loaded, even with the
    zope.conf of a web instance (its role would run no dispatcher), takes
    its settings from the command line and stops cleanly on SIGTERM."""
    uuid_file = tmp_path / "worker.uuid"
    home = zope("worker", "single_db_instance.zcml", main_db(zeo))
    home.start_worker(
        "--agent-size", "2", "--uuid-file", str(uuid_file), "--poll-interval", "5"
    )
    home.wait_for_output(WORKER_READY)
    assert "Serving on" not in home.text()
    wanted = uuid_file.read_text().split()[-1]
    record = queue_of(fresh(client)).dispatchers.get(wanted)
    assert record is not None, home.text()
    assert record.pid == home.pid
    assert record.agents["main"].size == 2

    job = put(client, zasync.Job(jobs.pid))
    # Picked up through ZEO's invalidations, not the 5 s poll.
    assert wait_for_result(job, 4) == home.pid
    assert f"job {job.id} (zope_process_jobs.pid) started" in home.text()

    home.process.send_signal(signal.SIGTERM)
    assert home.wait_for_exit(20) == 0, home.text()
    assert wanted not in queue_of(fresh(client)).dispatchers
    assert "zasync worker stats: completed=1 " in home.text()
    assert "Traceback" not in home.text()


def test_dispatcher_environment_switch_keeps_scripts_from_dispatching(
    zeo, client, zope
):
    """ZASYNC_DISPATCHER=off: a process started with a worker's zope.conf
    (a zconsole script, a debug session) runs no second dispatcher."""
    worker = zope(
        "worker",
        "single_db_worker.zcml",
        main_db(zeo),
        env={"ZASYNC_DISPATCHER": "off"},
    ).start_and_wait()
    assert "this process runs no dispatcher" in worker.text()
    assert record_of(fresh(client), worker.pid) is None


def test_zasync_worker_command_reports_a_bad_zope_conf(tmp_path, zope, zeo):
    home = zope("worker", "single_db_worker.zcml", main_db(zeo), "threads none")
    home.start_worker()
    assert home.wait_for_exit(60) == 2, home.text()
    assert "zasync worker: error:" in home.text()
    assert "threads must be a number" in home.text()
