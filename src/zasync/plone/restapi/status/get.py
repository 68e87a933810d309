"""``GET @zasync-status``: zasync.admin.status_report as JSON (each queue's
job counts by status, set-aside jobs, dispatchers and quotas).
Permission ``zasync.ManageJobs``."""

from zasync import admin
from zasync.plone.restapi.base import STATUS_SERVICE, ZasyncService


class StatusGet(ZasyncService):
    """See the module."""

    def reply(self):
        data = admin.for_json(admin.status_report(self.queues()))
        data["@id"] = f"{self.site_url}/{STATUS_SERVICE}"
        return data
