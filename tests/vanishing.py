"""Stored objects whose class cannot be imported any more, made for real:
a module written to a directory on sys.path defines the class, objects of
it are stored and committed, then the module is removed (file and
sys.modules entry) and a fresh database is opened on the same FileStorage,
which loads them as ZODB's Broken stand-ins."""

import contextlib
import importlib
import sys
import uuid

import transaction
import ZODB
import ZODB.FileStorage

JOB_SUBCLASS = "import zasync\n\n\nclass CustomJob(zasync.Job):\n    pass\n"
RETRY_POLICY = (
    "from zasync.retry import RetryCommonFourTimes\n\n\n"
    "class CustomPolicy(RetryCommonFourTimes):\n    pass\n"
)


class Vanishing:
    """A module of ``source`` in ``directory`` (put on sys.path with
    ``monkeypatch``), under a name of its own."""

    def __init__(self, directory, monkeypatch, source):
        self.name = f"vanishing_{uuid.uuid4().hex[:10]}"
        self.path = directory / f"{self.name}.py"
        self.source = source
        monkeypatch.syspath_prepend(str(directory))
        monkeypatch.delitem(sys.modules, self.name, raising=False)

    def load(self):
        self.path.write_text(self.source)
        importlib.invalidate_caches()
        return importlib.import_module(self.name)

    def remove(self):
        sys.modules.pop(self.name, None)
        self.path.unlink()
        importlib.invalidate_caches()

    def restore(self):
        self.path.write_text(self.source)
        importlib.invalidate_caches()


@contextlib.contextmanager
def opened(path):
    """A connection to a new DB on the FileStorage at ``path``, closed
    (and the DB with it) on leaving."""
    db = ZODB.DB(ZODB.FileStorage.FileStorage(str(path)))
    conn = db.open()
    try:
        yield conn
    finally:
        transaction.abort()
        conn.close()
        db.close()
