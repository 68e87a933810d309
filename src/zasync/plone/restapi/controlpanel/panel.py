"""The ``zasync`` control panel of ``@controlpanels``.

GET gives a JSON schema (with fieldsets, as Volto renders control panels)
and the values in force; PATCH changes them through
``settings.change()``. The fields, flat as Volto edits them:

- ``quota_<name>``: the size of each quota of the default queue (every
  site of the database, every worker);
- ``rate_<name>``: the rate of each of those quotas as text, ``100/1h``
  (starts per period; null: no rate);
- ``default_agent_size``: the threads of each worker unless it has its own
  size (null: the built-in default);
- ``poll_interval``, ``ping_interval``, ``death_interval``: the cluster's
  intervals in seconds (null: the built-in default), for dispatchers
  whose process sets none of its own;
- ``dispatcher_<uuid>``: the threads of one dispatcher (null: the
  default); read-only (``"mode": "display"``) for a dispatcher whose
  process sets its own size;
- ``retention_<field>_<queue>`` for each queue (``default`` for the
  default one) and each of ``enabled`` (a boolean), ``succeeded_days``,
  ``failed_days`` (days to keep those jobs; 0: no age limit; null: the
  built-in default), ``succeeded_count``, ``failed_count`` (how many to
  keep at most; null: no count limit): the queue's retention, cluster-wide;
- ``public_url``: this site's public URL (its registry; null: none).

Both need "Manage portal", like the form: plone.restapi's
``@controlpanels`` services check only "Plone Site Setup: Overview".
"""

import transaction
from AccessControl import getSecurityManager
from plone.base.interfaces import IPloneSiteRoot
from plone.restapi.controlpanels import RegistryConfigletPanel
from plone.restapi.controlpanels.interfaces import IControlpanel
from plone.restapi.deserializer import json_body
from plone.restapi.interfaces import IDeserializeFromJson, ISerializeToJson
from Products.CMFCore.permissions import ManagePortal
from zExceptions import BadRequest, Unauthorized
from zope.component import adapter
from zope.i18n import translate
from zope.interface import implementer
from zope.schema import ValidationError

from zasync import admin
from zasync.config import INTERVALS
from zasync.plone.controlpanel import settings
from zasync.plone.controlpanel.views import (
    INTERVAL_FIELDS,
    MAX_AGENT_SIZE,
    MAX_QUOTA_SIZE,
    rate_field_texts,
    rate_text,
    retention_texts,
)
from zasync.plone.i18n import _
from zasync.plone.interfaces import IZasyncLayer, IZasyncSettings
from zasync.registry import threads_text

NAME = "zasync"
QUOTA = "quota_"
RATE = "rate_"
DISPATCHER = "dispatcher_"
RETENTION = "retention_"


class IZasyncControlpanel(IControlpanel):
    """zasync's control panel in ``@controlpanels``."""


def _check_manage_portal(context):
    if not getSecurityManager().checkPermission(ManagePortal, context):
        raise Unauthorized("the zasync control panel needs 'Manage portal'")


@implementer(IZasyncControlpanel)
@adapter(IPloneSiteRoot, IZasyncLayer)
class ZasyncControlpanel(RegistryConfigletPanel):
    """See the module; listed where the configlet ``zasync`` is."""

    configlet_id = "zasync"
    configlet_category_id = "Products"
    schema = None  # not one registry schema: see the serializer
    # Where the configlet is found, its title and group's title win.
    title = _("Background jobs (zasync)")
    group = _("Add-on Configuration")

    def get_searchable_text(self):
        words = (
            self.title,
            self.group,
            _("quota"),
            _("threads"),
            _("agent size"),
            _("dispatcher"),
            IZasyncSettings["public_url"].title,
        )
        return [translate(word, context=self.request) for word in words]


def _integer(title, description, minimum, maximum):
    # Volto picks a widget by "type"; an empty field (null) is allowed
    # unless the field is in "required", as plone.restapi gives Int fields.
    return {
        "type": "integer",
        "title": title,
        "description": description,
        "minimum": minimum,
        "maximum": maximum,
    }


def schema_and_data(found, request):
    """The JSON schema (titles and descriptions translated for
    ``request``) and the values of ``settings.current()``'s data."""

    def text(message, **mapping):
        return translate(_(message, mapping=mapping), context=request)

    cluster = found["cluster"]
    properties, data = {}, {}
    cluster_fields, required = [], []
    for quota in cluster["quotas"]:
        key = QUOTA + quota["name"]
        properties[key] = _integer(
            text("Quota '${name}': jobs running at once", name=quota["name"]),
            text(
                "0 pauses them. In the whole cluster: every site of this "
                "database, every worker. Now ${active} running.",
                active=quota["active"],
            ),
            0,
            MAX_QUOTA_SIZE,
        )
        data[key] = quota["size"]
        cluster_fields.append(key)
        required.append(key)
        rate_key = RATE + quota["name"]
        title, description = rate_field_texts(quota)
        properties[rate_key] = {
            "type": "string",
            "title": translate(title, context=request),
            "description": translate(description, context=request),
        }
        data[rate_key] = rate_text(quota.get("rate"))
        cluster_fields.append(rate_key)
    default = cluster["default_agent_size"]
    properties["default_agent_size"] = _integer(
        text("Threads of each worker (default agent size)"),
        text(
            "How many jobs each worker runs at once, unless it has a size of "
            "its own, or its process sets one. Empty: ${built_in}. Now "
            "${threads} (${source}).",
            built_in=admin.DEFAULT_AGENT_SIZE,
            threads=threads_text(default["size"]),
            source=default["source"],
        ),
        0,
        MAX_AGENT_SIZE,
    )
    is_set = default["source"] != admin.FROM_BUILT_IN
    data["default_agent_size"] = default["size"] if is_set else None
    cluster_fields.append("default_agent_size")
    for key, title, what in INTERVAL_FIELDS:
        entry = found["intervals"][key]
        properties[key] = {
            "type": "number",
            "title": translate(title, context=request),
            "description": text(
                "${what} Empty: the built-in ${default} s.",
                what=translate(what, context=request),
                default=f"{entry['default']:g}",
            ),
            "exclusiveMinimum": 0,
        }
        data[key] = entry["setting"]
        cluster_fields.append(key)
    for entry in cluster["dispatchers"]:
        key = DISPATCHER + entry["uuid"]
        where = f"{entry['host']}:{entry['pid']}"
        state = text("alive") if entry["alive"] else text("not answering")
        title = text("Threads of dispatcher ${uuid}", uuid=entry["uuid"])
        if entry["follows_settings"]:
            properties[key] = _integer(
                title,
                text(
                    "${where}, ${state}. Now ${threads} (${source}). Empty: "
                    "the default.",
                    where=where,
                    state=state,
                    threads=threads_text(entry["size"]),
                    source=entry["source"],
                ),
                0,
                MAX_AGENT_SIZE,
            )
            data[key] = entry["setting"]
        else:
            properties[key] = {
                "type": "string",
                "title": title,
                "description": text(
                    "${where}, ${state}: its process sets its size (${source}), "
                    "which wins over the settings here.",
                    where=where,
                    state=state,
                    source=entry["source"],
                ),
                "readonly": True,
                "mode": "display",
            }
            data[key] = text(
                "${threads}, from its ${source}",
                threads=threads_text(entry["size"]),
                source=entry["source"],
            )
        cluster_fields.append(key)
    retention_fields = []
    types = {"enabled": "boolean", "days": "number", "count": "integer"}
    for entry in found["retention"]:
        for name, (title, description) in retention_texts(entry).items():
            key = f"{RETENTION}{name}_{entry['label']}"
            properties[key] = {
                "type": types[name.rsplit("_", 1)[-1]],
                "title": translate(title, context=request),
                "description": translate(description, context=request),
            }
            if name != "enabled":
                properties[key]["minimum"] = 0 if name.endswith("_days") else 1
            data[key] = entry["form"][name]
            retention_fields.append(key)
    field = IZasyncSettings["public_url"]
    properties["public_url"] = {
        "type": "string",
        "title": translate(field.title, context=request),
        "description": translate(field.description, context=request),
        "widget": "url",
    }
    data["public_url"] = found["site"]["public_url"]
    fieldsets = [
        {
            "id": "cluster",
            "title": text("Every site of this database"),
            "fields": cluster_fields,
        },
        {
            "id": "retention",
            "title": text("Retention of completed jobs"),
            "fields": retention_fields,
        },
        {"id": "site", "title": text("This site"), "fields": ["public_url"]},
    ]
    schema = {
        "type": "object",
        "properties": properties,
        "required": required,
        "fieldsets": fieldsets,
    }
    return schema, data


@implementer(ISerializeToJson)
@adapter(IZasyncControlpanel)
class ZasyncControlpanelSerializeToJson:
    """``GET @controlpanels/zasync``: ``@id``, ``title``, ``group``,
    ``schema`` and ``data``."""

    def __init__(self, controlpanel):
        self.controlpanel = controlpanel

    def __call__(self):
        context = self.controlpanel.context
        _check_manage_portal(context)
        request = self.controlpanel.request
        schema, data = schema_and_data(settings.current(), request)
        return {
            "@id": f"{context.absolute_url()}/@controlpanels/{NAME}",
            "title": translate(self.controlpanel.title, context=request),
            "group": translate(self.controlpanel.group, context=request),
            "schema": schema,
            "data": data,
        }


def _size(key, value, maximum, nullable):
    if value is None and nullable:
        return None
    if (
        not isinstance(value, int)
        or isinstance(value, bool)
        or not (0 <= value <= maximum)
    ):
        empty = " or null" if nullable else ""
        raise BadRequest(
            f"{key}: give a whole number from 0 to {maximum}{empty}, not {value!r}"
        )
    return value


@implementer(IDeserializeFromJson)
@adapter(IZasyncControlpanel)
class ZasyncControlpanelDeserializeFromJson:
    """``PATCH @controlpanels/zasync``: the fields given (see the module)
    are changed, the others left alone; any bad value is 400 and nothing
    is changed."""

    def __init__(self, controlpanel):
        self.controlpanel = controlpanel

    def __call__(self):
        context = self.controlpanel.context
        _check_manage_portal(context)
        data = json_body(self.controlpanel.request)
        found = settings.current()
        dispatchers = {d["uuid"]: d for d in found["cluster"]["dispatchers"]}
        changes = {"quotas": {}, "dispatchers": {}}
        for key, value in data.items():
            if key.startswith(QUOTA) and len(key) > len(QUOTA):
                changes["quotas"][key[len(QUOTA) :]] = _size(
                    key, value, MAX_QUOTA_SIZE, nullable=False
                )
            elif key.startswith(RATE) and len(key) > len(RATE):
                if value is not None and not isinstance(value, str):
                    raise BadRequest(
                        f"{key}: give a rate as text, like 100/1h, or null, "
                        f"not {value!r}"
                    )
                changes.setdefault("rates", {})[key[len(RATE) :]] = value
            elif key.startswith(DISPATCHER) and key[len(DISPATCHER) :] in dispatchers:
                entry = dispatchers[key[len(DISPATCHER) :]]
                if not entry["follows_settings"]:
                    raise BadRequest(
                        f"{key}: its process sets its size ({entry['source']}); "
                        f"change it there and restart it"
                    )
                changes["dispatchers"][entry["uuid"]] = _size(
                    key, value, MAX_AGENT_SIZE, nullable=True
                )
            elif key == "default_agent_size":
                changes[key] = _size(key, value, MAX_AGENT_SIZE, nullable=True)
            elif key in INTERVALS:
                changes.setdefault("intervals", {})[key] = _seconds(key, value)
            elif key.startswith(RETENTION) and _retention_key(key, found):
                queue, name = _retention_key(key, found)
                changes.setdefault("retention", {}).setdefault(queue, {})[name] = (
                    _retention_value(key, name, value)
                )
            elif key == "public_url":
                changes[key] = _public_url(value)
            else:
                raise BadRequest(
                    f"{key}: not a setting of this control panel; GET "
                    f"@controlpanels/{NAME} lists them"
                )
        try:
            settings.change(**changes)
        except admin.AdminError as exc:
            transaction.doom()
            raise BadRequest(f"nothing was saved: {exc}") from None


def _retention_key(key, found):
    """(queue name, form field) that a ``retention_<field>_<queue>`` key
    names, or None."""
    labels = {entry["label"]: entry["name"] for entry in found["retention"]}
    for name in settings.RETENTION_FORM_FIELDS:
        prefix = f"{RETENTION}{name}_"
        if key.startswith(prefix) and key[len(prefix) :] in labels:
            return labels[key[len(prefix) :]], name
    return None


def _retention_value(key, name, value):
    if name == "enabled":
        if not isinstance(value, bool):
            raise BadRequest(f"{key}: give true or false, not {value!r}")
        return value
    if value is None:
        return None
    if name.endswith("_days"):
        if not isinstance(value, int | float) or isinstance(value, bool) or value < 0:
            raise BadRequest(
                f"{key}: give a number of days >= 0 (0: no age limit) or null, "
                f"not {value!r}"
            )
        return float(value)
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise BadRequest(f"{key}: give a whole number >= 1 or null, not {value!r}")
    return value


def _seconds(key, value):
    if value is None:
        return None
    if not isinstance(value, int | float) or isinstance(value, bool) or value <= 0:
        raise BadRequest(f"{key}: give a number of seconds > 0 or null, not {value!r}")
    return float(value)


def _public_url(value):
    if value in (None, ""):
        return None
    field = IZasyncSettings["public_url"]
    try:
        field.validate(value)
    except ValidationError as exc:
        raise BadRequest(f"public_url: {exc.doc()} ({value!r})") from None
    return value
