"""zasync's REST API (@zasync-jobs, @zasync-status, @controlpanels/zasync)
through a real WSGI server, with a running dispatcher: every endpoint, its
filters and batching, who sees and does what, the errors; and the examples
of docs/rest.md, performed one by one (see test_the_documented_examples)."""

import base64
import datetime
import json
import os
import pathlib
import re

import pytest
import requests
import transaction
from plone.app.testing import login
from restapi_jobs import echo, explode, until_cancelled
from restapi_layer import (
    FIXTURES,
    MANAGER,
    MEMBER,
    OTHER_MEMBER,
    PASSWORD,
    SITE_ADMINISTRATOR,
    find,
    queue_as,
    queues,
    site_url,
)
from zope.component import getUtility

from zasync import retention
from zasync.plone.interfaces import IAsyncService
from zasync.plone.testing import wait_for_result
from zasync.testing import wait_for

globals().update(FIXTURES)

DOCS = pathlib.Path(__file__).parents[2] / "docs" / "rest.md"
SCRIPT = "<script>alert('zasync')</script>"


@pytest.fixture
def site(rest):
    return rest["portal"]


@pytest.fixture
def url(rest):
    return site_url(rest)


def call(method, url, user=None, password=PASSWORD, json_body=None, **headers):
    """An HTTP request as ``user`` (Basic auth; None: Anonymous), asking
    for JSON as plone.restapi's clients do."""
    headers = {"Accept": "application/json", **headers}
    auth = None if user is None else (user, password)
    return requests.request(
        method, url, headers=headers, auth=auth, json=json_body, timeout=60
    )


@pytest.fixture
def jobs(site):
    """Jobs of three users: done, failed and pending ones."""
    made = {
        "manager_script": queue_as(site, MANAGER, echo, SCRIPT),
        "member_done": queue_as(site, MEMBER, echo, "member's own value"),
        "member_failed": queue_as(site, MEMBER, explode, "member boom"),
        "other_failed": queue_as(site, OTHER_MEMBER, explode, "other's secret"),
        "member_pending": queue_as(site, MEMBER, echo, "later", later=True),
        "other_pending": queue_as(site, OTHER_MEMBER, echo, "other later", later=True),
    }
    for name in ("manager_script", "member_done", "member_failed", "other_failed"):
        wait_for_result(made[name])
    return {name: job.id for name, job in made.items()}


def ids_of(response):
    assert response.status_code == 200, response.text
    return [item["id"] for item in response.json()["items"]]


def error_of(response, status):
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    return response.json()["message"]


# -- who may call ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "@zasync-jobs"),
        ("GET", "@zasync-jobs/1"),
        ("POST", "@zasync-jobs/1/@cancel"),
        ("POST", "@zasync-jobs/1/@retry"),
        ("DELETE", "@zasync-jobs/1"),
        ("GET", "@zasync-status"),
        ("PATCH", "@zasync-status"),
        ("GET", "@controlpanels/zasync"),
    ],
)
def test_anonymous_gets_401(url, method, path):
    response = call(method, f"{url}/{path}")
    assert response.status_code == 401, response.text


def test_wrong_password_gets_401(url, jobs):
    response = call("GET", f"{url}/@zasync-jobs", MANAGER, password="wrong")
    assert response.status_code == 401


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("DELETE", "@zasync-jobs/1"),
        ("GET", "@zasync-status"),
        ("PATCH", "@zasync-status"),
        ("GET", "@controlpanels/zasync"),
        ("PATCH", "@controlpanels/zasync"),
    ],
)
def test_a_member_may_not_manage(url, method, path):
    response = call(method, f"{url}/{path}", MEMBER, json_body={})
    assert response.status_code == 401, response.text


def test_the_services_are_only_where_zasync_is_installed(site, url):
    from plone.app.testing import login
    from plone.base.utils import get_installer

    login(site, MANAGER)
    get_installer(site).uninstall_product("zasync.plone")
    transaction.commit()
    response = call("GET", f"{url}/@zasync-status", MANAGER)
    assert response.status_code == 404


# -- the list --------------------------------------------------------------------


def test_a_manager_lists_every_job_with_ids_as_strings(url, jobs):
    response = call("GET", f"{url}/@zasync-jobs", MANAGER)
    data = response.json()
    listed = ids_of(response)
    assert sorted(listed) == sorted(str(job_id) for job_id in jobs.values())
    assert all(isinstance(job_id, str) for job_id in listed)
    assert data["@id"] == f"{url}/@zasync-jobs"
    assert data["items_total"] == len(jobs)
    assert data["items_total_exact"] is True
    assert "batching" not in data
    for item in data["items"]:
        assert item["@id"] == f"{url}/@zasync-jobs/{item['id']}"
        assert item["site"] == "/plone"
    by_id = {item["id"]: item for item in data["items"]}
    failed = by_id[str(jobs["member_failed"])]
    assert failed["status"] == "failed"
    assert failed["user"] == MEMBER
    assert failed["callable"] == "restapi_jobs.explode"


def test_completed_jobs_are_listed_newest_first(url, jobs):
    response = call("GET", f"{url}/@zasync-jobs?status=completed", MANAGER)
    done = [
        jobs[name]
        for name in ("manager_script", "member_done", "member_failed", "other_failed")
    ]
    ends = {job_id: find(job_id).ended for job_id in done}
    newest_first = sorted(done, key=lambda job_id: ends[job_id], reverse=True)
    assert ids_of(response) == [str(job_id) for job_id in newest_first]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("status=failed", {"member_failed", "other_failed"}),
        ("status=succeeded", {"manager_script", "member_done"}),
        ("status=pending", {"member_pending", "other_pending"}),
        ("queue=default", None),
        ("callable=explode", {"member_failed", "other_failed"}),
        (
            "callable=restapi_jobs.e*o",
            {"manager_script", "member_done", "member_pending", "other_pending"},
        ),
        ("user=other", {"other_failed", "other_pending"}),
        ("site=/plone", None),
        ("site=plone/", None),
        ("site=/elsewhere", set()),
        ("error=BOOM", {"member_failed"}),
        ("older_than=1h", set()),
        ("newer_than=1h", None),
        ("mine=1", {"manager_script"}),
        ("mine=true&status=pending", set()),
        ("user=member&status=failed", {"member_failed"}),
    ],
)
def test_filters(url, jobs, query, expected):
    expected = set(jobs) if expected is None else expected
    response = call("GET", f"{url}/@zasync-jobs?{query}", MANAGER)
    assert set(ids_of(response)) == {str(jobs[name]) for name in expected}
    data = response.json()
    assert data["items_total"] == len(expected)
    assert data["@id"].startswith(f"{url}/@zasync-jobs?")


@pytest.mark.parametrize(
    ("query", "says"),
    [
        ("status=lost", "unknown status 'lost'; use one of pending"),
        ("queue=nowhere", "there is no queue 'nowhere'"),
        ("older_than=yesterday", "older_than: 'yesterday' is not a duration"),
        ("newer_than=5", "newer_than: '5' is not a duration"),
        ("b_size=0", "'b_size' must be a whole number of at least 1"),
        ("b_size=1000", "and at most 200"),
        ("b_start=-1", "'b_start' must be a whole number of at least 0"),
        ("mine=perhaps", "'mine' is true or false"),
    ],
)
def test_bad_filters_are_400_saying_what_to_fix(url, query, says):
    message = error_of(call("GET", f"{url}/@zasync-jobs?{query}", MANAGER), 400)
    assert says in message


def test_batches_follow_plone_restapi(url, jobs):
    seen, link, pages = [], f"{url}/@zasync-jobs?b_size=4", 0
    while link is not None:
        data = call("GET", link, MANAGER).json()
        seen.extend(item["id"] for item in data["items"])
        batching = data["batching"]
        assert batching["@id"] == data["@id"] == link
        assert batching["first"] == f"{url}/@zasync-jobs?b_size=4"
        assert ("prev" in batching) == (pages > 0)
        link = batching.get("next")
        pages += 1
    assert pages == 2
    assert sorted(seen) == sorted(str(job_id) for job_id in jobs.values())
    # The first batch knows there is more, not how many: "at least 5".
    first = call("GET", f"{url}/@zasync-jobs?b_size=4", MANAGER).json()
    assert (first["items_total"], first["items_total_exact"]) == (5, False)
    assert "last" not in first["batching"]
    last = call("GET", f"{url}/@zasync-jobs?b_size=4&b_start=4", MANAGER).json()
    assert (last["items_total"], last["items_total_exact"]) == (6, True)
    assert last["batching"]["last"] == f"{url}/@zasync-jobs?b_start=4&b_size=4"
    assert last["batching"]["prev"] == f"{url}/@zasync-jobs?b_size=4"


def test_the_total_is_exact_for_mine_on_every_batch(url, jobs):
    data = call("GET", f"{url}/@zasync-jobs?b_size=1", MEMBER).json()
    assert len(data["items"]) == 1
    assert (data["items_total"], data["items_total_exact"]) == (3, True)
    assert data["batching"]["last"].endswith("b_start=2&b_size=1")
    beyond = call("GET", f"{url}/@zasync-jobs?b_start=9", MANAGER).json()
    assert (beyond["items"], beyond["items_total"]) == ([], 0)
    assert beyond["items_total_exact"] is False


# -- one job ---------------------------------------------------------------------


def test_one_job_in_full(url, jobs):
    job_id = jobs["member_failed"]
    data = call("GET", f"{url}/@zasync-jobs/{job_id}", MANAGER).json()
    assert data["@id"] == f"{url}/@zasync-jobs/{job_id}"
    assert data["id"] == str(job_id)
    assert data["status"] == "failed"
    assert data["error"] == "builtins.ValueError: member boom"
    assert "raise ValueError(message)" in data["traceback"]
    assert data["args"][1:] == ["'member boom'"]  # after the site's reference
    assert data["user"] == MEMBER


def test_a_result_with_a_script_comes_back_as_json_data(url, jobs):
    job_id = jobs["manager_script"]
    response = call("GET", f"{url}/@zasync-jobs/{job_id}", MANAGER)
    assert response.headers["Content-Type"].startswith("application/json")
    assert response.json()["result"] == repr(SCRIPT)
    assert response.json()["args"][1:] == [repr(SCRIPT)]
    # Data in a JSON string, never markup of a page.
    assert not response.text.lstrip().startswith("<")


@pytest.mark.parametrize("bad", ["abc", "12ab", "-5", "1.5"])
def test_a_bad_id_is_400(url, bad):
    for method, path in (
        ("GET", f"@zasync-jobs/{bad}"),
        ("POST", f"@zasync-jobs/{bad}/@retry"),
        ("POST", f"@zasync-jobs/{bad}/@cancel"),
        ("DELETE", f"@zasync-jobs/{bad}"),
    ):
        message = error_of(call(method, f"{url}/{path}", MANAGER), 400)
        assert "is not a job id" in message


def test_an_unknown_id_is_404(url, jobs):
    unknown = max(jobs.values()) + 1000
    for method, path in (
        ("GET", f"@zasync-jobs/{unknown}"),
        ("POST", f"@zasync-jobs/{unknown}/@retry"),
        ("POST", f"@zasync-jobs/{unknown}/@cancel"),
        ("DELETE", f"@zasync-jobs/{unknown}"),
    ):
        message = error_of(call(method, f"{url}/{path}", MANAGER), 404)
        assert f"no job {unknown}" in message


def test_an_unknown_action_is_400(url, jobs):
    job_id = jobs["member_pending"]
    message = error_of(call("POST", f"{url}/@zasync-jobs/{job_id}/@run", MANAGER), 400)
    assert "@retry" in message and "@cancel" in message


# -- a member: their own jobs only -------------------------------------------------


def test_a_member_lists_only_their_own_jobs(url, jobs):
    own = {"member_done", "member_failed", "member_pending"}
    for query in ("", "?mine=0", "?mine=1", "?user=other"):
        expected = set() if query == "?user=other" else own
        response = call("GET", f"{url}/@zasync-jobs{query}", MEMBER)
        assert set(ids_of(response)) == {str(jobs[n]) for n in expected}, query
    response = call("GET", f"{url}/@zasync-jobs?status=failed", MEMBER)
    assert ids_of(response) == [str(jobs["member_failed"])]
    assert other_values_absent(response.text)


def other_values_absent(text):
    return "other" not in text and "secret" not in text and SCRIPT not in text


def test_a_member_reads_their_job_and_nobody_elses(url, jobs):
    own = call("GET", f"{url}/@zasync-jobs/{jobs['member_failed']}", MEMBER).json()
    assert own["traceback"] and own["error"] == "builtins.ValueError: member boom"
    assert (own["assignee"]["host"], own["assignee"]["pid"]) == (None, None)
    managed = call("GET", f"{url}/@zasync-jobs/{jobs['member_failed']}", MANAGER)
    assert managed.json()["assignee"]["pid"] is not None
    for name in ("other_failed", "manager_script", "other_pending"):
        response = call("GET", f"{url}/@zasync-jobs/{jobs[name]}", MEMBER)
        message = error_of(response, 404)
        assert message == (
            f"no job {jobs[name]} that you may see (it may have been pruned); "
            f"GET @zasync-jobs lists the jobs there are"
        )
        assert other_values_absent(response.text)
        assert "traceback" not in response.text.lower()
    # The same answer as for an id that does not exist.
    unknown = max(jobs.values()) + 1000
    assert error_of(
        call("GET", f"{url}/@zasync-jobs/{unknown}", MEMBER), 404
    ) == message.replace(str(jobs["other_pending"]), str(unknown))


def test_a_member_cancels_their_own_pending_job(url, jobs):
    job_id = jobs["member_pending"]
    response = call("POST", f"{url}/@zasync-jobs/{job_id}/@cancel", MEMBER)
    assert response.status_code == 200, response.text
    assert response.json()["id"] == str(job_id)
    job = find(job_id)
    assert job.failed
    assert "cancelled by member (REST API" in str(job.result.value)


def test_a_member_may_not_touch_other_jobs(url, jobs):
    other = jobs["other_pending"]
    response = call("POST", f"{url}/@zasync-jobs/{other}/@cancel", MEMBER)
    assert error_of(response, 404).startswith(f"no job {other} that you may see")
    own_failed = jobs["member_failed"]
    response = call("POST", f"{url}/@zasync-jobs/{own_failed}/@retry", MEMBER)
    assert response.status_code == 401
    assert "zasync: Manage jobs" in response.text
    assert find(other).status.value == "pending"
    assert queues()[""].counts()["pending"] == 2  # nothing new was queued


def test_a_site_administrator_manages_every_job(url, jobs):
    job_id = jobs["other_pending"]
    response = call("POST", f"{url}/@zasync-jobs/{job_id}/@cancel", SITE_ADMINISTRATOR)
    assert response.status_code == 200, response.text
    assert find(job_id).failed


# -- actions -----------------------------------------------------------------------


def test_retry_a_failed_job_queues_a_new_one(url, jobs, site):
    failed = jobs["member_failed"]
    response = call("POST", f"{url}/@zasync-jobs/{failed}/@retry", MANAGER)
    assert response.status_code == 200, response.text
    data = response.json()
    assert data["retry_of"] == str(failed)
    assert data["made_due"] is False and data["put_back"] is False
    new = find(data["id"])
    assert data["@id"] == f"{url}/@zasync-jobs/{new.id}"
    assert new.args == find(failed).args
    assert wait_for_result(new).value.args == ("member boom",)
    # The retry is the member's job: their list shows it.
    assert data["id"] in ids_of(call("GET", f"{url}/@zasync-jobs", MEMBER))


def test_retry_a_waiting_job_makes_it_due(url, jobs):
    pending = jobs["other_pending"]
    data = call("POST", f"{url}/@zasync-jobs/{pending}/@retry", MANAGER).json()
    assert data["id"] == str(pending) and data["made_due"] is True
    assert data["was_due"] is not None
    assert wait_for_result(find(pending)) == "other later"


def test_retry_a_succeeded_job_is_409_saying_why(url, jobs):
    job_id = jobs["member_done"]
    message = error_of(
        call("POST", f"{url}/@zasync-jobs/{job_id}/@retry", MANAGER), 409
    )
    assert "succeeded; only failed jobs are retried" in message


def test_cancel_a_pending_job_with_a_reason(url, jobs):
    job_id = jobs["other_pending"]
    response = call(
        "POST",
        f"{url}/@zasync-jobs/{job_id}/@cancel",
        MANAGER,
        json_body={"reason": "not needed"},
    )
    assert response.json() == {
        "@id": f"{url}/@zasync-jobs/{job_id}",
        "id": str(job_id),
        "callable": "restapi_jobs.echo",
        "queue": "default",
        "callbacks": 0,
        "cancel_requested": None,  # cancelled at once, not asked to stop
    }
    failure = wait_for_result(find(job_id))  # and its callbacks
    assert "before it ran: not needed" in str(failure.value)
    again = call("POST", f"{url}/@zasync-jobs/{job_id}/@cancel", MANAGER)
    assert "has completed already" in error_of(again, 409)


def test_delete_a_completed_job(url, jobs):
    job_id = jobs["member_done"]
    response = call("DELETE", f"{url}/@zasync-jobs/{job_id}", MANAGER)
    assert response.status_code == 204, response.text
    assert find(job_id) is None
    assert queues()[""].counts()["succeeded"] == 1  # manager_script's
    assert call("GET", f"{url}/@zasync-jobs/{job_id}", MANAGER).status_code == 404
    assert str(job_id) not in ids_of(call("GET", f"{url}/@zasync-jobs", MEMBER))


def test_delete_a_pending_job_is_409(url, jobs):
    job_id = jobs["member_pending"]
    message = error_of(call("DELETE", f"{url}/@zasync-jobs/{job_id}", MANAGER), 409)
    assert f"cancel it first: POST @zasync-jobs/{job_id}/@cancel" in message
    assert find(job_id).status.value == "pending"


def test_delete_discards_a_set_aside_job(url, jobs):
    job_id = jobs["other_pending"]
    queue = queues()[""]
    queue.set_aside(find(job_id), "a test sets it aside")
    transaction.commit()
    listed = call("GET", f"{url}/@zasync-jobs?status=set-aside", MANAGER)
    assert ids_of(listed) == [str(job_id)]
    response = call("DELETE", f"{url}/@zasync-jobs/{job_id}", MANAGER)
    assert response.status_code == 204, response.text
    assert job_id not in queues()[""].set_aside_jobs


def test_cancel_of_a_running_job_asks_it_to_stop(url, site):
    job = queue_as(site, MEMBER, until_cancelled)
    wait_for(
        lambda: find(job.id).status.value == "active",
        30,
        lambda: None,
        lambda: "the job did not start",
    )
    response = call(
        "POST",
        f"{url}/@zasync-jobs/{job.id}/@cancel",
        MEMBER,
        json_body={"reason": "not needed"},
    )
    assert response.status_code == 200, response.text
    answer = response.json()
    requested = answer["cancel_requested"]
    assert requested["by"] == f"{MEMBER} (REST API, {url})"
    assert requested["reason"] == "not needed"
    assert requested["stops"].startswith("the job stops at its next check")
    result = wait_for_result(find(job.id))
    assert result.check("zasync.exceptions.JobCancelled")
    assert result.getErrorMessage().endswith("while it ran: not needed")


def test_writes_need_no_csrf_token_but_json(url, jobs):
    """plone.restapi's CSRF stance: a service answers only requests that
    accept JSON, which a cross-site HTML form cannot ask for; those need
    no plone.protect token."""
    job_id = jobs["member_pending"]
    form_post = requests.post(
        f"{url}/@zasync-jobs/{job_id}/@cancel",
        auth=(MEMBER, PASSWORD),
        headers={"Accept": "text/html"},
        timeout=60,
    )
    assert form_post.status_code != 200
    assert find(job_id).status.value == "pending"
    response = call("POST", f"{url}/@zasync-jobs/{job_id}/@cancel", MEMBER)
    assert response.status_code == 200
    assert find(job_id).failed


# -- status and quotas -------------------------------------------------------------


def settled_counts():
    counts = queues()[""].counts()
    return {name: value for name, value in counts.items() if value}


def test_status(url, jobs, rest):
    expected = {"completed": 4, "succeeded": 2, "failed": 2, "pending": 2}
    # Until the dispatcher has indexed the jobs it completed.
    wait_for(
        lambda: settled_counts() == expected,
        10,
        lambda: None,
        lambda: f"the counts are {settled_counts()}",
    )
    data = call("GET", f"{url}/@zasync-status", MANAGER).json()
    assert data["@id"] == f"{url}/@zasync-status"
    (queue,) = data["queues"]
    assert queue["label"] == "default"
    assert {k: v for k, v in queue["counts"].items() if v} == expected
    (dispatcher,) = queue["dispatchers"]
    assert dispatcher["uuid"] == rest["zasync_dispatcher"].uuid
    assert dispatcher["alive"] is True
    assert {
        "name": "default",
        "size": 1,
        "active": 0,
        "paused": None,
        "rate": None,
    } in queue["quotas"]


def test_patch_quota_sizes(url):
    response = call(
        "PATCH",
        f"{url}/@zasync-status",
        MANAGER,
        json_body={"quotas": {"default": 3, "reports": 0}},
    )
    assert response.status_code == 200, response.text
    assert response.json()["changed"] == [
        {"queue": "default", "quota": "default", "size": 3, "was": 1},
        {"queue": "default", "quota": "reports", "size": 0, "was": None},
    ]
    quotas = queues()[""].quotas
    assert (quotas["default"].size, quotas["reports"].size) == (3, 0)


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"quotas": {"default": 2, "other": -1}}, "a whole number of 0 or more"),
        ({"quotas": {"default": True}}, "a whole number of 0 or more"),
        ({"quotas": {}}, 'give the quota sizes to set as {"quotas"'),
        ({"quota": {"default": 2}}, "'quota' names the quota to pause or resume"),
        ({"rates": {"default": {"limit": 0, "per_seconds": 60}}}, "1 or more"),
        ({"rates": {"default": {"limit": 2}}}, 'must be {"limit": <n>'),
        ({"rates": {"default": {"limit": 2, "per_seconds": -1}}}, "seconds > 0"),
        ({"rates": {"nope": None}}, "no quota 'nope'"),
        ({"rates": []}, 'give the rates to set as {"rates"'),
        ({"quotas": {"default": 2}, "queue": "nowhere"}, "there is no queue"),
    ],
)
def test_patch_bad_quotas_changes_nothing(url, body, says):
    response = call("PATCH", f"{url}/@zasync-status", MANAGER, json_body=body)
    assert says in error_of(response, 400)
    assert queues()[""].quotas["default"].size == 1


def test_pause_and_resume_a_queue(url):
    response = call(
        "PATCH", f"{url}/@zasync-status", MANAGER, json_body={"paused": True}
    )
    assert response.status_code == 200, response.text
    assert response.json()["paused"]["queue"] == "default"
    (queue,) = call("GET", f"{url}/@zasync-status", MANAGER).json()["queues"]
    assert queue["paused"]["by"].endswith("(REST API)")
    assert queues()[""].paused is not None
    response = call(
        "PATCH", f"{url}/@zasync-status", MANAGER, json_body={"paused": False}
    )
    assert response.json()["resumed"] == {"queue": "default", "was_paused": True}
    (queue,) = call("GET", f"{url}/@zasync-status", MANAGER).json()["queues"]
    assert queue["paused"] is None
    response = call(
        "PATCH", f"{url}/@zasync-status", MANAGER, json_body={"paused": "yes"}
    )
    assert "'paused' must be true or false" in error_of(response, 400)
    member = call("PATCH", f"{url}/@zasync-status", MEMBER, json_body={"paused": True})
    assert member.status_code in (401, 403)
    assert queues()[""].paused is None


def test_pause_resume_and_rate_a_quota(url):
    response = call(
        "PATCH",
        f"{url}/@zasync-status",
        MANAGER,
        json_body={
            "paused": True,
            "quota": "default",
            "rates": {"default": {"limit": 10, "per_seconds": 60}},
        },
    )
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["paused"]["quota"] == "default"
    assert answer["paused"]["was_paused"] is False
    assert answer["rates"] == [
        {
            "queue": "default",
            "quota": "default",
            "rate": {"limit": 10, "per_seconds": 60.0},
            "was": None,
        }
    ]
    (queue,) = call("GET", f"{url}/@zasync-status", MANAGER).json()["queues"]
    (quota,) = [q for q in queue["quotas"] if q["name"] == "default"]
    assert quota["paused"]["by"].endswith("(REST API)")
    assert quota["rate"] == {
        "limit": 10,
        "per_seconds": 60.0,
        "used": 0,
        "opens_at": None,
    }
    assert queue["paused"] is None  # the queue itself goes on
    response = call(
        "PATCH",
        f"{url}/@zasync-status",
        MANAGER,
        json_body={"paused": False, "quota": "default", "rates": {"default": None}},
    )
    assert response.json()["resumed"] == {
        "queue": "default",
        "quota": "default",
        "was_paused": True,
    }
    quota = queues()[""].quotas["default"]
    assert quota.paused is None and quota.rate is None
    member = call(
        "PATCH",
        f"{url}/@zasync-status",
        MEMBER,
        json_body={"paused": True, "quota": "default"},
    )
    assert member.status_code in (401, 403)
    assert queues()[""].quotas["default"].paused is None


# -- the control panel ---------------------------------------------------------------


def test_controlpanels_lists_zasync(url):
    panels = call("GET", f"{url}/@controlpanels", MANAGER).json()
    (entry,) = [p for p in panels if p["@id"].endswith("/@controlpanels/zasync")]
    assert entry["title"] == "Background jobs (zasync)"
    assert entry["group"] == "Add-on Configuration"


def test_controlpanel_get(url, rest):
    data = call("GET", f"{url}/@controlpanels/zasync", MANAGER).json()
    assert data["@id"] == f"{url}/@controlpanels/zasync"
    uuid = rest["zasync_dispatcher"].uuid
    assert data["data"]["quota_default"] == 1
    assert data["data"]["public_url"] is None
    assert data["data"]["default_agent_size"] is None
    # The layer's dispatcher sets its size in its process: shown, not edited.
    assert data["schema"]["properties"][f"dispatcher_{uuid}"]["mode"] == "display"
    fields = [f for fieldset in data["schema"]["fieldsets"] for f in fieldset["fields"]]
    assert (
        sorted(fields) == sorted(data["schema"]["properties"]) == sorted(data["data"])
    )


def test_controlpanel_patch(url, site):
    response = call(
        "PATCH",
        f"{url}/@controlpanels/zasync",
        MANAGER,
        json_body={
            "quota_default": 2,
            "default_agent_size": 4,
            "public_url": "https://www.example.org",
            "ping_interval": 400,
            "death_interval": 1200,
            "rate_default": "10/30s",
        },
    )
    assert response.status_code == 204, response.text
    data = call("GET", f"{url}/@controlpanels/zasync", MANAGER).json()["data"]
    assert data["quota_default"] == 2
    assert data["rate_default"] == "10/30s"
    assert queues()[""].quotas["default"].rate[0] == 10
    assert data["default_agent_size"] == 4
    assert (data["ping_interval"], data["death_interval"]) == (400.0, 1200.0)
    assert data["poll_interval"] is None
    assert data["public_url"] == "https://www.example.org"
    assert queues()[""].quotas["default"].size == 2


def test_controlpanel_patch_retention(url, site):
    response = call(
        "PATCH",
        f"{url}/@controlpanels/zasync",
        MANAGER,
        json_body={
            "retention_succeeded_days_default": 2,
            "retention_failed_days_default": 0,
            "retention_failed_count_default": 50,
        },
    )
    assert response.status_code == 204, response.text
    data = call("GET", f"{url}/@controlpanels/zasync", MANAGER).json()["data"]
    assert data["retention_succeeded_days_default"] == 2.0
    assert data["retention_failed_days_default"] == 0
    assert data["retention_failed_count_default"] == 50
    assert data["retention_enabled_default"] is True
    rules = retention.policy(queues()[""])
    assert rules["succeeded_age"] == (datetime.timedelta(days=2), "cluster setting")
    assert rules["failed_age"] == (retention.UNLIMITED, "cluster setting")
    assert rules["failed_count"] == (50, "cluster setting")
    # Back to the built-in defaults: null.
    response = call(
        "PATCH",
        f"{url}/@controlpanels/zasync",
        MANAGER,
        json_body={
            "retention_succeeded_days_default": None,
            "retention_failed_days_default": None,
            "retention_failed_count_default": None,
        },
    )
    assert response.status_code == 204, response.text
    assert queues()[""].retention.values() == {}


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (
            {"retention_succeeded_days_default": -1},
            "retention_succeeded_days_default: give a number of days >= 0",
        ),
        (
            {"retention_failed_count_default": 0},
            "retention_failed_count_default: give a whole number >= 1",
        ),
        ({"retention_enabled_default": "yes"}, "give true or false"),
        ({"retention_enabled_nope": True}, "not a setting of this control panel"),
        ({"quota_default": "two"}, "quota_default: give a whole number from 0 to"),
        ({"default_agent_size": -1}, "default_agent_size: give a whole number"),
        ({"public_url": "not a url"}, "public_url:"),
        ({"colour": "blue"}, "colour: not a setting of this control panel"),
        ({"poll_interval": 0}, "poll_interval: give a number of seconds > 0"),
        ({"death_interval": 10}, "nothing was saved: death_interval (10) must be"),
        ({"rate_default": 10}, "rate_default: give a rate as text, like 100/1h"),
        ({"rate_default": "often"}, "nothing was saved: a rate is written as"),
    ],
)
def test_controlpanel_patch_bad_values(url, body, says):
    response = call(
        "PATCH",
        f"{url}/@controlpanels/zasync",
        MANAGER,
        json_body={"quota_default": 5, **body},
    )
    assert response.status_code == 400, response.text
    assert says in response.json()["message"]
    assert queues()[""].quotas["default"].size == 1


# -- docs/rest.md --------------------------------------------------------------------

#: The ids the examples of docs/rest.md use, and the job each stands for.
EXAMPLE_IDS = {
    "244851019106319317": "member_done",
    "244851019106319318": "member_failed",
    "244851019106319319": "member_pending",
    "244851019106319320": "other_pending",
}
BLOCK = re.compile(r"```http\n(.*?)```", re.S)
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def documented_examples():
    """(request lines, response lines) of each example of docs/rest.md: an
    ``http`` block with a request followed by one with its response."""
    blocks = BLOCK.findall(DOCS.read_text())
    pairs = []
    for request, response in zip(blocks[::2], blocks[1::2], strict=True):
        assert not request.startswith("HTTP/"), request
        assert response.startswith("HTTP/1.1 "), response
        pairs.append((request, response))
    return pairs


def parse_message(text):
    head, _, body = text.partition("\n\n")
    first, *header_lines = head.strip().splitlines()
    headers = dict(line.split(": ", 1) for line in header_lines)
    return first, headers, body.strip()


def shape(value):
    """What a response must have as documented: the keys of objects (ids
    of dispatchers made alike), the shape of a list's first item."""
    if isinstance(value, dict):
        return {UUID.sub("<uuid>", key): shape(item) for key, item in value.items()}
    if isinstance(value, list):
        return [shape(value[0])] if value else []
    return None


def test_the_documented_examples(url, jobs, site, rest):
    """Each example of docs/rest.md is performed, in order, on the jobs of
    the ``jobs`` fixture (the documented ids stand for them); the status
    and the shape of each answer (its keys, all the way down) must be as
    documented. With ZASYNC_WRITE_REST_DOCS=1 in the environment, the
    answers documented are replaced by the real ones instead (then check
    the diff of docs/rest.md and commit it)."""
    examples = documented_examples()
    assert len(examples) >= 10
    real = {example: str(jobs[name]) for example, name in EXAMPLE_IDS.items()}
    rewrite = os.environ.get("ZASYNC_WRITE_REST_DOCS") == "1"
    answers = []
    for request, response in examples:
        performed = request
        for example, job_id in real.items():
            performed = performed.replace(example, job_id)
        first, headers, body = parse_message(performed)
        method, path, _ = first.split(" ")
        assert path.startswith("/plone/"), path
        user = password = None
        if "Authorization" in headers:
            user, _, password = (
                base64.b64decode(headers["Authorization"].split(" ")[1])
                .decode()
                .partition(":")
            )
        assert headers["Accept"] == "application/json"
        answer = call(
            method,
            f"{url}/{path[len('/plone/') :]}",
            user,
            password,
            json_body=json.loads(body) if body else None,
        )
        status_line, _, documented = parse_message(response)
        if rewrite:
            answers.append(documented_answer(answer, url, real))
            continue
        expected = int(status_line.split(" ")[1])
        assert answer.status_code == expected, (first, answer.text)
        if documented:
            got = shape(answer.json())
            assert got == shape(json.loads(documented)), (first, answer.text)
        else:
            assert not answer.content, (first, answer.text)
    if rewrite:
        blocks = iter(range(2 * len(answers)))

        def replace(match):
            index = next(blocks)
            if index % 2 == 0:
                return match.group(0)
            return f"```http\n{answers[index // 2]}```"

        DOCS.write_text(BLOCK.sub(replace, DOCS.read_text()))


def documented_answer(answer, url, real):
    """An answer as docs/rest.md shows it: the example ids and URL."""
    lines = [f"HTTP/1.1 {answer.status_code} {answer.reason}"]
    if answer.content:
        lines.append("Content-Type: application/json")
        body = json.dumps(answer.json(), indent=2, sort_keys=True)
        for example, job_id in real.items():
            body = body.replace(job_id, example)
        body = body.replace(url, "http://localhost:8080/plone")
        lines += ["", body.replace(str(DOCS.parents[1]), "/srv/zasync")]
    return "\n".join(lines) + "\n"


def test_a_job_shows_what_it_waits_for(site, url, jobs):
    pending = find(jobs["member_pending"])
    transaction.begin()
    login(site, MEMBER)
    waiting = getUtility(IAsyncService).queueJobAfter(
        [find(pending.id)], None, echo, site, "after"
    )
    transaction.commit()
    data = call("GET", f"{url}/@zasync-jobs/{waiting.id}", MEMBER).json()
    assert data["status"] == "waiting"
    assert data["waiting_for"] == [str(pending.id)]
    assert data["on_dependency_failure"] == "fail"
    assert [each["id"] for each in data["depends_on"]] == [str(pending.id)]
    assert data["depends_on"][0]["status"] == "pending"
    data = call("GET", f"{url}/@zasync-jobs/{pending.id}", MEMBER).json()
    assert [each["id"] for each in data["dependents"]] == [str(waiting.id)]
    listed = ids_of(call("GET", f"{url}/@zasync-jobs?status=waiting", MEMBER))
    assert listed == [str(waiting.id)]
    status = call("GET", f"{url}/@zasync-status", MANAGER).json()
    assert status["queues"][0]["counts"]["waiting"] == 1
    # Cancelling what it waits for fails it, naming that job.
    response = call("POST", f"{url}/@zasync-jobs/{pending.id}/@cancel", MEMBER)
    assert response.status_code == 200, response.text
    result = wait_for_result(find(waiting.id))
    assert f"job {pending.id} (restapi_jobs.echo) was cancelled" in str(result.value)
