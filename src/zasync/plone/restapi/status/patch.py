"""``PATCH @zasync-status``: change quota sizes, cluster-wide (every site of
the database and every worker follows). Permission ``zasync.ManageJobs``.

The body is ``{"quotas": {"<name>": <size>, ...}}``, with ``"queue"``
naming the queue (default: the default queue); a quota that does not
exist is created, size 0 pauses its jobs. All changes or none: any bad
value is 400 and nothing is changed. The answer lists each change as
zasync.admin.set_quota_size gives it (``was`` is None for a new quota).
"""

from zasync import admin
from zasync.plone.restapi.base import STATUS_SERVICE, ServiceError, ZasyncService


class StatusPatch(ZasyncService):
    """See the module."""

    writes = True

    def reply(self):
        body = self.json_body()
        unknown = sorted(set(body) - {"quotas", "queue"})
        if unknown:
            raise ServiceError(
                400, f"unknown keys {', '.join(unknown)}: give 'quotas' (and 'queue')"
            )
        quotas = body.get("quotas")
        if not isinstance(quotas, dict) or not quotas:
            raise ServiceError(
                400,
                'give the quota sizes to set as {"quotas": {"<name>": <size>}}',
            )
        queue = body.get("queue")
        if queue is not None and not isinstance(queue, str):
            raise ServiceError(400, f"'queue' must be a queue name, not {queue!r}")
        changed = []
        try:
            for name, size in quotas.items():
                changed.append(
                    admin.set_quota_size(self.queues(), name, size, queue=queue)
                )
        except admin.AdminError as exc:
            raise ServiceError(400, str(exc)) from None
        return {"@id": f"{self.site_url}/{STATUS_SERVICE}", "changed": changed}
