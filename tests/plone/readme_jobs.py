"""The job functions of the ported plone.app.async README doctest.

They must be importable module-level functions: a worker finds a job's
function by name (functions defined in a doctest are refused)."""

from Products.CMFCore.utils import getToolByName

# What the callbacks and event handlers saw, in the worker thread.
results = []


def addNumbers(context, x1, x2):
    return x1 + x2


def createDocument(context, id, title, description, body):
    context.invokeFactory(
        "Document", id, title=title, description=description, text=body
    )
    return context[id].id


def submitObject(context, id):
    obj = context[id]
    wt = getToolByName(context, "portal_workflow")
    wt.doActionFor(obj, "submit")


def failingJob(context):
    raise RuntimeError("FooBared")


def job_success_callback(result):
    results.append("Success: %s" % result)  # noqa: UP031 - as in the original


def job_failure_callback(result):
    results.append(result)
