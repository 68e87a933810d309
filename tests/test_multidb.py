"""Multi-database mode: the queues live in a database of their own."""

import transaction
import ZODB
import ZODB.FileStorage
from persistent.list import PersistentList

import jobfuncs
import zasync
from zasync.testing import wait_for_result


def test_queues_in_their_own_database(tmp_path):
    databases = {}
    main = ZODB.DB(
        ZODB.FileStorage.FileStorage(str(tmp_path / "Data.fs")),
        databases=databases,
        database_name="main",
    )
    ZODB.DB(
        ZODB.FileStorage.FileStorage(str(tmp_path / "Async.fs")),
        databases=databases,
        database_name="async",
    )
    try:
        conn = main.open()
        queue = zasync.get_queues(conn, database="async")[""]
        conn.root()["log"] = log = PersistentList()
        transaction.commit()
        dispatcher = zasync.start(main, database="async", poll_interval=60)
        try:
            job = queue.put(zasync.Job(jobfuncs.append, log, "cross-database"))
            transaction.commit()
            assert wait_for_result(job) == "cross-database"
            assert job._p_jar.db() is databases["async"]
            assert "zasync" not in conn.root()
            assert list(conn.root()["log"]) == ["cross-database"]
        finally:
            dispatcher.stop(5)
        conn.close()
    finally:
        for db in list(databases.values()):
            db.close()
