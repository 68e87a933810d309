"""Jobs for the tests of @@my-jobs and the notices."""

from zasync.plone import asyncfunction


def note(context, text):
    """Return ``text`` after the context's path (changes nothing)."""
    return "/".join(context.getPhysicalPath()) + text


def echo(context, value=None):
    return value


def fail(context):
    raise ValueError("this job fails on purpose")


@asyncfunction(notify=True)
def told(context, value=None):
    """Queues itself when called, and tells the caller when it is done."""
    return value
