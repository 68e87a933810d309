"""The dispatcher's loop never dies: a round, an abort or the storage may
fail, the loop logs it without flooding, backs off, reopens its connection
and goes on when the storage is back. Real dispatchers; for lost storage
connections a real PostgreSQL whose server processes are terminated, as a
restart does."""

import logging

import pytest
import transaction

import jobfuncs
import zasync
from zasync import clock
from zasync import queue as queue_module
from zasync.status import COMPLETED
from zasync.testing import wait_for_all_jobs, wait_for_start


class Failing:
    """Make Queue.next_due (called by every round) raise for a while."""

    def __init__(self, monkeypatch, times):
        self.left = times
        self.calls = 0
        original = queue_module.Queue.next_due

        def next_due(queue, *args, **kwargs):
            self.calls += 1
            if self.left > 0:
                self.left -= 1
                raise RuntimeError("the round's bookkeeping broke")
            return original(queue, *args, **kwargs)

        monkeypatch.setattr(queue_module.Queue, "next_due", next_due)


def round_failures(caplog, dispatcher):
    """The log records of ``dispatcher``'s rounds (the patched queue class
    is seen by any other dispatcher still running in this process too)."""
    return [
        r
        for r in caplog.records
        if r.name == "zasync.dispatcher"
        and "round" in r.msg
        and dispatcher.uuid in r.getMessage()
    ]


def test_a_failing_round_is_logged_once_and_the_loop_goes_on(
    conn, queue, start_dispatcher, monkeypatch, caplog
):
    caplog.set_level(logging.INFO, logger="zasync.dispatcher")
    jobs = [queue.put(zasync.Job(jobfuncs.tag, n)) for n in range(20)]
    transaction.commit()
    failing = Failing(monkeypatch, times=5)
    dispatcher = start_dispatcher(agent_size=2)
    wait_for_all_jobs(conn, seconds=60)
    assert failing.left == 0
    assert all(
        job.status == COMPLETED and job.result == n for n, job in enumerate(jobs)
    )
    assert dispatcher._loop_thread.is_alive()
    logged = round_failures(caplog, dispatcher)
    tracebacks = [r for r in logged if r.exc_info]
    assert len(tracebacks) == 1, [r.getMessage() for r in logged]
    assert "the round's bookkeeping broke" in caplog.text
    recovered = [r.getMessage() for r in logged if "work again" in r.getMessage()]
    assert len(recovered) == 1
    assert "x RuntimeError: the round's bookkeeping broke" in recovered[0]


def test_a_failing_round_backs_off_while_finished_jobs_wait(
    conn, queue, start_dispatcher, monkeypatch
):
    """Finished jobs waiting to be recorded used to make the loop retry a
    failing round at once, thousands of times a second."""
    dispatcher = start_dispatcher(agent_size=1)
    job = queue.put(zasync.Job(jobfuncs.block, "backoff", "done"))
    transaction.commit()
    wait_for_start(job)
    failing = Failing(monkeypatch, times=10**6)
    assert clock.wait_until(lambda: failing.calls >= 1, timeout=10)
    jobfuncs.events["backoff"].set()
    assert clock.wait_until(lambda: dispatcher.pool.finished_count, timeout=10)
    calls = failing.calls
    # Backing off (up to 10 s a round), a second sees a few more tries.
    clock.wait_until(lambda: failing.calls > calls + 20, timeout=1.0)
    assert failing.calls <= calls + 20
    failing.left = 0
    wait_for_all_jobs(conn, seconds=30)
    assert job.status == COMPLETED and job.result == "done"


@pytest.mark.postgres
def test_lost_postgresql_connections_do_not_stop_the_dispatcher(
    postgres, tmp_path, caplog
):
    """Terminating every PostgreSQL connection of the database, as a
    restart does, three times while jobs run: the dispatcher's loop and
    threads survive, and every job completes once."""
    import ZODB.config

    caplog.set_level(logging.WARNING)
    conf = postgres.zodb_conf(str(tmp_path / "rs.conf"))
    db = ZODB.config.databaseFromURL(conf)
    tm = transaction.TransactionManager()
    conn = db.open(transaction_manager=tm)
    dispatcher = zasync.start(db, agent_size=3, poll_interval=0.1)
    try:
        tm.begin()  # after the dispatcher installed the queues
        queue = zasync.get_queues(conn)[""]
        jobs = [queue.put(zasync.Job(jobfuncs.tag, n)) for n in range(150)]
        tm.commit()
        for _ in range(3):
            clock.wait_until(lambda: dispatcher.stats["completed"] >= 10, timeout=30)
            done = dispatcher.stats["completed"]
            assert postgres.drop_connections() > 0
            # It goes on: more jobs complete after the connections were lost.
            assert clock.wait_until(
                lambda d=done: (
                    dispatcher.stats["completed"] > d + 10
                    or dispatcher.stats["completed"] >= 150
                ),
                timeout=60,
            )
        tm.abort()
        assert clock.wait_until(
            lambda: (
                tm.begin(),
                all(job.status == COMPLETED for job in jobs),
            )[1],
            timeout=120,
        )
        assert [job.result for job in jobs] == list(range(150))
        assert dispatcher._loop_thread.is_alive()
        assert all(thread.is_alive() for thread in dispatcher.pool._threads)
    finally:
        tm.abort()
        dispatcher.stop(10)
        conn.close()
        db.close()
