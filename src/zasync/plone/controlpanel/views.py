"""The zasync control panel form (``@@zasync-controlpanel``, permission
"Manage portal").

A z3c.form EditForm in plone.app.registry's control panel layout, with two
groups of fields: *every site of this database* (the quotas of the
default queue, the default agent size, one field per dispatcher) and
*this site* (the public URL). The fields of the first group are made from
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

from zasync import admin
from zasync.plone.controlpanel import settings
from zasync.plone.interfaces import DEFAULT_QUOTA, IZasyncSettings
from zasync.registry import threads_text

#: Largest sizes the form accepts (the engine has no limit).
MAX_QUOTA_SIZE = 10000
MAX_AGENT_SIZE = 1000

QUOTA_PREFIX = "quota_"
DISPATCHER_PREFIX = "dispatcher_"

SOURCE_FIX = {
    "zope.conf": "threads in <product-config zasync> of its zope.conf",
    "command line": "--agent-size of its zasync worker command",
    "agent_size argument": "the agent_size argument of its zasync.start()",
}


def quota_field_name(name):
    return QUOTA_PREFIX + name.encode("utf-8").hex()


def quota_name(field_name):
    return bytes.fromhex(field_name[len(QUOTA_PREFIX) :]).decode("utf-8")


def dispatcher_field_name(uuid):
    return DISPATCHER_PREFIX + uuid.replace("-", "")


def cluster_fields(cluster):
    """z3c.form fields for the cluster-wide settings in ``cluster`` (see
    settings.current()) and the values they show."""
    made, values = [], {}
    for quota in cluster["quotas"]:
        name = quota["name"]
        what = (
            "Jobs queued with queueJob() and queueSerialJobs() count against "
            "it: 1 runs them one at a time, in the order they were queued."
            if name == DEFAULT_QUOTA
            else "Jobs naming this quota that may run at once."
        )
        made.append(
            schema.Int(
                __name__=quota_field_name(name),
                title=f"Quota '{name}': jobs running at once",
                description=(
                    f"{what} 0 pauses them. In the whole cluster: every site of "
                    f"this database, every worker. Now {quota['active']} running."
                ),
                min=0,
                max=MAX_QUOTA_SIZE,
            )
        )
        values[made[-1].__name__] = quota["size"]
    default = cluster["default_agent_size"]
    is_set = default["source"] != admin.FROM_BUILT_IN
    made.append(
        schema.Int(
            __name__="default_agent_size",
            title="Threads of each worker (default agent size)",
            description=(
                f"How many jobs each dispatcher runs at once, unless it has a "
                f"size of its own below, or its process sets one (zope.conf "
                f"threads, zasync worker --agent-size): those win and are "
                f"marked. Empty: {admin.DEFAULT_AGENT_SIZE}. Now "
                f"{threads_text(default['size'])} ({default['source']}); kept when "
                f"workers restart."
            ),
            required=False,
            min=0,
            max=MAX_AGENT_SIZE,
        )
    )
    values["default_agent_size"] = default["size"] if is_set else None
    display = []
    for entry in cluster["dispatchers"]:
        where = f"{entry['host']}:{entry['pid']}"
        state = "alive" if entry["alive"] else "not answering"
        name = dispatcher_field_name(entry["uuid"])
        title = f"Threads of dispatcher {entry['uuid']}"
        if entry["follows_settings"]:
            made.append(
                schema.Int(
                    __name__=name,
                    title=title,
                    description=(
                        f"{where}, {state}. Now {threads_text(entry['size'])} "
                        f"({entry['source']}). Empty: the default above."
                    ),
                    required=False,
                    min=0,
                    max=MAX_AGENT_SIZE,
                )
            )
            values[name] = entry["setting"]
        else:
            # Shown, not editable: its process decides, and says where.
            fix = SOURCE_FIX.get(entry["source"], entry["source"])
            made.append(schema.TextLine(__name__=name, title=title, required=False))
            values[name] = (
                f"{threads_text(entry['size'])}, from its {entry['source']}, which "
                f"wins over the settings here: change {fix} and restart it "
                f"({where}, {state})."
            )
            display.append(name)
    fields = field.Fields(*made)
    for name in display:
        fields[name].mode = DISPLAY_MODE
    return fields, values


class _Group(group.Group):
    def getContent(self):
        return self.parentForm.getContent()


class ClusterGroup(_Group):
    label = "Every site of this database"
    description = (
        "Kept with the job queues, shared by every Plone site of this database "
        "and by every worker: a change here applies to all of them at once, "
        "and shows in their control panels too."
    )


class SiteGroup(_Group):
    label = "This site"
    description = "Kept in this site's configuration registry."
    fields = field.Fields(IZasyncSettings)


class ControlPanelForm(group.GroupForm, form.EditForm):
    label = "Background jobs (zasync)"
    description = (
        "Quotas and worker threads apply to the whole cluster; the public URL "
        "to this site. 'zasync settings' shows the same from the command line."
    )
    enableCSRFProtection = True
    control_panel_view = "@@overview-controlpanel"

    def update(self):
        found = settings.current()
        cluster_fields_, values = cluster_fields(found["cluster"])
        self._values = dict(values, **found["site"])
        self._uuids = {
            dispatcher_field_name(entry["uuid"]): entry["uuid"]
            for entry in found["cluster"]["dispatchers"]
        }
        self.groups = (
            type("Cluster", (ClusterGroup,), {"fields": cluster_fields_}),
            SiteGroup,
        )
        super().update()

    def getContent(self):
        return self._values

    def updateActions(self):
        super().updateActions()
        self.actions["save"].addClass("btn btn-primary")
        self.actions["cancel"].addClass("btn btn-secondary")

    @button.buttonAndHandler("Save", name="save")
    def handle_save(self, action):
        data, errors = self.extractData()
        if errors:
            self.status = self.formErrorsMessage
            return
        quotas, dispatchers = {}, {}
        for name, value in data.items():
            if name.startswith(QUOTA_PREFIX):
                quotas[quota_name(name)] = value
            elif name.startswith(DISPATCHER_PREFIX):
                dispatchers[self._uuids[name]] = value
        try:
            done = settings.change(
                quotas=quotas,
                default_agent_size=data.get("default_agent_size"),
                dispatchers=dispatchers,
                public_url=data.get("public_url"),
            )
        except admin.AdminError as exc:
            # Something changed meanwhile (a dispatcher stopped, say):
            # nothing of this request is committed.
            transaction.doom()
            self.status = f"Nothing was saved: {exc}"
            return
        message = "Changes saved: " + "; ".join(done) if done else "No changes."
        IStatusMessage(self.request).addStatusMessage(message, "info")
        self.request.response.redirect(self.request.getURL())

    @button.buttonAndHandler("Cancel", name="cancel")
    def handle_cancel(self, action):
        IStatusMessage(self.request).addStatusMessage("Changes canceled.", "info")
        self.request.response.redirect(
            f"{getSite().absolute_url()}/{self.control_panel_view}"
        )


ControlPanelView = layout.wrap_form(ControlPanelForm, ControlPanelFormWrapper)
ControlPanelView.label = ControlPanelForm.label
