"""Held jobs never wait in one dispatcher while a peer could run them, and
an agent of size 0 claims nothing."""

import uuid

import transaction

import jobfuncs
import zasync
from zasync import admin
from zasync.config import MAIN_AGENT
from zasync.status import ACTIVE, ASSIGNED, PENDING
from zasync.testing import wait_for, wait_for_all_jobs


def _refresh(conn):
    return lambda: (transaction.abort(), conn.sync())


def _short_jobs_ran(queue, count=20):
    """Run short jobs first: a dispatcher holds jobs ahead only once it
    has seen that jobs are short."""
    short = [queue.put(zasync.Job(jobfuncs.add, i, 1)) for i in range(count)]
    transaction.commit()
    wait_for_all_jobs(queue._p_jar, 30)
    assert [job.result for job in short] == [i + 1 for i in range(count)]


def test_a_peer_that_comes_up_gets_the_jobs_another_held(queue, start_dispatcher):
    """The first dispatcher, alone, holds jobs ahead for its one thread;
    when a second one registers with a free thread, they go back to the
    queue and the second runs one: two jobs run at once, one in each.
    (Once both are busy, both may hold jobs ahead again.)"""
    conn = queue._p_jar
    first = start_dispatcher(agent_size=1)
    _short_jobs_ran(queue)
    name = str(uuid.uuid4())
    jobs = [queue.put(zasync.Job(jobfuncs.block, f"{name}-{i}")) for i in range(6)]
    transaction.commit()
    wait_for(
        lambda: sum(job.status == ASSIGNED for job in jobs) >= 1,
        10,
        _refresh(conn),
        lambda: f"statuses {[job.status for job in jobs]}",
    )
    second = start_dispatcher(agent_size=1)
    try:

        def one_each():
            running = {job.assignee[0] for job in jobs if job.status == ACTIVE}
            return running == {first.uuid, second.uuid}

        wait_for(
            one_each,
            10,
            _refresh(conn),
            lambda: f"{[(job.status, job.assignee) for job in jobs]}",
        )
    finally:
        for i in range(6):
            jobfuncs.events[f"{name}-{i}"].set()


def test_an_agent_set_to_size_0_claims_nothing_and_holds_nothing(
    queue, start_dispatcher
):
    """A dispatcher whose agent size is set to 0 (zasync agents set 0)
    while jobs are short claims no job to hold ahead either."""
    conn = queue._p_jar
    admin.set_agent_size(zasync.get_queues(conn), 1)
    transaction.commit()
    dispatcher = start_dispatcher()
    _short_jobs_ran(queue)
    admin.set_agent_size(zasync.get_queues(conn), 0)
    transaction.commit()
    wait_for(
        lambda: dispatcher.agent_sizes[""][0] == 0,
        10,
        lambda: None,
        lambda: f"agent sizes {dispatcher.agent_sizes}",
    )
    jobs = [queue.put(zasync.Job(jobfuncs.add, 1, 2)) for _ in range(3)]
    transaction.commit()
    rounds = dispatcher.stats["rounds"]
    wait_for(
        lambda: dispatcher.stats["rounds"] >= rounds + 5,
        10,
        lambda: None,
        lambda: f"{dispatcher.stats['rounds']} rounds",
    )
    _refresh(conn)()
    assert [job.status for job in jobs] == [PENDING] * 3
    agent = queue.dispatchers[dispatcher.uuid].agents[MAIN_AGENT]
    assert len(agent.jobs) == 0
