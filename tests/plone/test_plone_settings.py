"""The zasync control panel (@@zasync-controlpanel) through the real
publisher: cluster-wide settings shared by every site of the database,
shown as they are in force (an override by a process's zope.conf is marked
with its source), the site's public URL, its security and its CSRF
protection; real dispatchers follow what it saves."""

import datetime
import uuid

import pytest
import transaction
from plone.app.testing import (
    SITE_OWNER_NAME,
    SITE_OWNER_PASSWORD,
    TEST_USER_NAME,
    TEST_USER_PASSWORD,
    login,
)
from plone.testing.zope import Browser
from Products.CMFPlone.factory import addPloneSite
from zExceptions import Forbidden
from zope.component import getUtility
from zope.component.hooks import setSite

import zasync
from zasync import admin, retention
from zasync.plone.controlpanel import views
from zasync.plone.interfaces import DEFAULT_QUOTA, IAsyncService
from zasync.testing import wait_for

PAGE = "@@zasync-controlpanel"


def browser_for(app, user=SITE_OWNER_NAME, password=SITE_OWNER_PASSWORD):
    browser = Browser(app)
    browser.handleErrors = False
    if user is not None:
        browser.addHeader("Authorization", f"Basic {user}:{password}")
    return browser


def text(browser):
    return " ".join(browser.contents.split())


def control(browser, name):
    return browser.getControl(name=f"form.widgets.{name}")


def quota_control(browser, quota=DEFAULT_QUOTA):
    return control(browser, views.quota_field_name(quota))


def dispatcher_control(browser, dispatcher):
    return control(browser, views.dispatcher_field_name(dispatcher.uuid))


def fresh_queue():
    transaction.begin()
    return getUtility(IAsyncService).getQueues()[""]


@pytest.fixture
def dispatchers(functional):
    """Start dispatchers on the test's database; stopped at the end."""
    started = []

    def start(**options):
        options.setdefault("poll_interval", 0.05)
        dispatcher = zasync.start(
            functional["zodbDB"], uuid=str(uuid.uuid4()), **options
        )
        started.append(dispatcher)
        return dispatcher

    yield start
    for dispatcher in started:
        dispatcher.stop(5)


@pytest.fixture
def second_site(functional_app, functional_portal):
    """Another Plone site with zasync in the same database."""
    login(functional_app, SITE_OWNER_NAME)
    site = addPloneSite(
        functional_app,
        "other",
        extension_ids=("plone.app.contenttypes:default", "zasync.plone:default"),
    )
    setSite(functional_portal)
    transaction.commit()
    return site


def test_two_sites_of_one_database_show_and_change_the_same_settings(
    functional_app, functional_portal, second_site, dispatchers
):
    follower = dispatchers()
    transaction.commit()
    one = browser_for(functional_app)
    one.open(f"{functional_portal.absolute_url()}/{PAGE}")
    page = text(one)
    assert "Every site of this database" in page and "This site" in page
    assert quota_control(one).value == "1"
    assert control(one, "default_agent_size").value == ""

    quota_control(one).value = "4"
    control(one, "default_agent_size").value = "5"
    control(one, "public_url").value = "https://one.example.org"
    one.getControl("Save").click()
    assert "Changes saved" in text(one)

    # The queue and the running dispatcher have the new values at once.
    queue = fresh_queue()
    assert queue.quotas[DEFAULT_QUOTA].size == 4
    wait_for(
        lambda: follower.agent_sizes[""] == (5, "cluster default"),
        10,
        lambda: None,
        lambda: f"the dispatcher to follow: {follower.agent_sizes}",
    )

    # The other site shows the same cluster-wide values, and its own URL.
    other = browser_for(functional_app)
    other.open(f"{second_site.absolute_url()}/{PAGE}")
    assert quota_control(other).value == "4"
    assert control(other, "default_agent_size").value == "5"
    assert control(other, "public_url").value == ""
    # A change there shows in the first site.
    quota_control(other).value = "2"
    other.getControl("Save").click()
    one.open(f"{functional_portal.absolute_url()}/{PAGE}")
    assert quota_control(one).value == "2"
    assert control(one, "public_url").value == "https://one.example.org"


def test_an_override_by_zope_conf_is_shown_with_its_source(
    functional_app, functional_portal, dispatchers
):
    follower = dispatchers()
    pinned = dispatchers(agent_size=2, agent_size_source="zope.conf")
    transaction.commit()
    browser = browser_for(functional_app)
    browser.open(f"{functional_portal.absolute_url()}/{PAGE}")
    page = text(browser)
    assert f"Threads of dispatcher {pinned.uuid}" in page
    assert (
        "2 threads, from its zope.conf, which wins over the settings here: change "
        "threads in &lt;product-config zasync&gt; of its zope.conf and restart it"
    ) in page
    # Shown, not editable: there is no input for it.
    with pytest.raises(LookupError):
        dispatcher_control(browser, pinned)
    assert "Now 3 threads (built-in default)" in page

    dispatcher_control(browser, follower).value = "4"
    browser.getControl("Save").click()
    assert f"dispatcher {follower.uuid}: 4 threads" in text(browser)
    wait_for(
        lambda: follower.agent_sizes[""] == (4, "dispatcher setting"),
        10,
        lambda: None,
        lambda: f"the dispatcher to follow: {follower.agent_sizes}",
    )
    assert pinned.agent_sizes[""] == (2, "zope.conf")
    browser.open(f"{functional_portal.absolute_url()}/{PAGE}")
    assert dispatcher_control(browser, follower).value == "4"
    assert "Now 4 threads (dispatcher setting)" in text(browser)


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("quota", "-1", "Value is too small"),
        ("quota", "many", "The entered value is not a valid integer literal."),
        ("default_agent_size", "5000", "Value is too big"),
        ("public_url", "not a url", "The specified URI is not valid."),
    ],
)
def test_bad_input_is_refused_and_nothing_is_stored(
    functional_app, functional_portal, field, value, message
):
    browser = browser_for(functional_app)
    browser.open(f"{functional_portal.absolute_url()}/{PAGE}")
    quota_control(browser).value = "3"  # a good change next to the bad one
    if field == "quota":
        quota_control(browser).value = value
    else:
        control(browser, field).value = value
    browser.getControl("Save").click()
    page = text(browser)
    assert "There were some errors." in page
    assert message in page
    queue = fresh_queue()
    assert queue.quotas[DEFAULT_QUOTA].size == 1
    assert queue.agent_settings is None


def test_saving_without_the_authenticator_is_forbidden(
    functional_app, functional_portal
):
    browser = browser_for(functional_app)
    url = f"{functional_portal.absolute_url()}/{PAGE}"
    browser.open(url)
    form = browser.getForm(id="form")
    assert form.getControl(name="_authenticator").value
    fields = {
        f"form.widgets.{views.quota_field_name(DEFAULT_QUOTA)}": "7",
        "form.widgets.default_agent_size": "",
        "form.widgets.public_url": "",
        "form.buttons.save": "Save",
    }
    with pytest.raises(Forbidden):
        browser.post(url, "&".join(f"{k}={v}" for k, v in fields.items()))
    assert fresh_queue().quotas[DEFAULT_QUOTA].size == 1


def test_only_site_managers_see_it(functional_app, functional_portal):
    url = f"{functional_portal.absolute_url()}/{PAGE}"
    anonymous = browser_for(functional_app, None)
    anonymous.handleErrors = True
    anonymous.open(url)
    assert "/login?came_from=" in anonymous.url  # Plone's login page
    assert "Every site of this database" not in anonymous.contents

    member = browser_for(functional_app, TEST_USER_NAME, TEST_USER_PASSWORD)
    member.handleErrors = True
    member.open(url)
    assert member.url.endswith("/insufficient-privileges")
    assert "Every site of this database" not in member.contents


def test_listed_in_site_setup(functional_app, functional_portal):
    browser = browser_for(functional_app)
    browser.open(f"{functional_portal.absolute_url()}/@@overview-controlpanel")
    link = browser.getLink("Background jobs (zasync)")
    assert link.url.endswith(f"/{PAGE}")


def test_a_dispatcher_that_stopped_meanwhile_loses_nothing(
    functional_app, functional_portal, dispatchers
):
    """The form was shown with a dispatcher that stopped before Save: its
    field is gone from the new form; the rest is saved."""
    follower = dispatchers()
    transaction.commit()
    browser = browser_for(functional_app)
    browser.open(f"{functional_portal.absolute_url()}/{PAGE}")
    dispatcher_control(browser, follower).value = "2"
    quota_control(browser).value = "3"
    follower.stop(5)
    browser.getControl("Save").click()
    assert "Changes saved" in text(browser)
    queue = fresh_queue()
    assert queue.quotas[DEFAULT_QUOTA].size == 3
    assert queue.agent_settings is None or not queue.agent_settings.dispatcher_sizes()
    assert admin.settings_report(getUtility(IAsyncService).getQueues())


def test_intervals_are_cluster_wide_and_running_dispatchers_follow(
    functional_app, functional_portal, dispatchers
):
    follower = dispatchers()  # sets its own poll interval, follows the rest
    transaction.commit()
    browser = browser_for(functional_app)
    browser.open(f"{functional_portal.absolute_url()}/{PAGE}")
    assert control(browser, "interval_ping_interval").value == ""
    assert "Empty: the built-in 30 s" in text(browser)
    control(browser, "interval_ping_interval").value = "400"
    control(browser, "interval_death_interval").value = "1200"
    browser.getControl("Save").click()
    assert "ping interval: 400 s (every site)" in text(browser)
    wait_for(
        lambda: follower.intervals["death_interval"] == (1200.0, "cluster setting"),
        10,
        lambda: None,
        lambda: f"the dispatcher to follow: {follower.intervals}",
    )
    # Its own poll interval wins, and the page says where it comes from.
    browser.open(f"{functional_portal.absolute_url()}/{PAGE}")
    assert f"poll {follower.poll_interval:g} s (argument)" in text(browser)
    assert "ping 400 s (cluster setting)" in text(browser)

    # A death interval not longer than the ping interval: nothing is saved.
    control(browser, "interval_death_interval").value = "300"
    quota_control(browser).value = "5"
    browser.getControl("Save").click()
    page = text(browser)
    assert "Nothing was saved: death_interval (300) must be longer" in page
    transaction.begin()
    report = admin.interval_report(getUtility(IAsyncService).getQueues())
    assert report["death_interval"]["setting"] == 1200.0
    assert fresh_queue().quotas[DEFAULT_QUOTA].size == 1


def test_a_quota_rate_is_set_shown_and_removed(functional_app, functional_portal):
    import datetime

    browser = browser_for(functional_app)
    url = f"{functional_portal.absolute_url()}/{PAGE}"
    browser.open(url)
    rate = control(browser, views.rate_field_name(DEFAULT_QUOTA))
    assert rate.value == ""
    rate.value = "10/1m"
    browser.getControl("Save").click()
    assert "Changes saved: quota 'default': 10/1m (every site)" in text(browser)
    assert fresh_queue().quotas[DEFAULT_QUOTA].rate == (
        10,
        datetime.timedelta(minutes=1),
    )
    browser.open(url)
    assert control(browser, views.rate_field_name(DEFAULT_QUOTA)).value == "10/1m"

    for bad, says in (("often", "starts/period, like 100/1h"), ("0/1m", "1 or more")):
        control(browser, views.rate_field_name(DEFAULT_QUOTA)).value = bad
        quota_control(browser).value = "5"
        browser.getControl("Save").click()
        assert "Nothing was saved" in text(browser) and says in text(browser)
        queue = fresh_queue()
        assert queue.quotas[DEFAULT_QUOTA].rate[0] == 10
        assert queue.quotas[DEFAULT_QUOTA].size == 1
        browser.open(url)

    control(browser, views.rate_field_name(DEFAULT_QUOTA)).value = ""
    browser.getControl("Save").click()
    assert "quota 'default': no rate" in text(browser)
    assert fresh_queue().quotas[DEFAULT_QUOTA].rate is None


def retention_control(browser, field, queue=""):
    return control(browser, views.retention_field_name(queue, field))


def test_retention_of_each_queue_is_edited_for_the_whole_cluster(
    functional_app, functional_portal
):
    transaction.begin()
    getUtility(IAsyncService).getQueues().create("reports")
    transaction.commit()
    browser = browser_for(functional_app)
    browser.open(f"{functional_portal.absolute_url()}/{PAGE}")
    page = text(browser)
    assert "Retention of completed jobs" in page
    assert "Queue 'reports': keep failed jobs (days)" in page
    assert (
        "Now: keeps succeeded jobs 7d00h, failed jobs 30d00h (built-in default)" in page
    )
    assert retention_control(browser, "succeeded_days").value == ""
    retention_control(browser, "succeeded_days").value = "2"
    retention_control(browser, "failed_count", "reports").value = "40"
    retention_control(browser, "failed_days", "reports").value = "0"
    browser.getControl("Save").click()
    page = text(browser)
    assert "retention of queue default: succeeded_age 2d00h (every site)" in page
    assert "retention of queue reports: failed_age unlimited, failed_count 40" in page
    transaction.begin()
    queues = getUtility(IAsyncService).getQueues()
    assert queues[""].retention.values() == {
        "succeeded_age": datetime.timedelta(days=2)
    }
    assert retention.policy(queues["reports"])["failed_count"] == (
        40,
        "cluster setting",
    )
    assert admin.retention_report(queues)["queues"][1]["retention"]["failed_age"] == {
        "value": retention.UNLIMITED,
        "source": "cluster setting",
    }
    # Shown as saved; a count below 1 is refused and nothing is stored.
    browser.open(f"{functional_portal.absolute_url()}/{PAGE}")
    assert retention_control(browser, "succeeded_days").value == "2.0"
    assert retention_control(browser, "failed_days", "reports").value == "0.0"
    retention_control(browser, "succeeded_count").value = "0"
    retention_control(browser, "succeeded_days").value = "5"
    browser.getControl("Save").click()
    assert "There were some errors" in text(browser)
    transaction.begin()
    assert fresh_queue().retention.values() == {
        "succeeded_age": datetime.timedelta(days=2)
    }
