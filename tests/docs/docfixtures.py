"""Fixtures that console and serve blocks name (``% test: console zeo``).

A fixture is made once per page, before the page's first block, and stopped
after its last. ``prepare(state)`` runs before each block naming it: state
is ``"running"``, or ``"stopped"`` for ``NAME-stopped``. A fixture may add
substitutions to the page (a text of the docs, and what it is here: the
docs' ``127.0.0.1:8100`` and the port of the ZEO server the test started),
applied to commands and written files, and undone in output; and
normalizers (regex, replacement), applied to the output shown and got.
"""

import os

from zasync import processes

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


FIXTURES = {
    "zeo": Zeo,
    "zope-instance": ZopeInstance,
    "postgres": Postgres,
}


def in_ci():
    return bool(os.environ.get("CI"))
