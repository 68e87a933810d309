"""Where the queues live (single- or multi-database mode), as the main
database records it, and the jobs not yet done."""

from zasync import clock
from zasync.exceptions import AdminError

# -- where the queues live ---------------------------------------------------

#: The key of the main database's root that records where the queues of
#: the cluster live (see queues_location).
LOCATION_KEY = "zasync.queues_location"


def describe_location(database):
    """How a queues location is named to people."""
    if database is None:
        return "the main database (single-database mode)"
    return f"the database {database!r} (multi-database mode)"


def queues_location(connection):
    """Where the processes of this cluster keep the queues, as recorded in
    the main database behind ``connection``: ``{"database": None (the main
    database) or the name of the queues' own database, "recorded_by": text,
    "recorded": datetime}``, or None if nothing is recorded.

    The first process that starts records it; each one that starts later
    checks it (zasync.plone.startup), so that a process configured for the
    other mode stops instead of watching queues nobody else uses."""
    entry = connection.root().get(LOCATION_KEY)
    return None if entry is None else dict(entry)


def record_queues_location(connection, database, by, now=None):
    """Record, in the current transaction, that the queues live in
    ``database`` (None: the main database); ``by`` says who did. Returns
    what was recorded before (see queues_location), or None."""
    if database is not None and (not isinstance(database, str) or not database):
        raise AdminError(f"a database name must be a non-empty text, not {database!r}")
    before = queues_location(connection)
    connection.root()[LOCATION_KEY] = {
        "database": database,
        "recorded_by": str(by),
        "recorded": now or clock.utcnow(),
    }
    return before


def unfinished_jobs(queues):
    """How many jobs of ``queues`` are pending, claimed or waiting."""
    return sum(queue.unsettled() for queue in queues.values())
