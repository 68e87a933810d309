"""IAsyncService: queuing, the site, the request, quotas, bad input."""

import datetime

import plone_jobs
import pytest
import transaction
from zope.component import getUtility
from zope.interface.verify import verifyObject

from plone import api
from zasync.failure import Failure
from zasync.plone.environment import NotQueueable
from zasync.plone.interfaces import DEFAULT_QUOTA, IAsyncService
from zasync.plone.testing import wait_for_result
from zasync.status import COMPLETED, PENDING
from zasync.storable import BadJobError


@pytest.fixture
def service():
    return getUtility(IAsyncService)


def test_service_provides_its_interface(service):
    assert verifyObject(IAsyncService, service)


def test_job_runs_in_its_site_as_its_user(portal, folder, service):
    job = service.queueJob(plone_jobs.whoami, folder)
    assert job.quota_names == (DEFAULT_QUOTA,)
    transaction.commit()
    facts = wait_for_result(job)
    assert facts["user"] == "test_user_1_"
    assert "Owner" in facts["roles"]  # the local role on the folder
    assert facts["site"] == facts["portal"] == "/plone"
    assert facts["context"] == "/plone/member-folder"


def test_job_sees_a_request_with_the_sites_url(portal, folder, service):
    job = service.queueJob(plone_jobs.request_facts, folder)
    transaction.commit()
    facts = wait_for_result(job)
    # The URL the site had in the request that queued the job.
    assert facts["portal_url"] == portal.absolute_url()
    assert facts["context_url"] == folder.absolute_url()
    assert facts["layer"] is True  # the site's browser layers are applied
    assert facts["registry"] is True  # local utilities of the site work


@pytest.mark.parametrize(
    "configured, site_url",
    [
        ("https://www.example.org", "https://www.example.org"),
        ("http://example.org:8080/site/", "http://example.org:8080/site"),
    ],
)
def test_configured_public_url_is_used(portal, folder, service, configured, site_url):
    api.portal.set_registry_record("zasync.public_url", configured)
    job = service.queueJob(plone_jobs.request_facts, folder)
    transaction.commit()
    facts = wait_for_result(job)
    assert facts["portal_url"] == site_url
    assert facts["context_url"] == f"{site_url}/member-folder"


def test_queue_by_name_or_object_and_quotas_made_on_demand(portal, folder, service):
    queue = service.getQueues()[""]
    job = service.queueJobInQueue("", ("exports",), plone_jobs.path_of, folder)
    job2 = service.queueJobInQueue(queue, (), plone_jobs.path_of, portal)
    assert queue.quotas["exports"].size == 1
    transaction.commit()
    assert wait_for_result(job) == "/plone/member-folder"
    assert wait_for_result(job2) == "/plone"


def test_unknown_queue_is_refused(portal, folder, service):
    with pytest.raises(ValueError, match="no zasync queue 'nope'"):
        service.queueJobInQueue("nope", (), plone_jobs.path_of, folder)


def test_queue_job_with_delay_waits(portal, folder, service):
    begin_after = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=0.3)
    job = service.queueJobWithDelay(None, begin_after, plone_jobs.path_of, folder)
    transaction.commit()
    assert wait_for_result(job) == "/plone/member-folder"
    assert job.started >= begin_after


def test_queue_job_with_delay_times_out(portal, folder, service):
    begin_after = datetime.datetime.now(datetime.UTC) - datetime.timedelta(hours=1)
    job = service.queueJobWithDelay(
        datetime.timedelta(minutes=1), begin_after, plone_jobs.path_of, folder
    )
    transaction.commit()
    result = wait_for_result(job)
    assert isinstance(result, Failure)
    assert "begin_by" in str(result) or "late" in str(result).lower()


def test_parallel_jobs(portal, folder, service):
    job = service.queueParallelJobs(
        service_make(plone_jobs.path_of, folder),
        service_make(plone_jobs.path_of, portal),
    )
    transaction.commit()
    children = wait_for_result(job)
    assert [child.result for child in children] == ["/plone/member-folder", "/plone"]
    assert all(child.status == COMPLETED for child in children)


def service_make(func, context, *args):
    from zasync.plone import makeJob

    return makeJob(func, context, *args)


def test_serial_jobs_in_queue_need_made_jobs(portal, folder, service):
    with pytest.raises(TypeError, match="makeJob"):
        service.queueSerialJobs(plone_jobs.path_of)


def test_other_objects_among_arguments_are_passed_by_path(portal, folder, service):
    job = service.queueJob(plone_jobs.both_paths, folder, portal, keyword=folder)
    transaction.commit()
    assert wait_for_result(job) == (
        "/plone/member-folder",
        "/plone",
        "/plone/member-folder",
    )


def test_context_without_a_container_is_refused_at_queue_time(portal, folder, service):
    from plone.dexterity.utils import createContent

    loose = createContent("Document", id="loose")
    with pytest.raises(NotQueueable, match="not in a container yet"):
        service.queueJob(plone_jobs.path_of, loose)
    assert len(service.getQueues()[""]) == 0


def test_unpicklable_argument_is_refused_at_queue_time(portal, folder, service):
    with pytest.raises(BadJobError, match="argument 2"):
        service.queueJob(plone_jobs.set_title, folder, lambda: "title")
    with pytest.raises(BadJobError):
        service.queueJob(lambda context: None, folder)
    assert len(service.getQueues()[""]) == 0


def test_jobs_of_the_default_quota_wait_for_each_other(portal, folder, service):
    first = service.queueJob(plone_jobs.add_document, folder, "one")
    second = service.queueJob(plone_jobs.set_title, folder, "after one")
    transaction.commit()
    assert wait_for_result(second) == "after one"
    assert first.status == COMPLETED
    assert second.started >= first.ended


def test_new_job_is_pending_until_commit(portal, folder, service):
    job = service.queueJob(plone_jobs.path_of, folder)
    assert job.status == PENDING
    transaction.abort()
    transaction.begin()
    assert len(service.getQueues()[""]) == 0
