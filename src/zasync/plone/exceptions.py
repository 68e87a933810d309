"""Why a Plone job could not be queued, or could not run as it was queued.

The job never runs anywhere else or as anybody else instead: each of these
fails it (through its retry policy) with a message that says what is
missing and what to do.
"""

from zasync.exceptions import ZasyncError


class SiteNotFound(ZasyncError, LookupError):
    """The site a job was queued in no longer exists, or another site took
    its place at the same path. Delete the job, or queue it again in an
    existing site."""


class UserNotFound(ZasyncError, LookupError):
    """The account that queued a job no longer exists, or was deleted and
    created again under the same id (a new account is somebody else). Queue
    the job again as an existing user."""


class ContextNotFound(ZasyncError, LookupError):
    """An object a job was queued for no longer exists (it was deleted, or
    replaced by another object at its path). Queue the job again for an
    existing object."""


class NotQueueable(ZasyncError, ValueError):
    """A job cannot be queued from here: no site is set, or an argument is
    a Zope object with no path a worker could find it by. Queue from code
    running in a site, with objects that are stored in it."""
