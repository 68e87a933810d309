"""The old dotted names of modules that moved to their own packages.

``import zasync.worker`` (say) still works and gives the very module now at
``zasync.cli.worker``, with a DeprecationWarning: code and configuration
written against earlier versions keep running. Nothing persistent lived in
these modules, so stored data does not depend on this; it is for imports.
"""

import importlib
import importlib.abc
import importlib.util
import sys
import warnings

#: Old dotted name: new dotted name.
MOVED = {
    "zasync.admin_cli": "zasync.cli.commands",
    "zasync.connect": "zasync.cli.connect",
    "zasync.demo": "zasync.cli.demo",
    "zasync.processes": "zasync.testing.processes",
    "zasync.signals": "zasync.remote_wakeup",
    "zasync.worker": "zasync.cli.worker",
    "zasync.plone.cluster": "zasync.deploy.cluster",
    "zasync.plone.instance": "zasync.deploy.instance",
    "zasync.plone.serve": "zasync.deploy.serve",
    "zasync.plone.site": "zasync.deploy.site",
}


class _MovedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds an old name in MOVED and loads it as the module at its new one."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname not in MOVED:
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec):
        new = MOVED[spec.name]
        warnings.warn(
            f"{spec.name} moved to {new}; import it from there",
            DeprecationWarning,
            stacklevel=2,
        )
        return importlib.import_module(new)

    def exec_module(self, module):
        # The module ran when it was imported under its new name.
        pass


def install():
    """Let the old names be imported (once per process)."""
    if not any(isinstance(finder, _MovedModules) for finder in sys.meta_path):
        sys.meta_path.insert(0, _MovedModules())
