"""The jobs dashboard in a real browser (Debian's chromium through
Playwright) against a real WSGI server with a real dispatcher: list,
filter, page, open a job, retry, cancel, a running job's progress moving
without a reload, a Member refused. With ZASYNC_SCREENSHOTS set (make
screenshots) it saves the screenshots of docs/dashboard.md on the way."""

import base64
import datetime
import os
import re

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
from zope.component import getUtility

from zasync import clock
from zasync.plone.interfaces import IAsyncService
from zasync.plone.testing import wait_for_result, wait_for_start
from zasync.testing import wait_for_annotation
from zasync.testing.browser import launch_chromium

globals().update(FIXTURES)

TIMEOUT_MS = 20_000
DOCS_STATIC = os.path.join(
    os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
    "docs",
    "_static",
)


def screenshot(page, name):
    """Save docs/_static/<name>.png when ZASYNC_SCREENSHOTS is set (make
    screenshots): the docs show what the test saw."""
    if os.environ.get("ZASYNC_SCREENSHOTS"):
        page.screenshot(path=os.path.join(DOCS_STATIC, f"{name}.png"), full_page=True)


def auth(user):
    token = base64.b64encode(f"{user}:{PASSWORD}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


launch = launch_chromium


@pytest.fixture
def site(server):
    dashboard_jobs.reset()
    yield server["portal"]
    dashboard_jobs.release()


@pytest.fixture
def base_url(server):
    return f"http://{server['host']}:{server['port']}/plone/@@zasync-jobs"


def queue(site, func, *args, user=MANAGER, delay=None, quotas=None):
    transaction.begin()
    login(site, user)
    service = getUtility(IAsyncService)
    if quotas is not None:
        job = service.queueJobInQueue(None, quotas, func, site, *args)
    elif delay is None:
        job = service.queueJob(func, site, *args)
    else:
        begin_after = clock.utcnow() + delay
        job = service.queueJobWithDelay(None, begin_after, func, site, *args)
    transaction.commit()
    return job


def realistic_jobs(site):
    """A few jobs as a site has them: done, failed, waiting, and one
    running with its progress (the gated job, at its first step)."""
    done = [
        queue(site, dashboard_jobs.send_newsletter, "2026-03"),
        queue(site, dashboard_jobs.send_newsletter, "2026-04", 131),
        queue(
            site,
            dashboard_jobs.export_report,
            "/plone/reports/2026-q1.csv",
            user=SITE_ADMINISTRATOR,
        ),
    ]
    failed = queue(site, dashboard_jobs.notify_subscribers, "mail.example.org")
    for job in (*done, failed):
        wait_for_result(job)
    later = [
        queue(
            site,
            dashboard_jobs.export_report,
            f"/plone/reports/night-{n}.csv",
            delay=HOUR,
        )
        for n in range(2)
    ]
    # In no quota: it does not hold up the jobs of queueJob's quota.
    running = queue(site, dashboard_jobs.import_members, 4, quotas=())
    wait_for_start(running)
    wait_for_annotation(running, "zasync.progress")
    dashboard_jobs.gate.set()  # to its first step: 25 %
    return done, failed, later, running


HOUR = datetime.timedelta(hours=1)


def test_the_dashboard_in_a_browser(site, base_url):
    playwright_api = pytest.importorskip("playwright.sync_api")
    expect = playwright_api.expect
    done, failed, later, running = realistic_jobs(site)
    with playwright_api.sync_playwright() as playwright:
        browser = launch(playwright)
        try:
            context = browser.new_context(
                extra_http_headers=auth(MANAGER),
                viewport={"width": 1400, "height": 1000},
            )
            page = context.new_page()

            # The overview: the running job with its progress, counts.
            page.goto(base_url)
            row = page.locator(f'.zasync-dispatchers [data-job-id="{running.id}"]')
            expect(row.locator(".progress")).to_have_attribute(
                "aria-valuenow", "25", timeout=TIMEOUT_MS
            )
            expect(page.locator('[data-count="failed"]')).to_have_text("1")
            screenshot(page, "dashboard-overview")

            # The list: every job; filter the failed ones.
            page.goto(f"{base_url}/list")
            rows = page.locator("#zasync-jobs-list tbody tr[data-job-id]")
            expect(rows).to_have_count(7)
            screenshot(page, "dashboard-list")
            page.select_option("#zasync-filter-status", "failed")
            page.click("#zasync-filter-submit")
            expect(rows).to_have_count(1)
            expect(rows.first).to_have_attribute("data-job-id", str(failed.id))
            expect(rows.first.locator(".zasync-error")).to_contain_text(
                "refused the login"
            )

            # Pages of two.
            page.goto(f"{base_url}/list?size=2")
            expect(rows).to_have_count(2)
            first_page = [r.get_attribute("data-job-id") for r in rows.all()]
            page.click("#zasync-jobs-next")
            expect(rows).to_have_count(2)
            second_page = [r.get_attribute("data-job-id") for r in rows.all()]
            assert not set(first_page) & set(second_page)
            assert "start=2" in page.url

            # Open the failed job from the list and retry it.
            page.goto(f"{base_url}/list?status=failed")
            page.click(f'tr[data-job-id="{failed.id}"] a.zasync-job-link')
            expect(page.locator("#zasync-job-error")).to_contain_text(
                "refused the login"
            )
            page.click('#zasync-job-actions button[value="retry"]')
            message = page.locator(".portalMessage", has_text="Retry: done")
            expect(message).to_be_visible(timeout=TIMEOUT_MS)
            new_id = re.search(rf"{failed.id} → (\d+)", message.inner_text()).group(1)
            assert page.url.endswith(f"/job/{new_id}")
            # The retry fails again, and the page shows it when it does.
            expect(page.locator("#zasync-job-status")).to_have_attribute(
                "data-status", "failed", timeout=TIMEOUT_MS
            )

            # Cancel a waiting job from its page.
            page.goto(f"{base_url}/job/{later[0].id}")
            expect(page.locator("#zasync-job-status")).to_have_attribute(
                "data-status", "pending"
            )
            page.click('#zasync-job-actions button[value="cancel"]')
            expect(
                page.locator(".portalMessage", has_text="Cancel: done")
            ).to_be_visible()
            expect(page.locator("#zasync-job-status")).to_have_attribute(
                "data-status", "failed"
            )

            # The running job: its progress moves without a reload.
            page.goto(f"{base_url}/job/{running.id}")
            bar = page.locator("#zasync-job-progress .progress")
            expect(bar).to_have_attribute("aria-valuenow", "25", timeout=TIMEOUT_MS)
            screenshot(page, "dashboard-job")
            page.evaluate("window.zasyncNoReload = true")
            dashboard_jobs.gate.set()  # the next step: 50 %
            page.wait_for_function(
                """() => {
                    const bar = document.querySelector("#zasync-job-progress .progress");
                    return bar && bar.getAttribute("aria-valuenow") === "50";
                }""",
                timeout=TIMEOUT_MS,
            )
            assert page.evaluate("window.zasyncNoReload") is True  # same page
            expect(page.locator("#zasync-job-live")).to_contain_text("2 of 4 batches")

            # In the list too: its row follows the job to its end.
            page.goto(f"{base_url}/list?status=active")
            row = page.locator(f'tr[data-job-id="{running.id}"]')
            expect(row.locator(".progress")).to_have_attribute("aria-valuenow", "50")
            page.evaluate("window.zasyncNoReload = true")
            dashboard_jobs.release()
            expect(row.locator(".badge")).to_have_attribute(
                "data-status", "succeeded", timeout=TIMEOUT_MS
            )
            expect(row.locator(".progress")).to_have_attribute("aria-valuenow", "100")
            assert page.evaluate("window.zasyncNoReload") is True

            # A Member is refused, and sees none of it.
            member = browser.new_context(extra_http_headers=auth(MEMBER)).new_page()
            member.goto(base_url)
            assert "insufficient-privileges" in member.url
            assert "zasync-jobs-overview" not in member.content()
            member.goto(f"{base_url}/job/{failed.id}")
            assert "refused the login" not in member.content()
        finally:
            browser.close()
