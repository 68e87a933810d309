"""``GET @zasync-recurring``: zasync.admin.recurring_report as JSON (each
recurring job's schedule, next tick, last run and its status).
Permission ``zasync.ManageJobs``."""

from zasync import admin
from zasync.plone.restapi.base import ZasyncService

RECURRING_SERVICE = "@zasync-recurring"


class RecurringGet(ZasyncService):
    """See the module."""

    def reply(self):
        return {
            "@id": f"{self.site_url}/{RECURRING_SERVICE}",
            "items": admin.for_json(admin.recurring_report(self.queues())),
        }
