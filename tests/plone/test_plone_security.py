"""Jobs run as the user who queued them, with that user's current roles."""

import plone_jobs
import transaction
from plone.app.testing import SITE_OWNER_NAME, TEST_USER_ID, login, logout
from zExceptions import Unauthorized
from zope.component import getUtility

from plone import api
from zasync.failure import Failure
from zasync.plone.environment import UserNotFound
from zasync.plone.interfaces import IAsyncService
from zasync.plone.testing import wait_for_result


def service():
    return getUtility(IAsyncService)


def test_roles_are_those_the_user_has_when_the_job_runs(portal, folder):
    job = service().queueJob(plone_jobs.add_document, folder, "doc")
    # Before the job runs, the user loses the Owner role on the folder.
    folder.manage_delLocalRoles([TEST_USER_ID])
    folder.reindexObjectSecurity()
    transaction.commit()
    result = wait_for_result(job)
    assert isinstance(result, Failure)
    assert result.check(Unauthorized)
    assert "doc" not in folder


def test_anonymous_queues_run_as_anonymous(portal, folder):
    logout()
    job = service().queueJob(plone_jobs.whoami, folder)
    transaction.commit()
    facts = wait_for_result(job)
    assert facts["user"] is None  # Anonymous User has no id
    assert facts["roles"] == ["Anonymous"]


def test_zope_root_user_is_found_in_the_root_user_folder(portal, folder):
    login(portal.aq_parent, SITE_OWNER_NAME)
    job = service().queueJob(plone_jobs.whoami, folder)
    assert job.environment.user_folder_path == ("", "acl_users")
    transaction.commit()
    facts = wait_for_result(job)
    assert facts["user"] == SITE_OWNER_NAME
    assert "Manager" in facts["roles"]


def test_deleted_user_fails_the_job_and_never_runs_it(portal, folder):
    api.user.create(email="gone@example.org", username="gone", roles=["Member"])
    folder.manage_setLocalRoles("gone", ["Owner"])
    login(portal, "gone")
    job = service().queueJob(plone_jobs.set_title, folder, "changed by gone")
    login(portal.aq_parent, SITE_OWNER_NAME)
    api.user.delete(username="gone")
    transaction.commit()
    result = wait_for_result(job)
    assert isinstance(result, Failure)
    assert result.check(UserNotFound)
    message = str(result)
    assert "'gone'" in message and "/plone/acl_users" in message
    transaction.begin()
    assert folder.title != "changed by gone"


def test_callbacks_run_as_the_same_user_in_the_same_site(portal, folder):
    del plone_jobs.seen[:]
    job = service().queueJob(plone_jobs.path_of, folder)
    callback = job.addCallback(plone_jobs.record_user)
    transaction.commit()
    wait_for_result(job)
    wait_for_result(callback)
    assert plone_jobs.seen == [("/plone/member-folder", TEST_USER_ID, "/plone")]


def test_job_does_not_keep_rights_gained_by_elevation(portal, folder):
    # Code that elevates the current user's roles (adopt_roles) queues as
    # the user themselves: the job gets the user's own roles, no more.
    with api.env.adopt_roles(["Manager"]):
        job = service().queueJob(plone_jobs.add_document, portal, "root-doc")
    transaction.commit()
    result = wait_for_result(job)
    assert isinstance(result, Failure)
    assert result.check(Unauthorized)
