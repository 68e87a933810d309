"""A test layer with the browser demo installed (profile zasync.plone:demo),
a real dispatcher, and the users the demo's tests log in as."""

from plone.app.testing import PloneSandboxLayer, applyProfile

from zasync.plone.testing import ZASYNC_FIXTURE, ZasyncFunctionalTesting

PASSWORD = "secret-demo-password"
CONTRIBUTOR = "demo-contributor"
OTHER_CONTRIBUTOR = "demo-contributor-2"
MANAGER = "demo-manager"
SITE_ADMINISTRATOR = "demo-site-administrator"
MEMBER = "demo-member"


class ZasyncDemoFixture(PloneSandboxLayer):
    defaultBases = (ZASYNC_FIXTURE,)

    def setUpPloneSite(self, portal):
        applyProfile(portal, "zasync.plone:demo")
        users = (
            (CONTRIBUTOR, ["Member", "Contributor"]),
            (OTHER_CONTRIBUTOR, ["Member", "Contributor"]),
            (MANAGER, ["Member", "Manager"]),
            (SITE_ADMINISTRATOR, ["Member", "Site Administrator"]),
            (MEMBER, ["Member"]),
        )
        for username, roles in users:
            portal.acl_users.userFolderAddUser(username, PASSWORD, roles, [])


ZASYNC_DEMO_FIXTURE = ZasyncDemoFixture()
ZASYNC_DEMO_FUNCTIONAL_TESTING = ZasyncFunctionalTesting(
    bases=(ZASYNC_DEMO_FIXTURE,), name="ZasyncDemoFixture:Functional"
)
