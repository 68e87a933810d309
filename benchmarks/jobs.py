"""Trivial job callables for the benchmarks (importable by workers)."""


def noop(i=0):
    return i


def stamp(started):
    """Return when the job ran, for pickup latency."""
    import time

    return time.time() - started
