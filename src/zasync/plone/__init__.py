"""zasync for Zope and Plone: IAsyncService, jobs that run as their user.

Install with the ``zasync[plone]`` extra; plone.autoinclude loads the ZCML.
The names below are imported on first use, so that the ``zasync``
command's Plone subcommands (serve, cluster) can be listed without Zope.
"""

import importlib

_EXPORTS = {
    "asyncfunction": "zasync.plone.decorator",
    "is_async": "zasync.plone.decorator",
    "makeJob": "zasync.plone.service",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'zasync.plone' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
