"""``zasync worker --zodb-conf`` says what is wrong, with exit code 2 and no
traceback, when the file is missing, is not a ZODB configuration, or names a
ZEO server nobody answers at."""

import os
import subprocess
import sys

import pytest

from zasync.config import WORKER_READY
from zasync.testing import processes


def zasync_command():
    path = os.path.join(os.path.dirname(sys.executable), "zasync")
    return [path] if os.path.exists(path) else [sys.executable, "-m", "zasync.cli"]


def run_worker(conf, *options):
    return subprocess.run(
        [*zasync_command(), "worker", "--zodb-conf", conf, *options],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=60,
    )


def unreachable_zeo(directory):
    port = processes.free_port()  # nobody listens on it
    path = os.path.join(directory, "unreachable.conf")
    with open(path, "w") as f:
        f.write(
            f"<zodb>\n  <zeoclient>\n    server 127.0.0.1:{port}\n"
            f"  </zeoclient>\n</zodb>\n"
        )
    return path, [f"cannot reach the ZEO server 127.0.0.1:{port} within 2s"]


def invalid(directory):
    path = os.path.join(directory, "invalid.conf")
    with open(path, "w") as f:
        f.write("<zodb>\n  <filestorage>\n    no-such-key 1\n")
    return path, [f"--zodb-conf {path} is not a valid ZODB configuration"]


def missing(directory):
    path = os.path.join(directory, "missing.conf")
    return path, [f"--zodb-conf {path}: no such file"]


@pytest.mark.parametrize("make", [missing, invalid, unreachable_zeo])
def test_worker_explains_a_bad_zodb_conf(make, tmp_path):
    conf, expected = make(str(tmp_path))
    result = run_worker(conf, "--timeout", "2")
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    assert "zasync worker: error: " in result.stderr, result.stderr
    for text in expected:
        assert text in result.stderr, result.stderr
    assert WORKER_READY not in result.stdout + result.stderr
