"""The jobs dashboard (@@zasync-jobs) through the real publisher, with a
real dispatcher running the jobs: pages, filters, paging, actions and
their CSRF protection, escaping, security and the JSON views."""

import datetime
import html
import json
import re
from urllib.error import HTTPError
from urllib.parse import urlencode

import dashboard_jobs
import pytest
import transaction
from dashboard_layer import (
    FIXTURES,
    MANAGER,
    MEMBER,
    PASSWORD,
    SITE_ADMINISTRATOR,
)
from plone.app.testing import login
from plone.testing.zope import Browser
from zExceptions import Forbidden
from zope.component import getUtility

from zasync import clock
from zasync.plone.dashboard import data
from zasync.plone.interfaces import IAsyncService
from zasync.plone.service import makeJob
from zasync.plone.testing import wait_for_result, wait_for_start
from zasync.testing import wait_for, wait_for_annotation

globals().update(FIXTURES)

SCRIPT = "<script>alert('x')</script>"


@pytest.fixture
def site(dashboard):
    dashboard_jobs.reset()
    yield dashboard["portal"]
    dashboard_jobs.release()  # a gated job left running ends at once


def browser_for(site, user=MANAGER, handle_errors=False):
    browser = Browser(site.aq_parent)
    browser.handleErrors = handle_errors
    if user is not None:
        browser.addHeader("Authorization", f"Basic {user}:{PASSWORD}")
    return browser


def url(portal, *parts, **query):
    base = "/".join((f"{portal.absolute_url()}/@@zasync-jobs", *map(str, parts)))
    if query:
        base += "?" + urlencode(query)
    return base


def queue(site, func, *args, user=MANAGER, delay=None):
    """Queue ``func(site, *args)`` as ``user`` and commit; the job."""
    transaction.begin()
    login(site, user)
    service = getUtility(IAsyncService)
    if delay is None:
        job = service.queueJob(func, site, *args)
    else:
        begin_after = clock.utcnow() + delay
        job = service.queueJobWithDelay(None, begin_after, func, site, *args)
    transaction.commit()
    return job


def later(site, value="later", user=MANAGER):
    """A job that stays pending (due in an hour)."""
    return queue(site, dashboard_jobs.echo, value, user=user, delay=HOUR)


HOUR = datetime.timedelta(hours=1)


def queues():
    transaction.begin()
    return getUtility(IAsyncService).getQueues()


def find(job_id):
    return queues().find_job(job_id)


def status_of(job_id):
    job = find(job_id)
    return None if job is None else data.job_row(job)["status"]


def listed_ids(browser):
    """The job ids of the list's rows, in order."""
    return [int(i) for i in re.findall(r'<tr data-job-id="(\d+)"', browser.contents)]


def count_shown(browser, status):
    found = re.search(rf'data-count="{status}">(\d+)<', browser.contents)
    assert found, f"no count for {status}"
    return int(found.group(1))


def messages(browser):
    """The texts of Plone's status messages on the page."""
    found = re.findall(
        r'class="[^"]*portalMessage[^"]*"[^>]*>(.*?)</div>', browser.contents, re.S
    )
    return [html.unescape(re.sub(r"<[^>]+>", " ", m)).strip() for m in found]


# -- the overview ------------------------------------------------------------------


def test_overview_counts_throughput_dispatchers_and_oldest_pending(site):
    done = [queue(site, dashboard_jobs.echo, n) for n in range(2)]
    failed = queue(site, dashboard_jobs.fail, "boom")
    for job in (*done, failed):
        wait_for_result(job)
    pending = later(site)
    browser = browser_for(site)
    browser.open(url(site))
    assert count_shown(browser, "succeeded") == 2
    assert count_shown(browser, "failed") == 1
    assert count_shown(browser, "pending") == 1
    assert count_shown(browser, "active") == 0
    assert count_shown(browser, "set-aside") == 0
    assert re.search(r'data-throughput="total">3<', browser.contents)
    assert re.search(r'data-throughput="failed">1<', browser.contents)
    # The oldest pending job, linked.
    assert f"/@@zasync-jobs/job/{pending.id}" in browser.contents
    # This process's dispatcher: alive, with its host, pid and UUID.
    transaction.begin()
    [record] = queues()[""].dispatchers.values()
    assert f'data-uuid="{record.uuid}"' in browser.contents
    assert f"<td>{record.pid}</td>" in browser.contents
    assert ">alive<" in browser.contents
    # The quota of queueJob, editable.
    assert 'data-quota="default"' in browser.contents
    # Counts link to the list filtered by queue and status.
    assert "@@zasync-jobs/list?queue=default&amp;status=failed" in browser.contents


def test_throughput_reads_the_last_hour_only(site):
    job = queue(site, dashboard_jobs.echo, 1)
    wait_for_result(job)
    transaction.begin()
    q = queues()[""]
    assert data.completed_since(q, clock.utcnow() - HOUR) == 1
    # An hour from now, the job is out of the window.
    assert data.completed_since(q, clock.utcnow() + datetime.timedelta(seconds=1)) == 0


# -- the list ------------------------------------------------------------------------


def test_list_filters(site):
    ok = queue(site, dashboard_jobs.echo, "fine")
    broken = queue(site, dashboard_jobs.fail, "disk on fire")
    other = queue(site, dashboard_jobs.fail, "other trouble", user=SITE_ADMINISTRATOR)
    for job in (ok, broken, other):
        wait_for_result(job)
    pending = later(site)
    browser = browser_for(site)

    def shown(**query):
        browser.open(url(site, "list", **query))
        return set(listed_ids(browser))

    everything = {ok.id, broken.id, other.id, pending.id}
    assert shown() == everything
    assert shown(status="failed") == {broken.id, other.id}
    assert shown(status="succeeded") == {ok.id}
    assert shown(status="pending") == {pending.id}
    assert shown(callable="dashboard_jobs.fail") == {broken.id, other.id}
    assert shown(callable="*echo") == {ok.id, pending.id}
    assert shown(user=SITE_ADMINISTRATOR) == {other.id}
    assert shown(user=MANAGER) == {ok.id, broken.id, pending.id}
    assert shown(error="ON FIRE") == {broken.id}
    assert shown(site="/plone") == everything
    assert shown(site="/elsewhere") == set()
    assert shown(newer="1h") == everything
    assert shown(older="1h") == set()
    assert shown(queue="default", status="failed") == {broken.id, other.id}
    # The user and site of each job are shown.
    shown(status="failed")
    assert f"<td>{SITE_ADMINISTRATOR}</td>" in browser.contents
    assert "<td>/plone</td>" in browser.contents

    # Bad filters say what to fix, and list nothing.
    assert shown(older="soon") == set()
    assert 'id="zasync-jobs-filter-error"' in browser.contents
    assert "is not a duration" in html.unescape(browser.contents)
    assert shown(status="lost") == set()
    assert "Unknown status" in html.unescape(browser.contents)
    assert shown(queue="nosuch") == set()
    assert "there is no queue 'nosuch'" in html.unescape(browser.contents)


def test_paging_newest_first(site):
    jobs = [queue(site, dashboard_jobs.echo, n) for n in range(7)]
    for job in jobs:
        wait_for_result(job)
    transaction.begin()
    newest_first = [
        job.id
        for job in sorted(
            (find(j.id) for j in jobs), key=lambda j: (j.ended, j.id), reverse=True
        )
    ]
    browser = browser_for(site)
    browser.open(url(site, "list", size=3))
    assert listed_ids(browser) == newest_first[:3]
    assert 'id="zasync-jobs-prev"' not in browser.contents
    browser.getLink(id="zasync-jobs-next").click()
    assert listed_ids(browser) == newest_first[3:6]
    browser.getLink(id="zasync-jobs-next").click()
    assert listed_ids(browser) == newest_first[6:]
    assert 'id="zasync-jobs-next"' not in browser.contents
    browser.getLink(id="zasync-jobs-prev").click()
    assert listed_ids(browser) == newest_first[3:6]
    # The same pages through the filtered (find_jobs) path.
    browser.open(url(site, "list", size=3, start=3, callable="echo"))
    assert listed_ids(browser) == newest_first[3:6]


def test_fast_and_filtered_paging_agree(site):
    jobs = [queue(site, dashboard_jobs.echo, n) for n in range(5)]
    jobs.append(queue(site, dashboard_jobs.fail, "x"))
    for job in jobs:
        wait_for_result(job)
    later(site)
    transaction.begin()
    q = queues()
    for status in (None, "completed", "succeeded", "failed"):
        for start in range(0, 8):
            fast = data.list_jobs(q, status=status, start=start, limit=2)
            slow = data.list_jobs(q, status=status, start=start, limit=2, site="/plone")
            assert [r["id"] for r in fast[0]] == [r["id"] for r in slow[0]]
            assert fast[1] == slow[1], (status, start)


# -- one job ---------------------------------------------------------------------------


def test_job_detail_escapes_result_arguments_and_traceback(site):
    job = queue(site, dashboard_jobs.echo, {"note": SCRIPT})
    failed = queue(site, dashboard_jobs.fail, SCRIPT)
    wait_for_result(job)
    wait_for_result(failed)
    browser = browser_for(site)
    browser.open(url(site, "job", job.id))
    assert SCRIPT not in browser.contents
    assert "&lt;script&gt;" in browser.contents
    assert browser.contents.count("&lt;script&gt;alert(") >= 2  # argument, result
    assert ">succeeded<" in browser.contents
    assert "dashboard_jobs.echo" in browser.contents
    assert f'<dd class="col-sm-8">{MANAGER}</dd>' in browser.contents
    assert '<dd class="col-sm-8">/plone</dd>' in browser.contents
    # The result is text in a pre, not markup.
    result = re.search(r'id="zasync-job-result">(.*?)</pre>', browser.contents, re.S)
    assert html.unescape(result.group(1)) == repr({"note": SCRIPT})

    browser.open(url(site, "job", failed.id))
    assert SCRIPT not in browser.contents
    traceback = re.search(
        r'id="zasync-job-traceback">(.*?)</pre>', browser.contents, re.S
    ).group(1)
    assert "&lt;script&gt;" in traceback
    assert "ValueError" in traceback
    assert 'id="zasync-job-error"' in browser.contents
    # A failed job can be retried and deleted, not cancelled.
    form = browser.getForm(id="zasync-job-actions")
    assert form.getControl(name="action", index=0).value  # Retry is there
    assert 'value="cancel"' not in browser.contents

    # In the list too, and as text in JSON.
    browser.open(url(site, "list"))
    assert SCRIPT not in browser.contents
    browser.open(url(site, "job", failed.id, "json"))
    raw = browser.contents
    assert "<" not in raw and ">" not in raw
    info = json.loads(raw)
    assert info["id"] == str(failed.id)
    assert SCRIPT in info["error"]


def test_job_detail_shows_the_steps_of_a_job_in_steps(site):
    job = queue(site, dashboard_jobs.in_steps, 25, 10)
    assert wait_for_result(job) == 25
    browser = browser_for(site)
    browser.open(url(site, "job", job.id))
    assert re.search(
        r"Steps\s*</dt>\s*<dd[^>]*zasync-job-steps[^>]*>25 of 25 items done in 3 "
        r"chunks, finished</dd>",
        browser.contents,
    ), browser.contents
    # Its progress bar says so too.
    assert "25 of 25 items done in 3 chunks, finished" in browser.contents


def test_unknown_job_is_not_found(site):
    browser = browser_for(site, handle_errors=True)
    for bad in ("123", "not-a-number"):
        with pytest.raises(HTTPError, match="404"):
            browser.open(url(site, "job", bad))


def test_serial_job_links_its_parts(site):
    transaction.begin()
    login(site, MANAGER)
    service = getUtility(IAsyncService)
    job = service.queueSerialJobs(
        makeJob(dashboard_jobs.echo, site, 1), makeJob(dashboard_jobs.echo, site, 2)
    )
    transaction.commit()
    wait_for_result(job)
    transaction.begin()
    parts = [child.id for child in find(job.id).children]
    browser = browser_for(site)
    browser.open(url(site, "job", job.id))
    for part in parts:
        assert f"/@@zasync-jobs/job/{part}" in browser.contents
    browser.open(url(site, "job", parts[0]))
    assert 'id="zasync-job-parent"' in browser.contents
    assert f"/@@zasync-jobs/job/{job.id}" in browser.contents


def test_job_actions_with_the_authenticator(site):
    failed = queue(site, dashboard_jobs.fail, "once")
    wait_for_result(failed)
    browser = browser_for(site)
    browser.open(url(site, "job", failed.id))
    browser.getForm(id="zasync-job-actions").submit(name="action", index=0)  # Retry
    [message] = messages(browser)
    new_id = int(re.search(rf"{failed.id} → (\d+)", message).group(1))
    assert browser.url == url(site, "job", new_id)
    assert find(new_id).annotations["zasync.retry_of"] == failed.id
    wait_for_result(find(new_id))

    pending = later(site)
    browser.open(url(site, "job", pending.id))
    browser.getControl("Cancel").click()
    assert status_of(pending.id) == "failed"
    assert "Cancel: done for 1 job(s)" in messages(browser)[0]

    browser.open(url(site, "job", pending.id))
    browser.getControl("Delete").click()
    assert find(pending.id) is None
    assert browser.url == url(site, "list")
    assert "Delete: done for 1 job(s)" in messages(browser)[0]


def test_cancel_of_a_running_job_asks_it_to_stop(site):
    running = queue(site, dashboard_jobs.until_cancelled)
    wait_for_start(running)
    browser = browser_for(site)
    browser.open(url(site, "job", running.id))
    browser.getControl("Cancel").click()
    [message] = messages(browser)
    assert f"Cancel requested for running job(s) {running.id}:" in message
    assert "stops at its next check" in message
    result = wait_for_result(running)
    assert result.check("zasync.exceptions.JobCancelled")
    assert "(jobs dashboard) while it ran" in result.getErrorMessage()
    assert status_of(running.id) == "failed"


def test_job_action_refused_says_why(site):
    job = queue(site, dashboard_jobs.echo, "done")
    wait_for_result(job)
    browser = browser_for(site)
    browser.open(url(site, "job", job.id))
    token = browser.getControl(name="_authenticator").value
    browser.post(url(site, "job", job.id), f"action=cancel&_authenticator={token}")
    [message] = messages(browser)
    assert f"Cancel job {job.id}: not done:" in message
    assert "has completed already" in message
    assert status_of(job.id) == "succeeded"


def test_actions_without_a_valid_authenticator_change_nothing(site):
    failed = queue(site, dashboard_jobs.fail, "kept")
    wait_for_result(failed)
    pending = later(site)
    browser = browser_for(site)
    posts = [
        (url(site, "job", failed.id), "action=retry"),
        (url(site, "job", pending.id), "action=cancel&_authenticator=forged"),
        (url(site, "list"), f"bulk=cancel-selected&ids:list={pending.id}"),
        (url(site, "list"), "bulk=delete-filter&status=failed"),
        (url(site, "quota"), "quota=default&size=7&queue=default"),
        (url(site, "set-aside"), f"action=discard&id={pending.id}"),
    ]
    for target, body in posts:
        with pytest.raises(Forbidden, match="authenticator"):
            browser.post(target, body)
    assert status_of(failed.id) == "failed"
    assert status_of(pending.id) == "pending"
    assert queues()[""].counts()["pending"] == 1
    assert queues()[""].quotas["default"].size == 1
    # A GET does nothing either.
    browser = browser_for(site, handle_errors=True)
    with pytest.raises(HTTPError, match="400|405"):
        browser.open(url(site, "quota") + "?quota=default&size=7")
    assert queues()[""].quotas["default"].size == 1


# -- bulk actions -----------------------------------------------------------------------


def test_bulk_actions_on_a_selection(site):
    failures = [queue(site, dashboard_jobs.fail, f"bulk {n}") for n in range(2)]
    fine = queue(site, dashboard_jobs.echo, "fine")
    for job in (*failures, fine):
        wait_for_result(job)
    browser = browser_for(site)
    browser.open(url(site, "list", status="failed"))
    form = browser.getForm(id="zasync-jobs-bulk")
    form.getControl(name="ids:list").value = [str(j.id) for j in failures]
    form.submit(name="bulk", index=0)  # Retry (selected)
    [message] = messages(browser)
    assert "Retry: done for 2 job(s)" in message
    assert "status=failed" in browser.url  # back to the same filter
    retried = [int(i) for i in re.findall(r"→ (\d+)", message)]
    assert len(retried) == 2
    for job_id in retried:
        wait_for_result(find(job_id))

    # Delete a selection that mixes a deletable and a running job: the
    # message says which could not be deleted, and why.
    running = queue(site, dashboard_jobs.gated, 2)
    wait_for_start(running)
    browser.open(url(site, "list"))
    form = browser.getForm(id="zasync-jobs-bulk")
    form.getControl(name="ids:list").value = [str(fine.id), str(running.id)]
    press(form, "bulk", "delete-selected")
    done, refused = messages(browser)
    assert f"Delete: done for 1 job(s): {fine.id}." in done
    assert f"Delete job {running.id}: not done:" in refused
    assert "cannot be deleted" in refused
    assert find(fine.id) is None
    assert find(running.id) is not None

    # Nothing selected: said so.
    browser.open(url(site, "list"))
    press(browser.getForm(id="zasync-jobs-bulk"), "bulk", "retry-selected")
    assert "No job was selected" in messages(browser)[0]


def test_bulk_actions_on_a_whole_filter(site):
    mine = [later(site, n) for n in range(3)]
    theirs = later(site, "theirs", user=SITE_ADMINISTRATOR)
    browser = browser_for(site)
    browser.open(url(site, "list", status="pending", user=MANAGER))
    assert set(listed_ids(browser)) == {j.id for j in mine}
    press(browser.getForm(id="zasync-jobs-bulk"), "bulk", "cancel-filter")
    assert "Cancel: done for 3 job(s)" in messages(browser)[0]
    assert all(status_of(j.id) == "failed" for j in mine)
    assert status_of(theirs.id) == "pending"

    browser.open(url(site, "list", status="failed", error="cancelled"))
    press(browser.getForm(id="zasync-jobs-bulk"), "bulk", "delete-filter")
    assert "Delete: done for 3 job(s)" in messages(browser)[0]
    assert all(find(j.id) is None for j in mine)
    assert status_of(theirs.id) == "pending"


# -- quotas and set-aside jobs ------------------------------------------------------------


def test_quota_size_edit(site):
    browser = browser_for(site)
    browser.open(url(site))
    form = browser.getForm(index=_form_index(browser, 'name="quota" value="default"'))
    form.getControl(name="size").value = "3"
    form.submit()
    assert queues()[""].quotas["default"].size == 3
    assert (
        "Quota 'default' of queue 'default': 3 job(s) at once (was 1)."
        in (messages(browser)[0])
    )
    assert browser.url.startswith(url(site))

    token = browser.getControl(name="_authenticator", index=0).value
    for size, expected in (("-1", "0 or more"), ("many", "whole number")):
        browser.post(
            url(site, "quota"),
            f"quota=default&queue=default&size={size}&_authenticator={token}",
        )
        assert expected in messages(browser)[0]
        assert queues()[""].quotas["default"].size == 3


def test_quota_pause_resume_and_rate_shown(site):
    import datetime

    transaction.begin()
    queues()[""].quotas["default"].set_rate(10, datetime.timedelta(minutes=1))
    transaction.commit()
    browser = browser_for(site)
    browser.open(url(site))
    rate = browser.contents[browser.contents.find("zasync-quota-rate") :][:300]
    rate = re.sub(r"<[^>]+>", "", rate)
    assert re.search(r"10 starts per 1m, 0 in the period now", rate), rate
    form = browser.getForm(
        index=_form_index(browser, 'class="d-flex gap-2 align-items-center zasync-')
    )
    form.getControl(name="action").click()  # the one button: Pause
    quota = queues()[""].quotas["default"]
    assert quota.paused is not None
    assert quota.paused[1].endswith("(jobs dashboard)")
    assert "Quota 'default' of queue 'default' is paused" in messages(browser)[0]
    assert re.search(r'zasync-paused"[^>]*>paused<', browser.contents), (
        "the quota's badge"
    )
    form = browser.getForm(
        index=_form_index(browser, 'class="d-flex gap-2 align-items-center zasync-')
    )
    form.getControl(name="action").click()  # now: Resume
    assert queues()[""].quotas["default"].paused is None
    assert "is resumed: its jobs are claimed again" in messages(browser)[0]

    # Without the authenticator nothing changes.
    with pytest.raises(Forbidden, match="authenticator"):
        browser.post(url(site, "quota"), "quota=default&queue=default&action=pause")
    transaction.begin()
    assert queues()[""].quotas["default"].paused is None
    token = browser.getControl(name="_authenticator", index=0).value
    browser.post(
        url(site, "quota"),
        f"quota=nope&queue=default&action=pause&_authenticator={token}",
    )
    assert "Quota 'nope' was not changed: " in messages(browser)[0]


def set_aside(site, value="aside"):
    job = later(site, value)
    transaction.begin()
    queues()[""].set_aside(find(job.id), "PicklingError: a test set it aside")
    transaction.commit()
    return job


def test_set_aside_put_back_and_discard(site):
    back = set_aside(site, "back")
    gone = set_aside(site, SCRIPT)
    browser = browser_for(site)
    browser.open(url(site))
    assert count_shown(browser, "set-aside") == 2
    assert "PicklingError: a test set it aside" in browser.contents
    assert SCRIPT not in browser.contents
    # Inspect: the job's page says why.
    browser.open(url(site, "job", gone.id))
    assert "Set aside because" in browser.contents
    assert ">set aside<" in browser.contents
    assert SCRIPT not in browser.contents

    browser.open(url(site))
    rows = browser.contents
    assert f'data-job-id="{back.id}"' in rows
    form = browser.getForm(index=_form_index(browser, f'name="id" value="{back.id}"'))
    press(form, "action", "put-back")
    assert "Put back: done for 1 job(s)" in messages(browser)[0]
    assert status_of(back.id) == "pending"
    assert queues()[""].set_aside_reason(back.id) is None

    form = browser.getForm(index=_form_index(browser, f'name="id" value="{gone.id}"'))
    press(form, "action", "discard")
    assert "Discard: done for 1 job(s)" in messages(browser)[0]
    assert find(gone.id) is None
    assert count_shown(browser, "set-aside") == 0


def press(form, name, value):
    """Press the submit button of ``form`` called ``name`` with ``value``."""
    index = 0
    while True:
        button = form.getControl(name=name, index=index)  # LookupError: none
        if button.value == value:
            return button.click()
        index += 1


def _form_index(browser, marker):
    """The index of the page's form that contains ``marker``."""
    forms = re.findall(r"<form.*?</form>", browser.contents, re.S)
    return next(i for i, form in enumerate(forms) if marker in form)


# -- security ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "parts", [(), ("list",), ("json",), ("list", "json"), ("job", "1")]
)
def test_members_and_anonymous_are_refused(site, parts):
    job = queue(site, dashboard_jobs.echo, "secret")
    wait_for_result(job)
    parts = tuple(str(job.id) if p == "1" else p for p in parts)
    member = browser_for(site, MEMBER, handle_errors=True)
    member.open(url(site, *parts))
    assert member.url.endswith("/insufficient-privileges"), member.url
    assert "secret" not in member.contents
    anonymous = browser_for(site, None, handle_errors=True)
    anonymous.open(url(site, *parts))
    assert "/login?came_from=" in anonymous.url
    assert "secret" not in anonymous.contents


def test_members_cannot_act(site):
    pending = later(site)
    for target, body in (
        (url(site, "job", pending.id), "action=cancel"),
        (url(site, "list"), "bulk=cancel-filter"),
        (url(site, "quota"), "quota=default&size=9"),
    ):
        member = browser_for(site, MEMBER, handle_errors=True)
        member.post(target, body)
        assert member.url.endswith("/insufficient-privileges"), member.url
    assert queues()[""].quotas["default"].size == 1
    assert status_of(pending.id) == "pending"


def test_site_administrator_may_use_it(site):
    browser = browser_for(site, SITE_ADMINISTRATOR)
    browser.open(url(site))
    assert "Background jobs" in browser.contents


# -- JSON ----------------------------------------------------------------------------------------


def test_json_views_follow_a_running_job(site):
    job = queue(site, dashboard_jobs.gated, 4)
    wait_for_start(job)
    wait_for_annotation(job, "zasync.progress")
    browser = browser_for(site)

    def read(*parts, **query):
        browser.open(url(site, *parts, **query))
        assert browser.headers["Content-Type"].startswith("application/json")
        return json.loads(browser.contents)

    overview = read("json")
    [queue_info] = overview["queues"]
    assert queue_info["label"] == "default"
    assert queue_info["counts"]["active"] == 1
    [dispatcher] = queue_info["dispatchers"]
    assert dispatcher["threads_busy"] == 1
    assert [j["id"] for j in dispatcher["jobs"]] == [str(job.id)]

    seen = []

    def step_seen():
        info = read("job", job.id, "json")
        percent = info["progress"]["percent"]
        seen.append(percent)
        if percent < 50:
            dashboard_jobs.gate.set()  # one more step
            return None
        return info

    info = wait_for(step_seen, 10, transaction.begin, lambda: f"progress: {seen}")
    assert info["status"] == "active" and info["done"] is False
    assert info["progress"]["message"].endswith("of 4 steps")
    rows = read("list", "json", ids=f"{job.id},1,junk")["jobs"]
    assert [r["id"] for r in rows] == [str(job.id)]
    assert rows[0]["status"] == "active"
    assert rows[0]["progress"]["percent"] >= 50

    def finished():
        dashboard_jobs.release()
        info = read("job", job.id, "json")
        return info if info["done"] else None

    info = wait_for(finished, 10, transaction.begin, lambda: "not done")
    assert info["status"] == "succeeded"
    assert info["progress"]["percent"] == 100
    assert info["result"] == repr({"steps": 4})


def test_bad_input_is_said_and_escaped(site):
    browser = browser_for(site)
    browser.open(url(site, "list", older=SCRIPT, callable=SCRIPT))
    assert SCRIPT not in browser.contents
    error = re.search(
        r'id="zasync-jobs-filter-error">(.*?)</div>', browser.contents, re.S
    ).group(1)
    assert "is not a duration" in html.unescape(error)
    assert "&lt;script&gt;" in error
    # The same filter in a bulk action: refused in a status message.
    form = browser.getForm(id="zasync-jobs-bulk")
    token = form.getControl(name="_authenticator").value
    browser.post(
        url(site, "list"),
        urlencode({"bulk": "delete-filter", "older": SCRIPT, "_authenticator": token}),
    )
    assert SCRIPT not in browser.contents
    [message] = messages(browser)
    assert "The filter is wrong, nothing was done:" in message
    assert SCRIPT in message  # as text


def test_what_cannot_be_deleted_or_put_back_says_why(site):
    pending = later(site)
    failed = queue(site, dashboard_jobs.fail, "x")
    wait_for_result(failed)
    transaction.begin()
    q = queues()
    with pytest.raises(data.AdminError, match="is pending; cancel it first"):
        data.delete_job(q, pending.id)
    with pytest.raises(data.AdminError, match="not set aside; only set-aside"):
        data.put_back(q, failed.id)
    with pytest.raises(data.AdminError, match="not set aside"):
        data.act_on_job(q, "discard", failed.id, "test")
    with pytest.raises(data.AdminError, match="unknown action 'explode'"):
        data.act_on_job(q, "explode", failed.id, "test")
    transaction.abort()
    assert status_of(pending.id) == "pending"
    assert status_of(failed.id) == "failed"


def test_a_paused_queue_is_marked(site):
    from zasync import admin

    service_queues = getUtility(IAsyncService).getQueues()
    admin.pause_queue(service_queues, by="the night shift")
    transaction.commit()
    browser = browser_for(site)
    browser.open(url(site))
    assert re.search(
        r'class="badge text-bg-warning zasync-paused"[^>]*>paused<', browser.contents
    )
    assert "the night shift" in browser.contents
    admin.resume_queue(service_queues)
    transaction.commit()
    browser.open(url(site))
    assert "zasync-paused" not in browser.contents


def test_a_waiting_job_shows_what_it_waits_for(site):
    gated = queue(site, dashboard_jobs.gated, 1)
    # The put conflicts if the gated job changes (starts) before it
    # commits: it is tried again, as Zope retries a request.
    for attempt in transaction.manager.attempts():
        with attempt:
            login(site, MANAGER)
            service = getUtility(IAsyncService)
            waiting = service.queueJobAfter(
                [find(gated.id)], "run", dashboard_jobs.echo, site, "second"
            )
    assert status_of(waiting.id) == "waiting"
    browser = browser_for(site)
    browser.open(url(site, "job", waiting.id))
    assert 'id="zasync-job-depends-on"' in browser.contents
    assert f"/@@zasync-jobs/job/{gated.id}" in browser.contents
    assert ">waiting<" in browser.contents
    assert '<code id="zasync-job-on-dependency-failure">run</code>' in browser.contents
    browser.open(url(site, "job", gated.id))
    assert 'id="zasync-job-dependents"' in browser.contents
    assert f"/@@zasync-jobs/job/{waiting.id}" in browser.contents
    browser.open(url(site))
    assert 'data-count="waiting">1<' in browser.contents
    browser.open(url(site, "list", status="waiting"))
    assert f"/@@zasync-jobs/job/{waiting.id}" in browser.contents
    dashboard_jobs.release()
    wait_for_result(waiting)
    transaction.begin()
    assert status_of(waiting.id) == "succeeded"
