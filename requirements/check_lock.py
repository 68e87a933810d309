"""Check requirements/constraints.txt against pyproject.toml, offline.

Fails (exit 1) when the lock
  - pins a pre-release (aN, bN, rcN, .devN),
  - pins zasync itself,
  - misses a package that pyproject.toml asks for (runtime or any extra):
    someone added a dependency and forgot `make lock`,
  - pins another version than an exact `==` requirement in pyproject.toml.

Usage: python requirements/check_lock.py [pyproject.toml] [constraints.txt]
Standard library only, so it runs before any virtual env exists.
"""

import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;#]+)")
REQ = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[[^\]]*\])?\s*([^;]*)")


def normalize(name):
    return re.sub(r"[-_.]+", "-", name).lower()


def requirements(pyproject):
    project = tomllib.loads(pyproject.read_text())["project"]
    reqs = list(project.get("dependencies", []))
    for extra in project.get("optional-dependencies", {}).values():
        reqs.extend(extra)
    for req in reqs:
        m = REQ.match(req)
        if m and normalize(m.group(1)) != normalize(project["name"]):
            yield normalize(m.group(1)), m.group(2).strip(), req


def main(argv):
    pyproject = Path(argv[1]) if len(argv) > 1 else ROOT / "pyproject.toml"
    lock = Path(argv[2]) if len(argv) > 2 else ROOT / "requirements/constraints.txt"
    pins = {}
    errors = []
    for line in lock.read_text().splitlines():
        m = PIN.match(line)
        if m:
            name, version = normalize(m.group(1)), m.group(2)
            pins[name] = version
            # Once the local part (+...) and .postN are gone, any letter left
            # belongs to a pre-release (aN, bN, rcN) or a development release.
            if re.search(r"[a-z]", version.split("+")[0].lower().replace("post", "")):
                errors.append(f"{lock.name} pins a pre-release: {name}=={version}")
    name = normalize(tomllib.loads(pyproject.read_text())["project"]["name"])
    if name in pins:
        errors.append(f"{lock.name} pins the project itself ({name}); remove it")
    for req_name, spec, req in requirements(pyproject):
        if req_name not in pins:
            errors.append(
                f"{req!r} from pyproject.toml is not in {lock.name}: run `make lock`"
            )
        elif spec.startswith("==") and "," not in spec:
            wanted = spec[2:].strip()
            if wanted != pins[req_name]:
                errors.append(
                    f"{req!r} but {lock.name} pins {req_name}=={pins[req_name]}:"
                    " run `make lock`"
                )
    for error in errors:
        print("error:", error, file=sys.stderr)
    if errors:
        return 1
    print(f"{lock.name}: {len(pins)} pins, no pre-releases, covers pyproject.toml")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
