"""zasync's plone.restapi services, one folder per endpoint (ZCML is the
routing table), registered for the Plone site root of sites where zasync
is installed (IZasyncLayer):

- ``jobs/``: ``GET @zasync-jobs`` (the list, filtered and batched),
  ``GET @zasync-jobs/{id}``, ``POST @zasync-jobs/{id}/@retry`` and
  ``/@cancel``, ``DELETE @zasync-jobs/{id}``;
- ``status/``: ``GET @zasync-status`` and ``PATCH @zasync-status``
  (quota sizes);
- ``controlpanel/``: zasync's entry in ``@controlpanels`` (for Volto).

They only translate HTTP to :mod:`zasync.admin` and back: the data is
the operator library's, made JSON-ready by ``zasync.admin.for_json`` (job
ids as strings). docs/rest.md documents them with examples that the tests
perform.
"""
