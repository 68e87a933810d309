"""Job functions of the group commit crash test, run by ``zasync worker``
processes (tests/cluster is on their PYTHONPATH)."""

import os

import transaction

from zasync import local
from zasync.clock import wait_until

GATE_PATIENCE = 60.0


def _wait_for_file(path):
    """Wait (inside the job) until ``path`` exists, at most GATE_PATIENCE."""
    wait_until(lambda: os.path.exists(path), GATE_PATIENCE, 0.01)


def record(markers, key, gate=None):
    """Record one committed run of job ``key``: a tuple of one token per
    committed run, (attempt, whether it shared its transaction with other
    jobs: the runner holds a savepoint of it while a batch runs). With
    ``gate``, the run creates ``gate + '.entered'`` and waits until ``gate``
    exists (the test kills the worker meanwhile)."""
    job = local.get_job()
    batched = bool(transaction.get()._savepoint2index)
    markers[key] = markers.get(key, ()) + ((job.attempts, batched),)
    if gate is not None and not os.path.exists(gate):
        with open(gate + ".entered", "w") as f:
            f.write(str(os.getpid()))
        _wait_for_file(gate)
    return key


def hold(gate):
    """Keep the worker's one thread busy until ``gate`` exists."""
    _wait_for_file(gate)
    return "held"
