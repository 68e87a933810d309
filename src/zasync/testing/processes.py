"""The processes of a zasync cluster, started and stopped from Python: a
ZEO server, ``zasync worker`` processes, and PostgreSQL databases for
RelStorage. Used by the cluster tests and the benchmarks; everything
listens on loopback only, and every wait is bounded.
"""

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

from zasync.clock import wait_until
from zasync.config import WORKER_READY
from zasync.exceptions import ProcessError
from zasync.identity import read_uuid_file

LOOPBACK = "127.0.0.1"
POSTGRES_DSN = os.environ.get(
    "ZASYNC_TEST_POSTGRES", "host=127.0.0.1 port=5432 user=postgres dbname=postgres"
)


def free_port():
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def _bin(name):
    """The console script ``name`` installed beside this Python."""
    path = os.path.join(os.path.dirname(sys.executable), name)
    return path if os.path.exists(path) else shutil.which(name) or name


def wait_for(predicate, timeout, what, interval=0.02):
    """Poll ``predicate`` until it returns something true; raise
    ProcessError naming ``what`` after ``timeout`` seconds."""
    value = wait_until(predicate, timeout, interval)
    if not value:
        raise ProcessError(f"timed out after {timeout}s waiting for {what}")
    return value


def _port_open(port):
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex((LOOPBACK, port)) == 0


class _Logged:
    """A child process whose output goes to a log file we can search."""

    def __init__(self, name, log_path):
        self.name = name
        self.log_path = log_path
        self.process = None

    def _spawn(self, argv, env=None, cwd=None):
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child keeps it
        try:
            self.process = subprocess.Popen(
                argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                cwd=cwd,
            )
        finally:
            log.close()

    def log(self):
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    @property
    def pid(self):
        return self.process.pid

    def running(self):
        return self.process is not None and self.process.poll() is None

    def kill(self):
        """SIGKILL: the process dies at once, as in a crash."""
        if self.running():
            self.process.kill()
        if self.process is not None:
            self.process.wait(10)

    def terminate(self, timeout=60):
        """SIGTERM, then wait for the exit; returns the exit code."""
        if not self.running():
            return self.process.returncode if self.process else None
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
            raise ProcessError(
                f"{self.name} did not stop within {timeout}s of SIGTERM; killed it.\n"
                f"{self.log()[-3000:]}"
            ) from None


class ZEOServer(_Logged):
    """A ZEO server on a free loopback port, storing in ``directory``."""

    def __init__(self, directory, port=None, name="zeo"):
        os.makedirs(directory, exist_ok=True)
        super().__init__(name, os.path.join(directory, f"{name}.log"))
        self.directory = directory
        self.port = port or free_port()
        self.conf_path = os.path.join(directory, f"{name}.conf")
        with open(self.conf_path, "w") as f:
            f.write(
                f"<zeo>\n  address {LOOPBACK}:{self.port}\n</zeo>\n"
                f"<filestorage>\n  path {os.path.join(directory, 'Data.fs')}\n"
                f"</filestorage>\n"
            )

    @property
    def address(self):
        return f"{LOOPBACK}:{self.port}"

    def start(self, timeout=30):
        self._spawn([_bin("runzeo"), "-C", self.conf_path])
        wait_for(
            lambda: _port_open(self.port) or self._died(),
            timeout,
            f"the ZEO server on port {self.port}",
        )
        if not self.running():
            raise ProcessError(f"the ZEO server exited:\n{self.log()[-3000:]}")
        return self

    def _died(self):
        return not self.running()

    def stop(self, timeout=30):
        """SIGTERM until the server exits; SIGKILL after ``timeout`` seconds.

        runzeo can lose a SIGTERM: its handler raises SystemExit in whatever
        the main thread is doing, and when that is resolving a conflict,
        ZODB's conflict resolution catches and logs it and the server goes
        on. Another SIGTERM stops it."""
        deadline = time.monotonic() + timeout
        while self.running():
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(min(2.0, max(deadline - time.monotonic(), 0.1)))
            except subprocess.TimeoutExpired:
                if time.monotonic() > deadline:
                    self.kill()
                    raise ProcessError(
                        f"{self.name} did not stop within {timeout}s of SIGTERM; "
                        f"killed it.\n{self.log()[-3000:]}"
                    ) from None
        return self.process.returncode if self.process else None

    def restart(self, down_for=0.0):
        """Stop the server and start it again on the same port; clients
        see a disconnection. ``down_for``: seconds to stay down."""
        self.stop()
        if down_for:
            time.sleep(down_for)  # the outage itself, not a wait for a result
        return self.start()

    def client_conf(self, path, cache_size="20MB"):
        """Write a --zodb-conf file for clients of this server; returns it."""
        with open(path, "w") as f:
            f.write(
                "<zodb>\n  <zeoclient>\n"
                f"    server {self.address}\n"
                f"    cache-size {cache_size}\n"
                "  </zeoclient>\n</zodb>\n"
            )
        return path

    def client_storage(self, wait_timeout=30):
        from ZEO.ClientStorage import ClientStorage

        return ClientStorage((LOOPBACK, self.port), wait_timeout=wait_timeout)


def postgres_available(dsn=POSTGRES_DSN):
    """True if PostgreSQL answers at ``dsn``."""
    try:
        import psycopg2
    except ImportError:
        return False
    try:
        psycopg2.connect(dsn, connect_timeout=3).close()
    except psycopg2.Error:
        return False
    return True


class PostgresDatabase:
    """A PostgreSQL database of its own for a RelStorage, created on enter
    and dropped on exit (with every connection to it)."""

    def __init__(self, name=None, admin_dsn=POSTGRES_DSN):
        self.name = name or f"zasync_test_{os.getpid()}_{free_port()}"
        if not re.fullmatch(r"[a-z_][a-z0-9_]*", self.name):
            raise ValueError(f"unsafe database name {self.name!r}")
        self.admin_dsn = admin_dsn

    @property
    def dsn(self):
        parts = [p for p in self.admin_dsn.split() if not p.startswith("dbname=")]
        return " ".join([*parts, f"dbname={self.name}"])

    def _admin(self, sql):
        import psycopg2

        conn = psycopg2.connect(self.admin_dsn, connect_timeout=10)
        try:
            conn.autocommit = True
            with conn.cursor() as cursor:
                cursor.execute(sql)
        finally:
            conn.close()

    def create(self):
        self.drop()
        self._admin(f"CREATE DATABASE {self.name}")
        return self

    def drop(self):
        self._admin(f"DROP DATABASE IF EXISTS {self.name} WITH (FORCE)")

    def drop_connections(self):
        """Terminate every server process connected to this database, as
        a PostgreSQL restart does to its clients; how many there were."""
        import psycopg2

        conn = psycopg2.connect(self.admin_dsn, connect_timeout=10)
        try:
            conn.autocommit = True
            with conn.cursor() as cursor:
                cursor.execute(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                    " WHERE datname = %s AND pid <> pg_backend_pid()",
                    (self.name,),
                )
                return cursor.fetchone()[0]
        finally:
            conn.close()

    def __enter__(self):
        return self.create()

    def __exit__(self, *exc):
        self.drop()

    def zodb_conf(self, path, keep_history=False, cache_local_mb=10):
        """Write a --zodb-conf file for a RelStorage on this database."""
        with open(path, "w") as f:
            f.write(
                "%import relstorage\n<zodb>\n  <relstorage>\n"
                f"    keep-history {'true' if keep_history else 'false'}\n"
                f"    cache-local-mb {cache_local_mb}\n"
                "    <postgresql>\n"
                f"      dsn {self.dsn}\n"
                "    </postgresql>\n  </relstorage>\n</zodb>\n"
            )
        return path


READY = WORKER_READY
STATS = re.compile(r"zasync worker stats: (?P<pairs>.*)$", re.MULTILINE)


class Worker(_Logged):
    """A ``zasync worker`` process."""

    def __init__(
        self, directory, name, zodb_conf, uuid_file=None, options=(), env=None
    ):
        os.makedirs(directory, exist_ok=True)
        super().__init__(name, os.path.join(directory, f"{name}.log"))
        self.zodb_conf = zodb_conf
        self.uuid_file = uuid_file or os.path.join(directory, f"{name}.uuid")
        self.options = list(options)
        self.env = env
        self.starts = 0

    def start(self, timeout=60):
        """Start the worker and wait until it says it is ready."""
        self.starts += 1
        env = dict(os.environ if self.env is None else self.env)
        env.setdefault("PYTHONUNBUFFERED", "1")
        argv = [
            _bin("zasync"),
            "worker",
            "--zodb-conf",
            self.zodb_conf,
            "--uuid-file",
            self.uuid_file,
            *self.options,
        ]
        self._spawn(argv, env=env)
        wait_for(
            lambda: self._ready() or not self.running(),
            timeout,
            f"worker {self.name} to be ready",
        )
        # A worker may say it is ready and die at once (its first job killed
        # it): it did start, and the caller sees it is not running.
        if not self._ready():
            raise ProcessError(f"worker {self.name} exited:\n{self.log()[-3000:]}")
        return self

    def _ready(self):
        return self.log().count(READY) >= self.starts

    @property
    def uuid(self):
        return read_uuid_file(self.uuid_file)

    def stats(self):
        """The counters of the worker's last clean stop (see zasync.cli.worker)."""
        found = STATS.findall(self.log())
        if not found:
            return None
        return {
            key: int(value)
            for key, value in (pair.split("=") for pair in found[-1].split())
        }

    def jobs_started(self):
        return len(re.findall(r"\) started$", self.log(), re.MULTILINE))


class Reader:
    """A thread-safe way to look at a database from a test: opens its own
    DB on ``storage_factory()`` and closes it on exit."""

    def __init__(self, storage_factory):
        import ZODB

        self.db = ZODB.DB(storage_factory())
        self._lock = threading.Lock()

    def read(self, func):
        """``func(root)`` in a fresh read-only transaction; returns its result."""
        import transaction

        with self._lock:
            tm = transaction.TransactionManager(explicit=True)
            conn = self.db.open(transaction_manager=tm)
            try:
                tm.begin()
                try:
                    return func(conn.root())
                finally:
                    tm.abort()
            finally:
                conn.close()

    def close(self):
        with contextlib.suppress(Exception):
            self.db.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
