"""Test layers for add-ons that queue jobs, with a real dispatcher.

``ZASYNC_FIXTURE`` loads zasync.plone and installs its profile in a Plone
site with the standard content types. ``ZASYNC_INTEGRATION_TESTING`` and
``ZASYNC_FUNCTIONAL_TESTING`` give each test its own stacked database, so
tests may commit, and run a dispatcher thread against it for the duration
of the test: queue, ``transaction.commit()``, then ``wait_for_result(job)``.

The integration layer keeps plone.app.testing's integration environment
(one connection, the test user logged in); the functional one is
plone.app.testing's functional layer (for zope.testbrowser and WSGI
tests). The running dispatcher is the ``zasync_dispatcher`` resource.

With pytest-plone::

    from pytest_plone import fixtures_factory
    from zasync.plone.testing import ZASYNC_FUNCTIONAL_TESTING
    globals().update(fixtures_factory(((ZASYNC_FUNCTIONAL_TESTING, "functional"),)))
"""

import uuid

import transaction
from plone.app.contenttypes.testing import PLONE_APP_CONTENTTYPES_FIXTURE
from plone.app.testing import (
    FunctionalTesting,
    IntegrationTesting,
    PloneSandboxLayer,
    applyProfile,
)
from plone.testing import zodb

import zasync
from zasync.testing import wait_for_all_jobs, wait_for_result, wait_for_start

__all__ = [
    "ZASYNC_FIXTURE",
    "ZASYNC_INTEGRATION_TESTING",
    "ZASYNC_FUNCTIONAL_TESTING",
    "ZasyncIntegrationTesting",
    "ZasyncFunctionalTesting",
    "wait_for_result",
    "wait_for_start",
    "wait_for_all_jobs",
]


class ZasyncFixture(PloneSandboxLayer):
    defaultBases = (PLONE_APP_CONTENTTYPES_FIXTURE,)

    def setUpZope(self, app, configurationContext):
        import zasync.plone

        self.loadZCML(package=zasync.plone)

    def setUpPloneSite(self, portal):
        applyProfile(portal, "zasync.plone:default")


ZASYNC_FIXTURE = ZasyncFixture()


class DispatcherLifecycle:
    """Runs a dispatcher on the test's database while the test runs."""

    poll_interval = 0.05
    agent_size = 3

    def start_dispatcher(self):
        self["zasync_dispatcher"] = zasync.start(
            self["zodbDB"],
            poll_interval=self.poll_interval,
            agent_size=self.agent_size,
            uuid=str(uuid.uuid4()),
        )

    def stop_dispatcher(self):
        dispatcher = self["zasync_dispatcher"]
        del self["zasync_dispatcher"]
        dispatcher.stop(10)


class ZasyncIntegrationTesting(DispatcherLifecycle, IntegrationTesting):
    """plone.app.testing's integration layer on a database of the test's
    own, where commits are allowed, with a dispatcher."""

    def testSetUp(self):
        self["zodbDB"] = zodb.stackDemoStorage(
            self.get("zodbDB"), name="ZasyncIntegrationTest"
        )
        super().testSetUp()
        # The stacked database isolates the test: commits are safe here.
        transaction.commit = self._original_commit
        self.start_dispatcher()

    def testTearDown(self):
        self.stop_dispatcher()
        super().testTearDown()
        self["zodbDB"].close()
        del self["zodbDB"]


class ZasyncFunctionalTesting(DispatcherLifecycle, FunctionalTesting):
    """plone.app.testing's functional layer, with a dispatcher."""

    def testSetUp(self):
        super().testSetUp()
        self.start_dispatcher()

    def testTearDown(self):
        self.stop_dispatcher()
        super().testTearDown()


ZASYNC_INTEGRATION_TESTING = ZasyncIntegrationTesting(
    bases=(ZASYNC_FIXTURE,), name="ZasyncFixture:Integration"
)
ZASYNC_FUNCTIONAL_TESTING = ZasyncFunctionalTesting(
    bases=(ZASYNC_FIXTURE,), name="ZasyncFixture:Functional"
)
