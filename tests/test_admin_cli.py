"""The operators' commands, run through zasync.cli.main on a FileStorage
named by a --zodb-conf file."""

import contextlib
import datetime
import itertools
import json
import os
import re
import socket

import pytest
import transaction
import ZODB
import ZODB.FileStorage

import jobfuncs
import zasync
import zasync.job
from zasync import admin, clock, retention
from zasync.cli import main
from zasync.registry import Agent, DispatcherRecord
from zasync.status import COMPLETED, PENDING
from zasync.testing import inline

HOUR = datetime.timedelta(hours=1)
DAY = datetime.timedelta(days=1)


@pytest.fixture
def config(tmp_path):
    path = tmp_path / "zodb.conf"
    path.write_text(
        "<zodb>\n"
        "  <filestorage>\n"
        f"    path {tmp_path / 'cli.fs'}\n"
        "  </filestorage>\n"
        "</zodb>\n"
    )
    return path


@pytest.fixture
def database(tmp_path):
    """``with database() as queues:`` opens the FileStorage, yields its
    queues (installed if missing), commits and closes it again, so that
    the command can open it (a FileStorage is open once at a time)."""

    @contextlib.contextmanager
    def opened(install=True):
        db = ZODB.DB(ZODB.FileStorage.FileStorage(str(tmp_path / "cli.fs")))
        conn = db.open()
        try:
            if install:
                yield zasync.get_queues(conn)
            else:
                yield conn.root()
            transaction.commit()
        finally:
            transaction.abort()
            conn.close()
            db.close()

    return opened


@pytest.fixture
def zasync_cli(config, capsys):
    """Run ``zasync ARGS --zodb-conf CONFIG``; returns (exit code, stdout,
    stderr). argparse errors exit with SystemExit(2): returned the same."""

    def run(*args, conf=config):
        try:
            code = main([*args, "--zodb-conf", str(conf)])
        except SystemExit as exc:
            code = exc.code
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run


def at(monkeypatch, when):
    monkeypatch.setattr(clock, "utcnow", lambda: when)


# -- status -----------------------------------------------------------------


def test_status(database, zasync_cli):
    now = clock.utcnow()
    with database() as queues:
        queue = queues[""]
        queue.quotas.create("reports", size=2)
        alive = queue.dispatchers["alive-one"] = DispatcherRecord("alive-one", now)
        alive.agents["main"] = Agent("main", size=3)
        queue.dispatchers["dead-one"] = DispatcherRecord("dead-one", now - DAY)
        queue.put(zasync.Job(jobfuncs.add, 1, 2))
        with inline():
            queue.put(zasync.Job(jobfuncs.fail, "boom"))
        queues.create("reports")

    code, out, err = zasync_cli("status")
    assert (code, err) == (0, "")
    assert "queue default\n" in out and "queue reports\n" in out
    assert (
        "jobs: 1 pending, 0 assigned, 0 active, 0 in callbacks, 1 completed "
        "(0 succeeded, 1 failed), 0 set aside"
    ) in out
    host = f"{socket.gethostname()}:{os.getpid()}"
    assert re.search(rf"alive-one\s+alive\s+{re.escape(host)}\s", out)
    assert re.search(r"alive-one .* main 3 threads, 0 claimed", out)
    assert re.search(r"dead-one\s+dead\s", out)
    assert re.search(r"reports\s+2\s+0", out)
    # The reports queue has no dispatcher: said so.
    assert "dispatchers: none; no worker serves this queue" in out

    code, out, err = zasync_cli("status", "--json")
    assert code == 0
    report = json.loads(out)
    default, reports = report["queues"]
    assert (default["label"], reports["label"]) == ("default", "reports")
    assert default["counts"]["failed"] == 1 and default["counts"]["pending"] == 1
    by_uuid = {d["uuid"]: d for d in default["dispatchers"]}
    assert by_uuid["alive-one"]["alive"] and not by_uuid["dead-one"]["alive"]
    # By the storage's time: its heartbeat was committed just now, whatever
    # its clock wrote.
    assert 0 <= by_uuid["dead-one"]["heartbeat_age"] < 30
    assert datetime.datetime.fromisoformat(by_uuid["alive-one"]["last_heartbeat"])
    assert default["quotas"] == [
        {"name": "reports", "size": 2, "active": 0, "paused": None, "rate": None}
    ]
    assert reports["dispatchers"] == []


def test_status_of_a_database_without_queues(database, zasync_cli):
    with database(install=False) as root:
        root["something"] = 1
    code, out, err = zasync_cli("status")
    assert code == 2 and out == ""
    assert err.startswith("zasync status: error: this database has no zasync queues")
    assert "Traceback" not in err
    with database(install=False) as root:
        assert "zasync" not in root  # reading installed nothing


# -- jobs -------------------------------------------------------------------


@pytest.fixture
def some_jobs(database, monkeypatch):
    """Ids of: a job that failed 2 days ago, one that succeeded an hour ago
    in 'reports', and a pending one."""
    now = clock.utcnow()
    with database() as queues:
        reports = queues.create("reports")
        with inline():
            at(monkeypatch, now - 2 * DAY)
            old = queues[""].put(zasync.Job(jobfuncs.fail, "old trouble"))
            at(monkeypatch, now - HOUR)
            recent = reports.put(zasync.Job(jobfuncs.add, 1, 1))
        monkeypatch.undo()
        pending = queues[""].put(zasync.Job(jobfuncs.append, [], "x"))
        ids = {"old": old.id, "recent": recent.id, "pending": pending.id}
    return ids


def listed_ids(out):
    return [int(line.split()[0]) for line in out.splitlines()[1:] if line[:1].isdigit()]


def test_jobs(some_jobs, zasync_cli):
    code, out, err = zasync_cli("jobs")
    assert (code, err) == (0, "")
    assert out.splitlines()[0].split() == [
        "ID",
        "QUEUE",
        "STATUS",
        "CALLABLE",
        "QUEUED",
        "(UTC)",
        "ENDED",
        "(UTC)",
        "ATTEMPTS",
    ]
    assert listed_ids(out) == [some_jobs[k] for k in ("pending", "recent", "old")]
    rows = {int(line.split()[0]): line.split() for line in out.splitlines()[1:]}
    assert rows[some_jobs["old"]][1:4] == ["default", "failed", "jobfuncs.fail"]
    assert rows[some_jobs["recent"]][1:4] == ["reports", "succeeded", "jobfuncs.add"]
    assert rows[some_jobs["pending"]][1:3] == ["default", "pending"]
    assert rows[some_jobs["pending"]][-2:] == ["-", "0"]  # not ended, no attempt


@pytest.mark.parametrize(
    "options, expected",
    [
        (["--status", "failed"], ["old"]),
        (["--status", "succeeded"], ["recent"]),
        (["--status", "completed"], ["recent", "old"]),
        (["--status", "pending"], ["pending"]),
        (["--queue", "default"], ["pending", "old"]),
        (["--queue", "reports"], ["recent"]),
        (["--callable", "append"], ["pending"]),
        (["--callable", "jobfuncs.[af]*"], ["pending", "recent", "old"]),
        (["--callable", "fail"], ["old"]),
        (["--older-than", "1d"], ["old"]),
        (["--older-than", "30m"], ["recent", "old"]),
        (["--newer-than", "2h"], ["pending", "recent"]),
        (["--newer-than", "3d", "--older-than", "90s"], ["recent", "old"]),
    ],
)
def test_jobs_filters(some_jobs, zasync_cli, options, expected):
    code, out, err = zasync_cli("jobs", *options)
    assert (code, err) == (0, "")
    assert listed_ids(out) == [some_jobs[name] for name in expected]


def test_jobs_limit_and_json(some_jobs, zasync_cli):
    code, out, _ = zasync_cli("jobs", "--limit", "2")
    assert code == 0
    assert listed_ids(out) == [some_jobs["pending"], some_jobs["recent"]]
    assert out.rstrip().endswith("more jobs match: raise --limit or filter)")

    code, out, _ = zasync_cli("jobs", "--json", "--status", "failed")
    assert code == 0
    data = json.loads(out)
    assert data["more"] is False
    (row,) = data["jobs"]
    assert row["id"] == str(some_jobs["old"])
    assert (row["queue"], row["status"], row["attempts"]) == ("default", "failed", 1)
    ended = datetime.datetime.fromisoformat(row["ended"])
    assert DAY < clock.utcnow() - ended < 3 * DAY


def test_jobs_when_none_match(some_jobs, zasync_cli):
    assert zasync_cli("jobs", "--status", "active") == (0, "no jobs match\n", "")


# -- job --------------------------------------------------------------------


def test_job_details(some_jobs, zasync_cli):
    code, out, err = zasync_cli("job", str(some_jobs["old"]))
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0] == f"job {some_jobs['old']} in queue default"
    fields = {}
    for line in lines[1 : lines.index("traceback:")]:
        name, _, value = line.strip().partition("  ")
        fields[name] = value.strip()
    assert fields["status"] == "failed"
    assert fields["callable"] == "jobfuncs.fail"
    assert fields["arguments"] == "'old trouble'"
    assert fields["attempts"] == "1"
    assert fields["error"] == "builtins.ValueError: old trouble"
    assert re.fullmatch(r"\S+ \S+ UTC \(2d00h ago\)", fields["ended"])
    assert fields["retry policy"] == "RetryCommonFourTimes()"
    traceback = "\n".join(lines[lines.index("traceback:") + 1 :])
    assert "Traceback (most recent call last)" in traceback
    assert "ValueError: old trouble" in traceback

    code, out, err = zasync_cli("job", str(some_jobs["pending"]), "--json")
    assert (code, err) == (0, "")
    info = json.loads(out)
    assert info["status"] == "pending" and info["args"] == ["[]", "'x'"]
    assert info["traceback"] is None and info["ended"] is None


def test_job_shows_related_jobs(database, zasync_cli):
    with database() as queues:
        with inline():
            job = queues[""].put(zasync.Job(jobfuncs.add, 1, 2))
            callback = job.add_callback(jobfuncs.failing_callback)
        ids = job.id, callback.id
    code, out, err = zasync_cli("job", str(ids[0]))
    assert (code, err) == (0, "")
    assert re.search(
        rf"\n  callbacks +{ids[1]} jobfuncs.failing_callback \(failed: "
        rf"builtins.KeyError: 'callback broke'\)\n",
        out,
    )
    assert re.search(r"\n  result +3\n", out)
    code, out, err = zasync_cli("job", str(ids[1]))
    assert re.search(
        rf"\n  parent +{ids[0]} jobfuncs.add \(succeeded\), this job is its "
        rf"callback\n",
        out,
    )
    assert "KeyError: 'callback broke'" in out.split("traceback:")[1]


@pytest.mark.parametrize("command", ["job", "retry", "cancel"])
def test_unknown_and_malformed_job_ids(some_jobs, zasync_cli, command):
    code, out, err = zasync_cli(command, "12345")
    assert code == 2 and out == ""
    assert err == (
        f"zasync {command}: error: no job 12345 in any queue (it may have been "
        f"pruned; 'zasync jobs' lists the jobs there are)\n"
    )
    code, out, err = zasync_cli(command, "12x")
    assert code == 2
    assert "argument ID: '12x' is not a job id: ids are whole numbers" in err


# -- retry and cancel -------------------------------------------------------


def test_retry(some_jobs, database, zasync_cli):
    old = some_jobs["old"]
    code, out, err = zasync_cli("retry", str(old))
    assert (code, err) == (0, "")
    match = re.fullmatch(
        rf"queued job (\d+) \(jobfuncs.fail\) in queue default: a retry of "
        rf"failed job {old}\n",
        out,
    )
    assert match
    new_id = int(match.group(1))
    with database() as queues:
        new = queues.find_job(new_id)
        assert new.status == PENDING and new.args == ("old trouble",)
        assert new.annotations[admin.RETRY_OF] == old
        assert queues.find_job(old).failed  # kept as it was

    code, out, err = zasync_cli("retry", str(some_jobs["recent"]))
    assert code == 2
    assert "succeeded; only failed jobs are retried" in err


def test_retry_makes_a_scheduled_job_due(database, zasync_cli):
    with database() as queues:
        job = queues[""].put(zasync.Job(jobfuncs.add, 1, 1), begin_after=7 * DAY)
        job_id, was = job.id, job.begin_after
    code, out, err = zasync_cli("retry", str(job_id))
    assert (code, err) == (0, "")
    assert out == (
        f"job {job_id} (jobfuncs.add) in queue default is due now; it was due at "
        f"{was:%Y-%m-%d %H:%M:%S} UTC\n"
    )
    with database() as queues:
        assert queues.find_job(job_id).begin_after <= clock.utcnow()
    code, out, err = zasync_cli("retry", str(job_id))
    assert code == 2 and "is pending and due already" in err


def test_cancel(some_jobs, database, zasync_cli):
    pending = some_jobs["pending"]
    code, out, err = zasync_cli("cancel", str(pending), "--reason", "wrong input")
    assert (code, err) == (0, "")
    assert out == f"cancelled job {pending} (jobfuncs.append) in queue default\n"
    with database() as queues:
        job = queues.find_job(pending)
        assert job.status == COMPLETED and job.result.check(admin.JobCancelled)
        message = job.result.getErrorMessage()
        assert "was cancelled by zasync cancel (user " in message
        assert message.endswith("before it ran: wrong input")
        assert len(queues[""]) == 0

    # Cancelled, it is a completed job: it cannot be cancelled again.
    code, out, err = zasync_cli("cancel", str(pending))
    assert code == 2 and out == ""
    assert re.fullmatch(
        rf"zasync cancel: error: job {pending} \(jobfuncs.append\) has completed "
        rf"already \(failed at .* UTC\); there is nothing to cancel\n",
        err,
    )
    code, out, _ = zasync_cli("jobs", "--status", "failed")
    assert listed_ids(out) == [pending, some_jobs["old"]]


# -- prune ------------------------------------------------------------------


@pytest.fixture
def aged_jobs(database, monkeypatch):
    """Succeeded and failed jobs that ended 3 days and 1 hour ago."""
    now = clock.utcnow()
    with database() as queues:
        reports = queues.create("reports")
        with inline():
            for age in (3 * DAY, HOUR):
                at(monkeypatch, now - age)
                for _ in range(3):
                    queues[""].put(zasync.Job(jobfuncs.add, 1, 1))
                    reports.put(zasync.Job(jobfuncs.add, 1, 1))
                queues[""].put(zasync.Job(jobfuncs.fail, "x"))
        monkeypatch.undo()


def counts(database):
    with database() as queues:
        return {name: queues[name].counts() for name in queues}


def test_prune(aged_jobs, database, zasync_cli):
    code, out, err = zasync_cli("prune", "--older-than", "1d", "--dry-run")
    assert code == 0
    # Progress on stderr, a line per batch.
    assert err == (
        "queue default: would remove 3 of ~3 succeeded jobs\n"
        "queue reports: would remove 3 of ~3 succeeded jobs\n"
    )
    assert out == (
        "completed jobs that ended over 1d00h ago, failed ones over 4d00h ago:\n"
        "  queue default: would remove 3 succeeded and 0 failed jobs\n"
        "  queue reports: would remove 3 succeeded and 0 failed jobs\n"
        "dry run: nothing was removed\n"
    )
    assert counts(database)[""]["completed"] == 8

    code, out, err = zasync_cli(
        "prune", "--older-than", "1d", "--queue", "default", "--batch-size", "2"
    )
    assert code == 0
    assert err.splitlines() == [
        "queue default: removed 2 of ~3 succeeded jobs",
        "queue default: removed 3 of ~3 succeeded jobs",
    ]
    assert out.splitlines()[1:] == [
        "  queue default: removed 3 succeeded and 0 failed jobs"
    ]
    after = counts(database)
    assert (after[""]["succeeded"], after[""]["failed"]) == (3, 2)
    assert after["reports"]["succeeded"] == 6

    code, out, err = zasync_cli(
        "prune", "--older-than", "2h", "--failed-older-than", "2d"
    )
    assert out.splitlines()[1:] == [
        "  queue default: removed 0 succeeded and 1 failed jobs",
        "  queue reports: removed 3 succeeded and 0 failed jobs",
    ]
    after = counts(database)
    assert (after[""]["succeeded"], after[""]["failed"]) == (3, 1)
    assert after["reports"]["succeeded"] == 3


def test_prune_needs_older_than(aged_jobs, zasync_cli):
    code, out, err = zasync_cli("prune")
    assert code == 2
    assert "the following arguments are required: --older-than" in err


def test_prune_help_states_the_failed_default(capsys):
    with pytest.raises(SystemExit):
        main(["prune", "--help"])
    assert "(default: 4 times --older-than)" in " ".join(
        capsys.readouterr().out.split()
    )


# -- what the person must fix -----------------------------------------------


def test_missing_config_file(tmp_path, zasync_cli):
    code, out, err = zasync_cli("status", conf=tmp_path / "nope.conf")
    assert code == 2 and out == ""
    assert (
        err
        == f"zasync status: error: --zodb-conf {tmp_path / 'nope.conf'}: no such file\n"
    )


def test_invalid_config_file(tmp_path, zasync_cli):
    bad = tmp_path / "bad.conf"
    bad.write_text("<zodb>\n  <filestorage>\n  </zodb>\n")
    code, out, err = zasync_cli("jobs", conf=bad)
    assert code == 2 and out == ""
    assert err.startswith(
        f"zasync jobs: error: --zodb-conf {bad} is not a valid ZODB configuration"
    )
    assert "Traceback" not in err


@pytest.mark.parametrize("option", ["--older-than", "--newer-than"])
def test_bad_durations(some_jobs, zasync_cli, option):
    code, out, err = zasync_cli("jobs", option, "3 days")
    assert code == 2 and out == ""
    assert (
        f"argument {option}: '3 days' is not a duration: write a number and a "
        f"unit, like 90s, 30m, 2h, 7d or 1h30m"
    ) in err
    code, _, err = zasync_cli("prune", "--older-than", "10")
    assert code == 2 and "'10' is not a duration" in err


def test_unknown_queue_and_bad_limit(some_jobs, zasync_cli):
    code, out, err = zasync_cli("jobs", "--queue", "nightly")
    assert code == 2
    assert err == (
        "zasync jobs: error: there is no queue 'nightly'; the queues are "
        "'default', 'reports'\n"
    )
    code, _, err = zasync_cli("prune", "--older-than", "1d", "--queue", "nightly")
    assert code == 2 and "there is no queue 'nightly'" in err
    code, _, err = zasync_cli("jobs", "--limit", "0")
    assert code == 2 and "'0' is not a whole number of at least 1" in err


# -- JSON: job ids as text ----------------------------------------------------


def job_id_values(data, key=None):
    """Every value under a key that holds a job id, anywhere in ``data``."""
    if isinstance(data, dict):
        for name, value in data.items():
            yield from job_id_values(value, name)
    elif isinstance(data, list):
        for value in data:
            yield from job_id_values(value, key)
    elif key in ("id", "retry_of") and data is not None:
        yield data


def test_json_gives_job_ids_as_text(some_jobs, database, zasync_cli):
    """18-digit ids are more than a JSON number keeps in JavaScript or jq
    (2**53): every JSON output gives them as strings."""
    with database() as queues:
        with inline():
            job = queues[""].put(zasync.Job(jobfuncs.add, 1, 1))
            callback = job.add_callback(jobfuncs.callback_value)
        to_cancel = queues[""].put(zasync.Job(jobfuncs.add, 2, 2))
        ids = job.id, callback.id, to_cancel.id
    assert all(job_id > admin.JSON_SAFE_INTEGER for job_id in ids)
    outputs = {}
    for args in (
        ["jobs", "--json"],
        ["job", str(ids[0]), "--json"],
        ["job", str(ids[1]), "--json"],
        ["retry", str(some_jobs["old"]), "--json"],
        ["cancel", str(ids[2]), "--json"],
        ["status", "--json"],
        ["prune", "--older-than", "1d", "--json"],
        ["settings", "--json"],
    ):
        code, out, err = zasync_cli(*args)
        assert (code, err) == (0, ""), args
        outputs[args[0], args[1]] = json.loads(out)
    found = [v for data in outputs.values() for v in job_id_values(data)]
    assert found and all(isinstance(value, str) for value in found), found
    assert {str(i) for i in ids} | {str(some_jobs["old"])} <= set(found)
    retried = outputs["retry", str(some_jobs["old"])]
    assert retried["retry_of"] == str(some_jobs["old"])
    assert retried["id"] != retried["retry_of"] and retried["made_due"] is False
    assert outputs["job", str(ids[1])]["parent"]["id"] == str(ids[0])
    assert outputs["cancel", str(ids[2])]["id"] == str(ids[2])
    assert outputs["prune", "--older-than"]["queues"][0]["label"] == "default"


def test_an_id_from_json_finds_its_job(database, zasync_cli, monkeypatch):
    # An odd id above 2**53 is one a double cannot hold (about 1 in 32 ids
    # happens to be one it can, which would hide the rounding).
    monkeypatch.setattr(zasync.job, "_sequence", itertools.count(1, 2))
    with database() as queues:
        queues[""].put(zasync.Job(jobfuncs.append, [], "x"))
    code, out, _ = zasync_cli("jobs", "--json", "--status", "pending")
    (row,) = json.loads(out)["jobs"]
    job_id = row["id"]
    assert int(job_id) % 2 == 1
    # As jq -r prints it, and as jq prints it without -r (quoted).
    for typed in (job_id, f'"{job_id}"'):
        code, out, err = zasync_cli("job", typed, "--json")
        assert (code, err) == (0, "")
        assert json.loads(out)["id"] == job_id
    # Read as a number, as JavaScript does, the id is rounded: not found,
    # and the message says why.
    rounded = int(float(job_id))
    assert rounded != int(job_id)
    code, out, err = zasync_cli("job", str(rounded))
    assert code == 2
    assert "if the id went through jq or JavaScript as a number, it was " in err


# -- cluster-wide settings --------------------------------------------------


def test_settings_show_where_agent_sizes_come_from(database, zasync_cli):
    now = clock.utcnow()
    with database() as queues:
        queue = queues[""]
        queue.quotas.create("default", size=1)
        follows = queue.dispatchers["a1a1a1a1-0000"] = DispatcherRecord(
            "a1a1a1a1-0000", now
        )
        follows.agents["main"] = Agent("main", size=3)
        pinned = queue.dispatchers["b2b2b2b2-0000"] = DispatcherRecord(
            "b2b2b2b2-0000", now
        )
        pinned.agents["main"] = Agent("main", size=5)
        pinned.agent_size_source = "zope.conf"

    code, out, err = zasync_cli("settings")
    assert (code, err) == (0, "")
    assert "cluster-wide, for every process and site of this database" in out
    assert re.search(r"\n  default +1 +0\n", out)
    assert "default agent size: 3 threads (built-in default;" in out
    assert re.search(r"a1a1a1a1-0000 .* alive +3 +built-in default\n", out)
    assert re.search(
        r"b2b2b2b2-0000 .* alive +5 +zope.conf, wins over the database\n", out
    )

    code, out, err = zasync_cli("agents", "set", "4")
    assert (code, err) == (0, "")
    assert "agent size of every dispatcher that sets none of its own set to 4" in out
    assert "  dispatcher a1a1a1a1-0000: now 4 threads" in out
    assert "  dispatcher b2b2b2b2-0000: keeps 5 threads from its zope.conf" in out

    code, out, err = zasync_cli("agents", "set", "2", "--dispatcher", "b2b2")
    assert code == 2 and out == ""
    assert "b2b2b2b2-0000" in err and "from its zope.conf" in err

    code, out, err = zasync_cli("agents", "set", "2", "--dispatcher", "a1a1")
    assert (code, err) == (0, "")
    code, out, err = zasync_cli("quota", "set", "default", "3")
    assert (code, err) == (0, "")
    assert "quota default of queue default: size 3 (was 1)" in out
    code, out, err = zasync_cli("quota", "set", "exports", "2")
    assert out == "created quota exports in queue default with size 2\n"

    code, out, err = zasync_cli("settings", "--json")
    (queue,) = json.loads(out)["queues"]
    assert queue["default_agent_size"] == {"size": 4, "source": "cluster default"}
    by_uuid = {d["uuid"]: d for d in queue["dispatchers"]}
    assert (by_uuid["a1a1a1a1-0000"]["size"], by_uuid["a1a1a1a1-0000"]["source"]) == (
        2,
        "dispatcher setting",
    )
    assert by_uuid["b2b2b2b2-0000"]["follows_settings"] is False
    assert {q["name"]: q["size"] for q in queue["quotas"]} == {
        "default": 3,
        "exports": 2,
    }

    code, out, err = zasync_cli("agents", "unset", "--dispatcher", "a1a1a1a1-0000")
    assert (code, err) == (0, "")
    assert "agent size of dispatcher a1a1a1a1-0000 unset (was 2)" in out
    assert "  dispatcher a1a1a1a1-0000: now 4 threads" in out


@pytest.mark.parametrize(
    "args, message",
    [
        (["quota", "set", "default", "-1"], "'-1' is not a whole number of 0 or more"),
        (["quota", "set", "default", "x"], "'x' is not a whole number of 0 or more"),
        (["agents", "set", "many"], "'many' is not a whole number of 0 or more"),
        (["agents", "set", "2", "--queue", "nope"], "there is no queue 'nope'"),
        (["agents", "set", "2", "--dispatcher", "zz"], "no dispatcher 'zz' serves"),
    ],
)
def test_bad_settings_are_refused(database, zasync_cli, args, message):
    with database() as queues:
        queues[""].quotas.create("default", size=1)
    code, out, err = zasync_cli(*args)
    assert code == 2 and out == ""
    assert message in err
    code, out, _ = zasync_cli("settings", "--json")
    (queue,) = json.loads(out)["queues"]
    assert queue["quotas"] == [
        {"name": "default", "size": 1, "active": 0, "paused": None, "rate": None}
    ]
    assert queue["default_agent_size"]["source"] == "built-in default"


def test_intervals_set_show_and_unset(database, zasync_cli):
    now = clock.utcnow()
    with database() as queues:
        record = queues[""].dispatchers["c3c3c3c3-0000"] = DispatcherRecord(
            "c3c3c3c3-0000", now
        )
        record.agents["main"] = Agent("main", size=3)
        record.intervals = {
            "poll_interval": (1.0, "built-in default"),
            "ping_interval": (10.0, "zope.conf"),
            "death_interval": (300.0, "built-in default"),
        }
    code, out, err = zasync_cli("intervals", "set", "--ping", "400", "--death", "900")
    assert (code, err) == (0, "")
    assert "ping_interval: 400s (was unset)" in out
    assert "death_interval: 900s (was unset)" in out

    code, out, err = zasync_cli("settings")
    assert "intervals: poll 1s (built-in default), ping 400s (cluster setting)" in out
    assert "dispatcher c3c3c3c3-0000 sets its own ping 10s (zope.conf)" in out

    code, out, err = zasync_cli("intervals", "set", "--death", "100")
    assert code == 2 and out == ""
    assert "death_interval (100) must be longer than ping_interval (400)" in err
    assert "nothing was changed" in err

    code, out, err = zasync_cli("intervals", "unset", "--ping", "--death")
    assert (code, err) == (0, "")
    code, out, _ = zasync_cli("settings", "--json")
    intervals = json.loads(out)["intervals"]
    assert intervals["ping_interval"] == {"setting": None, "default": 30.0}

    code, out, err = zasync_cli("intervals", "set")
    assert code == 2 and "give at least one of --poll, --ping and --death" in err


def test_zasync_pause_and_resume_commands(database, zasync_cli):
    with database() as queues:
        queues[""].put(zasync.Job(jobfuncs.add, 1, 1))
    code, out, err = zasync_cli("pause", "--by", "the operator")
    assert (code, err) == (0, "")
    assert out.startswith("queue default paused: no dispatcher claims from it")
    code, out, err = zasync_cli("status")
    assert "  PAUSED since " in out and "by the operator" in out
    assert "'zasync resume' resumes it" in out
    code, out, err = zasync_cli("resume")
    assert out == "queue default resumed: dispatchers claim from it again\n"
    code, out, err = zasync_cli("status")
    assert "PAUSED" not in out
    code, out, err = zasync_cli("resume", "--queue", "nope")
    assert code == 2 and "no queue 'nope'" in err


def test_zasync_pause_and_resume_a_quota(database, zasync_cli):
    with database() as queues:
        queues[""].quotas.create("mail", size=2)
    code, out, err = zasync_cli("pause", "--quota", "mail", "--by", "ops")
    assert (code, err) == (0, "")
    assert out.startswith("quota mail of queue default paused: no job naming it")
    code, out, err = zasync_cli("status")
    assert re.search(r"mail +2 +0 +- +- +PAUSED since .* UTC by ops", out), out
    code, out, err = zasync_cli("pause", "--quota", "mail", "--json")
    assert json.loads(out)["was_paused"] is True
    code, out, err = zasync_cli("resume", "--quota", "mail")
    assert out == "quota mail of queue default resumed: its jobs are claimed again\n"
    code, out, err = zasync_cli("status")
    assert "PAUSED" not in out and "RATE" not in out
    code, out, err = zasync_cli("resume", "--quota", "nope")
    assert code == 2 and "no quota 'nope' (its quotas: mail)" in err


def test_zasync_quota_rate(database, zasync_cli):
    with database() as queues:
        queues[""].quotas.create("mail", size=2)
    code, out, err = zasync_cli("quota", "rate", "mail", "100", "1h")
    assert (code, err) == (0, "")
    assert out.startswith("quota mail of queue default: 100 per 1h (was no rate)")
    with database() as queues:
        assert queues[""].quotas["mail"].rate == (100, datetime.timedelta(hours=1))
    code, out, err = zasync_cli("settings")
    assert re.search(r"QUOTA +SIZE +ACTIVE +RATE +STARTS IN PERIOD +STATE", out)
    assert re.search(r"mail +2 +0 +100 per 1h +0 +running", out), out
    code, out, err = zasync_cli("settings", "--json")
    (quota,) = json.loads(out)["queues"][0]["quotas"]
    assert quota["rate"] == {
        "limit": 100,
        "per_seconds": 3600.0,
        "used": 0,
        "opens_at": None,
    }
    code, out, err = zasync_cli("quota", "rate", "mail", "--off")
    assert out.startswith("quota mail of queue default: no rate (was 100 per 1h)")
    with database() as queues:
        assert queues[""].quotas["mail"].rate is None


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["mail"], "give LIMIT and PER"),
        (["mail", "5"], "give both LIMIT and PER"),
        (["mail", "5", "1h", "--off"], "give LIMIT and PER"),
        (["mail", "0", "1h"], "whole number of 1 or more"),
        (["mail", "5", "soon"], "is not a duration"),
        (["nope", "5", "1h"], "no quota 'nope'; create it first"),
    ],
)
def test_zasync_quota_rate_bad_input(database, zasync_cli, args, message):
    with database() as queues:
        queues[""].quotas.create("mail", size=2, rate=(3, datetime.timedelta(hours=1)))
    code, out, err = zasync_cli("quota", "rate", *args)
    assert code == 2 and message in err, err
    with database() as queues:
        assert queues[""].quotas["mail"].rate == (3, datetime.timedelta(hours=1))


# -- mode -------------------------------------------------------------------


def test_mode_show_and_set(database, zasync_cli):
    with database() as queues:
        pending = queues[""].put(zasync.Job(jobfuncs.add, 1, 1)).id
    code, out, err = zasync_cli("mode", "show")
    assert (code, err) == (0, "")
    assert out.startswith("no mode recorded")

    code, out, err = zasync_cli("mode", "set", "single-db")
    assert (code, err) == (0, "")
    assert out.startswith("recorded: the queues live in the main database")
    code, out, _ = zasync_cli("mode", "show", "--json")
    data = json.loads(out)
    assert data["mode"] == "single-db" and data["recorded"]["database"] is None
    assert data["recorded"]["recorded_by"].startswith("zasync mode set (user ")

    # Leaving jobs behind in the old place is refused, unless forced.
    code, out, err = zasync_cli("mode", "set", "multi-db")
    assert code == 2
    assert "1 jobs are pending or running in the queues of the main database" in err
    code, out, err = zasync_cli("mode", "set", "multi-db", "--name", "jobs", "--force")
    assert (code, err) == (0, "")
    assert "the database 'jobs' (multi-database mode) (was the main database" in out
    code, out, _ = zasync_cli("mode", "show")
    assert out.startswith("the queues live in the database 'jobs'")
    assert "the main database holds queues too" in out
    with database() as queues:
        assert queues.find_job(pending) is not None  # nothing was moved


# -- internal callbacks -------------------------------------------------------


def test_internal_callbacks_are_left_out_of_what_operators_see(database, zasync_cli):
    # An application's bookkeeping callback (the Plone layer's event
    # delivery) is neither listed nor counted; the user's own callback is.
    later = clock.utcnow() + DAY
    with database() as queues:
        job = zasync.Job(jobfuncs.add, 1, 2)
        job.add_callback(jobfuncs.callback_value).internal = True
        job.add_callback(jobfuncs.on_failure)
        queues[""].put(job, begin_after=later)
        job_id = str(job.id)
    code, out, _ = zasync_cli("job", job_id, "--json")
    assert code == 0
    assert [cb["callable"] for cb in json.loads(out)["callbacks"]] == [
        "jobfuncs.on_failure"
    ]
    code, out, _ = zasync_cli("cancel", job_id, "--json")
    assert code == 0 and json.loads(out)["callbacks"] == 1
    # The cancelled job's callbacks were queued as jobs of their own.
    code, out, _ = zasync_cli("jobs", "--json")
    listed = [info["callable"] for info in json.loads(out)["jobs"]]
    assert "jobfuncs.on_failure" in listed
    assert "jobfuncs.callback_value" not in listed
    assert listed.count("jobfuncs.add") == 1


def test_job_and_status_show_dependencies(database, zasync_cli):
    with database() as queues:
        queue = queues[""]
        first = queue.put(zasync.Job(jobfuncs.add, 1, 2))
        second = queue.put(
            zasync.Job(jobfuncs.add, 3, 4),
            depends_on=[first],
            on_dependency_failure="wait",
        )
    code, out, err = zasync_cli("job", str(second.id))
    assert (code, err) == (0, "")
    assert re.search(r"status +waiting\n", out)
    assert re.search(
        rf"depends on +{first.id} jobfuncs.add \(pending\); if one fails: wait\n", out
    )
    assert re.search(rf"waiting for +{first.id}\n", out)
    code, out, err = zasync_cli("job", str(first.id))
    assert re.search(rf"jobs waiting for it +{second.id}\n", out)
    code, out, err = zasync_cli("status")
    assert "jobs: 1 waiting, 1 pending, 0 assigned" in out
    code, out, err = zasync_cli("jobs", "--status", "waiting")
    assert (code, err) == (0, "") and str(second.id) in out and str(first.id) not in out


def test_retention_show_set_and_unset(database, zasync_cli):
    with database() as queues:
        queues.create("reports")
    code, out, err = zasync_cli("retention", "show")
    assert (code, err) == (0, "")
    assert out.splitlines() == [
        "automatic prune: none yet (a running dispatcher begins one)",
        "queue default: keeps succeeded jobs 7d00h, failed jobs 30d00h "
        "(built-in default)",
        "queue reports: keeps succeeded jobs 7d00h, failed jobs 30d00h "
        "(built-in default)",
    ]
    code, out, err = zasync_cli(
        "retention",
        "set",
        "--queue",
        "reports",
        "--succeeded-age",
        "2d",
        "--failed-count",
        "500",
        "--failed-age",
        "unlimited",
    )
    assert (code, err) == (0, "")
    assert "queue reports: succeeded_age 2d00h (was unset)" in out
    assert "queue reports: failed_count 500 (was unset)" in out
    code, out, err = zasync_cli("retention", "show", "--queue", "reports")
    assert out.splitlines()[1] == (
        "queue reports: keeps succeeded jobs 2d00h, failed jobs forever "
        "(at most 500) (built-in default and cluster setting)"
    )
    code, out, err = zasync_cli("settings")
    assert "  retention: keeps succeeded jobs 2d00h, failed jobs forever" in out
    assert "'zasync retention set --queue reports' changes it" in out

    # Bad values change nothing and say what to give.
    code, out, err = zasync_cli("retention", "set", "--failed-count", "0")
    assert code == 2 and out == ""
    assert "failed_count must be a whole number of at least 1" in err
    assert "nothing was changed" in err
    code, out, err = zasync_cli("retention", "set", "--succeeded-age", "soon")
    assert code == 2 and "'soon' is not a duration" in err
    code, out, err = zasync_cli("retention", "set")
    assert code == 2 and "give at least one of --on, --off" in err
    code, out, err = zasync_cli("retention", "set", "--queue", "nope", "--off")
    assert code == 2 and "nope" in err

    code, out, err = zasync_cli("retention", "set", "--off")
    assert "queue default: enabled off (was unset)" in out
    code, out, _ = zasync_cli("retention", "show", "--json")
    shown = {q["label"]: q["retention"] for q in json.loads(out)["queues"]}
    assert shown["default"]["enabled"] == {"value": False, "source": "cluster setting"}
    assert shown["reports"]["succeeded_age"]["value"] == 2 * 86400.0
    assert shown["reports"]["failed_age"]["value"] == "unlimited"

    code, out, err = zasync_cli(
        "retention",
        "unset",
        "--queue",
        "reports",
        "--succeeded-age",
        "--failed-count",
        "--failed-age",
    )
    assert (code, err) == (0, "")
    code, out, _ = zasync_cli("retention", "show")
    assert out.count("(built-in default)") == 1  # default is off by setting
    assert "queue default: off (cluster setting)" in out


def test_status_shows_the_last_automatic_prune(database, zasync_cli):
    now = clock.utcnow()
    with database() as queues, inline():
        for _ in range(3):
            queues[""].put(zasync.Job(jobfuncs.add, 1, 1))
    with database() as queues:
        retention.step(queues, "c3c3c3c3-0000", now + 8 * DAY)
    code, out, err = zasync_cli("status")
    assert (code, err) == (0, "")
    line = out.splitlines()[1]
    assert line.startswith("automatic prune: last ended ")
    assert ", 3 jobs removed; next " in line
    code, out, _ = zasync_cli("status", "--json")
    report = json.loads(out)
    assert report["pruning"]["last_by"] == "c3c3c3c3-0000"
    assert report["pruning"]["last_removed"] == 3
    assert report["queues"][0]["pruned"] == {"succeeded": 3, "failed": 0, "kept": 0}
