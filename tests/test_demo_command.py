"""``zasync demo --directory DIR``: DIR is made if missing, a second run
reuses the database, and a DIR that cannot be used is a clear error."""

import ast
import subprocess
import sys
from pathlib import Path

ZASYNC = Path(sys.executable).parent / "zasync"


def demo(directory):
    return subprocess.run(
        [str(ZASYNC), "demo", "--directory", str(directory)],
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )


def test_a_missing_directory_is_made_and_a_second_run_reuses_it(tmp_path):
    directory = tmp_path / "not" / "there"
    completed = []
    for _ in range(2):
        result = demo(directory)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "Traceback" not in result.stderr
        counts = ast.literal_eval(result.stdout.split("queue counts: ")[1])
        assert counts["pending"] == 0
        completed.append(counts["completed"])
    assert (directory / "Data.fs").is_file()
    # The second run added its jobs to the first run's.
    assert completed[1] == 2 * completed[0] > 0


def test_a_file_in_the_way_is_an_error_that_says_so(tmp_path):
    in_the_way = tmp_path / "file"
    in_the_way.write_text("not a directory")
    result = demo(in_the_way)
    assert result.returncode == 2
    assert "exists and is not a directory" in result.stderr
    assert "Traceback" not in result.stderr
    assert in_the_way.read_text() == "not a directory"
