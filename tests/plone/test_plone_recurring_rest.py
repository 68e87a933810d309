"""GET @zasync-recurring through a real WSGI server: the recurring jobs as
JSON for those with "zasync: Manage jobs", refused for everybody else."""

import pytest
import requests
import transaction
from restapi_layer import FIXTURES, MANAGER, MEMBER, PASSWORD, site_url

import jobfuncs
import zasync
from zasync import recurring

globals().update(FIXTURES)


@pytest.fixture
def url(rest):
    portal = rest["portal"]
    transaction.begin()
    queues = zasync.get_queues(portal._p_jar)
    recurring.define(queues, "nightly", jobfuncs.add, cron="0 3 * * *", args=(1, 2))
    recurring.define(queues, "often", jobfuncs.add, every=60, args=(1, 1))
    recurring.pause(queues, "often")
    transaction.commit()
    return f"{site_url(rest)}/@zasync-recurring"


def get(url, user):
    auth = None if user is None else (user, PASSWORD)
    return requests.get(
        url, headers={"Accept": "application/json"}, auth=auth, timeout=60
    )


def test_a_manager_gets_the_recurring_jobs(url):
    response = get(url, MANAGER)
    assert response.status_code == 200
    data = response.json()
    assert data["@id"] == url
    nightly, often = data["items"]
    assert nightly["name"] == "nightly"
    assert nightly["schedule"] == "cron '0 3 * * *' in UTC"
    assert nightly["callable"] == "jobfuncs.add"
    assert nightly["next_tick"].endswith("03:00:00+00:00")
    assert nightly["last_run"] is None
    assert often["paused"] is True and often["next_tick"] is None
    assert often["every"] == 60.0


@pytest.mark.parametrize("user", [MEMBER, None])
def test_others_are_refused(url, user):
    response = get(url, user)
    assert response.status_code in (401, 403)
    assert "nightly" not in response.text
