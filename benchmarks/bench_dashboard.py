"""Jobs dashboard benchmark: the list page of ``@@zasync-jobs`` with
100,000 completed jobs.

Run with ``make bench`` or on its own::

    .venv/bin/python benchmarks/bench_dashboard.py [--jobs 100000] [--rounds 7]

A Plone site with zasync installed (plone.app.testing's fixture) gets a
FileStorage for everything written after its setup: the ``--jobs``
completed jobs (one in ten failed, their ends spread over the last week)
are written there, in batches of a few thousand per transaction, and read
from there by the pages. Then, through Zope's publisher as the Zope
admin, it renders several times, with a warm cache:

- the overview (counts, throughput of the last hour, dispatchers);
- the first page of the list, and a deep page (half-way down);
- the first and a deep page of the failed jobs;
- a filtered page (a callable pattern: find_jobs scans up to the page);

and prints the median time of each, against the target of 200 ms per page
for the unfiltered pages. Not a timed test: nothing fails on a slow run.
"""

import argparse
import datetime
import os
import statistics
import sys
import tempfile
import time

import transaction

import zasync
from zasync import clock
from zasync.plone.dashboard import data  # noqa: F401 (what it measures starts)
from zasync.testing import inline

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

TARGET_MS = 200
BATCH = 5000


def say(text):
    print(text, flush=True)


def set_up_layers(layer):
    """Set up ``layer`` and its bases, bases first (as zope.testrunner)."""
    ordered = []

    def gather(each):
        for base in each.__bases__:
            gather(base)
        if each not in ordered:
            ordered.append(each)

    gather(layer)
    for each in ordered:
        if hasattr(each, "setUp"):
            each.setUp()
    return ordered


def tear_down_layers(ordered):
    for each in reversed(ordered):
        if hasattr(each, "tearDown"):
            each.tearDown()


def fill(db, count):
    """Put ``count`` completed jobs in the default queue, run inline, their
    ends spread over the last week; returns the seconds it took."""
    import jobs as bench_jobs

    started = time.perf_counter()
    now = clock.utcnow()
    step = datetime.timedelta(days=7) / max(1, count)
    real_utcnow = clock.utcnow
    connection = db.open()
    try:
        queue = zasync.get_queues(connection)[""]
        with inline():
            for number in range(count):
                when = now - (count - number) * step
                clock.utcnow = lambda when=when: when  # the job ends then
                if number % 10 == 9:
                    job = zasync.Job(bench_jobs.sleep, "not a number")
                else:
                    job = zasync.Job(bench_jobs.noop, number)
                queue.put(job, now=when)
                if number % BATCH == BATCH - 1:
                    transaction.commit()
                    connection.cacheMinimize()
                    say(f"  {number + 1} jobs")
        transaction.commit()
    finally:
        clock.utcnow = real_utcnow
        connection.close()
    return time.perf_counter() - started


def median_ms(browser, url, rounds):
    browser.open(url)  # warm the caches
    assert browser.headers["Status"].startswith("200"), browser.headers["Status"]
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        browser.open(url)
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times), len(browser.contents)


def bench_layer(directory):
    """A layer over zasync's Plone fixture whose database writes to (and
    reads what it wrote from) a FileStorage in ``directory``: the Zope
    publisher uses it (plone.testing's database facade follows the
    layers' ``zodbDB``)."""
    from plone.testing import Layer
    from ZODB import DB
    from ZODB.DemoStorage import DemoStorage
    from ZODB.FileStorage import FileStorage

    from zasync.plone.testing import ZASYNC_FIXTURE

    class FileStorageLayer(Layer):
        defaultBases = (ZASYNC_FIXTURE,)

        def setUp(self):
            storage = DemoStorage(
                name="bench-dashboard",
                base=self.get("zodbDB").storage,
                changes=FileStorage(os.path.join(directory, "Data.fs")),
            )
            self["zodbDB"] = DB(storage, cache_size=20_000)

        def tearDown(self):
            self["zodbDB"].close()
            del self["zodbDB"]

    return FileStorageLayer(name="ZasyncDashboardBench")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args(argv)

    from plone.app.testing import SITE_OWNER_NAME, SITE_OWNER_PASSWORD
    from plone.testing import zope

    directory = tempfile.mkdtemp(prefix="zasync-bench-dashboard-")
    layer = bench_layer(directory)
    ordered = set_up_layers(layer)
    try:
        db = layer["zodbDB"]
        say(f"filling {args.jobs} completed jobs into {directory}/Data.fs ...")
        took = fill(db, args.jobs)
        say(f"filled in {took:.1f} s")
        with zope.zopeApp() as app:
            site_url = "http://nohost/plone"
            browser = zope.Browser(app)
            browser.handleErrors = False
            browser.addHeader(
                "Authorization", f"Basic {SITE_OWNER_NAME}:{SITE_OWNER_PASSWORD}"
            )
            run_pages(browser, f"{site_url}/@@zasync-jobs", args)
    finally:
        tear_down_layers(ordered)
        for name in os.listdir(directory):
            os.unlink(os.path.join(directory, name))
        os.rmdir(directory)


def run_pages(browser, base, args):
    deep = args.jobs // 2
    pages = [
        ("overview", base, True),
        ("list, first page", f"{base}/list", True),
        (f"list, page at {deep}", f"{base}/list?start={deep}", True),
        ("failed, first page", f"{base}/list?status=failed", True),
        (
            f"failed, page at {deep // 10}",
            f"{base}/list?status=failed&start={deep // 10}",
            True,
        ),
        (
            "filtered (callable), page at 500",
            f"{base}/list?callable=*noop&start=500",
            False,
        ),
    ]
    say(f"\nmedian of {args.rounds} renders, {args.jobs} completed jobs:")
    worst = 0.0
    for label, url, targeted in pages:
        ms, size = median_ms(browser, url, args.rounds)
        mark = ""
        if targeted:
            worst = max(worst, ms)
            mark = "  ok" if ms < TARGET_MS else f"  OVER {TARGET_MS} ms"
        say(f"  {label:36} {ms:8.1f} ms  ({size // 1024} KiB){mark}")
    say(f"\nslowest unfiltered page: {worst:.1f} ms (target: under {TARGET_MS} ms)")


if __name__ == "__main__":
    main()
