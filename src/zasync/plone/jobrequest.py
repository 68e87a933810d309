"""The request a job runs with: the URLs of the request that queued it.

A job queued while a request was published records that request's
virtual-host mapping (:class:`VirtualHost`: the server URL, the object the
virtual host monster made the virtual root, and the path shown for it), so
that ``absolute_url()``, ``portal_url()`` and views give in the job what
they gave in that request, also under a virtual host rooted in a folder of
the site (``/VirtualHostBase/https/en.example.com:443/Plone/en/
VirtualHostRoot/``). A job queued outside a request (a script, a test) gets
the site's public URL instead (see :func:`zasync.plone.settings.public_url`).
"""

import io
from urllib.parse import urlsplit

from Acquisition import aq_base
from zope.interface import alsoProvides
from zope.publisher.interfaces.browser import IDefaultBrowserLayer
from ZPublisher.BaseRequest import RequestContainer
from ZPublisher.HTTPRequest import HTTPRequest
from ZPublisher.HTTPResponse import HTTPResponse

from zasync.plone.values import SlotsValue


class VirtualHost(SlotsValue):
    """How a request mapped physical paths to URLs: ``server_url`` (such as
    ``https://en.example.com``), ``root`` (the physical path of the virtual
    root) and ``script`` (the path elements shown in place of ``root``,
    from ``_vh_`` segments)."""

    __slots__ = ("server_url", "root", "script")

    def __init__(self, server_url, root=("",), script=()):
        self.server_url = server_url
        self.root = tuple(root)
        self.script = tuple(script)

    def __repr__(self):
        return (
            f"<VirtualHost {self.server_url} root={'/'.join(self.root) or '/'} "
            f"script=/{'/'.join(self.script)}>"
        )

    @classmethod
    def of(cls, request):
        """The mapping of ``request`` if it is being published, else None
        (requests made up by scripts and tests map nothing)."""
        if request is None or request.get("PUBLISHED") is None:
            return None
        server_url = request.get("SERVER_URL")
        if not server_url:
            return None
        root = request.get("VirtualRootPhysicalPath") or ("",)
        script = [part for part in request.getVirtualRoot().split("/") if part]
        return cls(server_url, root, script)


def _blank_request(server_url):
    parts = urlsplit(server_url)
    https = parts.scheme == "https"
    environ = {
        "SERVER_NAME": parts.hostname or "localhost",
        "SERVER_PORT": str(parts.port or (443 if https else 80)),
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REQUEST_METHOD": "GET",
        "wsgi.url_scheme": parts.scheme or "http",
        "PATH_INFO": "/",
    }
    if https:
        environ["HTTPS"] = "on"
    response = HTTPResponse(stdout=io.BytesIO())
    request = HTTPRequest(io.BytesIO(), environ, response)
    request.setServerURL(parts.scheme or "http", parts.hostname, parts.port)
    alsoProvides(request, IDefaultBrowserLayer)
    return request


def job_request(app, site_path, virtual_host=None, url=None):
    """A request for a job and the application wrapped in it.

    With ``virtual_host`` its mapping is reproduced (if its virtual root
    still exists); else ``url`` is the public URL of the site at
    ``site_path``, which becomes the virtual root. Returns ``(request,
    app, site)``, both wrapped in the request (``site`` is ``app`` if
    ``site_path`` is None); PARENTS end at the site, as after traversal to
    it.
    """
    root = None
    if virtual_host is not None:
        request = _blank_request(virtual_host.server_url)
        script = list(virtual_host.script)
        root_path = virtual_host.root
    else:
        parts = urlsplit(url)
        request = _blank_request(f"{parts.scheme}://{parts.netloc}")
        # The site is the virtual root; with no site, the URL's host only.
        script = [p for p in parts.path.split("/") if p] if site_path else []
        root_path = site_path
    app = aq_base(app).__of__(RequestContainer(REQUEST=request))
    site = app if site_path is None else app.unrestrictedTraverse(site_path)
    if root_path == site_path:
        root = site
    elif root_path:
        root = app.unrestrictedTraverse(root_path, None)
    if root is None or (
        virtual_host is not None and tuple(root.getPhysicalPath()) != root_path
    ):
        # The virtual root is gone: the site's own URL under the same host.
        root = app
        script = []
    request["PARENTS"] = [root]
    request.setVirtualRoot(script)
    request["PARENTS"] = [site, app] if site is not app else [app]
    request["PUBLISHED"] = site
    return request, app, site
