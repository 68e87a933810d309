"""zasync: durable, transactional background jobs stored in ZODB."""

from zasync.composite import parallel, serial
from zasync.dispatcher import Dispatcher, start
from zasync.failure import Failure
from zasync.job import BadJobError, Job
from zasync.queue import Queue, Queues, get_queues
from zasync.status import Status

__all__ = [
    "BadJobError",
    "Dispatcher",
    "Failure",
    "Job",
    "Queue",
    "Queues",
    "Status",
    "get_queues",
    "parallel",
    "serial",
    "start",
]
