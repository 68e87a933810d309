"""``zasync worker --metrics-port``: a real worker process on a real ZEO
server serves its metrics over HTTP on loopback, scraped with urllib; a
port in use is refused with an error that says so."""

import os
import socket
import subprocess
import urllib.error
import urllib.request

import transaction
import ZODB

import jobfuncs
import zasync
from zasync.testing import parse_metrics, processes, wait_for, wait_for_result

TESTS = os.path.dirname(os.path.abspath(__file__))


def worker_env():
    """The worker imports jobfuncs from this directory."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([TESTS, *filter(None, [env.get("PYTHONPATH")])])
    return env


def get(url):
    """(status, Content-Type, body) of a GET, or None while nothing listens."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            body = response.read().decode("utf-8")
            return response.status, response.headers["Content-Type"], body
    except (urllib.error.URLError, ConnectionError):
        return None


parse = parse_metrics


def test_a_worker_serves_its_metrics_on_loopback(tmp_path, zeo):
    port = processes.free_port()
    conf = zeo.client_conf(str(tmp_path / "zodb.conf"))
    worker = processes.Worker(
        str(tmp_path / "workers"),
        "metrics",
        conf,
        options=["--metrics-port", str(port), "--poll-interval", "0.2"],
        env=worker_env(),
    ).start()
    db = ZODB.DB(zeo.client_storage())
    try:
        conn = db.open()
        queue = zasync.get_queues(conn)[""]
        done = [queue.put(zasync.Job(jobfuncs.add, n, n)) for n in range(2)]
        failed = queue.put(zasync.Job(jobfuncs.fail, "for the metrics"))
        transaction.commit()
        for job in (*done, failed):
            wait_for_result(job, seconds=30)

        url = f"http://127.0.0.1:{port}/metrics"
        scraped = {}

        def counted():
            answer = get(url)
            if answer is None:
                return False
            scraped["answer"] = answer
            samples = scraped["samples"] = parse(answer[2])
            return (
                samples.get(("zasync_job_attempts_total", (("outcome", "succeeded"),)))
                == 2
                and samples.get(("zasync_job_attempts_total", (("outcome", "failed"),)))
                == 1
            )

        wait_for(counted, 30, lambda: None, lambda: f"the worker's counts: {scraped}")
        status, content_type, _ = scraped["answer"]
        samples = scraped["samples"]
        assert status == 200
        assert content_type.startswith("text/plain; version=0.0.4")
        default = (("queue", "default"),)
        assert samples["zasync_queues_up", ()] == 1
        assert samples["zasync_queue_jobs", (*default, ("status", "succeeded"))] == 2
        assert samples["zasync_queue_jobs", (*default, ("status", "failed"))] == 1
        assert samples["zasync_queue_dispatchers_alive", default] == 1
        assert (
            samples["zasync_job_duration_seconds_count", (("outcome", "failed"),)] == 1
        )
        assert samples["zasync_job_pickup_seconds_count", ()] == 3
        ages = {
            dict(labels)["dispatcher"]: age
            for (name, labels), age in samples.items()
            if name == "zasync_dispatcher_heartbeat_age_seconds"
        }
        assert set(ages) == {worker.uuid}
        assert ages[worker.uuid] >= 0
        # The process's own (prometheus_client's process collector).
        assert samples["process_resident_memory_bytes", ()] > 0
        # It says where it listens: on loopback, by default.
        assert f"Prometheus metrics at http://127.0.0.1:{port}/metrics" in worker.log()
        conn.close()
    finally:
        worker.terminate()
        db.close()
    assert get(url) is None  # stopped with the worker


def test_a_port_in_use_is_refused_clearly(tmp_path):
    conf = tmp_path / "zodb.conf"
    conf.write_text(
        f"<zodb>\n  <filestorage>\n    path {tmp_path / 'Data.fs'}\n"
        "  </filestorage>\n</zodb>\n"
    )
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [
                processes._bin("zasync"),
                "worker",
                "--zodb-conf",
                str(conf),
                "--metrics-port",
                str(port),
            ],
            capture_output=True,
            text=True,
            timeout=120,
            env=worker_env(),
        )
    assert done.returncode == 2, done.stderr
    assert (
        f"zasync worker: error: --metrics-port {port}: cannot listen on "
        f"127.0.0.1:{port} (Address already in use)"
    ) in done.stderr
    assert "Give each worker its own port" in done.stderr
    # Refused before the database was opened, let alone a dispatcher started.
    assert not (tmp_path / "Data.fs").exists()


def test_a_port_out_of_range_is_refused(tmp_path):
    done = subprocess.run(
        [processes._bin("zasync"), "worker", "--metrics-port", "70000"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert "--metrics-port: invalid port number (1-65535) value: '70000'" in (
        done.stderr
    )
