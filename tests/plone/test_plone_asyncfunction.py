"""@asyncfunction and is_async(), in the gocept.async style."""

import plone_jobs
import pytest
import transaction
from AccessControl import getSecurityManager
from zope.component import getGlobalSiteManager
from zope.component.hooks import getSite

from zasync.job import Job
from zasync.plone import asyncfunction, is_async
from zasync.plone.interfaces import IJobFailure, IJobSuccess
from zasync.plone.testing import wait_for_result


def test_calling_queues_a_job_as_the_current_user(portal, folder):
    job = plone_jobs.retitle(folder, "new title")
    assert isinstance(job, Job)
    assert folder.title != "new title"  # not yet: it is queued
    transaction.commit()
    assert wait_for_result(job) == {"async": True, "user": "test_user_1_"}
    transaction.begin()
    assert folder.title == "new title"


def test_called_inside_a_job_it_runs_at_once(portal, folder):
    job = plone_jobs.retitle_both(folder, portal, "both")
    assert job.quota_names == ("default",)
    transaction.commit()
    inner = wait_for_result(job)
    assert inner == [{"async": True, "user": "test_user_1_"}] * 2


def test_is_async_outside_a_job(portal):
    assert is_async() is False
    assert plone_jobs.check_async() is False


def test_only_module_level_functions():
    def local_function():
        pass

    with pytest.raises(TypeError, match="module level"):
        asyncfunction(local_function)


def test_event_handlers_run_in_the_jobs_site_as_its_user(portal, folder):
    seen = []

    def handler(event):
        seen.append(
            (
                type(event).__name__,
                event.job.id,
                getSecurityManager().getUser().getId(),
                "/".join(getSite().getPhysicalPath()),
            )
        )

    gsm = getGlobalSiteManager()
    gsm.registerHandler(handler, [IJobSuccess])
    gsm.registerHandler(handler, [IJobFailure])
    try:
        job = plone_jobs.retitle(folder, "with events")
        transaction.commit()
        wait_for_result(job)
    finally:
        gsm.unregisterHandler(handler, [IJobSuccess])
        gsm.unregisterHandler(handler, [IJobFailure])
    assert seen == [("JobSuccess", job.id, "test_user_1_", "/plone")]
