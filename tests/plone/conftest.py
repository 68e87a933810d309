"""pytest-plone fixtures for zasync's layers: ``integration`` and
``functional`` (each test gets its own database and a running dispatcher),
plus pytest-plone's ``portal``, ``functional_portal`` and friends."""

import os

# Compile the .po catalogs (locales/) when the ZCML registers them, as a
# Plone instance configured with zope_i18n_compile_mo_files does.
os.environ.setdefault("zope_i18n_compile_mo_files", "true")

import pytest  # noqa: E402
import transaction  # noqa: E402
from plone.app.testing import SITE_OWNER_NAME, TEST_USER_ID, login, setRoles
from pytest_plone import fixtures_factory

from zasync.plone.testing import ZASYNC_FUNCTIONAL_TESTING, ZASYNC_INTEGRATION_TESTING

globals().update(
    fixtures_factory(
        (
            (ZASYNC_INTEGRATION_TESTING, "integration"),
            (ZASYNC_FUNCTIONAL_TESTING, "functional"),
        )
    )
)


def make_member_folder(portal, folder_id="member-folder"):
    """A folder the test user owns (as plone.app.async's self.folder was):
    they may add content there, not in the portal root."""
    login(portal.aq_parent, SITE_OWNER_NAME)
    portal.invokeFactory("Folder", folder_id)
    folder = portal[folder_id]
    folder.manage_setLocalRoles(TEST_USER_ID, ["Owner"])
    folder.reindexObjectSecurity()
    from plone.app.testing import TEST_USER_NAME

    login(portal, TEST_USER_NAME)
    setRoles(portal, TEST_USER_ID, ["Member"])
    return folder


@pytest.fixture
def folder(portal):
    folder = make_member_folder(portal)
    transaction.commit()
    return folder
