"""Commands the documentation shows that the docs tests cannot run as
shown (see docs/quickstart.md): they are run here, as far as a test can."""

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def test_make_demo_runs_the_demo(tmp_path):
    """`make demo` installs .venv if needed, then runs `zasync demo`; the
    test does not reinstall the environment it runs in: it checks what make
    would run, then runs that."""
    planned = subprocess.run(
        ["make", "--no-print-directory", "-n", "demo"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    assert planned[-1] == ".venv/bin/zasync demo", planned
    result = subprocess.run(
        [str(BIN / "zasync"), "demo", "--directory", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "queue counts:" in result.stdout
    assert "'pending': 0" in result.stdout
