"""Jobs that change content, for the catalog tests (a worker imports them)."""

import datetime

from plone.app.textfield.value import RichTextValue
from zope.event import notify
from zope.lifecycleevent import ObjectModifiedEvent

from plone import api


def create(folder, id, title, text=None, type="Document"):
    doc = api.content.create(container=folder, type=type, id=id, title=title)
    if text is not None:
        doc.text = RichTextValue(text, "text/html", "text/x-html-safe")
        notify(ObjectModifiedEvent(doc))
    return "/".join(doc.getPhysicalPath())


def create_and_transition(folder, id, transition):
    doc = api.content.create(container=folder, type="Document", id=id, title=id)
    api.content.transition(obj=doc, transition=transition)
    return api.content.get_state(doc)


def transition(obj, name):
    api.content.transition(obj=obj, transition=name)
    return api.content.get_state(obj)


def edit(doc, title, text):
    doc.title = title
    doc.text = RichTextValue(text, "text/html", "text/x-html-safe")
    notify(ObjectModifiedEvent(doc))
    return doc.title


def move(obj, target):
    return "/".join(api.content.move(source=obj, target=target).getPhysicalPath())


def rename(obj, new_id):
    return "/".join(api.content.rename(obj=obj, new_id=new_id).getPhysicalPath())


def delete(obj):
    api.content.delete(obj=obj, check_linkintegrity=False)


def link_to(folder, id, target):
    """A document whose text links to ``target`` by UID."""
    html = f'<p><a href="resolveuid/{api.content.get_uuid(target)}">see</a></p>'
    return create(folder, id, f"links to {target.getId()}", html)


def relate(source, target):
    api.relation.create(source=source, target=target, relationship="relatedItems")


def create_event(folder, id, start):
    event = api.content.create(
        container=folder,
        type="Event",
        id=id,
        title=id,
        start=start,
        end=start + datetime.timedelta(hours=2),
    )
    return "/".join(event.getPhysicalPath())


def transition_in_steps(site, uids, name, every):
    """Transition the documents of ``uids`` in steps (zasync.steps),
    noting as whom and in which site each was done."""
    from zasync import steps

    seen = []

    def transition_one(uid):
        doc = api.content.get(UID=uid)
        api.content.transition(obj=doc, transition=name)
        seen.append((api.user.get_current().getId(), api.portal.get().getId()))

    final = steps.run(uids, transition_one, every=every)
    return final["done"], sorted(set(seen))
