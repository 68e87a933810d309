"""Retry policies: what to do when a job raises, cannot commit, or was
interrupted by the death of its worker.

Every method returns None to give up, or a ``datetime.timedelta`` after which
the job runs again. ConflictError and other transient transaction errors
never get here: the dispatcher retries those itself without counting an
attempt (see :class:`zasync.interfaces.IRetryPolicy`).
"""

import datetime
import random

from zope.interface import implementer

from zasync import clock
from zasync.interfaces import IRetryPolicy

NOW = datetime.timedelta(0)

# Errors worth another try: passing trouble with a network or a service.
# ZODB conflicts and ZEO disconnects are listed for completeness: the
# dispatcher postpones those itself, so they reach a policy only when code
# of its own calls it.
COMMON_TRANSIENT_ERRORS = (
    "builtins.ConnectionError",
    "builtins.TimeoutError",
    "ZEO.Exceptions.ClientDisconnected",
    "ZODB.POSException.ConflictError",
)


@implementer(IRetryPolicy)
class NeverRetry:
    """Every error and every interruption fails the job at once."""

    def job_error(self, job, failure):
        return None

    def commit_error(self, job, failure):
        return None

    def interrupted(self, job):
        return None

    def __eq__(self, other):
        return type(self) is type(other) and vars(self) == vars(other)

    def __repr__(self):
        return f"{type(self).__name__}()"


@implementer(IRetryPolicy)
class RetryCommonFourTimes(NeverRetry):
    """The default policy.

    Retries common transient errors (connection problems, timeouts, ZEO
    disconnects) raised by the job or by its commit up to ``max_retries``
    times, one second apart, and reruns an interrupted job up to
    ``max_interruptions`` times. Any other exception fails the job: it is a
    bug or bad input, and running it again would fail again.
    """

    max_retries = 4
    max_interruptions = 4
    delay = datetime.timedelta(seconds=1)
    transient = COMMON_TRANSIENT_ERRORS

    def _retry_common(self, job, failure):
        if not failure.check(*self.transient):
            return None
        if self.max_retries is not None and job.attempts > self.max_retries:
            return None
        return self.delay

    def job_error(self, job, failure):
        return self._retry_common(job, failure)

    def commit_error(self, job, failure):
        return self._retry_common(job, failure)

    def interrupted(self, job):
        if self.max_interruptions is not None and (
            job.interruptions > self.max_interruptions
        ):
            return None
        return NOW


class RetryCommonForever(RetryCommonFourTimes):
    """Like RetryCommonFourTimes, but retries common transient errors and
    interruptions without limit. Use it for jobs that must not be given up,
    knowing a job that kills its worker every time will then never end."""

    max_retries = None
    max_interruptions = None


class RetryWithDelay(NeverRetry):
    """Retry failing jobs after a growing delay, up to a number of attempts.

    ``RetryWithDelay(delay=timedelta(seconds=30), max_attempts=5,
    backoff=2.0, max_delay=timedelta(hours=1), jitter=0.1,
    retry_on=(Exception,))``: after attempt *n* fails with an exception that
    is one of ``retry_on`` (classes or dotted names), the job runs again after
    ``delay * backoff**(n-1)``, capped at ``max_delay``, give or take
    ``jitter`` (a fraction) so that jobs failing together do not all come back
    together. Commit errors are treated the same; interruptions are retried
    up to ``max_interruptions`` times. This covers plone.app.async's policy of
    the same name.
    """

    def __init__(
        self,
        delay=datetime.timedelta(seconds=30),
        max_attempts=5,
        backoff=2.0,
        max_delay=datetime.timedelta(hours=1),
        jitter=0.1,
        retry_on=(Exception,),
        max_interruptions=4,
    ):
        delay = clock.duration(delay, "delay")
        max_delay = clock.duration(max_delay, "max_delay")
        if max_attempts is not None and max_attempts < 1:
            raise ValueError("max_attempts must be at least 1 (or None: no limit)")
        if backoff < 1:
            raise ValueError("backoff must be 1 (constant delay) or more")
        if not 0 <= jitter < 1:
            raise ValueError("jitter is a fraction of the delay, from 0 to below 1")
        self.delay = delay
        self.max_attempts = max_attempts
        self.backoff = backoff
        self.max_delay = max_delay
        self.jitter = jitter
        # Stored as names, so the policy pickles whatever the classes are.
        self.retry_on = tuple(
            name if isinstance(name, str) else f"{name.__module__}.{name.__qualname__}"
            for name in retry_on
        )
        self.max_interruptions = max_interruptions

    def delay_for(self, attempt):
        """The delay after failed attempt number ``attempt`` (1-based)."""
        seconds = self.delay.total_seconds() * self.backoff ** max(attempt - 1, 0)
        seconds = min(seconds, self.max_delay.total_seconds())
        if self.jitter:
            seconds *= 1 + random.uniform(-self.jitter, self.jitter)
        return datetime.timedelta(seconds=max(seconds, 0))

    def job_error(self, job, failure):
        if not failure.check(*self.retry_on):
            return None
        if self.max_attempts is not None and job.attempts >= self.max_attempts:
            return None
        return self.delay_for(job.attempts)

    commit_error = job_error

    def interrupted(self, job):
        if self.max_interruptions is not None and (
            job.interruptions > self.max_interruptions
        ):
            return None
        return NOW

    def __repr__(self):
        return f"RetryWithDelay(delay={self.delay!r}, max_attempts={self.max_attempts})"


DEFAULT_POLICY = RetryCommonFourTimes()
