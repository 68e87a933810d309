"""Retry policies, called as a dispatcher would call them."""

import datetime
import pickle
import random

import pytest
from ZODB.POSException import ReadConflictError

import jobfuncs
import zasync
from zasync.retry import (
    DEFAULT_POLICY,
    NeverRetry,
    RetryCommonForever,
    RetryCommonFourTimes,
    RetryWithDelay,
)

NOW = datetime.timedelta(0)
SECOND = datetime.timedelta(seconds=1)


def failure(exc):
    """A Failure built from a real, raised exception."""
    try:
        raise exc
    except Exception:
        return zasync.Failure()


def job(attempts=1, interruptions=0):
    job = zasync.Job(jobfuncs.add, 1, 2)
    job.attempts = attempts
    job.interruptions = interruptions
    return job


CONNECTION = failure(ConnectionError("network down"))
RESET = failure(ConnectionResetError("reset by peer"))  # a subclass
TIMEOUT = failure(TimeoutError("too slow"))
READ_CONFLICT = failure(ReadConflictError("read conflict"))
BUG = failure(ValueError("a bug"))
KEY = failure(KeyError("k"))


# -- NeverRetry -----------------------------------------------------------------


def test_never_retry_gives_up_on_everything():
    """NeverRetry returns None for errors, commit errors and interruptions."""
    policy = NeverRetry()
    for f in (CONNECTION, BUG):
        assert policy.job_error(job(), f) is None
        assert policy.commit_error(job(), f) is None
    assert policy.interrupted(job(interruptions=1)) is None


# -- RetryCommonFourTimes (the default) ------------------------------------------------


def test_default_policy_is_retry_common_four_times():
    """A job's retry_policy is RetryCommonFourTimes unless set."""
    policy = zasync.Job(jobfuncs.add, 1, 2).retry_policy
    assert isinstance(policy, RetryCommonFourTimes)
    assert policy is DEFAULT_POLICY


@pytest.mark.parametrize("error", [CONNECTION, RESET, TIMEOUT, READ_CONFLICT])
def test_common_errors_are_retried_four_times(error):
    """Transient errors are retried after 1 s while attempts <= 4."""
    policy = RetryCommonFourTimes()
    for attempts in (1, 2, 3, 4):
        assert policy.job_error(job(attempts), error) == SECOND
        assert policy.commit_error(job(attempts), error) == SECOND
    assert policy.job_error(job(5), error) is None
    assert policy.commit_error(job(5), error) is None


def test_client_disconnected_is_common():
    """A ZEO disconnect is a common transient error."""
    from ZEO.Exceptions import ClientDisconnected

    assert RetryCommonFourTimes().job_error(job(1), failure(ClientDisconnected())) == (
        SECOND
    )


@pytest.mark.parametrize("error", [BUG, KEY])
def test_other_errors_are_not_retried(error):
    """Anything else is a bug or bad input: no retry, even at attempt 1."""
    policy = RetryCommonFourTimes()
    assert policy.job_error(job(1), error) is None
    assert policy.commit_error(job(1), error) is None


def test_interruptions_are_rerun_four_times():
    """An interrupted job reruns at once while interruptions <= 4."""
    policy = RetryCommonFourTimes()
    for interruptions in (1, 2, 3, 4):
        assert policy.interrupted(job(interruptions=interruptions)) == NOW
    assert policy.interrupted(job(interruptions=5)) is None


# -- RetryCommonForever ----------------------------------------------------------------


def test_retry_common_forever_has_no_limit():
    """RetryCommonForever retries transient errors and interruptions forever,
    but still not bugs."""
    policy = RetryCommonForever()
    assert policy.job_error(job(10_000), CONNECTION) == SECOND
    assert policy.commit_error(job(10_000), TIMEOUT) == SECOND
    assert policy.interrupted(job(interruptions=10_000)) == NOW
    assert policy.job_error(job(1), BUG) is None


# -- RetryWithDelay ----------------------------------------------------------------------


def test_retry_with_delay_backs_off():
    """The delay after attempt n is delay * backoff**(n-1)."""
    policy = RetryWithDelay(
        delay=datetime.timedelta(seconds=10), backoff=3.0, jitter=0, max_attempts=10
    )
    assert policy.job_error(job(1), BUG) == datetime.timedelta(seconds=10)
    assert policy.job_error(job(2), BUG) == datetime.timedelta(seconds=30)
    assert policy.job_error(job(3), BUG) == datetime.timedelta(seconds=90)
    assert policy.commit_error(job(2), BUG) == datetime.timedelta(seconds=30)


def test_retry_with_delay_accepts_seconds():
    """delay and max_delay may be given as numbers of seconds."""
    policy = RetryWithDelay(delay=5, max_delay=60, jitter=0, backoff=1)
    assert policy.delay == datetime.timedelta(seconds=5)
    assert policy.max_delay == datetime.timedelta(seconds=60)
    assert policy.job_error(job(4), BUG) == datetime.timedelta(seconds=5)


def test_retry_with_delay_caps_at_max_delay():
    """The delay never grows past max_delay."""
    policy = RetryWithDelay(
        delay=datetime.timedelta(seconds=10),
        backoff=10.0,
        max_delay=datetime.timedelta(minutes=5),
        jitter=0,
        max_attempts=None,
    )
    assert policy.job_error(job(2), BUG) == datetime.timedelta(seconds=100)
    assert policy.job_error(job(3), BUG) == datetime.timedelta(minutes=5)
    assert policy.job_error(job(50), BUG) == datetime.timedelta(minutes=5)


def test_retry_with_delay_jitter_stays_within_bounds():
    """With jitter j the delay is within delay*(1-j) and delay*(1+j), and
    does vary."""
    random.seed(12345)
    policy = RetryWithDelay(delay=datetime.timedelta(seconds=100), jitter=0.2)
    delays = {policy.job_error(job(1), BUG) for _ in range(200)}
    assert all(
        datetime.timedelta(seconds=80) <= d <= datetime.timedelta(seconds=120)
        for d in delays
    )
    assert len(delays) > 50
    assert min(delays) < datetime.timedelta(seconds=90)
    assert max(delays) > datetime.timedelta(seconds=110)


def test_retry_with_delay_stops_at_max_attempts():
    """After max_attempts attempts, the job fails."""
    policy = RetryWithDelay(max_attempts=3, jitter=0)
    assert policy.job_error(job(1), BUG) is not None
    assert policy.job_error(job(2), BUG) is not None
    assert policy.job_error(job(3), BUG) is None
    assert policy.commit_error(job(3), BUG) is None
    assert RetryWithDelay(max_attempts=None).job_error(job(1000), BUG) is not None


def test_retry_with_delay_retry_on_classes():
    """Only failures matching retry_on (classes, with subclasses) retry."""
    policy = RetryWithDelay(retry_on=(OSError,), jitter=0)
    assert policy.job_error(job(1), CONNECTION) is not None
    assert policy.job_error(job(1), TIMEOUT) is not None
    assert policy.job_error(job(1), BUG) is None
    assert policy.retry_on == ("builtins.OSError",)


def test_retry_with_delay_retry_on_dotted_names():
    """retry_on may name classes by dotted name."""
    policy = RetryWithDelay(retry_on=("builtins.KeyError", "jobfuncs.LockedError"))
    assert policy.job_error(job(1), KEY) is not None
    assert policy.job_error(job(1), failure(jobfuncs.LockedError("held"))) is not None
    assert policy.job_error(job(1), BUG) is None
    assert (
        RetryWithDelay(retry_on=("builtins.LookupError",)).job_error(job(1), KEY)
        is not None
    )


def test_retry_with_delay_interruptions():
    """Interruptions rerun at once up to max_interruptions."""
    policy = RetryWithDelay(max_interruptions=2)
    assert policy.interrupted(job(interruptions=1)) == NOW
    assert policy.interrupted(job(interruptions=2)) == NOW
    assert policy.interrupted(job(interruptions=3)) is None
    forever = RetryWithDelay(max_interruptions=None)
    assert forever.interrupted(job(interruptions=999)) == NOW


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"max_attempts": 0}, "max_attempts"),
        ({"max_attempts": -3}, "max_attempts"),
        ({"backoff": 0.5}, "backoff"),
        ({"jitter": 1}, "jitter"),
        ({"jitter": -0.1}, "jitter"),
    ],
)
def test_retry_with_delay_validation(kwargs, message):
    """Nonsense settings are refused, naming the setting."""
    with pytest.raises(ValueError, match=message):
        RetryWithDelay(**kwargs)


# -- storing policies ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "policy",
    [
        NeverRetry(),
        RetryCommonFourTimes(),
        RetryCommonForever(),
        RetryWithDelay(retry_on=(KeyError, "builtins.OSError"), max_attempts=2),
    ],
    ids=lambda p: type(p).__name__,
)
def test_policies_pickle_and_compare_equal(policy):
    """Policies are small picklable objects (stored with their jobs)."""
    clone = pickle.loads(pickle.dumps(policy))
    assert clone == policy
    assert type(clone) is type(policy)
    # The same decision (the delay itself may differ by its jitter).
    for error in (KEY, CONNECTION):
        decided = policy.job_error(job(1), error) is None
        assert (clone.job_error(job(1), error) is None) == decided
    assert repr(policy).startswith(type(policy).__name__)


def test_different_settings_compare_unequal():
    """Policies with different settings are not equal."""
    assert RetryWithDelay(max_attempts=2) != RetryWithDelay(max_attempts=3)
    assert NeverRetry() != RetryCommonFourTimes()
