"""Job functions for the zasync.plone tests (a worker imports them)."""

import collections

from AccessControl import getSecurityManager
from ZODB.POSException import ConflictError
from zope.component.hooks import getSite
from zope.globalrequest import getRequest

from plone import api
from zasync.plone import asyncfunction, is_async
from zasync.plone.interfaces import IZasyncLayer

# Non-transactional records of what jobs and handlers saw.
seen = []
calls = collections.Counter()


def whoami(context):
    """Who runs this, where, with which roles on ``context``."""
    user = getSecurityManager().getUser()
    return {
        "user": user.getId(),
        "roles": sorted(user.getRolesInContext(context)),
        "site": "/".join(getSite().getPhysicalPath()),
        "portal": "/".join(api.portal.get().getPhysicalPath()),
        "context": "/".join(context.getPhysicalPath()),
    }


def request_facts(context):
    request = getRequest()
    return {
        "context_url": context.absolute_url(),
        "portal_url": api.portal.get().absolute_url(),
        "layer": IZasyncLayer.providedBy(request),
        # A local utility of the site: its registry, with zasync's records.
        "registry": "zasync.public_url" in api.portal.get_tool("portal_registry"),
    }


def set_title(context, title):
    context.title = title
    context.reindexObject()
    return context.title


def add_document(context, id):
    context.invokeFactory("Document", id, title=id)
    return id


def record_user(result):
    """A callback: who runs it, where."""
    user = getSecurityManager().getUser()
    seen.append((result, user.getId(), "/".join(getSite().getPhysicalPath())))


def failing_callback(result):
    raise ValueError("the callback broke")


def conflict_once(context, key):
    calls[key] += 1
    if calls[key] == 1:
        raise ConflictError("first try conflicts")
    return calls[key]


def path_of(context):
    return "/".join(context.getPhysicalPath())


def both_paths(context, other, keyword=None):
    return (path_of(context), path_of(other), keyword and path_of(keyword))


@asyncfunction
def retitle(obj, title):
    """Queued when called outside a job."""
    obj.title = title
    return {"async": is_async(), "user": getSecurityManager().getUser().getId()}


@asyncfunction(quota_names=("default",))
def retitle_both(first, second, title):
    # Inside a job, calling another async function runs it at once.
    return [retitle(first, title), retitle(second, title)]


def check_async():
    return is_async()


def identity(context):
    """Who runs this: name, id, global roles, and whether unrestricted."""
    from AccessControl.users import UnrestrictedUser
    from Acquisition import aq_base

    user = getSecurityManager().getUser()
    return {
        "name": user.getUserName(),
        "id": user.getId(),
        "roles": sorted(user.getRoles()),
        "unrestricted": isinstance(aq_base(user), UnrestrictedUser),
        "may_manage": bool(
            getSecurityManager().checkPermission("Manage portal", context)
        ),
    }


def add_to_portal(context, id):
    """Needs rights on the portal root (a Manager's, or an unrestricted one)."""
    portal = api.portal.get()
    portal.invokeFactory("Document", id, title=id)
    return "/".join(portal[id].getPhysicalPath())


def where_and_who(result=None):
    """A callback or handler: who runs it and in which site (or none)."""
    site = getSite()
    return {
        "user": getSecurityManager().getUser().getUserName(),
        "site": None if site is None else "/".join(site.getPhysicalPath()),
        "result": type(result).__name__,
    }


def record_outcome(result):
    """A failure callback: records where and as whom it ran."""
    facts = where_and_who(result)
    facts["error"] = result.type_name if hasattr(result, "type_name") else None
    seen.append(("callback", facts))
    return facts


def url_facts(context):
    """The URLs code sees: the context's, the portal's and a view's."""
    portal = api.portal.get()
    state = context.restrictedTraverse("@@plone_portal_state")
    return {
        "context_url": context.absolute_url(),
        "portal_url": portal.absolute_url(),
        "portal_url_tool": api.portal.get_tool("portal_url")(),
        "navigation_root_url": state.navigation_root_url(),
        "view_url": context.restrictedTraverse("@@plone_context_state").view_url(),
    }
