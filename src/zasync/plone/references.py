"""Stored Zope objects passed to a job: kept by path and UID, found again.

A job's arguments are pickled with the job, so acquisition-wrapped content
cannot be stored as it is: the worker would get an unwrapped copy of a
persistent object, outside its site. Instead each such argument becomes an
:class:`ObjectRef` and is looked up again, wrapped, when the job runs.
"""

import logging

from Acquisition import aq_base

from zasync.plone.exceptions import ContextNotFound, NotQueueable
from zasync.plone.values import SlotsValue

log = logging.getLogger("zasync.plone")


def path_text(path):
    return "/".join(path) or "/"


class ObjectRef(SlotsValue):
    """A stored object passed to a job: its physical path and, for content,
    its UID, which finds it again if it was moved."""

    __slots__ = ("path", "uid")

    def __init__(self, path, uid=None):
        self.path = tuple(path)
        self.uid = uid

    def __repr__(self):
        uid = f" uid={self.uid}" if self.uid else ""
        return f"<ObjectRef {path_text(self.path)}{uid}>"

    def resolve(self, app, job=None):
        """The object, looked up from ``app``; raises ContextNotFound."""
        obj = app.unrestrictedTraverse(self.path, None)
        if obj is not None and self._is_it(obj):
            return obj
        if self.uid:
            moved = _object_by_uid(self.uid)
            if moved is not None:
                log.info(
                    "job %s: %s was moved to %s; using it there",
                    getattr(job, "id", "?"),
                    path_text(self.path),
                    path_text(moved.getPhysicalPath()),
                )
                return moved
        what = f"object {path_text(self.path)}"
        if self.uid:
            what += f" (UID {self.uid})"
        raise ContextNotFound(
            f"The {what} that job {getattr(job, 'id', '?')} was queued for no "
            f"longer exists: it was deleted, or replaced by another object. "
            f"The job did not run; queue it again for an existing object."
        )

    def _is_it(self, obj):
        # Traversal acquires: a deleted 'doc' can be found as a 'doc' higher
        # up. Only the object at exactly this path, with the same UID, is it.
        if tuple(obj.getPhysicalPath()) != self.path:
            return False
        return self.uid is None or uid_of(obj) == self.uid


def uid_of(obj):
    """The object's UID, or None if it has none."""
    try:
        from plone.uuid.interfaces import IUUID
    except ImportError:  # pragma: no cover - plone.uuid comes with Plone
        return None
    return IUUID(obj, None)


def _object_by_uid(uid):
    try:
        from plone.app.uuid.utils import uuidToObject
    except ImportError:  # pragma: no cover - comes with Plone
        return None
    try:
        return uuidToObject(uid, unrestricted=True)
    except Exception:  # no catalog in this site
        log.debug("could not look up UID %s", uid, exc_info=True)
        return None


def reference(obj, what="context"):
    """An ObjectRef for a stored, traversable object; NotQueueable if it
    has no path a worker could find it by."""
    if not hasattr(obj, "getPhysicalPath"):
        raise NotQueueable(
            f"The {what} {obj!r} is not a Zope object with a physical path; "
            f"pass an object that is stored in the site."
        )
    path = tuple(obj.getPhysicalPath())
    # Not in a container: getPhysicalPath() does not reach the root ('').
    if not path or path[0] != "":
        raise NotQueueable(
            f"The {what} {obj!r} is not in a container yet (its path is "
            f"{path_text(path)!r}), so a worker could not find it. Add it to "
            f"its folder first, then queue the job."
        )
    return ObjectRef(path, uid_of(obj))


def _is_reference_candidate(value):
    # Acquisition-wrapped persistent objects with a path: content, folders,
    # the site, tools. Unwrapped they would be useless in the worker.
    return (
        hasattr(value, "getPhysicalPath")
        and hasattr(value, "aq_base")
        and hasattr(aq_base(value), "_p_oid")
    )


def references_in(args, kwargs):
    """``args`` and ``kwargs`` with stored Zope objects replaced by
    ObjectRefs, so that they are looked up again, wrapped, in the worker."""
    args = tuple(
        reference(a, f"argument {i + 1}") if _is_reference_candidate(a) else a
        for i, a in enumerate(args)
    )
    kwargs = {
        k: reference(v, f"keyword argument {k!r}") if _is_reference_candidate(v) else v
        for k, v in kwargs.items()
    }
    return args, kwargs


def resolve_all(app, job, args, kwargs):
    """``args`` and ``kwargs`` with ObjectRefs replaced by their objects."""
    args = tuple(a.resolve(app, job) if isinstance(a, ObjectRef) else a for a in args)
    kwargs = {
        k: v.resolve(app, job) if isinstance(v, ObjectRef) else v
        for k, v in kwargs.items()
    }
    return args, kwargs
