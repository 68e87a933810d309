"""``zasync worker --zope-conf ... --metrics-port``: a worker that boots a
real Zope instance on a real ZEO server serves its metrics too, scraped
with urllib, and counts the jobs its Zope-started dispatcher runs."""

import signal
import urllib.error
import urllib.request

import pytest
import zope_process_jobs as jobs
from prometheus_client.parser import text_string_to_metric_families
from zope_process_support import ZEOServer, ZopeProcess, put, zodb_db

import zasync
from zasync.config import WORKER_READY
from zasync.testing import processes, wait_for, wait_for_result


@pytest.fixture
def zeo(tmp_path):
    (tmp_path / "zeo").mkdir()
    server = ZEOServer(str(tmp_path / "zeo"), ["main", "queues"]).start()
    yield server.take()
    server.stop()


@pytest.fixture
def home(tmp_path, zeo):
    process = ZopeProcess(
        str(tmp_path / "worker"),
        "single_db_worker.zcml",
        zodb_db("main", zeo.zeoclient(), "/"),
        "poll-interval 0.1",
    )
    yield process
    process.stop()


def scrape(url):
    """{(name, labels): value} of the metrics at ``url``, or None."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            text = response.read().decode("utf-8")
    except (urllib.error.URLError, ConnectionError):
        return None
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[sample.name, tuple(sorted(sample.labels.items()))] = sample.value
    return found


def test_a_zope_worker_serves_its_metrics(home, client):
    port = processes.free_port()
    home.start_worker("--metrics-port", str(port))
    home.wait_for_output(WORKER_READY)
    assert f"Prometheus metrics at http://127.0.0.1:{port}/metrics" in home.text()
    job = put(client, zasync.Job(jobs.pid))
    assert wait_for_result(job, 30) == home.pid

    url = f"http://127.0.0.1:{port}/metrics"
    succeeded = ("zasync_job_attempts_total", (("outcome", "succeeded"),))
    seen = {}

    def counted():
        seen["samples"] = scrape(url)
        return seen["samples"] and seen["samples"][succeeded] == 1

    wait_for(counted, 30, lambda: None, lambda: f"{seen} / {home.text()}")
    samples = seen["samples"]
    default = ("queue", "default")
    assert samples["zasync_queues_up", ()] == 1
    assert samples["zasync_queue_jobs", (default, ("status", "succeeded"))] == 1
    assert samples["zasync_queue_dispatchers_alive", (default,)] == 1
    assert samples["zasync_job_pickup_seconds_count", ()] == 1

    home.process.send_signal(signal.SIGTERM)
    assert home.wait_for_exit(30) == 0, home.text()
    assert scrape(url) is None
