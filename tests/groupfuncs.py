"""Job functions of the group commit tests (tests/test_group_commit.py and
tests/cluster/test_group_commit_crash.py): one callable, so that the
runner's per-callable timing lets all of them join a batch once warmed up.
"""

import os
import signal
import threading

import transaction
from BTrees.OOBTree import OOBTree

from zasync import local
from zasync.clock import wait_until

# Set by a test to let a waiting job go on, by name (in-process tests).
events = {}


def ran_in_a_batch():
    """True if the running job shares its transaction with others: the
    runner holds a savepoint of the transaction while it runs."""
    return bool(transaction.get()._savepoint2index)


def record(tree, key, mode=None, other=None):
    """Record one run of job ``key`` in the BTree ``tree``: a tuple of one
    token per committed run, (the job's attempt, whether it ran in a batch).
    Returns ``key``. ``mode`` makes it misbehave after writing:

    - "fail": raise ValueError (its writes must be rolled back);
    - "commit": commit the transaction itself;
    - "hook": add an after-commit hook;
    - "conflict": write ``other`` (a Persistent) too, then wait for
      events[key] (the test changes ``other`` meanwhile);
    - "gate:PATH": create PATH + ".entered", then wait (at most 60 s) for
      PATH to exist (a worker process is killed meanwhile);
    """
    job = local.get_job()
    tree[key] = tree.get(key, ()) + ((job.attempts, ran_in_a_batch()),)
    if mode == "fail":
        raise ValueError(f"job {key} fails")
    if mode == "commit":
        transaction.commit()
    if mode == "hook":
        transaction.get().addAfterCommitHook(lambda status: None)
    if mode == "conflict":
        other.value = other.value + (key,)
        entered, go = events[key]
        entered.set()
        if not go.wait(30):
            raise RuntimeError("the test never let the job go on")
    if mode and mode.startswith("gate:"):
        path = mode[len("gate:") :]
        if not os.path.exists(path):
            with open(path + ".entered", "w") as f:
                f.write(str(os.getpid()))
            wait_until(lambda: os.path.exists(path), 60, 0.01)
    if mode == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    return key


def new_tree():
    return OOBTree()


def make_events(key):
    events[key] = (threading.Event(), threading.Event())
    return events[key]
