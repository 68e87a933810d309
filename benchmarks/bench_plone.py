"""Plone benchmark: concurrent HTTP requests that queue a job each.

Run with ``make bench`` or on its own::

    .venv/bin/python benchmarks/bench_plone.py [--clients 16] [--requests 30]
        [--skip embedded|cluster] [--keep]

For each deployment (the embedded site of ``zasync serve``, and the ZEO
cluster of ``zasync cluster start`` with 2 workers), ``--clients`` threads
each send ``--requests`` POSTs one after the other, logged in as the site's
admin, with plone.protect's token:

- to ``@@zasync-bench-baseline``: the request alone;
- to ``@@zasync-bench-queue``: the same request queueing one trivial job
  through ``IAsyncService.queueJob``.

Each answer says how many times Zope's publisher retried it after a
ConflictError (``request.retry_count``). Printed per deployment and kind:
requests, HTTP 500s, publisher retries (and their share of requests), and
the p50 / p95 request time, the two kinds side by side. The views live in
``benchmarks/zasync_bench_plone`` and are loaded only into the benchmark's
own instances, in a temporary directory.
"""

import argparse
import base64
import contextlib
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

from benchsupport import say

from zasync.testing import processes
from zasync.testing.processes import free_port

HERE = os.path.dirname(os.path.abspath(__file__))
BIN = os.path.dirname(sys.executable)
ZASYNC = os.path.join(BIN, "zasync")
PASSWORD = "bench-admin-secret"
START_TIMEOUT = 300
INCLUDE = '  <include package="zasync_bench_plone" />\n'
RETRIES = re.compile(r"retries=(\d+)")


def environment():
    env = dict(os.environ)
    for name in ("ZASYNC_UUID", "ZC_ASYNC_UUID", "ZASYNC_DISPATCHER"):
        env.pop(name, None)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [HERE, env.get("PYTHONPATH")]))
    env["ZASYNC_ADMIN_PASSWORD"] = PASSWORD
    return env


def include_bench_views(site_zcml):
    """Add the benchmark's views to an instance's etc/site.zcml (once)."""
    with open(site_zcml) as f:
        text = f.read()
    if INCLUDE not in text:
        text = text.replace("</configure>", INCLUDE + "</configure>")
        with open(site_zcml, "w") as f:
            f.write(text)


class Client:
    """The site over HTTP, as its admin (basic auth)."""

    def __init__(self, site_url):
        self.site_url = site_url
        # The credentials go with every request, as a browser's would after
        # its first challenge.
        token = base64.b64encode(f"admin:{PASSWORD}".encode()).decode()
        self.headers = {"Authorization": f"Basic {token}"}
        self.opener = urllib.request.build_opener()

    def get(self, path):
        request = urllib.request.Request(
            f"{self.site_url}/{path}", headers=self.headers
        )
        with self.opener.open(request, timeout=60) as response:
            return response.read().decode()

    def post(self, path, form):
        request = urllib.request.Request(
            f"{self.site_url}/{path}",
            data=urllib.parse.urlencode(form).encode(),
            headers=self.headers,
            method="POST",
        )
        try:
            with self.opener.open(request, timeout=60) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode(errors="replace")


def drive(client, view, clients, requests):
    """``clients`` threads, ``requests`` POSTs each to ``view``: the results."""
    token = client.get("@@zasync-bench-token").strip()
    results = []
    lock = threading.Lock()
    start = threading.Barrier(clients)

    def one_client():
        start.wait()
        for _ in range(requests):
            began = time.perf_counter()
            status, body = client.post(view, {"_authenticator": token})
            took = time.perf_counter() - began
            found = RETRIES.search(body) if status == 200 else None
            with lock:
                results.append((status, took, int(found.group(1)) if found else 0))

    threads = [threading.Thread(target=one_client) for _ in range(clients)]
    began = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(600)
    wall = time.perf_counter() - began
    times = sorted(took for _, took, _ in results)
    return {
        "requests": len(results),
        "errors_500": sum(status == 500 for status, _, _ in results),
        "other_errors": sum(status not in (200, 500) for status, _, _ in results),
        "retries": sum(retries for _, _, retries in results),
        "p50_ms": statistics.median(times) * 1000,
        "p95_ms": times[max(int(len(times) * 0.95) - 1, 0)] * 1000,
        "requests_per_s": len(results) / wall,
    }


def measure(site_url, clients, requests, rounds=2):
    """Baseline and queueing runs, interleaved, ``rounds`` of each."""
    client = Client(site_url)
    runs = {"baseline": [], "queue": []}
    for _ in range(rounds):
        for kind in runs:
            say(f"{site_url}: {clients} clients x {requests} requests, {kind}")
            runs[kind].append(
                drive(client, f"@@zasync-bench-{kind}", clients, requests)
            )
    return runs


@contextlib.contextmanager
def embedded(directory):
    """``zasync serve`` on an embedded instance home with the bench views."""
    from zasync.deploy import instance

    port = free_port()
    home = instance.InstanceHome(os.path.join(directory, "embedded"))
    home.write_embedded(port=port)
    include_bench_views(home.site_zcml)
    log = os.path.join(directory, "serve.log")
    with open(log, "w") as out:
        process = subprocess.Popen(
            [ZASYNC, "serve", "--instance", home.path, "--port", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=environment(),
        )
    try:

        def ready():
            if process.poll() is not None:
                raise RuntimeError(f"zasync serve exited; see {log}")
            with open(log, errors="replace") as f:
                return "zasync serve: ready at" in f.read()

        processes.wait_for(ready, START_TIMEOUT, "zasync serve", interval=0.2)
        yield f"http://127.0.0.1:{port}/Plone"
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()


@contextlib.contextmanager
def cluster(directory):
    """``zasync cluster`` (ZEO, a web instance, 2 workers) with the bench
    views in the web instance."""
    home = os.path.join(directory, "cluster")
    port, zeo_port = free_port(), free_port()
    start = [
        ZASYNC,
        "cluster",
        "start",
        "--directory",
        home,
        "--port",
        str(port),
        "--zeo-port",
        str(zeo_port),
        "--workers",
        "2",
    ]
    stop = [ZASYNC, "cluster", "stop", "--directory", home]

    def run(command):
        done = subprocess.run(
            command,
            capture_output=True,
            text=True,
            env=environment(),
            timeout=START_TIMEOUT + 60,
            stdin=subprocess.DEVNULL,
        )
        if done.returncode:
            raise RuntimeError(f"{' '.join(command)}: {done.stdout}{done.stderr}")

    # The first start makes the homes and the site; the views are added to
    # the web instance's site.zcml, which the second start loads.
    run(start)
    run(stop)
    include_bench_views(os.path.join(home, "web", "etc", "site.zcml"))
    run(start)
    try:
        yield f"http://127.0.0.1:{port}/Plone"
    finally:
        run(stop)


def summary(runs):
    """Medians over the rounds of each figure."""
    return {
        figure: statistics.median(run[figure] for run in runs) for figure in runs[0]
    }


def report(results, clients, requests):
    out = [
        "zasync Plone benchmark",
        f"  {clients} concurrent HTTP clients x {requests} POSTs each, logged in, "
        "with plone.protect's token;",
        "  baseline: the request alone; queue: the same request queueing one job",
        "  through IAsyncService.queueJob. Medians of the interleaved rounds.",
        "",
    ]
    head = f"  {'':34}{'baseline':>12}{'queue':>12}"
    rows = (
        ("requests", "requests", ".0f"),
        ("HTTP 500", "errors_500", ".0f"),
        ("other HTTP errors", "other_errors", ".0f"),
        ("publisher retries", "retries", ".0f"),
        ("retries, % of requests", "retry_pct", ".1f"),
        ("p50 request time (ms)", "p50_ms", ".1f"),
        ("p95 request time (ms)", "p95_ms", ".1f"),
        ("requests/s", "requests_per_s", ".0f"),
    )
    for name, runs in results.items():
        base, queued = summary(runs["baseline"]), summary(runs["queue"])
        for run in (base, queued):
            run["retry_pct"] = 100 * run["retries"] / max(run["requests"], 1)
        out.append(f"{name}")
        out.append(head)
        for label, figure, spec in rows:
            out.append(
                f"  {label:34}{format(base[figure], spec):>12}"
                f"{format(queued[figure], spec):>12}"
            )
        met = queued["errors_500"] == 0 and queued["retry_pct"] <= 1.0
        out.append(
            f"  {'target: 0 HTTP 500, retries <= 1 %':34}{'':>12}"
            f"{'MET' if met else 'MISSED':>12}"
        )
        out.append("")
    return "\n".join(out)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--requests", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument(
        "--skip", action="append", default=[], choices=["embedded", "cluster"]
    )
    parser.add_argument("--keep", action="store_true", help="keep the directory")
    args = parser.parse_args(argv)
    directory = tempfile.mkdtemp(prefix="zasync-plone-bench-")
    results = {}
    try:
        for name, deployment in (
            ("embedded site (zasync serve, FileStorage)", embedded),
            ("ZEO cluster (zasync cluster, 2 workers)", cluster),
        ):
            key = "embedded" if deployment is embedded else "cluster"
            if key in args.skip:
                continue
            say(f"starting the {key} deployment (a first start makes the site)")
            with deployment(directory) as site_url:
                results[name] = measure(
                    site_url, args.clients, args.requests, args.rounds
                )
    finally:
        if args.keep:
            say(f"kept {directory}")
        else:
            shutil.rmtree(directory, ignore_errors=True)
    print(report(results, args.clients, args.requests))
    return 0


if __name__ == "__main__":
    sys.exit(main())
