"""Stored objects that cannot be loaded: telling them, reading what is left.

When the class of a stored object cannot be imported any more (a Job
subclass or a retry policy class removed, a module renamed), ZODB gives a
``ZODB.broken.Broken`` stand-in instead: it has none of the class's
methods and attributes, only the stored state, and cannot be changed. Code
that meets one must isolate it (a queue sets such a job aside) and show
what can be shown; these helpers say whether an object is such a
stand-in, why, and read a job's stored state without its class.
"""

from ZODB.broken import Broken
from ZODB.POSException import POSKeyError

from zasync.job import Job
from zasync.transact import TRANSIENT_ERRORS

#: Errors of loading that are the storage's, not the object's: raised by
#: broken_reason, for the caller to try again later.
STORAGE_TROUBLE = (*TRANSIENT_ERRORS, OSError)


def is_broken(obj):
    """Whether ``obj`` is ZODB's stand-in for an object whose class cannot
    be imported (cheap: does not load a ghost)."""
    return isinstance(obj, Broken)


def _class_name(obj):
    cls = type(obj)
    return f"{cls.__module__}.{cls.__name__}"


def broken_reason(obj, what="its class"):
    """Why ``obj`` cannot be used, as text, or None if it loads.

    A Broken stand-in names the class that cannot be imported; an object
    whose record cannot be read or unpickled names the error. Transient
    errors (conflicts, a lost storage server) and OSError (a full or
    failing disk) are raised, not reasons."""
    if is_broken(obj):
        return (
            f"{what} {_class_name(obj)} cannot be imported (was its module or "
            f"class removed or renamed? restore it or install an alias at that "
            f"name)"
        )
    activate = getattr(obj, "_p_activate", None)
    if activate is None:
        return None
    try:
        activate()
    except STORAGE_TROUBLE:
        raise  # the storage's trouble, not the object's: try again later
    except POSKeyError as exc:
        return f"its record is missing from the storage (POSKeyError: {exc})"
    except Exception as exc:
        return f"it cannot be loaded ({type(exc).__name__}: {exc})"
    return None


def job_problem(job):
    """Why a stored job cannot be run, or None: its class, or that of its
    retry policy or environment, cannot be imported, or it cannot be read."""
    reason = broken_reason(job, "the job's class")
    if reason is not None:
        return reason
    state = getattr(job, "__dict__", {})
    for name, what in (
        ("_retry_policy", "its retry policy's class"),
        ("_environment", "its environment's class"),
    ):
        value = state.get(name)
        if value is not None:
            reason = broken_reason(value, what)
            if reason is not None:
                return reason
    return None


def stored_state(obj):
    """The stored state (a dict) of a Broken stand-in; {} if none."""
    state = obj.__Broken_state__ if is_broken(obj) else None
    if isinstance(state, tuple):  # (dict, slots)
        state = state[0]
    return state if isinstance(state, dict) else {}


def stored_id(job):
    """A job's id, also for a Broken stand-in (None if it has none)."""
    if is_broken(job):
        return stored_state(job).get("id")
    return job.id


_VIEWS = {}  # the class of a Broken stand-in -> the class of its copies


def readable(job):
    """``job`` itself, or for a Broken stand-in a read-only copy that is a
    Job (built from the stored state), with ``broken`` saying why,
    ``stored_class`` the class it was stored as and ``stand_in`` the
    stand-in: what an operator's display reads. The copy is not stored;
    changing it changes nothing. Anything else that cannot be loaded
    raises."""
    if not is_broken(job):
        return job
    view = _VIEWS.get(type(job))
    if view is None:
        class_name = _class_name(job)

        class BrokenJob(Job):
            """What is left of a job whose class cannot be imported."""

            broken = broken_reason(job, "the job's class")
            stored_class = class_name

            def __repr__(self):
                return (
                    f"<broken {class_name} {self.__dict__.get('id')} "
                    f"{self.__dict__.get('_status')}>"
                )

        view = _VIEWS[type(job)] = BrokenJob
    copy = view.__new__(view)
    copy.__dict__.update(stored_state(job))
    copy.__dict__.setdefault("callable_name", f"? (a {view.stored_class})")
    copy.__dict__["stand_in"] = job
    return copy
