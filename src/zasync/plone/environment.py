"""Running a job where and as whom it was queued.

When a job is queued, :func:`capture` records the site, the user (the path
of the user folder that holds them and their id), the site's URL and the
name of the Zope database. In the worker, :class:`PloneEnvironment` opens
the Zope application from the job's own connection, gives it a request,
enters the site and logs the user in again, found in the same user folder,
so the job has exactly the roles that user has *now*. Objects passed to the
job are stored as :class:`ObjectRef` (path and UID) and looked up again.

Whatever is missing fails the job with an error that names it; the job
never runs as somebody else or on another object.
"""

import io
import logging
import threading
from urllib.parse import urlsplit

from AccessControl.SecurityManagement import (
    getSecurityManager,
    newSecurityManager,
    noSecurityManager,
    setSecurityManager,
)
from AccessControl.SpecialUsers import nobody
from Acquisition import aq_base, aq_inner, aq_parent
from zope.component.hooks import getSite, setSite
from zope.event import notify
from zope.globalrequest import getRequest, setRequest
from zope.interface import alsoProvides, implementer
from zope.publisher.interfaces.browser import IDefaultBrowserLayer
from zope.traversing.interfaces import BeforeTraverseEvent
from ZPublisher.BaseRequest import RequestContainer
from ZPublisher.HTTPRequest import HTTPRequest
from ZPublisher.HTTPResponse import HTTPResponse

from zasync.interfaces import IJobEnvironment

log = logging.getLogger("zasync.plone")

# Used when neither the registry, zope.conf nor the queuing request gave a
# URL (a job queued from a script).
FALLBACK_URL = "http://localhost:8080"


class SiteNotFound(LookupError):
    """The site a job was queued in no longer exists."""


class UserNotFound(LookupError):
    """The user who queued a job no longer exists."""


class ContextNotFound(LookupError):
    """An object a job was queued for no longer exists."""


class NotQueueable(ValueError):
    """An object cannot be passed to a job (it has no path yet)."""


def _path_text(path):
    return "/".join(path) or "/"


class ObjectRef:
    """A stored object passed to a job: its physical path and, for content,
    its UID, which finds it again if it was moved."""

    __slots__ = ("path", "uid")

    def __init__(self, path, uid=None):
        self.path = tuple(path)
        self.uid = uid

    def __getstate__(self):
        return (self.path, self.uid)

    def __setstate__(self, state):
        self.path, self.uid = state

    def __eq__(self, other):
        return isinstance(other, ObjectRef) and (self.path, self.uid) == (
            other.path,
            other.uid,
        )

    def __hash__(self):
        return hash((self.path, self.uid))

    def __repr__(self):
        uid = f" uid={self.uid}" if self.uid else ""
        return f"<ObjectRef {_path_text(self.path)}{uid}>"

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
                    _path_text(self.path),
                    _path_text(moved.getPhysicalPath()),
                )
                return moved
        what = f"object {_path_text(self.path)}"
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
        return self.uid is None or _uid_of(obj) == self.uid


def _uid_of(obj):
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
            f"{_path_text(path)!r}), so a worker could not find it. Add it to "
            f"its folder first, then queue the job."
        )
    return ObjectRef(path, _uid_of(obj))


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


def make_request(url):
    """A request for ``url``, the public URL of the site root, as the
    virtual host monster would make it: absolute_url() of the site gives
    ``url``. Without PARENTS and virtual root yet; see enter()."""
    parts = urlsplit(url)
    https = parts.scheme == "https"
    environ = {
        "SERVER_NAME": parts.hostname or "localhost",
        "SERVER_PORT": str(parts.port or (443 if https else 80)),
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REQUEST_METHOD": "GET",
        "wsgi.url_scheme": parts.scheme or "http",
        "PATH_INFO": "/",
    }
    if https:
        environ["HTTPS"] = "on"
    response = HTTPResponse(stdout=io.BytesIO())
    request = HTTPRequest(io.BytesIO(), environ, response)
    alsoProvides(request, IDefaultBrowserLayer)
    return request, [p for p in parts.path.split("/") if p]


_entered = threading.local()


def _entered_stack():
    stack = getattr(_entered, "stack", None)
    if stack is None:
        stack = _entered.stack = []
    return stack


@implementer(IJobEnvironment)
class PloneEnvironment:
    """The site, user and URL a job was queued with; see the module."""

    def __init__(self, database_name, site_path, user_folder_path, user_id, url=None):
        self.database_name = database_name
        self.site_path = tuple(site_path)
        self.user_folder_path = (
            None if user_folder_path is None else tuple(user_folder_path)
        )
        self.user_id = user_id
        self.url = url

    def __eq__(self, other):
        return type(self) is type(other) and vars(self) == vars(other)

    def __repr__(self):
        user = (
            "Anonymous"
            if self.user_id is None
            else f"{self.user_id} in {_path_text(self.user_folder_path)}"
        )
        return f"<PloneEnvironment site {_path_text(self.site_path)}, user {user}>"

    @property
    def user_description(self):
        if self.user_id is None:
            return "Anonymous User"
        return f"user {self.user_id!r} of {_path_text(self.user_folder_path)}"

    # -- IJobEnvironment ---------------------------------------------------

    def enter(self, job):
        app = self._application(job)
        site = app.unrestrictedTraverse(self.site_path, None)
        if site is None or tuple(site.getPhysicalPath()) != self.site_path:
            raise SiteNotFound(
                f"The site {_path_text(self.site_path)}, where job "
                f"{getattr(job, 'id', '?')} was queued, no longer exists; the "
                f"job cannot run anywhere else. Delete the job, or queue it "
                f"again in an existing site."
            )
        token = (getSite(), getRequest(), getSecurityManager())
        request, script = make_request(self._public_url(site))
        app = aq_base(app).__of__(RequestContainer(REQUEST=request))
        site = app.unrestrictedTraverse(self.site_path)
        # The site is the virtual root: its absolute_url() is the public URL.
        request["PARENTS"] = [site]
        request.setVirtualRoot(script)
        request["PARENTS"] = [site, app]
        request["PUBLISHED"] = site
        setRequest(request)
        try:
            # What publishing does on entering a site: set it as the local
            # site and apply its browser layers (plone.browserlayer, themes).
            notify(BeforeTraverseEvent(site, request))
            setSite(site)
            newSecurityManager(request, self._user(app, job))
        except BaseException:
            self._restore(token, request)
            raise
        _entered_stack().append(app)
        return token + (request,)

    def arguments(self, job, args, kwargs):
        app = _entered_stack()[-1]
        args = tuple(
            a.resolve(app, job) if isinstance(a, ObjectRef) else a for a in args
        )
        kwargs = {
            k: v.resolve(app, job) if isinstance(v, ObjectRef) else v
            for k, v in kwargs.items()
        }
        return args, kwargs

    def exit(self, job, token):
        stack = _entered_stack()
        if stack:
            stack.pop()
        self._restore(token[:3], token[3])

    # -- helpers -----------------------------------------------------------

    @staticmethod
    def _restore(token, request):
        site, old_request, security_manager = token
        try:
            request.clear()
        except Exception:  # never let cleaning up hide the job's outcome
            log.debug("could not clear a job's request", exc_info=True)
        setRequest(old_request)
        setSite(site)
        if security_manager is None:
            noSecurityManager()
        else:
            setSecurityManager(security_manager)

    def _application(self, job):
        conn = getattr(job, "_p_jar", None)
        if conn is None:
            # A job run at once (inline mode, job()) before it was stored:
            # use the connection of the site this thread is in.
            site = getSite()
            conn = getattr(site, "_p_jar", None)
            if conn is None:
                raise RuntimeError(
                    f"job {getattr(job, 'id', '?')} is not stored and no site "
                    f"is set; commit it to a queue before it runs"
                )
        if self.database_name and conn.db().database_name != self.database_name:
            conn = conn.get_connection(self.database_name)
        app = conn.root().get("Application")
        if app is None:
            raise SiteNotFound(
                f"database {self.database_name!r} holds no Zope application; "
                f"is the worker configured with the same databases as the "
                f"instance that queued job {getattr(job, 'id', '?')}?"
            )
        return app

    def _public_url(self, site):
        from zasync.plone.settings import public_url

        return public_url(site) or self.url or FALLBACK_URL

    def _user(self, app, job):
        if self.user_id is None:
            return nobody
        user_folder = app.unrestrictedTraverse(self.user_folder_path, None)
        if user_folder is None or not hasattr(aq_base(user_folder), "getUserById"):
            raise UserNotFound(
                f"Job {getattr(job, 'id', '?')} was queued by "
                f"{self.user_description}, but that user folder no longer "
                f"exists. The job did not run: it never runs as anybody else."
            )
        user = user_folder.getUserById(self.user_id)
        if user is None:
            raise UserNotFound(
                f"Job {getattr(job, 'id', '?')} was queued by "
                f"{self.user_description}, who no longer exists. The job did "
                f"not run: it never runs as anybody else. Queue it again as an "
                f"existing user."
            )
        if not hasattr(user, "aq_base"):
            user = user.__of__(user_folder)
        return user


def capture(site=None):
    """The PloneEnvironment of the current request: its site, its user
    and the site's URL, for a job queued now."""
    site = site if site is not None else getSite()
    if site is None or not hasattr(site, "getPhysicalPath"):
        raise NotQueueable(
            "No site is set: queue jobs from code running in a Plone site (a "
            "request, or a script that called zope.component.hooks.setSite)."
        )
    jar = getattr(aq_base(site), "_p_jar", None)
    database_name = jar.db().database_name if jar is not None else None
    user = getSecurityManager().getUser()
    user_id = user.getId() if user is not None else None
    if user is None or user_id is None or aq_base(user) is aq_base(nobody):
        user_folder_path = user_id = None
    else:
        user_folder = aq_parent(aq_inner(user))
        if user_folder is None or not hasattr(user_folder, "getPhysicalPath"):
            raise NotQueueable(
                f"The current user {user_id!r} is not in a user folder (an "
                f"emergency or system user?), so a worker could not log them "
                f"in again. Queue the job as a user of the site or of the "
                f"Zope root."
            )
        user_folder_path = tuple(user_folder.getPhysicalPath())
    url = None
    if getRequest() is not None:
        try:
            url = site.absolute_url()
        except Exception:  # a request without SERVER_URL (a script)
            url = None
    return PloneEnvironment(
        database_name, site.getPhysicalPath(), user_folder_path, user_id, url
    )
