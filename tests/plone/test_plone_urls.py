"""URLs in a job are those of the request that queued it.

Requests go through the real publisher and the virtual host monster; the
view computes the same URLs as the job does, so the test compares what
the request saw with what the job saw.
"""

import json

import plone_jobs
import pytest
import transaction
from plone.app.testing import SITE_OWNER_NAME, SITE_OWNER_PASSWORD, login
from plone.protect.interfaces import IDisableCSRFProtection
from plone.testing.zope import Browser
from Products.Five import BrowserView
from zope.component import getGlobalSiteManager, getUtility
from zope.interface import Interface, alsoProvides
from zope.publisher.interfaces.browser import IDefaultBrowserLayer

from plone import api
from zasync.plone.interfaces import IAsyncService
from zasync.plone.testing import wait_for_result

VIEW = "zasync-queue-url-facts"


class QueueUrlFacts(BrowserView):
    """Queues url_facts(context) and answers what it sees itself."""

    def __call__(self):
        # A GET that writes (queues) would be undone by plone.protect's
        # automatic CSRF protection; real views queue from POSTed forms.
        alsoProvides(self.request, IDisableCSRFProtection)
        job = getUtility(IAsyncService).queueJob(plone_jobs.url_facts, self.context)
        self.request.response.setHeader("Content-Type", "application/json")
        return json.dumps(
            {"job": str(job.id), "here": plone_jobs.url_facts(self.context)}
        )


@pytest.fixture
def view():
    gsm = getGlobalSiteManager()
    required = (Interface, IDefaultBrowserLayer)
    gsm.registerAdapter(QueueUrlFacts, required, Interface, VIEW)
    yield
    gsm.unregisterAdapter(QueueUrlFacts, required, Interface, VIEW)


@pytest.fixture
def site(functional_portal, view):
    portal = functional_portal
    app = portal.aq_parent
    if "virtual_hosting" not in app.objectIds():
        from Products.SiteAccess.VirtualHostMonster import (
            manage_addVirtualHostMonster,
        )

        manage_addVirtualHostMonster(app, "virtual_hosting")
    login(app, SITE_OWNER_NAME)
    api.content.create(container=portal, type="Folder", id="en", title="English")
    api.content.create(container=portal.en, type="Document", id="about", title="About")
    transaction.commit()
    return portal


def seen_by_request_and_job(site, path):
    # Found before the request: the publisher leaves no site set after it.
    queues = getUtility(IAsyncService).getQueues()
    transaction.commit()
    browser = Browser(site.aq_parent)
    browser.handleErrors = False
    browser.addHeader("Authorization", f"Basic {SITE_OWNER_NAME}:{SITE_OWNER_PASSWORD}")
    browser.open(f"http://nohost{path}/@@{VIEW}")
    answer = json.loads(browser.contents)
    transaction.begin()
    job = queues.find_job(int(answer["job"]))
    assert job is not None, f"job {answer['job']} not found"
    return answer["here"], wait_for_result(job)


def test_without_a_virtual_host(site):
    here, in_job = seen_by_request_and_job(site, "/plone/en/about")
    assert here["context_url"] == "http://nohost/plone/en/about"
    assert in_job == here


def test_under_a_virtual_host_rooted_at_the_site(site):
    path = "/VirtualHostBase/https/www.example.org:443/plone/VirtualHostRoot/en/about"
    here, in_job = seen_by_request_and_job(site, path)
    assert here["context_url"] == "https://www.example.org/en/about"
    assert in_job == here


def test_under_a_virtual_host_rooted_in_a_folder_of_the_site(site):
    path = "/VirtualHostBase/https/en.example.com:443/plone/en/VirtualHostRoot/about"
    here, in_job = seen_by_request_and_job(site, path)
    assert here["context_url"] == "https://en.example.com/about"
    assert here["portal_url"] == "https://en.example.com"
    assert in_job == here


def test_under_a_virtual_host_with_a_path_prefix(site):
    path = (
        "/VirtualHostBase/http/intranet.example.org:8080/plone/"
        "VirtualHostRoot/_vh_cms/en/about"
    )
    here, in_job = seen_by_request_and_job(site, path)
    assert here["context_url"] == "http://intranet.example.org:8080/cms/en/about"
    assert in_job == here


def test_the_request_wins_over_the_public_url_setting(site):
    api.portal.set_registry_record("zasync.public_url", "https://public.example.org")
    transaction.commit()
    path = "/VirtualHostBase/https/en.example.com:443/plone/en/VirtualHostRoot/about"
    here, in_job = seen_by_request_and_job(site, path)
    assert in_job == here
