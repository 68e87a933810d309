"""The benchmarks and the soak runs still start: each one's --help runs (they import the
engine's names at start, so a rename shows here, not in a late make bench)."""

import pathlib
import subprocess
import sys

import pytest

BENCHMARKS = pathlib.Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.mark.parametrize(
    "script",
    sorted(p.name for p in [*BENCHMARKS.glob("bench_*.py"), BENCHMARKS / "soak.py"]),
)
def test_a_benchmark_starts(script):
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / script), "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=BENCHMARKS,
    )
    assert done.returncode == 0, done.stderr
    assert "usage:" in done.stdout
