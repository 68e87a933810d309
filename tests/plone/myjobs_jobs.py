"""Jobs for the tests of @@my-jobs and the notices."""


def note(context, text):
    """Return ``text`` after the context's path (changes nothing)."""
    return "/".join(context.getPhysicalPath()) + text


def echo(context, value=None):
    return value


def fail(context):
    raise ValueError("this job fails on purpose")
