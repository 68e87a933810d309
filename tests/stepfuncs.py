"""Jobs in steps (zasync.steps) for tests/test_steps.py: module-level
callables, as a worker needs, and what they saw while they ran."""

import persistent
import transaction
from BTrees.OOBTree import OOBTree

from zasync import local, steps

# (item, the transaction it was done in) for each call of a process
# function, in order; the tests clear it. Transactions are kept, not their
# ids, so that no two are taken for one.
calls = []
# The clock steps.run reads (None: its default), and how far each item
# moves it.
clock = None


class Counter(persistent.Persistent):
    """How many times an item's effect was committed."""

    n = 0


class Shared(persistent.Persistent):
    """One object every chunk writes, and that resolves no conflict."""

    value = None


def counters(keys):
    tree = OOBTree()
    for key in keys:
        tree[key] = Counter()
    return tree


def count_all(tree, keys, every, seconds=None, conflict_at=None, shared=None):
    """Add one to the counter of each key, in steps. ``conflict_at``: the
    first time that key is done, another connection writes ``shared`` (which
    the chunk writes too), so that the chunk's commit conflicts."""

    def process(key):
        calls.append((key, transaction.get()))
        tree[key].n += 1
        if shared is not None:
            shared.value = key
        if key == conflict_at and sum(k == key for k, _ in calls) == 1:
            _write_elsewhere(shared)
        if clock is not None:
            clock.advance(1)

    return steps.run(
        keys,
        process,
        every=every,
        seconds=seconds,
        clock=None if clock is None else clock,
    )


def count_fetched(tree, every, total=None):
    """As count_all, over the keys of ``tree`` fetched after the cursor."""

    def fetch(after, limit):
        keys = tree.keys() if after is None else tree.keys(after, excludemin=True)
        return list(keys)[:limit]

    def process(key):
        calls.append((key, transaction.get()))
        tree[key].n += 1

    return steps.run(fetch, process, every=every, total=total)


def two_runs(tree, keys):
    """Two runs in steps in one job, told apart by name."""
    first = steps.run(keys, lambda key: _bump(tree, key), every=2, name="first")
    second = steps.run(keys, lambda key: _bump(tree, key), every=3, name="second")
    return first["done"], second["done"]


def _bump(tree, key):
    tree[key].n += 1


def _write_elsewhere(obj):
    """Commit a change of ``obj`` from a connection of its own."""
    tm = transaction.TransactionManager()
    conn = obj._p_jar.db().open(transaction_manager=tm)
    try:
        conn.get(obj._p_oid).value = "elsewhere"
        tm.commit()
    finally:
        tm.abort()
        conn.close()


def progress_seen():
    return local.get_job().progress


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now

    def advance(self, seconds):
        self.now += seconds
