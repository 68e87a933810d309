"""The browser demo (@@zasync-demo): its jobs through the real dispatcher,
its pages through the real publisher, its security."""

import datetime
import itertools
import json
import os
import re
import types
from urllib.error import HTTPError

import pytest
import transaction
from demo_layer import (
    CONTRIBUTOR,
    MANAGER,
    MEMBER,
    OTHER_CONTRIBUTOR,
    PASSWORD,
    SITE_ADMINISTRATOR,
    ZASYNC_DEMO_FUNCTIONAL_TESTING,
)
from plone.app.testing import login
from plone.app.textfield.value import RichTextValue
from plone.base.utils import get_installer
from plone.browserlayer.utils import registered_layers
from plone.testing.zope import Browser
from pytest_plone import fixtures_factory
from zExceptions import Forbidden
from zope.component import getUtility

import zasync.job
from plone import api
from zasync.deploy import site as serve_site
from zasync.failure import Failure
from zasync.plone.demo import jobs, views
from zasync.plone.demo.interfaces import IZasyncDemoLayer
from zasync.plone.interfaces import IAsyncService, IZasyncLayer
from zasync.plone.testing import wait_for_result
from zasync.testing import wait_for, wait_for_all_jobs

# Not kept for the session: the demo's Plone site is stacked on the same
# base as conftest's layers, and would hide theirs from the tests of the
# other modules until torn down (plone.testing stacks resources per base).
globals().update(
    fixtures_factory(((ZASYNC_DEMO_FUNCTIONAL_TESTING, "demo"),), keep_session=False)
)

PAGE = "@@zasync-demo"
JSON = "@@zasync-demo-jobs"


@pytest.fixture
def site(demo):
    return demo["portal"]


def browser_for(site, user=None, handle_errors=False):
    browser = Browser(site.aq_parent)
    browser.handleErrors = handle_errors
    if user is not None:
        browser.addHeader("Authorization", f"Basic {user}:{PASSWORD}")
    return browser


def page_url(site):
    return f"{site.absolute_url()}/{PAGE}"


def json_url(site):
    return f"{site.absolute_url()}/{JSON}"


def submit(browser, site, form_id, **fields):
    """Open the demo page and submit one of its forms."""
    browser.open(page_url(site))
    form = browser.getForm(id=form_id)
    for name, value in fields.items():
        form.getControl(name=name).value = value
    form.submit()


def queue():
    return getUtility(IAsyncService).getQueues()[""]


def jobs_in_queue():
    """Every job the queue holds, whatever its status."""
    transaction.begin()
    counts = queue().counts()
    return sum(
        counts[status]
        for status in ("pending", "assigned", "active", "callbacks", "completed")
    )


def demo_folder(site):
    transaction.begin()
    return site.get(jobs.DEMO_FOLDER_ID)


def latest_job(site):
    """The job queued last from the demo page."""
    ids = views.remembered_ids(demo_folder(site))
    assert ids, "no job was queued from the demo page"
    job = getUtility(IAsyncService).getQueues().find_job(ids[-1])
    assert job is not None
    return job


def read_json(browser, site):
    browser.open(json_url(site))
    assert browser.headers["Content-Type"].startswith("application/json")
    return json.loads(browser.contents)


# -- installation ---------------------------------------------------------------


def test_profile_installs_the_demo_layer_and_zasync(site):
    layers = registered_layers()
    assert IZasyncDemoLayer in layers
    assert IZasyncLayer in layers  # zasync.plone:default, its dependency
    setup = api.portal.get_tool("portal_setup")
    assert setup.getLastVersionForProfile("zasync.plone:demo") == ("1000",)


def demo_views_answer(site, user=MANAGER):
    """The HTTP status of the demo's page and JSON view, and of a POST that
    would queue a job (with a token taken while the page existed)."""
    browser = browser_for(site, user, handle_errors=True)
    statuses = []
    for url in (page_url(site), json_url(site)):
        try:
            browser.open(url)
        except HTTPError as exc:
            statuses.append(exc.code)
        else:
            statuses.append(int(browser.headers["Status"].split()[0]))
    return statuses


def test_uninstalling_zasync_removes_the_demo_and_keeps_its_content(site):
    manager = browser_for(site, MANAGER)
    submit(manager, site, "zasync-demo-create", count="2", title="Kept")
    wait_for_result(latest_job(site))
    browser = browser_for(site, MANAGER, handle_errors=True)
    browser.open(page_url(site))
    token = browser.getForm(id="zasync-demo-fail").getControl(name="_authenticator")
    token = token.value
    assert demo_views_answer(site) == [200, 200]
    queued = jobs_in_queue()

    transaction.begin()
    login(site, MANAGER)
    installer = get_installer(site)
    assert installer.uninstall_product("zasync.plone")
    transaction.commit()

    assert IZasyncDemoLayer not in registered_layers()
    assert IZasyncLayer not in registered_layers()
    setup = api.portal.get_tool("portal_setup")
    assert setup.getLastVersionForProfile("zasync.plone:demo") == "unknown"
    assert not installer.is_product_installed("zasync.plone")
    # The views are gone: the publisher finds nothing.
    assert demo_views_answer(site) == [404, 404]
    with pytest.raises(HTTPError, match="404"):
        browser.post(page_url(site), f"job=fail&_authenticator={token}")
    assert jobs_in_queue() == queued
    # What users made stays: the folder and its documents.
    folder = demo_folder(site)
    assert [doc.title for doc in folder.contentValues()] == ["Kept 1", "Kept 2"]

    # Installing zasync again does not bring the demo back; its own
    # profile does, with the jobs queued before.
    transaction.begin()
    login(site, MANAGER)
    installer.install_product("zasync.plone")
    transaction.commit()
    assert demo_views_answer(site) == [404, 404]
    transaction.begin()
    setup.runAllImportStepsFromProfile("profile-zasync.plone:demo")
    transaction.commit()
    assert demo_views_answer(site) == [200, 200]
    assert read_json(browser, site)["jobs"][0]["result"].startswith(
        "Created 2 documents titled “Kept 1”"
    )


def test_the_demo_uninstalls_alone(site):
    setup = api.portal.get_tool("portal_setup")
    transaction.begin()
    login(site, MANAGER)
    setup.runAllImportStepsFromProfile("profile-zasync.plone:demo-uninstall")
    transaction.commit()
    assert IZasyncDemoLayer not in registered_layers()
    assert setup.getLastVersionForProfile("zasync.plone:demo") == "unknown"
    assert demo_views_answer(site) == [404, 404]
    # zasync itself stays installed.
    assert IZasyncLayer in registered_layers()
    assert get_installer(site).is_product_installed("zasync.plone")
    # Neither profile shows in the add-ons control panel as an add-on.
    addons = site.restrictedTraverse("@@prefs_install_products_form").get_addons()
    assert "zasync.plone" in addons
    assert [pid for pid in addons if "demo" in pid] == []


# -- the jobs, through the real dispatcher ----------------------------------------


def test_create_documents_as_the_user_who_queued(site):
    browser = browser_for(site, CONTRIBUTOR)
    submit(browser, site, "zasync-demo-create", count="3", title="Report")
    assert browser.url == page_url(site)  # redirected after the POST
    assert "Queued job" in browser.contents

    folder = demo_folder(site)
    # The demo folder was made in the request, as the user.
    assert folder is not None and folder.Creator() == CONTRIBUTOR
    job = latest_job(site)
    assert job.callable_name == "zasync.plone.demo.jobs.create_documents"
    assert job.environment.user_id == CONTRIBUTOR
    result = wait_for_result(job)
    assert not isinstance(result, Failure), result
    assert result["created"] == 3
    assert result["title"] == "Report"
    assert result["paths"] == [
        f"/plone/{jobs.DEMO_FOLDER_ID}/report-{number}" for number in (1, 2, 3)
    ]

    transaction.begin()
    documents = folder.contentValues()
    assert [doc.title for doc in documents] == ["Report 1", "Report 2", "Report 3"]
    for document in documents:
        assert document.portal_type == "Document"
        assert document.Creator() == CONTRIBUTOR
        assert "created in the background" in document.text.raw
        assert api.content.get_state(document) == "private"
    assert job.progress == (1.0, "3 of 3 created")


def test_publish_contents_with_the_users_own_rights(site):
    contributor = browser_for(site, CONTRIBUTOR)
    submit(contributor, site, "zasync-demo-create", count="2", title="News")
    created = latest_job(site)
    # A Contributor may not publish: the job runs with their rights.
    submit(contributor, site, "zasync-demo-publish")
    refused = latest_job(site)
    assert refused.callable_name == "zasync.plone.demo.jobs.publish_contents"
    assert wait_for_result(created)["created"] == 2
    assert wait_for_result(refused) == {
        "published": 0,
        "already_published": 0,
        "refused": 2,
    }
    folder = demo_folder(site)
    states = [api.content.get_state(doc) for doc in folder.contentValues()]
    assert states == ["private", "private"]

    # A Manager may; items published already are skipped the next time.
    manager = browser_for(site, MANAGER)
    submit(manager, site, "zasync-demo-publish")
    published = latest_job(site)
    assert published.environment.user_id == MANAGER
    assert wait_for_result(published) == {
        "published": 2,
        "already_published": 0,
        "refused": 0,
    }
    folder = demo_folder(site)
    states = [api.content.get_state(doc) for doc in folder.contentValues()]
    assert states == ["published", "published"]
    # The catalog knows (folder_contents' Review state column, searches).
    path = "/".join(folder.getPhysicalPath())
    catalog = api.portal.get_tool("portal_catalog")
    brains = catalog.unrestrictedSearchResults(path={"query": path, "depth": 1})
    assert [brain.review_state for brain in brains] == ["published", "published"]
    published_here = catalog(review_state="published", path=path)
    assert len(published_here) == 2

    submit(manager, site, "zasync-demo-publish")
    again = latest_job(site)
    assert wait_for_result(again) == {
        "published": 0,
        "already_published": 2,
        "refused": 0,
    }
    info = read_json(manager, site)["jobs"][0]
    assert info["result"] == "Published 0; 2 already published, 0 refused"


def test_progress_goes_up_while_the_job_runs(site, monkeypatch):
    # Fewer, shorter steps than the page's 10 of 0.5 s; the same code.
    monkeypatch.setattr(views, "SLOW_STEPS", 5)
    monkeypatch.setattr(views, "SLOW_PAUSE", 0.2)
    browser = browser_for(site, CONTRIBUTOR)
    submit(browser, site, "zasync-demo-progress")
    # The page shown after queuing polls (with JavaScript) or offers a
    # Refresh link; no meta refresh, which the theme would apply to all.
    assert 'data-running="true"' in browser.contents
    assert 'id="zasync-demo-refresh"' in browser.contents
    assert 'http-equiv="refresh"' not in browser.contents.lower()
    job = latest_job(site)
    assert job.callable_name == "zasync.plone.demo.jobs.count_slowly"

    # Watch it through the JSON view, as the page's script does.
    seen = []

    def finished():
        info = read_json(browser, site)["jobs"][0]
        if info["percent"] is not None:
            seen.append(info["percent"])
        return info if info["done"] else None

    info = wait_for(
        finished,
        10,
        transaction.begin,
        lambda: f"the job did not finish; progress seen: {seen}",
    )
    assert seen == sorted(seen), f"progress went back: {seen}"
    assert [p for p in seen if 0 < p < 100], f"no progress seen under way: {seen}"
    assert info["percent"] == 100
    assert info["progress_message"] == "5 of 5 steps"
    assert info["status"] == "succeeded"
    assert info["result"].startswith("5 steps in ")
    transaction.begin()
    result = job.result
    assert result["steps"] == 5 and result["seconds"] >= 1.0
    assert job.progress == (1.0, "5 of 5 steps")


def test_failing_job_shows_its_failure(site):
    browser = browser_for(site, CONTRIBUTOR)
    submit(browser, site, "zasync-demo-fail")
    job = latest_job(site)
    result = wait_for_result(job)
    assert isinstance(result, Failure)
    assert result.check(jobs.DemoJobFailed)
    assert "fails on purpose" in result.getErrorMessage()
    # The progress was committed apart from the job: it stays.
    assert job.progress == (0.5, "half done, about to fail")

    info = read_json(browser, site)["jobs"][0]
    assert info["status"] == "failed" and info["failed"] and info["done"]
    assert info["error"].startswith(
        "zasync.plone.demo.jobs.DemoJobFailed: This demo job fails on purpose"
    )
    assert "raise DemoJobFailed(" in info["traceback"]
    assert info["result"] is None

    browser.open(page_url(site))
    assert "text-bg-danger" in browser.contents
    assert "DemoJobFailed: This demo job fails on purpose" in browser.contents
    assert "<summary>Traceback</summary>" in browser.contents


# -- the page and the JSON view ------------------------------------------------------


def test_page_renders_for_a_manager_and_a_contributor(site):
    for user in (MANAGER, CONTRIBUTOR):
        browser = browser_for(site, user)
        browser.open(page_url(site))
        contents = browser.contents
        assert "zasync demo: background jobs" in contents
        for form_id in ("create", "publish", "progress", "fail"):
            form = browser.getForm(id=f"zasync-demo-{form_id}")
            assert form.method.upper() == "POST"
            assert form.getControl(name="_authenticator").value
        empty = {
            MANAGER: "No job was queued from this page yet.",
            CONTRIBUTOR: "You have not queued a job from this page yet.",
        }
        assert empty[user] in contents
        assert 'id="portal-footer-wrapper"' in contents  # in Plone's main template
    # Looking queues nothing and creates no folder.
    assert demo_folder(site) is None
    assert jobs_in_queue() == 0


@pytest.mark.parametrize("view", [PAGE, JSON])
def test_anonymous_and_members_are_refused(site, view):
    anonymous = browser_for(site, handle_errors=True)
    anonymous.open(f"{site.absolute_url()}/{view}")
    assert "/login?came_from=" in anonymous.url  # Plone's login page
    assert "zasync demo" not in anonymous.contents

    member = browser_for(site, MEMBER, handle_errors=True)
    member.open(f"{site.absolute_url()}/{view}")
    assert member.url.endswith("/insufficient-privileges")
    assert "zasync demo" not in member.contents
    assert '"jobs"' not in member.contents


def test_post_without_csrf_token_is_refused_and_queues_nothing(site):
    browser = browser_for(site, MANAGER)
    for data in ("job=fail", "job=create&count=3&title=x&_authenticator=forged"):
        with pytest.raises(Forbidden, match="authenticator"):
            browser.post(page_url(site), data)
    assert jobs_in_queue() == 0
    assert demo_folder(site) is None
    # A GET with the same fields does not queue either.
    browser.open(f"{page_url(site)}?job=fail")
    assert jobs_in_queue() == 0


@pytest.mark.parametrize(
    "count, message",
    [
        ("0", "The number of documents must be from 1 to 200, not 0."),
        ("201", "The number of documents must be from 1 to 200, not 201."),
        ("-3", "The number of documents must be from 1 to 200, not -3."),
        ("many", "must be a whole number from 1 to 200, not 'many'."),
        ("", "must be a whole number from 1 to 200, not ''."),
    ],
)
def test_bad_number_of_documents_is_refused_and_queues_nothing(site, count, message):
    browser = browser_for(site, CONTRIBUTOR)
    submit(browser, site, "zasync-demo-create", count=count)
    assert browser.url == page_url(site)
    assert 'id="zasync-demo-error"' in browser.contents
    assert f"{message} No job was queued." in browser.contents
    assert jobs_in_queue() == 0
    assert demo_folder(site) is None


def test_user_data_is_escaped_on_the_page_and_plain_in_json(site):
    title = '<b>bold</b> & "quoted"'
    browser = browser_for(site, CONTRIBUTOR)
    # Refused (bad count): the title comes back in the form, escaped.
    submit(browser, site, "zasync-demo-create", count="0", title=title)
    assert "<b>bold</b>" not in browser.contents
    assert "&lt;b&gt;bold&lt;/b&gt; &amp; &quot;quoted&quot;" in browser.contents

    # Accepted: the result names the title.
    submit(browser, site, "zasync-demo-create", count="2", title=title)
    wait_for_result(latest_job(site))
    browser.open(page_url(site))
    assert "<b>bold</b>" not in browser.contents
    assert '“&lt;b&gt;bold&lt;/b&gt; &amp; "quoted" 1”' in browser.contents

    browser.open(json_url(site))
    raw = browser.contents
    assert "<" not in raw and ">" not in raw and "&" not in raw
    data = json.loads(raw)
    assert data["running"] is False
    [info] = data["jobs"]
    assert info["result"].startswith(
        'Created 2 documents titled “<b>bold</b> & "quoted" 1” to '
        '“<b>bold</b> & "quoted" 2”: /plone/zasync-demo/'
    )
    assert info["user"] == CONTRIBUTOR
    assert info["job"] == "Create documents"

    def plain(value):
        if isinstance(value, dict):
            return all(isinstance(k, str) and plain(v) for k, v in value.items())
        if isinstance(value, list):
            return all(plain(v) for v in value)
        return value is None or isinstance(value, str | int | float | bool)

    assert plain(data)


def test_json_lists_the_demo_jobs_newest_first_with_their_user(site):
    contributor = browser_for(site, CONTRIBUTOR)
    manager = browser_for(site, MANAGER)
    submit(contributor, site, "zasync-demo-create", count="1")
    submit(manager, site, "zasync-demo-fail")
    # A job queued elsewhere is not the demo's.
    login(site, MANAGER)
    other = getUtility(IAsyncService).queueJob(jobs.count_slowly, site, 1, 0)
    transaction.commit()
    wait_for_result(other)
    wait_for_all_jobs(site._p_jar)
    data = read_json(manager, site)
    assert data["running"] is False
    assert [(info["job"], info["user"]) for info in data["jobs"]] == [
        ("Fail on purpose", MANAGER),
        ("Create documents", CONTRIBUTOR),
    ]
    first = data["jobs"][1]
    assert first["status"] == "succeeded"
    assert first["queued"] <= first["started"] <= first["ended"]
    assert first["result"] == (
        "Created 1 document titled “Demo document 1”: "
        "/plone/zasync-demo/demo-document-1"
    )


def test_each_user_sees_their_own_jobs_and_managers_everyones(site):
    first = browser_for(site, CONTRIBUTOR)
    second = browser_for(site, OTHER_CONTRIBUTOR)
    submit(first, site, "zasync-demo-fail")
    failed = latest_job(site)
    submit(second, site, "zasync-demo-create", count="1", title="Second's")
    created = latest_job(site)
    # A job of the first user's that stays pending (an hour from now).
    folder = demo_folder(site)
    login(site, CONTRIBUTOR)
    pending = getUtility(IAsyncService).queueJobWithDelay(
        None,
        datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=1),
        jobs.count_slowly,
        folder,
    )
    views.remember(folder, pending)
    transaction.commit()
    wait_for_result(failed)
    wait_for_result(created)
    ids = {job: str(job.id) for job in (failed, created, pending)}

    def shown(browser):
        """The JSON view's data, and the page (its table apart: the
        documents' titles show in Plone's navigation too)."""
        data = read_json(browser, site)
        browser.open(page_url(site))
        page = browser.contents
        table = page[page.index('id="zasync-demo-jobs"') :]
        table = table[: table.index("</table>")]
        rows = re.findall(r'data-job-id="(\d+)"', page)
        assert rows == [info["id"] for info in data["jobs"]]
        return data, page, table

    data, page, table = shown(first)
    assert [info["id"] for info in data["jobs"]] == [ids[pending], ids[failed]]
    assert data["running"] is True
    assert "raise DemoJobFailed(" in table
    assert "Second" not in table
    assert ids[created] not in page

    data, page, table = shown(second)
    assert [info["id"] for info in data["jobs"]] == [ids[created]]
    assert {info["user"] for info in data["jobs"]} == {OTHER_CONTRIBUTOR}
    # Nothing of the first user's jobs: no traceback, no id, not running.
    assert data["running"] is False
    assert "DemoJobFailed" not in page and "Traceback" not in table
    assert ids[failed] not in page and ids[pending] not in page
    assert "Second" in table
    assert "Your jobs" in page

    everyone = [ids[pending], ids[created], ids[failed]]
    for user in (MANAGER, SITE_ADMINISTRATOR):
        data, page, table = shown(browser_for(site, user))
        assert [info["id"] for info in data["jobs"]] == everyone, user
        assert [info["user"] for info in data["jobs"]] == [
            CONTRIBUTOR,
            OTHER_CONTRIBUTOR,
            CONTRIBUTOR,
        ]
        assert "raise DemoJobFailed(" in page
        assert "by everyone" in page


def test_job_ids_are_strings_for_javascript(site, monkeypatch):
    # Odd ids above 2**53 are ones a double cannot hold (1 in 32 random
    # ids happens to be one it can).
    monkeypatch.setattr(zasync.job, "_sequence", itertools.count(1, 2))
    browser = browser_for(site, CONTRIBUTOR)
    submit(browser, site, "zasync-demo-fail")
    job = latest_job(site)
    wait_for_result(job)
    # More than a JavaScript number (or jq) holds exactly.
    assert job.id > 2**53 and float(job.id) != job.id
    assert f"Queued job {job.id}:" in browser.contents
    browser.open(json_url(site))
    assert f'"id": "{job.id}"' in browser.contents
    [info] = json.loads(browser.contents)["jobs"]
    assert info["id"] == str(job.id)
    browser.open(page_url(site))
    assert f'data-job-id="{job.id}"' in browser.contents
    # The page's script takes them as they come: no number parsing.
    script = browser.contents[browser.contents.index("<script>\n  /* Poll") :]
    assert "parseInt" not in script and "Number(" not in script


def test_the_page_keeps_the_last_jobs_only(site):
    login(site, MANAGER)
    folder = api.content.create(container=site, type="Folder", id="elsewhere")
    for job_id in range(views.KEEP + 5):
        views.remember(folder, types.SimpleNamespace(id=job_id))
    assert views.remembered_ids(folder) == list(range(5, views.KEEP + 5))


# -- the front page of the site zasync serve makes --------------------------------


def blank_front_page(site):
    """The front page as ``zasync serve`` left it before it wrote one."""
    transaction.begin()
    site.title = serve_site.SITE_TITLE
    site.description = ""
    site.text = None


def test_front_page_says_what_the_site_is_and_links_the_demo(site):
    blank_front_page(site)
    assert serve_site.ensure_front_page(site)
    transaction.commit()

    anonymous = browser_for(site)
    anonymous.open(site.absolute_url())
    text = " ".join(anonymous.contents.split())
    assert "This is a Plone site with <strong>zasync</strong>" in text
    assert "runs the dispatcher that executes the jobs" in text
    assert serve_site.FRONT_PAGE_DESCRIPTION in text
    assert "<code>make docs</code>" in text and "docs/quickstart.md" in text
    # The checkout's docs, where this test runs from.
    repo = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))
    assert f"<code>{os.path.join(repo, 'docs')}</code>" in text
    # The link to the demo is the site's own URL, wherever it is served.
    link = anonymous.getLink("Open the zasync demo")
    assert link.url == page_url(site)
    contributor = browser_for(site, CONTRIBUTOR)
    contributor.open(link.url)
    assert "zasync demo: background jobs" in contributor.contents

    # Written once: the next start leaves it alone.
    written = site.text.raw
    assert not serve_site.ensure_front_page(site)
    assert site.text.raw == written


@pytest.mark.parametrize("edit", ["title", "description", "text"])
def test_front_page_a_user_wrote_is_kept(site, edit):
    blank_front_page(site)
    if edit == "title":
        site.title = "Our intranet"
    elif edit == "description":
        site.description = "Ours"
    else:
        site.text = RichTextValue("<p>Our own words</p>", "text/html", "text/html")
    before = (site.title, site.description, site.text)
    assert not serve_site.front_page_is_blank(site)
    assert not serve_site.ensure_front_page(site)
    assert (site.title, site.description, site.text) == before


def test_front_page_of_a_web_instance_in_a_cluster(site):
    # What `zasync cluster` makes: the site's web process only queues.
    from zope.component import getGlobalSiteManager

    from zasync.plone import roles
    from zasync.plone.interfaces import IProcessRole

    registry = getGlobalSiteManager()
    registry.registerUtility(roles.SINGLE_DB_INSTANCE, IProcessRole)
    try:
        text = serve_site.front_page_html(site)
    finally:
        registry.unregisterUtility(roles.SINGLE_DB_INSTANCE, IProcessRole)
    assert "only queues jobs, and worker processes run them" in text
    assert "embedded" not in text and "runs the dispatcher" not in text
    assert "embedded" in serve_site.front_page_html(site)
