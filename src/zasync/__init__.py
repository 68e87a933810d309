"""zasync: durable, transactional background jobs stored in ZODB."""

import importlib

from zasync import _moved, exceptions, interfaces, local, retry, steps
from zasync.composite import parallel, serial
from zasync.dispatcher import Dispatcher, start
from zasync.exceptions import ZasyncError
from zasync.failure import Failure
from zasync.job import BadJobError, Job
from zasync.queue import Queue, Queues, get_queues
from zasync.status import Status

_moved.install()

# Packages above the engine: reachable as zasync.admin and zasync.testing
# without importing them (and what they import) with every ``import zasync``.
_LAZY = ("admin", "testing")


def __getattr__(name):
    if name in _LAZY:
        return importlib.import_module(f"zasync.{name}")
    raise AttributeError(f"module 'zasync' has no attribute {name!r}")


__all__ = [
    "BadJobError",
    "Dispatcher",
    "Failure",
    "Job",
    "Queue",
    "Queues",
    "Status",
    "ZasyncError",
    "exceptions",
    "get_queues",
    "interfaces",
    "local",
    "parallel",
    "retry",
    "serial",
    "start",
    "steps",
]
