"""The catalog, and what else Plone does at commit, see what a job did.

Plone indexes at commit (Products.CMFCore.indexing's queue): a job must
commit while its site, user and request are still set, or the catalog
misses what it changed (an empty review_state, stale titles and paths).
Each test runs a real job through the dispatcher and then asks the
catalog, as a view would.
"""

import datetime

import catalog_jobs
import pytest
import transaction
from plone.app.testing import SITE_OWNER_NAME, login
from zope.component import getUtility

from plone import api
from zasync.plone.interfaces import IAsyncService
from zasync.plone.testing import wait_for_result


@pytest.fixture
def service():
    return getUtility(IAsyncService)


def run(service, func, context, *args):
    """Queue func(context, *args), run it, and see its outcome."""
    job = service.queueJob(func, context, *args)
    transaction.commit()
    result = wait_for_result(job)
    transaction.begin()  # see what the job committed
    assert not job.failed, result.getTraceback()
    return result


def found(**query):
    catalog = api.portal.get_tool("portal_catalog")
    return catalog.unrestrictedSearchResults(**query)


def paths(**query):
    return sorted(brain.getPath() for brain in found(**query))


def as_manager(portal):
    login(portal.aq_parent, SITE_OWNER_NAME)


def test_a_created_and_published_document_is_found_by_its_state(portal, service):
    as_manager(portal)
    state = run(service, catalog_jobs.create_and_transition, portal, "news", "publish")
    assert state == "published"
    assert paths(review_state="published", portal_type="Document") == ["/plone/news"]
    (brain,) = found(path="/plone/news")
    # folder_contents' Review state column shows the metadata column.
    assert brain.review_state == "published"


def test_a_document_created_by_a_member_is_indexed_with_its_text(
    portal, folder, service
):
    run(
        service,
        catalog_jobs.create,
        folder,
        "report",
        "Quarterly report",
        "<p>Figures of the zanzibar office</p>",
    )
    (brain,) = found(path="/plone/member-folder/report")
    assert brain.Title == "Quarterly report"
    assert brain.review_state == "private"
    assert brain.Creator == "test_user_1_"
    assert paths(SearchableText="zanzibar") == ["/plone/member-folder/report"]
    assert paths(Title="Quarterly") == ["/plone/member-folder/report"]
    # Security is indexed for the user who owns it, not for Anonymous.
    assert paths(allowedRolesAndUsers=["user:test_user_1_"], Title="Quarterly") == [
        "/plone/member-folder/report"
    ]
    assert paths(allowedRolesAndUsers=["Anonymous"], Title="Quarterly") == []


def test_an_edit_reindexes_title_and_text(portal, folder, service):
    run(service, catalog_jobs.create, folder, "doc", "Old title", "<p>old words</p>")
    doc = folder["doc"]
    run(service, catalog_jobs.edit, doc, "New title", "<p>quokka sightings</p>")
    (brain,) = found(path="/plone/member-folder/doc")
    assert brain.Title == "New title"
    assert paths(SearchableText="quokka") == ["/plone/member-folder/doc"]
    assert paths(SearchableText="old") == []


def test_a_transition_reindexes_the_state(portal, folder, service):
    run(service, catalog_jobs.create, folder, "draft", "Draft")
    run(service, catalog_jobs.transition, folder["draft"], "submit")
    assert paths(review_state="pending") == ["/plone/member-folder/draft"]
    assert paths(review_state="private", portal_type="Document") == []


def test_a_move_and_a_rename_reindex_the_path(portal, service):
    as_manager(portal)
    api.content.create(container=portal, type="Folder", id="a")
    api.content.create(container=portal, type="Folder", id="b")
    api.content.create(container=portal.a, type="Document", id="doc", title="Moving")
    transaction.commit()
    run(service, catalog_jobs.move, portal.a.doc, portal.b)
    assert paths(Title="Moving") == ["/plone/b/doc"]
    assert paths(path={"query": "/plone/a", "depth": 1}) == []
    run(service, catalog_jobs.rename, portal.b.doc, "renamed")
    assert paths(Title="Moving") == ["/plone/b/renamed"]
    assert [b.getId for b in found(path={"query": "/plone/b", "depth": 1})] == [
        "renamed"
    ]


def test_a_deleted_document_leaves_the_catalog(portal, folder, service):
    run(service, catalog_jobs.create, folder, "gone", "Soon gone")
    assert paths(Title="gone") == ["/plone/member-folder/gone"]
    run(service, catalog_jobs.delete, folder["gone"])
    assert paths(Title="gone") == []


def test_an_event_is_indexed_by_its_dates(portal, folder, service):
    start = datetime.datetime(2031, 5, 4, 10, 0, tzinfo=datetime.UTC)
    run(service, catalog_jobs.create_event, folder, "launch", start)
    day = datetime.datetime(2031, 5, 4, tzinfo=datetime.UTC)
    assert paths(portal_type="Event", start={"query": day, "range": "min"}) == [
        "/plone/member-folder/launch"
    ]
    assert paths(portal_type="Event", end={"query": day, "range": "max"}) == []


def test_links_written_in_a_job_are_known_to_link_integrity(portal, folder, service):
    from plone.app.linkintegrity.utils import getIncomingLinks

    run(service, catalog_jobs.create, folder, "target", "Target")
    run(service, catalog_jobs.link_to, folder, "source", folder["target"])
    sources = [link.from_object.getId() for link in getIncomingLinks(folder["target"])]
    assert sources == ["source"]


def test_relations_made_in_a_job_are_in_the_relation_catalog(portal, folder, service):
    run(service, catalog_jobs.create, folder, "one", "One")
    run(service, catalog_jobs.create, folder, "two", "Two")
    run(service, catalog_jobs.relate, folder["one"], folder["two"])
    relations = api.relation.get(source=folder["one"], relationship="relatedItems")
    assert [r.to_object.getId() for r in relations] == ["two"]


def test_an_edit_in_a_job_is_versioned(portal, folder, service):
    run(service, catalog_jobs.create, folder, "versioned", "First")
    repository = api.portal.get_tool("portal_repository")
    before = len(repository.getHistoryMetadata(folder["versioned"]) or ())
    run(service, catalog_jobs.edit, folder["versioned"], "Second", "<p>two</p>")
    history = repository.getHistoryMetadata(folder["versioned"])
    assert history.getLength(countPurged=False) == before + 1


# -- content rules --------------------------------------------------------


def add_rule(portal, folder, event, action):
    from plone.app.contentrules import api as rules_api
    from plone.app.contentrules.rule import Rule
    from plone.contentrules.engine.interfaces import IRuleStorage
    from zope.container.interfaces import INameChooser

    storage = getUtility(IRuleStorage)
    rule = Rule()
    rule.title = "zasync test rule"
    rule.event = event
    rule.actions.append(action)
    name = INameChooser(storage).chooseName(None, rule)
    storage[name] = rule
    rules_api.assign_rule(folder, name)
    return rule


def test_a_content_rule_fires_in_a_job(portal, service):
    from plone.app.contentrules.actions.workflow import WorkflowAction
    from zope.lifecycleevent.interfaces import IObjectAddedEvent

    as_manager(portal)
    news = api.content.create(container=portal, type="Folder", id="news")
    action = WorkflowAction()
    action.transition = "publish"
    add_rule(portal, news, IObjectAddedEvent, action)
    transaction.commit()
    run(service, catalog_jobs.create, news, "item", "Auto-published")
    assert api.content.get_state(news["item"]) == "published"
    assert paths(review_state="published", Title="Auto-published") == [
        "/plone/news/item"
    ]


def test_a_content_rule_fires_in_every_job_not_once_per_thread(portal, service):
    # Content rules skip a rule already run for an object in the same
    # request; each job is a request of its own, so the rule runs in each
    # of several jobs editing one document, whichever thread runs them.
    from plone.app.contentrules.actions.copy import CopyAction
    from zope.lifecycleevent.interfaces import IObjectModifiedEvent

    as_manager(portal)
    api.content.create(container=portal, type="Folder", id="copies")
    watched = api.content.create(container=portal, type="Folder", id="watched")
    api.content.create(container=watched, type="Document", id="doc", title="v0")
    action = CopyAction()
    action.target_folder = "/copies"
    add_rule(portal, watched, IObjectModifiedEvent, action)
    transaction.commit()
    edits = 4  # more than the dispatcher's threads: some share a thread
    for n in range(1, edits + 1):
        run(service, catalog_jobs.edit, watched["doc"], f"v{n}", f"<p>{n}</p>")
    assert len(portal.copies.objectIds()) == edits
    assert len(paths(path={"query": "/plone/copies", "depth": 1})) == edits
