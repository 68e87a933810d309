"""Cluster-wide settings live with the queues: quota sizes and agent
sizes, shown with where they come from, kept across dispatcher restarts,
with an explicit size of a dispatcher's process winning (real
FileStorage, real dispatchers)."""

import uuid

import pytest
import transaction
import ZODB
import ZODB.FileStorage
from zope.interface.verify import verifyObject

import jobfuncs
import zasync
from zasync import admin, clock, registry
from zasync.registry import Agent, DispatcherRecord
from zasync.status import ACTIVE, PENDING
from zasync.testing import wait_for, wait_for_result


@pytest.fixture(autouse=True)
def installed(queue):
    """The queues exist, as they do once any process of a cluster started."""
    return queue


def token():
    return uuid.uuid4().hex


def change(db, work):
    """Run ``work(queues)`` as an operator would: in its own committed
    transaction."""
    return admin.in_transaction(db, work)


def agent_of(conn, dispatcher, queue=""):
    conn.transaction_manager.begin()
    record = zasync.get_queues(conn)[queue].dispatchers.get(dispatcher.uuid)
    return None if record is None else record.agents["main"]


def wait_for_agent_size(conn, dispatcher, size):
    def sized():
        agent = agent_of(conn, dispatcher)
        return agent is not None and agent.size == size

    wait_for(
        sized,
        10,
        lambda: None,
        lambda: (
            f"agent of {dispatcher} to have size {size}: {agent_of(conn, dispatcher)}"
        ),
    )


def dispatcher_entry(report, uuid, queue="default"):
    (found,) = [q for q in report["queues"] if q["label"] == queue]
    return {d["uuid"]: d for d in found["dispatchers"]}[uuid]


def test_agent_settings_provide_their_interface():
    settings = registry.AgentSettings()
    assert verifyObject(registry.IAgentSettings, settings)
    assert settings.size_for("x") == (3, registry.FROM_BUILT_IN)
    settings.default_size = 5
    assert settings.size_for("x") == (5, registry.FROM_QUEUE_DEFAULT)
    settings.set_dispatcher_size("x", 2)
    assert settings.size_for("x") == (2, registry.FROM_DISPATCHER_SETTING)
    assert settings.dispatcher_sizes() == {"x": 2}
    settings.set_dispatcher_size("x", None)
    assert settings.size_for("x") == (5, registry.FROM_QUEUE_DEFAULT)
    with pytest.raises(ValueError, match="agent size must be a whole number >= 0"):
        settings.default_size = -1


def test_a_dispatcher_without_a_size_takes_the_clusters(db, conn, start_dispatcher):
    change(db, lambda q: admin.set_agent_size(q, 2))
    dispatcher = start_dispatcher(uuid=str(uuid.uuid4()))
    assert dispatcher.agent_sizes[""] == (2, "cluster default")
    assert agent_of(conn, dispatcher).size == 2

    # The size is the one in force: two of three blocked jobs start.
    name = token()
    queue = zasync.get_queues(conn)[""]
    jobs = [queue.put(zasync.Job(jobfuncs.block, name, i)) for i in range(3)]
    transaction.commit()
    try:
        wait_for(
            lambda: sum(job.status == ACTIVE for job in jobs) == 2,
            10,
            transaction.begin,
            lambda: f"two jobs to start: {[job.status for job in jobs]}",
        )
        assert len(agent_of(conn, dispatcher).jobs) == 2
        assert [job.status for job in jobs].count(PENDING) == 1
    finally:
        jobfuncs.events[name].set()
    assert [wait_for_result(job) for job in jobs] == [0, 1, 2]


def test_running_dispatchers_follow_a_change_at_once(db, conn, start_dispatcher):
    dispatcher = start_dispatcher(uuid=str(uuid.uuid4()))
    assert agent_of(conn, dispatcher).size == registry.DEFAULT_AGENT_SIZE

    done = change(db, lambda q: admin.set_agent_size(q, 5))
    assert done["resized"] == [{"uuid": dispatcher.uuid, "size": 5}]
    assert done["was"] is None
    assert agent_of(conn, dispatcher).size == 5
    wait_for(
        lambda: dispatcher.agent_sizes[""] == (5, "cluster default"),
        10,
        lambda: None,
        lambda: f"the dispatcher to say so: {dispatcher.agent_sizes}",
    )


def test_a_change_that_missed_the_agents_is_followed_in_the_next_round(
    db, conn, start_dispatcher
):
    """A setting committed without resizing the agent (as when it races
    with the dispatcher's registration) is taken up by the dispatcher."""
    dispatcher = start_dispatcher(uuid=str(uuid.uuid4()))
    queue = zasync.get_queues(conn)[""]
    registry.agent_settings(queue).default_size = 4
    transaction.commit()
    wait_for_agent_size(conn, dispatcher, 4)


@pytest.mark.parametrize("clean_stop", [True, False], ids=["stopped", "crashed"])
def test_a_restart_keeps_the_clusters_agent_sizes(
    db, conn, start_dispatcher, clean_stop
):
    """Before, a restart reset the agent to the process's size (3)."""
    first = start_dispatcher(uuid=str(uuid.uuid4()))
    second = start_dispatcher(uuid=str(uuid.uuid4()))
    change(db, lambda q: admin.set_agent_size(q, 5))
    change(db, lambda q: admin.set_agent_size(q, 2, dispatcher=second.uuid[:8]))
    assert agent_of(conn, first).size == 5
    assert agent_of(conn, second).size == 2

    for dispatcher in (first, second):
        assert dispatcher.stop(5)  # a clean stop removes its record
    if not clean_stop:
        # A process that died leaves its record, here with the size of
        # another run: the restart takes the size from the settings.
        transaction.begin()
        queue = zasync.get_queues(conn)[""]
        for dispatcher in (first, second):
            record = queue.dispatchers[dispatcher.uuid] = DispatcherRecord(
                dispatcher.uuid, clock.utcnow()
            )
            record.agents["main"] = Agent("main", 3)
        transaction.commit()
    restarted = start_dispatcher(uuid=first.uuid)
    restarted_second = start_dispatcher(uuid=second.uuid)
    assert agent_of(conn, restarted).size == 5
    assert agent_of(conn, restarted_second).size == 2
    assert restarted.agent_sizes[""] == (5, "cluster default")
    assert restarted_second.agent_sizes[""] == (2, "dispatcher setting")


def test_a_restart_with_a_new_process_reads_the_settings_from_another_connection(
    tmp_path,
):
    """The settings are in the database, not in a process: a second
    process (here: a second DB object on the same file, opened after the
    first closed) sees the same."""
    path = str(tmp_path / "shared.fs")
    wanted = str(uuid.uuid4())
    db = ZODB.DB(ZODB.FileStorage.FileStorage(path))
    try:
        dispatcher = zasync.start(db, uuid=wanted, poll_interval=0.05)
        admin.in_transaction(db, lambda q: admin.set_agent_size(q, 6))
        admin.in_transaction(db, lambda q: admin.set_quota_size(q, "reports", 2))
        dispatcher.stop(5)
    finally:
        db.close()
    db = ZODB.DB(ZODB.FileStorage.FileStorage(path))
    try:
        dispatcher = zasync.start(db, uuid=wanted, poll_interval=0.05)
        try:
            conn = db.open()
            report = admin.settings_report(admin.read_queues(conn))
            entry = dispatcher_entry(report, wanted)
            assert (entry["size"], entry["source"]) == (6, "cluster default")
            (queue,) = report["queues"]
            assert {
                "name": "reports",
                "size": 2,
                "active": 0,
                "paused": None,
                "rate": None,
            } in queue["quotas"]
            conn.close()
        finally:
            dispatcher.stop(5)
    finally:
        db.close()


def test_an_explicit_size_wins_and_says_where_it_comes_from(db, conn, start_dispatcher):
    follower = start_dispatcher(uuid=str(uuid.uuid4()))
    pinned = start_dispatcher(
        uuid=str(uuid.uuid4()), agent_size=2, agent_size_source="zope.conf"
    )
    done = change(db, lambda q: admin.set_agent_size(q, 7))
    assert done["overridden"] == [
        {"uuid": pinned.uuid, "size": 2, "source": "zope.conf"}
    ]
    assert agent_of(conn, pinned).size == 2
    assert agent_of(conn, follower).size == 7

    conn.transaction_manager.begin()
    report = admin.settings_report(admin.read_queues(conn))
    entry = dispatcher_entry(report, pinned.uuid)
    assert (entry["size"], entry["source"], entry["follows_settings"]) == (
        2,
        "zope.conf",
        False,
    )
    entry = dispatcher_entry(report, follower.uuid)
    assert (entry["size"], entry["source"], entry["follows_settings"]) == (
        7,
        "cluster default",
        True,
    )
    (queue,) = report["queues"]
    assert queue["default_agent_size"] == {"size": 7, "source": "cluster default"}

    # A setting for the pinned dispatcher would not be in force: refused.
    with pytest.raises(admin.AdminError) as refused:
        change(db, lambda q: admin.set_agent_size(q, 4, dispatcher=pinned.uuid))
    message = str(refused.value)
    assert f"dispatcher {pinned.uuid}" in message
    assert "from its zope.conf" in message
    assert "<product-config zasync> threads" in message

    # Restarted with the same explicit size, it keeps it; the cluster's
    # setting is kept for the others.
    pinned.stop(5)
    again = start_dispatcher(uuid=pinned.uuid, agent_size=3)
    assert agent_of(conn, again).size == 3
    assert again.agent_sizes[""] == (3, "agent_size argument")
    # Without one, it follows the cluster.
    again.stop(5)
    free = start_dispatcher(uuid=pinned.uuid)
    assert agent_of(conn, free).size == 7


def test_unset_goes_back_to_the_default(db, conn, start_dispatcher):
    dispatcher = start_dispatcher(uuid=str(uuid.uuid4()))
    change(db, lambda q: admin.set_agent_size(q, 5))
    change(db, lambda q: admin.set_agent_size(q, 1, dispatcher=dispatcher.uuid))
    assert agent_of(conn, dispatcher).size == 1
    done = change(
        db, lambda q: admin.set_agent_size(q, None, dispatcher=dispatcher.uuid)
    )
    assert done["was"] == 1
    assert agent_of(conn, dispatcher).size == 5
    change(db, lambda q: admin.set_agent_size(q, None))
    assert agent_of(conn, dispatcher).size == registry.DEFAULT_AGENT_SIZE


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda q: admin.set_agent_size(q, -1), "an agent size must be a whole number"),
        (
            lambda q: admin.set_agent_size(q, "x"),
            "an agent size must be a whole number",
        ),
        (lambda q: admin.set_quota_size(q, "default", 1.5), "a quota size must be"),
        (lambda q: admin.set_quota_size(q, "", 1), "a quota name must be"),
        (
            lambda q: admin.set_agent_size(q, 2, queue="nope"),
            "there is no queue 'nope'",
        ),
        (
            lambda q: admin.set_agent_size(q, 2, dispatcher="0000"),
            "no dispatcher '0000' serves queue 'default'; 'zasync settings' lists",
        ),
    ],
)
def test_bad_input_is_refused_and_changes_nothing(db, conn, call, message):
    zasync.get_queues(conn)[""].quotas.create("default", size=2)
    transaction.commit()
    with pytest.raises(admin.AdminError, match=message):
        change(db, call)
    conn.transaction_manager.begin()
    queue = zasync.get_queues(conn)[""]
    assert queue.quotas["default"].size == 2
    assert queue.agent_settings is None


def test_quota_sizes(db, conn):
    done = change(db, lambda q: admin.set_quota_size(q, "reports", 2))
    assert done == {"queue": "default", "quota": "reports", "size": 2, "was": None}
    done = change(db, lambda q: admin.set_quota_size(q, "reports", 0))
    assert done["was"] == 2
    conn.transaction_manager.begin()
    assert zasync.get_queues(conn)[""].quotas["reports"].size == 0


def test_sizes_of_dispatchers_not_registered_now_are_listed(db, conn, start_dispatcher):
    dispatcher = start_dispatcher(uuid=str(uuid.uuid4()))
    change(db, lambda q: admin.set_agent_size(q, 4, dispatcher=dispatcher.uuid))
    dispatcher.stop(5)
    conn.transaction_manager.begin()
    (queue,) = admin.settings_report(admin.read_queues(conn))["queues"]
    assert queue["dispatchers"] == []
    assert queue["unregistered_settings"] == [{"uuid": dispatcher.uuid, "size": 4}]
    # It can be unset while the dispatcher is away, not set.
    change(db, lambda q: admin.set_agent_size(q, None, dispatcher=dispatcher.uuid))
    with pytest.raises(admin.AdminError, match="no dispatcher"):
        change(db, lambda q: admin.set_agent_size(q, 4, dispatcher=dispatcher.uuid))
