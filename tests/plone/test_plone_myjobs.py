"""@@my-jobs and the notices of finished jobs, through the real publisher
and a real dispatcher: each user sees their own jobs and nobody else's."""

import datetime
import json

import myjobs_jobs
import pytest
import transaction
import ZODB
from plone.app.testing import (
    SITE_OWNER_NAME,
    TEST_USER_NAME,
    TEST_USER_PASSWORD,
    login,
)
from plone.testing.zope import Browser
from zExceptions import Unauthorized
from ZODB.FileStorage import FileStorage
from zope.component import getUtility
from zope.component.hooks import setSite

from plone import api
from zasync import clock
from zasync.plone import queuers
from zasync.plone.interfaces import IAsyncService
from zasync.plone.myjobs import notices, views
from zasync.testing import wait_for_result

OTHER = "other-member"
OTHER_PASSWORD = "other-secret-password"


def service():
    return getUtility(IAsyncService)


def browser_for(app, user=TEST_USER_NAME, password=TEST_USER_PASSWORD):
    browser = Browser(app)
    browser.handleErrors = False
    if user is not None:
        browser.addHeader("Authorization", f"Basic {user}:{password}")
    return browser


def add_member(portal, user_id=OTHER, password=OTHER_PASSWORD):
    login(portal.aq_parent, SITE_OWNER_NAME)
    api.user.create(
        email=f"{user_id}@example.org",
        username=user_id,
        password=password,
        roles=["Member"],
    )


def queue_as(portal, user_id, func, *args, count=1):
    login(portal, user_id)
    jobs = [service().queueJob(func, portal, *args) for _ in range(count)]
    transaction.commit()
    return jobs


def my_jobs_json(browser, portal, start=0):
    browser.open(f"{portal.absolute_url()}/@@my-jobs-json?b_start={start}")
    assert browser.headers["Content-Type"].startswith("application/json")
    return json.loads(browser.contents)


@pytest.fixture
def site(functional_portal):
    portal = functional_portal
    add_member(portal)
    transaction.commit()
    return portal


def test_each_user_sees_their_own_jobs_and_nobody_elses(functional_app, site):
    mine = queue_as(site, TEST_USER_NAME, myjobs_jobs.note, " mine", count=2)
    theirs = queue_as(site, OTHER, myjobs_jobs.note, " theirs")
    for job in [*mine, *theirs]:
        wait_for_result(job)

    data = my_jobs_json(browser_for(functional_app), site)
    assert [job["id"] for job in data["jobs"]] == [str(mine[1].id), str(mine[0].id)]
    assert {job["status"] for job in data["jobs"]} == {"succeeded"}
    assert data["running"] is False

    page = browser_for(functional_app)
    page.open(f"{site.absolute_url()}/@@my-jobs")
    assert str(mine[0].id) in page.contents
    assert str(theirs[0].id) not in page.contents

    other = browser_for(functional_app, OTHER, OTHER_PASSWORD)
    data = my_jobs_json(other, site)
    assert [job["id"] for job in data["jobs"]] == [str(theirs[0].id)]


def test_anonymous_is_asked_to_log_in(functional_app, site):
    for view in ("@@my-jobs", "@@my-jobs-json"):
        with pytest.raises(Unauthorized):
            browser_for(functional_app, None).open(f"{site.absolute_url()}/{view}")


def test_a_later_account_with_the_same_id_sees_none_of_the_earlier_ones_jobs(
    functional_app, site
):
    add_member(site, "again", "first-password")
    (job,) = queue_as(site, "again", myjobs_jobs.note, " by the first")
    wait_for_result(job)
    login(site.aq_parent, SITE_OWNER_NAME)
    api.user.delete(username="again")
    add_member(site, "again", "second-password")
    transaction.commit()
    data = my_jobs_json(browser_for(functional_app, "again", "second-password"), site)
    assert data["jobs"] == []


def test_values_from_a_job_are_shown_as_text(functional_app, site):
    (job,) = queue_as(
        site, TEST_USER_NAME, myjobs_jobs.echo, "<script>alert(1)</script>"
    )
    wait_for_result(job)
    page = browser_for(functional_app)
    page.open(f"{site.absolute_url()}/@@my-jobs")
    assert "<script>alert(1)</script>" not in page.contents
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.contents
    raw = browser_for(functional_app)
    raw.open(f"{site.absolute_url()}/@@my-jobs-json")
    assert "<script>" not in raw.contents
    assert json.loads(raw.contents)["jobs"][0]["result"] == repr(
        "<script>alert(1)</script>"
    )


def test_pages_of_jobs(functional_app, site, monkeypatch):
    monkeypatch.setattr(views, "PAGE_SIZE", 2)
    jobs = queue_as(site, TEST_USER_NAME, myjobs_jobs.note, " paged", count=3)
    browser = browser_for(functional_app)
    first = my_jobs_json(browser, site)
    assert [j["id"] for j in first["jobs"]] == [str(jobs[2].id), str(jobs[1].id)]
    assert first["more"] is True
    second = my_jobs_json(browser, site, start=2)
    assert [j["id"] for j in second["jobs"]] == [str(jobs[0].id)]
    assert second["more"] is False
    browser.open(f"{site.absolute_url()}/@@my-jobs")
    assert browser.getLink("Older jobs").url.endswith("@@my-jobs?b_start=2")


def test_my_jobs_is_in_the_user_menu(functional_app, site):
    action = site.portal_actions.user["zasync-my-jobs"]
    assert action.url_expr.endswith("/@@my-jobs")
    browser = browser_for(functional_app)
    browser.open(site.absolute_url())
    assert browser.getLink("My jobs").url == f"{site.absolute_url()}/@@my-jobs"


# -- notices --------------------------------------------------------------------


def watched_cookie(request):
    return request.response.cookies[notices.COOKIE]


def test_notify_when_done_tells_the_user_on_their_next_page(functional_app, site):
    request = site.REQUEST
    login(site, TEST_USER_NAME)
    done = service().queueJob(myjobs_jobs.note, site, " told")
    failing = service().queueJob(myjobs_jobs.fail, site)
    later = service().queueJobWithDelay(
        None, clock.utcnow() + datetime.timedelta(hours=1), myjobs_jobs.echo, site
    )
    for job in (done, failing, later):
        assert service().notifyWhenDone(job) is job
    cookie = watched_cookie(request)
    assert cookie["value"] == f"{done.id} {failing.id} {later.id}"
    assert cookie["Path"] == site.absolute_url_path()
    transaction.commit()
    wait_for_result(done)
    wait_for_result(failing)

    browser = browser_for(functional_app)
    browser.open(f"{site.absolute_url()}/robots.txt")  # where cookies go
    browser.cookies[notices.COOKIE] = cookie["value"]
    browser.open(site.absolute_url())
    shown = browser.contents
    assert f"({done.id}) has finished" in shown
    assert f"({failing.id}) failed" in shown
    assert str(later.id) not in shown  # not finished: still waited for
    assert browser.cookies[notices.COOKIE] == str(later.id)

    browser.open(site.absolute_url())  # told once
    assert f"({done.id}) has finished" not in browser.contents


def test_no_notice_of_somebody_elses_job(functional_app, site):
    (theirs,) = queue_as(site, OTHER, myjobs_jobs.note, " secret")
    wait_for_result(theirs)
    browser = browser_for(functional_app)
    browser.open(f"{site.absolute_url()}/robots.txt")
    browser.cookies[notices.COOKIE] = f"{theirs.id} 12 not-an-id"
    browser.open(site.absolute_url())
    assert str(theirs.id) not in browser.contents
    assert notices.COOKIE not in browser.cookies  # nothing left to wait for


def test_asyncfunction_can_notify(site):
    login(site, TEST_USER_NAME)
    job = myjobs_jobs.told(site, "hello")
    assert watched_cookie(site.REQUEST)["value"] == str(job.id)
    transaction.abort()


def test_notify_needs_a_queued_job(site):
    login(site, TEST_USER_NAME)
    job = service().queueJob(myjobs_jobs.echo, site)
    with pytest.raises(ValueError, match="not queued yet"):
        notices.notify_when_done(type(job)(myjobs_jobs.echo))
    transaction.abort()


# -- the index ------------------------------------------------------------------


def test_queuing_at_the_same_time_as_the_same_user_does_not_conflict(tmp_path):
    db = ZODB.DB(FileStorage(str(tmp_path / "ids.fs")))
    try:
        tm = transaction.TransactionManager()
        conn = db.open(tm)
        conn.root()["ids"] = queuers.QueuedIds()
        tm.commit()
        managers = [transaction.TransactionManager() for _ in range(2)]
        connections = [db.open(each) for each in managers]
        for number, conn in enumerate(connections):
            conn.root()["ids"].add(100 + number)
        for each in managers:
            each.commit()  # the second resolves, it does not conflict
        tm.begin()
        conn = db.open()
        assert list(conn.root()["ids"]) == [101, 100]
        conn.close()
    finally:
        db.close()


def test_the_index_keeps_the_newest(monkeypatch):
    monkeypatch.setattr(queuers, "KEEP", 3)
    ids = queuers.QueuedIds()
    for job_id in (5, 1, 4, 2, 3):
        ids.add(job_id)
    assert list(ids) == [5, 4, 3]
    resolved = ids._p_resolveConflict(
        {"ids": (1, 2)}, {"ids": (1, 2, 7)}, {"ids": (2, 3, 8)}
    )
    assert resolved["ids"] == (3, 7, 8)


def test_jobs_queued_elsewhere_are_not_in_the_index(site):
    # A job put into a queue directly (not through IAsyncService) has no
    # Plone queuer: my-jobs cannot and does not show it.
    setSite(site)
    login(site, TEST_USER_NAME)
    job = service().getQueues()[""].put(myjobs_jobs.echo)
    transaction.commit()
    assert queuers.queuer_key(job) is None
    assert queuers.job_ids(site, queuers.user_key()) == []
