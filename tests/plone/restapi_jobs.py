"""Job functions for the REST API tests (the dispatcher imports them)."""


def echo(context, value):
    """Return ``value``: a job whose result is what it was given."""
    return value


def explode(context, message):
    """Fail with ValueError(message)."""
    raise ValueError(message)
