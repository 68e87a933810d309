"""Failure: a small, picklable record of an exception."""

import pickle
import threading

import pytest

import jobfuncs
import zasync
from zasync.failure import UnpicklableError


def failure_of(func, *args):
    """The Failure made inside the except block around ``func(*args)``."""
    try:
        func(*args)
    except Exception:
        return zasync.Failure()
    raise AssertionError(f"{func} did not raise")


def test_type_value_and_message():
    """A Failure keeps the exception class, its value and its message."""
    failure = failure_of(jobfuncs.fail, "bad input")
    assert failure.type is ValueError
    assert failure.type_name == "builtins.ValueError"
    assert isinstance(failure.value, ValueError)
    assert str(failure.value) == "bad input"
    assert failure.getErrorMessage() == "bad input"


def test_traceback_contains_the_raising_line():
    """getTraceback() is text showing where the exception was raised."""
    failure = failure_of(jobfuncs.fail, "deep down")
    text = failure.getTraceback()
    assert isinstance(text, str)
    assert "raise ValueError(message)  # the raising line" in text
    assert "jobfuncs.py" in text
    assert "ValueError: deep down" in text


def test_pickle_round_trip():
    """A Failure survives pickling with type, value and traceback intact."""
    failure = failure_of(jobfuncs.fail, "pickled")
    clone = pickle.loads(pickle.dumps(failure))
    assert clone.type is ValueError
    assert clone.getErrorMessage() == "pickled"
    assert clone.getTraceback() == failure.getTraceback()
    assert clone.check(ValueError) is ValueError
    assert clone == failure


def test_check_with_classes():
    """check() returns the first matching class, including base classes."""
    failure = failure_of(jobfuncs.fail_connection)
    assert failure.check(ConnectionError) is ConnectionError
    assert failure.check(KeyError, OSError) is OSError
    assert failure.check(Exception) is Exception


def test_check_with_dotted_names():
    """check() accepts dotted names, of the class itself or of a base."""
    failure = failure_of(jobfuncs.fail_connection)
    assert failure.check("builtins.ConnectionError") == "builtins.ConnectionError"
    assert failure.check("builtins.KeyError", "builtins.OSError") is OSError
    assert failure.check("jobfuncs.LockedError") is None


def test_check_not_matching_returns_none():
    """check() returns None when nothing matches (also unknown names)."""
    failure = failure_of(jobfuncs.fail)
    assert failure.check(KeyError) is None
    assert failure.check(KeyError, TypeError, "builtins.LookupError") is None
    assert failure.check("no.such.module.Error") is None
    assert failure.check() is None


def test_repr_names_type_and_message():
    """repr() is readable: it names the exception type and the message."""
    failure = failure_of(jobfuncs.fail, "shown")
    text = repr(failure)
    assert "builtins.ValueError" in text
    assert "shown" in text
    assert str(failure) == text


def test_raise_exception_raises_the_value():
    """raiseException() raises the stored exception again."""
    failure = failure_of(jobfuncs.fail, "again")
    with pytest.raises(ValueError, match="again"):
        failure.raiseException()


def test_failure_from_an_exception_object():
    """Failure(exc) works outside an except block when given the exception."""
    failure = zasync.Failure(KeyError("k"))
    assert failure.type is KeyError
    assert failure.check(LookupError) is LookupError
    assert "KeyError" in failure.getTraceback()


def test_value_holding_a_lock_gets_a_stand_in():
    """An exception value that does not pickle is replaced by a stand-in
    with the same str; the type is still the importable original class."""
    failure = failure_of(_raise, jobfuncs.LockedError("locked out"))
    assert isinstance(failure.value, UnpicklableError)
    assert str(failure.value) == "locked out"
    assert failure.value.original_type == "jobfuncs.LockedError"
    assert failure.getErrorMessage() == "locked out"
    assert failure.type is jobfuncs.LockedError
    assert failure.check(jobfuncs.LockedError) is jobfuncs.LockedError
    clone = pickle.loads(pickle.dumps(failure))
    assert clone.getErrorMessage() == "locked out"
    assert clone.type is jobfuncs.LockedError


def test_value_holding_a_lambda_gets_a_stand_in():
    """An exception carrying a lambda pickles through its stand-in."""
    func = lambda: None  # noqa: E731
    failure = failure_of(_raise, ValueError("with a lambda", func))
    assert isinstance(failure.value, UnpicklableError)
    assert str(failure.value) == str(ValueError("with a lambda", func))
    assert failure.type is ValueError
    clone = pickle.loads(pickle.dumps(failure))
    assert clone.getErrorMessage() == failure.getErrorMessage()


def test_value_whose_str_changes_when_unpickled_gets_a_stand_in():
    """A value that does not come back from pickle unchanged is replaced."""
    failure = failure_of(_raise, _Forgetful("first words"))
    assert isinstance(failure.value, UnpicklableError)
    assert failure.getErrorMessage() == "first words"


def test_local_exception_class_gives_a_usable_failure():
    """An exception class that cannot be imported (a local class) still
    gives a picklable Failure with its name, message and traceback."""

    class LocalError(Exception):
        pass

    failure = failure_of(_raise, LocalError("from a local class"))
    assert failure.type_name.endswith("<locals>.LocalError")
    assert failure.getErrorMessage() == "from a local class"
    assert "from a local class" in failure.getTraceback()
    assert issubclass(failure.type, Exception)
    assert failure.check(Exception) is Exception
    assert failure.check(KeyError) is None
    assert failure.check(failure.type_name) == failure.type_name
    assert "LocalError" in repr(failure)
    clone = pickle.loads(pickle.dumps(failure))
    assert clone.getErrorMessage() == "from a local class"
    assert clone.type_name == failure.type_name


def test_local_exception_class_is_matched_by_check():
    """check(TheClass) matches even when the class is not importable: the
    failure *was* an instance of it (compare by dotted name)."""

    class LocalError(Exception):
        pass

    failure = failure_of(_raise, LocalError("local"))
    assert failure.check(LocalError) is LocalError


def test_failure_outside_except_block_raises_value_error():
    """Failure() with no exception outside an except block is an error."""
    with pytest.raises(ValueError, match="except"):
        zasync.Failure()


def test_huge_traceback_is_shortened_to_its_end():
    """A pathological traceback is kept bounded, keeping its end."""
    from zasync import failure as failuremodule

    text = "x" * (failuremodule.MAX_TRACEBACK_CHARS * 2) + "THE END"
    failure = zasync.Failure(ValueError("v"), None, traceback_text=text)
    kept = failure.getTraceback()
    assert len(kept) < len(text)
    assert kept.endswith("THE END")
    assert "shortened" in kept


def test_lock_in_exception_does_not_leak_into_failure():
    """The stand-in does not keep the original object's unpicklable parts."""
    error = jobfuncs.LockedError("held")
    assert isinstance(error.lock, type(threading.Lock()))
    failure = failure_of(_raise, error)
    assert not hasattr(failure.value, "lock")
    pickle.dumps(failure)


# -- helpers -----------------------------------------------------------------


def _raise(exc):
    raise exc


class _Forgetful(Exception):
    """An exception whose str is lost when pickled (args are not kept)."""

    def __init__(self, words=""):
        super().__init__()
        self.words = words

    def __str__(self):
        return self.words

    def __reduce__(self):
        return (type(self), ())
