"""Job callables for the benchmarks (bench_engine.py, bench_cluster.py).

The ``zasync worker`` processes import this module by name, so the
cluster benchmark puts ``benchmarks/`` on their PYTHONPATH.
"""

import time


def noop(i=0):
    """A trivial job, for throughput."""
    return i


def stamp():
    """Return the wall-clock time at which the job ran, for pickup latency."""
    return time.time()


def sleep(seconds):
    """A long-ish job that keeps a worker thread busy, for recovery."""
    time.sleep(seconds)
    return seconds
