"""What the zasync services share: who may see which job, job URLs,
errors as JSON, and the request's parameters.

Who sees what: a user with "zasync: Manage jobs" sees and acts on every
job of the site's database; any other authenticated user sees only the
jobs they queued (zasync.plone.queuers), and a job of somebody else is
"not found" for them, as is an id that does not exist, so that nothing
tells them it exists. Anonymous gets 401.
"""

import json

import transaction
from AccessControl import getSecurityManager
from plone.protect.interfaces import IDisableCSRFProtection
from plone.restapi.deserializer import json_body
from plone.restapi.services import Service
from zExceptions import Unauthorized
from zope.interface import alsoProvides, implementer
from zope.publisher.interfaces import IPublishTraverse

from zasync import admin
from zasync.exceptions import JobNotFound
from zasync.plone import queuers
from zasync.plone.accounts import is_anonymous
from zasync.plone.permissions import MANAGE_JOBS
from zasync.plone.service import site_queues

JOBS_SERVICE = "@zasync-jobs"
STATUS_SERVICE = "@zasync-status"


class ServiceError(Exception):
    """Ends a request with ``status`` and a JSON error saying ``message``
    (what went wrong and what to do)."""

    def __init__(self, status, message, type_name=None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.type_name = type_name or {
            400: "BadRequest",
            404: "NotFound",
            409: "Conflict",
        }.get(status, "Error")


@implementer(IPublishTraverse)
class ZasyncService(Service):
    """A zasync service: ``reply()`` of subclasses may raise ServiceError;
    the path after the service's name is in ``self.params``."""

    #: Whether the service changes the queues (then plone.protect's
    #: automatic CSRF check is off for it, as for plone.restapi's own
    #: writing services: the request reaches a service only with
    #: ``Accept: application/json``, which an HTML form cannot send).
    writes = False

    def __init__(self, context, request):
        super().__init__(context, request)
        self.params = []

    def publishTraverse(self, request, name):
        self.params.append(name)
        return self

    def render(self):
        if self.writes:
            alsoProvides(self.request, IDisableCSRFProtection)
        try:
            return super().render()
        except ServiceError as exc:
            # Nothing of a refused request is committed.
            transaction.doom()
            self.request.response.setStatus(exc.status)
            self.request.response.setHeader("Content-Type", self.content_type)
            # plone.restapi's error body (as its error view gives).
            return _dumps({"type": exc.type_name, "message": exc.message})

    # -- who -----------------------------------------------------------------

    def check_authenticated(self):
        """Unauthorized (401) for Anonymous."""
        if is_anonymous(getSecurityManager().getUser()):
            raise Unauthorized("log in to see zasync jobs")

    @property
    def can_manage(self):
        """Whether the user has "zasync: Manage jobs" on the site."""
        return bool(getSecurityManager().checkPermission(MANAGE_JOBS, self.context))

    def may_see(self, job):
        return self.can_manage or queuers.queued_by(job)

    # -- what ----------------------------------------------------------------

    @property
    def site_url(self):
        return self.context.absolute_url()

    def queues(self):
        return site_queues()

    def job_url(self, job_id):
        return f"{self.site_url}/{JOBS_SERVICE}/{job_id}"

    def job_id_param(self):
        """The job id of the path (``@zasync-jobs/{id}``); 400 if it is not
        an id."""
        if not self.params:
            raise ServiceError(
                400, f"give the job's id in the URL: {JOBS_SERVICE}/<id>"
            )
        try:
            return admin.parse_job_id(self.params[0])
        except ValueError as exc:
            raise ServiceError(400, str(exc)) from None

    def visible_job(self, job_id):
        """The job ``job_id`` if the user may see it; 404 otherwise, with
        the same message whether it does not exist or is somebody else's."""
        not_found = (
            f"no job {job_id} that you may see (it may have been pruned); "
            f"GET {JOBS_SERVICE} lists the jobs there are"
        )
        try:
            job = admin.get_job(self.queues(), job_id)
        except JobNotFound as exc:
            message = str(exc) if self.can_manage else not_found
            raise ServiceError(404, message) from None
        if not self.may_see(job):
            raise ServiceError(404, not_found)
        return job

    def json_body(self):
        try:
            return json_body(self.request)
        except Exception as exc:
            message = f"the request's body must be a JSON object: {exc}"
            raise ServiceError(400, message) from None


def _dumps(data):
    return json.dumps(data, indent=2, sort_keys=True, separators=(", ", ": "))
