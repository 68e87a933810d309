"""Modules that moved to their own packages are still importable under
their old dotted names: the same module, with a DeprecationWarning."""

import importlib
import subprocess
import sys

import pytest

from zasync._moved import MOVED


@pytest.mark.parametrize("old", sorted(MOVED))
def test_an_old_name_gives_the_moved_module(old):
    # A fresh interpreter: the old name is imported before the new one.
    code = (
        "import importlib, sys, warnings\n"
        "warnings.simplefilter('always')\n"
        "with warnings.catch_warnings(record=True) as caught:\n"
        f"    old = importlib.import_module({old!r})\n"
        f"new = importlib.import_module({MOVED[old]!r})\n"
        "assert old is new, (old, new)\n"
        f"assert sys.modules[{old!r}] is new\n"
        "assert any(w.category is DeprecationWarning and 'moved to' in str(w.message)"
        " for w in caught), [str(w.message) for w in caught]\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr


def test_names_users_imported_from_the_old_modules_still_import():
    from zasync.connect import CommandError, open_zodb_conf  # noqa: F401
    from zasync.plone.instance import InstanceHome  # noqa: F401
    from zasync.processes import ZEOServer

    assert ZEOServer is importlib.import_module("zasync.testing.processes").ZEOServer


def test_the_public_submodules_are_reachable_from_zasync():
    code = (
        "import zasync\n"
        "assert zasync.retry.RetryWithDelay and zasync.local.get_job\n"
        "assert zasync.exceptions.ZasyncError is zasync.ZasyncError\n"
        "assert zasync.testing.wait_for_result and zasync.admin.find_jobs\n"
        "assert zasync.interfaces.IJob\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
