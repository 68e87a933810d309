"""A job in steps in a real Plone worker process, killed with -9 half way.

A Plone site on a ZEO server has 2,000 private documents and a job that
publishes them in steps of 100 (zasync.steps), queued as the site's admin.
A ``zasync worker --zope-conf`` process (Zope with Plone and the worker
role) runs it and is killed with SIGKILL once some chunks committed; it is
started again (its UUID file makes it recover the job at once), and the
job goes on from its cursor. In the end each document was published
exactly once (its workflow history), and the catalog says so.
"""

import json
import os
import signal
import subprocess
import sys

import pytest
import transaction
import ZODB

import zasync
from zasync import steps
from zasync.config import WORKER_READY
from zasync.deploy.instance import INSTANCE, WORKER, InstanceHome, ZEOClient
from zasync.status import COMPLETED
from zasync.testing import processes

# Booting Plone three times and making 2,000 documents: minutes (about 3
# on an idle 2-core machine), on a busy one more than pytest-timeout's
# default. `make test-long` runs it (CI does); `make test` leaves it out.
pytestmark = [pytest.mark.slow, pytest.mark.long, pytest.mark.timeout(900)]

BIN = os.path.dirname(sys.executable)
HERE = os.path.dirname(os.path.abspath(__file__))
COUNT = 2000
EVERY = 100  # as plone_steps_site.EVERY
BOOT = 240.0  # booting Plone on a busy 2-core machine
SETUP = 600.0  # booting, making the site and 2,000 documents


def environment():
    env = dict(os.environ)
    for name in ("ZASYNC_UUID", "ZC_ASYNC_UUID", "ZASYNC_DISPATCHER"):
        env.pop(name, None)
    env["PYTHONPATH"] = os.pathsep.join([HERE, *filter(None, [env.get("PYTHONPATH")])])
    return env


def home(tmp_path, name, role, zeo):
    path = str(tmp_path / name)
    instance = InstanceHome(path)
    instance.write(
        role,
        ZEOClient(zeo.address, "1", os.path.join(path, "var", "blobcache")),
        product_config={"poll-interval": "0.05"},
    )
    return instance


def zconsole(instance, *args):
    """Run plone_steps_site.py in ``instance``; what it wrote (JSON)."""
    out = os.path.join(instance.var, f"{args[0]}.json")
    log = os.path.join(instance.var, f"{args[0]}.log")
    with open(log, "w") as output:
        done = subprocess.run(
            [
                os.path.join(BIN, "zconsole"),
                "run",
                instance.zope_conf,
                os.path.join(HERE, "plone_steps_site.py"),
                args[0],
                out,
                *args[1:],
            ],
            stdout=output,
            stderr=subprocess.STDOUT,
            env=environment(),
            timeout=SETUP,
        )
    with open(log, errors="replace") as f:
        text = f.read()
    assert done.returncode == 0, text[-5000:]
    with open(out) as f:
        return json.load(f)


class Worker:
    def __init__(self, instance):
        self.instance = instance
        self.output = os.path.join(instance.var, "worker.log")
        self.process = None
        self.starts = 0

    def start(self):
        self.starts += 1
        with open(self.output, "a") as out:
            self.process = subprocess.Popen(
                [
                    os.path.join(BIN, "zasync"),
                    "worker",
                    "--zope-conf",
                    self.instance.zope_conf,
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=environment(),
            )

        def ready():
            if self.process.poll() is not None:
                raise AssertionError(f"the worker exited:\n{self.text()[-5000:]}")
            return self.text().count(WORKER_READY) >= self.starts

        processes.wait_for(ready, BOOT, "the Plone worker to be ready")
        return self

    def text(self):
        with open(self.output, errors="replace") as f:
            return f.read()

    def stop(self):
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


@pytest.fixture
def worker_of():
    made = []

    def make(instance):
        worker = Worker(instance)
        made.append(worker)
        return worker

    yield make
    for worker in made:
        worker.stop()


def test_a_plone_job_in_steps_killed_half_way_publishes_each_document_once(
    zeo, tmp_path, worker_of
):
    web = home(tmp_path, "web", INSTANCE, zeo)
    made = zconsole(web, "setup", str(COUNT))
    job_id = made["job"]

    db = ZODB.DB(zeo.client_storage())
    conn = db.open()

    def job_state():
        transaction.begin()
        job = zasync.get_queues(conn)[""].get(job_id)
        return job.status, steps.state(job) or {"done": 0}

    try:
        worker = worker_of(home(tmp_path, "worker", WORKER, zeo)).start()
        processes.wait_for(
            lambda: job_state()[1]["done"] >= 3 * EVERY,
            BOOT,
            "the job's first chunks to commit",
        )
        worker.process.kill()
        worker.process.wait(10)
        assert worker.process.returncode == -signal.SIGKILL
        status, at_kill = job_state()
        assert status != COMPLETED and 0 < at_kill["done"] < COUNT, at_kill

        worker.start()
        processes.wait_for(
            lambda: job_state()[0] == COMPLETED, BOOT, "the job to complete"
        )
        transaction.begin()
        job = zasync.get_queues(conn)[""].get(job_id)
        assert not job.failed, job.result
        assert job.result == COUNT
        final = steps.state(job)
        assert final["runs"] == 2 and final["resumed_from"] >= at_kill["done"], final
        assert final["done"] == COUNT and final["finished"]
        assert "resumed from item" in worker.text()

        published, states, catalogued = what_the_site_says(conn.root())
    finally:
        transaction.abort()
        conn.close()
        db.close()
    ids = [f"doc-{i:04}" for i in range(COUNT)]
    assert published == dict.fromkeys(ids, 1)
    assert states == dict.fromkeys(ids, "published")
    assert catalogued == dict.fromkeys(ids, ("published", "published"))


def what_the_site_says(root):
    """Read from the database, as stored: per document, how many times its
    workflow history says it was published, its state, and the catalog's
    review_state (index, metadata)."""
    folder = root["Application"]["Plone"]["bulk"]
    published, states = {}, {}
    # The folder's own BTree: its objectIds() needs Plone's components.
    for doc_id, doc in folder._tree.items():
        history = doc.workflow_history["simple_publication_workflow"]
        published[doc_id] = sum(entry["action"] == "publish" for entry in history)
        states[doc_id] = history[-1]["review_state"]
    catalog = root["Application"]["Plone"]._getOb("portal_catalog")._catalog
    index = catalog.getIndex("review_state")
    column = catalog.schema["review_state"]
    prefix = "/Plone/bulk/"
    catalogued = {
        path.removeprefix(prefix): (index._unindex[rid], catalog.data[rid][column])
        for rid, path in catalog.paths.items()
        if path.startswith(prefix)
    }
    return published, states, catalogued
