"""``zasync status|jobs|job|retry|cancel --url SITE_URL --user USER``: the
operators' commands through a running site's REST API, over HTTP on
127.0.0.1 (the layer's WSGI server), printing what they print when they
open the database themselves."""

import contextlib
import json
import re
import socket

import pytest
import transaction
from restapi_jobs import echo, explode
from restapi_layer import (
    FIXTURES,
    MANAGER,
    MEMBER,
    PASSWORD,
    find,
    queue_as,
    queues,
    site_url,
)

from zasync.cli import commands, main
from zasync.plone.testing import wait_for_result

globals().update(FIXTURES)

ANY_CONF = "/nonexistent/zodb.conf"  # what the local run is given (not read)


@pytest.fixture
def site(rest):
    return rest["portal"]


@pytest.fixture
def url(rest):
    return site_url(rest)


@pytest.fixture
def jobs(site):
    made = {
        "done": queue_as(site, MEMBER, echo, "<b>done</b>"),
        "failed": queue_as(site, MEMBER, explode, "remote boom"),
        "pending": queue_as(site, MEMBER, echo, "later", later=True),
    }
    wait_for_result(made["done"])
    wait_for_result(made["failed"])
    return {name: job.id for name, job in made.items()}


@pytest.fixture
def password(monkeypatch):
    monkeypatch.setenv("ZASYNC_PASSWORD", PASSWORD)


@pytest.fixture
def local(monkeypatch):
    """Run commands "locally" on the test's own connection: what they
    print without --url, to compare with."""

    @contextlib.contextmanager
    def reading(args):
        yield queues()
        transaction.abort()

    monkeypatch.setattr(commands, "_reading", reading)


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def remote(capsys, url, *argv, user=MANAGER):
    return run(capsys, *argv, "--url", url, "--user", user)


def without_ages(text):
    """Output with the parts that change from second to second masked."""
    text = re.sub(r"\((?:in )?[-\d.hmsd]+(?: ago)?\)", "(AGE)", text)
    text = re.sub(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", "TIME", text)
    return re.sub(r"  -?[\d.]+[smhd][\d.hms]*  ", "  AGE  ", text)


@pytest.mark.parametrize(
    "argv",
    [
        ("jobs",),
        ("jobs", "--status", "failed"),
        ("jobs", "--callable", "explode", "--newer-than", "1h"),
        ("jobs", "--limit", "2"),
        ("jobs", "--json"),
    ],
)
def test_jobs_prints_as_without_url(capsys, url, jobs, password, local, argv):
    code, out, err = remote(capsys, url, *argv)
    assert (code, err) == (0, "")
    assert str(jobs["failed"]) in out
    _, mine, _ = run(capsys, *argv, "--zodb-conf", ANY_CONF)
    if "--json" in argv:
        # The same data; the service sorts the keys.
        assert json.loads(out) == json.loads(mine)
    else:
        assert out == mine


def test_job_prints_as_without_url(capsys, url, jobs, password, local):
    for name in ("done", "failed", "pending"):
        argv = ("job", str(jobs[name]))
        code, out, err = remote(capsys, url, *argv)
        assert (code, err) == (0, ""), err
        assert out.startswith(f"job {jobs[name]} in queue default\n")
        _, mine, _ = run(capsys, *argv, "--zodb-conf", ANY_CONF)
        assert without_ages(out) == without_ages(mine)
        if name == "failed":
            assert "  error " in out and "ValueError: remote boom" in out
            assert "\ntraceback:\n" in out
    argv = ("job", str(jobs["failed"]), "--json", "--full")
    code, out, _ = remote(capsys, url, *argv)
    _, mine, _ = run(capsys, *argv, "--zodb-conf", ANY_CONF)
    assert json.loads(out) == json.loads(mine)


def test_status_prints_as_without_url(capsys, url, jobs, password, local):
    code, out, err = remote(capsys, url, "status")
    assert (code, err) == (0, "")
    assert "1 pending" in out and "1 failed" in out
    _, mine, _ = run(capsys, "status", "--zodb-conf", ANY_CONF)
    assert without_ages(out) == without_ages(mine)


def test_retry_and_cancel(capsys, url, jobs, password):
    code, out, err = remote(capsys, url, "retry", str(jobs["failed"]))
    assert (code, err) == (0, "")
    new_id = int(re.match(r"queued job (\d+) ", out).group(1))
    assert out == (
        f"queued job {new_id} (restapi_jobs.explode) in queue default: a retry of "
        f"failed job {jobs['failed']}\n"
    )
    assert find(new_id) is not None
    code, out, err = remote(
        capsys, url, "cancel", str(jobs["pending"]), "--reason", "from afar"
    )
    assert (code, err) == (0, "")
    assert out == (
        f"cancelled job {jobs['pending']} (restapi_jobs.echo) in queue default\n"
    )
    assert "from afar" in str(find(jobs["pending"]).result.value)


def test_errors_of_the_site_are_shown(capsys, url, jobs, password):
    code, _, err = remote(capsys, url, "cancel", str(jobs["done"]))
    assert code == 2
    assert err.startswith("zasync cancel: error: job ")
    assert "has completed already" in err
    unknown = max(jobs.values()) + 1000
    code, _, err = remote(capsys, url, "job", str(unknown))
    assert code == 2
    assert f"no job {unknown} in any queue" in err


def test_a_wrong_password(capsys, url, jobs, monkeypatch):
    monkeypatch.setenv("ZASYNC_PASSWORD", "wrong")
    code, out, err = remote(capsys, url, "status")
    assert (code, out) == (2, "")
    assert f"refused GET @zasync-status for user {MANAGER!r}" in err
    assert "wrong user or password ($ZASYNC_PASSWORD)" in err


def test_a_member_may_not(capsys, url, jobs, password):
    code, _, err = remote(capsys, url, "status", user=MEMBER)
    assert code == 2
    assert "lacks the permission 'zasync: Manage jobs'" in err


def test_no_password(capsys, url, monkeypatch):
    monkeypatch.delenv("ZASYNC_PASSWORD", raising=False)
    code, _, err = remote(capsys, url, "status")
    assert code == 2
    assert "set the environment variable ZASYNC_PASSWORD" in err


def test_url_needs_user(capsys, url, password):
    code, _, err = run(capsys, "status", "--url", url)
    assert code == 2
    assert "--url needs --user USER" in err


def test_url_or_a_database_not_both(capsys, url, password):
    with pytest.raises(SystemExit):
        run(capsys, "status", "--url", url, "--user", MANAGER, "--zodb-conf", "x")
    assert "not allowed with argument" in capsys.readouterr().err


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_a_site_that_is_not_there(capsys, password):
    url = f"http://127.0.0.1:{free_port()}/plone"
    code, _, err = remote(capsys, url, "status")
    assert code == 2
    assert f"cannot reach {url}: " in err
    assert "Is the site running" in err


def test_a_url_that_is_not_a_zasync_site(capsys, rest, password):
    url = f"http://127.0.0.1:{rest['port']}/nowhere"
    code, _, err = remote(capsys, url, "jobs")
    assert code == 2
    assert "has no zasync REST API" in err
