"""The demo's browser layer."""

from zope.publisher.interfaces.browser import IDefaultBrowserLayer


class IZasyncDemoLayer(IDefaultBrowserLayer):
    """Marks requests of sites where the profile ``zasync.plone:demo`` is
    installed: the ``@@zasync-demo`` views exist there only."""
