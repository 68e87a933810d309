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


def publish_in_steps(folder, uids, every):
    """Publish the documents of ``uids`` in steps (zasync.steps); the
    Plone worker process test kills its worker half way."""
    from plone import api
    from zasync import steps

    def publish(uid):
        doc = api.content.get(UID=uid)
        api.content.transition(obj=doc, transition="publish")

    return steps.run(uids, publish, every=every)["done"]
