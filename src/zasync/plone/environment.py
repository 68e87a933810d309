"""Running a job where and as whom it was queued.

When a job is queued, :func:`capture` records the site (its path and
object id), the user (:class:`~zasync.plone.accounts.Principal`: their user
folder, id, account generation and global roles), the virtual-host mapping
of the request (:class:`~zasync.plone.jobrequest.VirtualHost`), the site's
URL and the name of the Zope database. In the worker,
:class:`PloneEnvironment` opens the Zope application from the job's own
connection, gives it a request with the same URLs, enters the site and
logs the same account in again, with its current roles capped at the
global roles it had when queuing. Objects passed to the job are stored as
:class:`~zasync.plone.references.ObjectRef` (path and UID) and looked up
again.

Whatever is missing fails the job with an error that names it; the job
never runs as somebody else, in another site or on another object. Only
the callbacks of a job (IJobSuccess / IJobFailure handlers and failure
callbacks) run when the user or the site is gone, with the least that
still exists: as Anonymous in the site, or without a site.
"""

import logging
import threading

from AccessControl.SecurityManagement import (
    getSecurityManager,
    newSecurityManager,
    noSecurityManager,
    setSecurityManager,
)
from AccessControl.SpecialUsers import nobody
from Acquisition import aq_base
from zope.component.hooks import getSite, setSite
from zope.event import notify
from zope.globalrequest import getRequest, setRequest
from zope.interface import implementer
from zope.traversing.interfaces import BeforeTraverseEvent

from zasync.interfaces import IJobEnvironment
from zasync.plone.accounts import Principal, Unrestricted, is_anonymous, is_unrestricted
from zasync.plone.exceptions import (
    ContextNotFound,
    NotQueueable,
    SiteNotFound,
    UserNotFound,
)
from zasync.plone.jobrequest import VirtualHost, job_request
from zasync.plone.references import (
    ObjectRef,
    path_text,
    reference,
    references_in,
    resolve_all,
)

__all__ = [
    "ContextNotFound",
    "NotQueueable",
    "ObjectRef",
    "PloneEnvironment",
    "SiteNotFound",
    "UserNotFound",
    "capture",
    "degraded",
    "reference",
    "references_in",
]

log = logging.getLogger("zasync.plone")

# Used when neither the registry, zope.conf nor the queuing request gave a
# URL (a job queued from a script).
FALLBACK_URL = "http://localhost:8080"


class _Entered:
    __slots__ = ("app", "degraded")

    def __init__(self, app, degraded):
        self.app = app
        self.degraded = degraded


_entered = threading.local()


def _entered_stack():
    stack = getattr(_entered, "stack", None)
    if stack is None:
        stack = _entered.stack = []
    return stack


def degraded():
    """Why the callback running in this thread runs with less than its job's
    site and user (a text), or None if it has both."""
    stack = _entered_stack()
    return stack[-1].degraded if stack else None


@implementer(IJobEnvironment)
class PloneEnvironment:
    """The site, user and URLs a job was queued with; see the module."""

    # Jobs stored before these were recorded have none of them.
    site_oid = None
    principal = None
    virtual_host = None

    def __init__(
        self,
        database_name,
        site_path,
        user_folder_path,
        user_id,
        url=None,
        *,
        site_oid=None,
        principal=None,
        virtual_host=None,
    ):
        self.database_name = database_name
        self.site_path = tuple(site_path)
        self.user_folder_path = (
            None if user_folder_path is None else tuple(user_folder_path)
        )
        self.user_id = user_id
        self.url = url
        if site_oid is not None:
            self.site_oid = site_oid
        if principal is not None:
            self.principal = principal
        if virtual_host is not None:
            self.virtual_host = virtual_host

    def __eq__(self, other):
        return type(self) is type(other) and vars(self) == vars(other)

    def __repr__(self):
        site = path_text(self.site_path)
        return f"<PloneEnvironment site {site}, {self.user_description}>"

    def __str__(self):
        # What log lines say of where and as whom a job runs.
        return f"{self.user_description} in site {path_text(self.site_path)}"

    @property
    def user_description(self):
        identity = self._identity()
        return "Anonymous User" if identity is None else identity.description

    def _identity(self):
        if self.principal is not None:
            return self.principal
        if self.user_id is None:
            return None
        # A job stored before accounts were told apart: id and folder only.
        return Principal(self.user_folder_path, self.user_id)

    # -- IJobEnvironment ---------------------------------------------------

    def enter(self, job):
        app = self._application(job)
        # A callback handles an outcome (IJobSuccess / IJobFailure, failure
        # callbacks): it runs with what is left if the user or site is gone.
        handler = getattr(job, "role", None) == "callback"
        reason = None
        site_path = self.site_path
        try:
            site = self._site(app, job)
        except SiteNotFound:
            if not handler:
                raise
            site = site_path = None
            reason = (
                f"the site {path_text(self.site_path)} where job "
                f"{_parent_id(job)} was queued is gone: its handlers run "
                f"without a site, as Anonymous"
            )
        token = (getSite(), getRequest(), getSecurityManager())
        request, app, site = job_request(
            app, site_path, self.virtual_host, self._url(site)
        )
        setRequest(request)
        try:
            if site_path is None:
                setSite(None)
                user = nobody
            else:
                # What publishing does on entering a site: set it as the local
                # site and apply its browser layers (plone.browserlayer, themes).
                notify(BeforeTraverseEvent(site, request))
                setSite(site)
                try:
                    user = self._user(app, job)
                except UserNotFound:
                    if not handler:
                        raise
                    user = nobody
                    reason = (
                        f"{self.user_description}, who queued job "
                        f"{_parent_id(job)}, cannot be found again: its "
                        f"handlers run as Anonymous in {path_text(site_path)}"
                    )
            newSecurityManager(request, user)
        except BaseException:
            self._restore(token, request)
            raise
        if reason is not None:
            log.warning("job %s: %s", getattr(job, "id", "?"), reason)
        _entered_stack().append(_Entered(app, reason))
        return token + (request,)

    def arguments(self, job, args, kwargs):
        return resolve_all(_entered_stack()[-1].app, job, args, kwargs)

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
            # As at the end of a published request: EndRequestEvent lets
            # subscribers (content rules' duplicate filter, the thread's
            # site) reset what they keep per request.
            request.close()
        except Exception:  # never let cleaning up hide the job's outcome
            log.debug("could not close a job's request", exc_info=True)
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

    def _site(self, app, job):
        """The site the job was queued in, or SiteNotFound."""
        site = app.unrestrictedTraverse(self.site_path, None)
        if site is None or tuple(site.getPhysicalPath()) != self.site_path:
            raise SiteNotFound(
                f"The site {path_text(self.site_path)}, where job "
                f"{getattr(job, 'id', '?')} was queued, no longer exists; the "
                f"job cannot run anywhere else. Delete the job, or queue it "
                f"again in an existing site."
            )
        oid = getattr(aq_base(site), "_p_oid", None)
        if self.site_oid is not None and oid != self.site_oid:
            raise SiteNotFound(
                f"The site {path_text(self.site_path)}, where job "
                f"{getattr(job, 'id', '?')} was queued, was deleted; the site "
                f"at that path now is another one, and the job never runs in "
                f"another site. Delete the job, or queue it again there."
            )
        return site

    def _url(self, site):
        """The public URL of ``site`` (None: it is gone) for a job queued
        outside a request; None when the queuing request's URLs apply."""
        if self.virtual_host is not None:
            return None
        from zasync.plone.settings import public_url

        configured = None if site is None else public_url(site)
        return configured or self.url or FALLBACK_URL

    def _user(self, app, job):
        identity = self._identity()
        if identity is None:
            return nobody
        return identity.find(app, job)


def _parent_id(job):
    parent = getattr(job, "parent", None)
    return getattr(parent if parent is not None else job, "id", "?")


def capture(site=None):
    """The PloneEnvironment of the current request: its site, its user
    and its URLs, for a job queued now."""
    site = site if site is not None else getSite()
    if site is None or not hasattr(site, "getPhysicalPath"):
        raise NotQueueable(
            "No site is set: queue jobs from code running in a Plone site (a "
            "request, or a script that called zope.component.hooks.setSite)."
        )
    jar = getattr(aq_base(site), "_p_jar", None)
    database_name = jar.db().database_name if jar is not None else None
    user = getSecurityManager().getUser()
    principal = user_folder_path = user_id = None
    if user is not None and is_unrestricted(user):
        roles = [r for r in user.getRoles() if r != "Authenticated"]
        principal = Unrestricted(user.getUserName(), roles)
        user_id = principal.name
    elif not is_anonymous(user):
        principal = Principal.of(user)
        user_folder_path, user_id = principal.user_folder_path, principal.user_id
    request = getRequest()
    url = None
    if request is not None:
        try:
            url = site.absolute_url()
        except Exception:  # a request without SERVER_URL (a script)
            url = None
    return PloneEnvironment(
        database_name,
        site.getPhysicalPath(),
        user_folder_path,
        user_id,
        url,
        site_oid=getattr(aq_base(site), "_p_oid", None),
        principal=principal,
        virtual_host=VirtualHost.of(request),
    )
