"""Fixtures that console and serve blocks name (``% test: console zeo``).

A fixture is made once per page, before the page's first block, and stopped
after its last. ``prepare(state)`` runs before each block naming it: state
is ``"running"``, or ``"stopped"`` for ``NAME-stopped``. A fixture may add
substitutions to the page (a text of the docs, and what it is here: the
docs' ``127.0.0.1:8100`` and the port of the ZEO server the test started),
applied to commands and written files, and undone in output; and
normalizers (regex, replacement), applied to the output shown and got.
"""

import contextlib
import datetime
import os
import re
import shutil
import socket
from pathlib import Path

import ZODB

import zasync
from zasync import clock, retention
from zasync.testing import inline, processes, wait_for, wait_for_result, wait_for_start

HERE = Path(__file__).resolve().parent

DOCS_ZEO_ADDRESS = "127.0.0.1:8100"
DOCS_DSN = "host=127.0.0.1 dbname=zodb user=zodb"


class Unavailable(Exception):
    """What a fixture needs is not there (PostgreSQL)."""


class Zeo:
    """A ZEO server; the docs' 127.0.0.1:8100 is its address."""

    def __init__(self, run):
        self.server = processes.ZEOServer(str(run.dir / "zeo-server")).start()
        run.substitutions.append((DOCS_ZEO_ADDRESS, self.server.address))

    def prepare(self, state):
        if state == "running" and not self.server.running():
            self.server.start()
        elif state == "stopped" and self.server.running():
            self.server.stop()

    def stop(self):
        if self.server.running():
            self.server.stop()


class Postgres:
    """A PostgreSQL database of the page's own, dropped at the end; the
    docs' DSN "host=127.0.0.1 dbname=zodb user=zodb" is its DSN."""

    def __init__(self, run):
        if not processes.postgres_available():
            raise Unavailable(
                f"PostgreSQL is not reachable at {processes.POSTGRES_DSN!r}"
            )
        self.database = processes.PostgresDatabase()
        self.database.create()
        run.substitutions.append((DOCS_DSN, self.database.dsn))

    def prepare(self, state):
        pass

    def stop(self):
        self.database.drop()


class ZopeInstance:
    """A Zope instance home at parts/worker, as plone.recipe.zope2instance
    makes one: etc/zope.conf with its database on the page's ZEO server
    and etc/site.zcml loading zasync.plone as a web instance (the docs'
    /srv/plone is the page's directory)."""

    SITE_ZCML = """\
<configure xmlns="http://namespaces.zope.org/zope">
  <include package="Zope2.App" />
  <include package="Products.Five" />
  <include package="zasync.plone" />
  <include package="zasync.plone" file="single_db_instance.zcml" />
</configure>
"""

    def __init__(self, run):
        zeo = run.fixture("zeo")
        home = run.dir / "parts" / "worker"
        (home / "etc").mkdir(parents=True, exist_ok=True)
        (home / "var").mkdir(exist_ok=True)
        (home / "etc" / "site.zcml").write_text(self.SITE_ZCML)
        (home / "etc" / "zope.conf").write_text(
            f"instancehome {home}\n"
            "<zodb_db main>\n"
            "    <zeoclient>\n"
            f"        server {zeo.server.address}\n"
            "    </zeoclient>\n"
            "    mount-point /\n"
            "</zodb_db>\n"
        )

    def prepare(self, state):
        pass

    def stop(self):
        pass


@contextlib.contextmanager
def _at(when):
    """Make zasync's clock say ``when`` (for jobs that ended days ago)."""
    original = clock.utcnow
    clock.utcnow = lambda: when
    try:
        yield
    finally:
        clock.utcnow = original


class Ops(Zeo):
    """The cluster docs/operations.md looks at: a ZEO server (zeo.conf in
    the page's directory) and the jobs of myapp.jobs
    (tests/docs/fixtures/ops/myapp/jobs.py):

    - a worker (a real ``zasync worker`` process) ran a report export and a
      feed import, which failed, then started an index rebuild and was
      killed with kill -9; a live worker (a dispatcher in this process)
      declared it dead and runs the rebuild again, until the page is done;
    - two newsletters are scheduled for later;
    - older jobs: 40 report exports that ended 10 days ago, 2 feed imports
      that failed 10 days ago and 4 that failed 40 days ago;
    - a quota "exports" of size 2;
    - automatic retention off for the default queue.

    The job ids the page shows stand for these jobs (JOB_IDS); other job
    ids, the host, process ids, users and ages are normalized.
    """

    # Fixed, so that the dispatchers are listed in the page's order.
    LIVE_UUID = "3da2c173-3802-48fe-91de-194c7238f9bb"
    KILLED_UUID = "9cdcbe7c-16ea-4dc1-b182-826110f3b677"
    JOB_IDS = {
        "rebuild": "244851163548133967",
        "feed": "244851019106319317",
        "newsletter_due": "244851019106618329",
        "newsletter_cancel": "244851019106737115",
    }

    def __init__(self, run):
        super().__init__(run)
        self.run = run
        self.live = None
        self.jobs = None
        self.db = None
        shutil.copytree(HERE / "fixtures" / "ops", run.dir, dirs_exist_ok=True)
        self.server.client_conf(str(run.dir / "zeo.conf"))
        import myapp.jobs

        self.jobs = myapp.jobs
        self.db = ZODB.DB(self.server.client_storage())
        ids = self._old_and_scheduled_jobs(myapp.jobs)
        ids.update(self._killed_worker(myapp.jobs))
        for name, real in ids.items():
            run.substitutions.append((self.JOB_IDS[name], str(real)))
        host = re.escape(socket.gethostname())
        run.normalizers += [
            (re.compile(rf"(?<![\w.-]){host}(?![\w.-])"), "vm"),
            (re.compile(r"\bvm:\d+"), "vm:<PID>"),
            (re.compile(r'"pid": \d+'), '"pid": <PID>'),
            (re.compile(r"\(user \S+ on vm\)"), "(user <USER> on vm)"),
            (re.compile(r"<SECONDS>|\b(\d+[dhm])?\d+s\b"), "<AGE>"),
            (re.compile(r'"heartbeat_age": [\d.]+'), '"heartbeat_age": <AGE>'),
        ]

    def _old_and_scheduled_jobs(self, jobs):
        now = clock.utcnow()
        day = datetime.timedelta(days=1)
        old_feed = "https://example.org/old-feed.xml"
        with self.db.transaction() as conn:
            queue = zasync.get_queues(conn)[""]
            queue.quotas.create("exports", size=2)
            # The page prunes these old jobs by hand before it turns the
            # automatic retention on (see its Retention section).
            retention.retention_settings(queue).update({"enabled": False})
            with inline():
                with _at(now - 40 * day):
                    for _ in range(4):
                        queue.put(zasync.Job(jobs.import_feed, old_feed))
                with _at(now - 10 * day):
                    for number in range(40):
                        month = f"2025-{number % 12 + 1:02d}"
                        queue.put(
                            zasync.Job(jobs.export_report, month),
                            quota_names=("exports",),
                        )
                    for _ in range(2):
                        queue.put(zasync.Job(jobs.import_feed, old_feed))
            due = queue.put(zasync.Job(jobs.send_newsletter, 48), begin_after=day)
            cancel = queue.put(
                zasync.Job(jobs.send_newsletter, 49),
                begin_after=datetime.timedelta(hours=2),
            )
            return {"newsletter_due": due.id, "newsletter_cancel": cancel.id}

    def _put(self, conn, job, **options):
        with conn.transaction_manager:
            return zasync.get_queues(conn)[""].put(job, **options)

    def _killed_worker(self, jobs):
        run = self.run
        uuid_file = run.dir / "killed-worker.uuid"
        uuid_file.write_text(f"{self.KILLED_UUID}\n")
        worker = processes.Worker(
            str(run.dir / "killed-worker"),
            "worker1",
            str(run.dir / "zeo.conf"),
            uuid_file=str(uuid_file),
            options=["--ping-interval", "0.5", "--death-interval", "2"],
            env=run.env(),
        ).start()
        conn = self.db.open()
        try:
            report = self._put(
                conn,
                zasync.Job(jobs.export_report, "2026-10"),
                quota_names=("exports",),
            )
            wait_for_result(report, 30)
            feed = self._put(
                conn, zasync.Job(jobs.import_feed, "https://example.org/feed.xml")
            )
            wait_for_result(feed, 30)
            rebuild = self._put(conn, zasync.Job(jobs.rebuild_index))
            wait_for_start(rebuild, 30)
            worker.kill()
            record = zasync.get_queues(conn)[""].dispatchers[worker.uuid]
            wait_for(
                lambda: record.is_dead(clock.utcnow()),
                30,
                conn.transaction_manager.begin,
                lambda: "the killed worker's heartbeat to expire",
            )
            self.live = zasync.start(
                self.db, agent_filter=jobs.only_rebuild, uuid=self.LIVE_UUID
            )
            wait_for(
                lambda: rebuild.interruptions == 1 and rebuild.status == "active",
                30,
                conn.transaction_manager.begin,
                lambda: f"{rebuild!r} to run again on the live worker",
            )
            return {"rebuild": rebuild.id, "feed": feed.id}
        finally:
            worker.kill()
            conn.transaction_manager.abort()
            conn.close()

    def stop(self):
        if self.jobs is not None:
            self.jobs.release.set()
        if self.live is not None:
            self.live.stop(10)
        if self.db is not None:
            self.db.close()
        super().stop()


FIXTURES = {
    "ops": Ops,
    "zeo": Zeo,
    "zope-instance": ZopeInstance,
    "postgres": Postgres,
}


def in_ci():
    return bool(os.environ.get("CI"))
