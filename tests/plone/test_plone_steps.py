"""A job in steps (zasync.steps) in Plone: it transitions documents in
chunks that each commit, as the user who queued it, in its site, and the
catalog is right; a job that stopped half way does only the rest. (A worker
process killed with -9 half way: tests/cluster/test_steps_crash.py.)"""

import transaction
from catalog_jobs import transition_in_steps
from plone.app.testing import TEST_USER_ID
from zope.component import getUtility

from plone import api
from zasync import steps
from zasync.plone.interfaces import IAsyncService
from zasync.plone.testing import wait_for_result

COUNT = 120
EVERY = 25


def make_documents(folder):
    uids = []
    for i in range(COUNT):
        doc = api.content.create(
            container=folder, type="Document", id=f"doc-{i:04}", title=f"Doc {i}"
        )
        uids.append(api.content.get_uuid(doc))
    transaction.commit()
    return uids


def submits(doc):
    history = doc.workflow_history["simple_publication_workflow"]
    return sum(entry["action"] == "submit" for entry in history)


def test_a_job_in_steps_transitions_each_document_once(portal, folder):
    uids = make_documents(folder)
    job = getUtility(IAsyncService).queueJob(
        transition_in_steps, folder, uids, "submit", EVERY
    )
    # As if an earlier run had committed its first two chunks and died:
    # the state it left, and what it did.
    for uid in uids[: 2 * EVERY]:
        api.content.transition(obj=api.content.get(UID=uid), transition="submit")
    job.steps = {
        "items": {
            **steps._fresh(COUNT),
            "cursor": 2 * EVERY,
            "done": 2 * EVERY,
            "chunks": 2,
            "runs": 1,
        }
    }
    transaction.commit()
    result = wait_for_result(job, 120)
    assert not job.failed, result.getTraceback()
    done, seen = result
    assert done == COUNT
    # Every chunk ran as the user who queued the job, in its site.
    assert seen == [(TEST_USER_ID, portal.getId())]
    transaction.begin()
    final = steps.state(job)
    assert final["resumed_from"] == 2 * EVERY and final["runs"] == 2
    assert final["chunks"] == 2 + (COUNT - 2 * EVERY + EVERY - 1) // EVERY
    for doc in folder.objectValues():
        assert submits(doc) == 1, doc.getId()
    catalog = api.portal.get_tool("portal_catalog")
    brains = catalog.unrestrictedSearchResults(
        path="/".join(folder.getPhysicalPath()), portal_type="Document"
    )
    assert len(brains) == COUNT
    assert {brain.review_state for brain in brains} == {"pending"}
    assert job.progress[0] == 1.0
