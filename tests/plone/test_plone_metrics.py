"""@@zasync-metrics through the real publisher on the functional layer:
who may scrape it (the permission 'zasync: View metrics', or the metrics
token), what it answers (Prometheus's text format, parsed back), and how
the token is configured."""

import plone_jobs
import pytest
import transaction
from App.config import getConfiguration
from plone.app.testing import (
    SITE_OWNER_NAME,
    SITE_OWNER_PASSWORD,
    TEST_USER_NAME,
    TEST_USER_PASSWORD,
    login,
)
from plone.testing.zope import Browser
from zope.component import getUtility

from zasync.config import ConfigurationError
from zasync.plone import config
from zasync.plone.interfaces import IAsyncService
from zasync.plone.testing import wait_for_result
from zasync.testing import parse_metrics, wait_for

PAGE = "@@zasync-metrics"
TOKEN = "a-long-random-metrics-token-for-tests"
SITE_ADMINISTRATOR = "metrics-site-administrator"
PASSWORD = "secret-metrics-password"


def browser_for(app, user=None, password=None, token=None):
    browser = Browser(app)
    browser.handleErrors = True
    browser.raiseHttpErrors = False
    if user is not None:
        browser.addHeader("Authorization", f"Basic {user}:{password}")
    if token is not None:
        browser.addHeader("Authorization", f"Bearer {token}")
    return browser


def url(portal):
    return f"{portal.absolute_url()}/{PAGE}"


def status(browser):
    return int(browser.headers["status"].split()[0])


parse = parse_metrics


def assert_metrics(browser):
    assert status(browser) == 200, browser.contents
    assert browser.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert browser.headers["X-Content-Type-Options"] == "nosniff"
    samples = parse(browser.contents)
    assert samples["zasync_queues_up", ()] == 1
    return samples


@pytest.fixture
def token(monkeypatch):
    monkeypatch.setenv(config.METRICS_TOKEN_ENVIRONMENT, TOKEN)
    return TOKEN


@pytest.fixture
def site_administrator(functional_portal):
    functional_portal.acl_users.userFolderAddUser(
        SITE_ADMINISTRATOR, PASSWORD, ["Member", "Site Administrator"], []
    )
    transaction.commit()
    return SITE_ADMINISTRATOR


# -- who may scrape --------------------------------------------------------------


def test_a_manager_scrapes_the_jobs_of_the_site(functional_app, functional_portal):
    default = ("queue", "default")
    succeeded = ("zasync_job_attempts_total", (("outcome", "succeeded"),))
    manager = browser_for(functional_app, SITE_OWNER_NAME, SITE_OWNER_PASSWORD)
    before = assert_metrics(_open(manager, url(functional_portal)))
    login(functional_portal, TEST_USER_NAME)
    job = getUtility(IAsyncService).queueJob(plone_jobs.path_of, functional_portal)
    transaction.commit()
    assert wait_for_result(job) == "/".join(functional_portal.getPhysicalPath())
    found = {}

    def counted():
        # This process's dispatcher ran it: its counters moved.
        found.update(assert_metrics(_open(manager, url(functional_portal))))
        return found[succeeded] > before[succeeded]

    wait_for(counted, 20, lambda: None, lambda: f"a succeeded attempt in {found}")
    assert found["zasync_queue_jobs", (default, ("status", "succeeded"))] >= 1
    assert found["zasync_queue_jobs", (default, ("status", "failed"))] == 0
    assert found["zasync_queue_dispatchers_alive", (default,)] >= 1
    # The process's own metrics come along.
    assert found["process_resident_memory_bytes", ()] > 0


def _open(browser, address):
    browser.open(address)
    return browser


def test_a_site_administrator_scrapes_it(
    functional_app, functional_portal, site_administrator
):
    browser = browser_for(functional_app, site_administrator, PASSWORD)
    assert_metrics(_open(browser, url(functional_portal)))


def test_the_token_scrapes_it_without_a_login(functional_app, functional_portal, token):
    browser = browser_for(functional_app, token=token)
    assert_metrics(_open(browser, url(functional_portal)))


def test_a_wrong_token_is_refused_with_a_bearer_challenge(
    functional_app, functional_portal, token
):
    browser = browser_for(functional_app, token=token + "-but-wrong")
    browser.open(url(functional_portal))
    assert status(browser) == 401
    assert browser.headers["WWW-Authenticate"].startswith("Bearer ")
    assert "zasync_" not in browser.contents
    assert "This metrics token is not valid." in browser.contents


def test_a_token_is_refused_when_none_is_configured(
    functional_app, functional_portal, monkeypatch
):
    monkeypatch.delenv(config.METRICS_TOKEN_ENVIRONMENT, raising=False)
    browser = browser_for(functional_app, token=TOKEN)
    browser.open(url(functional_portal))
    assert status(browser) == 401
    assert "zasync_" not in browser.contents


def test_anonymous_is_sent_to_the_login_form(functional_app, functional_portal, token):
    browser = browser_for(functional_app)
    browser.open(url(functional_portal))
    assert "/login?came_from=" in browser.url
    assert "zasync_queue_jobs" not in browser.contents


def test_a_member_is_denied(functional_app, functional_portal, token):
    browser = browser_for(functional_app, TEST_USER_NAME, TEST_USER_PASSWORD)
    browser.open(url(functional_portal))
    assert browser.url.endswith("/insufficient-privileges")
    assert "zasync_queue_jobs" not in browser.contents


# -- the token's configuration --------------------------------------------------


@pytest.fixture
def product_config(monkeypatch):
    """Set <product-config zasync> of this process for the test."""
    monkeypatch.delenv(config.METRICS_TOKEN_ENVIRONMENT, raising=False)
    zope_conf = getConfiguration()

    def set_section(**values):
        sections = dict(getattr(zope_conf, "product_config", None) or {})
        sections[config.SECTION] = values
        monkeypatch.setattr(zope_conf, "product_config", sections, raising=False)

    return set_section


def test_the_token_of_zope_conf_scrapes_it(
    functional_app, functional_portal, product_config
):
    product_config(**{"metrics-token": f"  {TOKEN}  "})
    assert config.metrics_token() == TOKEN
    assert isinstance(config.process_config(), config.ProcessConfig)  # a known key
    assert_metrics(
        _open(browser_for(functional_app, token=TOKEN), url(functional_portal))
    )


def test_the_environment_wins_over_zope_conf(product_config, monkeypatch):
    product_config(**{"metrics-token": TOKEN})
    monkeypatch.setenv(config.METRICS_TOKEN_ENVIRONMENT, "from-the-environment-0123")
    assert config.metrics_token() == "from-the-environment-0123"
    monkeypatch.setenv(config.METRICS_TOKEN_ENVIRONMENT, "")
    assert config.metrics_token() is None


def test_no_token_by_default(product_config):
    product_config()
    assert config.metrics_token() is None


def test_a_short_token_is_refused_at_start_up(product_config):
    product_config(**{"metrics-token": "short"})
    with pytest.raises(ConfigurationError) as raised:
        config.process_config()
    assert str(raised.value).startswith(
        "<product-config zasync> metrics-token must be at least 16 characters "
        "long, not 5: use a long random secret"
    )


def test_names_from_the_database_stay_plain_text(
    functional_app, functional_portal, token
):
    name = '<script>alert("queue")</script>'
    queues = getUtility(IAsyncService).getQueues()
    queues.create(name)
    transaction.commit()
    browser = browser_for(functional_app, token=token)
    samples = assert_metrics(_open(browser, url(functional_portal)))
    # Never HTML (text/plain, not sniffed), and the label is read back intact.
    assert samples["zasync_queue_jobs", (("queue", name), ("status", "pending"))] == 0
    assert "<html" not in browser.contents.lower()
