"""Job callables of the soak runs (benchmarks/soak.py). Workers import this
module by name: soak.py puts benchmarks/ on their PYTHONPATH.

Every job first appends ``TOKEN PID`` to the file named by
$ZASYNC_SOAK_EFFECTS: an effect outside the database, written each time
the job's code starts, so that a run counts how often each job ran, and
where, whatever its transactions did.
"""

import os
import time


def _effect(token):
    path = os.environ.get("ZASYNC_SOAK_EFFECTS")
    if path:
        # One small O_APPEND write per line: lines of concurrent workers
        # do not interleave.
        with open(path, "a", encoding="ascii") as f:
            f.write(f"{token} {os.getpid()}\n")


def work(token, seconds=0.0):
    """A healthy job: records that it ran, works ``seconds``."""
    _effect(token)
    if seconds:
        time.sleep(seconds)  # the job's own work
    return token


def fail(token):
    """A job that raises an ordinary error (its retry policy decides)."""
    _effect(token)
    raise ValueError(f"{token} fails on purpose")


def raise_base(token, kind):
    """A job that ends with a BaseException of ``kind``."""
    _effect(token)
    exceptions = {
        "SystemExit": SystemExit(3),
        "KeyboardInterrupt": KeyboardInterrupt(),
        "GeneratorExit": GeneratorExit(),
    }
    raise exceptions[kind]
