"""``PATCH @zasync-status``: change quota sizes and pause or resume a
queue, cluster-wide (every site of the database and every worker follows).
Permission ``zasync.ManageJobs``.

The body is ``{"quotas": {"<name>": <size>, ...}}`` and/or
``{"paused": true|false}``, with ``"queue"`` naming the queue (default:
the default queue); a quota that does not exist is created, size 0 pauses
its jobs; a paused queue has nothing claimed from it until resumed. All
changes or none: any bad value is 400 and nothing is changed. The answer
lists each quota change as zasync.admin.set_quota_size gives it (``was``
is None for a new quota) and, with ``paused``, what pause_queue or
resume_queue did.
"""

from AccessControl import getSecurityManager

from zasync import admin
from zasync.plone.restapi.base import STATUS_SERVICE, ServiceError, ZasyncService


class StatusPatch(ZasyncService):
    """See the module."""

    writes = True

    def reply(self):
        body = self.json_body()
        unknown = sorted(set(body) - {"quotas", "queue", "paused"})
        if unknown:
            raise ServiceError(
                400,
                f"unknown keys {', '.join(unknown)}: give 'quotas' and/or "
                f"'paused' (and 'queue')",
            )
        quotas = body.get("quotas")
        paused = body.get("paused")
        if quotas is None and paused is None:
            raise ServiceError(
                400,
                'give the quota sizes to set as {"quotas": {"<name>": <size>}}, '
                'or {"paused": true} / {"paused": false}',
            )
        if quotas is not None and (not isinstance(quotas, dict) or not quotas):
            raise ServiceError(
                400,
                'give the quota sizes to set as {"quotas": {"<name>": <size>}}',
            )
        if paused is not None and not isinstance(paused, bool):
            raise ServiceError(400, f"'paused' must be true or false, not {paused!r}")
        queue = body.get("queue")
        if queue is not None and not isinstance(queue, str):
            raise ServiceError(400, f"'queue' must be a queue name, not {queue!r}")
        answer = {"@id": f"{self.site_url}/{STATUS_SERVICE}", "changed": []}
        try:
            for name, size in (quotas or {}).items():
                answer["changed"].append(
                    admin.set_quota_size(self.queues(), name, size, queue=queue)
                )
            if paused is True:
                user = getSecurityManager().getUser()
                by = f"{user.getUserName()} (REST API)"
                answer["paused"] = admin.for_json(
                    admin.pause_queue(self.queues(), queue, by=by)
                )
            elif paused is False:
                answer["resumed"] = admin.resume_queue(self.queues(), queue)
        except admin.AdminError as exc:
            raise ServiceError(400, str(exc)) from None
        return answer
