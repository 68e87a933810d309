"""What the benchmarks share: progress lines, package versions, and the
benchmark process's own view of a database (one connection with an
explicit transaction manager, where read() and write() each run one
transaction)."""

import contextlib
import importlib.metadata
import sys

import transaction

from zasync.queue import get_queues


def say(text):
    """Progress, on stderr, so that stdout is only the report."""
    print(f"... {text}", file=sys.stderr, flush=True)


def version(name):
    """The installed version of distribution ``name``, or "absent"."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "absent"


class Client:
    """A connection to ``db`` of this process's own."""

    def __init__(self, db):
        self.db = db
        self.tm = transaction.TransactionManager(explicit=True)
        self.conn = db.open(transaction_manager=self.tm)

    def read(self, func):
        """``func(root)`` in a transaction that is aborted afterwards."""
        self.tm.begin()
        try:
            return func(self.conn.root())
        finally:
            self.tm.abort()

    def write(self, func):
        """``func(root)`` in a transaction that is committed (aborted if it
        raises)."""
        self.tm.begin()
        try:
            result = func(self.conn.root())
            self.tm.commit()
        except BaseException:
            self.tm.abort()
            raise
        return result

    def queue(self, name):
        return get_queues(self.conn)[name]

    def close(self):
        with contextlib.suppress(Exception):
            self.tm.abort()
        self.conn.close()
        self.db.close()
