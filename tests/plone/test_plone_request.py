"""Queuing is part of the request's transaction: a request that fails after
queuing leaves no job behind (through the real publisher)."""

import plone_jobs
import pytest
import transaction
from plone.testing.zope import Browser
from Products.Five import BrowserView
from zope.component import getGlobalSiteManager, getUtility
from zope.interface import Interface
from zope.publisher.interfaces.browser import IDefaultBrowserLayer

from zasync.plone.interfaces import IAsyncService
from zasync.testing import wait_for_all_jobs

VIEW = "zasync-queue-then-fail"


class QueueThenFail(BrowserView):
    def __call__(self):
        getUtility(IAsyncService).queueJob(plone_jobs.path_of, self.context)
        if self.request.form.get("fail"):
            raise ValueError("the request failed after queuing")
        return "queued"


@pytest.fixture
def view():
    gsm = getGlobalSiteManager()
    required = (Interface, IDefaultBrowserLayer)
    gsm.registerAdapter(QueueThenFail, required, Interface, VIEW)
    yield
    gsm.unregisterAdapter(QueueThenFail, required, Interface, VIEW)


def completed(queue):
    transaction.begin()
    return queue.counts()["completed"]


def test_failed_request_leaves_no_job(functional_portal, view):
    portal = functional_portal
    queue = getUtility(IAsyncService).getQueues()[""]
    transaction.commit()
    browser = Browser(portal.aq_parent)
    browser.handleErrors = False

    with pytest.raises(ValueError, match="failed after queuing"):
        browser.open(f"{portal.absolute_url()}/@@{VIEW}?fail=1")
    transaction.begin()
    assert len(queue) == 0 and completed(queue) == 0

    # The same request without the error queues a job that runs.
    browser.open(f"{portal.absolute_url()}/@@{VIEW}")
    assert browser.contents == "queued"
    transaction.begin()
    wait_for_all_jobs(queue._p_jar)
    assert completed(queue) == 1
