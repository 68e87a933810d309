"""GenericSetup upgrade steps of the profile ``zasync.plone:default``.

Run them in Site Setup > Add-ons (the "upgrade" button of zasync), or with
``portal_setup.upgradeProfile("zasync.plone:default")``.
"""

import logging

from plone.registry.interfaces import IRegistry
from zope.component import getUtility
from zope.component.hooks import getSite

from zasync import admin
from zasync.plone.interfaces import DEFAULT_QUOTA, IAsyncService

log = logging.getLogger("zasync.plone")

PROFILE = "profile-zasync.plone:default"

#: The records that profile version 1000 kept in each site's registry for
#: settings of the whole cluster, and the default each had.
OLD_QUOTA_RECORD = "zasync.default_quota_size"
OLD_AGENT_RECORD = "zasync.agent_size"
OLD_DEFAULTS = {OLD_QUOTA_RECORD: 1, OLD_AGENT_RECORD: 3}


def _site_path():
    site = getSite()
    return "/".join(site.getPhysicalPath()) if site is not None else "this site"


def _carry_quota_size(queues, value, where):
    """The 'default' quota takes a changed size of the old record, unless
    its own size was changed too (by another site or an operator): the
    quota in force is the cluster's setting, and wins."""
    quota = queues[""].quotas.get(DEFAULT_QUOTA)
    default = OLD_DEFAULTS[OLD_QUOTA_RECORD]
    if quota is not None and quota.size == value:
        return
    if quota is None or quota.size == default:
        admin.set_quota_size(queues, DEFAULT_QUOTA, value)
        log.info(
            "zasync upgrade of %s: the %r quota has size %d, carried over from "
            "the old registry record %s",
            where,
            DEFAULT_QUOTA,
            value,
            OLD_QUOTA_RECORD,
        )
    else:
        log.warning(
            "zasync upgrade of %s: the old registry record %s said %d, but the "
            "%r quota in force has size %d (set by another site or an "
            "operator); kept %d. Change it in the zasync control panel or with "
            "'zasync quota set %s N'.",
            where,
            OLD_QUOTA_RECORD,
            value,
            DEFAULT_QUOTA,
            quota.size,
            quota.size,
            DEFAULT_QUOTA,
        )


def _carry_agent_size(queues, value, where):
    """The default queue's default agent size takes a changed value of the
    old record, unless the cluster has one already."""
    settings = queues[""].agent_settings
    current = None if settings is None else settings.default_size
    if current == value:
        return
    if current is None:
        admin.set_agent_size(queues, value)
        log.info(
            "zasync upgrade of %s: the default agent size of the cluster is %d, "
            "carried over from the old registry record %s (dispatchers that "
            "set threads in zope.conf keep theirs)",
            where,
            value,
            OLD_AGENT_RECORD,
        )
    else:
        log.warning(
            "zasync upgrade of %s: the old registry record %s said %d, but the "
            "cluster's default agent size is %d already (set by another site "
            "or an operator); kept %d.",
            where,
            OLD_AGENT_RECORD,
            value,
            current,
            current,
        )


def move_cluster_settings_to_the_queues(context):
    """1000 to 1001: the quota and agent sizes are cluster-wide, kept with
    the queues, and the registry of each site lost its copies.

    Removes the records ``zasync.default_quota_size`` and
    ``zasync.agent_size``; a value changed from its default there is
    carried over to the setting kept with the queues, unless the cluster's
    setting was changed too (then the cluster's stays, as it is the one in
    force, and the log says so). Adds the zasync control panel to Site
    Setup.
    """
    registry = getUtility(IRegistry)
    queues = getUtility(IAsyncService).getQueues()
    where = _site_path()
    carry = {OLD_QUOTA_RECORD: _carry_quota_size, OLD_AGENT_RECORD: _carry_agent_size}
    for key, carry_over in carry.items():
        if key not in registry.records:
            continue
        value = registry.records[key].value
        if value is not None and value != OLD_DEFAULTS[key]:
            carry_over(queues, value, where)
        del registry.records[key]
        log.info("zasync upgrade of %s: removed the registry record %s", where, key)
    context.runImportStepFromProfile(PROFILE, "controlpanel")
