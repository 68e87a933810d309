"""zasync's permissions in Plone sites, with the roles that have them by
default (a site's security settings may give them to other roles).

The ZCML ids (for ``permission=`` of views and REST services) are in
configure.zcml beside their titles.
"""

from AccessControl.Permission import addPermission

#: The jobs dashboard, the REST services on other users' jobs, and the
#: actions on any job (retry, cancel, delete, quota sizes). ZCML id
#: ``zasync.ManageJobs``.
MANAGE_JOBS = "zasync: Manage jobs"

#: The Prometheus metrics of the process (``@@zasync-metrics``). ZCML id
#: ``zasync.ViewMetrics``.
VIEW_METRICS = "zasync: View metrics"

addPermission(MANAGE_JOBS, ("Manager", "Site Administrator"))
addPermission(VIEW_METRICS, ("Manager", "Site Administrator"))
