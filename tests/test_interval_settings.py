"""Cluster-wide poll, ping and death intervals kept with the queues:
dispatchers that do not set an interval themselves follow them, at start
and while running, and record them (peers judge death by them); an
interval the process sets wins and says where it comes from (real
FileStorage, real dispatchers)."""

import uuid

import pytest
from zope.interface.verify import verifyObject

import zasync
from zasync import admin, clock, registry
from zasync.config import COMMAND_LINE, DispatcherConfig
from zasync.interfaces import IIntervalSettings
from zasync.testing import wait_for


@pytest.fixture(autouse=True)
def installed(queue):
    """The queues exist, as they do once any process of a cluster started."""
    return queue


def change(db, work):
    return admin.in_transaction(db, work)


def record_of(conn, dispatcher, queue=""):
    conn.transaction_manager.begin()
    return zasync.get_queues(conn)[queue].dispatchers[dispatcher.uuid]


def entry_of(db, dispatcher):
    def read(queues):
        report = admin.settings_report(queues)
        (queue,) = [q for q in report["queues"] if q["label"] == "default"]
        (entry,) = [d for d in queue["dispatchers"] if d["uuid"] == dispatcher.uuid]
        return report, entry

    return change(db, read)


def test_interval_settings_provide_their_interface():
    settings = registry.IntervalSettings()
    assert verifyObject(IIntervalSettings, settings)
    assert settings.values() == {}
    settings.set("ping_interval", 10)
    assert settings.get("ping_interval") == 10.0
    settings.set("ping_interval", None)
    assert settings.get("ping_interval") is None


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"poll_interval": 0}, "poll_interval must be a number of seconds > 0"),
        ({"ping_interval": "soon"}, "ping_interval must be a number of seconds > 0"),
        ({"ping_interval": 400}, r"death_interval \(300\) must be longer"),
        ({"death_interval": 30}, r"death_interval \(30\) must be longer"),
        ({"nap_interval": 3}, "no interval 'nap_interval'"),
    ],
)
def test_bad_intervals_are_refused_and_change_nothing(db, conn, changes, message):
    change(db, lambda q: admin.set_intervals(q, {"poll": 2}))
    with pytest.raises(admin.AdminError, match=message):
        change(db, lambda q: admin.set_intervals(q, changes))
    report = change(db, admin.interval_report)
    assert report["poll_interval"] == {"setting": 2.0, "default": 1.0}
    assert report["ping_interval"] == {"setting": None, "default": 30.0}


def test_ping_and_death_change_together(db, conn):
    # Each alone would not fit with the other's default; together they do.
    done = change(db, lambda q: admin.set_intervals(q, {"ping": 400, "death": 1200}))
    assert done["intervals"] == {"ping_interval": 400.0, "death_interval": 1200.0}
    assert done["was"] == {"ping_interval": None, "death_interval": None}


def test_a_dispatcher_takes_the_clusters_intervals(db, conn, start_dispatcher):
    change(db, lambda q: admin.set_intervals(q, {"ping": 7, "death": 70}))
    # start_dispatcher gives poll_interval itself: it is the process's own.
    dispatcher = start_dispatcher(uuid=str(uuid.uuid4()))
    assert dispatcher.intervals == {
        "poll_interval": (0.05, "argument"),
        "ping_interval": (7.0, "cluster setting"),
        "death_interval": (70.0, "cluster setting"),
    }
    record = record_of(conn, dispatcher)
    assert (record.ping_interval, record.death_interval) == (7.0, 70.0)
    _, entry = entry_of(db, dispatcher)
    assert entry["intervals"]["ping_interval"] == {
        "seconds": 7.0,
        "source": "cluster setting",
    }


def test_running_dispatchers_follow_a_change(db, conn, start_dispatcher):
    dispatcher = start_dispatcher(uuid=str(uuid.uuid4()))
    assert dispatcher.death_interval == 300
    change(db, lambda q: admin.set_interval(q, "death", 45))
    wait_for(
        lambda: record_of(conn, dispatcher).death_interval == 45.0,
        10,
        lambda: None,
        lambda: f"the record to follow: {record_of(conn, dispatcher).intervals}",
    )
    assert dispatcher.intervals["death_interval"] == (45.0, "cluster setting")
    # Unset: back to the built-in default.
    change(db, lambda q: admin.set_interval(q, "death", None))
    wait_for(
        lambda: record_of(conn, dispatcher).death_interval == 300,
        10,
        lambda: None,
        lambda: f"the default again: {record_of(conn, dispatcher).intervals}",
    )
    assert dispatcher.intervals["death_interval"][1] == "built-in default"


def test_an_interval_the_process_sets_wins(db, conn, start_dispatcher):
    change(db, lambda q: admin.set_intervals(q, {"ping": 5, "death": 50}))
    config = DispatcherConfig(
        ping_interval=2, names=COMMAND_LINE, uuid=str(uuid.uuid4())
    ).with_sources_of({"ping_interval": 2}, "command line")
    dispatcher = start_dispatcher(config=config)
    assert dispatcher.intervals["ping_interval"] == (2, "command line")
    assert dispatcher.intervals["death_interval"] == (50.0, "cluster setting")


def test_cluster_intervals_that_do_not_fit_the_process_are_not_used(
    db, conn, start_dispatcher, caplog
):
    # The process sets death 20 s; the cluster's ping of 25 s would have
    # its peers declare it dead between two heartbeats.
    change(db, lambda q: admin.set_intervals(q, {"ping": 25}))
    config = DispatcherConfig(
        ping_interval=10, death_interval=20, uuid=str(uuid.uuid4())
    ).replace(interval_sources=(("death_interval", "zope.conf"),))
    with caplog.at_level("WARNING", logger="zasync.dispatcher"):
        dispatcher = start_dispatcher(config=config)
    assert dispatcher.intervals["ping_interval"] == (10, "built-in default")
    assert dispatcher.intervals["death_interval"] == (20, "zope.conf")
    assert "do not fit this process's own" in caplog.text


def test_old_dispatcher_records_show_what_they_know(db, conn):
    def add_old_record(queues):
        record = registry.DispatcherRecord(str(uuid.uuid4()), clock.utcnow())
        queues[""].dispatchers[record.uuid] = record
        return record.uuid

    made = change(db, add_old_record)
    report = change(db, admin.settings_report)
    (entry,) = [d for d in report["queues"][0]["dispatchers"] if d["uuid"] == made]
    assert entry["intervals"] == {
        "ping_interval": {"seconds": 30, "source": None},
        "death_interval": {"seconds": 300, "source": None},
    }
