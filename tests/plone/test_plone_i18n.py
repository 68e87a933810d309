"""The zasync translation domain: the .pot says every text the code and
templates show, German translates all of it, and the pages render in
German in a German site."""

import pathlib
import subprocess
import sys

import pytest
import transaction
from i18ndude.catalog import MessageCatalog
from plone.app.testing import SITE_OWNER_NAME, SITE_OWNER_PASSWORD
from plone.registry.interfaces import IRegistry
from plone.testing.zope import Browser
from zope.component import getUtility

import zasync.plone

PACKAGE = pathlib.Path(zasync.plone.__file__).parent
LOCALES = PACKAGE / "locales"
POT = LOCALES / "zasync.pot"
LANGUAGES = ["de"]


def catalog(path):
    return MessageCatalog(filename=str(path))


def msgids(path):
    return {msgid for msgid in catalog(path) if msgid}


def test_the_pot_has_every_message_of_the_code(tmp_path):
    """`make i18n` was run after the last text was added or changed."""
    fresh = tmp_path / "zasync.pot"
    i18ndude = pathlib.Path(sys.executable).with_name("i18ndude")
    subprocess.run(
        [str(i18ndude), "rebuild-pot", "--pot", str(fresh), "--create", "zasync"]
        + [str(PACKAGE)],
        check=True,
        capture_output=True,
    )
    missing = msgids(fresh) - msgids(POT)
    gone = msgids(POT) - msgids(fresh)
    assert not missing, f"not in zasync.pot (run make i18n): {sorted(missing)}"
    assert not gone, f"in zasync.pot, gone from the code (make i18n): {sorted(gone)}"


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_message_is_translated(language):
    po = catalog(LOCALES / language / "LC_MESSAGES" / "zasync.po")
    untranslated = sorted(
        msgid for msgid in msgids(POT) if msgid not in po or not po[msgid].msgstr
    )
    assert untranslated == [], f"{language}: translate {untranslated}"


@pytest.mark.parametrize("language", LANGUAGES)
def test_translations_keep_the_placeholders(language):
    import re

    po = catalog(LOCALES / language / "LC_MESSAGES" / "zasync.po")
    pot = catalog(POT)
    wrong = []
    for msgid in msgids(POT):
        entry = pot[msgid]
        default = next(
            (
                c.partition("Default:")[2].strip().strip('"')
                for c in entry.automatic_comments
                if "Default:" in c
            ),
            msgid,
        )
        wanted = set(re.findall(r"\$\{(\w+)\}", default))
        got = set(re.findall(r"\$\{(\w+)\}", po[msgid].msgstr if msgid in po else ""))
        if wanted != got:
            wrong.append((msgid, sorted(wanted), sorted(got)))
    assert wrong == []


@pytest.fixture
def german(functional_portal):
    registry = getUtility(IRegistry)
    registry["plone.default_language"] = "de"
    registry["plone.available_languages"] = ["de", "en"]
    transaction.commit()
    return functional_portal


def open_as_owner(app, url):
    browser = Browser(app)
    browser.handleErrors = False
    browser.addHeader("Authorization", f"Basic {SITE_OWNER_NAME}:{SITE_OWNER_PASSWORD}")
    browser.addHeader("Accept-Language", "de")
    browser.open(url)
    return " ".join(browser.contents.split())


def test_my_jobs_in_german(functional_app, german):
    page = open_as_owner(functional_app, f"{german.absolute_url()}/@@my-jobs")
    assert "Meine Hintergrund-Jobs" in page
    assert "My background jobs" not in page


def test_the_control_panel_in_german(functional_app, german):
    page = open_as_owner(
        functional_app, f"{german.absolute_url()}/@@zasync-controlpanel"
    )
    assert "Jede Site dieser Datenbank" in page
    assert "Every site of this database" not in page
    assert "Abfrageintervall (Sekunden)" in page


def test_the_dashboard_in_german(functional_app, german):
    from zope.component.hooks import setSite

    import zasync
    from zasync.plone.interfaces import IAsyncService

    setSite(german)
    queue = getUtility(IAsyncService).getQueues()[""]
    queue.put(zasync.Job(pathlib.Path.cwd))  # a pending job to list
    transaction.commit()
    page = open_as_owner(functional_app, f"{german.absolute_url()}/@@zasync-jobs")
    for text in (
        "Hintergrund-Jobs",
        "Übersicht",
        "In der letzten Stunde abgeschlossen",
        "Ältester wartender Job",
        "Zurückgestellte Jobs",
    ):
        assert text in page, text
    for english in (
        "Completed in the last hour",
        "Oldest pending job",
        "Set-aside jobs",
    ):
        assert english not in page, english
    listing = open_as_owner(
        functional_app, f"{german.absolute_url()}/@@zasync-jobs/list"
    )
    assert "wartend" in listing
