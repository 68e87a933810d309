"""Site settings in the configuration registry, applied to the queue.

The records (prefix ``zasync``, see IZasyncSettings) are installed by the
GenericSetup profile. Changing ``default_quota_size`` or ``agent_size``
writes the new value to the queue at once, so every dispatcher of the
cluster follows it at its next claim. A worker started later gets its
threads from zope.conf (``threads``) again; set it there to keep a change.
"""

import logging

from plone.registry.interfaces import IRecordModifiedEvent, IRegistry
from zope.component import adapter, queryUtility

from zasync.plone.config import process_config
from zasync.plone.interfaces import DEFAULT_QUOTA, IZasyncSettings

log = logging.getLogger("zasync.plone")

PREFIX = "zasync"


def settings():
    """The site's IZasyncSettings records proxy, or None if not installed."""
    registry = queryUtility(IRegistry)
    if registry is None:
        return None
    try:
        return registry.forInterface(IZasyncSettings, prefix=PREFIX, check=False)
    except KeyError:
        return None


def _record(name, default=None, site=None):
    if site is not None:
        # Before the site is entered (the worker sets it up from this).
        registry = site.getSiteManager().queryUtility(IRegistry)
    else:
        registry = queryUtility(IRegistry)
    if registry is None:
        return default
    return registry.get(f"{PREFIX}.{name}", default)


def public_url(site=None):
    """The configured public URL of the site: the registry record, else
    zope.conf's ``public-url``, else None."""
    url = _record("public_url", site=site)
    if url:
        return url.rstrip("/")
    return process_config().public_url


def default_quota_size():
    """The size the 'default' quota should have."""
    size = _record("default_quota_size")
    if size:
        return size
    return process_config().default_quota_size or 1


def ensure_quotas(queue, names):
    """Create the quotas in ``names`` that ``queue`` lacks: 'default' with
    the configured size, others with size 1."""
    for name in names:
        if name not in queue.quotas:
            size = default_quota_size() if name == DEFAULT_QUOTA else 1
            queue.quotas.create(name, size=size)


def apply_quota_size(queue, size):
    quota = queue.quotas.get(DEFAULT_QUOTA)
    if quota is None:
        queue.quotas.create(DEFAULT_QUOTA, size=size)
    elif quota.size != size:
        quota.size = size


def apply_agent_size(queue, size):
    for record in queue.dispatchers.values():
        agent = record.agents.get("main")
        if agent is not None and agent.size != size:
            agent.size = size


@adapter(IZasyncSettings, IRecordModifiedEvent)
def settings_changed(proxy, event):
    """Write a changed quota or agent size to the default queue."""
    name = event.record.fieldName
    if name not in ("default_quota_size", "agent_size") or not event.newValue:
        return
    from zope.component import getUtility

    from zasync.plone.interfaces import IAsyncService

    queue = getUtility(IAsyncService).getQueues()[""]
    if name == "default_quota_size":
        apply_quota_size(queue, event.newValue)
    else:
        apply_agent_size(queue, event.newValue)
    log.info("zasync: %s set to %s", name, event.newValue)
