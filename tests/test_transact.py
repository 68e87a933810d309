"""transact.run: zasync's one retrying transaction, and its back-off."""

import persistent
import pytest
from ZODB.POSException import ConflictError

from zasync import transact
from zasync.transact import ClientDisconnected


class Counter(persistent.Persistent):
    value = 0


@pytest.fixture
def store(db):
    """A transaction manager, its connection and a committed Counter."""
    tm = transact.transaction_manager()
    conn = db.open(transaction_manager=tm)
    tm.begin()
    conn.root()["counter"] = Counter()
    tm.commit()
    yield tm, conn
    transact.abort(tm)
    conn.close()


def failing(times, error=ConflictError, then=None):
    """Work that raises ``error`` its first ``times`` calls, then changes
    the counter (``then(counter)``) and returns the call count."""
    calls = []

    def work(conn):
        calls.append(1)
        counter = conn.root()["counter"]
        counter.value += 1  # aborted on each failure
        if len(calls) <= times:
            raise error("in the test")
        if then is not None:
            then(counter)
        return len(calls)

    return work, calls


def value(db):
    return transact.in_own_transaction(db, lambda conn: conn.root()["counter"].value)


def no_pause(exc, attempt):
    return 0


def test_commits_what_work_did_and_returns_its_result(db, store):
    tm, conn = store
    assert (
        transact.run(tm, lambda: conn.root()["counter"].__setattr__("value", 5)) is None
    )
    assert value(db) == 5


def test_transient_errors_are_tried_again_and_aborted_each_time(db, store):
    tm, conn = store
    work, calls = failing(3)
    heard = []
    result = transact.run(
        tm,
        lambda: work(conn),
        on_error=lambda exc, attempt: heard.append(attempt),
        wait=no_pause,
    )
    assert result == 4 and heard == [0, 1, 2]
    assert value(db) == 1  # the three failed tries left nothing


def test_the_last_error_is_raised_and_heard(db, store):
    tm, conn = store
    work, calls = failing(10, ClientDisconnected)
    heard = []
    with pytest.raises(ClientDisconnected):
        transact.run(
            tm,
            lambda: work(conn),
            tries=4,
            on_error=lambda exc, attempt: heard.append(type(exc)),
            wait=no_pause,
        )
    assert len(calls) == 4 and heard == [ClientDisconnected] * 4
    assert value(db) == 0


def test_other_errors_are_raised_at_once(db, store):
    tm, conn = store
    work, calls = failing(5, KeyError)
    with pytest.raises(KeyError):
        transact.run(tm, lambda: work(conn), on_error=pytest.fail)
    assert len(calls) == 1 and value(db) == 0


def test_without_a_limit_should_stop_decides(db, store):
    tm, conn = store
    work, calls = failing(1000)
    with pytest.raises(ConflictError):
        transact.run(
            tm,
            lambda: work(conn),
            tries=None,
            should_stop=lambda exc, attempt: attempt == 99,
            wait=no_pause,
        )
    assert len(calls) == 100


def test_wait_gives_the_pause(db, store, monkeypatch):
    tm, conn = store
    slept = []
    monkeypatch.setattr(transact.time, "sleep", slept.append)
    work, _ = failing(2)
    transact.run(tm, lambda: work(conn), wait=lambda exc, attempt: 10 + attempt)
    assert slept == [10, 11]
    work, _ = failing(3)
    transact.run(tm, lambda: work(conn), base=0.5, cap=1.5)
    assert slept[2:] and all(0 <= s <= 1.5 for s in slept[2:]) and len(slept) == 5


def test_tries_must_be_positive(store):
    tm, _ = store
    with pytest.raises(ValueError, match="tries must be at least 1"):
        transact.run(tm, lambda: None, tries=0)


@pytest.mark.parametrize("attempt", [0, 1, 5, 40])
def test_backoff_is_bounded_by_base_doubled_and_the_cap(attempt):
    base, cap = 0.01, 0.3
    bound = min(base * 2**attempt, cap)
    pauses = [transact.backoff(attempt, base, cap) for _ in range(200)]
    assert all(0 <= p <= bound for p in pauses)
    assert max(pauses) > bound / 2  # random, spread over the range
