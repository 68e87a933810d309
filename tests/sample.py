"""Importable callables, persistent classes and small helpers for job tests.

Jobs must name module-level functions or methods of persistent objects, so
the tests keep theirs here. ``tests/`` is on ``sys.path`` when pytest runs.
"""

import datetime
import threading

import persistent
import transaction
import ZODB
import ZODB.FileStorage
from persistent.list import PersistentList

from zasync import local

UTC = datetime.UTC
# A fixed, aware "now" for tests that inject time.
NOW = datetime.datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)


# -- callables ---------------------------------------------------------------


def add(a, b):
    return a + b


def echo(*args, **kwargs):
    return args, kwargs


def fail(message="boom"):
    raise ValueError(message)  # the raising line, looked for in tracebacks


def fail_connection(message="network down"):
    raise ConnectionError(message)


def tag(name):
    """A job whose first argument says which agent filter accepts it."""
    return name


def which_job():
    """Return the job running this call (zasync.local.get_job())."""
    return local.get_job()


def report_progress(fraction, message=None):
    local.set_progress(fraction, message)
    return "reported"


def annotate_live(name, value):
    local.set_live_annotation(name, value)
    return local.get_live_annotation(name)


def mark(result, label):
    """A callback: return what it was given, tagged."""
    return (label, result)


def on_success(result):
    return ("success", result)


def on_failure(failure):
    return ("failure", failure.getErrorMessage())


def explode(result):
    """A callback that raises."""
    raise RuntimeError(f"callback exploded on {result!r}")


# -- agent filters -------------------------------------------------------------


def accepts_a(job):
    return job.args[:1] == ("a",)


def accepts_b(job):
    return job.args[:1] == ("b",)


# -- persistent classes ----------------------------------------------------------


class Counter(persistent.Persistent):
    """A persistent object whose methods can be job callables."""

    def __init__(self):
        self.value = 0

    def add(self, n=1):
        self.value += n
        return self.value

    def __call__(self, n=1):
        return self.add(n)


class Log(persistent.Persistent):
    """Records what callbacks were given, in order."""

    def __init__(self):
        self.entries = PersistentList()

    def append(self, result, label=None):
        self.entries.append((label, result))
        return len(self.entries)


class Plain:
    """Not persistent: its methods cannot be job callables."""

    def method(self):
        return 1

    @classmethod
    def build(cls, value):
        return (cls.__name__, value)


# -- exceptions ------------------------------------------------------------------


class LockedError(Exception):
    """An importable exception whose instances hold a lock (do not pickle)."""

    def __init__(self, message):
        super().__init__(message)
        self.lock = threading.Lock()


# -- databases ---------------------------------------------------------------------


def file_db(path):
    """A ZODB.DB on a FileStorage file in directory ``path``."""
    return ZODB.DB(ZODB.FileStorage.FileStorage(str(path / "Data.fs")))


def open_connection(db):
    """A connection with its own transaction manager (not the thread's)."""
    return db.open(transaction_manager=transaction.TransactionManager())
