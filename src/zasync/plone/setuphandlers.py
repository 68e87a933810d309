"""Install and uninstall steps beyond the profile's XML."""

import logging

from plone.base.interfaces import INonInstallable
from plone.registry.interfaces import IRegistry
from zope.component import getUtility, queryUtility
from zope.interface import implementer

from zasync.plone.interfaces import DEFAULT_QUOTA, IAsyncService
from zasync.plone.settings import ensure_quotas

log = logging.getLogger("zasync.plone")


@implementer(INonInstallable)
class HiddenProfiles:
    def getNonInstallableProfiles(self):
        return ["zasync.plone:uninstall"]


def post_install(context):
    """Make sure the queues and the 'default' quota exist."""
    queue = getUtility(IAsyncService).getQueues()[""]
    ensure_quotas(queue, (DEFAULT_QUOTA,))
    log.info(
        "zasync installed; the 'default' quota has size %s",
        queue.quotas[DEFAULT_QUOTA].size,
    )


def post_uninstall(context):
    """The profile removed the settings, the control panel and the browser
    layer (and this removes the records of profile version 1000); the browser
    demo is uninstalled too (its own profile, zasync.plone:demo-uninstall:
    the page goes, the demo folder's content stays). The queues stay: they
    are shared by every site of the database and may hold jobs of other
    sites (remove them with the zasync command if no site uses them)."""
    from zasync.plone.demo import setuphandlers as demo
    from zasync.plone.upgrades import OLD_DEFAULTS

    demo.uninstall(context)
    # A site never upgraded to profile 1001 still has the records that
    # version 1000 kept the cluster-wide sizes in.
    registry = queryUtility(IRegistry)
    if registry is not None:
        for name in OLD_DEFAULTS:
            if name in registry.records:
                del registry.records[name]
    log.info("zasync uninstalled; the database's queues were kept")
