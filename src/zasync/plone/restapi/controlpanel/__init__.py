"""zasync's entry in plone.restapi's ``@controlpanels`` (what Volto's Site
Setup lists and edits): ``GET @controlpanels/zasync`` and
``PATCH @controlpanels/zasync``, over zasync.plone.controlpanel.settings,
the same plain data as the classic ``@@zasync-controlpanel`` form."""
