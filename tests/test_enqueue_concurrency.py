"""Puts and claims in concurrent transactions: real connections, each with
its own transaction manager, on one FileStorage database, committing in an
order the test chooses (as web requests and dispatchers of other threads or
processes would). A put writes only the new job, an inbox shard and the
pending count, which all merge: puts never conflict with puts or claims."""

import collections
import contextlib
import datetime
import threading

import pytest
import transaction
import ZODB
from BTrees.Length import Length
from ZODB.POSException import ConflictError

import jobfuncs
import zasync
from racing import (
    claim,
    commit_all,
    file_everything,
    pending_labels,
    put,
    queue_of,
    setup_queue,
)
from zasync import queue as queue_module
from zasync.queue import Inbox, get_queues
from zasync.status import ACTIVE, COMPLETED, PENDING
from zasync.testing import wait_for_all_jobs

NOW = jobfuncs.NOW


# -- what a put writes -----------------------------------------------------------


def test_a_put_writes_only_the_job_an_inbox_shard_and_the_count(conn, queue):
    for label in range(200):  # enough for the lanes and _jobs to have split
        put(conn, label)
    transaction.commit()
    new = put(conn, "new", quota_names=(), priority=3)
    written = {type(obj) for obj in conn._registered_objects}
    assert written == {Inbox, Length}  # and the new job, added at commit
    assert new._p_jar is None
    transaction.commit()


def test_reads_see_jobs_in_the_inbox_without_writing(db, conn, queue, connections):
    first = put(conn, "first", unique_key="k")
    second = put(conn, "second", priority=5)
    transaction.commit()
    (reader,) = connections(1)
    queue = queue_of(reader)
    assert len(queue) == 2
    assert [job.args[0] for job in queue] == ["second", "first"]
    assert queue[1].args[0] == "first"
    assert queue.get(first.id).args[0] == "first"
    assert get_queues(reader).find_job(second.id).args[0] == "second"
    assert queue.counts()["pending"] == 2
    assert [job.args[0] for job in queue.jobs(status=PENDING)] == ["second", "first"]
    assert queue.put(zasync.Job(jobfuncs.tag, "again"), unique_key="k") is (
        queue.get(first.id)
    )
    assert queue.next_due(NOW) is None
    assert reader._registered_objects == []


# -- put against put ---------------------------------------------------------------


def test_concurrent_puts_never_conflict(db, conn, connections):
    """Eight transactions put a job each, over and over, committing one
    after the other: enough jobs (400) for every bucket of the old lanes
    and job index to split under them."""
    setup_queue(conn, quotas=("q",))
    producers = connections(8)
    conflicts = []
    for round in range(50):
        for number, producer in enumerate(producers):
            producer.transaction_manager.begin()
            quotas = ("q",) if number % 2 else ()
            put(producer, f"{round}-{number}", quota_names=quotas, priority=number % 3)
        conflicts += commit_all(producers)
    assert conflicts == []
    conn.transaction_manager.begin()
    queue = queue_of(conn)
    assert len(queue) == len(list(queue)) == 400
    keys = [job.pending_key for job in queue]
    assert keys == sorted(keys)
    assert {job.id for job in queue} == {
        queue.get(job.id).id for job in queue
    }  # each found by id


def test_full_shards_are_filed_by_a_put_and_stay_in_order(conn, queue, monkeypatch):
    monkeypatch.setattr(queue_module, "INBOX_SPILL", 2)
    jobs = [put(conn, label) for label in range(100)]
    transaction.commit()
    assert max(len(shard) for shard in queue._inbox) <= 2
    assert list(queue) == jobs
    uid = setup_queue(conn, dispatchers=1)[0]
    assert claim(conn, uid, limit=100) == list(range(100))
    assert len(queue) == 0


# -- put against claim -------------------------------------------------------------


@pytest.mark.parametrize("claim_first", [True, False])
@pytest.mark.parametrize("filed", [True, False], ids=["in-lane", "in-inbox"])
def test_a_put_during_a_claim_merges(
    conn, connections, monkeypatch, claim_first, filed
):
    """A dispatcher claims the only job of a lane (or of the inbox) while
    a request puts another one in the same lane: both commit, in either
    order."""
    (uid,) = setup_queue(conn, dispatchers=1)
    for label in range(40):  # a lane of more than one bucket, and its last job
        put(conn, f"old-{label}")
    conn.transaction_manager.commit()
    if filed:
        file_everything(conn, monkeypatch)
    dispatcher, request = connections(2)
    assert len(claim(dispatcher, uid, limit=40)) == 40  # empties the lane
    put(request, "new")
    order = [dispatcher, request] if claim_first else [request, dispatcher]
    assert commit_all(order) == []
    assert pending_labels(conn) == ["new"]
    assert queue_of(conn).counts()["active"] == 40


def test_puts_and_claims_interleaved_never_conflict(conn, connections, monkeypatch):
    """Rounds of a dispatcher claiming (and filing what it could not take)
    between puts of four requests: no conflict, every job claimed once."""
    (uid,) = setup_queue(conn, dispatchers=1)
    monkeypatch.setattr(queue_module, "INBOX_DRAIN", 4)
    dispatcher, *requests = connections(5)
    claimed, conflicts = [], []
    for round in range(60):
        for number, request in enumerate(requests):
            request.transaction_manager.begin()
            put(request, f"{round}-{number}")
        dispatcher.transaction_manager.begin()
        if round % 3:
            claimed.extend(claim(dispatcher, uid, limit=3))
        queue_of(dispatcher).next_due(NOW)
        conflicts += commit_all([requests[0], dispatcher, *requests[1:]])
    assert conflicts == []
    dispatcher.transaction_manager.begin()
    claimed.extend(claim(dispatcher, uid, limit=1000))
    dispatcher.transaction_manager.commit()
    assert len(claimed) == len(set(claimed)) == 240


# -- claim against claim -----------------------------------------------------------


@pytest.mark.parametrize("filed", [True, False], ids=["in-lane", "in-inbox"])
def test_two_dispatchers_taking_the_same_job_conflict(
    conn, connections, monkeypatch, filed
):
    one_uid, two_uid = setup_queue(conn, dispatchers=2)
    put(conn, "only")
    conn.transaction_manager.commit()
    if filed:
        file_everything(conn, monkeypatch)
    one, two = connections(2)
    assert claim(one, one_uid) == ["only"]
    assert claim(two, two_uid) == ["only"]
    one.transaction_manager.commit()
    with pytest.raises(ConflictError):
        two.transaction_manager.commit()
    two.transaction_manager.abort()
    assert claim(two, two_uid) == []  # retried: the job is taken
    two.transaction_manager.commit()
    conn.transaction_manager.begin()
    queue = queue_of(conn)
    (job,) = queue.jobs(status=ACTIVE)
    assert job.assignee[0] == one_uid
    assert len(queue) == 0 and queue.get(job.id) is job


# -- unique keys -------------------------------------------------------------------


def test_concurrent_puts_of_one_unique_key_end_with_one_job(conn, connections):
    setup_queue(conn)
    one, two = connections(2)
    mine = put(one, "one", unique_key="report")
    put(two, "two", unique_key="report")
    one.transaction_manager.commit()
    with pytest.raises(ConflictError):
        two.transaction_manager.commit()
    two.transaction_manager.abort()
    two.transaction_manager.begin()
    again = put(two, "two", unique_key="report")  # the retry finds it
    assert again.args == ("one",) and again.id == mine.id
    two.transaction_manager.commit()
    assert pending_labels(conn) == ["one"]


def test_puts_of_other_unique_keys_merge(conn, connections):
    setup_queue(conn)
    one, two = connections(2)
    put(one, "one", unique_key="a")
    put(two, "two", unique_key="b")
    assert commit_all([one, two]) == []
    assert sorted(pending_labels(conn)) == ["one", "two"]


# -- a recovered job ---------------------------------------------------------------


def test_a_recovered_job_goes_to_the_front_of_its_priority(conn, queue):
    (uid,) = setup_queue(conn, dispatchers=1)
    agent = queue.dispatchers[uid].agents["main"]
    first = put(conn, "first")
    (claimed,) = queue.claim(agent, uid, 1, NOW)  # started
    assert claimed is first
    later = NOW + datetime.timedelta(seconds=5)
    put(conn, "newer")
    queue.put(zasync.Job(jobfuncs.tag, "urgent"), priority=1, now=NOW)
    queue.recover_job(first, later)  # its dispatcher died
    assert first.interruptions == 1
    assert [job.args[0] for job in queue] == ["urgent", "first", "newer"]
    assert [job.args[0] for job in queue.claim(agent, uid, 3, later)] == [
        "urgent",
        "first",
        "newer",
    ]


# -- with a real dispatcher --------------------------------------------------------

_runs = collections.Counter()
_runs_lock = threading.Lock()


def count_run(token):
    with _runs_lock:
        _runs[token] += 1
    return token


def test_every_job_put_by_four_producers_runs_exactly_once(db, conn, dispatcher):
    transaction.begin()  # the dispatcher installed the queues
    _runs.clear()
    conflicts, put_ids = [], []
    lock = threading.Lock()
    barrier = threading.Barrier(4)

    def produce(number):
        with contextlib.closing(jobfuncs.open_connection(db)) as producer:
            tm = producer.transaction_manager
            barrier.wait()
            for index in range(200):
                token = f"{number}-{index}"
                while True:
                    tm.begin()
                    job = queue_of(producer).put(zasync.Job(count_run, token))
                    try:
                        tm.commit()
                        break
                    except ConflictError as exc:
                        tm.abort()
                        with lock:
                            conflicts.append(exc)
                with lock:
                    put_ids.append((job.id, token))

    threads = [threading.Thread(target=produce, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wait_for_all_jobs(conn, seconds=120)
    assert conflicts == []
    queue = queue_of(conn)
    assert len(put_ids) == 800
    for job_id, token in put_ids:
        job = queue.get(job_id)
        assert job.status == COMPLETED and job.result == token
    assert dict(_runs) == {token: 1 for _, token in put_ids}
    assert queue.counts()["succeeded"] == 800


# -- the inbox's merge --------------------------------------------------------------


def entries(*keys):
    return {"entries": tuple((key, (), f"job {key}") for key in keys)}


def test_the_inbox_merges_appends_and_takes():
    resolve = Inbox()._p_resolveConflict
    merged = resolve(entries(1, 2), entries(1, 2, 3), entries(4))  # took 1, 2
    assert merged == entries(3, 4)
    assert resolve(entries(1, 2), entries(2), entries(1, 2, 5)) == entries(2, 5)
    assert resolve({}, entries(1), entries(2)) == entries(1, 2)


def test_the_inbox_refuses_two_takes_or_two_puts_of_one_job():
    resolve = Inbox()._p_resolveConflict
    with pytest.raises(ConflictError, match="took the same job"):
        resolve(entries(1, 2), entries(2), entries(2, 3))
    with pytest.raises(ConflictError, match="put the same job"):
        resolve(entries(), entries(7), entries(7))


def test_puts_and_a_claim_of_two_zeo_clients_merge_on_the_server(zeo):
    """Over ZEO the server resolves the conflicts (zasync importable there):
    two clients, as two web instances and a worker, put and claim at once."""
    web = ZODB.DB(zeo.client_storage())
    worker = ZODB.DB(zeo.client_storage())
    try:
        with contextlib.closing(jobfuncs.open_connection(worker)) as conn:
            (uid,) = setup_queue(conn, dispatchers=1)
            for label in range(40):
                put(conn, f"old-{label}")
            conn.transaction_manager.commit()
        conflicts = []
        with contextlib.ExitStack() as stack:
            opened = [
                stack.enter_context(contextlib.closing(jobfuncs.open_connection(db)))
                for db in (web, web, worker)
            ]
            *requests, dispatcher = opened
            for round in range(20):
                for conn in opened:
                    conn.transaction_manager.begin()
                for number, request in enumerate(requests):
                    put(request, f"{round}-{number}")
                claim(dispatcher, uid, limit=3)
                conflicts += commit_all([requests[0], dispatcher, requests[1]])
        assert conflicts == []
    finally:
        web.close()
        worker.close()
