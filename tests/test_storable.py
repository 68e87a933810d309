"""zasync.storable: the one resolver of dotted names, and an engine module
that depends on nothing above it (no import of zasync.job)."""

import ast
import pathlib

import pytest

import zasync
from zasync import storable
from zasync.job import Job


def test_resolve_with_the_module_apart_or_found():
    assert storable.resolve("zasync.job", "Job.add_callback") is Job.add_callback
    assert storable.resolve("zasync.job.Job.add_callback") is Job.add_callback
    assert storable.resolve("builtins.KeyError") is KeyError


def test_resolve_says_what_is_missing():
    with pytest.raises(ImportError):
        storable.resolve("no_such_module_here.thing")
    with pytest.raises(AttributeError):
        storable.resolve("zasync.job.NoSuchName")
    with pytest.raises(ImportError):
        storable.resolve("no_such_module_here", "thing")


def test_one_resolver_serves_jobs_and_failures():
    """job.py and failure.py call storable.resolve; neither imports
    importlib to walk dotted names of its own."""
    src = pathlib.Path(zasync.__file__).parent
    for name in ("job.py", "failure.py"):
        text = (src / name).read_text()
        assert "importlib" not in text, name
        assert "resolve" in text, name


def test_storable_does_not_import_the_job_module():
    tree = ast.parse(pathlib.Path(storable.__file__).read_text())
    imported = {
        node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
    } | {
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    }
    assert not {"zasync.job", "zasync.composite", "zasync.queue"} & imported


def test_a_job_is_a_storable_callable_and_named_as_one():
    inner = Job(storable.resolve, "builtins.len")
    storable.check_callable(inner)
    assert storable.callable_name(inner) == "job:zasync.storable.resolve"
