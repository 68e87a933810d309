"""The message factory of the ``zasync`` translation domain: every text a
Plone user reads is ``_("...")`` (Python) or ``i18n:translate`` in the
``zasync`` domain (templates); the catalogs are in locales/."""

from zope.i18nmessageid import MessageFactory

_ = MessageFactory("zasync")
