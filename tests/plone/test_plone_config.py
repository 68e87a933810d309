"""<product-config zasync> is read into a ProcessConfig; bad values stop
start-up with a message that names the key; the environment and the
``zasync worker`` command line can change what zope.conf says."""

import pytest

from zasync.plone import config


@pytest.fixture(autouse=True)
def clean(monkeypatch):
    monkeypatch.delenv(config.DISPATCHER_ENVIRONMENT, raising=False)
    yield
    config.set_overrides()


def test_defaults():
    read = config.process_config({})
    assert read == config.ProcessConfig()
    assert read.queues == ("",)
    assert (read.ping_interval, read.death_interval) == (30.0, 300.0)
    assert read.dispatcher is None


def test_every_key():
    read = config.process_config(
        {
            "database": "jobs",
            "threads": "5",
            "poll-interval": "0.5",
            "public-url": "https://www.example.org/",
            "default-quota-size": "2",
            "dispatcher": "off",
            "queues": "default  reports",
            "ping-interval": "10",
            "death-interval": "60",
            "group-commit": "4",
        }
    )
    assert read == config.ProcessConfig(
        database="jobs",
        threads=5,
        poll_interval=0.5,
        public_url="https://www.example.org",
        default_quota_size=2,
        dispatcher=False,
        queues=("", "reports"),
        ping_interval=10.0,
        death_interval=60.0,
        group_commit=4,
        threads_from="zope.conf",
        interval_sources=(
            ("poll_interval", "zope.conf"),
            ("ping_interval", "zope.conf"),
            ("death_interval", "zope.conf"),
        ),
    )
    assert read.dispatcher_config().group_commit == 4


def test_intervals_left_out_follow_the_cluster():
    """Only the intervals zope.conf (or a command line) gives are the
    process's own; the others follow the cluster-wide settings."""
    read = config.process_config({"ping-interval": "10"})
    made = read.dispatcher_config()
    assert made.interval_sources == (("ping_interval", "zope.conf"),)
    assert made.interval_source("poll_interval") is None
    config.set_overrides(poll_interval=2.0)
    try:
        read = config.process_config({"ping-interval": "10"})
    finally:
        config.set_overrides()
    assert dict(read.interval_sources) == {
        "poll_interval": "command line",
        "ping_interval": "zope.conf",
    }


def test_threads_left_out_follow_the_cluster():
    """Without threads the dispatcher takes the agent size set for the
    cluster (zasync agents set, the control panel): none here."""
    read = config.process_config({"poll-interval": "0.5"})
    assert (read.threads, read.threads_from) == (None, None)


@pytest.mark.parametrize(
    "raw, message",
    [
        ({"threads": "many"}, "threads must be a number, not 'many'"),
        ({"threads": "0"}, "threads must be at least 1"),
        ({"ping-interval": "0"}, "ping-interval must be at least 0.1"),
        ({"group-commit": "0"}, "group-commit must be at least 1"),
        ({"dispatcher": "maybe"}, "dispatcher must be on or off, not 'maybe'"),
        ({"thread": "3"}, "has unknown keys thread;"),
        (
            {"ping-interval": "30", "death-interval": "30"},
            "death-interval (30.0) must be longer than ping-interval (30.0)",
        ),
        ({"public-url": "www.example.org"}, "must start with http:// or https://"),
    ],
)
def test_bad_values_name_the_key(raw, message):
    with pytest.raises(config.ConfigurationError) as raised:
        config.process_config(raw)
    assert message in str(raised.value)


@pytest.mark.parametrize("value, expected", [("off", False), ("on", True)])
def test_environment_switches_the_dispatcher(monkeypatch, value, expected):
    monkeypatch.setenv(config.DISPATCHER_ENVIRONMENT, value)
    assert config.process_config({"dispatcher": "on"}).dispatcher is expected
    assert config.process_config({}).dispatcher is expected


def test_bad_environment_value_is_named(monkeypatch):
    monkeypatch.setenv(config.DISPATCHER_ENVIRONMENT, "sometimes")
    with pytest.raises(config.ConfigurationError) as raised:
        config.process_config({})
    assert "environment variable ZASYNC_DISPATCHER must be on or off" in str(
        raised.value
    )


def test_command_line_overrides_win(monkeypatch):
    monkeypatch.setenv(config.DISPATCHER_ENVIRONMENT, "off")
    config.set_overrides(dispatcher=True, threads=7, queues=None)
    read = config.process_config({"threads": "2", "queues": "reports"})
    assert read.dispatcher is True
    assert (read.threads, read.threads_from) == (7, "command line")
    assert read.queues == ("reports",)  # None leaves zope.conf's value

    config.set_overrides()
    read = config.process_config({"threads": "2"})
    assert (read.threads, read.threads_from) == (2, "zope.conf")


def test_unknown_override_is_refused():
    with pytest.raises(TypeError, match="unknown ProcessConfig fields"):
        config.set_overrides(thread=3)
