"""Test layers for the jobs dashboard (@@zasync-jobs): zasync installed, a
real dispatcher, the users the tests log in as, and, for the browser
tests, a real WSGI server."""

from plone.app.testing import PloneSandboxLayer
from plone.testing.zope import WSGI_SERVER_FIXTURE

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
ZASYNC_DASHBOARD_SERVER_TESTING = ZasyncFunctionalTesting(
    bases=(ZASYNC_DASHBOARD_FIXTURE, WSGI_SERVER_FIXTURE),
    name="ZasyncDashboardFixture:Server",
)
