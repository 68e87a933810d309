"""Job callables for the Zope process tests. The worker processes import this
module: the tests put its directory on their PYTHONPATH."""

import os
import time


def pid():
    """The id of the process that runs the job."""
    return os.getpid()


def wait_for_file(path, seconds=30):
    """Block until ``path`` exists; the test creates it to let the job end."""
    deadline = time.monotonic() + seconds
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} did not appear within {seconds}s")
        time.sleep(0.01)
    return ("released", os.getpid())
