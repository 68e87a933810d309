"""A job never runs as someone else, in another site, or with more rights
than its queuer had; and every outcome reaches its handlers.

Each test queues a real job, changes the world the way real sites do
(accounts deleted and made again, roles granted later, sites replaced),
and checks what the job and its handlers ran as.
"""

import plone_jobs
import pytest
import transaction
from AccessControl.SecurityManagement import newSecurityManager
from AccessControl.users import UnrestrictedUser
from plone.app.testing import SITE_OWNER_NAME, login
from zope.component import getGlobalSiteManager, getUtility

from plone import api
from zasync.failure import Failure
from zasync.plone.environment import SiteNotFound, UserNotFound
from zasync.plone.interfaces import IAsyncService, IJobFailure
from zasync.plone.testing import wait_for_result


@pytest.fixture
def service():
    return getUtility(IAsyncService)


@pytest.fixture
def failures():
    """IJobFailure events as handlers saw them: (event, where and who)."""
    seen = []

    def handler(event):
        seen.append((event, plone_jobs.where_and_who(event.object)))

    gsm = getGlobalSiteManager()
    gsm.registerHandler(handler, [IJobFailure])
    yield seen
    gsm.unregisterHandler(handler, [IJobFailure])


def wait_for_callbacks(job):
    for callback in job.callbacks:
        wait_for_result(callback)
    transaction.begin()


def make_member(portal, name, roles=("Member",)):
    login(portal.aq_parent, SITE_OWNER_NAME)
    api.user.create(email=f"{name}@example.org", username=name, roles=list(roles))


def queue_as(portal, name, service, func, context, *args):
    login(portal, name)
    job = service.queueJob(func, context, *args)
    login(portal.aq_parent, SITE_OWNER_NAME)
    return job


# -- every failure reaches handlers and failure callbacks -------------------


def test_user_not_found_reaches_handlers_and_callbacks_as_anonymous(
    portal, folder, service, failures
):
    make_member(portal, "leaver")
    folder.manage_setLocalRoles("leaver", ["Owner"])
    job = queue_as(portal, "leaver", service, plone_jobs.set_title, folder, "x")
    callback = job.addCallbacks(failure=plone_jobs.record_outcome)
    api.user.delete(username="leaver")
    transaction.commit()
    result = wait_for_result(job)
    assert isinstance(result, Failure) and result.check(UserNotFound)
    wait_for_callbacks(job)

    ((event, handler_saw),) = failures
    assert event.job.id == job.id and event.object.check(UserNotFound)
    # The least that exists: the site, as Anonymous; and the event says why.
    assert handler_saw == {
        "user": "Anonymous User",
        "site": "/plone",
        "result": "Failure",
    }
    assert "'leaver'" in event.degraded and "Anonymous" in event.degraded
    assert callback.result == {
        "user": "Anonymous User",
        "site": "/plone",
        "result": "Failure",
        "error": "zasync.plone.exceptions.UserNotFound",
    }


def test_site_not_found_reaches_handlers_without_a_site(
    portal, folder, service, failures
):
    job = service.queueJob(plone_jobs.path_of, folder)
    callback = job.addCallbacks(failure=plone_jobs.record_outcome)
    app = portal.aq_parent
    login(app, SITE_OWNER_NAME)
    app._delObject("plone", suppress_events=True)
    transaction.commit()
    result = wait_for_result(job)
    assert isinstance(result, Failure) and result.check(SiteNotFound)
    wait_for_callbacks(job)
    ((event, handler_saw),) = failures
    assert handler_saw == {"user": "Anonymous User", "site": None, "result": "Failure"}
    assert "/plone" in event.degraded and "without a site" in event.degraded
    assert callback.result["site"] is None
    assert callback.result["user"] == "Anonymous User"


def test_handlers_of_a_job_whose_user_exists_run_as_that_user(
    portal, folder, service, failures
):
    job = service.queueJob(plone_jobs.failing_callback, folder)
    transaction.commit()
    assert isinstance(wait_for_result(job), Failure)
    wait_for_callbacks(job)
    ((event, handler_saw),) = failures
    assert handler_saw["user"] == "test-user" and handler_saw["site"] == "/plone"
    assert event.degraded is None


# -- never someone else -----------------------------------------------------


def test_an_account_made_again_with_the_same_id_is_somebody_else(
    portal, folder, service
):
    make_member(portal, "reborn")
    folder.manage_setLocalRoles("reborn", ["Owner"])
    job = queue_as(portal, "reborn", service, plone_jobs.identity, folder)
    api.user.delete(username="reborn")
    make_member(portal, "reborn", roles=["Manager"])
    transaction.commit()
    result = wait_for_result(job)
    assert isinstance(result, Failure) and result.check(UserNotFound)
    assert "new one" in str(result)


def test_roles_granted_after_queuing_are_not_used(portal, folder, service):
    # Where a new account cannot be told apart (one made behind PAS's back,
    # or a role given later), the job's global roles are capped at those
    # the user had when queuing.
    make_member(portal, "promoted")
    folder.manage_setLocalRoles("promoted", ["Owner"])
    job = queue_as(portal, "promoted", service, plone_jobs.identity, folder)
    api.user.grant_roles(username="promoted", roles=["Manager"])
    transaction.commit()
    facts = wait_for_result(job)
    assert facts["name"] == "promoted"
    assert "Manager" not in facts["roles"] and not facts["may_manage"]
    # A job queued now, as a Manager, has them.
    job = queue_as(portal, "promoted", service, plone_jobs.identity, folder)
    transaction.commit()
    facts = wait_for_result(job)
    assert "Manager" in facts["roles"] and facts["may_manage"]


def test_roles_from_a_group_joined_after_queuing_are_not_used(portal, folder, service):
    make_member(portal, "joiner")
    folder.manage_setLocalRoles("joiner", ["Owner"])
    job = queue_as(portal, "joiner", service, plone_jobs.add_to_portal, folder, "x")
    api.group.add_user(groupname="Administrators", username="joiner")
    transaction.commit()
    result = wait_for_result(job)
    assert isinstance(result, Failure)
    assert result.check(
        "zExceptions.Unauthorized", "AccessControl.unauthorized.Unauthorized"
    )
    transaction.begin()
    assert "x" not in portal


def test_roles_lost_after_queuing_are_lost(portal, folder, service):
    make_member(portal, "demoted", roles=["Member", "Site Administrator"])
    job = queue_as(portal, "demoted", service, plone_jobs.identity, portal)
    api.user.revoke_roles(username="demoted", roles=["Site Administrator"])
    transaction.commit()
    assert "Site Administrator" not in wait_for_result(job)["roles"]


def test_a_site_made_again_at_the_same_path_is_another_site(portal, service):
    from Products.CMFPlone.factory import addPloneSite

    app = portal.aq_parent
    login(app, SITE_OWNER_NAME)
    profiles = ("plone.app.contenttypes:default", "zasync.plone:default")
    first = addPloneSite(app, "second", extension_ids=profiles)
    transaction.commit()
    api.user.create(email="m@example.org", username="twin", roles=["Member"])
    login(first, "twin")
    # A job whose context has no UID (the site root's tools have none).
    job = service.queueJob(plone_jobs.identity, first.portal_catalog)
    login(app, SITE_OWNER_NAME)
    app._delObject("second")
    second = addPloneSite(app, "second", extension_ids=profiles)
    api.user.create(email="m@example.org", username="twin", roles=["Manager"])
    transaction.commit()
    result = wait_for_result(job)
    assert isinstance(result, Failure) and result.check(SiteNotFound)
    assert "another" in str(result)
    assert second.getPhysicalPath() == ("", "second")


# -- unrestricted identities ------------------------------------------------


def test_a_job_queued_by_an_unrestricted_user_runs_as_that_user(portal, service):
    newSecurityManager(None, UnrestrictedUser("nightly", "", ["Manager"], []))
    job = service.queueJob(plone_jobs.identity, portal)
    other = service.queueJob(plone_jobs.add_to_portal, portal, "from-script")
    transaction.commit()
    facts = wait_for_result(job)
    assert facts["name"] == "nightly" and facts["unrestricted"]
    assert facts["may_manage"]
    assert wait_for_result(other) == "/plone/from-script"


def test_zopes_system_user_runs_as_itself(portal, service):
    from AccessControl import SpecialUsers

    system = SpecialUsers.system  # an UnrestrictedUser, as the emergency user
    newSecurityManager(None, system)
    job = service.queueJob(plone_jobs.identity, portal)
    transaction.commit()
    facts = wait_for_result(job)
    assert facts["unrestricted"] and facts["name"] == "System Processes"
    assert facts["roles"] == sorted(system.getRoles())


def test_a_job_stored_before_accounts_were_told_apart_still_runs(portal, folder):
    # Its environment has only the user's id and folder (no generation,
    # roles or site oid): the user is found by id, as before.
    import zasync
    from zasync.plone.environment import ObjectRef, PloneEnvironment

    queue = getUtility(IAsyncService).getQueues()[""]
    job = zasync.Job(plone_jobs.identity, folder)
    job.environment = PloneEnvironment(
        None, ("", "plone"), ("", "plone", "acl_users"), "test_user_1_"
    )
    job.args = (ObjectRef(folder.getPhysicalPath()),)
    queue.put(job)
    transaction.commit()
    facts = wait_for_result(job)
    assert facts["id"] == "test_user_1_" and not facts["unrestricted"]
