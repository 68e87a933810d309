"""The life cycle of a job."""

import enum


class Status(enum.StrEnum):
    """Where a job is in its life.

    The values are plain strings, so a status compares equal to its value
    (``Status.PENDING == "pending"``) and can be stored or shown as text.
    A job only moves forward along this list, except that a job that is
    retried goes back from ACTIVE to PENDING.
    """

    NEW = "new"  # created, not in a queue
    WAITING = "waiting"  # in a queue, waiting for the jobs it depends on
    PENDING = "pending"  # in a queue, waiting to be claimed
    ASSIGNED = "assigned"  # claimed by a dispatcher, not started yet
    ACTIVE = "active"  # running (or, for serial/parallel, waiting on children)
    CALLBACKS = "callbacks"  # result committed, callbacks still to run
    COMPLETED = "completed"  # result (or Failure) and callbacks are done

    def __str__(self):
        return self.value


NEW = Status.NEW
WAITING = Status.WAITING
PENDING = Status.PENDING
ASSIGNED = Status.ASSIGNED
ACTIVE = Status.ACTIVE
CALLBACKS = Status.CALLBACKS
COMPLETED = Status.COMPLETED
