"""``PATCH @zasync-status``: change quota sizes and rates and pause or
resume a queue or a quota, cluster-wide (every site of the database and
every worker follows). Permission ``zasync.ManageJobs``.

The body is ``{"quotas": {"<name>": <size>, ...}}``, ``{"rates":
{"<name>": {"limit": <n>, "per_seconds": <s>} or null, ...}}`` and/or
``{"paused": true|false}``, with ``"queue"`` naming the queue (default:
the default queue) and ``"quota"`` naming the quota that ``paused``
pauses or resumes instead of the whole queue; a quota that does not exist
is created, size 0 pauses its jobs; a paused queue or quota has nothing
claimed until resumed; a rate lets at most ``limit`` jobs naming the
quota start in any ``per_seconds``, null removes it. All changes or none:
any bad value is 400 and nothing is changed. The answer lists each quota
change as zasync.admin.set_quota_size gives it (``was`` is None for a new
quota), each rate change as set_quota_rate gives it (under ``"rates"``)
and, with ``paused``, what pause_queue/pause_quota or
resume_queue/resume_quota did.
"""

from AccessControl import getSecurityManager

from zasync import admin
from zasync.plone.restapi.base import STATUS_SERVICE, ServiceError, ZasyncService


class StatusPatch(ZasyncService):
    """See the module."""

    writes = True

    def reply(self):
        body = self.json_body()
        unknown = sorted(set(body) - {"quotas", "rates", "queue", "quota", "paused"})
        if unknown:
            raise ServiceError(
                400,
                f"unknown keys {', '.join(unknown)}: give 'quotas', 'rates' "
                f"and/or 'paused' (and 'queue', 'quota')",
            )
        quotas = body.get("quotas")
        rates = body.get("rates")
        paused = body.get("paused")
        quota = body.get("quota")
        if quota is not None and (paused is None or not isinstance(quota, str)):
            raise ServiceError(
                400,
                f"'quota' names the quota to pause or resume, with 'paused' "
                f"true or false, not {quota!r}",
            )
        if quotas is None and paused is None and rates is None:
            raise ServiceError(
                400,
                'give the quota sizes to set as {"quotas": {"<name>": <size>}}, '
                'rates as {"rates": {"<name>": {"limit": <n>, "per_seconds": '
                '<s>}}}, or {"paused": true} / {"paused": false}',
            )
        if rates is not None and (not isinstance(rates, dict) or not rates):
            raise ServiceError(
                400,
                'give the rates to set as {"rates": {"<name>": {"limit": <n>, '
                '"per_seconds": <s>} or null}}',
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
            if rates is not None:
                answer["rates"] = [
                    self._set_rate(name, rate, queue) for name, rate in rates.items()
                ]
            if paused is True:
                user = getSecurityManager().getUser()
                by = f"{user.getUserName()} (REST API)"
                if quota is None:
                    done = admin.pause_queue(self.queues(), queue, by=by)
                else:
                    done = admin.pause_quota(self.queues(), quota, queue, by=by)
                answer["paused"] = admin.for_json(done)
            elif paused is False:
                if quota is None:
                    answer["resumed"] = admin.resume_queue(self.queues(), queue)
                else:
                    answer["resumed"] = admin.resume_quota(self.queues(), quota, queue)
        except admin.AdminError as exc:
            raise ServiceError(400, str(exc)) from None
        return answer

    def _set_rate(self, name, rate, queue):
        if rate is None:
            return admin.set_quota_rate(self.queues(), name, None, queue=queue)
        if not isinstance(rate, dict) or set(rate) != {"limit", "per_seconds"}:
            raise ServiceError(
                400,
                f'the rate of quota {name!r} must be {{"limit": <n>, '
                f'"per_seconds": <s>}} or null, not {rate!r}',
            )
        per = rate["per_seconds"]
        if not isinstance(per, (int, float)) or isinstance(per, bool) or per <= 0:
            raise ServiceError(
                400, f"per_seconds of quota {name!r} must be seconds > 0, not {per!r}"
            )
        return admin.set_quota_rate(
            self.queues(), name, rate["limit"], per, queue=queue
        )
