"""Time as zasync sees it: timezone-aware UTC, and microsecond keys for indexes.

Code that needs the time takes a ``now`` argument or a clock callable
defaulting to :func:`utcnow`, so tests can inject time instead of patching.
"""

import datetime
import time

UTC = datetime.UTC
EPOCH = datetime.datetime(1970, 1, 1, tzinfo=UTC)


def utcnow():
    """The current time as a timezone-aware UTC datetime."""
    return datetime.datetime.now(UTC)


def to_micros(when):
    """Microseconds since the Unix epoch, for ordering keys in BTrees."""
    delta = when - EPOCH
    return (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_micros(micros):
    return EPOCH + datetime.timedelta(microseconds=micros)


def aware(when, name):
    """Check that ``when`` is a timezone-aware datetime and return it in UTC."""
    if not isinstance(when, datetime.datetime):
        raise TypeError(
            f"{name} must be a datetime.datetime or a datetime.timedelta, "
            f"not {type(when).__name__}"
        )
    if when.tzinfo is None or when.utcoffset() is None:
        raise ValueError(
            f"{name} must be timezone-aware (for example "
            f"datetime.datetime.now(datetime.timezone.utc)); got naive {when!r}"
        )
    return when.astimezone(UTC)


def duration(value, name, positive=False):
    """``value`` as a timedelta: a timedelta, or a number of seconds.

    Wherever zasync asks for a duration (``begin_by``, a retry delay, ...)
    it takes either; anything else is a TypeError that says so. With
    ``positive``, zero and less are a ValueError.
    """
    if isinstance(value, datetime.timedelta):
        delta = value
    elif isinstance(value, int | float) and not isinstance(value, bool):
        delta = datetime.timedelta(seconds=value)
    else:
        raise TypeError(
            f"{name} must be a datetime.timedelta or a number of seconds, not {value!r}"
        )
    if positive and delta <= datetime.timedelta(0):
        raise ValueError(f"{name} must be a positive duration, not {value!r}")
    return delta


def micros_property(name):
    """A datetime attribute stored as integer microseconds in ``name``."""

    def get(self):
        micros = getattr(self, name, None)
        return None if micros is None else from_micros(micros)

    def set(self, when):
        setattr(self, name, None if when is None else to_micros(when))

    return property(get, set)


def wait_until(predicate, timeout, interval=0.05):
    """Poll ``predicate`` until true or ``timeout``; returns its last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval)


# -- the storage's time ------------------------------------------------------
#
# Every commit gets a transaction id (tid) from the storage (the ZEO server,
# the FileStorage's process, PostgreSQL for RelStorage); tids only grow and
# encode the time of the commit. Two clients comparing tids compare times
# the storage gave, whatever their own clocks say: this is how heartbeats
# are aged (see zasync.registry.DispatcherRecord.heartbeat_age).


def tid_seconds(tid):
    """Seconds since the Unix epoch at which the storage committed ``tid``
    (8 bytes)."""
    from ZODB.TimeStamp import TimeStamp

    return TimeStamp(tid).timeTime()


def seen_tid(conn):
    """The id of the latest transaction that ``conn``'s current snapshot
    shows, or None when the storage does not say (then callers fall back to
    the serials they read, which are never newer than the snapshot).

    Never a later one: an age measured to it from a serial read in the same
    snapshot is consistent, however stale the snapshot (a process that was
    paused may see an old one until its invalidations are read).
    """
    from ZODB.utils import p64, u64, z64

    storage = getattr(conn, "_storage", None)
    start = getattr(storage, "_start", None)  # ZODB's MVCC adapter: loads before it
    if isinstance(start, bytes) and len(start) == 8 and start != z64:
        return p64(u64(start) - 1)
    return None
