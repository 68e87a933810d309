"""The dashboard's recurring jobs page, ``@@zasync-jobs/recurring``: each
definition with its schedule, next tick, last run and its status; POST
(with plone.protect's authenticator) pauses, resumes or runs one now. The
view's permission ("zasync: Manage jobs") covers it; see views.py."""

from Products.Five.browser.pagetemplatefile import ViewPageTemplateFile

from zasync import admin
from zasync.admin import AdminError
from zasync.plone.i18n import _

#: The page's buttons: form value -> the admin function.
RECURRING_ACTIONS = {
    "pause": admin.pause_recurring,
    "resume": admin.resume_recurring,
    "run": admin.run_recurring,
}


class RecurringPage:
    """The recurring jobs page, mixed into the dashboard's view."""

    recurring_template = ViewPageTemplateFile("templates/recurring.pt")

    def recurring(self):
        return admin.recurring_report(self.queues)

    def recurring_page(self):
        if self.request.method == "POST":
            return self.recurring_action()
        return self.recurring_template()

    def recurring_action(self):
        self.require_post()
        form = self.request.form
        action = form.get("action", "")
        name = form.get("name", "")
        work = RECURRING_ACTIONS.get(action)
        if work is None:
            self.say(
                _(
                    "error_recurring_action",
                    default="Unknown action '${action}': use the Pause, Resume "
                    "or Run now button of a recurring job.",
                    mapping={"action": action},
                ),
                "error",
            )
            return self.redirect(self.url("recurring"))
        try:
            done = work(self.queues, name)
        except AdminError as exc:
            self.say(
                _(
                    "error_recurring",
                    default="Recurring job '${name}': not done: ${error}",
                    mapping={"name": name, "error": str(exc)},
                ),
                "error",
            )
            return self.redirect(self.url("recurring"))
        if action == "pause":
            message = _(
                "msg_recurring_paused",
                default="Recurring job '${name}' paused: its ticks queue no job "
                "until it is resumed.",
                mapping={"name": name},
            )
        elif action == "resume":
            message = _(
                "msg_recurring_resumed",
                default="Recurring job '${name}' resumed; next run ${next} UTC.",
                mapping={"name": name, "next": self.when(done["next_tick"])},
            )
        else:
            message = _(
                "msg_recurring_run",
                default="Recurring job '${name}': job ${id} queued now.",
                mapping={"name": name, "id": done["job_id"]},
            )
        self.say(message)
        return self.redirect(self.url("recurring"))
