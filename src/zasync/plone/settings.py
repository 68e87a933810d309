"""Settings: the site's own in its configuration registry, the cluster's
with the queues.

A site keeps what applies to it alone in its registry (prefix ``zasync``,
see IZasyncSettings): the public URL its jobs see. What applies to every
site of the database and to every worker is kept with the queues, where
the dispatchers read it: the size of each quota (the quota itself) and the
agents' sizes (zasync.registry). ``zasync settings`` and the zasync
control panel show those; neither is copied into any site's registry, so
no site can show a value that is not in force.
"""

import logging

from plone.registry.interfaces import IRegistry
from zope.component import queryUtility

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
    """The size a new 'default' quota gets: zope.conf's
    ``default-quota-size``, else 1. Once the quota exists, its own size is
    in force."""
    return process_config().default_quota_size or 1


def ensure_quotas(queue, names):
    """Create the quotas in ``names`` that ``queue`` lacks: 'default' with
    default_quota_size(), others with size 1. Existing quotas keep their
    size: it is the cluster's setting."""
    for name in names:
        if name not in queue.quotas:
            size = default_quota_size() if name == DEFAULT_QUOTA else 1
            queue.quotas.create(name, size=size)
