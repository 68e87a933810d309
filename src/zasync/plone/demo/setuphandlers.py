"""Uninstalling the demo: ``zasync.plone:demo-uninstall``.

The profile removes the demo's browser layer, so that ``@@zasync-demo`` and
``@@zasync-demo-jobs`` no longer exist in the site; the handler below marks
the demo's profile as not installed. Uninstalling zasync
(``zasync.plone:uninstall``) runs this profile too. The folder
``/zasync-demo`` and the documents its jobs created stay: they are the
users' content. Jobs queued from the demo before stay in the queues and
run, as any job does.
"""

import logging

from plone.base.interfaces import INonInstallable
from zope.interface import implementer

log = logging.getLogger("zasync.plone")

PROFILE = "zasync.plone:demo"
UNINSTALL_PROFILE = "zasync.plone:demo-uninstall"


@implementer(INonInstallable)
class HiddenProfiles:
    """The demo's uninstall profile is not offered for installing."""

    def getNonInstallableProfiles(self):
        return [UNINSTALL_PROFILE]


def uninstall(setup):
    """Run the demo's uninstall profile with ``setup`` (portal_setup)."""
    setup.runAllImportStepsFromProfile(f"profile-{UNINSTALL_PROFILE}")


def post_uninstall(setup):
    """The layer is gone: the demo's profile is no longer installed (so
    that installing it again works as the first time)."""
    setup.unsetLastVersionForProfile(PROFILE)
    log.info(
        "zasync demo uninstalled: @@zasync-demo is gone; the folder and "
        "the documents its jobs created were kept"
    )
