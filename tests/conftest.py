"""Fixtures: a real FileStorage database and a real dispatcher."""

import pytest
import transaction
import ZODB
import ZODB.FileStorage

import zasync


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
