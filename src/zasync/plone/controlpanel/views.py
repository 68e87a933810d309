"""The zasync control panel form (``@@zasync-controlpanel``, permission
"Manage portal").

A z3c.form EditForm in plone.app.registry's control panel layout, with three
groups of fields: *every site of this database* (the quotas of the
default queue, the default agent size, one field per dispatcher), the
*retention* of each queue (whether it is pruned automatically, and for how
long or how many of its succeeded and failed jobs it keeps), and *this
site* (the public URL). The fields of the first group are made from
what the queues hold when the form is shown; a dispatcher whose process
sets its size (zope.conf, command line) is shown, not editable, with
where its size comes from. The form's content is the plain data of
settings.current(), and Save calls settings.change(): nothing here
touches the queues itself. Buttons check Plone's CSRF authenticator
(enableCSRFProtection) and the page is only for "Manage portal".
"""

import transaction
from plone.app.registry.browser.controlpanel import ControlPanelFormWrapper
from plone.z3cform import layout
from Products.statusmessages.interfaces import IStatusMessage
from z3c.form import button, field, form, group
from z3c.form.interfaces import DISPLAY_MODE
from zope import schema
from zope.component.hooks import getSite
from zope.i18n import translate
from zope.i18nmessageid import Message

from zasync import admin, retention
from zasync.plone.controlpanel import settings
from zasync.plone.i18n import _
from zasync.plone.interfaces import DEFAULT_QUOTA, IZasyncSettings
from zasync.registry import threads_text

#: Largest sizes the form accepts (the engine has no limit).
MAX_QUOTA_SIZE = 10000
MAX_AGENT_SIZE = 1000

QUOTA_PREFIX = "quota_"
RATE_PREFIX = "rate_"
DISPATCHER_PREFIX = "dispatcher_"

SOURCE_FIX = {
    "zope.conf": _("threads in <product-config zasync> of its zope.conf"),
    "command line": _("--agent-size of its zasync worker command"),
    "agent_size argument": _("the agent_size argument of its zasync.start()"),
}

#: The interval fields: (field, title, what it does).
INTERVAL_FIELDS = (
    (
        "poll_interval",
        _("Poll interval (seconds)"),
        _(
            "How long an idle worker waits before it looks for work it was "
            "not woken for (jobs queued in other processes without a "
            "wake-up, jobs becoming due)."
        ),
    ),
    (
        "ping_interval",
        _("Heartbeat interval (seconds)"),
        _("How often each worker tells the others it is alive."),
    ),
    (
        "death_interval",
        _("Death interval (seconds)"),
        _(
            "How old a worker's last heartbeat may be before the others "
            "declare it dead and run its jobs again; longer than the "
            "heartbeat interval."
        ),
    ),
)
INTERVAL_PREFIX = "interval_"


RETENTION_PREFIX = "retention_"


def retention_field_name(queue, field):
    return f"{RETENTION_PREFIX}{queue.encode('utf-8').hex()}_{field}"


def retention_field(field_name):
    """(queue name, form field) of a retention field's name."""
    queue_hex, field = field_name[len(RETENTION_PREFIX) :].split("_", 1)
    return bytes.fromhex(queue_hex).decode("utf-8"), field


def retention_texts(entry):
    """``{form field: (title, description)}`` of one queue's retention
    fields (``entry``: one of settings.current()["retention"])."""
    mapping = {
        "queue": entry["label"],
        "now": admin.describe_retention(entry["in_force"]),
    }
    return {
        "enabled": (
            _(
                "retention_enabled_title",
                default="Queue '${queue}': prune completed jobs automatically",
                mapping=mapping,
            ),
            _(
                "retention_enabled_description",
                default=(
                    "One worker at a time removes old completed jobs, a small "
                    "batch per transaction; pack the database to give the "
                    "space back. Now: ${now}."
                ),
                mapping=mapping,
            ),
        ),
        "succeeded_days": (
            _(
                "retention_succeeded_days",
                default="Queue '${queue}': keep succeeded jobs (days)",
                mapping=mapping,
            ),
            _(
                "retention_days_description",
                default="Empty: ${days} days. 0: no age limit.",
                mapping={"days": retention.DEFAULT_SUCCEEDED_AGE.days},
            ),
        ),
        "succeeded_count": (
            _(
                "retention_succeeded_count",
                default="Queue '${queue}': keep at most this many succeeded jobs",
                mapping=mapping,
            ),
            _("Empty: no count limit."),
        ),
        "failed_days": (
            _(
                "retention_failed_days",
                default="Queue '${queue}': keep failed jobs (days)",
                mapping=mapping,
            ),
            _(
                "retention_days_description",
                default="Empty: ${days} days. 0: no age limit.",
                mapping={"days": retention.DEFAULT_FAILED_AGE.days},
            ),
        ),
        "failed_count": (
            _(
                "retention_failed_count",
                default="Queue '${queue}': keep at most this many failed jobs",
                mapping=mapping,
            ),
            _("Empty: no count limit."),
        ),
    }


def _retention_fields(queues, made, values):
    for entry in queues:
        for form_field, (title, description) in retention_texts(entry).items():
            name = retention_field_name(entry["name"], form_field)
            if form_field == "enabled":
                made.append(
                    schema.Bool(
                        __name__=name,
                        title=title,
                        description=description,
                        required=False,
                    )
                )
            elif form_field.endswith("_days"):
                made.append(
                    schema.Float(
                        __name__=name,
                        title=title,
                        description=description,
                        required=False,
                        min=0.0,
                    )
                )
            else:
                made.append(
                    schema.Int(
                        __name__=name,
                        title=title,
                        description=description,
                        required=False,
                        min=1,
                    )
                )
            values[name] = entry["form"][form_field]


def quota_field_name(name):
    return QUOTA_PREFIX + name.encode("utf-8").hex()


def quota_name(field_name, prefix=QUOTA_PREFIX):
    return bytes.fromhex(field_name[len(prefix) :]).decode("utf-8")


def rate_field_name(name):
    return RATE_PREFIX + name.encode("utf-8").hex()


def rate_text(rate):
    """``100/1h``: a quota's rate as the form shows it, None for none."""
    if rate is None:
        return None
    return f"{rate['limit']}/{admin.format_period(rate['per_seconds'])}"


def dispatcher_field_name(uuid):
    return DISPATCHER_PREFIX + uuid.replace("-", "")


def _intervals_text(intervals):
    """``poll 1 s (built-in default), ping 30 s (zope.conf), ...``."""
    return ", ".join(
        f"{field.split('_')[0]} {entry['seconds']:g} s ({entry['source'] or '?'})"
        for field, entry in intervals.items()
    )


def rate_field_texts(quota):
    """The title and description of a quota's rate field (also in
    ``@controlpanels/zasync``)."""
    used = quota["rate"]["used"] if quota.get("rate") else 0
    title = _(
        "quota_rate_title",
        default="Quota '${name}': rate (starts per period)",
        mapping={"name": quota["name"]},
    )
    description = _(
        "quota_rate_description",
        default=(
            "At most so many jobs naming it start per period, in the whole "
            "cluster: for instance 100/1h (the period like 30s, 1m, 2h, 1d); "
            "the others wait, holding no thread. Empty: no rate. Now ${used} "
            "started in the period."
        ),
        mapping={"used": used},
    )
    return title, description


def _quota_fields(cluster, made, values):
    for quota in cluster["quotas"]:
        name = quota["name"]
        what = (
            _(
                "Jobs queued with queueJob() and queueSerialJobs() count "
                "against it: 1 runs them one at a time, in the order they "
                "were queued."
            )
            if name == DEFAULT_QUOTA
            else _("Jobs naming this quota that may run at once.")
        )
        made.append(
            schema.Int(
                __name__=quota_field_name(name),
                title=_(
                    "quota_title",
                    default="Quota '${name}': jobs running at once",
                    mapping={"name": name},
                ),
                description=_(
                    "quota_description",
                    default=(
                        "${what} 0 pauses them. In the whole cluster: every "
                        "site of this database, every worker. Now ${active} "
                        "running."
                    ),
                    mapping={"what": what, "active": quota["active"]},
                ),
                min=0,
                max=MAX_QUOTA_SIZE,
            )
        )
        values[made[-1].__name__] = quota["size"]
        title, description = rate_field_texts(quota)
        made.append(
            schema.TextLine(
                __name__=rate_field_name(name),
                title=title,
                description=description,
                required=False,
            )
        )
        values[made[-1].__name__] = rate_text(quota.get("rate"))


def _interval_fields(intervals, made, values):
    for field_name, title, what in INTERVAL_FIELDS:
        entry = intervals[field_name]
        made.append(
            schema.Float(
                __name__=INTERVAL_PREFIX + field_name,
                title=title,
                description=_(
                    "interval_description",
                    default=(
                        "${what} Empty: the built-in ${default} s. A worker "
                        "whose zope.conf or command line sets it keeps its "
                        "own (marked below); the others take a change up at "
                        "once."
                    ),
                    mapping={"what": what, "default": f"{entry['default']:g}"},
                ),
                required=False,
                min=0.001,
            )
        )
        values[made[-1].__name__] = entry["setting"]


def _dispatcher_fields(cluster, made, values, display):
    for entry in cluster["dispatchers"]:
        mapping = {
            "uuid": entry["uuid"],
            "where": f"{entry['host']}:{entry['pid']}",
            "state": _("alive") if entry["alive"] else _("not answering"),
            "threads": threads_text(entry["size"]),
            "source": entry["source"],
            "intervals": _intervals_text(entry.get("intervals") or {}),
        }
        name = dispatcher_field_name(entry["uuid"])
        title = _(
            "dispatcher_title", default="Threads of dispatcher ${uuid}", mapping=mapping
        )
        if entry["follows_settings"]:
            made.append(
                schema.Int(
                    __name__=name,
                    title=title,
                    description=_(
                        "dispatcher_description",
                        default=(
                            "${where}, ${state}. Now ${threads} (${source}). "
                            "Empty: the default above. Intervals: ${intervals}."
                        ),
                        mapping=mapping,
                    ),
                    required=False,
                    min=0,
                    max=MAX_AGENT_SIZE,
                )
            )
            values[name] = entry["setting"]
        else:
            # Shown, not editable: its process decides, and says where.
            mapping["fix"] = SOURCE_FIX.get(entry["source"], entry["source"])
            made.append(schema.TextLine(__name__=name, title=title, required=False))
            values[name] = _(
                "dispatcher_fixed",
                default=(
                    "${threads}, from its ${source}, which wins over the "
                    "settings here: change ${fix} and restart it (${where}, "
                    "${state}). Intervals: ${intervals}."
                ),
                mapping=mapping,
            )
            display.append(name)


def cluster_fields(cluster, intervals):
    """z3c.form fields for the cluster-wide settings in ``cluster`` and
    ``intervals`` (see settings.current()) and the values they show."""
    made, values, display = [], {}, []
    _quota_fields(cluster, made, values)
    default = cluster["default_agent_size"]
    is_set = default["source"] != admin.FROM_BUILT_IN
    made.append(
        schema.Int(
            __name__="default_agent_size",
            title=_("Threads of each worker (default agent size)"),
            description=_(
                "default_agent_size_description",
                default=(
                    "How many jobs each dispatcher runs at once, unless it has "
                    "a size of its own below, or its process sets one "
                    "(zope.conf threads, zasync worker --agent-size): those "
                    "win and are marked. Empty: ${default}. Now ${threads} "
                    "(${source}); kept when workers restart."
                ),
                mapping={
                    "default": admin.DEFAULT_AGENT_SIZE,
                    "threads": threads_text(default["size"]),
                    "source": default["source"],
                },
            ),
            required=False,
            min=0,
            max=MAX_AGENT_SIZE,
        )
    )
    values["default_agent_size"] = default["size"] if is_set else None
    _interval_fields(intervals, made, values)
    _dispatcher_fields(cluster, made, values, display)
    fields = field.Fields(*made)
    for name in display:
        fields[name].mode = DISPLAY_MODE
    return fields, values


class _Group(group.Group):
    def getContent(self):
        return self.parentForm.getContent()


class ClusterGroup(_Group):
    label = _("Every site of this database")
    description = _(
        "Kept with the job queues, shared by every Plone site of this "
        "database and by every worker: a change here applies to all of them "
        "at once, and shows in their control panels too."
    )


class RetentionGroup(_Group):
    label = _("Retention of completed jobs")
    description = _(
        "How long each queue keeps its completed jobs, for the whole "
        "cluster; 'zasync retention show' shows the same."
    )


class SiteGroup(_Group):
    label = _("This site")
    description = _("Kept in this site's configuration registry.")
    fields = field.Fields(IZasyncSettings)


class ControlPanelForm(group.GroupForm, form.EditForm):
    label = _("Background jobs (zasync)")
    description = _(
        "Quotas, worker threads and intervals apply to the whole cluster; "
        "the public URL to this site. 'zasync settings' shows the same from "
        "the command line."
    )
    enableCSRFProtection = True
    control_panel_view = "@@overview-controlpanel"

    def update(self):
        found = settings.current()
        cluster_fields_, values = cluster_fields(found["cluster"], found["intervals"])
        made = []
        _retention_fields(found["retention"], made, values)
        # Shown as they are, not through a widget that would translate them.
        for name, value in values.items():
            if isinstance(value, Message):
                values[name] = translate(value, context=self.request)
        self._values = dict(values, **found["site"])
        self._uuids = {
            dispatcher_field_name(entry["uuid"]): entry["uuid"]
            for entry in found["cluster"]["dispatchers"]
        }
        self.groups = (
            type("Cluster", (ClusterGroup,), {"fields": cluster_fields_}),
            type("Retention", (RetentionGroup,), {"fields": field.Fields(*made)}),
            SiteGroup,
        )
        super().update()

    def getContent(self):
        return self._values

    def updateActions(self):
        super().updateActions()
        self.actions["save"].addClass("btn btn-primary")
        self.actions["cancel"].addClass("btn btn-secondary")

    @button.buttonAndHandler(_("Save"), name="save")
    def handle_save(self, action):
        data, errors = self.extractData()
        if errors:
            self.status = self.formErrorsMessage
            return
        quotas, rates, dispatchers, intervals, kept = {}, {}, {}, {}, {}
        for name, value in data.items():
            if name.startswith(RETENTION_PREFIX):
                queue, field_name = retention_field(name)
                kept.setdefault(queue, {})[field_name] = (
                    bool(value) if field_name == "enabled" else value
                )
            elif name.startswith(QUOTA_PREFIX):
                quotas[quota_name(name)] = value
            elif name.startswith(RATE_PREFIX):
                rates[quota_name(name, RATE_PREFIX)] = value
            elif name.startswith(DISPATCHER_PREFIX):
                dispatchers[self._uuids[name]] = value
            elif name.startswith(INTERVAL_PREFIX):
                intervals[name[len(INTERVAL_PREFIX) :]] = value
        try:
            done = settings.change(
                quotas=quotas,
                rates=rates,
                default_agent_size=data.get("default_agent_size"),
                dispatchers=dispatchers,
                public_url=data.get("public_url"),
                intervals=intervals,
                retention=kept,
            )
        except admin.AdminError as exc:
            # Something changed meanwhile (a dispatcher stopped, say):
            # nothing of this request is committed.
            transaction.doom()
            self.status = _(
                "nothing_saved",
                default="Nothing was saved: ${error}",
                mapping={"error": str(exc)},
            )
            return
        message = (
            _(
                "changes_saved",
                default="Changes saved: ${changes}",
                mapping={"changes": "; ".join(done)},
            )
            if done
            else _("No changes.")
        )
        IStatusMessage(self.request).addStatusMessage(message, "info")
        self.request.response.redirect(self.request.getURL())

    @button.buttonAndHandler(_("Cancel"), name="cancel")
    def handle_cancel(self, action):
        IStatusMessage(self.request).addStatusMessage(_("Changes canceled."), "info")
        self.request.response.redirect(
            f"{getSite().absolute_url()}/{self.control_panel_view}"
        )


ControlPanelView = layout.wrap_form(ControlPanelForm, ControlPanelFormWrapper)
ControlPanelView.label = ControlPanelForm.label
