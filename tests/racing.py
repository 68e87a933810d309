"""Helpers for tests that race transactions on one queue: each connection
has its own transaction manager and commits when the test says."""

import uuid

from ZODB.POSException import ConflictError

import jobfuncs
import zasync
from zasync import queue as queue_module
from zasync.queue import get_queues
from zasync.registry import Agent, DispatcherRecord

NOW = jobfuncs.NOW


def setup_queue(conn, quotas=(), dispatchers=0):
    """Install the queues (with ``quotas``, size 10) and ``dispatchers``
    dispatcher records with a 'main' agent; returns their uuids."""
    queue = get_queues(conn)[""]
    for name in quotas:
        queue.quotas.create(name, size=10)
    uuids = []
    for _ in range(dispatchers):
        uid = str(uuid.uuid4())
        record = queue.dispatchers[uid] = DispatcherRecord(uid, NOW)
        record.agents["main"] = Agent("main", size=10)
        uuids.append(uid)
    conn.transaction_manager.commit()
    return uuids


def queue_of(conn):
    return get_queues(conn)[""]


def put(conn, label, **options):
    return queue_of(conn).put(zasync.Job(jobfuncs.tag, label), now=NOW, **options)


def claim(conn, uid, limit=10, prefer=None, now=NOW):
    """Labels of the jobs dispatcher ``uid`` claims (preferring the run
    parts ``prefer``)."""
    queue = queue_of(conn)
    agent = queue.dispatchers[uid].agents["main"]
    return [job.args[0] for job in queue.claim(agent, uid, limit, now, prefer=prefer)]


def commit_all(conns):
    """Commit each connection's transaction in order; the conflicts seen."""
    conflicts = []
    for conn in conns:
        try:
            conn.transaction_manager.commit()
        except ConflictError as exc:
            conflicts.append(exc)
            conn.transaction_manager.abort()
    return conflicts


def file_everything(conn, monkeypatch):
    """File every inbox job in the lanes, as a dispatcher's round does for
    a shard that grew (next_due), and commit."""
    with monkeypatch.context() as patch:
        patch.setattr(queue_module, "INBOX_DRAIN", 1, raising=False)
        queue_of(conn).next_due(NOW)
    conn.transaction_manager.commit()


def pending_labels(conn):
    conn.transaction_manager.begin()
    return [job.args[0] for job in queue_of(conn)]
