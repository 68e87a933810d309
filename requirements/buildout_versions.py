"""Write requirements/versions.cfg, buildout's [versions], from the lock.

buildout.cfg extends requirements/versions.cfg and sets
``allow-picked-versions = false``, so the buildout deployment installs
exactly the versions pinned in requirements/constraints.txt, the lock that
``make install`` uses: one lock for pip and buildout.

Usage:
    python requirements/buildout_versions.py           # (re)write versions.cfg
    python requirements/buildout_versions.py --check   # exit 1 if out of date

Names: the lock has PEP 503 normalised names (``plone-app-event``).
zc.buildout (5 and later) normalises the names in [versions] itself, so
any spelling matches, except that buildout.py looks for the literal keys
``zc.buildout`` and ``zc.recipe.egg`` (and, when missing, adds ``>=``
minimums for them that a normalised spelling would not override). So the
names of the dotted namespace families (zope.*, plone.*, Products.*, zc.*,
...) are written with dots, as their projects spell them; the others stay
as the lock has them.

Standard library only, so it runs before any virtual env exists.
"""

import argparse
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LOCK = ROOT / "requirements" / "constraints.txt"
VERSIONS = ROOT / "requirements" / "versions.cfg"

PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;#]+)")

# Namespace families whose projects are spelled with dots: the first part
# of the normalised name -> how it is written.
NAMESPACES = {
    "borg": "borg",
    "collective": "collective",
    "five": "five",
    "plone": "plone",
    "plonetheme": "plonetheme",
    "products": "Products",
    "repoze": "repoze",
    "z3c": "z3c",
    "zc": "zc",
    "zope": "zope",
}

HEADER = """\
# buildout's [versions], generated from requirements/constraints.txt by
# requirements/buildout_versions.py. Do not edit by hand: run `make lock`
# (it rewrites the lock and this file); `make check-lock` fails when this
# file no longer matches the lock.
[versions]
"""


def normalize(name):
    return re.sub(r"[-_.]+", "-", name).lower()


def buildout_name(name):
    """How ``name`` (normalised) is written in [versions]."""
    parts = normalize(name).split("-")
    if len(parts) > 1 and parts[0] in NAMESPACES:
        return ".".join([NAMESPACES[parts[0]], *parts[1:]])
    return "-".join(parts)


def pins(lock_text):
    """(normalised name, version) of every pin in the lock, sorted by name."""
    found = {}
    for line in lock_text.splitlines():
        m = PIN.match(line.strip())
        if m:
            found[normalize(m.group(1))] = m.group(2)
    return sorted(found.items())


def shown(path):
    """``path`` relative to the repository, when it is inside it."""
    try:
        return path.resolve().relative_to(ROOT).as_posix()
    except ValueError:
        return str(path)


def render(lock_text):
    """The text of versions.cfg for the lock ``lock_text``."""
    entries = [(buildout_name(name), version) for name, version in pins(lock_text)]
    if not entries:
        raise ValueError("the lock pins nothing")
    width = max(len(name) for name, _ in entries)
    lines = [f"{name:<{width}} = {version}" for name, version in entries]
    return HEADER + "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(
        description="Generate buildout's [versions] (requirements/versions.cfg) "
        "from the pip lock (requirements/constraints.txt)."
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="do not write; exit 1 if versions.cfg does not match the lock",
    )
    parser.add_argument("--lock", type=Path, default=LOCK, help=argparse.SUPPRESS)
    parser.add_argument("--output", type=Path, default=VERSIONS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    wanted = render(args.lock.read_text())
    count = wanted.count("\n") - HEADER.count("\n")
    if args.check:
        current = args.output.read_text() if args.output.exists() else None
        if current != wanted:
            if current is None:
                problem = f"{shown(args.output)} is missing"
            else:
                problem = (
                    f"{shown(args.output)} does not match {shown(args.lock)} (buildout "
                    f"would install other versions than pip)"
                )
            print(f"error: {problem}: run `make lock`", file=sys.stderr)
            return 1
        print(f"{args.output.name}: {count} versions, in sync with {args.lock.name}")
        return 0
    if args.output.exists() and args.output.read_text() == wanted:
        print(f"{args.output.name}: {count} versions, unchanged")
        return 0
    args.output.write_text(wanted)
    print(f"wrote {args.output.name}: {count} versions from {args.lock.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
