"""Who a job runs as: the account that queued it, found again, never more.

At queue time :class:`Principal` records the user's id and user folder and
what tells this account apart from a later one with the same id:

- the *generation* of the id in its user folder: every account created
  through PAS (the Plone UI, plone.api, plone.restapi) counts one up
  (:func:`principal_created`), so an account deleted and created again
  under the same id has another generation;
- for users that are persistent objects (Zope's classic user folder), their
  object id;
- the user's *global* roles (their own and their groups'), which cap the
  roles of the job: in the worker the user has only those of them that
  they still have. Local roles are those the user has on each object when
  the job runs (they belong to the objects, and Plone grants them to the
  id).

An unrestricted identity (Zope's emergency user, ``UnrestrictedUser``
used by scripts) is recorded by name and roles and runs the job as the
same unrestricted identity.
"""

import copy

from AccessControl.SpecialUsers import nobody
from AccessControl.users import UnrestrictedUser
from Acquisition import aq_base, aq_inner, aq_parent
from BTrees.OIBTree import OIBTree

from zasync.plone.exceptions import NotQueueable, UserNotFound
from zasync.plone.references import path_text
from zasync.plone.values import SlotsValue

#: Attribute of a user folder holding the generation of each id created
#: through PAS since zasync was installed.
GENERATIONS = "_zasync_account_generations"

#: Roles every authenticated user has; never capped.
IMPLIED_ROLES = frozenset({"Anonymous", "Authenticated"})


def generation(user_folder, user_id):
    """How many times ``user_id`` was created in ``user_folder`` (0: never
    since zasync counts)."""
    counts = getattr(aq_base(user_folder), GENERATIONS, None)
    return 0 if counts is None else counts.get(user_id, 0)


def principal_created(event):
    """IPrincipalCreatedEvent: count the new account's generation."""
    user = event.principal
    if not hasattr(user, "getId"):
        return
    user_folder = aq_parent(aq_inner(user))
    base = aq_base(user_folder)
    if base is None or not hasattr(base, "getUserById"):
        return
    counts = getattr(base, GENERATIONS, None)
    if counts is None:
        counts = OIBTree()
        setattr(base, GENERATIONS, counts)
    user_id = user.getId()
    counts[user_id] = counts.get(user_id, 0) + 1


_capped_classes = {}


def _capped_class(cls):
    # A subclass per user class, made once: AccessControl and PAS check
    # global roles through getRoles(), local roles through the local role
    # plugins, so overriding getRoles() caps exactly the global roles.
    capped = _capped_classes.get(cls)
    if capped is None:

        def getRoles(self):
            # ``self`` may be an acquisition wrapper: call the class's own.
            cap = self._zasync_role_cap
            return [r for r in cls.getRoles(self) if r in cap or r in IMPLIED_ROLES]

        capped = _capped_classes[cls] = type(cls)(
            f"RolesCapped{cls.__name__}",
            (cls,),
            {"getRoles": getRoles, "__module__": __name__},
        )
    return capped


def cap_roles(user, roles):
    """A copy of ``user`` (acquisition-wrapped like it) whose global roles
    are at most ``roles``; ``user`` itself is left as it is (PAS may cache
    it)."""
    base = aq_base(user)
    capped = copy.copy(base)
    capped.__class__ = _capped_class(type(base))
    capped._zasync_role_cap = frozenset(roles)
    parent = aq_parent(user)
    return capped if parent is None else capped.__of__(parent)


class Principal(SlotsValue):
    """The identity a job runs as; see the module."""

    __slots__ = ("user_folder_path", "user_id", "generation", "oid", "roles")

    def __init__(
        self, user_folder_path, user_id, generation=None, oid=None, roles=None
    ):
        self.user_folder_path = tuple(user_folder_path)
        self.user_id = user_id
        self.generation = generation
        self.oid = oid
        self.roles = None if roles is None else tuple(sorted(roles))

    def __repr__(self):
        return f"<Principal {self.description}>"

    @property
    def description(self):
        return f"user {self.user_id!r} of {path_text(self.user_folder_path)}"

    @classmethod
    def of(cls, user):
        """The Principal for ``user`` (the current user of a request)."""
        user_id = user.getId()
        user_folder = aq_parent(aq_inner(user))
        if user_folder is None or not hasattr(user_folder, "getPhysicalPath"):
            raise NotQueueable(
                f"The current user {user_id!r} is not in a user folder, so a "
                f"worker could not log them in again. Queue the job as a user "
                f"of the site or of the Zope root."
            )
        oid = getattr(aq_base(user), "_p_oid", None)
        return cls(
            user_folder.getPhysicalPath(),
            user_id,
            generation(user_folder, user_id),
            oid,
            [r for r in user.getRoles() if r not in IMPLIED_ROLES],
        )

    def find(self, app, job=None):
        """The account, logged-in-ready, with its roles capped; raises
        UserNotFound if it is gone or is not the one that queued ``job``."""
        job_id = getattr(job, "id", "?")
        user_folder = app.unrestrictedTraverse(self.user_folder_path, None)
        if user_folder is None or not hasattr(aq_base(user_folder), "getUserById"):
            raise UserNotFound(
                f"Job {job_id} was queued by {self.description}, but that user "
                f"folder no longer exists. The job did not run: it never runs "
                f"as anybody else."
            )
        user = user_folder.getUserById(self.user_id)
        if user is None:
            raise UserNotFound(
                f"Job {job_id} was queued by {self.description}, who no longer "
                f"exists. The job did not run: it never runs as anybody else. "
                f"Queue it again as an existing user."
            )
        if not self._same_account(user_folder, user):
            raise UserNotFound(
                f"Job {job_id} was queued by {self.description}, whose account "
                f"was deleted; the account with that id now is a new one. The "
                f"job did not run: it never runs as anybody else. Queue it "
                f"again as the new user if that is intended."
            )
        if not hasattr(user, "aq_base"):
            user = user.__of__(user_folder)
        elif aq_parent(user) is None:
            user = aq_base(user).__of__(user_folder)
        if self.roles is not None:
            user = cap_roles(user, self.roles)
        return user

    def _same_account(self, user_folder, user):
        current = generation(user_folder, self.user_id)
        if self.generation is not None and current != self.generation:
            return False
        if self.oid is not None:
            oid = getattr(aq_base(user), "_p_oid", None)
            if oid is not None and oid != self.oid:
                return False
        return True


class Unrestricted(SlotsValue):
    """An unrestricted identity (the emergency user, a script's
    ``UnrestrictedUser``): the job runs as the same, unrestricted."""

    __slots__ = ("name", "roles")

    def __init__(self, name, roles):
        self.name = name
        self.roles = tuple(roles)

    def __repr__(self):
        return f"<Unrestricted {self.name!r}>"

    @property
    def description(self):
        return f"unrestricted user {self.name!r}"

    @property
    def user_id(self):
        return self.name

    def find(self, app, job=None):
        return UnrestrictedUser(self.name, "", self.roles, []).__of__(app.acl_users)


def is_unrestricted(user):
    return isinstance(aq_base(user), UnrestrictedUser)


def is_anonymous(user):
    return user is None or user.getId() is None or aq_base(user) is aq_base(nobody)
