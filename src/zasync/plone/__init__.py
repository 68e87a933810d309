"""zasync for Zope and Plone: IAsyncService, jobs that run as their user.

Install with the ``zasync[plone]`` extra; plone.autoinclude loads the ZCML.
The names below are imported on first use, so that the ``zasync``
command's Plone subcommands (serve, cluster) can be listed without Zope.
"""

import importlib
import importlib.metadata
import re
import sys

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


class AddonDistributionFinder(importlib.metadata.DistributionFinder):
    """Answers ``importlib.metadata.distribution("zasync.plone")`` with the
    distribution ``zasync``, which this package is part of.

    Plone's add-ons control panel shows the version of the package holding
    an add-on's profiles (``get_product_version("zasync.plone")``). Asked
    for that name only, this finder answers after every other one (a real
    ``zasync.plone`` distribution would win); it lists nothing when asked
    for all distributions, so zasync is listed once.
    """

    package = __name__

    @staticmethod
    def _normalized(name):
        return re.sub(r"[-_.]+", "-", name).lower()

    def find_spec(self, fullname, path=None, target=None):
        return None  # imports nothing

    def find_distributions(self, context=None):
        name = getattr(context, "name", None)
        if name is None or self._normalized(name) != self._normalized(self.package):
            return iter(())
        try:
            return iter((importlib.metadata.distribution("zasync"),))
        except importlib.metadata.PackageNotFoundError:
            return iter(())  # zasync's own files are not installed


if not any(
    type(finder).__name__ == AddonDistributionFinder.__name__
    for finder in sys.meta_path
):
    sys.meta_path.append(AddonDistributionFinder())
