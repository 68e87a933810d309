"""Recurring jobs from ZCML (<zasync:recurring />): the directive loads and
checks, the definitions are synced into the database at start, and a tick
runs the handler in the site as the named user, by the real dispatcher."""

import datetime

import plone_jobs
import pytest
import transaction
from plone.app.testing import TEST_USER_ID
from zope.configuration.config import ConfigurationExecutionError
from zope.configuration.exceptions import ConfigurationError
from zope.configuration.xmlconfig import ZopeXMLConfigurationError, string

import jobfuncs
import zasync
from zasync import recurring
from zasync.plone import recurring as zcml_recurring
from zasync.plone.environment import PloneEnvironment
from zasync.plone.testing import wait_for_result
from zasync.testing import wait_for


def load(*directives):
    """Load ``<zasync:recurring .../>`` directives as a package's ZCML would."""
    body = "\n".join(f"<zasync:recurring {d} />" for d in directives)
    string(
        '<configure xmlns="http://namespaces.zope.org/zope"'
        ' xmlns:zasync="http://namespaces.zope.org/zasync">'
        '<include package="zasync.plone" file="meta.zcml" />'
        f"{body}</configure>"
    )


@pytest.fixture
def fast_checks(monkeypatch):
    """Dispatchers look at the definitions every 50 ms (listed before
    ``portal``: set before the layer starts its dispatcher)."""
    monkeypatch.setattr(recurring, "CHECK_EVERY", 0.05)


@pytest.fixture
def zcml():
    zcml_recurring._clear()
    yield load
    zcml_recurring._clear()


@pytest.fixture
def db(portal):
    transaction.commit()
    return portal._p_jar.db()


def stored(portal, name):
    transaction.begin()
    return recurring.get(zasync.get_queues(portal._p_jar), name)


WHOAMI = f'handler="plone_jobs.whoami" site="plone" user="{TEST_USER_ID}"'


def test_the_directive_loads_and_sync_stores_the_definition(portal, db, zcml):
    zcml(f'name="nightly" cron="0 3 * * *" timezone="Europe/Berlin" {WHOAMI}')
    assert set(zcml_recurring.defined()) == {"nightly"}
    done = zcml_recurring.sync(db)
    assert done == {"defined": ["nightly"], "removed": [], "problems": {}}
    definition = stored(portal, "nightly")
    assert definition.source == "zcml"
    assert definition.cron == "0 3 * * *"
    assert definition.timezone == "Europe/Berlin"
    assert definition.callable is plone_jobs.whoami
    assert isinstance(definition.environment, PloneEnvironment)
    assert definition.environment.user_id == TEST_USER_ID
    assert definition.environment.site_path == ("", "plone")
    # Synced again unchanged (every start of every instance): not written.
    serial = definition._p_serial
    zcml_recurring.sync(db)
    assert stored(portal, "nightly")._p_serial == serial


def test_a_tick_runs_the_handler_in_the_site_as_the_named_user(
    fast_checks, portal, db, zcml
):
    zcml(f'name="often" every="1s" {WHOAMI}')
    zcml_recurring.sync(db)
    definition = stored(portal, "often")

    def last_job():
        transaction.begin()
        return definition.last_job

    job = wait_for(
        last_job,
        seconds=15,
        refresh=lambda: None,
        describe=lambda: f"no tick of {definition!r} fired",
    )
    facts = wait_for_result(job)
    assert facts["user"] == TEST_USER_ID
    assert facts["site"] == facts["context"] == "/plone"
    assert job.annotations[recurring.ANNOTATION]["name"] == "often"


def test_sync_updates_changed_and_removes_dropped_zcml_definitions(portal, db, zcml):
    zcml(
        f'name="a" cron="0 3 * * *" {WHOAMI}',
        f'name="b" every="1h" catch_up="each" {WHOAMI}',
    )
    zcml_recurring.sync(db)
    transaction.begin()
    recurring.define(zasync.get_queues(portal._p_jar), "code", jobfuncs.add, every=60)
    transaction.commit()
    # The ZCML changes; the instance starts again.
    zcml_recurring._clear()
    zcml(f'name="a" cron="30 4 * * 1" {WHOAMI}')
    done = zcml_recurring.sync(db)
    assert done["removed"] == ["b"]
    assert stored(portal, "a").cron == "30 4 * * 1"
    names = [d.name for d in recurring.definitions(zasync.get_queues(portal._p_jar))]
    assert names == ["a", "code"]  # a definition from code is not the ZCML's


def test_an_unknown_user_or_site_is_reported_and_not_stored(portal, db, zcml):
    zcml(
        'name="nobody" every="1h" handler="plone_jobs.whoami" site="plone" user="ghost"',
        f'name="nowhere" every="1h" handler="plone_jobs.whoami" site="gone" '
        f'user="{TEST_USER_ID}"',
    )
    done = zcml_recurring.sync(db)
    assert done["defined"] == []
    assert (
        "the user 'ghost' is not a user of site '/plone'" in done["problems"]["nobody"]
    )
    assert "the site '/gone' does not exist" in done["problems"]["nowhere"]
    transaction.begin()
    assert recurring.definitions(zasync.get_queues(portal._p_jar)) == []


@pytest.mark.parametrize(
    ("attributes", "message"),
    [
        ('name="x" cron="0 3 * * *" handler="plone_jobs.whoami" site="plone"', "user"),
        (f'name="x" cron="0 3 * *" {WHOAMI}', "is not valid; use five fields"),
        (f'name="x" {WHOAMI}', "exactly one of them"),
        (f'name="x" every="soon" {WHOAMI}', "is not a duration"),
        (f'name="x" every="1h" timezone="Nowhere/Land" {WHOAMI}', "unknown timezone"),
        (f'name="x" every="1h" catch_up="all" {WHOAMI}', "catch_up must be one of"),
        (
            'name="x" every="1h" handler="plone_jobs.nothing" site="plone" user="u"',
            "Module plone_jobs has no global nothing",
        ),
    ],
)
def test_a_bad_directive_stops_the_zcml_from_loading(zcml, attributes, message):
    with pytest.raises(
        (ConfigurationError, ConfigurationExecutionError, ZopeXMLConfigurationError),
        match=message,
    ):
        zcml(attributes)
    assert zcml_recurring.defined() == {}


def test_two_directives_of_one_name_conflict(zcml):
    with pytest.raises(ConfigurationError, match="Conflicting"):
        zcml(f'name="x" every="1h" {WHOAMI}', f'name="x" every="2h" {WHOAMI}')


def test_a_definition_starts_from_now(portal, db, zcml):
    zcml(f'name="hourly" every="1h" {WHOAMI}')
    before = datetime.datetime.now(datetime.UTC)
    zcml_recurring.sync(db)
    next_tick = stored(portal, "hourly").next_tick
    assert before + datetime.timedelta(minutes=59) < next_tick
