"""The GenericSetup profile, the registry settings, and the engine's
independence from Zope."""

import importlib.metadata
import subprocess
import sys

from plone.app.testing import SITE_OWNER_NAME, SITE_OWNER_PASSWORD, login
from plone.browserlayer.utils import registered_layers
from plone.registry.interfaces import IRegistry
from plone.testing.zope import Browser
from Products.CMFPlone.utils import get_installer
from zope.component import getUtility

from plone import api
from zasync.plone.interfaces import DEFAULT_QUOTA, IAsyncService, IZasyncLayer


def queue():
    return getUtility(IAsyncService).getQueues()[""]


def test_profile_installs_settings_layer_and_quota(portal):
    registry = getUtility(IRegistry)
    assert registry["zasync.public_url"] is None
    # Cluster-wide settings are kept with the queues, not in a site.
    keys = registry.records.keys()  # noqa: SIM118 - Records is no dict
    assert sorted(key for key in keys if key.startswith("zasync.")) == [
        "zasync.public_url"
    ]
    assert IZasyncLayer in registered_layers()
    assert queue().quotas[DEFAULT_QUOTA].size == 1
    actions = [
        a.getId() for a in api.portal.get_tool("portal_controlpanel").listActions()
    ]
    assert "zasync" in actions


def test_uninstall_leaves_no_persistent_registrations(portal):
    login(portal.aq_parent, SITE_OWNER_NAME)
    installer = get_installer(portal)
    assert installer.is_product_installed("zasync.plone")
    installer.uninstall_product("zasync.plone")
    assert not installer.is_product_installed("zasync.plone")
    registry = getUtility(IRegistry)
    keys = registry.records.keys()  # noqa: SIM118 - Records is no dict
    assert not [key for key in keys if key.startswith("zasync")]
    assert IZasyncLayer not in registered_layers()
    site_manager = portal.getSiteManager()
    leftovers = [
        registration
        for registration in list(site_manager.registeredUtilities())
        + list(site_manager.registeredAdapters())
        + list(site_manager.registeredHandlers())
        if "zasync" in repr(registration)
    ]
    assert leftovers == []
    # Installing again works.
    installer.install_product("zasync.plone")
    assert getUtility(IRegistry)["zasync.public_url"] is None


def test_addons_control_panel_shows_zasyncs_version(functional_portal):
    # Plone looks up the version of the package holding the profiles,
    # zasync.plone, which is part of the distribution zasync.
    version = importlib.metadata.version("zasync")
    assert version
    login(functional_portal.aq_parent, SITE_OWNER_NAME)
    view = functional_portal.restrictedTraverse("@@prefs_install_products_form")
    addon = view.get_addons(product_name="zasync.plone")["zasync.plone"]
    assert addon["title"] == "zasync: background jobs"
    assert addon["version"] == version
    assert addon["is_installed"]

    # What a Manager sees in Site Setup > Add-ons.
    browser = Browser(functional_portal.aq_parent)
    browser.handleErrors = False
    browser.addHeader("Authorization", f"Basic {SITE_OWNER_NAME}:{SITE_OWNER_PASSWORD}")
    browser.open(f"{functional_portal.absolute_url()}/prefs_install_products_form")
    assert f"(zasync.plone {version})" in " ".join(browser.contents.split())


def test_the_version_answer_lists_zasync_once():
    import zasync.plone  # noqa: F401 - what installs the answer

    assert importlib.metadata.distribution("zasync.plone").version == (
        importlib.metadata.version("zasync")
    )
    assert importlib.metadata.distribution("zasync-plone").metadata["Name"] == "zasync"
    # Listing every distribution (pip, entry points) finds zasync once.
    names = [
        dist.metadata["Name"]
        for dist in importlib.metadata.distributions()
        if dist.metadata["Name"] in ("zasync", "zasync.plone")
    ]
    assert names == ["zasync"]


def test_engine_imports_nothing_of_zope_or_plone():
    code = (
        "import sys, zasync, zasync.dispatcher, zasync.cli, zasync.testing, "
        "zasync.cli.demo\n"
        # The deployment commands (serve, cluster) import Zope only when
        # they run; they name the add-on's role files (a Zope-free module).
        "addon = {'zasync.plone', 'zasync.plone.rolefiles'}\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('Zope2', 'App', 'OFS', 'AccessControl', 'Products', 'plone', 'zope.component')"
        " or (m.startswith('zasync.plone') and m not in addon))\n"
        "print(bad)\n"
        "sys.exit(1 if bad else 0)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


# -- upgrades -----------------------------------------------------------------


def make_old_site(portal, quota_size, agent_size):
    """The site as profile version 1000 left it: the records of the
    cluster-wide settings in its registry, no zasync control panel."""
    from plone.registry import Record, field

    registry = getUtility(IRegistry)
    registry.records["zasync.default_quota_size"] = Record(field.Int(min=1), quota_size)
    registry.records["zasync.agent_size"] = Record(field.Int(min=1), agent_size)
    api.portal.get_tool("portal_controlpanel").unregisterConfiglet("zasync")
    setup = api.portal.get_tool("portal_setup")
    setup.setLastVersionForProfile("zasync.plone:default", "1000")
    return setup


def upgrade(setup):
    login(api.portal.get().aq_parent, SITE_OWNER_NAME)
    assert "1000" in [
        step["source"][0]
        for step in setup.listUpgrades("zasync.plone:default")
        if not isinstance(step, list)
    ]
    setup.upgradeProfile("zasync.plone:default")
    assert setup.getLastVersionForProfile("zasync.plone:default") == ("1002",)


def test_upgrade_moves_changed_sizes_to_the_queues(portal):
    """A site that changed both sizes in its registry: the cluster takes
    them, the records are gone, the control panel is listed."""
    setup = make_old_site(portal, quota_size=3, agent_size=6)
    upgrade(setup)
    registry = getUtility(IRegistry)
    assert "zasync.default_quota_size" not in registry.records
    assert "zasync.agent_size" not in registry.records
    assert registry["zasync.public_url"] is None
    assert queue().quotas[DEFAULT_QUOTA].size == 3
    assert queue().agent_settings.default_size == 6
    actions = [
        a.getId() for a in api.portal.get_tool("portal_controlpanel").listActions()
    ]
    assert "zasync" in actions


def test_upgrade_keeps_what_the_cluster_set_meanwhile(portal):
    """Another site's upgrade (or an operator) set the cluster's values
    already: they are the ones in force and stay; unchanged records carry
    nothing."""
    from zasync import admin

    queues = getUtility(IAsyncService).getQueues()
    admin.set_quota_size(queues, DEFAULT_QUOTA, 2)
    admin.set_agent_size(queues, 4)
    setup = make_old_site(portal, quota_size=5, agent_size=7)
    upgrade(setup)
    assert queue().quotas[DEFAULT_QUOTA].size == 2
    assert queue().agent_settings.default_size == 4
    assert "zasync.agent_size" not in getUtility(IRegistry).records


def test_upgrade_of_a_site_that_changed_nothing(portal):
    setup = make_old_site(portal, quota_size=1, agent_size=3)
    upgrade(setup)
    assert queue().quotas[DEFAULT_QUOTA].size == 1
    assert queue().agent_settings is None
    assert "zasync.default_quota_size" not in getUtility(IRegistry).records


def configlet_ids():
    tool = api.portal.get_tool("portal_controlpanel")
    return [action.getId() for action in tool.listActions()]


def test_uninstall_removes_the_control_panel_and_my_jobs(portal):
    login(portal.aq_parent, SITE_OWNER_NAME)
    assert "zasync" in configlet_ids()
    user_actions = api.portal.get_tool("portal_actions").user
    assert "zasync-my-jobs" in user_actions
    assert "zasync-jobs" in configlet_ids()
    get_installer(portal).uninstall_product("zasync.plone")
    assert "zasync" not in configlet_ids()
    assert "zasync-jobs" not in configlet_ids()
    assert "zasync-my-jobs" not in user_actions


def test_uninstall_of_a_site_never_upgraded_removes_the_old_records(portal):
    make_old_site(portal, quota_size=2, agent_size=5)
    login(portal.aq_parent, SITE_OWNER_NAME)
    get_installer(portal).uninstall_product("zasync.plone")
    keys = getUtility(IRegistry).records.keys()  # noqa: SIM118 - no dict
    assert [key for key in keys if key.startswith("zasync")] == []


def test_upgrade_to_1002_gives_the_permissions_and_adds_the_new_pages(portal):
    """A site at profile 1001: the permissions have Zope's default roles
    only, Site Setup has no dashboard and the user menu no My jobs; the
    upgrade adds them."""
    from zasync.plone.permissions import MANAGE_JOBS, VIEW_METRICS

    login(portal.aq_parent, SITE_OWNER_NAME)
    for permission in (MANAGE_JOBS, VIEW_METRICS):
        portal.manage_permission(permission, ["Manager"], acquire=True)
    api.portal.get_tool("portal_actions").user.manage_delObjects(["zasync-my-jobs"])
    api.portal.get_tool("portal_controlpanel").unregisterConfiglet("zasync-jobs")
    setup = api.portal.get_tool("portal_setup")
    setup.setLastVersionForProfile("zasync.plone:default", "1001")
    setup.upgradeProfile("zasync.plone:default")
    assert setup.getLastVersionForProfile("zasync.plone:default") == ("1002",)
    for permission in (MANAGE_JOBS, VIEW_METRICS):
        roles = {
            r["name"] for r in portal.rolesOfPermission(permission) if r["selected"]
        }
        assert roles == {"Manager", "Site Administrator"}
    assert "zasync-my-jobs" in api.portal.get_tool("portal_actions").user
    assert "zasync-jobs" in configlet_ids()


def test_a_member_has_neither_permission(portal):
    from plone.app.testing import TEST_USER_ID, TEST_USER_NAME, setRoles

    from zasync.plone.permissions import MANAGE_JOBS, VIEW_METRICS

    setRoles(portal, TEST_USER_ID, ["Member"])
    for permission in (MANAGE_JOBS, VIEW_METRICS):
        assert not api.user.has_permission(
            permission, username=TEST_USER_NAME, obj=portal
        )
    setRoles(portal, TEST_USER_ID, ["Site Administrator"])
    assert api.user.has_permission(MANAGE_JOBS, username=TEST_USER_NAME, obj=portal)
