"""The browser demo is translatable: every text it shows is a message id of
the ``zasync`` domain, with no catalog needed to tell.

Two checks: i18ndude finds no text without ``i18n:translate`` (or
attribute without ``i18n:attributes``) in the templates; and the page, its
status messages, errors and JSON rendered through a marking catalog (zope.i18n's
test catalog, which shows each translated message as
``[[zasync][msgid (default)]]``) show nothing outside such marks but the
jobs' own data (ids, times, user ids, tracebacks).
"""

import datetime
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import test_plone_demo
import transaction
from demo_layer import CONTRIBUTOR, MANAGER, PASSWORD
from lxml import html
from plone.app.testing import login, logout
from plone.testing.zope import Browser
from zope.component import getGlobalSiteManager, getUtility
from zope.i18n import testmessagecatalog
from zope.i18n.interfaces import ITranslationDomain
from zope.i18n.translationdomain import TranslationDomain

import zasync.plone
from zasync.plone.demo import jobs, views
from zasync.plone.interfaces import IAsyncService
from zasync.plone.testing import wait_for_result

# The demo layer's fixtures, as test_plone_demo made them: zope.pytestlayer
# makes a layer's fixtures once per process, in the first module to ask.
globals().update(
    (name, value)
    for name, value in vars(test_plone_demo).items()
    if name in ("demo", "demo_class", "demo_session") or name.startswith("zope_layer_")
)

PACKAGE = Path(zasync.plone.__file__).parent
TEMPLATES = [
    path
    for path in (
        PACKAGE / "demo" / "templates" / "demo.pt",
        PACKAGE / "myjobs" / "templates" / "my_jobs.pt",
    )
    if path.exists()
]
PAGE = "@@zasync-demo"
JSON = "@@zasync-demo-jobs"


# -- the templates, statically ---------------------------------------------------


def i18ndude():
    found = shutil.which("i18ndude", path=os.path.dirname(sys.executable))
    found = found or shutil.which("i18ndude")
    if found is None:
        message = "no i18ndude (pip install i18ndude)"
        if os.environ.get("CI"):
            pytest.fail(f"{message}: CI needs it")
        pytest.skip(message)
    return found


def untranslated(template):
    """What ``i18ndude find-untranslated`` reports of ``template``: (its
    exit status, its errors)."""
    done = subprocess.run(
        [i18ndude(), "find-untranslated", "-n", str(template)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return done.returncode, done.stdout + done.stderr


def test_the_demo_template_is_checked():
    assert PACKAGE / "demo" / "templates" / "demo.pt" in TEMPLATES


@pytest.mark.parametrize("template", TEMPLATES, ids=lambda path: path.name)
def test_templates_have_no_untranslated_text(template):
    status, report = untranslated(template)
    assert "-ERROR-" not in report, report
    assert status == 0, report


def test_the_check_finds_an_untranslated_text(tmp_path):
    source = (PACKAGE / "demo" / "templates" / "demo.pt").read_text()
    heading = '<h1 class="documentFirstHeading"'
    assert heading in source
    bad = tmp_path / "demo.pt"
    bad.write_text(
        source.replace(
            heading,
            '<p>Words nobody translates</p>\n  <a href="#" title="Untitled">x</a>\n  '
            + heading,
            1,
        )
    )
    status, report = untranslated(bad)
    assert status != 0
    assert "Words nobody translates" in report
    assert "title attribute of <a> lacks i18n:attributes" in report


# -- the page, rendered through a marking catalog --------------------------------


class MarkingDomain(TranslationDomain):
    """The ``zasync`` domain in zope.i18n's test language, whatever the
    request asks for: each message shows as ``[[zasync][msgid (default)]]``,
    its ``${names}`` filled in."""

    def __init__(self):
        super().__init__("zasync")
        self.addCatalog(testmessagecatalog.TestMessageCatalog("zasync"))

    def translate(
        self,
        msgid,
        mapping=None,
        context=None,
        target_language=None,
        default=None,
        msgid_plural=None,
        default_plural=None,
        number=None,
    ):
        return super().translate(
            msgid, mapping, None, "test", default, msgid_plural, default_plural, number
        )


@pytest.fixture
def marked(demo):
    """The ``zasync`` domain replaced by a :class:`MarkingDomain` for the
    test."""
    registry = getGlobalSiteManager()
    own = [
        registration.component
        for registration in registry.registeredUtilities()
        if registration.provided is ITranslationDomain and registration.name == "zasync"
    ]
    domain = MarkingDomain()
    registry.registerUtility(domain, ITranslationDomain, "zasync")
    yield domain
    registry.unregisterUtility(domain, ITranslationDomain, "zasync")
    for component in own:
        registry.registerUtility(component, ITranslationDomain, "zasync")


@pytest.fixture
def site(demo, marked):
    return demo["portal"]


MARK = re.compile(r"\[\[zasync\]\[[^\[\]]*\]\]")


def unmarked(text):
    """``text`` without its marked (translated) parts, innermost first."""
    while True:
        shorter = MARK.sub(" ", text)
        if shorter == text:
            return text
        text = shorter


def browser_for(site, user):
    browser = Browser(site.aq_parent)
    browser.handleErrors = False
    browser.addHeader("Authorization", f"Basic {user}:{PASSWORD}")
    return browser


def submit(browser, site, form_id, **fields):
    browser.open(f"{site.absolute_url()}/{PAGE}")
    form = browser.getForm(id=form_id)
    for name, value in fields.items():
        form.getControl(name=name).value = value
    form.submit()


def latest_job(site):
    transaction.begin()
    ids = views.remembered_ids(site.get(jobs.DEMO_FOLDER_ID))
    return getUtility(IAsyncService).getQueues().find_job(ids[-1])


def read_json(browser, site):
    browser.open(f"{site.absolute_url()}/{JSON}")
    return json.loads(browser.contents)


def region(contents, selector_id):
    [found] = html.fromstring(contents).xpath(f'//*[@id="{selector_id}"]')
    return found


def shown_text(element):
    """The text of ``element`` a reader sees, less what is code or a
    traceback (a job's data)."""
    for code in element.xpath(".//script|.//style|.//pre"):
        code.drop_tree()
    return element.text_content()


ISO = re.compile(r"\d{4}-\d\d-\d\dT[\d:.]+([+-]\d\d:\d\d)?")
READ_ATTRIBUTES = (
    "title",
    "alt",
    "placeholder",
    "aria-label",
    "data-empty",
    "data-progress-label",
    "data-traceback-label",
)


def assert_all_marked(contents, data=None):
    """Everything ``#content`` of the page shows is marked, but the jobs'
    own data; so are the attributes people read."""
    content = region(contents, "content")
    for element in content.iter():
        for name in READ_ATTRIBUTES:
            value = element.get(name)
            if value is None or (
                name == "title" and (not value or ISO.fullmatch(value))
            ):
                continue
            assert not unmarked(value).strip(), (element.tag, name, value)
    rest = unmarked(shown_text(content))
    data_words = set()
    for job in (data or {}).get("jobs", ()):
        data_words.update((job["id"], job["user"]))
        data_words.update(
            job[f"{name}_time"] for name in ("queued", "started", "ended")
        )
        if job["error"]:
            data_words.add(job["error"].partition(" ")[0])  # the type's name
    left = [word for word in rest.split() if word not in data_words]
    assert left == [], rest


def test_the_page_without_jobs_shows_message_ids_only(site):
    for user in (MANAGER, CONTRIBUTOR):
        browser = browser_for(site, user)
        browser.open(f"{site.absolute_url()}/{PAGE}")
        assert (
            "[[zasync][demo_title (zasync demo: background jobs)]]" in browser.contents
        )
        assert_all_marked(browser.contents)
        empty = "demo_empty_all" if user == MANAGER else "demo_empty_own"
        assert f"[[zasync][{empty} (" in browser.contents


def test_the_page_with_jobs_shows_message_ids_and_job_data_only(site):
    browser = browser_for(site, MANAGER)
    submit(browser, site, "zasync-demo-create", count="5", title="<script>x</script>")
    # The status message (after Plone's own "Info"): marked, the job's
    # label too.
    message = region(browser.contents, "global_statusmessage").text_content()
    message = message[message.index("[[zasync][") :]
    assert "[[zasync][demo_queued (Queued job " in message
    assert "[[zasync][demo_job_create (Create documents)]]" in message
    assert not unmarked(message).strip(), message
    wait_for_result(latest_job(site))
    # The demo folder was titled in the request's language.
    transaction.begin()
    folder = site.get(jobs.DEMO_FOLDER_ID)
    assert folder.title == "[[zasync][demo_folder_title (zasync demo)]]"
    for form_id in ("zasync-demo-publish", "zasync-demo-fail"):
        submit(browser, site, form_id)
        wait_for_result(latest_job(site))
    # Jobs queued otherwise: counting (done), pending, and by Anonymous.
    login(site, MANAGER)
    service = getUtility(IAsyncService)
    counted = service.queueJob(jobs.count_slowly, folder, 2, 0.0)
    later = datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=1)
    pending = service.queueJobWithDelay(None, later, jobs.count_slowly, folder)
    logout()
    anonymous = service.queueJobWithDelay(None, later, jobs.count_slowly, folder)
    for job in (counted, pending, anonymous):
        views.remember(folder, job)
    transaction.commit()
    wait_for_result(counted)

    data = read_json(browser, site)
    assert len(data["jobs"]) == 6
    for job in data["jobs"]:
        for name in (
            "job",
            "status_text",
            "percent_text",
            "progress_message",
            "result",
        ):
            value = job[name]
            assert value is None or not unmarked(value).strip(), (name, value)
        if job["error"] is not None:
            type_name, _, message = job["error"].partition(": ")
            assert type_name == "zasync.plone.demo.jobs.DemoJobFailed"
            assert "[[zasync][demo_failure_message (" in message
            assert not unmarked(message).strip(), message
    by_status = {job["status"]: job for job in data["jobs"]}
    assert set(by_status) == {"succeeded", "failed", "pending"}
    assert by_status["failed"]["status_text"] == "[[zasync][status_failed (failed)]]"
    assert data["jobs"][0]["user"] == "[[zasync][demo_anonymous (Anonymous)]]"
    results = [job["result"] or "" for job in data["jobs"]]
    assert any("[[zasync][demo_result_more_paths (" in text for text in results)
    assert any(
        "demo_result_created_titled (Created 5 documents" in text for text in results
    )
    assert any("[[zasync][demo_result_published (" in text for text in results)
    assert any("[[zasync][demo_result_steps (2 steps in" in text for text in results)
    progress = {job["progress_message"] for job in data["jobs"]}
    assert "[[zasync][demo_progress_created (5 of 5 created)]]" in progress
    assert "[[zasync][demo_progress_failing (half done, about to fail)]]" in progress
    assert "[[zasync][demo_progress_steps (2 of 2 steps)]]" in progress

    browser.open(f"{site.absolute_url()}/{PAGE}")
    assert "<script>x</script>" not in browser.contents  # still escaped
    assert_all_marked(browser.contents, data)


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"count": "0"}, "demo_error_count_out_of_range"),
        ({"count": "many"}, "demo_error_count_not_a_number"),
        ({"count": "2", "title": " "}, "demo_error_title_empty"),
        ({"count": "2", "title": "x" * 101}, "demo_error_title_too_long"),
    ],
)
def test_errors_are_message_ids(site, fields, message):
    browser = browser_for(site, CONTRIBUTOR)
    submit(browser, site, "zasync-demo-create", **fields)
    error = region(browser.contents, "zasync-demo-error").text_content()
    assert error.startswith("[[zasync][demo_error_not_queued ([[zasync][" + message)
    assert not unmarked(error).strip(), error
    assert_all_marked(browser.contents)


def test_an_unknown_job_is_a_message_id_too(site):
    browser = browser_for(site, CONTRIBUTOR)
    browser.open(f"{site.absolute_url()}/{PAGE}")
    token = browser.getForm(id="zasync-demo-fail").getControl(name="_authenticator")
    browser.post(
        f"{site.absolute_url()}/{PAGE}", f"job=nothing&_authenticator={token.value}"
    )
    error = region(browser.contents, "zasync-demo-error").text_content()
    assert error.startswith("[[zasync][demo_error_unknown_job (Unknown job 'nothing'")
    assert not unmarked(error).strip(), error
