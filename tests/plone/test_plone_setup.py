"""The GenericSetup profile, the registry settings, and the engine's
independence from Zope."""

import importlib.metadata
import subprocess
import sys

import transaction
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
    assert registry["zasync.default_quota_size"] == 1
    assert registry["zasync.agent_size"] == 3
    assert registry["zasync.public_url"] is None
    assert IZasyncLayer in registered_layers()
    assert queue().quotas[DEFAULT_QUOTA].size == 1


def test_changing_the_quota_size_applies_to_the_queue_at_once(portal):
    api.portal.set_registry_record("zasync.default_quota_size", 3)
    assert queue().quotas[DEFAULT_QUOTA].size == 3


def test_changing_the_agent_size_applies_to_running_dispatchers(portal):
    transaction.commit()  # the layer's dispatcher has registered itself
    api.portal.set_registry_record("zasync.agent_size", 5)
    records = list(queue().dispatchers.values())
    assert records
    assert {record.agents["main"].size for record in records} == {5}


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
    assert getUtility(IRegistry)["zasync.default_quota_size"] == 1


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
        "zasync.demo\n"
        # The Plone commands of `zasync` (serve, cluster) are listed by the
        # engine's command line; they import Zope only when they run.
        "commands = {'zasync.plone', 'zasync.plone.serve', 'zasync.plone.cluster',"
        " 'zasync.plone.instance'}\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('Zope2', 'App', 'OFS', 'AccessControl', 'Products', 'plone', 'zope.component')"
        " or (m.startswith('zasync.plone') and m not in commands))\n"
        "print(bad)\n"
        "sys.exit(1 if bad else 0)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
