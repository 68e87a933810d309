"""Who queued a job, and the jobs each user queued in a site.

A job's queuer is the identity its environment recorded (see
zasync.plone.accounts): an account's key is its user folder, id and
generation, so a later account with the same id is somebody else and never
sees the jobs of the earlier one. An unrestricted identity's key is its
name.

Each site keeps, in an annotation of the site root, the ids of the jobs
queued in it through IAsyncService, per queuer (the newest :data:`KEEP`):
``@@my-jobs``, the REST API's ``?mine`` and the dashboard's user filter
read it, never a scan of the queues. The index is written in the
transaction that queues the job. Each queuer's ids are one
:class:`QueuedIds`, whose concurrent changes always merge, so requests
queueing jobs at the same time, even as the same user, do not conflict on
it. Ids of jobs pruned from their queue stay until newer ones push them
out; lookups skip them.
"""

from AccessControl import getSecurityManager
from Acquisition import aq_base, aq_inner, aq_parent
from BTrees.OOBTree import OOBTree
from persistent import Persistent
from zope.annotation.interfaces import IAnnotations

from zasync.admin import get_job
from zasync.exceptions import JobNotFound
from zasync.plone.accounts import (
    Principal,
    Unrestricted,
    generation,
    is_anonymous,
    is_unrestricted,
)
from zasync.plone.references import path_text

#: The site root's annotation holding the index.
ANNOTATION_KEY = "zasync.plone.jobs-by-queuer"
#: How many job ids the index keeps per queuer.
KEEP = 500


class QueuedIds(Persistent):
    """The newest :data:`KEEP` ids of the jobs one queuer queued in a site.

    Two transactions adding ids at the same time both keep theirs: the
    conflict resolves to the newest KEEP of the union (trimming only ever
    drops the oldest, so a union trimmed again drops what either dropped).
    """

    def __init__(self):
        self.ids = ()

    def add(self, job_id):
        self.ids = _newest((*self.ids, job_id))

    def __iter__(self):
        return reversed(self.ids)

    def __len__(self):
        return len(self.ids)

    def _p_resolveConflict(self, old, saved, new):
        merged = dict(new)
        merged["ids"] = _newest((*saved.get("ids", ()), *new.get("ids", ())))
        return merged


def _newest(ids):
    return tuple(sorted(set(ids))[-KEEP:])


def identity_key(identity):
    """The key of a recorded identity (Principal or Unrestricted), or None
    for Anonymous. A Principal stored before generations were recorded has
    generation None."""
    if isinstance(identity, Unrestricted):
        return ("unrestricted", identity.name)
    if isinstance(identity, Principal):
        return (
            "user",
            path_text(identity.user_folder_path),
            identity.user_id,
            identity.generation,
        )
    return None


def queuer_key(job):
    """The key of whoever queued ``job`` (None: Anonymous, or a job not
    queued through the Plone layer)."""
    environment = getattr(job, "environment", None)
    identify = getattr(environment, "_identity", None)
    return None if identify is None else identity_key(identify())


def queuer_id(job):
    """The user id (or unrestricted name) that queued ``job``, or None."""
    environment = getattr(job, "environment", None)
    return getattr(environment, "user_id", None)


def user_key(user=None):
    """The key of ``user`` (default: the current user), or None for
    Anonymous and for users that are not in a user folder."""
    if user is None:
        user = getSecurityManager().getUser()
    if is_anonymous(user):
        return None
    if is_unrestricted(user):
        return ("unrestricted", user.getUserName())
    user_folder = aq_parent(aq_inner(user))
    if user_folder is None or not hasattr(user_folder, "getPhysicalPath"):
        return None
    return (
        "user",
        path_text(user_folder.getPhysicalPath()),
        user.getId(),
        generation(user_folder, user.getId()),
    )


def same_queuer(job_key, key):
    """Whether a job queued by ``job_key`` was queued by ``key``: the same
    folder and id, and the same generation unless the job's was not
    recorded (jobs stored before accounts were told apart)."""
    if job_key is None or key is None:
        return False
    if job_key[0] != key[0] or job_key[0] == "unrestricted":
        return job_key == key
    return job_key[1:3] == key[1:3] and job_key[3] in (None, key[3])


def queued_by(job, user=None):
    """Whether ``user`` (default: the current user) queued ``job``."""
    return same_queuer(queuer_key(job), user_key(user))


def _index(site, create):
    annotations = IAnnotations(aq_base(site))
    index = annotations.get(ANNOTATION_KEY)
    if index is None and create:
        index = annotations[ANNOTATION_KEY] = OOBTree()
    return index


def remember(site, job):
    """Record in ``site``'s index that ``job``'s queuer queued it."""
    key = queuer_key(job)
    # Keys are compared in the tree: a generation must be an int there.
    if key is None or key[-1] is None or job.id is None:
        return
    index = _index(site, create=True)
    ids = index.get(key)
    if ids is None:
        ids = index[key] = QueuedIds()
    ids.add(job.id)


def job_ids(site, key):
    """Ids of the jobs ``key`` queued in ``site``, newest first."""
    index = _index(site, create=False)
    if index is None or key is None or key[-1] is None:
        return []
    return list(index.get(key, ()))


def jobs_of(site, queues, key=None, start=0, limit=None):
    """The jobs ``key`` (default: the current user) queued in ``site`` that
    are still in ``queues``, newest first: ``(jobs, more)``, leaving out the
    first ``start``, at most ``limit`` (None: all)."""
    key = user_key() if key is None else key
    found, skipped = [], 0
    for job_id in job_ids(site, key):
        try:
            job = get_job(queues, job_id)
        except JobNotFound:
            continue  # pruned
        if not same_queuer(queuer_key(job), key):
            continue  # never another user's, whatever the index says
        if skipped < start:
            skipped += 1
            continue
        if limit is not None and len(found) == limit:
            return found, True
        found.append(job)
    return found, False
