"""Long jobs in steps: chunks of items that commit one by one, with a
cursor stored on the job, so that a job over 50,000 objects is neither one
giant transaction nor a loop that starts from zero after a crash.

>>> from zasync import steps
>>> def reindex_all(paths):                      # a job's callable
...     steps.run(paths, reindex_one, every=100, seconds=5)

See :class:`zasync.interfaces.ISteps` for the contract.
"""

import logging
import time

from zope.interface import moduleProvides

from zasync import local, transact
from zasync.exceptions import JobTakenBack
from zasync.interfaces import ISteps
from zasync.status import ACTIVE
from zasync.storable import check_value

moduleProvides(ISteps)

log = logging.getLogger("zasync.steps")

#: Items per chunk unless told otherwise.
DEFAULT_EVERY = 100
#: Tries of one chunk when it conflicts, before the job is retried later.
DEFAULT_TRIES = 10
# The pause between those tries (transact.backoff): a chunk is a long
# transaction, so the writer it met may take a while too.
CHUNK_BACKOFF = {"base": 0.02, "cap": 2.0}


def _fresh(total):
    return {
        "cursor": None,
        "done": 0,
        "total": total,
        "chunks": 0,
        "runs": 0,
        "resumed_from": None,
        "finished": False,
    }


class _Sequence:
    """Items given as a sequence: the cursor is the next item's position."""

    def __init__(self, items):
        self.items = items
        self.total = len(items)

    def fetch(self, cursor, limit):
        start = cursor or 0
        return list(self.items[start : start + limit])

    def after(self, cursor, item):
        return (cursor or 0) + 1

    def exhausted(self, cursor):
        return (cursor or 0) >= self.total


class _Fetched:
    """Items given by ``fetch(after, limit)``: the cursor is the key of the
    last item done."""

    def __init__(self, fetch, key, total):
        self.fetch_items = fetch
        self.key = key
        self.total = total

    def fetch(self, cursor, limit):
        return list(self.fetch_items(cursor, limit))

    def after(self, cursor, item):
        value = item if self.key is None else self.key(item)
        check_value(value, "the cursor (key of an item)")
        return value

    def exhausted(self, cursor):
        return False  # known only once fetch gives nothing


def _source(items, key, total):
    if callable(items):
        if total is not None and (
            isinstance(total, bool) or not isinstance(total, int) or total < 0
        ):
            raise ValueError(f"total must be a whole number of items, not {total!r}")
        return _Fetched(items, key, total)
    if not hasattr(items, "__len__") or not hasattr(items, "__getitem__"):
        raise TypeError(
            "items must be a sequence (a list or tuple of ids, paths, ...) or a "
            "function fetch(after, limit) giving the items after a cursor, not "
            f"{type(items).__name__}"
        )
    if key is not None or total is not None:
        raise TypeError(
            "key and total are for items given by a function fetch(after, "
            "limit); a sequence's cursor is the position, its total its length"
        )
    return _Sequence(items)


def _check_numbers(every, seconds, tries):
    if isinstance(every, bool) or not isinstance(every, int) or every < 1:
        raise ValueError(f"every must be a whole number of items >= 1, not {every!r}")
    if seconds is not None and (
        isinstance(seconds, bool)
        or not isinstance(seconds, int | float)
        or not seconds > 0
    ):
        raise ValueError(f"seconds must be a number > 0 or None, not {seconds!r}")
    if isinstance(tries, bool) or not isinstance(tries, int) or tries < 1:
        raise ValueError(f"tries must be a whole number >= 1, not {tries!r}")


def state(job, name="items"):
    """A copy of the state of ``job``'s run ``name``, or None (ISteps.state)."""
    found = (job.steps or {}).get(name)
    return None if found is None else dict(found)


def describe(state):
    """One line of text about a state (ISteps.describe)."""
    done, total = state.get("done", 0), state.get("total")
    text = f"{done:,} of {total:,} items" if total is not None else f"{done:,} items"
    chunks = state.get("chunks", 0)
    text += f" done in {chunks:,} chunk{'s' if chunks != 1 else ''}"
    if state.get("resumed_from"):
        text += f", resumed from item {state['resumed_from']:,}"
    runs = state.get("runs", 0)
    if runs > 1:
        text += f" (run {runs})"
    if state.get("finished"):
        text += ", finished"
    return text


def run(
    items,
    process,
    every=DEFAULT_EVERY,
    seconds=None,
    key=None,
    total=None,
    name="items",
    clock=None,
    tries=DEFAULT_TRIES,
):
    """Call ``process(item)`` for each item in chunks that commit their
    work and cursor together; the final state (ISteps.run)."""
    if not callable(process):
        raise TypeError(f"process must be a function of one item, not {process!r}")
    _check_numbers(every, seconds, tries)
    source = _source(items, key, total)
    clock = time.monotonic if clock is None else clock
    job = local.get_job()
    current = state(job, name) or _fresh(source.total)
    if current["finished"]:
        return current
    current["runs"] += 1
    current["resumed_from"] = current["done"] or None
    if source.total is not None:
        current["total"] = source.total
    job.record_steps(name, current)
    tm = local.own_transaction_manager()
    if tm is None:
        # The caller's transaction, or one shared with other jobs: all of
        # it goes in there, as one.
        while not current["finished"]:
            current = _chunk(job, name, source, process, every, seconds, clock)
        return current
    # What the job did before, and the start of this run, commit first: a
    # conflict here is the job's own, retried by its dispatcher.
    tm.commit()
    if current["resumed_from"]:
        log.info(
            "job %s (%s): steps %r resumed from item %d",
            job.id,
            job.callable_name,
            name,
            current["done"],
        )
    owner = job.assignee

    def chunk():
        if job.status != ACTIVE or job.assignee != owner:
            raise JobTakenBack(
                f"job {job.id} is no longer run by this worker (it is "
                f"{job.status.value}); its committed steps are kept"
            )
        return _chunk(job, name, source, process, every, seconds, clock)

    while not current["finished"]:
        current = transact.run(tm, chunk, tries=tries, **CHUNK_BACKOFF)
        _report_progress(current)
    # The job's outcome commits in the transaction that follows.
    tm.begin()
    return current


def _chunk(job, name, source, process, every, seconds, clock):
    """Do the next chunk in the current transaction; the new state, stored
    on the job (not committed)."""
    current = state(job, name)
    cursor = current["cursor"]
    batch = [] if source.exhausted(cursor) else source.fetch(cursor, every)
    began = clock()
    done = 0
    for item in batch[:every]:
        process(item)
        cursor = source.after(cursor, item)
        done += 1
        if seconds is not None and clock() - began >= seconds:
            break
    current["cursor"] = cursor
    current["done"] += done
    if done:
        current["chunks"] += 1
    current["finished"] = not done or source.exhausted(cursor)
    job.record_steps(name, current)
    return current


def _report_progress(current):
    if current["total"]:
        local.set_progress(
            min(current["done"] / current["total"], 1.0), describe(current)
        )
