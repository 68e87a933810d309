"""Fixtures: a real FileStorage database and a real dispatcher; a real ZEO
server and a PostgreSQL database of the test's own."""

import os

import pytest
import transaction
import ZODB
import ZODB.FileStorage

import jobfuncs
import zasync
from zasync.testing import processes


@pytest.fixture
def db(tmp_path):
    database = ZODB.DB(ZODB.FileStorage.FileStorage(str(tmp_path / "Data.fs")))
    yield database
    transaction.abort()
    database.close()


@pytest.fixture
def conn(db):
    connection = db.open()
    yield connection
    transaction.abort()
    connection.close()


@pytest.fixture
def queue(conn):
    queue = zasync.get_queues(conn)[""]
    transaction.commit()
    return queue


@pytest.fixture
def start_dispatcher(db):
    """Start dispatchers with short intervals; all are stopped at the end."""
    started = []

    def start(**options):
        options.setdefault("poll_interval", 0.05)
        dispatcher = zasync.start(db, **options)
        started.append(dispatcher)
        return dispatcher

    yield start
    for dispatcher in started:
        dispatcher.stop(5)


@pytest.fixture
def dispatcher(start_dispatcher):
    return start_dispatcher()


@pytest.fixture
def zeo(tmp_path):
    """A ZEO server of the test's own on a free loopback port."""
    server = processes.ZEOServer(str(tmp_path / "zeo")).start()
    yield server
    server.kill()


@pytest.fixture
def postgres():
    """A PostgreSQL database of the test's own, dropped at the end. Without
    PostgreSQL the test is skipped, except under CI, where it fails."""
    if not processes.postgres_available():
        message = f"PostgreSQL is not reachable at {processes.POSTGRES_DSN!r}"
        if os.environ.get("CI"):
            pytest.fail(f"{message} (CI needs it)")
        pytest.skip(message)
    with processes.PostgresDatabase() as database:
        yield database


@pytest.fixture
def connections(db):
    """Open connections with their own transaction managers; closed after."""
    opened = []

    def open_(count):
        made = [jobfuncs.open_connection(db) for _ in range(count)]
        opened.extend(made)
        return made

    yield open_
    for conn in opened:
        conn.transaction_manager.abort()
        conn.close()
