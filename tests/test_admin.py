"""zasync.admin: what the operators' commands do, on a real FileStorage."""

import datetime
import uuid

import pytest
import transaction
from ZODB.POSException import ConflictError

import jobfuncs
import zasync
from zasync import admin, clock
from zasync.queue import Queue
from zasync.registry import Agent, DispatcherRecord
from zasync.retry import NeverRetry
from zasync.status import COMPLETED, PENDING
from zasync.testing import inline, wait_for_result, wait_for_start

HOUR = datetime.timedelta(hours=1)
DAY = datetime.timedelta(days=1)


def token():
    return uuid.uuid4().hex


def at(monkeypatch, when):
    """Make zasync's clock say ``when`` (for jobs that ended long ago)."""
    monkeypatch.setattr(clock, "utcnow", lambda: when)


@pytest.fixture
def queues(queue):
    return zasync.get_queues(queue._p_jar)


# -- parsers and formatters -------------------------------------------------


@pytest.mark.parametrize(
    "text, seconds",
    [
        ("90s", 90),
        ("30m", 1800),
        ("2h", 7200),
        ("7d", 7 * 86400),
        ("2w", 14 * 86400),
        ("1h30m", 5400),
        (" 1.5H ", 5400),
        ("0s", 0),
    ],
)
def test_parse_duration(text, seconds):
    assert admin.parse_duration(text).total_seconds() == seconds


@pytest.mark.parametrize("text", ["", "5", "5x", "-1h", "h", "1h 2", "1d-2h"])
def test_parse_duration_refuses_what_is_no_duration(text):
    with pytest.raises(ValueError, match="not a duration: write a number and a unit"):
        admin.parse_duration(text)


@pytest.mark.parametrize(
    "seconds, text",
    [(0, "0s"), (2.5, "2.5s"), (45, "45s"), (192, "3m12s"), (18120, "5h02m")],
)
def test_format_duration(seconds, text):
    assert admin.format_duration(datetime.timedelta(seconds=seconds)) == text
    assert admin.format_duration(-seconds) == ("-" if seconds else "") + text


def test_format_duration_days():
    assert admin.format_duration(DAY * 3 + HOUR * 4) == "3d04h"


def test_parse_job_id():
    assert admin.parse_job_id(" 1234 ") == 1234
    assert admin.parse_job_id(99) == 99
    for bad in ("abc", "-3", "1.5", "", "١٢"):
        with pytest.raises(ValueError, match="is not a job id: ids are whole"):
            admin.parse_job_id(bad)


def test_queue_names_for_people():
    assert admin.queue_label("") == "default"
    assert admin.queue_label("reports") == "reports"
    assert admin.queue_name("default") == ""
    assert admin.queue_name("reports") == "reports"


# -- finding queues and jobs ------------------------------------------------


def test_a_database_without_queues_is_an_error(conn):
    with pytest.raises(admin.NoQueues, match="Is it the right database"):
        admin.read_queues(conn)
    assert "zasync" not in conn.root()  # reading installed nothing


def test_unknown_queue_names_the_queues(queues):
    queues.create("reports")
    with pytest.raises(admin.AdminError, match="no queue 'nope'.*'default', 'reports'"):
        admin.select_queues(queues, "nope")
    assert admin.select_queues(queues, "default") == [queues[""]]
    assert len(admin.select_queues(queues)) == 2


def test_get_job(queue, queues):
    job = queue.put(zasync.Job(jobfuncs.add, 1, 2))
    transaction.commit()
    assert admin.get_job(queues, job.id) is job
    assert admin.get_job(queues, str(job.id)) is job
    with pytest.raises(admin.JobNotFound, match=f"no job {job.id + 1} in any queue"):
        admin.get_job(queues, job.id + 1)
    with pytest.raises(admin.AdminError, match="'x1' is not a job id"):
        admin.get_job(queues, "x1")


# -- status -----------------------------------------------------------------


def test_status_of_a_running_dispatcher(queue, queues, start_dispatcher):
    name = token()
    queue.quotas.create("reports", size=2)
    blocked = queue.put(zasync.Job(jobfuncs.block, name), quota_names=("reports",))
    waiting = queue.put(zasync.Job(jobfuncs.add, 1, 1), begin_after=HOUR)
    transaction.commit()
    dispatcher = start_dispatcher(agent_size=2)
    try:
        wait_for_start(blocked)
        report = admin.status_report(queues)
        (default,) = report["queues"]
        assert default["label"] == "default"
        assert default["counts"]["active"] == 1
        assert default["counts"]["pending"] == 1
        assert default["set_aside"] == 0
        assert default["quotas"] == [
            {"name": "reports", "size": 2, "active": 1, "paused": None, "rate": None}
        ]
        (record,) = default["dispatchers"]
        assert record["uuid"] == dispatcher.uuid
        assert record["alive"] and not record["declared_dead"]
        assert 0 <= record["heartbeat_age"] < 30
        assert record["agents"] == [{"name": "main", "size": 2, "claimed": 1}]
        # Running jobs are listed first.
        assert admin.find_jobs(queues, status="active") == ([blocked], False)
        assert admin.find_jobs(queues)[0] == [blocked, waiting]
        assert admin.job_summary(blocked)["status"] == "active"
        # Seen from later than its death interval, the same record is dead.
        later = admin.status_report(queues, now=report["time"] + DAY)
        assert not later["queues"][0]["dispatchers"][0]["alive"]
    finally:
        jobfuncs.events[name].set()
    assert wait_for_result(blocked) is None
    assert waiting.status == PENDING


def test_status_of_dead_and_recovered_dispatchers(queue, queues):
    now = clock.utcnow()
    late = queue.dispatchers["late"] = DispatcherRecord("late", now - HOUR)
    late.agents["main"] = Agent("main", size=4)
    recovered = queue.dispatchers["gone"] = DispatcherRecord("gone", now - DAY)
    recovered.dead = True
    queue.put(zasync.Job(jobfuncs.add, 1, 1))
    queue.set_aside(queue.put(zasync.Job(jobfuncs.add, 2, 2)), "cannot be stored")
    transaction.commit()
    report = admin.status_report(queues, now=now)
    default = report["queues"][0]
    by_uuid = {d["uuid"]: d for d in default["dispatchers"]}
    assert not by_uuid["late"]["alive"] and not by_uuid["late"]["declared_dead"]
    # Its age is the storage's time since the commit of its heartbeat (just
    # now), not what its clock wrote: peers judge by the storage's time.
    assert 0 <= by_uuid["late"]["heartbeat_age"] < 30
    assert by_uuid["late"]["agents"] == [{"name": "main", "size": 4, "claimed": 0}]
    assert by_uuid["gone"]["declared_dead"] and not by_uuid["gone"]["alive"]
    assert default["set_aside"] == 1
    assert default["counts"]["pending"] == 1


# -- listing jobs -----------------------------------------------------------


@pytest.fixture
def history(queue, queues, monkeypatch):
    """Jobs of all kinds: completed two days and one hour ago, pending now,
    in the default queue and in 'reports'."""
    reports = queues.create("reports")
    now = clock.utcnow()
    jobs = {}
    minute = datetime.timedelta(minutes=1)
    with inline():
        at(monkeypatch, now - 2 * DAY)
        jobs["old_ok"] = queue.put(zasync.Job(jobfuncs.add, 1, 1))
        at(monkeypatch, now - 2 * DAY + minute)
        jobs["old_failed"] = queue.put(zasync.Job(jobfuncs.fail, "old"))
        at(monkeypatch, now - HOUR)
        jobs["recent_ok"] = reports.put(zasync.Job(jobfuncs.add, 2, 2))
        at(monkeypatch, now - HOUR + minute)
        jobs["recent_failed"] = queue.put(zasync.Job(jobfuncs.fail, "recent"))
    at(monkeypatch, now - 3 * DAY)
    jobs["pending_old"] = queue.put(zasync.Job(jobfuncs.append, [], 1))
    monkeypatch.undo()
    jobs["pending_high"] = queue.put(zasync.Job(jobfuncs.add, 3, 3), priority=5)
    jobs["pending_reports"] = reports.put(zasync.Job(jobfuncs.add, 4, 4))
    transaction.commit()
    return now, jobs


def listed(queues, now, **filters):
    found, more = admin.find_jobs(queues, now=now, **filters)
    return [job.id for job in found], more


def test_find_jobs_in_display_order(queues, history):
    now, jobs = history
    ids, more = listed(queues, now)
    expected = [
        "pending_high",  # priority 5 first, then run order across queues
        "pending_old",
        "pending_reports",
        "recent_failed",  # completed, newest first across queues
        "recent_ok",
        "old_failed",
        "old_ok",
    ]
    assert ids == [jobs[name].id for name in expected]
    assert more is False


@pytest.mark.parametrize(
    "filters, expected",
    [
        ({"status": "pending"}, ["pending_high", "pending_old", "pending_reports"]),
        (
            {"status": "completed"},
            ["recent_failed", "recent_ok", "old_failed", "old_ok"],
        ),
        ({"status": "failed"}, ["recent_failed", "old_failed"]),
        ({"status": "succeeded"}, ["recent_ok", "old_ok"]),
        ({"status": "active"}, []),
        ({"queue": "reports"}, ["pending_reports", "recent_ok"]),
        ({"queue": "default", "status": "succeeded"}, ["old_ok"]),
        ({"callable": "fail"}, ["recent_failed", "old_failed"]),
        ({"callable": "*.app*"}, ["pending_old"]),
        ({"callable": "a?d"}, []),  # a pattern must match the whole name
        (
            {"callable": "*.a?d"},
            ["pending_high", "pending_reports", "recent_ok", "old_ok"],
        ),
        # Completed jobs age from their end, others from when queued.
        ({"older_than": DAY}, ["pending_old", "old_failed", "old_ok"]),
        ({"older_than": DAY, "status": "failed"}, ["old_failed"]),
        (
            {"newer_than": DAY},
            ["pending_high", "pending_reports", "recent_failed", "recent_ok"],
        ),
        (
            {"newer_than": 3 * HOUR, "older_than": datetime.timedelta(minutes=30)},
            ["recent_failed", "recent_ok"],
        ),
        # The text of the error, case ignored; only failed jobs have one.
        ({"error": "RECENT"}, ["recent_failed"]),
        ({"error": "valueerror: "}, ["recent_failed", "old_failed"]),
        ({"error": "nothing like it"}, []),
        (
            {"where": lambda job: job.queue.name == "reports"},
            ["pending_reports", "recent_ok"],
        ),
        ({"start": 5}, ["old_failed", "old_ok"]),
        ({"start": 1, "limit": 2}, ["pending_old", "pending_reports"]),
        ({"status": "failed", "start": 1}, ["old_failed"]),
        ({"start": 7}, []),
    ],
)
def test_find_jobs_filters(queues, history, filters, expected):
    now, jobs = history
    ids, _ = listed(queues, now, **filters)
    assert ids == [jobs[name].id for name in expected]


def test_find_jobs_limit_says_when_more_match(queues, history):
    now, jobs = history
    ids, more = listed(queues, now, status="completed", limit=3)
    assert ids == [jobs[n].id for n in ("recent_failed", "recent_ok", "old_failed")]
    assert more is True
    ids, more = listed(queues, now, status="completed", limit=4)
    assert len(ids) == 4 and more is False


def test_find_jobs_refuses_bad_filters(queues, history):
    with pytest.raises(admin.AdminError, match="unknown status 'done'"):
        admin.find_jobs(queues, status="done")
    with pytest.raises(admin.AdminError, match="at least 1"):
        admin.find_jobs(queues, limit=0)
    with pytest.raises(admin.AdminError, match="start must be 0 or more"):
        admin.find_jobs(queues, start=-1)
    with pytest.raises(admin.AdminError, match="no queue 'nope'"):
        admin.find_jobs(queues, queue="nope")


def test_set_aside_jobs_are_listed_apart(queue, queues):
    aside = queue.put(zasync.Job(jobfuncs.add, 1, 1))
    queue.set_aside(aside, "PicklingError: gone")
    other = queue.put(zasync.Job(jobfuncs.add, 2, 2))
    transaction.commit()
    assert admin.find_jobs(queues, status="set-aside")[0] == [aside]
    assert admin.find_jobs(queues, status="pending")[0] == [other]
    assert admin.job_summary(aside)["status"] == "set-aside"
    assert admin.describe_job(aside)["set_aside_reason"] == "PicklingError: gone"


def test_job_summary(queue, queues, history):
    now, jobs = history
    summary = admin.job_summary(jobs["recent_ok"])
    assert summary == {
        "id": jobs["recent_ok"].id,
        "queue": "reports",
        "status": "succeeded",
        "callable": "jobfuncs.add",
        "queued": now - HOUR,
        "ended": now - HOUR,
        "attempts": 1,
    }
    pending = admin.job_summary(jobs["pending_high"])
    assert (pending["queue"], pending["status"], pending["ended"]) == (
        "default",
        "pending",
        None,
    )


# -- one job in full --------------------------------------------------------


def test_describe_a_failed_job(queue, queues, dispatcher):
    job = queue.put(
        zasync.Job(jobfuncs.fail, message="x" * 500),
        priority=3,
        unique_key="the-one",
        begin_by=HOUR,
        retry_policy=NeverRetry(),
    )
    callback = job.add_callbacks(failure=jobfuncs.on_failure)
    transaction.commit()
    assert wait_for_result(callback) == "handled ValueError"
    wait_for_result(job)
    info = admin.describe_job(job)
    assert info["id"] == job.id and info["queue"] == "default"
    assert info["status"] == "failed"
    assert info["callable"] == "jobfuncs.fail"
    assert info["args"] == []
    message = info["kwargs"]["message"]
    assert message.startswith("'xxxx") and message.endswith("(502 characters)")
    assert len(message) < 250
    assert (info["priority"], info["unique_key"]) == (3, "the-one")
    assert info["begin_by"] == HOUR
    assert info["queued"] <= info["started"] <= info["ended"]
    assert info["attempts"] == 1 and info["interruptions"] == 0
    assert info["assignee"]["dispatcher"] == dispatcher.uuid
    assert info["assignee"]["agent"] == "main"
    assert info["assignee"]["host"] is not None
    assert info["retry_policy"] == "NeverRetry()"
    assert info["callbacks"] == [
        {
            "id": callback.id,
            "status": "succeeded",
            "callable": callback.callable_name,
            "error": None,
        }
    ]
    assert info["error"] == f"builtins.ValueError: {'x' * 500}"
    assert "Traceback (most recent call last)" in info["traceback"]
    assert "raise ValueError(message)" in info["traceback"]
    assert info["result"] is None
    # In full, nothing is shortened.
    full = admin.describe_job(job, full=True)
    assert full["kwargs"] == {"message": repr("x" * 500)}
    child = admin.describe_job(callback)
    assert child["parent"] == {
        "id": job.id,
        "status": "failed",
        "callable": "jobfuncs.fail",
        "error": f"builtins.ValueError: {'x' * 500}",
    }
    assert child["role"] == "callback"
    assert child["result"] == repr("handled ValueError")


def test_describe_shows_live_annotations_and_parts(queue, queues, dispatcher):
    name = token()
    job = queue.put(zasync.Job(jobfuncs.report_progress, name))
    composite = queue.put(
        zasync.serial(zasync.Job(jobfuncs.add, 1, 2), zasync.Job(jobfuncs.add, 3, 4))
    )
    transaction.commit()
    try:
        zasync.testing.wait_for_annotation(job, "seen")
        info = admin.describe_job(job)
        assert info["status"] == "active"
        assert info["live_annotations"] == {
            "zasync.progress": "(0.5, 'half way')",
            "seen": "1",
        }
    finally:
        jobfuncs.events[name].set()
    wait_for_result(composite)
    parts = admin.describe_job(composite)["children"]
    assert [part["status"] for part in parts] == ["succeeded", "succeeded"]
    assert [part["id"] for part in parts] == [c.id for c in composite.children]


# -- retry ------------------------------------------------------------------


def test_retry_a_failed_job(queue, queues, start_dispatcher):
    key = token()
    queue.quotas.create("slow", size=1)
    failed = queue.put(
        zasync.Job(jobfuncs.fail_first, key, 1, "second time lucky"),
        quota_names=("slow",),
        priority=7,
        retry_policy=NeverRetry(),
    )
    failed.environment = jobfuncs.Environment("site-a")
    callback = failed.add_callback(jobfuncs.callback_value, extra="!")
    transaction.commit()
    start_dispatcher()
    assert wait_for_result(failed).check(ConnectionError)
    wait_for_result(callback)
    attempts, ended = failed.attempts, failed.ended

    outcome = admin.retry_job(queues, failed.id)
    transaction.commit()
    new = outcome.job
    assert outcome.retried is failed and not outcome.made_due
    assert new.id != failed.id and new.queue is queue
    assert new.callable_name == failed.callable_name
    assert new.args == failed.args and dict(new.kwargs) == dict(failed.kwargs)
    assert new.quota_names == ("slow",) and new.priority == 7
    assert new.retry_policy == NeverRetry()
    assert new.environment.name == "site-a"
    assert new.annotations[admin.RETRY_OF] == failed.id
    assert wait_for_result(new) == "second time lucky"
    (new_callback,) = new.callbacks
    assert wait_for_result(new_callback) == "callback got 'second time lucky'!"
    # The failed job is kept as it was.
    assert failed.failed and failed.status == COMPLETED
    assert (failed.attempts, failed.ended) == (attempts, ended)
    assert admin.describe_job(new)["retry_of"] == failed.id


def test_retry_makes_a_waiting_job_due_now(queue, queues, dispatcher):
    job = queue.put(zasync.Job(jobfuncs.add, 2, 3), begin_after=DAY)
    transaction.commit()
    due = job.begin_after
    outcome = admin.retry_job(queues, job.id)
    assert outcome.made_due and outcome.job is job and outcome.was_due == due
    assert job.begin_after < due - HOUR
    assert list(queue) == [job]
    transaction.commit()
    assert wait_for_result(job) == 5


def test_retry_refuses_what_cannot_be_retried(queue, queues, dispatcher):
    name = token()
    ok = queue.put(zasync.Job(jobfuncs.add, 1, 1))
    bad = queue.put(zasync.Job(jobfuncs.fail, "no"))
    running = queue.put(zasync.Job(jobfuncs.block, name))
    transaction.commit()
    wait_for_result(ok)
    wait_for_result(bad)
    # Added to a completed job, a callback is queued (and can be found).
    broken_cb = bad.add_callback(jobfuncs.failing_callback)
    transaction.commit()
    assert wait_for_result(broken_cb).check(KeyError)
    wait_for_start(running)
    due = queue.put(zasync.Job(jobfuncs.add, 1, 1), begin_after=DAY)
    transaction.commit()
    now = due.begin_after + HOUR  # seen from then, it is due already
    try:
        with pytest.raises(admin.AdminError, match="succeeded; only failed jobs"):
            admin.retry_job(queues, ok.id)
        with pytest.raises(admin.AdminError, match="is active .claimed by dispatcher"):
            admin.retry_job(queues, running.id)
        with pytest.raises(admin.AdminError, match="callback of job"):
            admin.retry_job(queues, broken_cb.id)
        with pytest.raises(admin.AdminError, match="pending and due already"):
            admin.retry_job(queues, due.id, now=now)
        with pytest.raises(admin.JobNotFound):
            admin.retry_job(queues, 12345)
    finally:
        jobfuncs.events[name].set()
    transaction.abort()
    assert len(queue) == 1  # nothing was queued


def test_retry_keeps_unique_keys_unique(queue, queues):
    with inline():
        failed = queue.put(zasync.Job(jobfuncs.fail, "x"), unique_key="nightly")
    waiting = queue.put(zasync.Job(jobfuncs.add, 1, 1), unique_key="nightly")
    transaction.commit()
    assert failed.failed and waiting.status == PENDING
    with pytest.raises(admin.AdminError, match=f"job {waiting.id} with the same"):
        admin.retry_job(queues, failed.id)


def test_retry_of_a_job_whose_quota_was_removed(queue, queues):
    queue.quotas.create("gone")
    with inline():
        failed = queue.put(zasync.Job(jobfuncs.fail, "x"), quota_names=("gone",))
    queue.quotas.remove("gone")
    transaction.commit()
    with pytest.raises(admin.AdminError, match="cannot queue a retry.*no quota"):
        admin.retry_job(queues, failed.id)


# -- cancel -----------------------------------------------------------------


def test_cancel_a_pending_job(queue, queues, dispatcher):
    job = queue.put(
        zasync.Job(jobfuncs.add, 1, 1), begin_after=DAY, unique_key="weekly"
    )
    callback = job.add_callbacks(failure=jobfuncs.on_failure)
    transaction.commit()
    before = queue.counts()
    admin.cancel_job(queues, job.id, by="a test", reason="not wanted")
    transaction.commit()
    assert wait_for_result(callback) == "handled JobCancelled"
    assert wait_for_result(job).check(admin.JobCancelled)
    assert job.result.getErrorMessage() == (
        f"Job {job.id} (jobfuncs.add) was cancelled by a test before it ran: not wanted"
    )
    assert job.attempts == 0 and job.started is None and job.ended is not None
    zasync.testing.wait_for_all_jobs(queue._p_jar)
    after = queue.counts()
    assert after["pending"] == before["pending"] - 1
    assert after["failed"] == before["failed"] + 1
    assert admin.find_jobs(queues, status="failed")[0] == [job]
    # Its unique key is free again.
    again = queue.put(zasync.Job(jobfuncs.add, 2, 2), unique_key="weekly")
    assert again is not job
    transaction.abort()


def test_cancel_without_callbacks_completes_at_once(queue, queues):
    queue.quotas.create("q", size=1)
    job = queue.put(zasync.Job(jobfuncs.add, 1, 1), quota_names=("q",))
    transaction.commit()
    admin.cancel_job(queues, job.id, now=clock.utcnow())
    transaction.commit()
    assert job.status == COMPLETED and job.failed
    assert "cancelled by zasync cancel before it ran" in str(job.result)
    assert len(queue) == 0 and queue.quotas["q"].active == ()


def test_cancel_a_pending_part_of_a_parallel_job(queue, queues, dispatcher):
    name = token()
    queue.quotas.create("one", size=1)
    composite = queue.put(
        zasync.parallel(
            zasync.Job(jobfuncs.block, name), zasync.Job(jobfuncs.add, 2, 3)
        ),
        quota_names=("one",),
    )
    transaction.commit()
    first, second = composite.children
    try:
        wait_for_start(first)
        assert second.status == PENDING  # the quota holds it back
        with pytest.raises(admin.AdminError, match=f"parts instead: {second.id}$"):
            admin.cancel_job(queues, composite.id)
        admin.cancel_job(queues, second.id)
        transaction.commit()
    finally:
        jobfuncs.events[name].set()
    results = wait_for_result(composite)
    assert results[0].result is None
    assert results[1].result.check(admin.JobCancelled)
    assert results[1].attempts == 0


def test_cancel_asks_running_jobs_and_refuses_completed_ones(queue, queues, dispatcher):
    name = token()
    running = queue.put(zasync.Job(jobfuncs.block, name))
    done = queue.put(zasync.Job(jobfuncs.add, 1, 1))
    transaction.commit()
    wait_for_result(done)
    wait_for_start(running)
    try:
        # A running job is asked to stop (see tests/test_cancel_running.py);
        # this one never checks, so it runs to its end.
        assert admin.cancel_job(queues, running.id, by="tester") is running
        assert admin.cancel_state(running)["by"] == "tester"
        transaction.commit()
        with pytest.raises(admin.AdminError, match="completed already .succeeded"):
            admin.cancel_job(queues, done.id)
    finally:
        jobfuncs.events[name].set()
    assert wait_for_result(running) is None
    assert done.result == 2


def test_queue_cancel_checks_the_job(queue):
    with inline():
        done = queue.put(zasync.Job(jobfuncs.add, 1, 1))
    with pytest.raises(ValueError, match="only a pending job in the run order"):
        queue.cancel(done, None, clock.utcnow())
    with pytest.raises(ValueError, match="only a pending job in the run order"):
        queue.reschedule(zasync.Job(jobfuncs.add, 1, 1), clock.utcnow())


# -- writing in a transaction -----------------------------------------------


def test_in_transaction_retries_conflicts(db, queue):
    job = queue.put(zasync.Job(jobfuncs.add, 1, 1), begin_after=DAY)
    transaction.commit()
    tries = []

    def work(queues):
        tries.append(1)
        if len(tries) < 3:
            raise ConflictError("simulated")
        return admin.cancel_job(queues, job.id).id

    assert admin.in_transaction(db, work) == job.id
    assert len(tries) == 3
    transaction.begin()
    assert job.status == COMPLETED and job.failed


def test_in_transaction_aborts_on_errors(db, queue):
    job = queue.put(zasync.Job(jobfuncs.add, 1, 1), begin_after=DAY)
    transaction.commit()

    def work(queues):
        admin.cancel_job(queues, job.id)
        raise admin.AdminError("changed my mind")

    with pytest.raises(admin.AdminError, match="changed my mind"):
        admin.in_transaction(db, work)
    transaction.begin()
    assert job.status == PENDING and list(queue) == [job]


# -- prune ------------------------------------------------------------------


@pytest.fixture
def aged(queue, queues, monkeypatch):
    """Completed jobs that ended 10 days, 3 days and 1 hour ago."""
    now = clock.utcnow()
    reports = queues.create("reports")
    made = {}
    with inline():
        for label, age in (("10d", 10 * DAY), ("3d", 3 * DAY), ("1h", HOUR)):
            at(monkeypatch, now - age)
            made[label] = {
                "ok": [queue.put(zasync.Job(jobfuncs.add, i, i)) for i in range(5)],
                "failed": [queue.put(zasync.Job(jobfuncs.fail, "x")) for i in range(2)],
                "reports": [reports.put(zasync.Job(jobfuncs.add, 0, 0))],
            }
    monkeypatch.undo()
    pending = queue.put(zasync.Job(jobfuncs.add, 1, 1))
    transaction.commit()
    return now, made, pending


def test_prune_keeps_failed_jobs_longer(db, queue, queues, aged):
    now, made, pending = aged
    counts = admin.prune(db, 2 * DAY, now=now, batch_size=2)
    # Succeeded: those of 10 and 3 days ago; failed: only 10 days ago (8d).
    assert counts == {
        "": {"succeeded": 10, "failed": 2, "kept": 0},
        "reports": {"succeeded": 2, "failed": 0, "kept": 0},
    }
    transaction.begin()
    for label, gone in (("10d", True), ("3d", True), ("1h", False)):
        for job in made[label]["ok"] + made[label]["reports"]:
            assert (queues.find_job(job.id) is None) is gone
    assert all(queues.find_job(j.id) is None for j in made["10d"]["failed"])
    assert all(queues.find_job(j.id) is j for j in made["3d"]["failed"])
    assert queue.counts()["succeeded"] == 5 and queue.counts()["failed"] == 4
    assert list(queue) == [pending]


def test_prune_dry_run_and_one_queue(db, queue, queues, aged):
    now, made, _ = aged
    before = queue.counts()
    dry = admin.prune(db, DAY, failed_older_than=DAY, dry_run=True, now=now)
    assert dry["reports"] == {"succeeded": 2, "failed": 0, "kept": 0}
    assert dry[""] == {"succeeded": 10, "failed": 4, "kept": 0}
    transaction.begin()
    assert queue.counts() == before
    only = admin.prune(db, DAY, queue="reports", now=now, batch_size=1)
    assert only == {"reports": {"succeeded": 2, "failed": 0, "kept": 0}}
    transaction.begin()
    assert queue.counts() == before
    assert queues["reports"].counts()["succeeded"] == 1


def test_prune_keeps_parts_of_unfinished_jobs(db, queue, queues, dispatcher):
    name = token()
    composite = queue.put(
        zasync.serial(zasync.Job(jobfuncs.add, 1, 1), zasync.Job(jobfuncs.block, name))
    )
    transaction.commit()
    first, second = composite.children
    wait_for_start(second)
    try:
        counts = admin.prune(db, HOUR, now=clock.utcnow() + DAY)
        assert counts[""] == {"succeeded": 0, "failed": 0, "kept": 1}
    finally:
        jobfuncs.events[name].set()
    results = wait_for_result(composite)
    assert [part.result for part in results] == [2, None]


def test_prune_retries_conflicts(db, queue, queues, aged, monkeypatch):
    now, made, _ = aged
    original = Queue.remove
    conflicts = []

    def remove_with_a_conflict(self, job):
        if len(conflicts) < 2:
            conflicts.append(job.id)
            raise ConflictError("simulated")
        return original(self, job)

    monkeypatch.setattr(Queue, "remove", remove_with_a_conflict)
    counts = admin.prune(db, 2 * DAY, queue="default", now=now, batch_size=3)
    assert len(conflicts) == 2
    assert counts[""] == {"succeeded": 10, "failed": 2, "kept": 0}
    transaction.begin()
    assert queue.counts()["completed"] == 9


def test_prune_refuses_negative_durations(db, queue):
    with pytest.raises(admin.AdminError, match="must not be negative"):
        admin.prune(db, -HOUR)
    with pytest.raises(admin.AdminError, match="must not be negative"):
        admin.prune(db, HOUR, failed_older_than=-HOUR)
