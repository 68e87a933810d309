"""Real processes for the tests: a ZEO server (runzeo) and Zope 6 instances
started with ``runwsgi``, as in production, with a zope.conf and a site.zcml
that loads Zope, zasync.plone and one of its role ZCML files."""

import os
import signal
import socket
import subprocess
import sys
import textwrap

import ZODB
from ZEO.ClientStorage import ClientStorage

from zasync.testing import wait_for

BIN = os.path.dirname(sys.executable)
HERE = os.path.dirname(os.path.abspath(__file__))
START_TIMEOUT = 30.0


def wait_until(condition, seconds, describe):
    """Return condition()'s first true value; TimeoutError after ``seconds``."""
    return wait_for(condition, seconds, lambda: None, describe)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop(process, timeout=10):
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


class ZEOServer:
    """runzeo serving the FileStorages named in ``storages``."""

    def __init__(self, directory, storages):
        self.directory = directory
        self.port = free_port()
        self.address = ("127.0.0.1", self.port)
        self.unused = list(storages)
        sections = "".join(
            f"<filestorage {name}>\n  path {directory}/{name}.fs\n</filestorage>\n"
            for name in storages
        )
        self.conf = os.path.join(directory, "zeo.conf")
        with open(self.conf, "w") as f:
            f.write(f"<zeo>\n  address 127.0.0.1:{self.port}\n</zeo>\n{sections}")
        self.log = os.path.join(directory, "zeo.log")
        self.process = None

    def start(self):
        with open(self.log, "w") as out:
            self.process = subprocess.Popen(
                [os.path.join(BIN, "runzeo"), "-C", self.conf],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        return self

    def stop(self):
        if self.process is not None:
            _stop(self.process)

    def take(self):
        """Two storages no test used yet: a main one and one for the queues."""
        assert len(self.unused) >= 2, "the ZEO server needs more storages"
        return ZEOStorages(self, self.unused.pop(0), self.unused.pop(0))


class ZEOStorages:
    """A test's own pair of storages on a shared ZEO server."""

    def __init__(self, server, main, queues):
        self.server = server
        self.main = main
        self.queues = queues

    def zeoclient(self, queues=False):
        """A <zeoclient> section for the main storage or the queues' one."""
        return (
            f"    <zeoclient>\n"
            f"        server 127.0.0.1:{self.server.port}\n"
            f"        storage {self.queues if queues else self.main}\n"
            f"    </zeoclient>\n"
        )

    def open(self, queues=None):
        """A client DB called 'main'; with ``queues`` (a database name), the
        queues' storage is opened next to it under that name."""
        names = {"main": self.main}
        if queues is not None:
            names[queues] = self.queues
        databases = {}
        for name, storage in names.items():
            ZODB.DB(
                ClientStorage(self.server.address, storage=storage, wait_timeout=30),
                databases=databases,
                database_name=name,
            )
        return databases["main"]


def filestorage(path):
    return f"    <filestorage>\n        path {path}\n    </filestorage>\n"


def zodb_db(name, storage, mount_point):
    return f"<zodb_db {name}>\n{storage}    mount-point {mount_point}\n</zodb_db>\n"


SITE_ZCML = """\
<configure xmlns="http://namespaces.zope.org/zope">
  <include package="Zope2.App" />
  <include package="Products.Five" />
  <include package="zasync.plone" />
  {role}
</configure>
"""

ZOPE_INI = """\
[app:main]
use = egg:Zope#main
zope_conf = %(here)s/zope.conf

[server:main]
use = egg:waitress#main
listen = 127.0.0.1:0

[loggers]
keys = root

[handlers]
keys = console

[formatters]
keys = generic

[logger_root]
level = INFO
handlers = console

[handler_console]
class = StreamHandler
args = (sys.stderr,)
formatter = generic

[formatter_generic]
format = %(asctime)s %(levelname)s [%(name)s] %(message)s
"""

# waitress logs this once the app is made, i.e. after IDatabaseOpenedWithRoot.
READY = "Serving on http://"


class ZopeProcess:
    """A Zope instance home and the ``runwsgi`` process serving it.

    ``role`` is the zasync.plone ZCML file to load (None: embedded),
    ``databases`` the <zodb_db> sections, ``product_config`` the lines of
    <product-config zasync> (None: no such section), ``env`` changes to the environment (a value of
    None removes the variable).
    """

    def __init__(self, home, role, databases, product_config="", env=None):
        self.home = home
        self.var = os.path.join(home, "var")
        os.makedirs(os.path.join(home, "etc"))
        os.makedirs(self.var)
        include = f'<include package="zasync.plone" file="{role}" />' if role else ""
        self._write("etc/site.zcml", SITE_ZCML.format(role=include))
        self._write("etc/zope.ini", ZOPE_INI)
        conf = f"instancehome {home}\n{databases}\n"
        if product_config is not None:
            lines = textwrap.indent(textwrap.dedent(product_config).strip(), "    ")
            conf += f"<product-config zasync>\n{lines}\n</product-config>\n"
        self._write("etc/zope.conf", conf)
        self.output = os.path.join(self.var, "output.log")
        self.env = dict(os.environ)
        for name in ("ZASYNC_UUID", "ZC_ASYNC_UUID"):
            self.env.pop(name, None)
        self.env["PYTHONPATH"] = os.pathsep.join(
            [HERE, *filter(None, [os.environ.get("PYTHONPATH")])]
        )
        for name, value in (env or {}).items():
            if value is None:
                self.env.pop(name, None)
            else:
                self.env[name] = value
        self.process = None

    def _write(self, name, text):
        with open(os.path.join(self.home, name), "w") as f:
            f.write(text)

    @property
    def pid(self):
        return self.process.pid

    def start(self, argv=None):
        """Serve with runwsgi, or run ``argv`` (a command for this home)."""
        argv = argv or [
            os.path.join(BIN, "runwsgi"),
            os.path.join(self.home, "etc/zope.ini"),
        ]
        with open(self.output, "w") as out:
            self.process = subprocess.Popen(
                argv,
                cwd=self.home,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        return self

    def start_worker(self, *options):
        """``zasync worker --zope-conf`` on this home: Zope without HTTP."""
        zope_conf = os.path.join(self.home, "etc/zope.conf")
        return self.start(
            [os.path.join(BIN, "zasync"), "worker", "--zope-conf", zope_conf, *options]
        )

    def text(self):
        with open(self.output) as f:
            return f.read()

    def wait_for_output(self, needle, seconds=START_TIMEOUT):
        """Wait until the process has written ``needle``; fail if it ends."""

        def seen():
            if needle in self.text():
                return True
            if self.process.poll() is not None:
                raise AssertionError(
                    f"Zope exited with {self.process.returncode} before writing "
                    f"{needle!r}:\n{self.text()}"
                )
            return False

        wait_until(seen, seconds, lambda: f"no {needle!r} in:\n{self.text()}")

    def start_and_wait(self):
        self.start()
        self.wait_for_output(READY)
        return self

    def wait_for_exit(self, seconds=START_TIMEOUT):
        try:
            return self.process.wait(seconds)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"Zope did not exit within {seconds}s:\n{self.text()}"
            ) from None

    def stop(self):
        if self.process is not None:
            _stop(self.process)


def fresh(conn):
    """Start a new transaction on ``conn`` to see other processes' commits."""
    conn.transaction_manager.abort()
    conn.transaction_manager.begin()
    return conn


def queue_of(conn, database=None):
    """The default queue, without installing anything; None if missing."""
    if database is not None:
        conn = conn.get_connection(database)
    queues = conn.root().get("zasync")
    return None if queues is None else queues.get("")


def record_of(conn, pid, database=None):
    """The dispatcher record of process ``pid`` in the default queue, or None."""
    queue = queue_of(fresh(conn), database)
    if queue is None:
        return None
    for record in queue.dispatchers.values():
        if record.pid == pid and record.host == socket.gethostname():
            return record
    return None


def put(conn, job, database=None):
    """Queue ``job`` in the default queue and commit."""
    fresh(conn)
    queue = queue_of(conn, database)
    assert queue is not None, "the Zope process did not install the queues"
    queue.put(job)
    conn.transaction_manager.commit()
    return job
