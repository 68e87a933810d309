"""Job functions of the time-limit and cancel tests (importable by name)."""

import collections
import threading
import time

from zasync import local

# Events by name: "<name>.started" is set by the job, "<name>" by the test.
events = collections.defaultdict(threading.Event)
# What the jobs saw, by name (non-transactional).
seen = {}


def write_then_block(container, name, result="returned"):
    """Write to ``container``, say so, then wait until the test lets go."""
    container.append("written")
    events[f"{name}.started"].set()
    if not events[name].wait(30):
        raise RuntimeError(f"event {name!r} was never set")
    container.append("after the limit")
    return result


def check_until_stopped(container, name):
    """Write, then check for a cancel request until one comes (at most 30s)."""
    container.append("written")
    events[f"{name}.started"].set()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if local.cancelled():
            seen[name] = "cancelled"
            try:
                local.check_cancelled()
            except Exception as exc:
                seen[f"{name}.raised"] = type(exc).__name__
                raise
        events[name].wait(0.01)
    return "never cancelled"


def quick(value):
    return value


def block_then_commit(container, name):
    """Wait until the test lets go, then write and commit by itself."""
    import transaction

    events[f"{name}.started"].set()
    if not events[name].wait(30):
        raise RuntimeError(f"event {name!r} was never set")
    container.append("committed by the job")
    try:
        transaction.commit()
    except Exception as exc:
        seen[name] = type(exc).__name__
        raise
    seen[name] = "committed"
    return "returned"


def never_checks(container, name):
    """Write, then wait for the test without ever checking for a cancel."""
    container.append("written")
    events[f"{name}.started"].set()
    if not events[name].wait(30):
        raise RuntimeError(f"event {name!r} was never set")
    return "ran to its end"


def must_not_run(container):
    container.append("ran")
    return "ran"


def describe(result):
    """A callback: what its job's result was."""
    failed = getattr(result, "type_name", None)
    if failed is not None:
        return f"failed: {failed.rsplit('.', 1)[-1]}"
    return f"succeeded: {result!r}"
