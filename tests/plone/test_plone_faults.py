"""Bad input and faults: each ends in a clear Failure or a retry, and no
committed result is lost."""

import logging

import plone_jobs
import transaction
from plone.app.testing import SITE_OWNER_NAME, login
from zope.component import getGlobalSiteManager, getUtility

from plone import api
from zasync.failure import Failure
from zasync.job import CallableNotFound
from zasync.plone.environment import ContextNotFound, SiteNotFound
from zasync.plone.interfaces import IAsyncService, IJobSuccess
from zasync.plone.testing import wait_for_result
from zasync.status import COMPLETED


def service():
    return getUtility(IAsyncService)


def test_deleted_context_fails_the_job(portal, folder):
    job = service().queueJob(plone_jobs.path_of, folder)
    login(portal.aq_parent, SITE_OWNER_NAME)
    api.content.delete(folder, check_linkintegrity=False)
    transaction.commit()
    result = wait_for_result(job)
    assert isinstance(result, Failure) and result.check(ContextNotFound)
    assert "/plone/member-folder" in str(result)


def test_moved_context_is_found_by_its_uid(portal, folder):
    login(portal.aq_parent, SITE_OWNER_NAME)
    api.content.create(container=portal, type="Folder", id="archive")
    transaction.commit()
    job = service().queueJob(plone_jobs.path_of, folder)
    api.content.move(source=folder, target=portal["archive"])
    transaction.commit()
    assert wait_for_result(job) == "/plone/archive/member-folder"


def test_replaced_context_is_not_used(portal, folder):
    login(portal.aq_parent, SITE_OWNER_NAME)
    job = service().queueJob(plone_jobs.set_title, folder, "for the old one")
    api.content.delete(folder, check_linkintegrity=False)
    api.content.create(container=portal, type="Folder", id="member-folder")
    transaction.commit()
    result = wait_for_result(job)
    assert isinstance(result, Failure) and result.check(ContextNotFound)
    transaction.begin()
    assert portal["member-folder"].title != "for the old one"


def test_removed_site_fails_the_job(portal, folder):
    job = service().queueJob(plone_jobs.path_of, folder)
    app = portal.aq_parent
    login(app, SITE_OWNER_NAME)
    app._delObject("plone", suppress_events=True)
    transaction.commit()
    result = wait_for_result(job)
    assert isinstance(result, Failure) and result.check(SiteNotFound)
    assert "/plone" in str(result)


def test_function_that_cannot_be_imported_any_more(portal, folder, monkeypatch):
    job = service().queueJob(plone_jobs.path_of, folder)
    # Removed before the job is committed, so before any worker sees it:
    # as after a code update that dropped the function.
    monkeypatch.delattr(plone_jobs, "path_of")
    transaction.commit()
    result = wait_for_result(job)
    assert isinstance(result, Failure) and result.check(CallableNotFound)
    assert "plone_jobs.path_of" in str(result)


def test_exception_in_event_handler_is_logged_and_result_kept(portal, folder, caplog):
    def broken_handler(event):
        raise RuntimeError("handler broke")

    gsm = getGlobalSiteManager()
    gsm.registerHandler(broken_handler, [IJobSuccess])
    try:
        with caplog.at_level(logging.ERROR, logger="zasync.plone"):
            job = service().queueJob(plone_jobs.set_title, folder, "kept")
            transaction.commit()
            assert wait_for_result(job) == "kept"
    finally:
        gsm.unregisterHandler(broken_handler, [IJobSuccess])
    events_callback = job.callbacks[0]
    assert events_callback.status == COMPLETED
    assert isinstance(events_callback.result, Failure)
    assert "handler broke" in str(events_callback.result)
    assert any(
        "IJobSuccess" in r.getMessage() or "JobSuccess" in r.getMessage()
        for r in caplog.records
    )
    transaction.begin()
    assert folder.title == "kept"


def test_exception_in_callback_keeps_the_result(portal, folder):
    job = service().queueJob(plone_jobs.set_title, folder, "still here")
    callback = job.addCallback(plone_jobs.failing_callback)
    transaction.commit()
    assert wait_for_result(job) == "still here"
    assert isinstance(callback.result, Failure)
    assert not job.failed
    transaction.begin()
    assert folder.title == "still here"


def test_conflict_error_in_the_job_is_retried(portal, folder):
    key = f"conflict-{id(folder)}"
    job = service().queueJob(plone_jobs.conflict_once, folder, key)
    transaction.commit()
    assert wait_for_result(job) == 2
    assert job.attempts == 1  # the conflict did not cost an attempt
    assert not job.failed
