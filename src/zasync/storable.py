"""What may be stored with a job: checks, callable names, dotted names.

A job is pickled into the database and unpickled by a worker, maybe in
another process. Whatever would not survive that trip is refused here, with
an error that names the argument, instead of failing later in a worker.
Callables are stored and found again by their dotted names (:func:`resolve`).
"""

import functools
import importlib
import inspect
import io
import pickle

import persistent

from zasync.exceptions import BadJobError
from zasync.interfaces import IJob

_FIX_CALLABLE = (
    "Use a module-level function, a method of a persistent object, or a "
    "callable persistent object."
)


class _ReferencePickler(pickle.Pickler):
    """Pickles like ZODB does: persistent objects become references."""

    def persistent_id(self, obj):
        if isinstance(obj, persistent.Persistent) and not isinstance(obj, type):
            return id(obj)
        return None


def _pickles(value):
    _ReferencePickler(io.BytesIO(), protocol=3).dump(value)


def _describe(value):
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def check_value(value, where):
    """Raise BadJobError if ``value`` would not pickle the way ZODB stores it."""
    try:
        _pickles(value)
    except Exception as exc:
        raise BadJobError(
            f"{where} ({_describe(value)}) cannot be stored with the job: "
            f"{type(exc).__name__}: {exc}. Pass plain data (str, numbers, "
            f"lists, dicts), persistent objects, or something that can be "
            f"pickled, such as a path instead of an open file."
        ) from exc


def resolve(name, qualname=None):
    """The object a dotted name names.

    ``resolve("package.module", "Class.method")`` imports the module and
    walks the qualified name. ``resolve("package.module.Class.method")``
    finds where the module ends itself: the longest importable prefix.
    Raises ImportError or AttributeError if there is no such object.
    """
    if qualname is None:
        module, _, qualname = name.rpartition(".")
        while True:
            if not module:
                raise ImportError(f"no module in {name!r} can be imported")
            try:
                target = importlib.import_module(module)
                break
            except ImportError:
                module, _, head = module.rpartition(".")
                qualname = f"{head}.{qualname}"
    else:
        target = importlib.import_module(name)
    for part in qualname.split("."):
        target = getattr(target, part)
    return target


def _importable(func):
    # A builtin type's method (date.fromisoformat) has no __module__: ZODB's
    # pickler cannot store it, so it is refused here.
    module = getattr(func, "__module__", None)
    qualname = getattr(func, "__qualname__", "")
    if not module or "<locals>" in qualname or "<lambda>" in qualname:
        return False
    try:
        obj = resolve(module, qualname)
    except (ImportError, AttributeError):
        return False
    return obj is func or getattr(obj, "__func__", None) is func


def check_callable(func, where="the callable"):
    """Raise BadJobError unless ``func`` can be stored and found again."""
    if IJob.providedBy(func):  # a job may call another job
        return
    if isinstance(func, persistent.Persistent) and not isinstance(func, type):
        if not callable(func):
            raise BadJobError(f"{where} ({_describe(func)}) is not callable.")
        return
    if inspect.ismethod(func):
        owner = func.__self__
        if isinstance(owner, type):  # a classmethod
            if _importable(owner):
                return
        elif isinstance(owner, persistent.Persistent):
            return
        raise BadJobError(
            f"{where} ({_describe(func)}) is a method of a non-persistent "
            f"object, which the worker could not find again. {_FIX_CALLABLE}"
        )
    if not callable(func):
        raise BadJobError(f"{where} ({_describe(func)}) is not callable.")
    qualname = getattr(func, "__qualname__", "")
    if "<lambda>" in qualname:
        raise BadJobError(
            f"{where} is a lambda ({func.__module__}.{qualname}); a worker "
            f"cannot import it. {_FIX_CALLABLE}"
        )
    if "<locals>" in qualname:
        raise BadJobError(
            f"{where} ({func.__module__}.{qualname}) is a nested function or "
            f"closure; a worker cannot import it. {_FIX_CALLABLE}"
        )
    if inspect.isfunction(func) or inspect.isbuiltin(func) or isinstance(func, type):
        if getattr(func, "__module__", None) is None and inspect.isbuiltin(func):
            raise BadJobError(
                f"{where} ({_module_of(func)}.{qualname}) is a method of a "
                f"builtin type, which ZODB cannot store. Call it from a "
                f"module-level function and queue that."
            )
        if not _importable(func):
            raise BadJobError(
                f"{where} ({_describe(func)}) cannot be imported by its name "
                f"{_module_of(func)}.{qualname}. {_FIX_CALLABLE}"
            )
        return
    check_value(func, where)


def _module_of(func):
    # For the message: a builtin type's method has no __module__ of its
    # own; its class has.
    module = getattr(func, "__module__", None)
    if module is None:
        owner = getattr(func, "__self__", None)
        owner = owner if isinstance(owner, type) else type(owner)
        module = getattr(owner, "__module__", None)
    return module or "?"


def callable_name(func):
    """A dotted name for a callable, for logs and displays: the function a
    ``functools.partial`` wraps, not the partial."""
    while isinstance(func, functools.partial):
        func = func.func
    if IJob.providedBy(func):
        return f"job:{func.callable_name}"
    if inspect.ismethod(func):
        owner = func.__self__
        owner_type = owner if isinstance(owner, type) else type(owner)
        return f"{owner_type.__module__}.{owner_type.__qualname__}.{func.__name__}"
    name = getattr(func, "__qualname__", None) or type(func).__qualname__
    module = getattr(func, "__module__", None) or type(func).__module__
    return f"{module}.{name}"
