"""A test layer with the browser demo installed (profile zasync.plone:demo),
a real dispatcher, and the users the demo's tests log in as."""

from plone.app.testing import PloneSandboxLayer, applyProfile

from zasync.plone.testing import ZASYNC_FIXTURE, ZasyncFunctionalTesting

PASSWORD = "secret-demo-password"
CONTRIBUTOR = "demo-contributor"
MANAGER = "demo-manager"
MEMBER = "demo-member"


class ZasyncDemoFixture(PloneSandboxLayer):
    defaultBases = (ZASYNC_FIXTURE,)

    def setUpPloneSite(self, portal):
        applyProfile(portal, "zasync.plone:demo")
        users = (
            (CONTRIBUTOR, ["Member", "Contributor"]),
            (MANAGER, ["Member", "Manager"]),
            (MEMBER, ["Member"]),
        )
        for username, roles in users:
            portal.acl_users.userFolderAddUser(username, PASSWORD, roles, [])


ZASYNC_DEMO_FIXTURE = ZasyncDemoFixture()
ZASYNC_DEMO_FUNCTIONAL_TESTING = ZasyncFunctionalTesting(
    bases=(ZASYNC_DEMO_FIXTURE,), name="ZasyncDemoFixture:Functional"
)
