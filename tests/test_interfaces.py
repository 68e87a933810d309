"""Every implementation provides its interface (zope.interface verifyObject)."""

import uuid

import pytest
from zope.interface.verify import verifyClass, verifyObject

import jobfuncs
import zasync
from zasync import interfaces, worker
from zasync.dispatcher import Dispatcher
from zasync.queue import Queue, Queues, get_queues
from zasync.quota import Quota, Quotas
from zasync.registry import Agent, DispatcherRecord
from zasync.retry import (
    NeverRetry,
    RetryCommonForever,
    RetryCommonFourTimes,
    RetryWithDelay,
)


def a_failure():
    try:
        jobfuncs.fail("for the interface")
    except ValueError:
        return zasync.Failure()


def test_job():
    """Job provides IJob (new and after a call)."""
    job = zasync.Job(jobfuncs.add, 1, 2)
    assert verifyObject(interfaces.IJob, job)
    job()
    assert verifyObject(interfaces.IJob, job)


@pytest.mark.parametrize("make", [zasync.serial, zasync.parallel])
def test_composite_jobs(make):
    """serial() and parallel() jobs are IJobs too."""
    assert verifyObject(interfaces.IJob, make(jobfuncs.which_job, jobfuncs.which_job))


def test_queued_job(tmp_path, db):
    """A job in a queue provides IJob."""
    conn = jobfuncs.open_connection(db)
    try:
        job = get_queues(conn)[""].put(zasync.Job(jobfuncs.add, 1, 2))
        assert verifyObject(interfaces.IJob, job)
    finally:
        conn.transaction_manager.abort()
        conn.close()


def test_failure():
    """Failure provides IFailure."""
    assert verifyObject(interfaces.IFailure, a_failure())


def test_queue_and_queues(db):
    """Queue provides IQueue, Queues IQueues."""
    conn = jobfuncs.open_connection(db)
    try:
        queues = get_queues(conn)
        assert verifyObject(interfaces.IQueues, queues)
        assert verifyObject(interfaces.IQueue, queues[""])
        assert verifyObject(interfaces.IQueue, Queue("standalone"))
        assert verifyObject(interfaces.IQueues, Queues())
    finally:
        conn.transaction_manager.abort()
        conn.close()


def test_quota_and_quotas():
    """Quota provides IQuota, Quotas IQuotas."""
    quotas = Quotas()
    assert verifyObject(interfaces.IQuotas, quotas)
    quota = quotas.create("q", size=2)
    assert verifyObject(interfaces.IQuota, quota)
    assert verifyObject(interfaces.IQuota, Quota("other"))


def test_agent():
    """Agent provides IAgent, with and without a filter."""
    assert verifyObject(interfaces.IAgent, Agent())
    assert verifyObject(interfaces.IAgent, Agent("filtered", 1, jobfuncs.accepts_a))


def test_dispatcher_record():
    """DispatcherRecord provides IDispatcherRecord."""
    record = DispatcherRecord(uuid.uuid4(), jobfuncs.NOW)
    assert verifyObject(interfaces.IDispatcherRecord, record)
    record.agents["main"] = Agent()
    assert verifyObject(interfaces.IDispatcherRecord, record)


@pytest.mark.parametrize(
    "policy",
    [NeverRetry(), RetryCommonFourTimes(), RetryCommonForever(), RetryWithDelay()],
    ids=lambda p: type(p).__name__,
)
def test_retry_policies(policy):
    """Every retry policy provides IRetryPolicy."""
    assert verifyObject(interfaces.IRetryPolicy, policy)
    assert verifyClass(interfaces.IRetryPolicy, type(policy))


def test_dispatcher(db):
    """Dispatcher provides IDispatcher (constructed, not started)."""
    dispatcher = Dispatcher(db, uuid=str(uuid.uuid4()))
    assert verifyObject(interfaces.IDispatcher, dispatcher)
    assert dispatcher.running is False
    assert dispatcher.db is db
    assert dispatcher.queue_names == ("",)


def test_classes_declare_their_interfaces():
    """The classes themselves declare what they implement."""
    pairs = [
        (zasync.Job, interfaces.IJob),
        (zasync.Failure, interfaces.IFailure),
        (Queue, interfaces.IQueue),
        (Queues, interfaces.IQueues),
        (Quota, interfaces.IQuota),
        (Quotas, interfaces.IQuotas),
        (Agent, interfaces.IAgent),
        (DispatcherRecord, interfaces.IDispatcherRecord),
        (Dispatcher, interfaces.IDispatcher),
    ]
    for cls, iface in pairs:
        assert iface.implementedBy(cls), (cls, iface)
        assert verifyClass(iface, cls)


def test_dispatcher_documents_its_counters_and_sizes(db):
    """IDispatcher documents stats (each counter zasync worker logs) and
    agent_sizes; a started dispatcher has both."""
    stats = interfaces.IDispatcher["stats"].getDoc()
    for name in worker.STATS:
        assert f"'{name}'" in stats, name
    assert "agent_sizes" in interfaces.IDispatcher
    dispatcher = zasync.start(db, uuid=str(uuid.uuid4()), poll_interval=0.05)
    try:
        assert verifyObject(interfaces.IDispatcher, dispatcher)
        assert list(dispatcher.agent_sizes) == [""]
        assert dispatcher.stats["rounds"] >= 0
    finally:
        dispatcher.stop(5)
