"""The view Prometheus scrapes: ``@@zasync-metrics`` on the site root."""

import hmac

from AccessControl import Unauthorized, getSecurityManager
from Products.Five.browser import BrowserView
from zope.i18n import translate

from zasync.admin import metrics
from zasync.plone.config import metrics_token
from zasync.plone.i18n import _
from zasync.plone.permissions import VIEW_METRICS
from zasync.plone.roles import queues_database

#: What a 401 for a wrong bearer token tells the scraper.
CHALLENGE = 'Bearer realm="zasync-metrics", error="invalid_token"'


class MetricsView(BrowserView):
    """The Prometheus metrics of the site's database and of this process
    (zasync.admin.metrics), in Prometheus's text format 0.0.4, or
    OpenMetrics when the Accept header asks for it.

    Permission: 'zasync: View metrics' (zasync.ViewMetrics; Manager and Site
    Administrator by default) on the site, *or* the metrics token. So that
    a scraper can use the token without a Plone login, the view is public
    for Zope (zope2.Public) and checks the two itself, in this order:

    1. ``Authorization: Bearer <token>`` equal (hmac.compare_digest) to the
       metrics token (zasync.plone.config.metrics_token: the environment
       variable ZASYNC_METRICS_TOKEN or ``<product-config zasync>
       metrics-token``; none by default): the metrics;
    2. a user with the permission (logged in as Plone allows, a
       plone.restapi JWT among them): the metrics;
    3. any other bearer token: 401 with ``WWW-Authenticate: Bearer``
       and a short text, for the scraper's log;
    4. else Unauthorized, as for any protected page: the login form for
       anonymous, "insufficient privileges" for a user without it.

    The numbers are read through a connection of their own, in a
    transaction aborted after the scrape: the view never writes.
    """

    def __call__(self):
        response = self.request.response
        given = self._bearer()
        if not self._token_matches(given) and not self._permitted():
            if given is not None:
                response.setStatus(401)
                response.setHeader("WWW-Authenticate", CHALLENGE)
                response.setHeader("Content-Type", "text/plain; charset=utf-8")
                return translate(
                    _("This metrics token is not valid."), context=self.request
                )
            raise Unauthorized(
                "zasync-metrics needs the permission 'zasync: View metrics' "
                "or the metrics token"
            )
        db = self.context._p_jar.db()
        registry = metrics.make_registry(db, queues_database())
        body, content_type = metrics.exposition(
            registry, self.request.getHeader("Accept")
        )
        response.setHeader("Content-Type", content_type)
        response.setHeader("Cache-Control", "no-store")
        # Plain text, never sniffed as HTML (label values are queue names).
        response.setHeader("X-Content-Type-Options", "nosniff")
        return body

    def _bearer(self):
        """The bearer token of the request, or None."""
        # Zope keeps the Authorization header here, not in the environ.
        header = getattr(self.request, "_auth", None) or ""
        scheme, _, credentials = header.strip().partition(" ")
        if scheme.lower() != "bearer":
            return None
        return credentials.strip()

    @staticmethod
    def _token_matches(given):
        if not given:
            return False
        token = metrics_token()
        return token is not None and hmac.compare_digest(
            given.encode("utf-8"), token.encode("utf-8")
        )

    def _permitted(self):
        return bool(getSecurityManager().checkPermission(VIEW_METRICS, self.context))
