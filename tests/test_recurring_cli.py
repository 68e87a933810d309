"""``zasync recurring list|pause|resume|run|remove`` and the admin library
under it, on a FileStorage named by a --zodb-conf file."""

import contextlib
import datetime
import json

import pytest
import transaction
import ZODB
import ZODB.FileStorage

import jobfuncs
import zasync
from zasync import admin, recurring
from zasync.cli import main

UTC = datetime.UTC


@pytest.fixture
def config(tmp_path):
    path = tmp_path / "zodb.conf"
    path.write_text(
        f"<zodb>\n  <filestorage>\n    path {tmp_path / 'cli.fs'}\n"
        f"  </filestorage>\n</zodb>\n"
    )
    return path


@pytest.fixture
def database(tmp_path):
    """``with database() as queues:`` the queues, committed and closed after."""

    @contextlib.contextmanager
    def opened():
        db = ZODB.DB(ZODB.FileStorage.FileStorage(str(tmp_path / "cli.fs")))
        conn = db.open()
        try:
            yield zasync.get_queues(conn)
            transaction.commit()
        finally:
            transaction.abort()
            conn.close()
            db.close()

    return opened


@pytest.fixture
def zasync_cli(config, capsys):
    def run(*args):
        try:
            code = main([*args, "--zodb-conf", str(config)])
        except SystemExit as exc:
            code = exc.code
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run


@pytest.fixture
def defined(database):
    with database() as queues:
        recurring.define(
            queues, "nightly-export", jobfuncs.add, cron="0 3 * * *", args=(1, 2)
        )
        recurring.define(queues, "often", jobfuncs.add, every=60, args=(2, 2))


def test_list_shows_each_definition_with_its_next_tick(zasync_cli, defined):
    code, out, _ = zasync_cli("recurring", "list")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == [
        "name",
        "schedule",
        "queue",
        "next",
        "last",
        "run",
        "catch-up",
        "from",
    ]
    assert lines[1].startswith("nightly-export  cron '0 3 * * *' in UTC")
    assert "skip" in lines[1] and "code" in lines[1]
    assert lines[2].startswith("often")
    assert "every 60s" in lines[2]


def test_list_as_json_is_the_admin_report(zasync_cli, defined):
    code, out, _ = zasync_cli("recurring", "list", "--json")
    assert code == 0
    (nightly, often) = json.loads(out)
    assert nightly["name"] == "nightly-export"
    assert nightly["cron"] == "0 3 * * *"
    assert nightly["every"] is None
    assert nightly["callable"] == "jobfuncs.add"
    assert nightly["paused"] is False
    assert nightly["last_run"] is None
    assert datetime.datetime.fromisoformat(nightly["next_tick"]).hour == 3
    assert often["every"] == 60.0


def test_list_without_definitions(zasync_cli, database):
    with database():
        pass
    assert zasync_cli("recurring", "list")[:2] == (0, "no recurring jobs are defined\n")


def test_pause_resume_run_and_remove(zasync_cli, defined, database):
    code, out, _ = zasync_cli("recurring", "pause", "often")
    assert (code, out) == (
        0,
        "recurring job often paused: its ticks put no job until resumed\n",
    )
    assert "was paused already" in zasync_cli("recurring", "pause", "often")[1]
    assert "paused" in zasync_cli("recurring", "list")[1].splitlines()[2]
    code, out, _ = zasync_cli("recurring", "resume", "often")
    assert code == 0 and out.startswith("recurring job often resumed; next tick ")

    code, out, _ = zasync_cli("recurring", "run", "nightly-export", "--json")
    assert code == 0
    job_id = int(json.loads(out)["job_id"])
    with database() as queues:
        job = queues[""].get(job_id)
        assert job.args == (1, 2)
        assert recurring.get(queues, "nightly-export").next_tick.hour == 3
    listed = zasync_cli("recurring", "list")[1].splitlines()[1]
    assert f"{job_id} pending" in listed

    code, out, _ = zasync_cli("recurring", "remove", "often")
    assert (code, out) == (0, "recurring job often removed; the jobs it queued stay\n")
    with database() as queues:
        assert [d.name for d in recurring.definitions(queues)] == ["nightly-export"]


def test_an_unknown_name_is_a_clear_error(zasync_cli, defined):
    for action in ("pause", "resume", "run", "remove"):
        code, out, err = zasync_cli("recurring", action, "nope")
        assert code != 0
        assert "no recurring job 'nope'" in err
        assert "zasync recurring list" in err


def test_status_counts_the_recurring_jobs(zasync_cli, defined, database):
    with database() as queues:
        recurring.pause(queues, "often")
        report = admin.status_report(queues)
    assert report["recurring"] == {"count": 2, "paused": 1}
    out = zasync_cli("status")[1]
    assert "recurring jobs: 2 (1 paused); 'zasync recurring list' shows them" in out


def test_a_zcml_definition_removed_says_it_comes_back(zasync_cli, database):
    with database() as queues:
        recurring.define(queues, "z", jobfuncs.add, every=60, source="zcml")
    out = zasync_cli("recurring", "remove", "z")[1]
    assert "defined again when its instance starts" in out
