"""The demo's permission, with the roles that have it by default."""

from AccessControl.Permission import addPermission

#: Who sees the jobs every user queued from the demo page (results,
#: tracebacks), not only their own: Managers and Site Administrators,
#: unless a site's security settings give it to other roles.
VIEW_ALL_JOBS = "zasync: View all demo jobs"

addPermission(VIEW_ALL_JOBS, ("Manager", "Site Administrator"))
