"""How the Plone pages show a job's status (the words of
zasync.admin.job_summary: waiting, pending, assigned, active, callbacks, succeeded,
failed, set-aside; and completed for succeeded or failed): a
Bootstrap badge class and a message id."""

from zasync.plone.i18n import _

BADGES = {
    "waiting": "text-bg-dark",
    "pending": "text-bg-secondary",
    "assigned": "text-bg-info",
    "active": "text-bg-primary",
    "callbacks": "text-bg-info",
    "succeeded": "text-bg-success",
    "failed": "text-bg-danger",
    "set-aside": "text-bg-warning",
    "completed": "text-bg-light",
}

LABELS = {
    "waiting": _("status_waiting", default="waiting"),
    "pending": _("status_pending", default="pending"),
    "assigned": _("status_assigned", default="assigned"),
    "active": _("status_active", default="active"),
    "callbacks": _("status_callbacks", default="callbacks"),
    "completed": _("status_completed", default="completed"),
    "succeeded": _("status_succeeded", default="succeeded"),
    "failed": _("status_failed", default="failed"),
    "set-aside": _("status_set_aside", default="set aside"),
}


def badge(status):
    """The badge class for ``status``."""
    return BADGES.get(status, "text-bg-secondary")


def label(status):
    """The message id for ``status`` (the status itself if unknown)."""
    return LABELS.get(status, status)
