"""The job the benchmark's requests queue."""


def nothing(context):
    """A trivial Plone job: runs in the site, as the user, and does nothing."""
    return None
