"""The Plone layer for documentation examples marked ``plone``.

zasync.plone.testing's ZASYNC_INTEGRATION_TESTING is set up once per session,
through zope.pytestlayer's bookkeeping, so that the Plone tests in the same
session share it instead of setting it up twice. Only pages with ``plone``
blocks ask for it.
"""

import pytest


def _bases_first(layer, seen=None):
    seen = [] if seen is None else seen
    for base in getattr(layer, "__bases__", ()):
        _bases_first(base, seen)
    if layer not in seen and hasattr(layer, "setUp"):
        seen.append(layer)
    return seen


@pytest.fixture(scope="session")
def plone_layer(request):
    from zope.pytestlayer import fixture

    from zasync.plone.testing import ZASYNC_INTEGRATION_TESTING

    state = getattr(request.session, "zopelayer_state", None)
    if state is None:
        state = request.session.zopelayer_state = fixture.ZopeLayerState()
    mine = []
    try:
        for layer in _bases_first(ZASYNC_INTEGRATION_TESTING):
            if layer not in state.current:
                fixture.setup_layer(layer, request)
                mine.append(layer)
            # As zope.pytestlayer's own session fixtures do: no class
            # fixture of another test module may tear it down before the end.
            state.keep_for_whole_session.add(layer)
        yield ZASYNC_INTEGRATION_TESTING
    finally:
        for layer in reversed(mine):
            if layer in state.current:
                fixture.teardown_layer(layer, request)
