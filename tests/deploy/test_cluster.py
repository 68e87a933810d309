"""``zasync cluster``: a ZEO server (or PostgreSQL), a web instance that
only queues and two workers, started and stopped with one command each.

A job is queued the way a user queues it, with the demo page of the web
instance, and must be run by one of the workers."""

import json
import os
import re
import shlex

import pytest
from deploy_support import Site, zasync

from zasync.clock import wait_until
from zasync.dispatcher import read_uuid_file
from zasync.testing import processes

pytestmark = pytest.mark.slow
JOB_TIMEOUT = 60.0


# The commands docs/deployment.md shows, run here as written (in the
# test's directory, so that the default var/cluster is the test's own),
# with free ports added so that the test never meets a running site.
START = "zasync cluster start"
START_MULTI_DB = "zasync cluster start --multi-db"
START_RELSTORAGE = 'zasync cluster start --relstorage "dbname=zasync host=127.0.0.1"'
DOCS_DSN = "dbname=zasync host=127.0.0.1"
STATUS = "zasync cluster status"
STOP = "zasync cluster stop"


@pytest.fixture
def cluster_dir(tmp_path):
    directory = str(tmp_path / "var" / "cluster")
    yield directory
    # Whatever the test did, nothing may keep running.
    if os.path.exists(os.path.join(directory, "cluster.json")):
        zasync("cluster", "stop", "--directory", directory, "--timeout", "20")


def command(directory, line, *options, **replace):
    """Run the documented command ``line`` in the directory that holds
    var/cluster, with ``options`` added; the CompletedProcess."""
    for old, new in replace.items():
        line = line.replace(old, new)
    return zasync(
        *shlex.split(line)[1:], *options, cwd=directory.removesuffix("/var/cluster")
    )


def start(directory, port, line=START, *options, **replace):
    result = command(directory, line, "--port", str(port), *options, **replace)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def site_of(directory, port):
    with open(os.path.join(directory, "web", "var", "admin-password.txt")) as f:
        password = f.read().strip()
    return Site(f"http://127.0.0.1:{port}/Plone", password)


def run_one_job(site):
    """Queue 'create 3 documents' on the web instance; wait for its end."""
    assert site.queue_demo_job("create", count="3", title="Cluster doc") == 200

    def finished():
        jobs = site.demo_jobs()["jobs"]
        return jobs and jobs[0]["done"] and jobs[0]

    job = wait_until(finished, JOB_TIMEOUT, 0.2)
    assert job, f"the job did not end within {JOB_TIMEOUT}s: {site.demo_jobs()}"
    assert not job["failed"], job
    return job


def ran_by_a_worker(directory, job_id):
    """The name of the worker whose log says it ran ``job_id``."""
    ran = []
    for name in ("worker1", "worker2"):
        with open(os.path.join(directory, "log", f"{name}.log")) as f:
            if re.search(rf"job {job_id} \(\S+create_documents\) succeeded", f.read()):
                ran.append(name)
    with open(os.path.join(directory, "log", "web.log")) as f:
        web = f.read()
    assert "this process runs no dispatcher" in web
    assert f"job {job_id} " not in web
    return ran


def running_pids(directory):
    result = command(directory, STATUS)
    return result.returncode, dict(
        re.findall(r"^\s+(\w+)\s+running \(pid (\d+)\)", result.stdout, re.M)
    )


def stop_and_check(directory):
    _, pids = running_pids(directory)
    result = command(directory, STOP)
    assert result.returncode == 0, result.stdout + result.stderr
    for pid in pids.values():
        assert not os.path.exists(f"/proc/{pid}") or _zombie(pid), pid
    code, still = running_pids(directory)
    assert (code, still) == (3, {})
    # The workers stopped gracefully: their dispatchers said goodbye.
    for name in ("worker1", "worker2"):
        with open(os.path.join(directory, "log", f"{name}.log")) as f:
            assert "zasync worker stopped" in f.read(), name


def _zombie(pid):
    with open(f"/proc/{pid}/stat") as f:
        return f.read().split()[2] == "Z"


def client_conf(directory, zeo_port, storage="main"):
    """A ZODB configuration file for the cluster's ZEO storage."""
    path = os.path.join(directory, f"client-{storage}.conf")
    with open(path, "w") as f:
        f.write(
            f"<zodb>\n  <zeoclient>\n    server 127.0.0.1:{zeo_port}\n"
            f"    storage {storage}\n  </zeoclient>\n</zodb>\n"
        )
    return path


def live_dispatchers(zodb_conf):
    """UUIDs of the live dispatchers, from `zasync status --json`."""
    status = zasync("status", "--zodb-conf", zodb_conf, "--json")
    assert status.returncode == 0, status.stdout + status.stderr
    report = json.loads(status.stdout)
    return {d["uuid"] for q in report["queues"] for d in q["dispatchers"] if d["alive"]}


def worker_uuids(directory):
    return {
        read_uuid_file(os.path.join(directory, name, "var", "zasync-uuid.txt"))
        for name in ("worker1", "worker2")
    }


def web_log(directory):
    with open(os.path.join(directory, "log", "web.log")) as f:
        return f.read()


def test_zeo_cluster_runs_a_job_queued_on_the_web_instance_in_a_worker(cluster_dir):
    port, zeo_port = processes.free_port(), processes.free_port()
    output = start(cluster_dir, port, START, "--zeo-port", str(zeo_port))
    assert "zasync cluster: running" in output
    code, pids = running_pids(cluster_dir)
    assert code == 0 and set(pids) == {"zeo", "web", "worker1", "worker2"}
    # Each worker has its own UUID file, and so its own dispatcher.
    uuids = worker_uuids(cluster_dir)
    assert len(uuids) == 2

    site = site_of(cluster_dir, port)
    job = run_one_job(site)
    assert len(ran_by_a_worker(cluster_dir, job["id"])) == 1
    assert job["result"].startswith("Created 3 documents"), job
    # The documents are in the site (the result names their paths).
    paths = re.findall(r"/Plone/zasync-demo/[\w-]+", job["result"])
    assert len(paths) == 3, job["result"]
    status, page = site.request(paths[-1].removeprefix("/Plone"))
    assert status == 200 and "Cluster doc 3" in page

    # The operators' command sees the queue through ZEO: the two workers'
    # dispatchers are alive, and the web instance has none.
    assert live_dispatchers(client_conf(cluster_dir, zeo_port)) == uuids

    stop_and_check(cluster_dir)
    # A second start reuses the files and the site.
    start(cluster_dir, port, START, "--zeo-port", str(zeo_port))
    assert web_log(cluster_dir).count("made the Plone site") == 1
    assert len(worker_uuids(cluster_dir) | uuids) == 2
    run_one_job(site_of(cluster_dir, port))
    stop_and_check(cluster_dir)


def test_multi_db_cluster_keeps_the_queues_in_their_own_database(cluster_dir):
    port, zeo_port = processes.free_port(), processes.free_port()
    start(cluster_dir, port, START_MULTI_DB, "--zeo-port", str(zeo_port))
    job = run_one_job(site_of(cluster_dir, port))
    assert len(ran_by_a_worker(cluster_dir, job["id"])) == 1
    # The queues, and the workers' dispatchers, are in the 'queues' storage.
    queues_conf = client_conf(cluster_dir, zeo_port, "queues")
    assert live_dispatchers(queues_conf) == worker_uuids(cluster_dir)
    status = zasync("jobs", "--zodb-conf", queues_conf, "--json")
    assert status.returncode == 0, status.stderr
    assert job["id"] in status.stdout
    stop_and_check(cluster_dir)


@pytest.mark.postgres
def test_relstorage_cluster_one_instance_two_workers(cluster_dir, postgres):
    port = processes.free_port()
    output = start(cluster_dir, port, START_RELSTORAGE, **{DOCS_DSN: postgres.dsn})
    assert "PostgreSQL" in output
    code, pids = running_pids(cluster_dir)
    assert code == 0 and set(pids) == {"web", "worker1", "worker2"}
    with open(os.path.join(cluster_dir, "web", "etc", "zope.conf")) as f:
        assert "<relstorage>" in f.read()
    site = site_of(cluster_dir, port)
    job = run_one_job(site)
    assert len(ran_by_a_worker(cluster_dir, job["id"])) == 1
    stop_and_check(cluster_dir)


def test_cluster_options_are_checked(cluster_dir, tmp_path):
    bad = zasync("cluster", "start", "--directory", cluster_dir, "--queues-dsn", "x")
    assert bad.returncode == 2
    assert "--queues-dsn goes with --relstorage and --multi-db" in bad.stderr
    missing = zasync(
        "cluster",
        "start",
        "--directory",
        cluster_dir,
        "--relstorage",
        "dbname=x",
        "--multi-db",
    )
    assert missing.returncode == 2 and "--queues-dsn" in missing.stderr
    unreachable = zasync(
        "cluster",
        "start",
        "--directory",
        cluster_dir,
        "--relstorage",
        f"host=127.0.0.1 port={processes.free_port()} dbname=nothing user=nobody",
    )
    assert unreachable.returncode == 2
    assert "cannot connect to PostgreSQL" in unreachable.stderr
    nothing = zasync("cluster", "stop", "--directory", str(tmp_path / "none"))
    assert nothing.returncode == 2 and "no cluster in" in nothing.stderr
