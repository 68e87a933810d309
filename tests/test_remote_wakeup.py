"""Remote wake-ups (zasync.remote_wakeup): ZEO's pushed invalidations and
PostgreSQL's NOTIFY reach a watcher in another database client, and only
changes to watched objects wake it."""

import threading

import persistent
import pytest
import transaction
import ZODB

from zasync import remote_wakeup


class Thing(persistent.Persistent):
    value = 0


def _commit(db, change):
    tm = transaction.TransactionManager(explicit=True)
    conn = db.open(transaction_manager=tm)
    try:
        tm.begin()
        result = change(conn.root())
        tm.commit()
        return result
    finally:
        conn.close()


def test_zeo_invalidations_of_watched_objects_wake(zeo):
    watcher = ZODB.DB(zeo.client_storage())
    other = ZODB.DB(zeo.client_storage())
    try:

        def make(root):
            root["watched"], root["other"], root["flag"] = Thing(), Thing(), Thing()

        _commit(other, make)
        oid = {
            name: _commit(other, lambda root, n=name: root[n]._p_oid)
            for name in ("watched", "other", "flag")
        }
        # A second watch on "flag" tells when the watcher has received every
        # invalidation committed before a change to "flag" (ZEO keeps order).
        flagged = threading.Event()
        flag_watch = remote_wakeup.listen(watcher, flagged.set)
        flag_watch.watch([oid["flag"]])

        def flush():
            flagged.clear()
            _commit(other, lambda root: setattr(root["flag"], "value", 1))
            assert flagged.wait(10), "the watcher received no invalidations"

        flush()
        woken = threading.Event()
        listening = remote_wakeup.listen(watcher, woken.set)
        assert listening.kind == "zeo-invalidations"
        listening.watch([oid["watched"]])

        _commit(other, lambda root: setattr(root["other"], "value", 1))
        flush()
        assert not woken.is_set(), "a change to an unwatched object woke us"

        _commit(other, lambda root: setattr(root["watched"], "value", 1))
        assert woken.wait(10)

        listening.stop()
        woken.clear()
        _commit(other, lambda root: setattr(root["watched"], "value", 2))
        flush()
        assert not woken.is_set(), "a stopped watch woke us"
        flag_watch.stop()
    finally:
        watcher.close()
        other.close()


def test_other_storages_need_no_listener(db):
    assert remote_wakeup.listen(db, lambda: None) is None


@pytest.mark.postgres
def test_postgresql_notify_after_commit_wakes_listeners(postgres, tmp_path):
    import ZODB.config

    conf = postgres.zodb_conf(str(tmp_path / "rs.conf"))
    listening_db = ZODB.config.databaseFromURL(conf)
    putting_db = ZODB.config.databaseFromURL(conf)
    try:
        woken = threading.Event()
        listening = remote_wakeup.listen(listening_db, woken.set)
        assert listening.kind == "postgresql-notify"
        assert listening.wait_ready(10)
        woken.clear()  # it wakes once when it starts listening

        remote_wakeup.notify_other_processes(putting_db)
        assert woken.wait(10)

        listening.stop()
        woken.clear()
        remote_wakeup.notify_other_processes(putting_db)
        # Prove the NOTIFY went out by a second listener hearing it.
        heard = threading.Event()
        second = remote_wakeup.listen(listening_db, heard.set)
        assert second.wait_ready(10)
        heard.clear()
        remote_wakeup.notify_other_processes(putting_db)
        assert heard.wait(10)
        second.stop()
        assert not woken.is_set()
    finally:
        listening_db.close()
        putting_db.close()


def test_the_old_module_name_is_the_same_module():
    """zasync.signals, the old name, is zasync.remote_wakeup itself (so a
    change made through either is seen through both)."""
    import zasync.signals

    assert zasync.signals is remote_wakeup
    assert zasync.signals.listen is remote_wakeup.listen
