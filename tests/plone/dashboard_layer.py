"""Test layers for the jobs dashboard (@@zasync-jobs): zasync installed, a
real dispatcher, the users the tests log in as, and, for the browser
tests, a real WSGI server."""

from plone.app.testing import PloneSandboxLayer
from plone.testing.zope import WSGIServer
from pytest_plone import fixtures_factory

from zasync.plone.testing import ZASYNC_FIXTURE, ZasyncFunctionalTesting

PASSWORD = "secret-dashboard-password"
MANAGER = "dash-manager"
SITE_ADMINISTRATOR = "dash-site-administrator"
MEMBER = "dash-member"


class ZasyncDashboardFixture(PloneSandboxLayer):
    defaultBases = (ZASYNC_FIXTURE,)

    def setUpPloneSite(self, portal):
        users = (
            (MANAGER, ["Member", "Manager"]),
            (SITE_ADMINISTRATOR, ["Member", "Site Administrator"]),
            (MEMBER, ["Member"]),
        )
        for username, roles in users:
            portal.acl_users.userFolderAddUser(username, PASSWORD, roles, [])


ZASYNC_DASHBOARD_FIXTURE = ZasyncDashboardFixture()
ZASYNC_DASHBOARD_FUNCTIONAL_TESTING = ZasyncFunctionalTesting(
    bases=(ZASYNC_DASHBOARD_FIXTURE,), name="ZasyncDashboardFixture:Functional"
)
# A server layer of its own (not plone.testing's WSGI_SERVER_FIXTURE): the
# pytest fixtures of a layer exist in the module that made them first, and
# another module's use of the shared one would hide it from these tests.
ZASYNC_DASHBOARD_SERVER_FIXTURE = WSGIServer(
    bases=(ZASYNC_DASHBOARD_FIXTURE,), name="ZasyncDashboardServer"
)
ZASYNC_DASHBOARD_SERVER_TESTING = ZasyncFunctionalTesting(
    bases=(ZASYNC_DASHBOARD_SERVER_FIXTURE,), name="ZasyncDashboardFixture:Server"
)

#: The pytest fixtures of both layers, made once (a layer's fixtures are
#: made once per session): ``dashboard`` and ``server`` (each test its own
#: database and dispatcher), for the test modules' globals. Not kept for
#: the session, as the demo's: the site is stacked on the same base as
#: conftest's layers.
FIXTURES = fixtures_factory(
    (
        (ZASYNC_DASHBOARD_FUNCTIONAL_TESTING, "dashboard"),
        (ZASYNC_DASHBOARD_SERVER_TESTING, "server"),
    ),
    keep_session=False,
)
