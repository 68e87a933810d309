"""Bounded logs: a repeated error is logged once, then counted.

A dispatcher that meets the same bad object (or the same storage error)
every round must not write a traceback every round: ``LogOnce.log`` logs
the first occurrence of a key, counts the repeats silently, and logs the
key again at most once per ``every`` seconds, saying how many times it
happened since. The keys it remembers are bounded too (the oldest are
forgotten first).
"""

import collections
import logging
import threading
import time

#: Seconds between two lines about the same key, by default.
DEFAULT_EVERY = 300.0
#: How many keys a LogOnce remembers by default.
DEFAULT_KEYS = 1000


class LogOnce:
    """Log each key once, then at most once per ``every`` seconds with the
    count of repeats since (see the module). Thread-safe.

    ``clock`` (seconds, monotonic) is injected for tests."""

    def __init__(self, logger, every=DEFAULT_EVERY, keys=DEFAULT_KEYS, clock=None):
        self.logger = logger
        self.every = every
        self.keys = keys
        self.clock = clock or time.monotonic
        self._seen = collections.OrderedDict()  # key -> [last logged, repeats]
        self._lock = threading.Lock()

    def log(self, level, key, msg, *args, exc_info=False):
        """Log ``msg % args`` at ``level`` unless ``key`` was logged less than
        ``every`` seconds ago (then only count it). Returns True if logged."""
        now = self.clock()
        with self._lock:
            seen = self._seen.get(key)
            if seen is not None and now - seen[0] < self.every:
                seen[1] += 1
                return False
            repeats = 0 if seen is None else seen[1]
            self._seen[key] = [now, 0]
            self._seen.move_to_end(key)
            while len(self._seen) > self.keys:
                self._seen.popitem(last=False)
        if repeats:
            msg = f"{msg} (again; {repeats} more times since it was last logged)"
        self.logger.log(level, msg, *args, exc_info=exc_info)
        return True

    def error(self, key, msg, *args, exc_info=False):
        return self.log(logging.ERROR, key, msg, *args, exc_info=exc_info)

    def warning(self, key, msg, *args, exc_info=False):
        return self.log(logging.WARNING, key, msg, *args, exc_info=exc_info)

    def repeats(self, key):
        """How many times ``key`` came since it was last logged (0 if it
        never came)."""
        with self._lock:
            seen = self._seen.get(key)
            return 0 if seen is None else seen[1]

    def forget(self, key):
        """Log ``key`` at once the next time it comes."""
        with self._lock:
            self._seen.pop(key, None)


class UntilRecovered:
    """The errors of something that fails until it works again (the
    storage under a dispatcher's threads, a dispatcher's rounds): the
    first error of each kind is logged, the next ones of that kind only
    counted (and logged again every ``every``-th time, with the count),
    until ``recovered()``, which logs once, with the counts, what it got
    over. Thread-safe."""

    def __init__(self, logger, every=100):
        self.logger = logger
        self.every = every
        self._lock = threading.Lock()
        self._seen = collections.Counter()

    def failed(self, kind, level, msg, *args, exc_info=False):
        """Count an error of ``kind``; log ``msg % args`` at ``level`` if it
        is the first of its kind (or an ``every``-th). True if logged."""
        with self._lock:
            self._seen[kind] += 1
            count = self._seen[kind]
        if count == 1:
            self.logger.log(level, msg, *args, exc_info=exc_info)
            return True
        if self.every and count % self.every == 0:
            self.logger.log(level, f"{msg} ({count} times so far)", *args)
            return True
        return False

    def recovered(self, msg, *args):
        """It works again: if errors came since, log ``msg % args`` with
        ", after N x KIND, ..." appended, and forget them."""
        with self._lock:
            seen, self._seen = self._seen, collections.Counter()
        if seen:
            after = ", ".join(f"{count} x {kind}" for kind, count in seen.items())
            self.logger.warning(f"{msg}, after %s", *args, after)
