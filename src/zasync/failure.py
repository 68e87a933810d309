"""Failure: what a job that raised keeps instead of a result."""

import pickle
import sys
import traceback

from zope.interface import implementer

from zasync.exceptions import UnpicklableError
from zasync.interfaces import IFailure
from zasync.storable import resolve

# A failure is stored with its job; keep pathological tracebacks bounded.
MAX_TRACEBACK_CHARS = 64 * 1024


def dotted_name(obj):
    module = getattr(obj, "__module__", None) or "builtins"
    return f"{module}.{getattr(obj, '__qualname__', obj.__name__)}"


def _storable(value):
    try:
        clone = pickle.loads(pickle.dumps(value))
    except Exception:
        return UnpicklableError(str(value), dotted_name(type(value)))
    if str(clone) != str(value):
        return UnpicklableError(str(value), dotted_name(type(value)))
    return clone


@implementer(IFailure)
class Failure:
    """A picklable record of an exception; see :class:`IFailure`."""

    def __init__(self, exc_value=None, exc_tb=None, traceback_text=None):
        if exc_value is None:
            _, exc_value, exc_tb = sys.exc_info()
            if exc_value is None:
                raise ValueError(
                    "Failure() needs an exception: pass one, or create the "
                    "Failure inside an 'except' block"
                )
        if traceback_text is None:
            traceback_text = "".join(
                traceback.format_exception(type(exc_value), exc_value, exc_tb)
            )
        if len(traceback_text) > MAX_TRACEBACK_CHARS:
            traceback_text = (
                "... (traceback shortened) ...\n"
                + traceback_text[-MAX_TRACEBACK_CHARS:]
            )
        self.type_name = dotted_name(type(exc_value))
        self.value = _storable(exc_value)
        self._traceback = traceback_text

    @property
    def type(self):
        """The exception class; a stand-in if it cannot be imported any more."""
        try:
            found = resolve(self.type_name)
        except (ImportError, AttributeError):
            return type(self.value)
        return found if isinstance(found, type) else type(self.value)

    def getTraceback(self):
        return self._traceback

    def getErrorMessage(self):
        return str(self.value)

    def check(self, *exception_types):
        mine = self.type
        for candidate in exception_types:
            if isinstance(candidate, str):
                if candidate == self.type_name:
                    return candidate
                try:
                    candidate = resolve(candidate)
                except (ImportError, AttributeError):
                    continue
            if isinstance(candidate, type) and (
                issubclass(mine, candidate) or dotted_name(candidate) == self.type_name
            ):
                return candidate
        return None

    def raiseException(self):
        raise self.value

    def __eq__(self, other):
        return (
            isinstance(other, Failure)
            and other.type_name == self.type_name
            and str(other.value) == str(self.value)
        )

    __hash__ = None

    def __repr__(self):
        return f"<zasync.Failure {self.type_name}: {self.getErrorMessage()}>"

    __str__ = __repr__


def failure_from(exc, message=None):
    """A Failure for an exception that was not raised (no traceback)."""
    text = message or "".join(traceback.format_exception_only(type(exc), exc))
    return Failure(exc, None, traceback_text=text)
