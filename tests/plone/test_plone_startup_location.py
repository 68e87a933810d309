"""Start-up refuses a process that would keep the queues elsewhere than
its cluster: startup.check_queues_location on a real multi-database (two
FileStorages, as Zope opens main and zasync_queues), with the role a ZCML
file registers."""

import pytest
import transaction
import ZODB
import ZODB.FileStorage
from zope.component import getGlobalSiteManager

import zasync
from zasync import admin
from zasync.plone import roles, startup
from zasync.plone.config import ConfigurationError, ProcessConfig
from zasync.plone.interfaces import IProcessRole

QUEUES = "zasync_queues"


@pytest.fixture
def main_db(tmp_path):
    """'main' and 'zasync_queues' in one multi-database."""
    databases = {}
    for name in ("main", QUEUES):
        ZODB.DB(
            ZODB.FileStorage.FileStorage(str(tmp_path / f"{name}.fs")),
            databases=databases,
            database_name=name,
        )
    yield databases["main"]
    for db in databases.values():
        db.close()


@pytest.fixture
def role():
    """Give this process a role, as loading a *_db_*.zcml file does."""
    registry = getGlobalSiteManager()
    given = []

    def give(component):
        registry.registerUtility(component, IProcessRole)
        given.append(component)

    yield give
    for component in given:
        registry.unregisterUtility(component, IProcessRole)


def check(db, database, name=QUEUES):
    startup.check_queues_location(db, database, ProcessConfig(database=name))


def recorded(db):
    conn = db.open()
    try:
        return admin.queues_location(conn)
    finally:
        conn.close()


def test_the_first_process_records_and_the_same_mode_passes(main_db, role):
    role(roles.MULTI_DB_INSTANCE)
    check(main_db, QUEUES)
    entry = recorded(main_db)
    assert entry["database"] == QUEUES
    assert entry["recorded_by"].startswith("multi_db_instance.zcml on ")
    check(main_db, QUEUES)  # a worker of the same mode
    assert recorded(main_db) == entry


def test_a_single_db_worker_in_a_multi_db_cluster_is_refused(main_db, role):
    role(roles.MULTI_DB_INSTANCE)
    check(main_db, QUEUES)
    getGlobalSiteManager().unregisterUtility(roles.MULTI_DB_INSTANCE, IProcessRole)
    role(roles.SINGLE_DB_WORKER)
    with pytest.raises(ConfigurationError) as refused:
        check(main_db, None)
    message = str(refused.value)
    assert (
        "this process loads single_db_worker.zcml, which keeps the queues in the "
        "main database (single-database mode), but this cluster keeps them in "
        "the database 'zasync_queues' (multi-database mode), as "
        "multi_db_instance.zcml on "
    ) in message
    assert "Load multi_db_worker.zcml instead of single_db_worker.zcml" in message
    assert "'zasync mode set single-db --zope-conf" in message
    # Nothing was written: the main database has no queues.
    conn = main_db.open()
    assert "zasync" not in conn.root()
    conn.close()


def test_a_multi_db_worker_in_a_single_db_cluster_is_refused(main_db, role):
    role(roles.SINGLE_DB_INSTANCE)
    check(main_db, None)
    getGlobalSiteManager().unregisterUtility(roles.SINGLE_DB_INSTANCE, IProcessRole)
    role(roles.MULTI_DB_WORKER)
    with pytest.raises(ConfigurationError) as refused:
        check(main_db, QUEUES)
    message = str(refused.value)
    assert (
        "loads multi_db_worker.zcml, which keeps the queues in the database "
        "'zasync_queues' (multi-database mode), but this cluster keeps them in "
        "the main database (single-database mode)"
    ) in message
    assert "Load single_db_worker.zcml instead of multi_db_worker.zcml" in message
    assert "'zasync mode set multi-db --zope-conf" in message


def test_an_embedded_process_in_a_multi_db_cluster_is_told_both_files(main_db):
    conn = main_db.open()
    admin.record_queues_location(conn, QUEUES, "multi_db_worker.zcml on w1:1")
    transaction.commit()
    conn.close()
    with pytest.raises(ConfigurationError) as refused:
        check(main_db, None)
    message = str(refused.value)
    assert "this process loads no role file (an embedded process)" in message
    assert (
        "Load multi_db_instance.zcml (a web instance) or multi_db_worker.zcml "
        "(a worker) and mount the database 'zasync_queues' in zope.conf"
    ) in message


def test_another_queues_database_name_is_refused(main_db, role):
    role(roles.MULTI_DB_WORKER)
    check(main_db, QUEUES)
    with pytest.raises(ConfigurationError) as refused:
        check(main_db, "jobs", name="jobs")
    message = str(refused.value)
    assert "Both are multi-database mode, with other names" in message
    assert "        database zasync_queues\n" in message


def test_queues_left_by_an_earlier_version_count_as_the_record(main_db, role):
    """A cluster that ran before the record existed: its queues, with jobs,
    say where it kept them."""
    conn = main_db.open()
    zasync.get_queues(conn)[""].put(zasync.Job(len, "x"))
    transaction.commit()
    conn.close()
    role(roles.MULTI_DB_WORKER)
    with pytest.raises(ConfigurationError) as refused:
        check(main_db, QUEUES)
    assert "queues with jobs were found there" in str(refused.value)
    assert recorded(main_db) is None
    # The processes of that mode record it.
    check(main_db, None)
    assert recorded(main_db)["database"] is None


def test_a_deliberate_switch_is_recorded_by_zasync_mode_set(main_db, role):
    role(roles.MULTI_DB_WORKER)
    check(main_db, QUEUES)
    conn = main_db.open()
    admin.record_queues_location(conn, None, "zasync mode set (user op on vm)")
    transaction.commit()
    conn.close()
    with pytest.raises(ConfigurationError):
        check(main_db, QUEUES)
    check(main_db, None)
