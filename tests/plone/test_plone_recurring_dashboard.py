"""The dashboard's recurring jobs page (@@zasync-jobs/recurring) through the
real publisher: the list, pause, resume and run now with the
authenticator, escaping, and who may see and use it."""

import html
import re

import pytest
import transaction
from dashboard_layer import FIXTURES, MANAGER, MEMBER, PASSWORD
from plone.testing.zope import Browser
from zExceptions import Forbidden
from zope.configuration.xmlconfig import string

import zasync
from zasync import recurring
from zasync.plone import recurring as zcml_recurring
from zasync.plone.testing import wait_for_result

globals().update(FIXTURES)

SCRIPT = "<script>alert('x')</script>"


@pytest.fixture
def site(dashboard):
    portal = dashboard["portal"]
    zcml_recurring._clear()
    string(
        '<configure xmlns="http://namespaces.zope.org/zope"'
        ' xmlns:zasync="http://namespaces.zope.org/zasync">'
        '<include package="zasync.plone" file="meta.zcml" />'
        '<zasync:recurring name="nightly-export" cron="0 3 * * *"'
        f' handler="plone_jobs.whoami" site="plone" user="{MANAGER}" />'
        "</configure>"
    )
    transaction.commit()
    zcml_recurring.sync(portal._p_jar.db())
    yield portal
    zcml_recurring._clear()


def browser_for(site, user=MANAGER, handle_errors=False):
    browser = Browser(site.aq_parent)
    browser.handleErrors = handle_errors
    if user is not None:
        browser.addHeader("Authorization", f"Basic {user}:{PASSWORD}")
    return browser


def page_url(site):
    return f"{site.absolute_url()}/@@zasync-jobs/recurring"


def definition(site, name="nightly-export"):
    transaction.begin()
    return recurring.get(zasync.get_queues(site._p_jar), name)


def messages(browser):
    found = re.findall(
        r'class="[^"]*portalMessage[^"]*"[^>]*>(.*?)</div>', browser.contents, re.S
    )
    return [html.unescape(re.sub(r"<[^>]+>", " ", m)).strip() for m in found]


def test_the_page_lists_the_definitions(site):
    browser = browser_for(site)
    browser.open(f"{site.absolute_url()}/@@zasync-jobs")
    browser.getLink("Recurring jobs").click()
    assert browser.url == page_url(site)
    row = browser.contents.split('data-name="nightly-export"')[1].split("</tr>")[0]
    assert (
        "cron &#x27;0 3 * * *&#x27; in UTC" in row or "cron '0 3 * * *' in UTC" in row
    )
    assert "plone_jobs.whoami" in row
    assert "ZCML" in row
    assert f"user {MANAGER!r}".replace("'", "&#x27;") in row or MANAGER in row
    assert "Run now" in row and "Pause" in row


def test_pause_resume_and_run_now(site):
    browser = browser_for(site)
    browser.open(page_url(site))
    browser.getControl("Pause").click()
    assert "Recurring job 'nightly-export' paused" in messages(browser)[0]
    assert definition(site).paused
    assert "zasync-recurring-paused" in browser.contents
    browser.getControl("Resume").click()
    assert "Recurring job 'nightly-export' resumed; next run" in messages(browser)[0]
    assert not definition(site).paused

    browser.getControl("Run now").click()
    [message] = messages(browser)
    job_id = int(re.search(r"job (\d+) queued now", message).group(1))
    job = definition(site).last_job
    assert job.id == job_id
    facts = wait_for_result(job)
    assert facts["user"] == MANAGER and facts["site"] == "/plone"
    browser.open(page_url(site))
    row = browser.contents.split('data-name="nightly-export"')[1].split("</tr>")[0]
    assert f"@@zasync-jobs/job/{job_id}" in row
    assert "succeeded" in row


def test_actions_need_the_authenticator(site):
    browser = browser_for(site)
    for body in (
        "action=pause&name=nightly-export",
        "action=run&name=nightly-export&_authenticator=forged",
    ):
        with pytest.raises(Forbidden, match="authenticator"):
            browser.post(page_url(site), body)
    assert not definition(site).paused
    assert definition(site).last_job is None


def test_an_unknown_name_or_action_says_why(site):
    browser = browser_for(site)
    browser.open(page_url(site))
    token = browser.getControl(name="_authenticator").value
    browser.post(page_url(site), f"action=pause&name=nope&_authenticator={token}")
    assert (
        "Recurring job 'nope': not done: no recurring job 'nope'"
        in messages(browser)[0]
    )
    browser.post(page_url(site), f"action=explode&name=x&_authenticator={token}")
    assert "Unknown action 'explode'" in messages(browser)[0]


def test_names_are_escaped(site):
    transaction.begin()
    recurring.define(
        zasync.get_queues(site._p_jar), SCRIPT, recurring.last_run, every=3600
    )
    transaction.commit()
    browser = browser_for(site)
    browser.open(page_url(site))
    assert SCRIPT not in browser.contents
    assert "&lt;script&gt;alert(" in browser.contents


def test_members_may_not_see_or_act(site):
    member = browser_for(site, MEMBER, handle_errors=True)
    member.open(page_url(site))
    assert member.url.endswith("/insufficient-privileges"), member.url
    member = browser_for(site, MEMBER, handle_errors=True)
    member.post(page_url(site), "action=pause&name=nightly-export")
    assert member.url.endswith("/insufficient-privileges"), member.url
    assert not definition(site).paused
