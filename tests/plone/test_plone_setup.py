"""The GenericSetup profile, the registry settings, and the engine's
independence from Zope."""

import subprocess
import sys

import transaction
from plone.app.testing import SITE_OWNER_NAME, login
from plone.browserlayer.utils import registered_layers
from plone.registry.interfaces import IRegistry
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
