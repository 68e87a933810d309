"""zasync.logonce: a repeated error is logged once, then with a count."""

import logging
import threading

from zasync.logonce import LogOnce, UntilRecovered

LOGGER = "zasync.tests.logonce"


def _messages(caplog):
    return [record.getMessage() for record in caplog.records if record.name == LOGGER]


def test_a_repeated_key_is_counted_and_logged_again_later(caplog):
    now = [100.0]
    once = LogOnce(logging.getLogger(LOGGER), every=10, clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        assert once.error("k", "boom %s", 1)
        for _ in range(5):
            now[0] += 1
            assert not once.error("k", "boom %s", 1)
        assert once.repeats("k") == 5
        assert once.warning("other", "another error")
        now[0] += 5  # 10 s after the first line
        assert once.error("k", "boom %s", 1)
        assert once.repeats("k") == 0
        assert not once.error("k", "boom %s", 1)
        once.forget("k")
        assert once.error("k", "boom %s", 1)
    assert _messages(caplog) == [
        "boom 1",
        "another error",
        "boom 1 (again; 5 more times since it was last logged)",
        "boom 1",  # forgotten: as new
    ]
    levels = [r.levelno for r in caplog.records if r.name == LOGGER]
    assert levels == [logging.ERROR, logging.WARNING, logging.ERROR, logging.ERROR]


def test_the_keys_kept_are_bounded(caplog):
    once = LogOnce(logging.getLogger(LOGGER), every=60, keys=2, clock=lambda: 0.0)
    with caplog.at_level(logging.ERROR, logger=LOGGER):
        for key in ("a", "b", "c", "a"):
            once.error(key, "error %s", key)
    # "a" was forgotten when "c" came: logged again, not counted.
    assert _messages(caplog) == ["error a", "error b", "error c", "error a"]
    assert len(once._seen) == 2


def test_threads_log_a_key_once(caplog):
    once = LogOnce(logging.getLogger(LOGGER), every=60)
    start = threading.Barrier(8)

    def log_many():
        start.wait(5)
        for _ in range(200):
            once.error("shared", "shared error")

    with caplog.at_level(logging.ERROR, logger=LOGGER):
        threads = [threading.Thread(target=log_many) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
    assert _messages(caplog) == ["shared error"]
    assert once.repeats("shared") == 8 * 200 - 1


def test_until_recovered_logs_each_kind_once_then_the_recovery(caplog):
    log = logging.getLogger("zasync.test.untilrecovered")
    errors = UntilRecovered(log, every=3)
    with caplog.at_level(logging.WARNING, logger=log.name):
        for _ in range(4):
            errors.failed("disk full", logging.ERROR, "failed: %s", "disk full")
        errors.failed("gone", logging.ERROR, "failed: %s", "gone")
        errors.recovered("works again")
        errors.recovered("works again")  # nothing came since: silent
    messages = [r.getMessage() for r in caplog.records]
    assert messages == [
        "failed: disk full",
        "failed: disk full (3 times so far)",
        "failed: gone",
        "works again, after 4 x disk full, 1 x gone",
    ]
