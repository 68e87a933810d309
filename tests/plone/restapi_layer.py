"""A test layer for zasync's REST API: plone.restapi installed, a real
WSGI server on a free port of this machine, a running dispatcher, and the
users the tests (and the examples of docs/rest.md) log in as."""

import datetime

import transaction
from plone.app.testing import PloneSandboxLayer, applyProfile, login
from plone.testing.zope import WSGIServer
from pytest_plone import fixtures_factory
from zope.component import getUtility

from zasync import clock
from zasync.plone.interfaces import IAsyncService
from zasync.plone.testing import ZASYNC_FIXTURE, ZasyncFunctionalTesting

#: The password of every test user (docs/rest.md's examples use it).
PASSWORD = "secret"
MANAGER = "manager"
SITE_ADMINISTRATOR = "siteadmin"
MEMBER = "member"
OTHER_MEMBER = "other"
LATER = datetime.timedelta(hours=1)


class ZasyncRestapiFixture(PloneSandboxLayer):
    defaultBases = (ZASYNC_FIXTURE,)

    def setUpZope(self, app, configurationContext):
        import plone.restapi

        self.loadZCML(package=plone.restapi)

    def setUpPloneSite(self, portal):
        applyProfile(portal, "plone.restapi:default")
        users = (
            (MANAGER, ["Member", "Manager"]),
            (SITE_ADMINISTRATOR, ["Member", "Site Administrator"]),
            (MEMBER, ["Member"]),
            (OTHER_MEMBER, ["Member"]),
        )
        for username, roles in users:
            portal.acl_users.userFolderAddUser(username, PASSWORD, roles, [])


class FreePortWSGIServer(WSGIServer):
    """plone.testing's WSGI server on a free port each time it is set up
    (the shared WSGI_SERVER_FIXTURE binds again the port it first got,
    which another test run of this machine may hold meanwhile)."""

    def setUp(self):
        self.host = self.port = None
        super().setUp()


ZASYNC_RESTAPI_FIXTURE = ZasyncRestapiFixture()
ZASYNC_WSGI_SERVER = FreePortWSGIServer(name="ZasyncRestapiWSGIServer")
ZASYNC_RESTAPI_FUNCTIONAL_TESTING = ZasyncFunctionalTesting(
    bases=(ZASYNC_RESTAPI_FIXTURE, ZASYNC_WSGI_SERVER),
    name="ZasyncRestapiFixture:Functional",
)


def site_url(layer):
    """The site's URL on the layer's WSGI server (127.0.0.1)."""
    return f"http://127.0.0.1:{layer['port']}/{layer['portal'].getId()}"


#: The pytest fixtures of the layer (``rest``: its resources), for the test
#: modules to take in (made once: zope.pytestlayer makes them once per
#: layer). Not kept for the session: this layer's site is stacked on the
#: same base as conftest's layers (see test_plone_demo).
FIXTURES = fixtures_factory(
    ((ZASYNC_RESTAPI_FUNCTIONAL_TESTING, "rest"),), keep_session=False
)


def queue_as(site, user, func, *args, later=False):
    """Queue ``func(site, *args)`` as ``user`` and commit; ``later``: not
    due for an hour, so it stays pending."""
    login(site, user)
    service = getUtility(IAsyncService)
    if later:
        job = service.queueJobWithDelay(None, clock.utcnow() + LATER, func, site, *args)
    else:
        job = service.queueJob(func, site, *args)
    transaction.commit()
    return job


def queues():
    """The queues, as the server last committed them."""
    transaction.begin()
    return getUtility(IAsyncService).getQueues()


def find(job_id):
    return queues().find_job(int(job_id))
