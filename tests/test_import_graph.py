"""The rules of the house, read from the import graph of src/zasync.

Each package imports only those below it (the engine, then admin, then
cli / deploy / testing); the engine imports nothing from Zope or Plone;
zasync.plone, the add-on, uses the engine and admin only. Every import
counts, also those inside functions; the one way from the command into
Zope (zasync.cli.zope) is named below as the exception it is.
"""

import ast
import pathlib
import sys

import pytest

SRC = pathlib.Path(__file__).resolve().parents[1] / "src"

# What each layer may import of zasync: the package prefixes allowed.
ENGINE = "engine"
ALLOWED = {
    ENGINE: {ENGINE},
    "zasync.admin": {ENGINE, "zasync.admin"},
    "zasync.testing": {ENGINE, "zasync.admin", "zasync.testing"},
    "zasync.deploy": {ENGINE, "zasync.admin", "zasync.deploy", "zasync.plone"},
    "zasync.cli": {
        ENGINE,
        "zasync.admin",
        "zasync.cli",
        "zasync.deploy",
        "zasync.testing",
    },
    "zasync.plone": {ENGINE, "zasync.admin", "zasync.plone"},
}
# Where the rules above are broken on purpose, and why.
EXCEPTIONS = {
    # --zope-conf: the one lazy entry point into Zope and the add-on.
    ("zasync.cli.zope", "zasync.plone"),
    # The add-on's test layers (for add-ons that queue jobs) use the
    # engine's waits.
    ("zasync.plone.testing", "zasync.testing"),
}
# Third-party packages the engine may import; everything else it imports
# must be the standard library.
ENGINE_THIRD_PARTY = {
    "BTrees",
    "ZEO",
    "ZODB",
    "croniter",  # recurring jobs' cron expressions (zasync.recurring)
    "persistent",
    "psycopg2",
    "relstorage",
    "transaction",
    "zope.interface",
}


def module_name(path):
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules():
    return {module_name(p): p for p in sorted((SRC / "zasync").rglob("*.py"))}


def imports(path):
    """Every module ``path`` imports, absolute, anywhere in the file."""
    package = (
        module_name(path)
        if path.name == "__init__.py"
        else module_name(path).rpartition(".")[0]
    )
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(
                    package.split(".")[: len(package.split(".")) - node.level + 1]
                    + ([base] if base else [])
                )
            found.add(base)
            # ``from zasync import admin`` imports the module zasync.admin.
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def layer(name):
    for prefix in ALLOWED:
        if prefix != ENGINE and (name == prefix or name.startswith(prefix + ".")):
            return prefix
    return ENGINE


def zasync_packages():
    return {name for name in modules()}


def test_the_graph_is_read():
    # The test reads the real tree: it finds the layers and some imports.
    found = modules()
    assert {"zasync.job", "zasync.admin", "zasync.cli", "zasync.plone"} <= set(found)
    assert "zasync.job" in imports(found["zasync.queue"])


@pytest.mark.parametrize("name", sorted(modules()))
def test_each_module_imports_only_what_its_layer_may(name):
    known = zasync_packages()
    mine = layer(name)
    wrong = []
    for target in imports(modules()[name]):
        if target not in known or target == "zasync":
            continue  # not a zasync module (a name imported from one)
        theirs = layer(target)
        if theirs in ALLOWED[mine]:
            continue
        if any(
            name == a and (target == b or target.startswith(b + "."))
            for a, b in EXCEPTIONS
        ):
            continue
        wrong.append(target)
    assert not wrong, f"{name} ({mine}) may not import {sorted(wrong)}"


@pytest.mark.parametrize("name", sorted(n for n in modules() if layer(n) == ENGINE))
def test_the_engine_imports_nothing_of_zope_or_plone(name):
    stdlib = sys.stdlib_module_names
    foreign = []
    for target in imports(modules()[name]):
        top = target.split(".")[0]
        if not target or top == "zasync" or top in stdlib or top == "__future__":
            continue
        if any(target == p or target.startswith(p + ".") for p in ENGINE_THIRD_PARTY):
            continue
        if target.rpartition(".")[0] in ENGINE_THIRD_PARTY:
            continue  # from zope.interface import implementer
        foreign.append(target)
    assert not foreign, f"the engine module {name} imports {sorted(foreign)}"


TRANSACT_NAMES = {"abort", "POSTPONE", "TRANSIENT_ERRORS", "ClientDisconnected"}


@pytest.mark.parametrize("name", sorted(modules()))
def test_transaction_helpers_come_from_transact_not_the_runner(name):
    tree = ast.parse(modules()[name].read_text())
    wrong = [
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module == "zasync.runner"
        for alias in node.names
        if alias.name in TRANSACT_NAMES
    ]
    assert not wrong, f"{name} imports {wrong} from zasync.runner: use zasync.transact"
